"""The durable SQLite journal: a run's progress is on disk before the run moves on.

:class:`SqliteJournal` is one more observer of the event stream. It records each run's start,
the end of every step attempt (with the data a completed step's compensation will need), every
compensation and the run's end in a SQLite file (stdlib :mod:`sqlite3`, WAL mode, a
versioned schema, created with mode ``0600``). The engine awaits :meth:`SqliteJournal.settle`
after each stage, so a step's completion is committed before the next step starts.

Writes happen on one writer thread per journal. The events of one event-loop turn form one
batch, and the writer commits every batch waiting for it in one transaction (group commit),
so a thousand concurrent sagas share their commits instead of paying one ``fsync`` each.

Reading back: :func:`load_history` (``RunHistory.from_journal``) rebuilds the runs of a
journal as :class:`~sagakit.Run` objects, so ``runs`` and ``steps`` frames survive a kernel
restart; :func:`history_to_parquet` and :func:`history_from_parquet` share an analysis
without payloads. :func:`sagakit.recover` (in :mod:`sagakit.recovery`) rolls back the runs a
crash left unfinished.

Secrets: payloads are redacted before they are stored (values under sensitive keys are
replaced by ``[REDACTED]``, see :mod:`sagakit.redaction`), and error messages are scrubbed.
Compensations run by :func:`sagakit.recover` therefore see redacted data: they should depend
on ids, not on secrets. ``SqliteJournal(path, redact=False)`` stores payloads as given; the
file is created readable by its owner only either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import os
import queue
import socket
import sqlite3
import stat
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol, TypeVar, runtime_checkable

from sagakit.errors import SagaError
from sagakit.events import Event, EventKind
from sagakit.redaction import Redactor, as_redactor
from sagakit.runs import Run, RunHistory

if TYPE_CHECKING:
    from sagakit.recovery import Recovery
    from sagakit.saga import Saga

__all__ = [
    "SCHEMA_VERSION",
    "Durability",
    "JournalError",
    "JournalRun",
    "JournalStats",
    "JsonSerializer",
    "PayloadError",
    "RecordedError",
    "RunInterrupted",
    "Serializer",
    "SqliteJournal",
    "history_from_parquet",
    "history_to_parquet",
    "load_history",
    "recover",
]

#: The journal schema this sagakit writes and the newest it reads (``PRAGMA user_version``).
SCHEMA_VERSION = 1
#: ``PRAGMA application_id`` of a sagakit journal ("SGKJ"), so that no other database is taken for one.
APPLICATION_ID = 0x53474B4A

Durability = Literal["full", "normal", "off"]
_SYNCHRONOUS: dict[str, str] = {"full": "FULL", "normal": "NORMAL", "off": "OFF"}

_T = TypeVar("_T")
_K = EventKind
# Events whose payload is stored: the run's input, a completed step's output (what its
# compensation receives) and the run's result.
_PAYLOAD_KINDS = frozenset({_K.RUN_STARTED, _K.STEP_SUCCEEDED, _K.RUN_FINISHED})
_KIND_TEXT: dict[EventKind, str] = {kind: kind.value for kind in EventKind}
_KIND_OF: dict[str, EventKind] = {kind.value: kind for kind in EventKind}

# The run whose code is running in this task: lets settle() fail exactly the run whose
# payload could not be stored, while other runs share the same batches.
_CURRENT_RUN: contextvars.ContextVar[str | None] = contextvars.ContextVar("sagakit_journal_run", default=None)
# Runs started and not yet finished in this process (any journal): recover() leaves them alone.
_ACTIVE_RUNS: set[str] = set()


# -- errors --------------------------------------------------------------------------------


class JournalError(SagaError):
    """A journal file cannot be used, or could not record a run's progress.

    The message names the file and says what to do. Nothing in the file is changed when
    this is raised while opening it.

    Attributes:
        path: the journal file.
        reason: what went wrong and what to do (the message without the path).
    """

    def __init__(self, path: object, message: str) -> None:
        self.path = str(path)
        self.reason = message
        super().__init__(f"journal {self.path}: {message}")


class PayloadError(SagaError, TypeError):
    """A step's data (or the run's input) cannot be stored by the journal's serializer.

    The run fails before the next step starts and the completed steps are compensated.

    Attributes:
        step: the step whose output could not be stored (``None`` for the run's input).
        value_type: the name of the type that could not be serialised.
        path: the journal file.
    """

    def __init__(self, *, path: str, step: str | None, value_type: str, reason: str) -> None:
        self.step = step
        self.value_type = value_type
        self.path = path
        what = f"step {step!r} returned" if step is not None else "the run's input is"
        super().__init__(
            f"journal {path}: {what} a {value_type} that cannot be stored ({reason}); the journal "
            "needs it to compensate after a crash. Return JSON-compatible data (dict, list, str, int, "
            "float, bool, None), or give SqliteJournal(..., serializer=...) one that handles it"
        )


class RunInterrupted(SagaError):
    """The process running a saga stopped (crash, kill, kernel restart) before the run finished.

    :func:`sagakit.recover` records this as the error of a run it rolled back.

    Attributes:
        run_id: the interrupted run.
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"run {run_id} was interrupted before it finished; recover() rolled it back")


