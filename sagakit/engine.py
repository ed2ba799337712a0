"""The local asyncio backend: forward execution, rollback, cancellation shielding.

The engine knows nothing of notebooks, telemetry, journals or Temporal. It runs a saga's
stages, emits :class:`~sagakit.events.Event` records to the run's observers, and on failure
or cancellation compensates the completed steps in reverse order of completion, shielded
from cancellation, before it lets the error or the cancellation go on.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import random
import time
import types
import warnings
from collections.abc import Coroutine, Generator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sagakit import policies
from sagakit._driver import (
    Rollback,
    StageFailed,
    blamed_step,
    forward_outcome,
    merge_outputs,
    parallel_stage,
    rollback_outcome,
    undo_order,
    wait_through_cancellation,
)
from sagakit._recorder import Recorder, stage_plan
from sagakit.context import WorkflowContext
from sagakit.errors import (
    CompensationError,
    CompensationFailure,
    InjectedFault,
    SagaStuck,
    StepTimeout,
    error_text,
    unmergeable_branch_message,
)
from sagakit.events import Event, Observer
from sagakit.faults import Fault, FaultPlan
from sagakit.policies import AnyStepFunction, Policy, code_may_suspend
from sagakit.runs import Run, RunStatus, run_counts
from sagakit.steps import Parallel, Stage, Step

if TYPE_CHECKING:
    from sagakit.saga import Saga

__all__ = ["Backend", "LocalBackend", "Resumption", "RunRequest", "epoch_offset", "new_run_id"]

#: Added to the event loop's clock (``time.monotonic`` by default) to get epoch seconds.
_EPOCH_OFFSET = time.time() - time.monotonic()

_new_context = object.__new__
# Kinds as plain strings: a run's trace keeps them in a tuple of scalars (see Run.events).
_FORWARD_KINDS = ("step_started", "step_succeeded", "step_failed", "step_cancelled")
_COMPENSATE_KINDS = ("compensation_started", "compensation_succeeded", "compensation_failed", "compensation_cancelled")
_INTERRUPTS = (asyncio.CancelledError, KeyboardInterrupt, SystemExit)
_NO_FAULTS: Mapping[str, Fault] = MappingProxyType({})
_NO_SETTLERS: list[Observer] = []
_NAN = math.nan
_Coroutine = types.CoroutineType
_DEFAULT_TIME = asyncio.BaseEventLoop.time


def epoch_offset() -> float:
    """Seconds to add to ``loop.time()`` to get Unix epoch seconds."""
    return _EPOCH_OFFSET


def new_run_id() -> str:
    """A fresh run id: 32 hex digits, time-ordered like a UUIDv7.

    The first 12 digits are the milliseconds since the epoch and the other 20 are random, so
    ids sort by start time and a journal's index grows at its end instead of everywhere.
    The random part comes from a generator of sagakit's own, seeded from the operating
    system and again in every forked child, so ``random.seed()`` in user code never makes
    two runs share an id.
    """
    return "%012x%020x" % (_time_ns() // 1_000_000, _run_id_bits(80))  # noqa: UP031 - faster than an f-string


_time_ns = time.time_ns
_RUN_ID_RANDOM = random.Random()
_run_id_bits = _RUN_ID_RANDOM.getrandbits
os.register_at_fork(after_in_child=_RUN_ID_RANDOM.seed)


@dataclass(slots=True)
class RunRequest:
    """Everything a backend needs to run a saga once. Treat it as read-only.

    ``resume`` is set when the run is not new but carried on from where a journal left it
    (see :class:`Resumption`); only the local backend takes such requests.
    """

    saga: Saga
    data: Any
    context: WorkflowContext
    faults: FaultPlan
    observers: tuple[Observer, ...]
    run_id: str
    resume: Resumption | None = None


@dataclass(slots=True, kw_only=True)
class Resumption:
    """Where a recorded run stands, for the engine to carry it on (crash recovery, or a resume).

    Built from a journal's records by :mod:`sagakit.journal`; the engine emits ``run_resumed``
    and goes on from here with the same rules as a fresh run, recording into the same run.

    Attributes:
        events: the run's recorded events so far; they open the resumed run's record.
        started_at: when the run started (epoch seconds).
        info: the finished run's ``info``.
        status: the status the run had (``None``: it was interrupted).
        number: which resumption of the run this is (1 for the first).
        stage: the first stage still to run forward.
        data: that stage's input.
        completed: the completed steps not yet compensated, in completion order, with the
            data their compensation receives.
        rolling_back: the run is to roll back (from where its rollback stands).
        rollback_recorded: ``rollback_started`` is already in the record.
        original: the error that started the rollback (or will start it).
        failed_step: the step blamed for it.
        undo_on_failure: failed steps to compensate first (``compensate_on_failure``), with
            their input.
        failures: compensations that already failed for good in this rollback.
        stopped: the rollback had already stopped at a failed compensation.
        attempts: per ``(step, phase)``, how many attempts the record holds, so that the
            resumed run numbers its attempts on from there.
        branches: the outputs of the branches of ``stage`` (a parallel stage going on forward)
            that had completed: they do not run again.
    """

    events: list[Event]
    started_at: float
    info: dict[str, Any]
    status: str | None = None
    number: int = 1
    stage: int = 0
    data: Any = None
    completed: list[tuple[Step, int, Any]]
    rolling_back: bool = False
    rollback_recorded: bool = False
    original: BaseException | None = None
    failed_step: str | None = None
    undo_on_failure: list[tuple[Step, int, Any]]
    failures: list[CompensationFailure]
    stopped: bool = False
    attempts: dict[tuple[str, str], int]
    branches: dict[str, Any]


@runtime_checkable
class Backend(Protocol):
    """Where a saga runs. One method: run the request, emit its events, return the Run.

    The run must emit ``run_started`` first and ``run_finished`` last to the request's
    observers. Step failures are reported in the returned :class:`~sagakit.Run`, never
    raised; a cancellation of the caller propagates after rollback.
    """

    name: str

    async def run(self, request: RunRequest) -> Run: ...


class _StepScope:
    """The :class:`~sagakit.policies.AttemptScope` of one step phase run through a policy:
    counts its attempts and open timeouts, and records each attempt in the run."""

    __slots__ = ("deadlines", "execution", "fault", "index", "kinds", "n", "phase", "step", "timeout_error")

    def __init__(self, execution: _Execution, step: Step, index: int, phase: str, fault: Fault | None) -> None:
        self.execution = execution
        self.step = step
        self.index = index
        self.phase = phase
        self.kinds = _FORWARD_KINDS if phase == "forward" else _COMPENSATE_KINDS
        self.fault = fault
        self.n = 0
        self.deadlines: list[tuple[float, float]] = []
        self.timeout_error: StepTimeout | None = None

    async def attempt(self, fn: AnyStepFunction, data: Any, context: WorkflowContext) -> Any:
        self.n += 1
        return await self.execution.attempt(
            self.step, self.index, self.phase, self.kinds, self.fault, self.n, fn, data, context, self
        )

    def expired_timeout(self, now: float) -> float | None:
        expired = [timeout for deadline, timeout in self.deadlines if now >= deadline]
        return min(expired) if expired else None


# One entry of a rollback: the step, its index, what its compensation receives, its context.
_Undo = tuple[Step, int, Any, WorkflowContext]


class _Execution(Recorder):
    """The state of one local run: its recorder, and what the engine needs besides."""

    __slots__ = (
        "branches_done",
        "cancelled",
        "clock",
        "compensate_faults",
        "context",
        "continue_on_failure",
        "forward_faults",
        "moved",
        "prior_attempts",
        "saga",
        "settlers",
        "task",
        "undo_failed",
    )

    def __init__(self, request: RunRequest) -> None:
        saga = self.saga = request.saga
        run_id = request.run_id
        observers = request.observers
        Recorder.__init__(self, run_id, saga.name, request.context.correlation_id, observers)
        self.context = request.context._derive(run_id, saga.name)
        faults = request.faults._faults
        self.forward_faults: Mapping[str, Fault] = _NO_FAULTS
        self.compensate_faults: Mapping[str, Fault] = _NO_FAULTS
        if faults:
            forward: dict[str, Fault] = {}
            compensate: dict[str, Fault] = {}
            for step, fault in faults.items():
                (compensate if fault.phase == "compensate" else forward)[step] = fault
            self.forward_faults, self.compensate_faults = forward, compensate
        self.task = asyncio.current_task() if faults else None  # what a ``cancel`` fault cancels
        self.continue_on_failure = saga.continue_on_compensation_failure
        # The loop's clock, so that a simulated loop records simulated time; the default
        # loops' clock is time.monotonic, called directly because it is the hot path.
        loop_time = type(asyncio.get_running_loop()).time
        self.clock = time.monotonic if loop_time is _DEFAULT_TIME else asyncio.get_running_loop().time
        self.settlers = (
            [obs for obs in observers if callable(getattr(obs, "settle", None))] if observers else _NO_SETTLERS
        )
        self.undo_failed: list[_Undo] | None = None
        # Per (step, phase), the attempts a resumed run had already recorded; the outputs of the
        # branches of its first stage that had completed.
        self.prior_attempts: dict[tuple[str, str], int] | None = None
        self.branches_done: Mapping[str, Any] | None = None
        # A cancellation that arrived while the engine waited for something it would not
        # leave (a parallel stage winding down): it propagates once the run is rolled back.
        self.cancelled = False
        # Whether the rollback has moved from the run's task to a task of its own.
        self.moved = False

    async def settle(self) -> None:
        for observer in self.settlers:
            await observer.settle()  # type: ignore[attr-defined]

    def record_attempt_error(
        self,
        exc: BaseException,
        step: Step,
        index: int,
        phase: str,
        kinds: tuple[str, ...],
        attempt: int,
        started: float,
        injected: bool,
        scope: _StepScope | None,
    ) -> None:
        """Record the event ending a failed or cancelled attempt.

        A cancellation that is really a policy's timeout expiring is recorded as a failure
        with :class:`~sagakit.StepTimeout` (and handed to the policy to raise).
        """
        ended = self.clock()
        _drop_internal_frames(exc)
        error: BaseException | None = exc
        kind, status = kinds[2], "failed"
        if isinstance(exc, asyncio.CancelledError):
            timeout = scope.expired_timeout(ended) if scope is not None and scope.deadlines else None
            if timeout is not None:
                error = scope.timeout_error = StepTimeout(step.name, timeout)  # type: ignore[union-attr]
            else:
                kind, status = kinds[3], "cancelled"
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    error = None  # cancelled from outside: the cancellation is the run's, not the step's
                # else the step raised it itself: keep it, as for any error a step raises
        self.record(kind, _EPOCH_OFFSET + ended, step.name, index, phase, attempt, _EPOCH_OFFSET + started,
                    (ended - started) * 1000.0, error, injected, None, status)

    async def attempt(
        self,
        step: Step,
        index: int,
        phase: str,
        kinds: tuple[str, ...],
        fault: Fault | None,
        attempt: int,
        fn: AnyStepFunction,
        data: Any,
        context: WorkflowContext,
        scope: _StepScope | None,
    ) -> Any:
        """Call ``fn`` once as attempt ``attempt``: inject the fault, record start and end."""
        context.attempt = attempt
        name = step.name
        started = self.begin(name, index, phase, kinds, attempt, data)
        injected = False
        try:
            fires = False
            if fault is not None:
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                fires = fault.fires()
                if fires and fault.mode != "fail_after":
                    injected = self.injected = True
                    if fault.mode[:6] != "cancel":
                        raise InjectedFault(name, fault.mode)
                    await _cancel_run(self.task, phase)
            result = fn(data, context)
            if type(result) is _Coroutine or hasattr(result, "__await__"):
                result = await result
            if fires:
                injected = self.injected = True
                if fault.mode == "fail_after":  # type: ignore[union-attr]
                    raise InjectedFault(name, "fail_after")
                await asyncio.sleep(0)  # an action that never waited meets its cancellation here
        except BaseException as exc:
            self.record_attempt_error(exc, step, index, phase, kinds, attempt, started, injected, scope)
            raise
        self.succeeded(name, index, phase, kinds, attempt, started, data if result is None else result, injected)
        return result

    def begin(self, name: str, index: int, phase: str, kinds: tuple[str, ...], attempt: int, data: Any) -> float:
        """Start an attempt: tell live observers (start events are not kept); return the clock."""
        started = self.clock()
        if self.observers:
            self.tell(kinds[0], _EPOCH_OFFSET + started, name, index, phase, attempt, None, None, None, False, data,
                      None)
        return started

    def succeeded(self, name: str, index: int, phase: str, kinds: tuple[str, ...], attempt: int, started: float,
                  output: Any, injected: bool = False) -> None:
        """Record the event ending a successful attempt that started at ``started`` (``injected``:
        a ``cancel`` fault fired during it)."""
        ended = self.clock()
        if self.events is None:  # self.record(...), inlined: once per step and compensation
            self.atoms.append((kinds[1], name, index, phase, attempt, injected, "succeeded"))
            self.times += (_EPOCH_OFFSET + ended, _EPOCH_OFFSET + started, (ended - started) * 1000.0)
            self.objects += (None, output, None)
        else:
            self.record(kinds[1], _EPOCH_OFFSET + ended, name, index, phase, attempt, _EPOCH_OFFSET + started,
                        (ended - started) * 1000.0, None, injected, output, "succeeded")

    async def forward(self, step: Step, index: int, data: Any, completed: list[_Undo]) -> Any:
        context = self.context._for_step(step.name)
        fault = self.forward_faults.get(step.name) if self.forward_faults else None
        forward = step.forward
        # A resumed run numbers a step's attempts on from those it already recorded.
        base = self.prior_attempts.get((step.name, "forward"), 0) if self.prior_attempts else 0
        try:
            if step.plain:
                result = await self.attempt(step, index, "forward", _FORWARD_KINDS, fault, base + 1, forward, data,
                                            context, None)
            else:
                scope = context._scope = _StepScope(self, step, index, "forward", fault)
                scope.n = base
                result = await forward(data, context)
        except BaseException:
            if step.compensate_on_failure and step.compensate is not None:
                self.undo_on_failure(step, index, data, context)
            raise
        if result is None:
            result = data
        completed.append((step, index, result, context))
        return result

    async def parallel(self, stage: Parallel, first_index: int, data: Any, completed: list[_Undo],
                       done: Mapping[str, Any] | None = None) -> Any:
        """Run a parallel stage the one way (:func:`sagakit._driver.parallel_stage`); its output.

        ``done``: the outputs of branches that already completed (a resumed run): they do not
        run again, and their outputs merge in their place.
        """
        steps = stage.steps
        running = [(i, step) for i, step in enumerate(steps) if not done or step.name not in done]
        failure: StageFailed | None = None
        try:
            ran = await parallel_stage(
                [self.forward(step, first_index + i, data, completed) for i, step in running], asyncio.wait
            )
        except StageFailed as failed:
            failure = failed
        if failure is not None:  # raised here, not in the handler: the step's error keeps its own context
            if failure.cancelled:
                self.cancelled = True
            self.failed_step = running[failure.position][1].name
            raise failure.error
        if done:
            fresh = iter(ran)
            outputs = [done[step.name] if step.name in done else next(fresh) for step in steps]
        else:
            outputs = ran
        merged, unmergeable = merge_outputs(outputs)
        if unmergeable is not None:
            name = self.failed_step = steps[unmergeable].name
            raise TypeError(unmergeable_branch_message(self.saga_name, name, type(outputs[unmergeable]).__name__))
        return merged

    def undo_on_failure(self, step: Step, index: int, data: Any, context: WorkflowContext) -> None:
        """Compensate ``step`` first in the rollback although it failed (``compensate_on_failure``)."""
        if self.undo_failed is None:
            self.undo_failed = []
        self.undo_failed.append((step, index, data, context))

    def resume(self, resumption: Resumption) -> list[_Undo]:
        """Open a resumed run's record with what the journal had, tell ``run_resumed``, and
        return the completed steps to carry on from (see :class:`Resumption`)."""
        if self.events is None:  # the run's record is a list of events from its start
            self.events = []
            self.observers = []
        self.events.extend(resumption.events)
        self.failed_step = resumption.failed_step
        self.prior_attempts = resumption.attempts
        self.branches_done = resumption.branches or None
        now = _EPOCH_OFFSET + self.clock()
        self.record("run_resumed", now, None, -1, None, resumption.number, None, None, None, False, None,
                    resumption.status)
        context = self.context
        self.undo_failed = [(step, index, data, context._for_step(step.name))
                            for step, index, data in resumption.undo_on_failure] or None
        return [(step, index, data, context._for_step(step.name)) for step, index, data in resumption.completed]

    async def carry_forward(self, stages: Sequence[tuple[Stage, int, Any]], data: Any, completed: list[_Undo],
                            ) -> tuple[Any, BaseException | None]:
        """Forward recovery: run the stages after the pivot, each step under its forward policy.

        Returns the saga's output and ``None``, or the failure of the step that ran out of its
        policy (or was interrupted), which leaves the run stuck. The caller shields this from
        cancellation: once past the pivot, the saga completes.
        """
        # Like a rollback, forward recovery starts inline in the run's task (a cancellation can
        # only arrive while it waits) and moves to a task of its own (see _shielded_rest) when it
        # first waits. A stage that may bind something to the current task before it waits (an
        # asyncio.timeout, a task group, a cancel fault) starts in that task instead.
        faults = self.forward_faults
        inline = not self.settlers
        if not inline:
            await asyncio.sleep(0)
        done = self.branches_done
        try:
            for stage, index, _ in stages:
                if inline and (type(stage) is not Step or not stage.forward_task_free
                               or (faults and stage.name in faults)):
                    await asyncio.sleep(0)
                    inline = False
                if type(stage) is Step:
                    try:
                        data = await self.forward(stage, index, data, completed)
                    except BaseException:
                        self.failed_step = stage.name
                        raise
                else:
                    data = await self.parallel(stage, index, data, completed, done)  # type: ignore[arg-type]
                done = None  # only the first stage of a resumed run can be part done
                if self.settlers:
                    await self.settle()
        except BaseException as exc:
            _drop_internal_frames(exc)
            if self.failed_step is None:  # the journal refused the record of a completed stage
                self.failed_step = stage.steps[0].name if isinstance(stage, Parallel) else stage.name
            return data, exc
        return data, None

    def stuck_error(self, failure: BaseException) -> SagaStuck:
        """The :class:`~sagakit.SagaStuck` of a run whose pending step failed with ``failure``."""
        return SagaStuck(saga=self.saga_name, step=self.failed_step, original=failure, pivot=self.saga.pivot)

    def rollback_for(self, failure: BaseException | None, completed: list[_Undo], resumption: Resumption | None,
                     ) -> tuple[Rollback[_Undo, CompensationFailure], BaseException | None, BaseException | None, bool]:
        """The rollback after ``failure`` (or the one ``resumption`` carries on): the driver, the
        original error, the interruption to propagate, and whether to record ``rollback_started``."""
        undo = undo_order(self.undo_failed or (), completed)
        if failure is None:  # a resumed rollback carries on
            assert resumption is not None
            return (Rollback(undo, _compensates, stop=not self.continue_on_failure, failures=resumption.failures,
                             stopped=resumption.stopped),
                    resumption.original, None, not resumption.rollback_recorded)
        _drop_internal_frames(failure)
        if self.failed_step is None:  # stopped between two stages
            steps = self.saga.steps
            self.failed_step = blamed_step(None, steps[len(completed)].name if len(completed) < len(steps) else None)
        rollback: Rollback[_Undo, CompensationFailure] = Rollback(undo, _compensates, stop=not self.continue_on_failure)
        if isinstance(failure, _INTERRUPTS):
            return rollback, None, failure, True
        return rollback, failure, None, True

    async def rollback(self, rollback: Rollback[_Undo, CompensationFailure], original: BaseException | None,
                       announce: bool) -> CompensationError | None:
        """Carry out ``rollback`` (the driver says what comes next); return the
        :class:`~sagakit.CompensationError` if a compensation failed.

        Each compensation's record is committed (when the run has a settling observer, such
        as a journal) before the next one starts.
        """
        clock = self.clock
        if announce:
            self.record("rollback_started", _EPOCH_OFFSET + clock(), self.failed_step, -1, None, 0, None, None,
                        original, False, None, "rolling_back")
        faults = self.compensate_faults
        observers, events = self.observers, self.events
        atoms, times, objects = self.atoms, self.times, self.objects
        settling = bool(self.settlers)
        if settling:
            settling = await self.settle_quietly()
        # The rollback starts inline in the run's task (see LocalBackend.run) and moves to a task
        # of its own, shielded from the run's cancellation, when it first suspends (the run then
        # sets self.moved). A compensation that may suspend must start in that task: what it
        # binds to the current task before suspending (an asyncio.timeout, a TaskGroup) must be
        # the task that goes on running it. A saga with such a compensation moves its rollback
        # before the first compensation; a plain function's awaitable is looked at when it comes.
        if self.saga._compensations_suspend and rollback.undo and not self.moved and not rollback.stopped:
            await asyncio.sleep(0)  # moves the rollback to its own task (_shielded_rest)
        prior = self.prior_attempts  # a resumed run numbers attempts on from its record
        special = faults is not _NO_FAULTS or prior is not None
        # The driver's walk (sagakit._driver.Rollback), inlined: in undo order, a step without a
        # compensation recorded as skipped; the driver decides what a failure means.
        for position, (step, index, data, context) in enumerate(() if rollback.stopped else rollback.undo):
            name = step.name
            compensate = step.compensate
            if compensate is None:
                now = _EPOCH_OFFSET + clock()
                self.record("compensation_skipped", now, name, index, "compensate", 0, now, 0.0, None, False, data,
                            "skipped")
                continue
            # A compensation sees the same context as its step.
            context.phase = "compensate"
            context._scope = None
            self.compensations_run += 1
            if special:  # a fault plan, or a resumed run's attempts to number on from
                fault = faults.get(name) if faults is not _NO_FAULTS else None
                base = prior.get((name, "compensate"), 0) if prior is not None else 0
            else:
                fault, base = None, 0
            try:
                if isinstance(compensate, Policy):
                    scope = context._scope = _StepScope(self, step, index, "compensate", fault)
                    scope.n = base
                    await compensate(data, context)
                elif special and (fault is not None or base):
                    await self.attempt(step, index, "compensate", _COMPENSATE_KINDS, fault, base + 1, compensate,
                                       data, context, None)
                else:
                    # attempt() without a fault, minus its coroutine: a rollback's common case.
                    context.attempt = 1
                    if observers is None:
                        started = clock()
                    else:
                        started = self.begin(name, index, "compensate", _COMPENSATE_KINDS, 1, data)
                    try:
                        output = compensate(data, context)
                        if type(output) is _Coroutine or hasattr(output, "__await__"):
                            if (step.compensation_suspends is None and not self.moved
                                    and (type(output) is not _Coroutine or code_may_suspend(output.cr_code))):
                                await asyncio.sleep(0)  # a plain def returned an awaitable: start it moved
                            output = await output
                    except BaseException as exc:
                        self.record_attempt_error(exc, step, index, "compensate", _COMPENSATE_KINDS, 1, started,
                                                  False, None)
                        raise
                    if output is None:
                        output = data
                    if events is None:  # the trace row, as on the plain-step fast path
                        ended = clock()
                        atoms.append(("compensation_succeeded", name, index, "compensate", 1, False, "succeeded"))
                        times += (_EPOCH_OFFSET + ended, _EPOCH_OFFSET + started, (ended - started) * 1000.0)
                        objects += (None, output, None)
                    else:
                        self.succeeded(name, index, "compensate", _COMPENSATE_KINDS, 1, started, output)
            except BaseException as exc:
                _drop_internal_frames(exc)
                if not isinstance(exc, Exception):
                    rollback.interrupted(CompensationFailure(name, exc), exc)
                elif rollback.failed(CompensationFailure(name, exc), position):
                    break
            if settling:
                settling = await self.settle_quietly()
        if not rollback.failures:
            return None
        return CompensationError(saga=self.saga_name, original=original, failures=rollback.failures,
                                 pending=[entry[0].name for entry in rollback.pending])

    async def settle_quietly(self) -> bool:
        """Settle during a rollback; return whether to go on settling.

        A rollback never stops for its record: if the journal cannot commit, the remaining
        compensations still run, and the end of the run reports the journal's error.
        """
        try:
            await self.settle()
        except Exception:
            return False
        return True


def _compensates(entry: _Undo) -> bool:
    """Whether a rollback entry has a compensation to run (the driver skips the others)."""
    return entry[0].compensate is not None


async def _cancel_run(task: asyncio.Task[Any] | None, phase: str) -> None:
    """Cancel the run's task, as a caller would, for a ``cancel`` fault firing in ``phase``.

    A compensation runs shielded: the rollback first moves to its own task (by suspending
    once), so that the cancellation reaches the waiting run and not the compensation.
    """
    if phase == "compensate":
        await asyncio.sleep(0)
    if task is not None:
        task.cancel()


class _Resume:
    """Awaitable that carries on a coroutine already started elsewhere.

    ``pending`` is what the coroutine yielded when it first suspended (the future it waits
    for); yielding it again hands that wait to the task now driving us.
    """

    __slots__ = ("coro", "pending")

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self.coro = coro
        self.pending = pending

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, pending = self.coro, self.pending
        while True:
            try:
                value = yield pending
            except BaseException as exc:  # delivered by the driving task: pass it on
                try:
                    pending = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    pending = coro.send(value)
                except StopIteration as stop:
                    return stop.value


async def _carry_on(resume: _Resume) -> Any:
    return await resume


async def _shielded(coro: Coroutine[Any, Any, Any]) -> tuple[Any, bool]:
    """Run ``coro`` to the end, shielded from this task's cancellation.

    Returns its result and whether a cancellation arrived meanwhile. A cancellation can
    only arrive while a coroutine is suspended, so ``coro`` first runs inline; only if it
    suspends does the rest move to a task of its own that this task waits for, through any
    number of cancellations. Rollbacks whose compensations never wait stay cheap. (The
    engine's rollback does the first step itself, then awaits :func:`_shielded_rest`.)
    """
    try:
        pending = coro.send(None)
    except StopIteration as stop:
        return stop.value, False
    return await _shielded_rest(coro, pending)


async def _shielded_rest(coro: Coroutine[Any, Any, Any], pending: Any) -> tuple[Any, bool]:
    """The rest of :func:`_shielded`, once ``coro`` has suspended waiting for ``pending``."""
    task = asyncio.ensure_future(_carry_on(_Resume(coro, pending)))
    cancelled = await wait_through_cancellation([task], asyncio.wait)
    return task.result(), cancelled


_INTERNAL_FILES = frozenset({__file__, policies.__file__})


def _drop_internal_frames(error: BaseException) -> None:
    """Leave sagakit's own frames out of ``error``'s traceback.

    A traceback keeps every frame it passes through alive, and the engine's frames hold the
    whole run (contexts, payloads, events): a history of failed runs would keep all of that,
    and the garbage collector would walk it again and again. What remains starts at the
    caller and goes straight to the step or compensation that raised.
    """
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename not in _INTERNAL_FILES:
        tb = tb.tb_next
    if tb is None:
        return  # nothing to drop (the error passed here before)
    kept = []
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename not in _INTERNAL_FILES:
            kept.append(tb)
        tb = tb.tb_next
    for outer, inner in itertools.pairwise(kept):
        outer.tb_next = inner
    if kept:
        kept[-1].tb_next = None
    error.__traceback__ = kept[0] if kept else None


class LocalBackend:
    """Runs sagas in this process, on the running asyncio event loop."""

    name = "local"

    async def run(self, request: RunRequest) -> Run:
        execution = _Execution(request)
        saga = request.saga
        clock = execution.clock
        atoms = execution.atoms
        times = execution.times
        objects = execution.objects
        settlers = execution.settlers
        facts = execution.context._run
        forward_faults = execution.forward_faults
        plan = stage_plan(saga)
        # After the pivot, the stages run to their end whatever comes (forward recovery, below).
        after_pivot = saga.forward_from
        resumption = request.resume
        completed: list[_Undo]
        if resumption is None:
            run_started = clock()
            run_started_at = _EPOCH_OFFSET + run_started
            data = request.data
            # Its info is a dict of its own: picklable, and not watched by the garbage collector.
            info = {"backend": "local"} if not saga._kinds else {"backend": "local", "kinds": saga._kinds}
            execution.start(run_started_at, data, info)
            completed = []
            forward = True
        else:
            run_started_at = resumption.started_at
            run_started = run_started_at - _EPOCH_OFFSET
            completed = execution.resume(resumption)
            data = resumption.data
            forward = not resumption.rolling_back
            if after_pivot is not None and resumption.stage > after_pivot:
                after_pivot = resumption.stage
            plan = plan[resumption.stage :]
            if after_pivot is not None:
                after_pivot -= resumption.stage
        tail: Sequence[tuple[Stage, int, Any]] = ()
        if after_pivot is not None:
            plan, tail = plan[:after_pivot], plan[after_pivot:]
        observers = execution.observers
        events = execution.events
        failure: BaseException | None = None
        result: Any = None
        if forward:
            try:
                if settlers:
                    await execution.settle()
                for stage, index, row in plan:
                    if type(stage) is Step:
                        name = stage.name
                        # run_context._for_step(name), inlined
                        context = _new_context(WorkflowContext)
                        context._run = facts
                        context.step = name
                        context.phase = "forward"
                        context.attempt = 1
                        context._scope = None
                        fault = forward_faults.get(name) if forward_faults is not _NO_FAULTS else None
                        try:
                            if row is not None and fault is None:
                                # The plain-step fast path, the hot path of every saga: attempt()
                                # without its coroutine and, for an unobserved run, the trace row the
                                # stage plan built (see sagakit._recorder, invariants 1, 2 and 4).
                                if observers is None:
                                    started = clock()
                                else:
                                    started = execution.begin(name, index, "forward", _FORWARD_KINDS, 1, data)
                                try:
                                    output = stage.action(data, context)
                                    if type(output) is _Coroutine or hasattr(output, "__await__"):
                                        output = await output
                                except BaseException as exc:
                                    execution.record_attempt_error(exc, stage, index, "forward", _FORWARD_KINDS, 1,
                                                                   started, False, None)
                                    raise
                                if output is not None:
                                    data = output
                                if events is None:
                                    ended = clock()
                                    atoms.append(row)
                                    times += (_EPOCH_OFFSET + ended, _EPOCH_OFFSET + started,
                                              (ended - started) * 1000.0)
                                    objects += (None, data, None)
                                else:
                                    execution.succeeded(name, index, "forward", _FORWARD_KINDS, 1, started, data)
                            else:
                                if stage.plain:
                                    output = await execution.attempt(stage, index, "forward", _FORWARD_KINDS, fault,
                                                                     1, stage.action, data, context, None)
                                else:
                                    context._scope = _StepScope(execution, stage, index, "forward", fault)
                                    output = await stage.forward(data, context)
                                if output is not None:
                                    data = output
                        except BaseException:
                            execution.failed_step = name
                            if stage.compensate_on_failure and stage.compensate is not None:
                                execution.undo_on_failure(stage, index, data, context)
                            raise
                        completed.append((stage, index, data, context))
                    else:
                        data = await execution.parallel(stage, index, data, completed)  # type: ignore[arg-type]
                    if settlers:
                        await execution.settle()
                result = data
            except BaseException as exc:
                failure = exc
        original: BaseException | None = None
        interrupt: BaseException | None = None
        error: BaseException | None = None
        status: RunStatus
        if forward and failure is None and tail:
            # Past the pivot: forward recovery, shielded from cancellation like a rollback.
            carry = execution.carry_forward(tail, data, completed)
            try:
                pending = carry.send(None)
            except StopIteration as stop:
                (data, stuck), cancelled_meanwhile = stop.value, False
            else:
                (data, stuck), cancelled_meanwhile = await _shielded_rest(carry, pending)
            status, error, original, interrupt = forward_outcome(stuck, execution.stuck_error)
            if interrupt is None and cancelled_meanwhile:
                interrupt = asyncio.CancelledError()
            result = data if status == "completed" else None
        elif forward and failure is None:
            status = "completed"
        else:
            rollback, original, interrupt, announce = execution.rollback_for(failure, completed, resumption)
            # _shielded(execution.rollback(...)), its first step inlined: a rollback whose
            # compensations never wait costs no task.
            coroutine = execution.rollback(rollback, original, announce)
            try:
                pending = coroutine.send(None)
            except StopIteration as stop:
                compensation_failure, cancelled_meanwhile = stop.value, False
            else:
                execution.moved = True  # the rest of the rollback runs in a task of its own
                compensation_failure, cancelled_meanwhile = await _shielded_rest(coroutine, pending)
            # After its rollback, a cancellation always propagates: one that came meanwhile, or
            # while a parallel stage wound down, or a compensation's own interruption.
            if interrupt is None:
                interrupt = rollback.interrupt
            if interrupt is None and (cancelled_meanwhile or execution.cancelled):
                interrupt = asyncio.CancelledError()
            status, error = rollback_outcome(compensation_failure, original, interrupt)
        task = execution.task
        if task is not None and interrupt is None and task.cancelling():
            # A `cancel` fault fired in an action that then failed without waiting: its
            # cancellation is still pending on this task. It belongs to this run, and propagates
            # after the rollback like any cancellation, rather than at the caller's next await.
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError as exc:
                interrupt = exc
        ended = clock()
        duration_ms = (ended - run_started) * 1000.0
        run = execution.finish(definition=saga, backend=self.name, status=status, result=result, error=error,
                               original=original, at=_EPOCH_OFFSET + ended, started_at=run_started_at,
                               duration_ms=duration_ms, steps_completed=len(completed),
                               info=resumption.info if resumption is not None else
                               {"kinds": saga._kinds} if saga._kinds else None)
        if resumption is not None:  # the counts span the whole record, not only what this part did
            run.steps_completed, run.compensations_run, run.injected = run_counts(run.events)
        if settlers:
            settle_failure = None
            try:
                _, cancelled_meanwhile = await _shielded(execution.settle())
            except BaseException as exc:  # the journal could not record the end: report, keep the run
                settle_failure = exc
            else:
                if cancelled_meanwhile and interrupt is None:
                    interrupt = asyncio.CancelledError()
            if settle_failure is not None and interrupt is None:
                warnings.warn(f"sagakit: recording the end of run {run.run_id} failed: "
                              f"{type(settle_failure).__name__}: {error_text(settle_failure)}",
                              RuntimeWarning, stacklevel=2)
        saga.history.append(run)
        if interrupt is not None:
            raise interrupt
        return run
