"""Fixtures for the journal tests: journal and service files, and child processes to kill."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import journal_service
import pytest
from journal_support import Children


@pytest.fixture
def journal_file(tmp_path: Path) -> Path:
    """Where a test's journal lives (not created yet)."""
    return tmp_path / "journal.db"


@pytest.fixture
def service(tmp_path: Path) -> str:
    """A fresh service database for the sagas of :mod:`journal_service`."""
    path = tmp_path / "service.db"
    journal_service.create_service(path)
    return str(path)


@pytest.fixture
def children() -> Iterator[Children]:
    """Start child processes; any still running at the end of the test is killed."""
    manager = Children()
    try:
        yield manager
    finally:
        manager.close()
