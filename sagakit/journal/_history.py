"""Reading a journal back: its runs as :class:`~sagakit.Run` objects, and sharing them as Parquet.

:func:`load_history` (``RunHistory.from_journal``) rebuilds the finished runs of a journal,
so ``runs`` and ``steps`` frames survive a kernel restart; :func:`read_runs` gives every
run's records, finished or not (what :func:`sagakit.recover` works from).
:func:`history_to_parquet` and :func:`history_from_parquet` save and load a history without
its payloads, to share an analysis.

Errors are not stored as objects: their type's name and (scrubbed) message are, and they
come back as :class:`RecordedError` subclasses with the same names.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sagakit.errors import JournalError
from sagakit.events import Event, EventKind
from sagakit.journal._file import DAMAGED_ADVICE, connect, damaged, journal_path
from sagakit.journal._payload import JsonSerializer, Serializer, error_text, journal_redactor
from sagakit.redaction import Redactor
from sagakit.runs import Run, RunHistory, run_redactor

if TYPE_CHECKING:
    from sagakit.saga import Saga

__all__ = [
    "RecordedError",
    "RecordedRun",
    "all_run_ids",
    "check_serializer",
    "damage_report",
    "damaged_run",
    "is_damage",
    "history_from_parquet",
    "history_to_parquet",
    "load_history",
    "read_each_run",
    "read_runs",
    "runs_rows",
    "recorded_error",
    "run_from_record",
    "saga_definitions",
]

_K = EventKind
_KIND_TEXT: dict[EventKind, str] = {kind: kind.value for kind in EventKind}
_KIND_OF: dict[str, EventKind] = {kind.value: kind for kind in EventKind}


# -- errors read back ----------------------------------------------------------------------


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


# -- reading runs --------------------------------------------------------------------------

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
        try:
            facts = json.loads(info) if info else {}
            if not isinstance(facts, dict):
                raise ValueError(f"expected a JSON object, got {type(facts).__name__}")
        except ValueError as exc:
            raise damaged_run(path, run_id, f"its info cell is not the JSON it was written as ({exc})") from exc
        runs[run_id] = RecordedRun(run_id, saga, correlation_id, backend, facts, status, [], [])
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
        run.events.append(Event(kind=event_kind, run_id=run_id, saga=run.saga, at=at, step=step, index=index,
                                phase=phase, attempt=attempt, started_at=started_at, duration_ms=duration_ms,
                                error=error, injected=bool(injected), data=data, status=status,
                                correlation_id=run.correlation_id,
                                info=run.info if event_kind is _K.RUN_STARTED else None))
        run.payload_states.append(payload_state)
        order[run_id] = position
    return sorted((run for run in runs.values() if run.events), key=lambda run: order[run.run_id])


def is_damage(exc: BaseException) -> bool:
    """Whether SQLite reports ``exc`` because the file's contents are damaged (not locked, not full ...)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    return isinstance(exc, sqlite3.DatabaseError) and "malformed" in str(exc)


def damaged_run(path: Path, run_id: str, what: str) -> JournalError:
    """The error for one run whose records cannot be read back."""
    return JournalError(path, f"run {run_id} is damaged: {what}; " + DAMAGED_ADVICE.format(path=path))


def read_each_run(
    connection: sqlite3.Connection,
    path: Path,
    *,
    serializer: Serializer | None = None,
    run_ids: Sequence[str],
    payloads: bool = True,
) -> tuple[list[RecordedRun], dict[str, JournalError]]:
    """:func:`read_runs`, salvaging what a damaged file still holds.

    Reads all of ``run_ids`` at once; if that fails, reads them one by one, so that a damaged
    page or cell costs only the runs stored in it.

    Returns:
        The runs that could be read, and for each one that could not, the error naming it.
    """
    try:
        return read_runs(connection, path, serializer=serializer, run_ids=run_ids, payloads=payloads), {}
    except JournalError:
        pass
    records: list[RecordedRun] = []
    damaged_runs: dict[str, JournalError] = {}
    for run_id in run_ids:
        try:
            records.extend(read_runs(connection, path, serializer=serializer, run_ids=[run_id], payloads=payloads))
        except JournalError as exc:
            damaged_runs[run_id] = exc if f"run {run_id}" in exc.reason else damaged_run(
                path, run_id, f"its records cannot be read ({exc.__cause__ or exc.reason})"
            )
    return records, damaged_runs


