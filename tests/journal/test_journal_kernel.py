"""An interrupted notebook kernel rolls back the run in flight, like a cancelled run."""

from __future__ import annotations

import importlib.util
import sqlite3
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require

CELL = """
import asyncio, pathlib, time
import sagakit

marker = pathlib.Path({marker!r})

def reserve(data, context):
    return {{"reservation": "r-1"}}

def release(data, context):
    marker.write_text(f"released {{data['reservation']}} key={{context.idempotency_key}}")

async def wait_for_payment(data, context):
    pathlib.Path({started!r}).touch()
    # Short sleeps rather than one long one: ipykernel hands the interrupt to the event loop
    # without waking it, so it is only seen when the loop next wakes up.
    for _ in range(1200):
        await asyncio.sleep(0.05)

saga = sagakit.Saga("kernel", [sagakit.step(reserve, compensate=release), sagakit.step(wait_for_payment)])
journal = sagakit.SqliteJournal({journal!r})
{call}
"""


@pytest.fixture
def kernel() -> Iterator[Any]:
    require(importlib.util.find_spec("jupyter_client") is not None, "jupyter_client (pip install jupyter_client)")
    require(importlib.util.find_spec("ipykernel") is not None, "ipykernel (pip install ipykernel)")
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3")
    try:
        yield manager, client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def interrupt_cell(kernel: Any, tmp_path: Path, call: str) -> tuple[dict[str, Any], Path, Path]:
    """Run a cell whose saga waits in its second step, interrupt the kernel there, return the reply."""
    manager, client = kernel
    marker, started, journal = tmp_path / "released.txt", tmp_path / "started", tmp_path / "journal.db"
    code = textwrap.dedent(CELL).format(marker=str(marker), started=str(started), journal=str(journal), call=call)
    message_id = client.execute(code)
    deadline = time.monotonic() + 60
    while not started.exists():
        assert time.monotonic() < deadline, "the saga's second step never started"
        time.sleep(0.05)
    manager.interrupt_kernel()
    while True:
        reply = client.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == message_id:
            return reply, marker, journal


def journal_status(journal: Path) -> list[tuple[str, ...]]:
    connection = sqlite3.connect(journal)
    try:
        return connection.execute("SELECT status FROM runs").fetchall()
    finally:
        connection.close()


class TestInterruptedKernel:
    def test_interrupting_an_awaited_run_compensates_the_completed_step(self, kernel: Any, tmp_path: Path) -> None:
        """Interrupt during step 2 of `await saga.run(...)`: step 1 is compensated, the run is 'cancelled'."""
        reply, marker, journal = interrupt_cell(kernel, tmp_path, "run = await saga.run(journal=journal)")
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] in {"CancelledError", "KeyboardInterrupt"}
        assert marker.read_text().startswith("released r-1 key=")
        assert marker.read_text().endswith(":reserve:compensate")
        assert journal_status(journal) == [("cancelled",)]

    def test_interrupting_run_sync_compensates_the_completed_step(self, kernel: Any, tmp_path: Path) -> None:
        """Interrupt during step 2 of `saga.run_sync(...)` in a cell: step 1 is compensated."""
        reply, marker, journal = interrupt_cell(kernel, tmp_path, "run = saga.run_sync(journal=journal)")
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        assert marker.exists() and journal_status(journal) == [("cancelled",)]
