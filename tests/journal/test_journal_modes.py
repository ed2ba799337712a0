"""The journal's file modes: private when created, tightened (and said so) when adopted."""

from __future__ import annotations

import stat
import warnings
from pathlib import Path

import pytest

import sagakit as sk
from sagakit.journal import JournalPermissionWarning, SqliteJournal


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def _record(path: Path) -> None:
    async def step_one(data: object, context: sk.WorkflowContext) -> object:
        return data

    with SqliteJournal(path) as journal:
        await sk.Saga("modes", [sk.step(step_one)]).run({"n": 1}, journal=journal)
        companions = [p for p in path.parent.iterdir() if p.name.startswith(path.name + "-")]
        assert companions, "the -wal/-shm files exist while the journal is open"
        assert {p.name: mode(p) for p in companions} == {p.name: 0o600 for p in companions}


async def test_a_new_journal_and_its_wal_files_are_private(tmp_path: Path) -> None:
    """Created by sagakit: the database, -wal and -shm are 0600 whatever the umask."""
    path = tmp_path / "new.db"
    with warnings.catch_warnings():
        warnings.simplefilter("error", JournalPermissionWarning)
        await _record(path)
    assert mode(path) == 0o600


async def test_an_adopted_world_readable_journal_is_tightened_with_a_warning(tmp_path: Path) -> None:
    """A 0644 journal (and a leftover 0644 -wal) becomes 0600, and a warning names the file and both modes."""
    path = tmp_path / "shared.db"
    await _record(path)
    path.chmod(0o644)
    wal = path.with_name(path.name + "-wal")
    wal.write_bytes(b"")
    wal.chmod(0o664)
    with pytest.warns(JournalPermissionWarning) as caught:
        await _record(path)
    messages = [str(w.message) for w in caught]
    assert any("shared.db was readable by other users (mode 0644); it is now 0600" in m for m in messages)
    assert any("shared.db-wal was readable by other users" in m for m in messages)
    assert mode(path) == 0o600


async def test_a_private_journal_is_adopted_silently(tmp_path: Path) -> None:
    """A journal already 0600 opens without a warning, and stays 0600."""
    path = tmp_path / "private.db"
    await _record(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", JournalPermissionWarning)
        await _record(path)
    assert mode(path) == 0o600
