"""The SQLite journal's writer: :class:`SqliteJournal`, one observer of the event stream.

The package docstring (:mod:`sagakit.journal`) describes what is recorded and when.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import os
import queue
import sqlite3
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from sagakit._sync import run_sync
from sagakit.errors import JournalError, PayloadError
from sagakit.events import Event, EventKind, Observer
from sagakit.journal._file import (
    ACTIVE_RUNS,
    FINISH_RUN,
    INSERT_EVENT,
    INSERT_RUN,
    SYNCHRONOUS,
    Durability,
    Owner,
    connect,
    current_owner,
    damaged,
    journal_path,
    owner_alive,
)
from sagakit.journal._history import (
    RecordedError,
    load_history,
)
from sagakit.journal._payload import (
    JsonSerializer,
    Serializer,
    error_text,
    journal_redactor,
    masked_dumps,
    unstorable_type,
)
from sagakit.redaction import Redactor
from sagakit.runs import Run, RunHistory

if TYPE_CHECKING:
    from sagakit.saga import Saga

__all__ = ["JournalRun", "JournalStats", "SqliteJournal"]

_T = TypeVar("_T")
_K = EventKind
_STEP_STARTED = _K.STEP_STARTED
_RUN_STARTED = _K.RUN_STARTED
_RUN_FINISHED = _K.RUN_FINISHED
_RUN_RESUMED = _K.RUN_RESUMED
# Events whose payload is stored: the run's input, a completed step's output (what its
# compensation receives) and the run's result.
_PAYLOAD_KINDS = frozenset({_K.RUN_STARTED, _K.STEP_SUCCEEDED, _K.RUN_FINISHED})
_KIND_TEXT: dict[EventKind, str] = {kind: kind.value for kind in EventKind}
# Payloads that hold no mapping, so nothing to mask.
_PLAIN = frozenset({str, int, float, bool, type(None)})

# SQLite takes the busy timeout in milliseconds as a C int; a day is more than anyone waits.
_MAX_BUSY_TIMEOUT = 86400.0

# The run whose code is running in this task: lets settle() fail exactly the run whose
# payload could not be stored, while other runs share the same batches.
_CURRENT_RUN: contextvars.ContextVar[str | None] = contextvars.ContextVar("sagakit_journal_run", default=None)


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
        failures: commits that failed (their records were retried with the next one, or at close).
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
    lost: list[JournalError],
) -> None:
    """The writer thread: commit every waiting batch in one transaction, then wake their runs.

    Records whose commit failed are carried to the next commit; when the writer stops, it
    commits them one last time, and if that fails too it leaves the error in ``lost`` for
    :meth:`SqliteJournal.close` to raise: records are never dropped silently.
    """
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
        if batches or any(carried):
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
    if any(carried):
        error = _commit(connection, (), carried, path, stats)
        if error is not None:
            runs = sorted({row[0] for row in carried[0]} | {row[-1] for row in carried[2]})
            shown = ", ".join(runs[:5]) + (f" and {len(runs) - 5} more" if len(runs) > 5 else "")
            lost.append(JournalError(
                path, f"could not record the last {len(carried[0])} event(s) when closing ({error.reason.split(';')[0]})"
                f"; runs {shown} look unfinished in the file: check them before running sagakit.recover()",
            ))
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
            connection.executemany(INSERT_RUN, started)
        connection.executemany(INSERT_EVENT, events)
        if finished:
            connection.executemany(FINISH_RUN, finished)
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


def _shutdown(
    inbox: queue.SimpleQueue[_Batch | _Call | None], thread: threading.Thread, lost: list[JournalError]
) -> JournalError | None:
    """Stop the writer once it has committed what is queued; return the error if records were lost."""
    if thread.is_alive():
        inbox.put(None)
        thread.join()
    return lost[0] if lost else None


def _shutdown_at_exit(
    inbox: queue.SimpleQueue[_Batch | _Call | None], thread: threading.Thread, lost: list[JournalError]
) -> None:
    """:func:`_shutdown` for a journal never closed: at interpreter exit nobody can catch an error, so say it."""
    error = _shutdown(inbox, thread, lost)
    if error is not None:
        sys.stderr.write(f"sagakit: {error}\n")


# -- the journal ---------------------------------------------------------------------------


class JournalRun(NamedTuple):
    """A run as the journal's ``runs`` table knows it (see :meth:`SqliteJournal.runs`).

    Attributes:
        run_id: the run.
        saga: the saga's name.
        correlation_id: the caller's correlation id.
        status: the final status, or ``None`` while the run is unfinished.
        started_at: epoch seconds.
        attention: why the run needs a person (a compensation failed, or a step after the pivot
            is stuck), else ``None``.
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


