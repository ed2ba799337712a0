"""The run recorder: the one place that keeps a run's trace and applies the rules of rollback.

Every backend records a run through this module, so that they all agree:

- **Event delivery.** :func:`deliver` hands an event to a run's observers; an observer that
  raises an :class:`Exception` is reported with a warning and dropped for the rest of the run
  (a broken sink never breaks a saga). The local engine, ``recover()`` and the Temporal backend
  all deliver through it.
- **The trace.** :class:`Recorder` keeps a run's events, and builds the :class:`~sagakit.Run`
  with :meth:`Recorder.finish`.

The rules of what a run does once a step failed (undo order, skip or compensate, stop or go
on, the final status) are not here but in :mod:`sagakit._driver`, the one driver every backend
follows; the texts of errors are in :mod:`sagakit.errors`.

Three places of the local engine append a success row to the trace themselves (each measured
to be worth it: W2 costs 10–20% more without them): the plain step without a fault
(``LocalBackend.run``), the success of a plain compensation without a fault
(``_Execution.rollback``), and ``_Execution.succeeded`` (``Recorder.record`` inlined, once per
attempt). Everything else records through :class:`Recorder`. They, and the recorder, rely on
these invariants:

1. ``events`` is a list exactly when the run has observers (``observers`` is then a non-empty
   list); otherwise it is ``None`` and the run keeps its trace flat in ``atoms``, ``times`` and
   ``objects`` instead. An observed run builds an :class:`~sagakit.Event` per event anyway, so
   it keeps those; an unobserved run builds none.
2. The trace's parallel sequences grow in step: for each event one row of
   ``runs.TRACE_ATOMS`` in ``atoms``, the three ``runs.TRACE_TIMES`` in ``times`` and the three
   ``runs.TRACE_OBJECTS`` in ``objects``. Whoever appends to one appends to all three.
3. Start-of-attempt events are told to observers only, never kept: the event ending an attempt
   carries its start.
4. The stage plan (:func:`stage_plan`) is cached on the saga by the identity of its ``stages``
   tuple (a saga's stages are read-only, so in practice once per saga; a copy made with
   ``replace()`` gets its own); rows in the plan are shared by every run of the saga, so they
   are tuples of scalars and never change.
5. ``observers`` is the run's own list: :func:`deliver` removes a broken observer from it, so
   the rest of that run skips it and other runs are unaffected.
"""

from __future__ import annotations

import math
import struct
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sagakit.errors import error_text
from sagakit.events import Event, EventKind, Observer
from sagakit.runs import Run, RunStatus
from sagakit.steps import Stage, Step

if TYPE_CHECKING:
    from sagakit.saga import Saga

__all__ = ["Recorder", "deliver", "deliver_after_failure", "pack_times", "stage_plan"]

_NAN = math.nan
_KIND = {kind.value: kind for kind in EventKind}
_new_event = tuple.__new__
_new_run = object.__new__
_PACKERS: dict[int, Callable[..., bytes]] = {}
_RUN_STARTED = ("run_started", None, -1, None, 0, False, None)
# The field order the positional builders here (and in runs._build_events) rely on: a field added
# to Event anywhere but at its end must change them too, and this line stops the import first.
_EVENT_ORDER = ("kind", "run_id", "saga", "at", "step", "index", "phase", "attempt", "started_at", "duration_ms",
                "error", "injected", "data", "status", "correlation_id", "info")
if Event._fields != _EVENT_ORDER:  # pragma: no cover - a guard for whoever changes Event
    raise ImportError(f"sagakit._recorder builds Event positionally in the order {_EVENT_ORDER}; Event's fields "
                      f"are now {Event._fields}: update the builders")


# -- delivery -------------------------------------------------------------------------------


def deliver(observers: list[Observer], event: Event) -> None:
    """Hand ``event`` to each observer in order.

    An observer that raises is removed from ``observers`` (the run's own list) with a
    :class:`RuntimeWarning`: a broken sink never breaks a saga. Every backend delivers events
    through this function, so they all treat observers alike.
    """
    observer = None
    try:
        for observer in observers:
            observer(event)
    except Exception as error:
        deliver_after_failure(observers, event, observer, error)  # type: ignore[arg-type]


def deliver_after_failure(observers: list[Observer], event: Event, failed: Observer, error: Exception) -> None:
    """Finish :func:`deliver` after ``failed`` raised ``error``: hand ``event`` to the
    observers after it, then remove every one that raised, with a warning."""
    position = next(i for i, observer in enumerate(observers) if observer is failed)
    broken: list[tuple[Observer, Exception]] = [(failed, error)]
    for observer in observers[position + 1 :]:
        try:
            observer(event)
        except Exception as later:
            broken.append((observer, later))
    for observer, failure in broken:
        observers.remove(observer)
        warnings.warn(
            f"sagakit: observer {_describe(observer)} raised {type(failure).__name__}: {error_text(failure)}; "
            "it is ignored for the rest of this run",
            RuntimeWarning,
            stacklevel=4,
        )


def _describe(observer: object) -> str:
    try:
        return repr(observer)
    except Exception:
        return f"<{type(observer).__name__} object>"


# -- the trace ------------------------------------------------------------------------------


def pack_times(times: list[float]) -> bytes:
    """``times`` as the bytes of C doubles (a run's trace keeps them so; see runs.TRACE_TIMES)."""
    pack = _PACKERS.get(len(times))
    if pack is None:
        pack = _PACKERS[len(times)] = struct.Struct(f"{len(times)}d").pack
    return pack(*times)