def damage_report(path: Path, damaged_runs: Mapping[str, JournalError], lost_rows: int, done: str) -> JournalError:
    """One error summing up the runs a damaged journal no longer gives back, after ``done``."""
    parts = []
    if damaged_runs:
        first = next(iter(damaged_runs.values())).reason.split("; keep a copy")[0]
        more = len(damaged_runs) - 1
        parts.append(first + (f" (and {more} more run(s): {', '.join(list(damaged_runs)[1:6])}"
                              f"{' ...' if more > 5 else ''})" if more else ""))
    if lost_rows:
        parts.append(f"{lost_rows} row(s) of its runs table cannot be read, so those runs cannot even be named")
    return JournalError(path, "; ".join(parts) + f"; {done}; " + DAMAGED_ADVICE.format(path=path))


def runs_rows(
    connection: sqlite3.Connection, path: Path, *, columns: str, where: str = "1", doing: str
) -> tuple[list[Any], int]:
    """``columns`` of the ``runs`` rows matching ``where``, in order; row by row when the table
    is damaged, so that each damaged page costs only its own rows.

    Returns:
        The rows that could be read, and how many could not.

    Raises:
        JournalError: naming what it was ``doing``, for an error that is not damage, or when not
            even the size of the table can be read.
    """
    try:
        return connection.execute(f"SELECT {columns} FROM runs WHERE {where} ORDER BY rowid").fetchall(), 0
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise JournalError(path, f"cannot {doing} ({exc})") from exc
    try:
        last = connection.execute("SELECT max(rowid) FROM runs").fetchone()[0] or 0
    except sqlite3.DatabaseError as exc:
        raise damaged(path, exc) from exc
    rows: list[Any] = []
    lost = 0
    for rowid in range(1, last + 1):
        try:
            rows.extend(connection.execute(f"SELECT {columns} FROM runs WHERE rowid = ? AND ({where})", (rowid,)))
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise JournalError(path, f"cannot {doing} ({exc})") from exc
            lost += 1
    return rows, lost


def all_run_ids(connection: sqlite3.Connection, path: Path) -> tuple[list[str], int]:
    """Every run id in the ``runs`` table that can be read, and how many rows could not."""
    rows, lost = runs_rows(connection, path, columns="run_id", doing="read its runs")
    return [row[0] for row in rows], lost


def saga_definitions(
    sagas: Iterable[Saga] | Mapping[str, Saga] | None, what: str, *, optional: bool = True
) -> dict[str, Saga]:
    """The given sagas by name, checked; errors name the argument ``what`` (``None`` is none, if ``optional``).

    Raises:
        TypeError: an item is not a :class:`~sagakit.Saga`.
        ValueError: two different sagas share a name (names identify runs in a journal).
    """
    from sagakit.saga import Saga

    if sagas is None and optional:
        return {}
    if isinstance(sagas, Saga):
        sagas = [sagas]
    if isinstance(sagas, str | bytes) or not isinstance(sagas, Iterable):
        raise TypeError(
            f"{what}: expected a list of Saga objects (or a dict of them by name), got {type(sagas).__name__} {sagas!r}"
        )
    items = list(sagas.items()) if isinstance(sagas, Mapping) else [(getattr(s, "name", None), s) for s in sagas]
    found: dict[str, Saga] = {}
    for name, saga in items:
        if not isinstance(saga, Saga):
            raise TypeError(f"{what}: expected Saga objects, got {type(saga).__name__} {saga!r}")
        if not isinstance(name, str):
            raise TypeError(f"{what}: expected saga names (str) as keys, got {type(name).__name__} {name!r}")
        if name in found and found[name] is not saga:
            raise ValueError(f"{what}: two different sagas are named {name!r}; names identify runs in the journal")
        found[str(name)] = saga
    return found


def check_serializer(serializer: object, what: str) -> None:
    """A ``TypeError`` naming ``what`` unless ``serializer`` is ``None`` or has ``dumps`` and ``loads``."""
    if serializer is not None and (
        not callable(getattr(serializer, "dumps", None)) or not callable(getattr(serializer, "loads", None))
    ):
        raise TypeError(f"{what}: expected an object with dumps(value) and loads(payload), got {serializer!r}")


_FINISHED = ("completed", "compensated", "compensation_failed", "cancelled", "stuck")


