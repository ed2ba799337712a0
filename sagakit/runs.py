"""Runs and run history: the first consumers of the event stream, as pandas DataFrames."""

from __future__ import annotations

import array
import bisect
import itertools
import math
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from sagakit.events import END_KINDS, Event, EventKind
from sagakit.redaction import Redactor, default_redactor

if TYPE_CHECKING:
    import os

    import pandas as pd

    from sagakit.compare import RunComparison
    from sagakit.journal import Serializer
    from sagakit.saga import Saga

__all__ = ["RUN_COLUMNS", "STEP_COLUMNS", "Run", "RunHistory", "RunStatus", "error_message", "run_redactor"]

RunStatus = Literal["completed", "compensated", "compensation_failed", "cancelled", "stuck"]

#: The columns of ``RunHistory.runs``, in order.
RUN_COLUMNS: tuple[str, ...] = (
    "run_id",
    "saga",
    "correlation_id",
    "backend",
    "status",
    "failed_step",
    "error_type",
    "error_message",
    "started_at",
    "duration_ms",
    "steps_completed",
    "compensations_run",
    "injected",
    "resumed",
)

#: The columns of ``RunHistory.steps`` (and ``Run.steps``), in order.
STEP_COLUMNS: tuple[str, ...] = (
    "run_id",
    "saga",
    "step",
    "kind",
    "index",
    "phase",
    "attempt",
    "status",
    "started_at",
    "ended_at",
    "duration_ms",
    "error_type",
    "error_message",
    "injected",
)


def error_message(error: BaseException | None, *, run: Run | None = None) -> str | None:
    """The text recorded for an error in frames, traces, diagrams and exports, secrets masked.

    The text goes through the run's saga's :class:`~sagakit.redaction.Redactor` (the default
    one without a run): values the run carried under sensitive keys (a password, a card
    number seen in its payloads), sensitive ``key=value`` pairs and card numbers are masked.

    Args:
        error: the exception (``None`` gives ``None``).
        run: the run the error belongs to; its payloads name the secrets to scrub.
    """
    if error is None:
        return None
    if run is None:
        return default_redactor().message(error)
    return _message_redactor(run)(error)


def run_redactor(run: Run) -> Redactor:
    """The redactor for what is shown of ``run``: its saga's ``redactor``, else the default."""
    redactor = getattr(run.definition, "redactor", None)
    return redactor if isinstance(redactor, Redactor) else default_redactor()


def _message_redactor(run: Run) -> Callable[[BaseException | None], str | None]:
    """``error -> scrubbed text`` for the errors of one run; its secrets are gathered once, lazily."""
    redactor = run_redactor(run)
    secrets: frozenset[str] | None = None

    def message(error: BaseException | None) -> str | None:
        nonlocal secrets
        if error is None:
            return None
        if secrets is None:
            secrets = redactor.payload_secrets(run._trace()[2][1::_OBJECTS])  # each event's data
        return redactor.message(error, secrets)

    return message


# A finished run that no observer watched keeps its events as a trace, so that a long history
# costs the garbage collector almost nothing: per event, a row of the scalars in TRACE_ATOMS
# (the kind as its string value) in a tuple of rows; the times in TRACE_TIMES as the bytes of C
# doubles (NaN for None); the values in TRACE_OBJECTS in one flat tuple. A tuple holding only
# scalars is dropped from the collector's watch once it has looked, and bytes are never watched,
# where an event record per event would be walked again at every collection. The run's id, saga
# and correlation id are the run's own. Run.events builds the events on first access.
TRACE_ATOMS: tuple[str, ...] = ("kind", "step", "index", "phase", "attempt", "injected", "status")
TRACE_TIMES: tuple[str, ...] = ("at", "started_at", "duration_ms")
TRACE_OBJECTS: tuple[str, ...] = ("error", "data", "info")
_TIMES = len(TRACE_TIMES)
_OBJECTS = len(TRACE_OBJECTS)
_KIND = {kind.value: kind for kind in EventKind}
_NAN = math.nan