class RecordedError(Exception):
    """An error read back from a journal or a Parquet file.

    The exception object itself is not stored; its type's name and its (scrubbed) message
    are. Each recorded type comes back as a subclass of this class with the same ``__name__``,
    so ``error_type`` and ``error_message`` in the frames are what they were.

    Attributes:
        type_module: the module of the original exception type, when known.
    """

    type_module: str | None = None


_RECORDED_TYPES: dict[tuple[str, str | None], type[RecordedError]] = {}


def recorded_error(type_name: str, module: str | None, message: str | None) -> RecordedError:
    """A :class:`RecordedError` standing for an error of type ``type_name`` with ``message``."""
    cls = _RECORDED_TYPES.get((type_name, module))
    if cls is None:
        cls = type(type_name, (RecordedError,), {"type_module": module, "__module__": __name__})
        _RECORDED_TYPES[(type_name, module)] = cls
    return cls(message or "")


# -- payloads ------------------------------------------------------------------------------


@runtime_checkable
class Serializer(Protocol):
    """Turns payloads into text or bytes for the journal, and back.

    ``dumps`` must raise (``TypeError``/``ValueError``) for a value it cannot store faithfully;
    the journal then fails the run with :class:`PayloadError` before the next step starts.
    """

    def dumps(self, value: Any, /) -> str | bytes: ...

    def loads(self, payload: str | bytes, /) -> Any: ...


class JsonSerializer:
    """The default serializer: JSON, strictly (no fallback to ``str`` for unknown objects).

    Tuples come back as lists and dict keys as strings, as JSON has it.

    Args:
        default: passed to :func:`json.dumps` to encode other types (it must raise
            ``TypeError`` for what it cannot encode).
        object_hook: passed to :func:`json.loads` to decode them again.
    """

    __slots__ = ("_decoder", "_encoder")

    def __init__(
        self,
        *,
        default: Callable[[Any], Any] | None = None,
        object_hook: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self._encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=default)
        self._decoder = json.JSONDecoder(object_hook=object_hook)

    def dumps(self, value: Any, /) -> str:
        return self._encoder.encode(value)

    def loads(self, payload: str | bytes, /) -> Any:
        return self._decoder.decode(payload.decode() if isinstance(payload, bytes) else payload)

    def __repr__(self) -> str:
        return "JsonSerializer()"


