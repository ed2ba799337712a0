"""An in-process worker for the Temporal tests, on the session's real dev server.

The server and its client (``temporal_address``, ``client``) come from the
:mod:`temporal_server` plugin, shared with the conformance table. One worker serving every
saga in :mod:`temporal.sagas_under_test` lives on the session's event loop.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

TASK_QUEUE = "sagakit-tests"


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
