"""Fixtures of the conformance table: the world's ledger, and Temporal backends for the table's sagas.

The Temporal server and client are the session's (the :mod:`temporal_server` plugin); the
table's own worker serves every row's saga on a task queue of its own, in this process.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from conformance import world
from conformance.drivers import QUEUE, WRONG_KEY, stop_spare_child
from conformance.table import SAGAS


@pytest.fixture(scope="session", autouse=True)
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The world's ledger file, named in the environment so that the crash children find it too."""
    path = tmp_path_factory.mktemp("conformance") / "ledger.jsonl"
    path.touch()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(world.LEDGER, str(path))
        try:
            yield path
        finally:
            stop_spare_child()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def table_worker(client: Any) -> AsyncIterator[Any]:
    """A worker serving every row's saga on ``QUEUE``."""
    from sagakit.temporal import serve

    async with serve(client, list(SAGAS.values()), task_queue=QUEUE) as running:
        yield running


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def wrong_key_worker(temporal_address: str) -> AsyncIterator[Any]:
    """A worker on ``WRONG_KEY`` that encrypts with a key the caller does not have (and cannot read the caller's)."""
    from temporalio.client import Client

    from sagakit.temporal import encrypted_data_converter, serve

    converter = encrypted_data_converter({"worker-key": os.urandom(32)})
    worker_client = await Client.connect(temporal_address, namespace="default", data_converter=converter)
    async with serve(worker_client, list(SAGAS.values()), task_queue=WRONG_KEY) as running:
        yield running