def _mask(value: Any, redactor: Redactor, found: set[str], depth: int = 0) -> Any:
    """``value`` with every value under a sensitive mapping key replaced by the mask.

    The text of each masked value goes into ``found`` (to scrub error messages of it). Unlike
    ``Redactor.redact`` every other value is left as it is (no ``repr`` of unknown objects), so
    the serializer still rejects what it cannot store; and a value with nothing to mask is
    returned as is, not copied.
    """
    if depth > 64:
        return value
    if isinstance(value, Mapping):
        copy: dict[Any, Any] | None = None if isinstance(value, dict) else dict(value)
        for key, item in value.items():
            if redactor.is_sensitive(key):
                found.update(redactor.secrets({key: item}))
                new = redactor.mask
            elif isinstance(item, Mapping | list | tuple):
                new = _mask(item, redactor, found, depth + 1)
            else:
                continue
            if new is not item:
                if copy is None:
                    copy = dict(value)
                copy[key] = new
        return value if copy is None else copy
    if isinstance(value, list | tuple):
        items = [_mask(item, redactor, found, depth + 1) if isinstance(item, Mapping | list | tuple) else item
                 for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return items if isinstance(value, list) else tuple(items)
    return value


def _as_redactor(redact: object) -> Redactor | None:
    if redact is False or redact is None:
        return None
    if redact is True:
        return as_redactor(None)
    try:
        return as_redactor(redact)  # type: ignore[arg-type]
    except TypeError as exc:
        raise TypeError(f"SqliteJournal redact: {exc}; or pass True (the default keys) or False") from None


# -- the file ------------------------------------------------------------------------------

_SCHEMA = """
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

_INSERT_RUN = (
    "INSERT OR IGNORE INTO runs (run_id, saga, correlation_id, backend, info, started_at, owner_host, owner_pid,"
    " owner_started) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_EVENT = (
    "INSERT INTO events (run_id, kind, at, step, step_index, phase, attempt, started_at, duration_ms, error_type,"
    " error_module, error_message, injected, status, payload, payload_state)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_FINISH_RUN = "UPDATE runs SET status = ?, finished_at = ?, attention = ? WHERE run_id = ?"

_DAMAGED_ADVICE = (
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


def damaged(path: Path, exc: BaseException) -> JournalError:
    """The error for a journal SQLite reports as damaged or not a database."""
    return JournalError(
        path, f"the file is damaged or is not a SQLite database ({exc}); " + _DAMAGED_ADVICE.format(path=path)
    )


def _create_file(path: Path) -> None:
    """Create the journal file readable and writable by its owner only (mode 0600)."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process created it meanwhile: open theirs
    except OSError as exc:
        raise JournalError(path, f"cannot create the file ({exc.strerror}); check the directory's permissions") from exc
    os.close(descriptor)


def connect(path: Path, *, write: bool, busy_timeout: float = 5.0) -> sqlite3.Connection:
    """Open (and for writing, create or upgrade) the journal at ``path``.

    Every problem is a :class:`JournalError` naming the file and what to do; a file that is
    not a sagakit journal, is damaged or comes from a newer sagakit is never written to.
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
    try:
        connection = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise JournalError(path, f"cannot open the file ({exc})") from exc
    try:
        _check_schema(connection, path, write=write)
    except BaseException:
        connection.close()
        raise
    return connection


def _check_schema(connection: sqlite3.Connection, path: Path, *, write: bool) -> None:
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
        return
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


def _create_schema(connection: sqlite3.Connection, path: Path) -> None:
    try:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("BEGIN IMMEDIATE")
        # Another process may have created the journal while we waited for the lock.
        if connection.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            for statement in _SCHEMA.split(";"):
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
        return run_id in _ACTIVE_RUNS
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


# -- the writer ----------------------------------------------------------------------------


class _Batch:
    """The events of one event-loop turn, and the runs waiting for their commit."""

    __slots__ = ("done", "error", "events", "finished", "loop", "started", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.loop = loop
        self.events: list[tuple[Any, ...]] = []
        self.started: list[tuple[Any, ...]] = []
        self.finished: list[tuple[Any, ...]] = []
        # One future per waiting run (not one shared future): a run cancelled while it waits
        # cancels its own future only.
        self.waiters: list[asyncio.Future[None]] = []
        self.done = False
        self.error: JournalError | None = None


class _Call:
    """A function to run with the writer's connection, between batches."""

    __slots__ = ("done", "function", "outcome")

    def __init__(self, function: Callable[[sqlite3.Connection], Any]) -> None:
        self.function = function
        self.done = threading.Event()
        self.outcome: tuple[bool, Any] = (False, None)


class _LoopState:
    """Per event loop: the batch being filled this turn and the last one handed to the writer."""

    __slots__ = ("batch", "inbox", "last")

    def __init__(self, inbox: queue.SimpleQueue[_Batch | _Call | None]) -> None:
        self.inbox = inbox
        self.batch: _Batch | None = None
        self.last: _Batch | None = None

    def flush(self) -> None:
        batch = self.batch
        if batch is not None:
            self.batch = None
            self.last = batch
            self.inbox.put(batch)


def _resolve(batch: _Batch) -> None:
    batch.done = True
    for waiter in batch.waiters:
        if not waiter.done():
            waiter.set_result(None)
    batch.waiters.clear()


class JournalStats:
    """What a journal's writer has done (updated by its thread; read it for monitoring).

    Attributes:
        commits: transactions committed.
        events: events committed.
        failures: commits that failed (their records were retried with the next one).
    """

    __slots__ = ("commits", "events", "failures")

    def __init__(self) -> None:
        self.commits = 0
        self.events = 0
        self.failures = 0

    def __repr__(self) -> str:
        return f"JournalStats(commits={self.commits}, events={self.events}, failures={self.failures})"


def _write_forever(
    connection: sqlite3.Connection,
    inbox: queue.SimpleQueue[_Batch | _Call | None],
    path: str,
    stats: JournalStats,
) -> None:
    """The writer thread: commit every waiting batch in one transaction, then wake their runs."""
    carried: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
    running = True
    while running:
        item = inbox.get()
        if item is None:
            break
        items = [item]
        while True:  # group commit: everything that queued up during the last commit
            try:
                more = inbox.get_nowait()
            except queue.Empty:
                break
            if more is None:
                running = False
                break
            items.append(more)
        batches = [entry for entry in items if isinstance(entry, _Batch)]
        if batches or carried[0] or carried[1]:
            error = _commit(connection, batches, carried, path, stats)
            for batch in batches:
                batch.error = error
                loop = batch.loop
                if loop is not None:
                    with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                        loop.call_soon_threadsafe(_resolve, batch)
        for entry in items:
            if isinstance(entry, _Call):
                try:
                    entry.outcome = (True, entry.function(connection))
                except BaseException as exc:
                    entry.outcome = (False, exc)
                entry.done.set()
    connection.close()


def _commit(
    connection: sqlite3.Connection,
    batches: Sequence[_Batch],
    carried: tuple[list[Any], list[Any], list[Any]],
    path: str,
    stats: JournalStats,
) -> JournalError | None:
    events, started, finished = carried
    for batch in batches:
        events.extend(batch.events)
        started.extend(batch.started)
        finished.extend(batch.finished)
    try:
        connection.execute("BEGIN IMMEDIATE")
        if started:
            connection.executemany(_INSERT_RUN, started)
        connection.executemany(_INSERT_EVENT, events)
        if finished:
            connection.executemany(_FINISH_RUN, finished)
        connection.execute("COMMIT")
    except sqlite3.Error as exc:
        try:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        # Keep the records: the next commit writes them first, so a later success still
        # means that everything before it is on disk.
        stats.failures += 1
        kind = "is damaged" if isinstance(exc, sqlite3.DatabaseError) and "malformed" in str(exc) else "failed"
        return JournalError(path, f"recording runs {kind} ({type(exc).__name__}: {exc}); the runs waiting for it fail")
    stats.commits += 1
    stats.events += len(events)
    events.clear()
    started.clear()
    finished.clear()
    return None


def _shutdown(inbox: queue.SimpleQueue[_Batch | _Call | None], thread: threading.Thread) -> None:
    if thread.is_alive():
        inbox.put(None)
        thread.join()


# -- the journal ---------------------------------------------------------------------------


class JournalRun(NamedTuple):
    """A run as the journal's ``runs`` table knows it (see :meth:`SqliteJournal.runs`).

    Attributes:
        run_id: the run.
        saga: the saga's name.
        correlation_id: the caller's correlation id.
        status: the final status, or ``None`` while the run is unfinished.
        started_at: epoch seconds.
        attention: why the run needs a person (its compensation failed), else ``None``.
        owner: the process that ran (or last recovered) it.
        live: whether that process may still be running it (an unfinished run that is not
            live was interrupted and is waiting for :func:`sagakit.recover`).
    """

    run_id: str
    saga: str
    correlation_id: str | None
    status: str | None
    started_at: float
    attention: str | None
    owner: Owner
    live: bool


class SqliteJournal:
    """A durable record of saga runs in a SQLite file, and the observer that writes it.

    Pass it to ``Saga(..., journal=...)`` or ``saga.run(..., journal=...)``. A step's
    completion (with the data its compensation needs) is committed before the next step
    starts; the events of concurrent runs share commits. After a crash,
    ``await sagakit.recover(journal, sagas=[...])`` rolls back what was left unfinished.

    One journal may be shared by many sagas, event loops, threads and processes (WAL mode and
    a busy timeout let processes take turns).

    Args:
        path: the journal file; created (mode 0600) if missing, in a directory that exists.
        durability: ``"full"`` (the default) commits with ``fsync`` (``PRAGMA synchronous=FULL``),
            so a run's record survives a power cut; ``"normal"`` skips the ``fsync`` of each
            commit: records survive a crash of the process or kernel, not of the machine;
            ``"off"`` never syncs and may damage the file on a power cut (tests, benchmarks).
        serializer: turns payloads into text (default :class:`JsonSerializer`).
        redact: ``True`` masks values under sensitive keys (the defaults of
            :mod:`sagakit.redaction`) before they are stored; a
            :class:`~sagakit.redaction.Redactor` or key names choose the keys; ``False``
            stores payloads as given.
        busy_timeout: seconds to wait for another process holding the file's write lock.

    Raises:
        JournalError: the path's directory is missing, the file is read-only, damaged, not
            a journal, or from a newer sagakit. The message says what to do.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "full",
        serializer: Serializer | None = None,
        redact: bool | Redactor | Iterable[str] = True,
        busy_timeout: float = 5.0,
    ) -> None:
        self.path = journal_path(path, "SqliteJournal path")
        if durability not in _SYNCHRONOUS:
            raise ValueError(f"SqliteJournal durability: expected 'full', 'normal' or 'off', got {durability!r}")
        if serializer is None:
            serializer = JsonSerializer()
        elif not callable(getattr(serializer, "dumps", None)) or not callable(getattr(serializer, "loads", None)):
            raise TypeError(
                f"SqliteJournal serializer: expected an object with dumps(value) and loads(payload), got {serializer!r}"
            )
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, int | float) or busy_timeout < 0:
            raise TypeError(f"SqliteJournal busy_timeout: expected seconds >= 0, got {busy_timeout!r}")
        self.durability: Durability = durability
        self.serializer: Serializer = serializer
        self.redactor = _as_redactor(redact)
        self.busy_timeout = float(busy_timeout)
        self._name = str(self.path)
        connection = connect(self.path, write=True, busy_timeout=self.busy_timeout)
        connection.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[durability]}")
        self._inbox: queue.SimpleQueue[_Batch | _Call | None] = queue.SimpleQueue()
        #: What the writer has done so far: commits, events, failures.
        self.stats = JournalStats()
        self._thread = threading.Thread(
            target=_write_forever, args=(connection, self._inbox, self._name, self.stats), name="sagakit-journal",
            daemon=True,
        )
        self._thread.start()
        # At interpreter exit (or when the journal is dropped), commit what is queued.
        self._finalizer = weakref.finalize(self, _shutdown, self._inbox, self._thread)
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()
        self._cached: tuple[asyncio.AbstractEventLoop | None, _LoopState | None] = (None, None)
        self._lock = threading.Lock()
        self._poisoned: dict[str, PayloadError] = {}
        self._secrets: dict[str, set[str]] = {}
        self._tokens: dict[str, contextvars.Token[str | None]] = {}
        self._closed = False

    # -- observing ------------------------------------------------------------------------

    def _state(self, loop: asyncio.AbstractEventLoop) -> _LoopState:
        cached_loop, cached_state = self._cached
        if cached_loop is loop and cached_state is not None:
            return cached_state
        with self._lock:
            state = self._states.get(loop)
            if state is None:
                state = self._states[loop] = _LoopState(self._inbox)
        self._cached = (loop, state)
        return state

    def __call__(self, event: Event, /) -> None:
        """Queue ``event`` for the next group commit (called by the engine; never blocks)."""
        kind = event.kind
        if kind is _K.STEP_STARTED or self._closed:
            return  # an attempt is recorded when it ends: a start holds nothing recovery needs
        run_id = event.run_id
        redactor = self.redactor
        payload: str | bytes | None = None
        payload_state: str | None = None
        if kind in _PAYLOAD_KINDS:
            payload, payload_state = self._encode(event, redactor)
        error = event.error
        error_type = error_module = message = None
        if error is not None:
            error_type = type(error).__name__
            error_module = type(error).__module__
            if isinstance(error, RecordedError):
                error_module = error.type_module
            message = redactor.message(error, self._secrets.get(run_id, ())) if redactor else _message(error)
        row = (run_id, _KIND_TEXT[kind], event.at, event.step, event.index, event.phase, event.attempt,
               event.started_at, event.duration_ms, error_type, error_module, message, event.injected,
               event.status, payload, payload_state)
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        state: _LoopState | None = None
        if loop is None:  # called outside a loop: write it on its own
            batch = _Batch(None)
        else:
            state = self._state(loop)
            pending = state.batch
            if pending is None:
                pending = state.batch = _Batch(loop)
                loop.call_soon(state.flush)
            batch = pending
        batch.events.append(row)
        if kind is _K.RUN_STARTED:
            owner = current_owner()
            info = event.info or {}
            batch.started.append((run_id, event.saga, event.correlation_id, str(info.get("backend", "local")),
                                  _info_text(info), event.at, owner.host, owner.pid, owner.started))
            _ACTIVE_RUNS.add(run_id)
            self._tokens[run_id] = _CURRENT_RUN.set(run_id)
        elif kind is _K.RUN_FINISHED:
            status = event.status
            batch.finished.append((status, event.at, message if status == "compensation_failed" else None, run_id))
            _ACTIVE_RUNS.discard(run_id)
            self._secrets.pop(run_id, None)
            self._poisoned.pop(run_id, None)
            token = self._tokens.pop(run_id, None)
            if token is not None:
                with contextlib.suppress(ValueError):  # finished in another context than it started
                    _CURRENT_RUN.reset(token)
        if state is None:
            self._inbox.put(batch)

    def _encode(self, event: Event, redactor: Redactor | None) -> tuple[str | bytes | None, str | None]:
        data = event.data
        if redactor is not None and isinstance(data, Mapping | list | tuple):
            found: set[str] = set()
            data = _mask(data, redactor, found)
            if found:
                self._secrets.setdefault(event.run_id, set()).update(found)
        try:
            return self.serializer.dumps(data), "stored"
        except Exception as exc:
            if event.kind is not _K.RUN_FINISHED:
                self._poisoned[event.run_id] = PayloadError(
                    path=self._name, step=event.step, value_type=_unstorable_type(data, exc),
                    reason=f"{type(exc).__name__}: {exc}",
                )
            return None, "unserializable"

    async def settle(self) -> None:
        """Return once every event observed so far on this loop is committed.

        Raises:
            PayloadError: the running run's last payload could not be serialised.
            JournalError: the commit failed (the run fails and rolls back), or the journal
                is closed.
        """
        if self._poisoned:
            run_id = _CURRENT_RUN.get()
            if run_id is not None:
                poisoned = self._poisoned.pop(run_id, None)
                if poisoned is not None:
                    raise poisoned
        if self._closed:
            raise JournalError(self.path, "is closed; open a new SqliteJournal to record more runs")
        state = self._state(asyncio.get_running_loop())
        batch = state.batch if state.batch is not None else state.last
        if batch is None:
            return
        if not batch.done:
            waiter = batch.loop.create_future()  # type: ignore[union-attr]
            batch.waiters.append(waiter)
            await waiter
        if batch.error is not None:
            raise JournalError(self.path, batch.error.reason) from batch.error

    # -- the writer's connection ------------------------------------------------------------

    def _call_sync(self, function: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._closed or not self._thread.is_alive():
            raise JournalError(self.path, "is closed; open a new SqliteJournal")
        call = _Call(function)
        self._inbox.put(call)
        call.done.wait()
        ok, value = call.outcome
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    async def _call(self, function: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``function(connection)`` on the writer thread, after what is queued before it."""
        loop = asyncio.get_running_loop()
        self._state(loop).flush()
        return await loop.run_in_executor(None, self._call_sync, function)

    # -- reading ----------------------------------------------------------------------------

    def runs(self, *, unfinished: bool = False, attention: bool = False) -> list[JournalRun]:
        """The runs recorded in this journal, oldest first.

        Args:
            unfinished: only runs without a recorded end (in flight, or interrupted).
            attention: only runs whose rollback failed (``compensation_failed``).
        """
        clauses = []
        if unfinished:
            clauses.append("status IS NULL")
        if attention:
            clauses.append("status = 'compensation_failed'")
        where = f" WHERE {' OR '.join(clauses)}" if clauses else ""
        query = (
            "SELECT run_id, saga, correlation_id, status, started_at, attention, owner_host, owner_pid, owner_started"
            f" FROM runs{where} ORDER BY rowid"
        )
        rows = self._call_sync(lambda connection: connection.execute(query).fetchall())
        result = []
        for run_id, saga, correlation_id, status, started_at, attention_text, host, pid, started in rows:
            owner = Owner(host or "", pid or 0, started or "")
            live = status is None and owner_alive(owner, run_id)
            result.append(JournalRun(run_id, saga, correlation_id, status, started_at, attention_text, owner, live))
        return result

    def history(self, **options: Any) -> RunHistory:
        """The finished runs in this journal; see :func:`load_history`."""
        self._call_sync(lambda connection: None)  # let queued records land first
        return load_history(self.path, serializer=self.serializer, **options)

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Commit what is queued and stop the writer. Runs still going fail at their next step."""
        if self._closed:
            return
        with self._lock:
            states = list(self._states.values())
        for state in states:
            state.flush()
        self._closed = True
        self._finalizer()

    def __enter__(self) -> SqliteJournal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteJournal({self._name!r}, durability={self.durability!r})"


def _message(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:
        return f"<{type(error).__name__}: message unavailable>"


def _info_text(info: Mapping[str, Any]) -> str | None:
    if not info:
        return None
    return json.dumps(dict(info), default=str, separators=(",", ":"))


def _unstorable_type(value: Any, exc: Exception) -> str:
    """The type the serializer choked on: named in JSON's message, else the payload's own type."""
    text = str(exc)
    if text.startswith("Object of type ") and " is not " in text:
        return text[len("Object of type ") : text.index(" is not ")]
    return type(value).__name__


# -- reading a journal back ----------------------------------------------------------------

_SELECT_RUNS = "SELECT run_id, saga, correlation_id, backend, info, status FROM runs"
_SELECT_EVENTS = (
    "SELECT run_id, kind, at, step, step_index, phase, attempt, started_at, duration_ms, error_type, error_module,"
    " error_message, injected, status, payload, payload_state FROM events"
)


@dataclass(slots=True)
class RecordedRun:
    """One run's records, as read from a journal."""

    run_id: str
    saga: str
    correlation_id: str | None
    backend: str
    info: dict[str, Any]
    status: str | None
    events: list[Event]
    payload_states: list[str | None]


def read_runs(
    connection: sqlite3.Connection,
    path: Path,
    *,
    serializer: Serializer | None = None,
    run_ids: Sequence[str] | None = None,
    payloads: bool = True,
) -> list[RecordedRun]:
    """The runs of a journal with their events, in the order their last event was recorded."""
    decode = (serializer or JsonSerializer()).loads if payloads else None
    try:
        if run_ids is None:
            run_rows = connection.execute(_SELECT_RUNS).fetchall()
            event_rows = connection.execute(_SELECT_EVENTS + " ORDER BY seq").fetchall()
        else:
            marks = ", ".join("?" for _ in run_ids)
            run_rows = connection.execute(f"{_SELECT_RUNS} WHERE run_id IN ({marks})", list(run_ids)).fetchall()
            event_rows = connection.execute(
                f"{_SELECT_EVENTS} WHERE run_id IN ({marks}) ORDER BY seq", list(run_ids)
            ).fetchall()
    except sqlite3.DatabaseError as exc:
        raise damaged(path, exc) from exc
    runs: dict[str, RecordedRun] = {}
    for run_id, saga, correlation_id, backend, info, status in run_rows:
        runs[run_id] = RecordedRun(run_id, saga, correlation_id, backend, json.loads(info) if info else {},
                                   status, [], [])
    order: dict[str, int] = {}
    for position, row in enumerate(event_rows):
        run = runs.get(row[0])
        if run is None:
            continue
        (run_id, kind, at, step, index, phase, attempt, started_at, duration_ms, error_type, error_module,
         error_message, injected, status, payload, payload_state) = row
        event_kind = _KIND_OF.get(kind)
        if event_kind is None:
            raise JournalError(path, f"holds an event kind {kind!r} this sagakit does not know: upgrade sagakit")
        data = None
        if payload is not None and decode is not None:
            try:
                data = decode(payload)
            except Exception as exc:
                raise JournalError(
                    path, f"cannot decode a payload of run {run_id} ({type(exc).__name__}: {exc}); was it written "
                    "with another serializer? pass the same one (serializer=...)",
                ) from exc
        error = recorded_error(error_type, error_module, error_message) if error_type is not None else None
        run.events.append(Event(event_kind, run_id, run.saga, at, step, index, phase, attempt, started_at,
                                duration_ms, error, bool(injected), data, status, run.correlation_id,
                                run.info if event_kind is _K.RUN_STARTED else None))
        run.payload_states.append(payload_state)
        order[run_id] = position
    return sorted((run for run in runs.values() if run.events), key=lambda run: order[run.run_id])


def _definitions(sagas: Iterable[Saga] | Mapping[str, Saga] | None, what: str) -> dict[str, Saga]:
    from sagakit.saga import Saga

    if sagas is None:
        return {}
    if isinstance(sagas, Saga):
        sagas = [sagas]
    items = list(sagas.items()) if isinstance(sagas, Mapping) else [(getattr(s, "name", None), s) for s in sagas]
    found: dict[str, Saga] = {}
    for name, saga in items:
        if not isinstance(saga, Saga):
            raise TypeError(f"{what}: expected Saga objects, got {type(saga).__name__} {saga!r}")
        if name in found and found[name] is not saga:
            raise ValueError(f"{what}: two different sagas are named {name!r}; names identify runs in the journal")
        found[str(name)] = saga
    return found


def run_from_record(record: RecordedRun, definition: Saga | None = None) -> Run:
    """The :class:`~sagakit.Run` a finished record stands for."""
    return Run.from_events(record.events, definition=definition, backend=record.backend, info=dict(record.info))


def load_history(
    path: str | os.PathLike[str],
    *,
    saga: str | Saga | None = None,
    sagas: Iterable[Saga] | Mapping[str, Saga] | None = None,
    payloads: bool = True,
    serializer: Serializer | None = None,
) -> RunHistory:
    """The finished runs recorded in a journal, as a :class:`~sagakit.RunHistory`.

    The ``runs`` and ``steps`` frames are the ones the runs had when they ran, so an analysis
    survives a kernel restart. Errors come back as :class:`RecordedError` (same type name,
    scrubbed message); payloads as the serializer stored them (redacted, JSON types).
    Unfinished runs are left out: see :meth:`SqliteJournal.runs` and :func:`sagakit.recover`.

    Args:
        path: the journal file.
        saga: only the runs of this saga (a name or a :class:`~sagakit.Saga`).
        sagas: definitions to attach to the runs (``run.definition``), matched by name.
        payloads: decode stored payloads (``run.result``, event ``data``); ``False`` is faster.
        serializer: the serializer the journal was written with (default JSON).

    Raises:
        JournalError: the file is missing, damaged, not a journal or from a newer sagakit.
    """
    file = journal_path(path, "load_history path")
    definitions = _definitions(sagas, "load_history sagas")
    name = None
    if saga is not None:
        name = saga if isinstance(saga, str) else getattr(saga, "name", None)
        if not isinstance(name, str):
            raise TypeError(f"load_history saga: expected a saga name or a Saga, got {saga!r}")
        if not isinstance(saga, str):
            definitions.setdefault(name, saga)  # type: ignore[arg-type]
    connection = connect(file, write=False)
    try:
        records = read_runs(connection, file, serializer=serializer, payloads=payloads)
    finally:
        connection.close()
    runs = []
    for record in records:
        if record.status is None or (name is not None and record.saga != name):
            continue
        if record.events[-1].kind is not _K.RUN_FINISHED:
            continue
        runs.append(run_from_record(record, definitions.get(record.saga)))
    return RunHistory(runs)


# -- Parquet -------------------------------------------------------------------------------

_PARQUET_FORMAT = b"sagakit.events/1"
_PARQUET_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "string"),
    ("saga", "string"),
    ("correlation_id", "string"),
    ("backend", "string"),
    ("kind", "string"),
    ("at", "float64"),
    ("step", "string"),
    ("index", "int64"),
    ("phase", "string"),
    ("attempt", "int64"),
    ("started_at", "float64"),
    ("duration_ms", "float64"),
    ("error_type", "string"),
    ("error_module", "string"),
    ("error_message", "string"),
    ("injected", "bool_"),
    ("status", "string"),
)


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise ImportError(
            "saving and loading run histories as Parquet needs pyarrow: pip install 'sagakit[parquet]'"
        ) from exc
    return pyarrow