def _statuses(status: object) -> frozenset[str] | None:
    if status is None:
        return None
    wanted = (status,) if isinstance(status, str) else status
    if not isinstance(wanted, Iterable) or not all(isinstance(item, str) for item in wanted):
        raise TypeError(f"load_history status: expected a status or an iterable of statuses, got {status!r}")
    chosen = frozenset(wanted)
    unknown = sorted(chosen - set(_FINISHED))
    if unknown or not chosen:
        raise ValueError(f"load_history status: expected any of {', '.join(_FINISHED)}, got {status!r}")
    return chosen


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
    status: str | Iterable[str] | None = None,
) -> RunHistory:
    """The finished runs recorded in a journal, as a :class:`~sagakit.RunHistory`.

    ``load_history(path, status=("stuck", "compensation_failed")).runs`` is the DataFrame of the
    runs that need an operator (see :meth:`SqliteJournal.resume`).

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
        status: only the runs that ended with this status (or any of these statuses).

    Raises:
        JournalError: the file is missing, damaged, not a journal or from a newer sagakit; for
            damaged records, the message names the runs they belong to.
        TypeError: an argument is not what is expected (the message names it).
    """
    file = journal_path(path, "load_history path")
    definitions = saga_definitions(sagas, "load_history sagas")
    if not isinstance(payloads, bool):
        raise TypeError(f"load_history payloads: expected True or False, got {payloads!r}")
    check_serializer(serializer, "load_history serializer")
    statuses = _statuses(status)
    name = None
    if saga is not None:
        name = saga if isinstance(saga, str) else getattr(saga, "name", None)
        if not isinstance(name, str):
            raise TypeError(f"load_history saga: expected a saga name or a Saga, got {saga!r}")
        if not isinstance(saga, str):
            definitions.setdefault(name, saga)  # type: ignore[arg-type]
    connection = connect(file, write=False)
    try:
        try:
            records = read_runs(connection, file, serializer=serializer, payloads=payloads)
        except JournalError:
            # Damaged somewhere: find out which runs, so the error can name them.
            run_ids, lost = all_run_ids(connection, file)
            records, damaged_runs = read_each_run(connection, file, serializer=serializer, run_ids=run_ids,
                                                  payloads=payloads)
            if damaged_runs or lost:
                raise damage_report(file, damaged_runs, lost, f"{len(records)} other run(s) are readable") from None
            raise
    finally:
        connection.close()
    runs = []
    for record in records:
        if record.status is None or (name is not None and record.saga != name):
            continue
        if statuses is not None and record.status not in statuses:
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
    are scrubbed of the runs' secrets unless ``redact=False``: with ``redact=True`` each run's
    saga's own keys count (``Saga(..., redact=["iban"])``), with a :class:`Redactor` its keys.

    Raises:
        ImportError: pyarrow is missing (``pip install 'sagakit[parquet]'``).
        TypeError: an argument is not what is expected (the message names it).
    """
    if not isinstance(history, RunHistory):
        raise TypeError(f"to_parquet history: expected a RunHistory, got {type(history).__name__}")
    file = journal_path(path, "to_parquet path")
    if not isinstance(redact, bool | Redactor):
        raise TypeError(f"to_parquet redact: expected True, False or a Redactor, got {redact!r}")
    pa = _pyarrow()
    if not file.parent.is_dir():
        raise FileNotFoundError(f"to_parquet path {file}: the directory {file.parent} does not exist; create it first")
    # True: each run's own saga's keys (``Saga(redact=[...])``), as its frames show it.
    chosen = journal_redactor(redact)
    columns: dict[str, list[Any]] = {name: [] for name, _ in _PARQUET_COLUMNS}
    for run in history:
        redactor = run_redactor(run) if redact is True else chosen
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
                (redactor.message(error, secrets) if redactor is not None else error_text(error))
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
    file = journal_path(path, "from_parquet path")
    definitions = saga_definitions(sagas, "from_parquet sagas")
    pa = _pyarrow()
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
            Event(kind=_KIND_OF[kind], run_id=run_id, saga=saga, at=at, step=step, index=index, phase=phase,
                  attempt=attempt, started_at=started_at, duration_ms=duration_ms, error=error, injected=injected,
                  status=status, correlation_id=correlation_id,
                  info={"backend": backend} if kind == "run_started" else None)
        )
        backends[run_id] = backend
    return RunHistory(
        Run.from_events(events, definition=definitions.get(events[0].saga), backend=backends[run_id])
        for run_id, events in grouped.items()
    )
