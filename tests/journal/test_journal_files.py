"""Bad journal files and paths: each a clear error naming the file, and the file left as it was."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import sagakit
from sagakit import Saga, WorkflowContext, step
from sagakit.journal import JournalError


async def note(data: Any, context: WorkflowContext) -> dict[str, Any]:
    return {"note": "x" * 100}


SAGA = Saga("notes", [step(note)])


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def every_use(path: Path) -> list[Any]:
    """Open for writing, read the history, recover: each must refuse the file."""
    return [
        lambda: sagakit.SqliteJournal(path),
        lambda: sagakit.RunHistory.from_journal(path),
        lambda: asyncio.run(sagakit.recover(path, [SAGA])),
    ]


@pytest.fixture
def full_journal(journal_file: Path) -> Path:
    """A journal holding 200 finished runs, checkpointed into the main file."""

    async def fill() -> None:
        with sagakit.SqliteJournal(journal_file) as journal:
            await asyncio.gather(*(SAGA.run({}, journal=journal) for _ in range(200)))

    asyncio.run(fill())
    assert not Path(f"{journal_file}-wal").exists()  # the last connection checkpointed it
    return journal_file


class TestPaths:
    def test_a_missing_directory_is_named_and_not_created(self, tmp_path: Path) -> None:
        """The error names the directory and how to create it; sagakit creates nothing."""
        path = tmp_path / "nowhere" / "journal.db"
        with pytest.raises(JournalError, match=r"the directory .*nowhere does not exist; create it first") as info:
            sagakit.SqliteJournal(path)
        assert info.value.path == str(path)
        assert not path.parent.exists()

    def test_a_directory_is_not_a_journal(self, tmp_path: Path) -> None:
        with pytest.raises(JournalError, match="is a directory"):
            sagakit.SqliteJournal(tmp_path)

    def test_reading_a_missing_journal_creates_nothing(self, journal_file: Path) -> None:
        with pytest.raises(JournalError, match="does not exist"):
            sagakit.RunHistory.from_journal(journal_file)
        assert not journal_file.exists()

    def test_arguments_of_the_wrong_kind_are_named(self, journal_file: Path) -> None:
        with pytest.raises(TypeError, match="SqliteJournal path: expected a file path"):
            sagakit.SqliteJournal(42)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="must live in a file"):
            sagakit.SqliteJournal(":memory:")
        with pytest.raises(ValueError, match="durability: expected 'full', 'normal' or 'off', got 'fast'"):
            sagakit.SqliteJournal(journal_file, durability="fast")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="serializer: expected an object with dumps"):
            sagakit.SqliteJournal(journal_file, serializer=object())  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="redact"):
            sagakit.SqliteJournal(journal_file, redact=3)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="durability: expected 'full', 'normal' or 'off'"):
            sagakit.SqliteJournal(journal_file, durability=["full"])  # type: ignore[arg-type]
        for timeout in (float("nan"), float("inf"), -1, 10**400):
            with pytest.raises(ValueError, match="busy_timeout: expected a number of seconds from 0 to"):
                sagakit.SqliteJournal(journal_file, busy_timeout=timeout)
        with pytest.raises(TypeError, match="busy_timeout: expected a number of seconds"):
            sagakit.SqliteJournal(journal_file, busy_timeout="5")  # type: ignore[arg-type]
        assert not journal_file.exists()  # nothing was created for a refused journal


    def test_the_flags_of_runs_are_checked(self, journal_file: Path) -> None:
        """journal.runs(unfinished="yes") is a TypeError naming the flag, not a silently truthy filter."""
        with sagakit.SqliteJournal(journal_file) as journal:
            with pytest.raises(TypeError, match=r"SqliteJournal\.runs unfinished: expected True or False"):
                journal.runs(unfinished="yes")  # type: ignore[arg-type]
            with pytest.raises(TypeError, match=r"SqliteJournal\.runs attention: expected True or False"):
                journal.runs(attention=1)  # type: ignore[arg-type]
            assert journal.runs() == []


class TestBadFiles:
    def test_a_read_only_journal_is_refused_for_writing_but_readable(self, full_journal: Path) -> None:
        """A read-only file: say so and how to fix it; reading the history still works."""
        full_journal.chmod(0o400)
        before = digest(full_journal)
        with pytest.raises(JournalError, match=r"is read-only; make it writable \(chmod u\+w\)") as info:
            sagakit.SqliteJournal(full_journal)
        assert str(full_journal) in str(info.value)
        assert len(sagakit.RunHistory.from_journal(full_journal)) == 200
        assert digest(full_journal) == before

    def test_garbage_is_reported_as_damaged_and_left_alone(self, journal_file: Path) -> None:
        journal_file.write_bytes(os.urandom(8192))
        before = digest(journal_file)
        for use in every_use(journal_file):
            with pytest.raises(JournalError, match="damaged or is not a SQLite database") as info:
                use()
            assert ".recover" in str(info.value) and str(journal_file) in str(info.value)
        assert digest(journal_file) == before

    @pytest.mark.parametrize("content", [b"x", b"\x00", b"S", b"notes", b"SQLite format 3", b"x" * 39])
    def test_a_few_bytes_that_are_not_sqlite_are_refused_and_left_alone(self, journal_file: Path, content: bytes) -> None:
        """A file shorter than SQLite's header (SQLite took one byte for an empty database and
        wrote a journal over it) or not starting with it is refused by every use, saying why."""
        journal_file.write_bytes(content)
        for use in every_use(journal_file):
            with pytest.raises(JournalError, match="damaged or is not a SQLite database") as info:
                use()
            plural = "byte" if len(content) == 1 else "bytes"
            why = (f"it is {len(content)} {plural} long, shorter than SQLite's 16-byte header" if len(content) < 16
                   else "it does not start with SQLite's header")
            assert why in str(info.value)
            assert str(journal_file) in str(info.value)
        assert journal_file.read_bytes() == content
        assert not Path(f"{journal_file}-wal").exists()

    @pytest.mark.parametrize("cut", [0.5, 4096])
    def test_a_truncated_journal_is_reported_as_damaged_and_left_alone(self, full_journal: Path, cut: float) -> None:
        """Half the file, or its last page, gone: every use refuses it and writes nothing."""
        size = full_journal.stat().st_size
        os.truncate(full_journal, int(size * cut) if cut < 1 else size - int(cut))
        before = digest(full_journal)
        for use in every_use(full_journal):
            with pytest.raises(JournalError, match="damaged"):
                use()
        assert digest(full_journal) == before

    def test_another_sqlite_database_is_never_written_to(self, journal_file: Path) -> None:
        """A SQLite file that is not a journal (say, the service's own database) is refused."""
        connection = sqlite3.connect(journal_file)
        connection.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        connection.execute("INSERT INTO customers (name) VALUES ('ada')")
        connection.commit()
        connection.close()
        before = digest(journal_file)
        for use in every_use(journal_file):
            with pytest.raises(JournalError, match="not a sagakit journal"):
                use()
        assert digest(journal_file) == before

    def test_a_journal_from_a_newer_sagakit_is_refused(self, full_journal: Path) -> None:
        """A newer schema: upgrade sagakit; nothing is read wrongly or written."""
        connection = sqlite3.connect(full_journal)
        connection.execute("PRAGMA user_version = 99")
        connection.close()
        before = digest(full_journal)
        for use in every_use(full_journal):
            with pytest.raises(JournalError, match=r"newer sagakit \(journal schema 99.*upgrade sagakit"):
                use()
        assert digest(full_journal) == before

    def test_an_empty_file_becomes_a_journal(self, journal_file: Path) -> None:
        """A zero-byte file (say, made by touch) holds nothing to protect: it is initialised,
        deliberately (one byte more is refused, see above); read, it is not a journal yet."""
        journal_file.touch()
        with pytest.raises(JournalError, match="is empty: it is not a sagakit journal"):
            sagakit.RunHistory.from_journal(journal_file)
        with sagakit.SqliteJournal(journal_file) as journal:
            assert journal.runs() == []