def history_to_parquet(history: RunHistory, path: str | os.PathLike[str], *, redact: bool | Redactor = True) -> None:
    """Save a history's runs to one Parquet file, to share an analysis.

    Every event of every run is one row (no payloads: data stays out of shared files), so
    :func:`history_from_parquet` rebuilds the same ``runs`` and ``steps`` frames. Error messages
    are scrubbed of the runs' secrets unless ``redact=False``.

    Raises:
        ImportError: pyarrow is missing (``pip install 'sagakit[parquet]'``).
    """
    pa = _pyarrow()
    file = journal_path(path, "to_parquet path")
    if not file.parent.is_dir():
        raise FileNotFoundError(f"to_parquet path {file}: the directory {file.parent} does not exist; create it first")
    redactor = _as_redactor(redact)
    columns: dict[str, list[Any]] = {name: [] for name, _ in _PARQUET_COLUMNS}
    for run in history:
        secrets = redactor.event_secrets(run.events) if redactor is not None else frozenset()
        for event in run.events:
            error = event.error
            columns["run_id"].append(event.run_id)
            columns["saga"].append(event.saga)
            columns["correlation_id"].append(event.correlation_id)
            columns["backend"].append(run.backend)
            columns["kind"].append(_KIND_TEXT[event.kind])
            columns["at"].append(event.at)
            columns["step"].append(event.step)
            columns["index"].append(event.index)
            columns["phase"].append(event.phase)
            columns["attempt"].append(event.attempt)
            columns["started_at"].append(event.started_at)
            columns["duration_ms"].append(event.duration_ms)
            columns["error_type"].append(type(error).__name__ if error is not None else None)
            columns["error_module"].append(
                (error.type_module if isinstance(error, RecordedError) else type(error).__module__)
                if error is not None else None
            )
            columns["error_message"].append(
                (redactor.message(error, secrets) if redactor is not None else _message(error))
                if error is not None else None
            )
            columns["injected"].append(bool(event.injected))
            columns["status"].append(event.status)
    schema = pa.schema([(name, getattr(pa, kind)()) for name, kind in _PARQUET_COLUMNS],
                       metadata={b"sagakit.format": _PARQUET_FORMAT})
    table = pa.table(columns, schema=schema)
    pa.parquet.write_table(table, file)