def stage_plan(saga: Saga) -> tuple[tuple[Stage, int, tuple[Any, ...] | None], ...]:
    """Per stage of ``saga``: the stage, its first step's index and, for a plain step, the
    trace row of its ``step_succeeded`` event. Built once per ``stages`` tuple (invariant 4),
    so that the hot path neither counts indexes nor builds rows."""
    plan = saga._plan
    if plan is not None and plan[0] is saga.stages:
        return plan[1]  # type: ignore[no-any-return]
    entries: list[tuple[Stage, int, tuple[Any, ...] | None]] = []
    index = 0
    for stage in saga.stages:
        if type(stage) is Step:
            row = ("step_succeeded", stage.name, index, "forward", 1, False, "succeeded") if stage.plain else None
            entries.append((stage, index, row))
            index += 1
        else:
            entries.append((stage, index, None))
            index += len(stage.steps)  # type: ignore[union-attr]
    saga._plan = (saga.stages, tuple(entries))
    return saga._plan[1]  # type: ignore[no-any-return]


class Recorder:
    """The trace of one run, and its delivery to the run's observers (see the invariants above).

    Attributes:
        run_id, saga_name, correlation_id: the run's identity, shared by its events.
        observers: the run's own list of observers (``None`` for an unobserved run).
        events: the kept events of an observed run (``None`` for an unobserved run).
        atoms, times, objects: the flat trace of an unobserved run.
        failed_step: the step whose failure started the rollback.
        compensations_run: how many compensations started.
        injected: whether failure injection fired.
    """

    __slots__ = (
        "atoms",
        "compensations_run",
        "correlation_id",
        "events",
        "failed_step",
        "injected",
        "objects",
        "observers",
        "run_id",
        "saga_name",
        "times",
    )

    def __init__(self, run_id: str, saga_name: str, correlation_id: str | None,
                 observers: Sequence[Observer]) -> None:
        self.run_id = run_id
        self.saga_name = saga_name
        self.correlation_id = correlation_id
        self.atoms: list[tuple[Any, ...]] = []
        self.times: list[float] = []
        self.objects: list[Any] = []
        if observers:
            self.observers: list[Observer] | None = list(observers)
            self.events: list[Event] | None = []
        else:
            self.observers = None
            self.events = None
        self.failed_step: str | None = None
        self.compensations_run = 0
        self.injected = False

    def start(self, at: float, data: Any, info: Mapping[str, Any]) -> None:
        """Record ``run_started``; an unobserved run shares one trace row for it."""
        if self.events is None:
            self.atoms.append(_RUN_STARTED)
            self.times += (at, _NAN, _NAN)
            self.objects += (None, data, info)
        else:
            self.record("run_started", at, None, -1, None, 0, None, None, None, False, data, None, info)

    def record(self, kind: str, at: float, step: str | None, index: int, phase: str | None, attempt: int,
               started_at: float | None, duration_ms: float | None, error: BaseException | None, injected: bool,
               data: Any, status: str | None, info: Mapping[str, Any] | None = None) -> None:
        """Keep one event (the fields of :class:`~sagakit.Event`) and hand it to the observers."""
        if self.events is None:
            self.atoms.append((kind, step, index, phase, attempt, injected, status))
            self.times += (at, _NAN if started_at is None else started_at,
                           _NAN if duration_ms is None else duration_ms)
            self.objects += (error, data, info)
        else:
            self.events.append(self.tell(kind, at, step, index, phase, attempt, started_at, duration_ms, error,
                                         injected, data, status, info))

    def tell(self, kind: str, at: float, step: str | None, index: int, phase: str | None, attempt: int,
             started_at: float | None, duration_ms: float | None, error: BaseException | None, injected: bool,
             data: Any, status: str | None, info: Mapping[str, Any] | None = None) -> Event:
        """Hand one event (``record``'s arguments) to the observers, and return it. Start-of-
        attempt events are only told, not kept (invariant 3)."""
        # Positional on purpose (once per event of an observed run); _EVENT_ORDER pins the order.
        event: Event = _new_event(Event, (_KIND[kind], self.run_id, self.saga_name, at, step, index, phase, attempt,
                                          started_at, duration_ms, error, injected, data, status,
                                          self.correlation_id, info))
        deliver(self.observers, event)  # type: ignore[arg-type]
        return event

    def finish(self, *, definition: Saga | None, backend: str, status: RunStatus, result: Any,
               error: BaseException | None, original: BaseException | None, at: float, started_at: float,
               duration_ms: float, steps_completed: int, info: dict[str, Any] | None = None) -> Run:
        """Record ``run_finished`` and build the :class:`~sagakit.Run` (``info``: its facts, if any)."""
        self.record("run_finished", at, None, -1, None, 0, started_at, duration_ms, error, self.injected, result,
                    status)
        events = self.events
        trace = events is None
        # Each field set by name, inline (a keyword call of Run._fill costs twice as much, once
        # per run); tests/core/test_recorder.py holds this to Run's slots.
        run: Run = _new_run(Run)
        run.run_id = self.run_id
        run.saga = self.saga_name
        run.definition = definition
        run.correlation_id = self.correlation_id
        run.backend = backend
        run.status = status
        run.result = result
        run.error = error
        run.original_error = original
        run.failed_step = self.failed_step
        run._events = events
        run._atoms = tuple(self.atoms) if trace else None
        run._times = pack_times(self.times) if trace else None
        run._objects = tuple(self.objects) if trace else None
        run.started_at = started_at
        run.duration_ms = duration_ms
        run.info = {} if info is None else info
        run.steps_completed = steps_completed
        run.compensations_run = self.compensations_run
        run.injected = self.injected
        return run