class _RunState:
    """What a journal keeps about one run in flight."""

    __slots__ = ("redactor", "secrets", "token")

    def __init__(self, redactor: Redactor | None) -> None:
        self.redactor = redactor
        # The text of the values masked in the run's payloads, to scrub its error messages of.
        self.secrets: set[str] | None = None
        self.token: contextvars.Token[str | None] | None = None


class SqliteJournal:
    """A durable record of saga runs in a SQLite file, and the observer that writes it.

    Pass it to ``Saga(..., journal=...)`` or ``saga.run(..., journal=...)``, or call
    :meth:`attach`. A step's completion (with the data its compensation needs) is committed
    before the next step starts; the events of concurrent runs share commits. After a crash,
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
        redact: what to mask in payloads before they are stored. ``None`` (the default): the
            keys of the run's saga (``saga.redactor``) when the journal knows the saga (see
            :meth:`bind`), else the defaults of :mod:`sagakit.redaction`; ``True``: always
            the defaults; a :class:`~sagakit.redaction.Redactor` or key names: those keys for
            every saga; ``False``: store payloads as given.
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
        redact: bool | Redactor | Iterable[str] | None = None,
        busy_timeout: float = 5.0,
    ) -> None:
        self.path = journal_path(path, "SqliteJournal path")
        if not isinstance(durability, str) or durability not in SYNCHRONOUS:
            raise ValueError(f"SqliteJournal durability: expected 'full', 'normal' or 'off', got {durability!r}")
        if serializer is None:
            serializer = JsonSerializer()
        elif not callable(getattr(serializer, "dumps", None)) or not callable(getattr(serializer, "loads", None)):
            raise TypeError(
                f"SqliteJournal serializer: expected an object with dumps(value) and loads(payload), got {serializer!r}"
            )
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, int | float):
            raise TypeError(f"SqliteJournal busy_timeout: expected a number of seconds >= 0, got {busy_timeout!r}")
        if not 0 <= busy_timeout <= _MAX_BUSY_TIMEOUT:  # also refuses nan
            raise ValueError(
                f"SqliteJournal busy_timeout: expected a number of seconds from 0 to {_MAX_BUSY_TIMEOUT:g} (a day), "
                f"got {busy_timeout!r}"
            )
        self.durability: Durability = durability
        self.serializer: Serializer = serializer
        #: The redactor for runs of sagas the journal does not know (``None``: no masking).
        self.redactor = journal_redactor(True if redact is None else redact)
        self._saga_redactors = redact is None
        self.busy_timeout = float(busy_timeout)
        self._name = str(self.path)
        connection = connect(self.path, write=True, busy_timeout=self.busy_timeout)
        connection.execute(f"PRAGMA synchronous = {SYNCHRONOUS[durability]}")
        self._inbox: queue.SimpleQueue[_Batch | _Call | None] = queue.SimpleQueue()
        #: What the writer has done so far: commits, events, failures.
        self.stats = JournalStats()
        self._lost: list[JournalError] = []
        self._thread = threading.Thread(
            target=_write_forever, args=(connection, self._inbox, self._name, self.stats, self._lost),
            name="sagakit-journal", daemon=True,
        )
        self._thread.start()
        # At interpreter exit (or when the journal is dropped), commit what is queued.
        self._finalizer = weakref.finalize(self, _shutdown_at_exit, self._inbox, self._thread, self._lost)
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()
        self._cached: tuple[asyncio.AbstractEventLoop | None, _LoopState | None] = (None, None)
        self._lock = threading.Lock()
        self._runs: dict[str, _RunState] = {}
        self._poisoned: dict[str, PayloadError] = {}
        # Weakly: binding a saga must not keep it (and its run history) alive.
        self._sagas: dict[str, weakref.ReferenceType[Saga]] = {}
        self._closed = False

    # -- sagas ------------------------------------------------------------------------------

    def bind(self, saga: Saga) -> None:
        """Mask the payloads of runs of sagas named ``saga.name`` with ``saga.redactor``.

        Only when the journal was created without ``redact=``. The saga's ``redactor`` is read
        when each run starts; the last saga bound under a name wins. :meth:`attach` and
        :func:`sagakit.recover` bind their sagas.
        """
        name = getattr(saga, "name", None)
        if not isinstance(name, str) or not hasattr(saga, "redactor"):
            raise TypeError(f"SqliteJournal.bind: expected a sagakit.Saga, got {saga!r}")
        self._sagas[name] = weakref.ref(saga)

    def attach(self, saga: Saga) -> Callable[[], None]:
        """Record every run of ``saga`` with its redactor (see :meth:`bind`); returns a function that detaches."""
        observe = getattr(saga, "observe", None)
        if not callable(observe):
            raise TypeError(f"SqliteJournal.attach: expected a sagakit.Saga, got {saga!r}")
        self.bind(saga)
        unobserve = observe(self)
        name = saga.name

        def detach() -> None:
            unobserve()
            ref = self._sagas.get(name)
            if ref is not None and ref() is saga:
                del self._sagas[name]

        return detach

    def _redactor_for(self, saga: str) -> Redactor | None:
        if self._saga_redactors:
            ref = self._sagas.get(saga)
            redactor = getattr(ref(), "redactor", None) if ref is not None else None
            if isinstance(redactor, Redactor):
                return redactor
        return self.redactor

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
        if kind is _STEP_STARTED or self._closed:
            return  # an attempt is recorded when it ends: a start holds nothing recovery needs
        run_id = event.run_id
        run = self._runs.get(run_id)
        if run is None:
            run = self._runs[run_id] = _RunState(self._redactor_for(event.saga))
        payload: str | bytes | None = None
        payload_state: str | None = None
        if kind in _PAYLOAD_KINDS:
            payload, payload_state = self._encode(event, run)
        error = event.error
        error_type = error_module = message = None
        if error is not None:
            error_type = type(error).__name__
            error_module = error.type_module if isinstance(error, RecordedError) else type(error).__module__
            redactor = run.redactor
            message = redactor.message(error, run.secrets or ()) if redactor is not None else error_text(error)
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
            cached_loop, state = self._cached
            if cached_loop is not loop or state is None:
                state = self._state(loop)
            pending = state.batch
            if pending is None:
                pending = state.batch = _Batch(loop)
                loop.call_soon(state.flush)
            batch = pending
        batch.events.append(row)
        if kind is _RUN_STARTED:
            owner = current_owner()
            info = event.info or {}
            batch.started.append((run_id, event.saga, event.correlation_id, str(info.get("backend", "local")),
                                  _info_text(info), event.at, owner.host, owner.pid, owner.started))
            ACTIVE_RUNS.add(run_id)
            run.token = _CURRENT_RUN.set(run_id)
        elif kind is _RUN_RESUMED:
            # The run is unfinished again until its new end: a crash meanwhile leaves it to recover().
            batch.finished.append((None, None, None, run_id))
            ACTIVE_RUNS.add(run_id)
            run.token = _CURRENT_RUN.set(run_id)
        elif kind is _RUN_FINISHED:
            status = event.status
            needs_attention = status == "compensation_failed" or status == "stuck"
            batch.finished.append((status, event.at, message if needs_attention else None, run_id))
            ACTIVE_RUNS.discard(run_id)
            self._runs.pop(run_id, None)
            self._poisoned.pop(run_id, None)
            if run.token is not None:
                with contextlib.suppress(ValueError):  # finished in another context than it started
                    _CURRENT_RUN.reset(run.token)
        if state is None:
            self._inbox.put(batch)

    def _encode(self, event: Event, run: _RunState) -> tuple[str | bytes | None, str | None]:
        data = event.data
        redactor = run.redactor
        if redactor is not None and type(data) not in _PLAIN:
            found: set[str] = set()
            try:
                return masked_dumps(self.serializer, data, redactor, found), "stored"
            except Exception as exc:
                return self._unstorable(event, data, exc)
            finally:
                if found:
                    if run.secrets is None:
                        run.secrets = set()
                    run.secrets.update(found)
        try:
            return self.serializer.dumps(data), "stored"
        except Exception as exc:
            return self._unstorable(event, data, exc)

    def _unstorable(self, event: Event, data: Any, exc: Exception) -> tuple[None, str]:
        if event.kind is not _RUN_FINISHED:
            self._poisoned[event.run_id] = PayloadError(
                path=self._name, step=event.step, value_type=unstorable_type(data, exc),
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
            attention: only runs that need an operator (``compensation_failed`` or ``stuck``).
        """
        for name, value in (("unfinished", unfinished), ("attention", attention)):
            if not isinstance(value, bool):
                raise TypeError(f"SqliteJournal.runs {name}: expected True or False, got {value!r}")
        clauses = []
        if unfinished:
            clauses.append("status IS NULL")
        if attention:
            clauses.append("status IN ('compensation_failed', 'stuck')")
        where = f" WHERE {' OR '.join(clauses)}" if clauses else ""
        query = (
            "SELECT run_id, saga, correlation_id, status, started_at, attention, owner_host, owner_pid, owner_started"
            f" FROM runs{where} ORDER BY rowid"
        )
        try:
            rows = self._call_sync(lambda connection: connection.execute(query).fetchall())
        except sqlite3.DatabaseError as exc:
            raise damaged(self.path, exc) from exc
        result = []
        for run_id, saga, correlation_id, status, started_at, attention_text, host, pid, started in rows:
            owner = Owner(host or "", pid or 0, started or "")
            live = status is None and owner_alive(owner, run_id)
            result.append(JournalRun(run_id, saga, correlation_id, status, started_at, attention_text, owner, live))
        return result

    async def resume(self, run_id: str, saga: Saga, *, observers: Iterable[Observer] = ()) -> Run:
        """Finish a run that needs an operator, once its cause is fixed; returns the finished run.

        A ``stuck`` run retries its pending step and goes on forward; a ``compensation_failed``
        run retries its failed compensations and goes on with the rollback; an interrupted run
        (its process died) is carried on as :func:`sagakit.recover` would. Nothing that already
        succeeded runs again. The run continues in the same record (a ``run_resumed`` event, then
        what it did), counted in ``run.info["resumed"]`` and the ``resumed`` column, and is added
        to ``saga.history``.

        Args:
            run_id: the run (``python -m sagakit runs`` lists them).
            saga: the saga the run belongs to, with the same steps.
            observers: also send the resumed run's events to these observers.

        Raises:
            ResumeRefused: the run is unknown, ended ``completed``, ``compensated`` or
                ``cancelled``, still runs in another process, or ``saga`` does not match its
                recorded steps. Nothing was changed.
            JournalError: the journal cannot be read or written.
        """
        from sagakit.journal._carry import resume

        return await resume(self, run_id, saga, observers=observers)

    def resume_sync(self, run_id: str, saga: Saga, *, observers: Iterable[Observer] = ()) -> Run:
        """:meth:`resume` from synchronous code, also inside a running loop (a notebook cell)."""
        return run_sync(lambda: self.resume(run_id, saga, observers=observers))

    def history(
        self,
        *,
        saga: str | Saga | None = None,
        sagas: Iterable[Saga] | Mapping[str, Saga] | None = None,
        payloads: bool = True,
        status: str | Iterable[str] | None = None,
    ) -> RunHistory:
        """The finished runs in this journal; see :func:`load_history` for the arguments.

        ``journal.history(status=("stuck", "compensation_failed")).runs`` is the DataFrame of
        the runs that need an operator.
        """
        self._call_sync(lambda connection: None)  # let queued records land first
        return load_history(self.path, saga=saga, sagas=sagas, payloads=payloads, serializer=self.serializer,
                            status=status)

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Commit what is queued and stop the writer. Runs still going fail at their next step.

        Records whose commit failed earlier (see :attr:`stats`) are committed now.

        Raises:
            JournalError: they could not be committed even now (the file stays locked by
                another process, the disk is full ...). The message names the runs that
                look unfinished in the file because of it.
        """
        if self._closed:
            return
        with self._lock:
            states = list(self._states.values())
        for state in states:
            state.flush()
        self._closed = True
        if self._finalizer.detach() is not None:
            error = _shutdown(self._inbox, self._thread, self._lost)
            if error is not None:
                raise error

    def __enter__(self) -> SqliteJournal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteJournal({self._name!r}, durability={self.durability!r})"


def _info_text(info: Mapping[str, Any]) -> str | None:
    if not info:
        return None
    return json.dumps(dict(info), default=str, separators=(",", ":"))