def history_from_parquet(path: str | os.PathLike[str], *, sagas: Iterable[Saga] | Mapping[str, Saga] | None = None) -> RunHistory:
    """Load a history saved with :func:`history_to_parquet` (``RunHistory.to_parquet``).

    Args:
        path: the Parquet file.
        sagas: definitions to attach to the runs, matched by saga name.

    Raises:
        ImportError: pyarrow is missing (``pip install 'sagakit[parquet]'``).
        ValueError: the file is not a sagakit run history.
    """
    pa = _pyarrow()
    file = journal_path(path, "from_parquet path")
    definitions = _definitions(sagas, "from_parquet sagas")
    if not file.is_file():
        raise FileNotFoundError(f"from_parquet path {file}: no such file")
    try:
        table = pa.parquet.read_table(file)
    except (OSError, pa.ArrowException) as exc:
        raise ValueError(f"from_parquet path {file}: not a readable Parquet file ({exc})") from exc
    metadata = table.schema.metadata or {}
    if metadata.get(b"sagakit.format") != _PARQUET_FORMAT:
        found = metadata.get(b"sagakit.format", b"none").decode(errors="replace")
        raise ValueError(
            f"from_parquet path {file}: not a sagakit run history (format {found!r}, expected "
            f"{_PARQUET_FORMAT.decode()!r}); write one with RunHistory.to_parquet()"
        )
    columns = {name: table.column(name).to_pylist() for name, _ in _PARQUET_COLUMNS}
    grouped: dict[str, list[Event]] = {}
    backends: dict[str, str] = {}
    for values in zip(*(columns[name] for name, _ in _PARQUET_COLUMNS), strict=True):
        (run_id, saga, correlation_id, backend, kind, at, step, index, phase, attempt, started_at, duration_ms,
         error_type, error_module, error_message, injected, status) = values
        error = recorded_error(error_type, error_module, error_message) if error_type is not None else None
        grouped.setdefault(run_id, []).append(
            Event(_KIND_OF[kind], run_id, saga, at, step, index, phase, attempt, started_at, duration_ms, error,
                  injected, None, status, correlation_id, {"backend": backend} if kind == "run_started" else None)
        )
        backends[run_id] = backend
    return RunHistory(
        Run.from_events(events, definition=definitions.get(events[0].saga), backend=backends[run_id])
        for run_id, events in grouped.items()
    )


# -- recovery (implemented in sagakit.recovery) --------------------------------------------


async def recover(
    journal: SqliteJournal | str | os.PathLike[str],
    sagas: Iterable[Saga] | Mapping[str, Saga],
    **options: Any,
) -> Recovery:
    """Roll back the runs a crash left unfinished; see :func:`sagakit.recovery.recover`."""
    from sagakit.recovery import recover as _recover

    return await _recover(journal, sagas, **options)
