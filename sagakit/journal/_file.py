"""The journal's file: its schema, opening and checking it, and who owns a run.

A journal is a SQLite file in WAL mode whose ``PRAGMA application_id`` marks it as sagakit's
and whose ``PRAGMA user_version`` is its schema version. :func:`connect` opens one for
reading or writing and turns every problem (missing directory, read-only file, damaged
file, another application's database, a newer schema) into a
:class:`~sagakit.errors.JournalError` that names the file and says what to do, without
writing to a file it cannot use.

Each run records the process that runs it (host, pid, process start time), so that
:func:`owner_alive` can tell an interrupted run from one still in flight.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import stat
import warnings
from pathlib import Path
from typing import Literal, NamedTuple

from sagakit.errors import JournalError

__all__ = [
    "ACTIVE_RUNS",
    "APPLICATION_ID",
    "DAMAGED_ADVICE",
    "SCHEMA_VERSION",
    "SYNCHRONOUS",
    "FINISH_RUN",
    "JournalPermissionWarning",
    "INSERT_EVENT",
    "INSERT_RUN",
    "SCHEMA",
    "Durability",
    "Owner",
    "connect",
    "current_owner",
    "damaged",
    "journal_path",
    "owner_alive",
]

#: The journal schema this sagakit writes and the newest it reads (``PRAGMA user_version``).
SCHEMA_VERSION = 1
#: ``PRAGMA application_id`` of a sagakit journal ("SGKJ"), so that no other database is taken for one.
APPLICATION_ID = 0x53474B4A

Durability = Literal["full", "normal", "off"]
#: ``PRAGMA synchronous`` for each durability.
SYNCHRONOUS: dict[str, str] = {"full": "FULL", "normal": "NORMAL", "off": "OFF"}

#: Runs started and not yet finished in this process (any journal): recover() leaves them alone.
ACTIVE_RUNS: set[str] = set()


# -- the schema ----------------------------------------------------------------------------

SCHEMA = """
CREATE TABLE runs (
    run_id         TEXT PRIMARY KEY,
    saga           TEXT NOT NULL,
    correlation_id TEXT,
    backend        TEXT NOT NULL,
    info           TEXT,
    started_at     REAL NOT NULL,
    status         TEXT,
    finished_at    REAL,
    attention      TEXT,
    owner_host     TEXT,
    owner_pid      INTEGER,
    owner_started  TEXT
);
CREATE INDEX runs_unfinished ON runs (saga) WHERE status IS NULL;
CREATE TABLE events (
    seq            INTEGER PRIMARY KEY,
    run_id         TEXT NOT NULL,
    kind           TEXT NOT NULL,
    at             REAL NOT NULL,
    step           TEXT,
    step_index     INTEGER NOT NULL,
    phase          TEXT,
    attempt        INTEGER NOT NULL,
    started_at     REAL,
    duration_ms    REAL,
    error_type     TEXT,
    error_module   TEXT,
    error_message  TEXT,
    injected       INTEGER NOT NULL,
    status         TEXT,
    payload        BLOB,
    payload_state  TEXT
);
CREATE INDEX events_by_run ON events (run_id, seq);
"""

INSERT_RUN = (
    "INSERT OR IGNORE INTO runs (run_id, saga, correlation_id, backend, info, started_at, owner_host, owner_pid,"
    " owner_started) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_EVENT = (
    "INSERT INTO events (run_id, kind, at, step, step_index, phase, attempt, started_at, duration_ms, error_type,"
    " error_module, error_message, injected, status, payload, payload_state)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
FINISH_RUN = "UPDATE runs SET status = ?, finished_at = ?, attention = ? WHERE run_id = ?"


# -- opening a file ------------------------------------------------------------------------

#: What to do with a damaged journal (``{path}`` is its path).
DAMAGED_ADVICE = (
    "keep a copy of it, try `sqlite3 {path} .recover > dump.sql` to salvage its records, and give "
    "sagakit a new journal path"
)


def journal_path(path: object, what: str = "journal") -> Path:
    """``path`` as a :class:`~pathlib.Path`, or a ``TypeError`` naming the argument."""
    if isinstance(path, bytes) or not isinstance(path, str | os.PathLike):
        raise TypeError(f"{what}: expected a file path (str or os.PathLike), got {type(path).__name__} {path!r}")
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not text or text == ":memory:":
        raise ValueError(f"{what}: expected a file path, got {text!r}; a journal must live in a file to be durable")
    return Path(text).expanduser()


def damaged(path: Path, exc: BaseException | str) -> JournalError:
    """The error for a journal SQLite reports as damaged or not a database (``exc``: why)."""
    return JournalError(
        path, f"the file is damaged or is not a SQLite database ({exc}); " + DAMAGED_ADVICE.format(path=path)
    )


#: The first 16 bytes of every SQLite database file.
_SQLITE_HEADER = b"SQLite format 3\x00"


def _check_header(path: Path) -> None:
    """Refuse a non-empty file that does not start with SQLite's header, before SQLite sees it.

    SQLite itself refuses most such files, but takes a 1-byte file for an empty database and
    would write a journal over it. An empty file stays acceptable, deliberately: it holds
    nothing to lose (``touch sagas.db``), and a journal's own file is never empty, since
    switching a new database to WAL mode writes its first page there.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_SQLITE_HEADER))
    except OSError:
        return  # unreadable: sqlite3.connect reports it, with its own reason
    if head and head != _SQLITE_HEADER:
        if len(head) < len(_SQLITE_HEADER):
            why = f"it is {len(head)} byte{'s' if len(head) != 1 else ''} long, shorter than SQLite's 16-byte header"
        else:
            why = "it does not start with SQLite's header"
        raise damaged(path, f"file is not a database: {why}")


