"""The event stream: the one way information leaves the engine.

Every backend emits the same :class:`Event` records; run history, diagrams, the Lab,
OpenTelemetry, structlog and the SQLite journal are all observers of this stream.

A run emits, in order::

    run_started
      step_started / step_succeeded | step_failed | step_cancelled     (one pair per attempt)
      ...
      rollback_started                                                  (only on failure)
      compensation_started / compensation_succeeded | compensation_failed | compensation_cancelled
      compensation_skipped                                              (steps without compensation)
    run_finished

A run carried on later from its journal (crash recovery, or an operator's resume) goes on in
the same record with ``run_resumed``, then the events of what it did from there, and a new
``run_finished``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

__all__ = ["END_KINDS", "Event", "EventKind", "Observer", "SettlingObserver"]


class EventKind(enum.StrEnum):
    """What happened."""

    RUN_STARTED = "run_started"
    STEP_STARTED = "step_started"
    STEP_SUCCEEDED = "step_succeeded"
    STEP_FAILED = "step_failed"
    STEP_CANCELLED = "step_cancelled"
    ROLLBACK_STARTED = "rollback_started"
    COMPENSATION_STARTED = "compensation_started"
    COMPENSATION_SUCCEEDED = "compensation_succeeded"
    COMPENSATION_FAILED = "compensation_failed"
    COMPENSATION_CANCELLED = "compensation_cancelled"
    COMPENSATION_SKIPPED = "compensation_skipped"
    RUN_FINISHED = "run_finished"
    RUN_RESUMED = "run_resumed"


#: Kinds that end one attempt (or record a skip): each is one row of ``RunHistory.steps``.
END_KINDS = frozenset(
    {
        EventKind.STEP_SUCCEEDED,
        EventKind.STEP_FAILED,
        EventKind.STEP_CANCELLED,
        EventKind.COMPENSATION_SUCCEEDED,
        EventKind.COMPENSATION_FAILED,
        EventKind.COMPENSATION_CANCELLED,
        EventKind.COMPENSATION_SKIPPED,
    }
)


class Event(NamedTuple):
    """One thing that happened in a run. Immutable.

    An event is a named tuple rather than a frozen dataclass: a run emits two per step
    attempt, and a tuple is several times cheaper to build.

    Attributes:
        kind: what happened.
        run_id: the run it belongs to.
        saga: the saga's name.
        at: when it happened, in seconds since the Unix epoch (UTC); the event loop's clock,
            so a simulated run records simulated time.
        step: the step's name (``None`` for run-level events).
        index: the step's position in the saga, counting parallel branches (-1 for runs).
        phase: ``"forward"`` or ``"compensate"`` (``None`` for run-level events).
        attempt: 1 for the first attempt of a step or compensation, 2 for the first retry.
        started_at: for events ending an attempt (and ``run_finished``), when it started.
        duration_ms: for events ending an attempt (and ``run_finished``), how long it took.
        error: the exception, for failures (and ``run_finished`` of a failed run).
        injected: the event was caused by failure injection.
        data: the payload: the run's input (``run_started``), a step's output
            (``step_succeeded``), what a compensation receives (``compensation_started``),
            the result (``run_finished``).
        status: ``succeeded``, ``failed``, ``cancelled`` or ``skipped`` for events ending an
            attempt; the run's status for ``run_finished``; for ``run_resumed``, the status the
            run had (``None`` when it was interrupted), its ``attempt`` counting resumptions.
        correlation_id: the caller's correlation id.
        info: extra facts (``run_started`` carries ``backend``; a backend may add more).
    """

    kind: EventKind
    run_id: str
    saga: str
    at: float
    step: str | None = None
    index: int = -1  # type: ignore[assignment]  # shadows tuple.index on purpose: the column name
    phase: str | None = None
    attempt: int = 0
    started_at: float | None = None
    duration_ms: float | None = None
    error: BaseException | None = None
    injected: bool = False
    data: Any = None
    status: str | None = None
    correlation_id: str | None = None
    info: Mapping[str, Any] | None = None


@runtime_checkable
class Observer(Protocol):
    """Anything that wants a run's events: a callable taking one :class:`Event`.

    Observers are called synchronously, in order, on the event loop running the saga.
    They must be quick and must not raise; an observer that raises is reported with a
    warning and then ignored for the rest of that run, so a broken sink never breaks a saga
    (every backend delivers through one function, ``sagakit._recorder.deliver``).
    """

    def __call__(self, event: Event, /) -> None: ...


@runtime_checkable
class SettlingObserver(Observer, Protocol):
    """An observer the engine waits for before a run moves on.

    After a step succeeds and before the next stage starts (and before a run reports its
    end), the engine awaits ``settle()`` of every settling observer. A durable journal uses
    this so that a step is never acknowledged before its record is on disk.
    """

    async def settle(self) -> None: ...