_new_event = tuple.__new__
_STEP = operator.itemgetter(TRACE_ATOMS.index("step"))


# Each compensation that ran ends with one of these (a cancelled one ran too, as the engine counts).
_COMPENSATION_ENDS = frozenset({EventKind.COMPENSATION_SUCCEEDED, EventKind.COMPENSATION_FAILED,
                                EventKind.COMPENSATION_CANCELLED})


def run_counts(events: Sequence[Event]) -> tuple[int, int, bool]:
    """A run's ``steps_completed``, ``compensations_run`` and ``injected``, from its events."""
    steps_completed = len(_completed_steps((e.kind, e.step, e.phase) for e in events))
    compensations_run = len({e.step for e in events if e.kind in _COMPENSATION_ENDS})
    return steps_completed, compensations_run, any(e.injected for e in events)


def _rows(flat: Sequence[Any], width: int) -> Iterator[tuple[Any, ...]]:
    """``flat`` in tuples of ``width``."""
    return zip(*[iter(flat)] * width, strict=True)


class Run:
    """One execution of a saga: its outcome and its events.

    Attributes:
        run_id: unique id of the run.
        saga: the saga's name.
        definition: the :class:`~sagakit.Saga` that ran.
        correlation_id: the caller's correlation id.
        backend: ``"local"``, or the backend that ran it (``"temporal"``).
        status: ``completed``, ``compensated``, ``compensation_failed``, ``cancelled``, or
            ``stuck`` (a step after the pivot failed for good; nothing was compensated).
        result: the saga's result (``None`` unless completed).
        error: what ``execute()`` raised: the step's original error, or a
            :class:`~sagakit.CompensationError`, or for a stuck run a
            :class:`~sagakit.SagaStuck`; for a cancelled run, the cancellation.
        original_error: the error that started the rollback (or left the run stuck), if any.
        failed_step: the step whose failure started the rollback (or the pending step of a
            stuck run), if any.
        events: every event of the run, in order.
        started_at: epoch seconds (UTC) when it started.
        duration_ms: how long it took.
        info: backend facts (a Temporal run records its ``workflow_id``); ``resumed``: how
            often the run was carried on from its journal, ``recovered``: after a crash.
    """

    __slots__ = (
        "_atoms",
        "_events",
        "_objects",
        "_times",
        "backend",
        "compensations_run",
        "correlation_id",
        "definition",
        "duration_ms",
        "error",
        "failed_step",
        "info",
        "injected",
        "original_error",
        "result",
        "run_id",
        "saga",
        "started_at",
        "status",
        "steps_completed",
    )

    def __init__(
        self,
        *,
        run_id: str,
        saga: str,
        definition: Saga | None,
        correlation_id: str | None,
        backend: str,
        status: RunStatus,
        result: Any,
        error: BaseException | None,
        original_error: BaseException | None,
        failed_step: str | None,
        events: list[Event],
        started_at: float,
        duration_ms: float,
        info: dict[str, Any] | None = None,
        steps_completed: int | None = None,
        compensations_run: int | None = None,
        injected: bool | None = None,
    ) -> None:
        if steps_completed is None or compensations_run is None or injected is None:
            steps_completed, compensations_run, injected = run_counts(events)
        self._fill(run_id=run_id, saga=saga, definition=definition, correlation_id=correlation_id, backend=backend,
                   status=status, result=result, error=error, original_error=original_error, failed_step=failed_step,
                   events=events, atoms=None, times=None, objects=None, started_at=started_at,
                   duration_ms=duration_ms, info=info if info is not None else {}, steps_completed=steps_completed,
                   compensations_run=compensations_run, injected=injected)

    def _fill(
        self,
        *,
        run_id: str,
        saga: str,
        definition: Saga | None,
        correlation_id: str | None,
        backend: str,
        status: RunStatus,
        result: Any,
        error: BaseException | None,
        original_error: BaseException | None,
        failed_step: str | None,
        events: list[Event] | None,
        atoms: tuple[tuple[Any, ...], ...] | None,
        times: bytes | None,
        objects: tuple[Any, ...] | None,
        started_at: float,
        duration_ms: float,
        info: dict[str, Any],
        steps_completed: int,
        compensations_run: int,
        injected: bool,
    ) -> Run:
        """Set every attribute of ``run``, by name: the engine's one call per run (no ``__init__``).

        Either ``events`` is given, or the same events as a trace: ``atoms``, ``times`` and
        ``objects``: one row of ``TRACE_ATOMS`` per event, and ``TRACE_TIMES`` and
        ``TRACE_OBJECTS`` per event, flat.
        """
        self.run_id = run_id
        self.saga = saga
        self.definition = definition
        self.correlation_id = correlation_id
        self.backend = backend
        self.status = status
        self.result = result
        self.error = error
        self.original_error = original_error
        self.failed_step = failed_step
        self._events = events
        self._atoms = atoms
        self._times = times
        self._objects = objects
        self.started_at = started_at
        self.duration_ms = duration_ms
        self.info = info
        self.steps_completed = steps_completed
        self.compensations_run = compensations_run
        self.injected = injected
        return self

    def __getstate__(self) -> dict[str, Any]:
        # A pickled run leaves its saga out (its functions, its whole history): an unpickled
        # run has ``definition=None``, like a run loaded from a journal.
        state = {name: getattr(self, name) for name in self.__slots__}
        state["definition"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    @property
    def events(self) -> list[Event]:
        """Every event of the run, in order (start-of-attempt events are not kept)."""
        events = self._events
        if events is None:
            events = self._events = self._build_events()
            self._atoms = self._times = self._objects = None
        return events

    @events.setter
    def events(self, events: list[Event]) -> None:
        self._events = events
        self._atoms = self._times = self._objects = None

    def _build_events(self) -> list[Event]:
        atoms, times, objects = self._trace()
        run_id, saga, correlation_id = self.run_id, self.saga, self.correlation_id
        return [
            _new_event(Event, (_KIND[kind], run_id, saga, at, step, index, phase, attempt,
                               None if started_at != started_at else started_at,  # NaN: None
                               None if duration_ms != duration_ms else duration_ms,
                               error, injected, data, status, correlation_id, info))
            for (kind, step, index, phase, attempt, injected, status), (at, started_at, duration_ms), (error, data, info)
            in zip(atoms, _rows(times, _TIMES), _rows(objects, _OBJECTS), strict=True)
        ]

    def _trace(self) -> tuple[Sequence[tuple[Any, ...]], Sequence[float], Sequence[Any]]:
        """The run's events as ``(atoms, times, objects)`` (see ``TRACE_ATOMS``)."""
        if self._events is None:
            doubles = array.array("d")
            doubles.frombytes(self._times or b"")
            return self._atoms or (), doubles, self._objects or ()
        atoms: list[tuple[Any, ...]] = []
        times: list[float] = []
        objects: list[Any] = []
        for e in self._events:
            atoms.append((e.kind, e.step, e.index, e.phase, e.attempt, e.injected, e.status))
            times += (e.at, _NAN if e.started_at is None else e.started_at,
                      _NAN if e.duration_ms is None else e.duration_ms)
            objects += (e.error, e.data, e.info)
        return atoms, times, objects

    @classmethod
    def from_events(
        cls,
        events: Sequence[Event],
        *,
        definition: Saga | None = None,
        backend: str = "local",
        info: dict[str, Any] | None = None,
    ) -> Run:
        """Rebuild a run from its events (for backends that run elsewhere and replay them).

        The events must start with ``run_started`` and end with ``run_finished``.
        """
        if not events or events[0].kind is not EventKind.RUN_STARTED or events[-1].kind is not EventKind.RUN_FINISHED:
            raise ValueError("Run.from_events: expected events from run_started to run_finished")
        first, last = events[0], events[-1]
        failed_step = None
        original = None
        for event in events:
            if event.kind is EventKind.ROLLBACK_STARTED:
                failed_step = event.step
                original = event.error
                break
        if last.status == "stuck":  # the pending step: the last whose forward attempt did not succeed
            for event in reversed(events):
                if event.phase == "forward" and event.kind in (EventKind.STEP_FAILED, EventKind.STEP_CANCELLED):
                    failed_step, original = event.step, event.error
                    break
        resumed = sum(1 for event in events if event.kind is EventKind.RUN_RESUMED)
        if resumed:
            info = {**(info or {}), "resumed": resumed}
        return cls(
            run_id=first.run_id,
            saga=first.saga,
            definition=definition,
            correlation_id=first.correlation_id,
            backend=backend,
            status=last.status,  # type: ignore[arg-type]
            result=last.data,
            error=last.error,
            original_error=original,
            failed_step=failed_step,
            events=list(events),
            started_at=first.at,
            duration_ms=last.duration_ms or 0.0,
            info=info,
        )

    @property
    def ok(self) -> bool:
        """Whether the saga completed."""
        return self.status == "completed"

    @property
    def steps(self) -> pd.DataFrame:
        """One row per step attempt and phase, with the columns of ``RunHistory.steps``."""
        return _steps_frame([self])

    @property
    def compensated_steps(self) -> list[str]:
        """Steps whose compensation succeeded, in the order they ran."""
        return [step for kind, step, _ in self._kinds() if kind == "compensation_succeeded"]

    @property
    def completed_steps(self) -> list[str]:
        """Steps whose forward phase succeeded, in completion order."""
        return _completed_steps(self._kinds())

    def _kinds(self) -> Iterable[tuple[str, Any, str | None]]:
        """``(kind, step, phase)`` of each event, read from the trace when there is one."""
        if self._events is None:
            return ((row[0], row[1], row[3]) for row in self._atoms or ())
        return ((e.kind, e.step, e.phase) for e in self._events)

    def timeline(self, *, width: int = 520, height: int | None = None) -> Any:
        """A Gantt-style chart of this run's forward and compensation phases.

        See :func:`sagakit.analysis.timeline`.
        """
        from sagakit.analysis import timeline

        return timeline(self, width=width, height=height)

    def compare(self, other: Run) -> RunComparison:
        """This run next to ``other``: the first point where they diverge, and a DataFrame of
        every step's status, attempts, duration and redacted output in both.

        See :class:`sagakit.compare.RunComparison`.
        """
        from sagakit.compare import compare_runs

        return compare_runs(self, other)

    def raise_for_status(self) -> Any:
        """Return the result, or raise what ``execute()`` would have raised."""
        if self.error is not None:
            raise self.error
        return self.result

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        try:
            from sagakit.notebook.diagram import run_mimebundle
        except ImportError:
            return {"text/plain": repr(self)}
        return run_mimebundle(self)

    def __repr__(self) -> str:
        text = f"<Run {self.saga} {self.run_id[:8]} {self.status} in {self.duration_ms:.1f} ms"
        if self.failed_step is not None:
            text += f", failed at {self.failed_step!r}"
        if self.error is not None:
            text += f" ({type(self.error).__name__}: {error_message(self.error, run=self)})"
        return text + ">"


def _completed_steps(kinds: Iterable[tuple[str, Any, str | None]]) -> list[str]:
    """The steps completed, from each event's ``(kind, step, phase)``."""
    # A step whose policy calls several functions ends several attempts; it completed when
    # its last forward attempt succeeded. Order: when that happened.
    last: dict[str, tuple[int, bool]] = {}
    for position, (kind, step, phase) in enumerate(kinds):
        if phase == "forward" and step is not None and kind in END_KINDS:
            last[step] = (position, kind == "step_succeeded")
    ordered = sorted(last.items(), key=lambda item: item[1][0])
    return [name for name, (_, succeeded) in ordered if succeeded]


def _steps_frame(runs: Iterable[Run]) -> pd.DataFrame:
    import pandas as pd

    runs = list(runs)
    atoms: list[tuple[Any, ...]] = []
    times = array.array("d")
    objects: list[Any] = []
    ids: list[str] = []
    sagas: list[str] = []
    ends: list[int] = []  # per run, the event position where it ends
    kinds: list[str | None] = []
    kinds_of: dict[int, Callable[[Any], str | None]] = {}  # per definition: step name -> kind
    for run in runs:
        run_atoms, run_times, run_objects = run._trace()
        kinds.extend(map(_kind_of(run, kinds_of), map(_STEP, run_atoms)))
        atoms += run_atoms
        times.extend(run_times)
        objects += run_objects
        count = len(run_objects) // _OBJECTS
        ids += [run.run_id] * count
        sagas += [run.saga] * count
        ends.append(len(objects) // _OBJECTS)
    flat = list(itertools.chain.from_iterable(atoms))
    width = len(TRACE_ATOMS)
    by_name: dict[str, Sequence[Any]] = {name: flat[i::width] for i, name in enumerate(TRACE_ATOMS)}
    by_name.update({name: times[i::_TIMES] for i, name in enumerate(TRACE_TIMES)})
    by_name.update({name: objects[i::_OBJECTS] for i, name in enumerate(TRACE_OBJECTS)})
    by_name["run_id"], by_name["saga"] = ids, sagas
    keep = [kind in END_KINDS for kind in by_name["kind"]]
    by_name["step_kind"] = kinds
    positions = list(itertools.compress(range(len(keep)), keep))
    by_name = {name: list(itertools.compress(column, keep)) for name, column in by_name.items()}
    errors = by_name["error"]
    messages: list[str | None] = [None] * len(errors)
    redactors: dict[int, Callable[[BaseException | None], str | None]] = {}
    for row, error in enumerate(errors):
        if error is not None:
            owner = bisect.bisect_right(ends, positions[row])
            message = redactors.get(owner)
            if message is None:
                message = redactors[owner] = _message_redactor(runs[owner])
            messages[row] = message(error)
    frame = pd.DataFrame(
        {
            "run_id": pd.array(by_name["run_id"], dtype="string"),
            "saga": pd.array(by_name["saga"], dtype="string"),
            "step": pd.array(by_name["step"], dtype="string"),
            "kind": pd.array(by_name["step_kind"], dtype="string"),
            "index": pd.array(by_name["index"], dtype="int64"),
            "phase": pd.array(by_name["phase"], dtype="string"),
            "attempt": pd.array(by_name["attempt"], dtype="int64"),
            "status": pd.array(by_name["status"], dtype="string"),
            "started_at": _timestamps(by_name["started_at"]),
            "ended_at": _timestamps(by_name["at"]),
            "duration_ms": pd.array(by_name["duration_ms"], dtype="float64"),
            "error_type": pd.array([type(e).__name__ if e is not None else None for e in errors], dtype="string"),
            "error_message": pd.array(messages, dtype="string"),
            "injected": pd.array(by_name["injected"], dtype="bool"),
        },
        columns=list(STEP_COLUMNS),
    )
    return frame


def _kind_of(run: Run, cache: dict[int, Callable[[Any], str | None]]) -> Callable[[Any], str | None]:
    """``step name -> kind`` for ``run``'s steps: from its saga, else from what it recorded
    (``info["kinds"]`` lists the steps that are not ``compensatable``)."""
    definition = run.definition
    if definition is not None:
        found = cache.get(id(definition))
        if found is None:
            found = cache[id(definition)] = {member.name: member.kind for member in definition.steps}.get
        return found
    recorded = run.info.get("kinds") if run.info else None
    if not recorded:
        return _COMPENSATABLE
    return lambda name: recorded.get(name, "compensatable") if name is not None else None


def _compensatable(name: Any) -> str | None:
    return "compensatable" if name is not None else None


_COMPENSATABLE = _compensatable


def _timestamps(values: Sequence[float | None]) -> Any:
    import numpy as np
    import pandas as pd

    array = np.array([np.nan if v is None else v for v in values] if None in values else values, dtype="float64")
    return pd.to_datetime(array, unit="s", utc=True)


def _runs_frame(runs: Sequence[Run]) -> pd.DataFrame:
    import pandas as pd

    errors = [run.error for run in runs]
    return pd.DataFrame(
        {
            "run_id": pd.array([r.run_id for r in runs], dtype="string"),
            "saga": pd.array([r.saga for r in runs], dtype="string"),
            "correlation_id": pd.array([r.correlation_id for r in runs], dtype="string"),
            "backend": pd.array([r.backend for r in runs], dtype="string"),
            "status": pd.array([r.status for r in runs], dtype="string"),
            "failed_step": pd.array([r.failed_step for r in runs], dtype="string"),
            "error_type": pd.array([type(e).__name__ if e is not None else None for e in errors], dtype="string"),
            "error_message": pd.array([error_message(r.error, run=r) for r in runs], dtype="string"),
            "started_at": _timestamps([r.started_at for r in runs]),
            "duration_ms": pd.array([r.duration_ms for r in runs], dtype="float64"),
            "steps_completed": pd.array([r.steps_completed for r in runs], dtype="int64"),
            "compensations_run": pd.array([r.compensations_run for r in runs], dtype="int64"),
            "injected": pd.array([r.injected for r in runs], dtype="bool"),
            "resumed": pd.array([r.info.get("resumed", 0) if r.info else 0 for r in runs], dtype="int64"),
        },
        columns=list(RUN_COLUMNS),
    )


def _check_maxlen(maxlen: object) -> int | None:
    if maxlen is None:
        return None
    if isinstance(maxlen, bool) or not isinstance(maxlen, int):
        raise TypeError(f"RunHistory maxlen: expected an int >= 1 or None, got {type(maxlen).__name__} {maxlen!r}")
    if maxlen < 1:
        raise ValueError(f"RunHistory maxlen: expected an int >= 1 or None, got {maxlen!r}")
    return maxlen


class RunHistory:
    """Many runs, analysed as DataFrames.

    ``saga.history`` collects every run of a saga object. ``runs`` has one row per run and
    ``steps`` one row per step attempt and phase (see ``RUN_COLUMNS`` and ``STEP_COLUMNS``);
    both are built column-wise on first access and cached until the next run arrives.

    Args:
        runs: runs to start with.
        maxlen: keep only the newest ``maxlen`` runs (``None``: keep all). It can be changed
            later (``history.maxlen = 100``); a smaller limit drops the oldest runs at once.
    """

    __slots__ = ("_frames", "_maxlen", "_runs", "_watchers")

    def __init__(self, runs: Iterable[Run] = (), *, maxlen: int | None = None) -> None:
        self._maxlen = _check_maxlen(maxlen)
        self._runs: list[Run] = []
        self._frames: dict[str, pd.DataFrame] = {}
        self._watchers: list[Callable[[Run], None]] = []
        for run in runs:
            self.append(run)

    @property
    def maxlen(self) -> int | None:
        """The most runs kept (the newest ones), or ``None`` for no limit."""
        return self._maxlen

    @maxlen.setter
    def maxlen(self, maxlen: int | None) -> None:
        self._maxlen = _check_maxlen(maxlen)
        if maxlen is not None and len(self._runs) > maxlen:
            del self._runs[: len(self._runs) - maxlen]
            self._frames.clear()

    def append(self, run: Run) -> None:
        """Add a run (the engine does this for ``saga.history``)."""
        runs = self._runs
        runs.append(run)
        maxlen = self._maxlen
        if maxlen is not None and len(runs) > maxlen:
            del runs[: len(runs) - maxlen]
        if self._frames:
            self._frames.clear()
        if self._watchers:
            for callback in list(self._watchers):
                callback(run)

    def extend(self, runs: Iterable[Run]) -> None:
        """Add several runs."""
        for run in runs:
            self.append(run)

    def clear(self) -> None:
        """Forget every run."""
        self._runs.clear()
        self._frames.clear()

    def watch(self, callback: Callable[[Run], None]) -> Callable[[], None]:
        """Call ``callback(run)`` for every run added; returns a function that stops it."""
        self._watchers.append(callback)

        def unwatch() -> None:
            if callback in self._watchers:
                self._watchers.remove(callback)

        return unwatch

    @property
    def runs(self) -> pd.DataFrame:
        """One row per run: ``RUN_COLUMNS``."""
        frame = self._frames.get("runs")
        if frame is None:
            frame = self._frames["runs"] = _runs_frame(self._runs)
        return frame

    @property
    def steps(self) -> pd.DataFrame:
        """One row per step attempt and phase: ``STEP_COLUMNS``."""
        frame = self._frames.get("steps")
        if frame is None:
            frame = self._frames["steps"] = _steps_frame(self._runs)
        return frame

    def compensation_timings(self, *, phase: str = "compensate",
                             percentiles: Sequence[float] = (0.5, 0.95)) -> pd.DataFrame:
        """Count, mean, p50, p95 and max compensation duration per step.

        See :func:`sagakit.analysis.compensation_timings`.
        """
        from sagakit.analysis import compensation_timings

        return compensation_timings(self, phase=phase, percentiles=percentiles)

    @classmethod
    def from_journal(
        cls,
        path: str | os.PathLike[str],
        *,
        saga: str | Saga | None = None,
        sagas: Iterable[Saga] | Mapping[str, Saga] | None = None,
        payloads: bool = True,
        serializer: Serializer | None = None,
        status: str | Iterable[str] | None = None,
    ) -> RunHistory:
        """The runs recorded in a SQLite journal file; see :func:`sagakit.journal.load_history`."""
        from sagakit.journal import load_history

        return load_history(path, saga=saga, sagas=sagas, payloads=payloads, serializer=serializer, status=status)

    def to_parquet(self, path: str | os.PathLike[str], *, redact: bool | Redactor = True) -> None:
        """Save this history to a Parquet file; see :func:`sagakit.journal.history_to_parquet`."""
        from sagakit.journal import history_to_parquet

        history_to_parquet(self, path, redact=redact)

    @classmethod
    def from_parquet(cls, path: str | os.PathLike[str], *,
                     sagas: Iterable[Saga] | Mapping[str, Saga] | None = None) -> RunHistory:
        """Load a history saved with :meth:`to_parquet`; see :func:`sagakit.journal.history_from_parquet`."""
        from sagakit.journal import history_from_parquet

        return history_from_parquet(path, sagas=sagas)

    @property
    def last(self) -> Run | None:
        """The newest run, or ``None``."""
        return self._runs[-1] if self._runs else None

    def __len__(self) -> int:
        return len(self._runs)

    def __iter__(self) -> Iterator[Run]:
        return iter(list(self._runs))

    def __getitem__(self, index: int) -> Run:
        return self._runs[index]

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for run in self._runs:
            counts[run.status] = counts.get(run.status, 0) + 1
        summary = ", ".join(f"{status}={count}" for status, count in sorted(counts.items()))
        return f"<RunHistory {len(self._runs)} runs{': ' + summary if summary else ''}>"