def _create_file(path: Path) -> None:
    """Create the journal file readable and writable by its owner only (mode 0600)."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process created it meanwhile: open theirs
    except OSError as exc:
        raise JournalError(path, f"cannot create the file ({exc.strerror}); check the directory's permissions") from exc
    os.close(descriptor)


#: SQLite's companion files, which hold the same data as the journal.
_COMPANIONS = ("-wal", "-shm", "-journal")


def _tighten(path: Path, *, warn: bool) -> None:
    """Make an adopted journal and its companion files readable by their owner only (mode 0600).

    A journal holds run data; one that others can read (0644 from a copy or an umask) is
    tightened when this process owns it, with a warning saying so (``warn``: an empty file
    just made a journal is tightened silently, as a new one is created private). One that others can read
    and this process cannot tighten (another user's file) is refused.
    """
    for file in (path, *(path.with_name(path.name + suffix) for suffix in _COMPANIONS)):
        try:
            info = file.stat()
        except FileNotFoundError:
            continue
        loose = stat.S_IMODE(info.st_mode) & 0o077
        if not loose:
            continue
        try:
            os.chmod(file, stat.S_IMODE(info.st_mode) & 0o700)
        except OSError as exc:
            raise JournalError(
                path,
                f"{file.name} is readable by other users (mode {stat.S_IMODE(info.st_mode):04o}) and this process "
                f"cannot restrict it ({exc.strerror}); its owner should run chmod 600 {file}",
            ) from exc
        if warn:
            warnings.warn(
                f"sagakit journal {path}: {file.name} was readable by other users (mode "
                f"{stat.S_IMODE(info.st_mode):04o}); it is now {stat.S_IMODE(info.st_mode) & 0o700:04o} (owner only)",
                JournalPermissionWarning,
                stacklevel=5,
            )


class JournalPermissionWarning(UserWarning):
    """A journal file others could read was made private to its owner."""


def connect(path: Path, *, write: bool, busy_timeout: float = 5.0) -> sqlite3.Connection:
    """Open (and for writing, create or upgrade) the journal at ``path``.

    Every problem is a :class:`JournalError` naming the file and what to do; a file that is
    not a sagakit journal, is damaged or comes from a newer sagakit is never written to. An
    empty file is a new journal (for writing) or holds no runs (for reading).
    """
    if path.is_dir():
        raise JournalError(path, "is a directory; give the path of a file inside it, such as sagas.db")
    parent = path.parent
    if not parent.is_dir():
        raise JournalError(
            path, f"the directory {parent} does not exist; create it first (mkdir -p {parent}) or choose another path"
        )
    exists = path.exists()
    if not write and not exists:
        raise JournalError(path, "does not exist; check the path (a journal is created by SqliteJournal(path))")
    if write:
        if exists:
            mode = path.stat().st_mode
            if not os.access(path, os.W_OK) or not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
                raise JournalError(
                    path,
                    "is read-only; make it writable (chmod u+w) to record runs in it, or read it with "
                    "RunHistory.from_journal()",
                )
        if not os.access(parent, os.W_OK):
            raise JournalError(
                path, f"the directory {parent} is not writable (SQLite keeps its -wal file next to the journal)"
            )
        if not exists:
            _create_file(path)
    if exists:
        _check_header(path)
    try:
        connection = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise JournalError(path, f"cannot open the file ({exc})") from exc
    try:
        created = _check_schema(connection, path, write=write)
        if write and exists:
            # Only a file that is (now) a journal: another application's database is left alone.
            _tighten(path, warn=not created)
    except BaseException:
        connection.close()
        raise
    return connection


def _check_schema(connection: sqlite3.Connection, path: Path, *, write: bool) -> bool:
    """Check (and for writing, create) the journal's tables; whether they were just created."""
    try:
        application_id = connection.execute("PRAGMA application_id").fetchone()[0]
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise damaged(path, exc) from exc
    if application_id == 0 and version == 0 and tables == 0:
        if not write:
            raise JournalError(path, "is empty: it is not a sagakit journal (or no run was ever recorded in it)")
        _create_schema(connection, path)
        return True
    if application_id != APPLICATION_ID:
        raise JournalError(
            path, "is a SQLite database but not a sagakit journal; sagakit will not write into it: choose another path"
        )
    if version > SCHEMA_VERSION:
        raise JournalError(
            path,
            f"was written by a newer sagakit (journal schema {version}; this sagakit knows schema "
            f"{SCHEMA_VERSION} and older): upgrade sagakit (pip install -U sagakit) to use it",
        )
    try:
        connection.execute("SELECT run_id, status, owner_started FROM runs LIMIT 0")
        connection.execute("SELECT seq, payload_state FROM events LIMIT 0")
        if write and connection.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
            raise JournalError(path, "cannot switch to WAL mode; is it on a network file system? use a local disk")
    except sqlite3.DatabaseError as exc:
        raise damaged(path, exc) from exc
    return False


def _create_schema(connection: sqlite3.Connection, path: Path) -> None:
    try:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("BEGIN IMMEDIATE")
        # Another process may have created the journal while we waited for the lock.
        if connection.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except sqlite3.Error as exc:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise JournalError(path, f"cannot create the journal tables ({exc})") from exc


# -- who runs what -------------------------------------------------------------------------


class Owner(NamedTuple):
    """The process that runs (or recovers) a run: host name, pid and the process's start time."""

    host: str
    pid: int
    started: str


_OWNER: Owner | None = None


def _process_start(pid: int) -> tuple[str, str] | None:
    """``(state, start time in clock ticks)`` of process ``pid`` from /proc, or ``None`` if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return None
    except OSError:
        return ("?", "")
    # The command name (field 2) may contain spaces and parentheses: split after its last ")".
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], fields[19]


def current_owner() -> Owner:
    """This process, as recorded in the runs it starts (recomputed after a fork)."""
    global _OWNER
    pid = os.getpid()
    if _OWNER is None or _OWNER.pid != pid:
        stat_fields = _process_start(pid) if os.path.isdir("/proc") else None
        _OWNER = Owner(socket.gethostname(), pid, stat_fields[1] if stat_fields else "")
    return _OWNER


def owner_alive(owner: Owner, run_id: str) -> bool:
    """Whether the process recorded as running ``run_id`` may still be running it.

    On another host there is no way to tell, so the answer is yes.
    """
    me = current_owner()
    if owner.host != me.host:
        return True
    if owner.pid == me.pid and owner.started == me.started:
        return run_id in ACTIVE_RUNS
    if os.path.isdir("/proc"):
        found = _process_start(owner.pid)
        if found is None:
            return False
        state, started = found
        if state in ("Z", "X"):  # a zombie has stopped running anything
            return False
        return not (owner.started and started and started != owner.started)  # else the pid was reused
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
