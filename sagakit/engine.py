"""The local asyncio backend: forward execution, rollback, cancellation shielding.

The engine knows nothing of notebooks, telemetry, journals or Temporal. It runs a saga's
stages, emits :class:`~sagakit.events.Event` records to the run's observers, and on failure
or cancellation compensates the completed steps in reverse order of completion, shielded
from cancellation, before it lets the error or the cancellation go on.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sagakit import policies
from sagakit.context import WorkflowContext
from sagakit.errors import CompensationError, CompensationFailure, InjectedFault, StepTimeout
from sagakit.events import Event, EventKind, Observer, deliver
from sagakit.faults import Fault, FaultPlan
from sagakit.policies import AnyStepFunction, Policy
from sagakit.runs import Run, RunStatus
from sagakit.steps import Parallel, Step

if TYPE_CHECKING:
    from sagakit.saga import Saga

__all__ = ["Backend", "LocalBackend", "RunRequest", "epoch_offset", "new_run_id"]

#: Added to the event loop's clock (``time.monotonic`` by default) to get epoch seconds.
_EPOCH_OFFSET = time.time() - time.monotonic()

_new_event = tuple.__new__
_K = EventKind
_FORWARD_KINDS = (_K.STEP_STARTED, _K.STEP_SUCCEEDED, _K.STEP_FAILED, _K.STEP_CANCELLED)
_COMPENSATE_KINDS = (
    _K.COMPENSATION_STARTED,
    _K.COMPENSATION_SUCCEEDED,
    _K.COMPENSATION_FAILED,
    _K.COMPENSATION_CANCELLED,
)
_STEP_STARTED = _K.STEP_STARTED
_STEP_SUCCEEDED = _K.STEP_SUCCEEDED
_INTERRUPTS = (asyncio.CancelledError, KeyboardInterrupt, SystemExit)


def epoch_offset() -> float:
    """Seconds to add to ``loop.time()`` to get Unix epoch seconds."""
    return _EPOCH_OFFSET


def new_run_id() -> str:
    """A fresh run id: 32 hex digits, time-ordered like a UUIDv7.

    The first 12 digits are the milliseconds since the epoch and the other 20 are random, so
    ids sort by start time and a journal's index grows at its end instead of everywhere.
    """
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


@dataclass(slots=True)
class RunRequest:
    """Everything a backend needs to run a saga once. Treat it as read-only."""

    saga: Saga
    data: Any
    context: WorkflowContext
    faults: FaultPlan
    observers: tuple[Observer, ...]
    run_id: str


@runtime_checkable
class Backend(Protocol):
    """Where a saga runs. One method: run the request, emit its events, return the Run.

    The run must emit ``run_started`` first and ``run_finished`` last to the request's
    observers. Step failures are reported in the returned :class:`~sagakit.Run`, never
    raised; a cancellation of the caller propagates after rollback.
    """

    name: str

    async def run(self, request: RunRequest) -> Run: ...


class _Scope:
    """One step phase run through a policy: counts its attempts and open timeouts."""

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


class _Execution:
    """The state of one local run."""

    __slots__ = (
        "clock",
        "compensate_faults",
        "compensations_run",
        "context",
        "continue_on_failure",
        "correlation_id",
        "emit",
        "events",
        "failed_step",
        "forward_faults",
        "injected",
        "notify",
        "observers",
        "run_id",
        "saga",
        "saga_name",
        "settlers",
        "undo_failed",
    )

    def __init__(self, request: RunRequest) -> None:
        saga = request.saga
        self.saga = saga
        self.saga_name = saga.name
        self.run_id = request.run_id
        self.context = request.context._derive(self.run_id, saga.name)
        self.correlation_id = request.context.correlation_id
        self.forward_faults: dict[str, Fault] = {}
        self.compensate_faults: dict[str, Fault] = {}
        faults = request.faults
        if faults:
            for name, fault in faults.items():
                (self.compensate_faults if fault.phase == "compensate" else self.forward_faults)[name] = fault
        self.continue_on_failure = saga.continue_on_compensation_failure
        loop = asyncio.get_running_loop()
        # The loop's clock, so that a simulated loop records simulated time; the default
        # loops' clock is time.monotonic, called directly because it is the hot path.
        self.clock = time.monotonic if type(loop).time is asyncio.BaseEventLoop.time else loop.time
        self.events: list[Event] = []
        self.observers = list(request.observers)
        self.settlers = (
            [obs for obs in self.observers if callable(getattr(obs, "settle", None))] if self.observers else []
        )
        self.emit: Callable[[Event], None] = self.events.append if not self.observers else self._emit
        # Start-of-attempt events only matter while a run is live (diagrams, spans, journals):
        # they go to observers and are not kept in the run's trace, whose end-of-attempt events
        # already carry their start times.
        self.notify: Callable[[Event], None] | None = self._notify if self.observers else None
        self.failed_step: str | None = None
        self.undo_failed: list[_Undo] = []
        self.compensations_run = 0
        self.injected = False

    def _emit(self, event: Event) -> None:
        self.events.append(event)
        self._notify(event)

    def _notify(self, event: Event) -> None:
        deliver(self.observers, event)

    def event(self, kind: EventKind, **fields: Any) -> Event:
        return Event(kind, self.run_id, self.saga_name, _EPOCH_OFFSET + self.clock(),
                     correlation_id=self.correlation_id, **fields)

    async def settle(self) -> None:
        for observer in self.settlers:
            await observer.settle()  # type: ignore[attr-defined]

    def record_attempt_error(
        self,
        exc: BaseException,
        step: Step,
        index: int,
        phase: str,
        kinds: tuple[EventKind, ...],
        attempt: int,
        started: float,
        injected: bool,
        scope: _Scope | None,
    ) -> None:
        """Emit the event ending a failed or cancelled attempt.

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
                error, kind, status = None, kinds[3], "cancelled"
        self.emit(_new_event(Event, (kind, self.run_id, self.saga_name, _EPOCH_OFFSET + ended, step.name, index,
                                     phase, attempt, _EPOCH_OFFSET + started, (ended - started) * 1000.0, error,
                                     injected, None, status, self.correlation_id, None)))

    async def attempt(
        self,
        step: Step,
        index: int,
        phase: str,
        kinds: tuple[EventKind, ...],
        fault: Fault | None,
        attempt: int,
        fn: AnyStepFunction,
        data: Any,
        context: WorkflowContext,
        scope: _Scope | None,
    ) -> Any:
        """Call ``fn`` once as attempt ``attempt``: inject the fault, emit start and end."""
        context.attempt = attempt
        emit = self.emit
        clock = self.clock
        run_id = self.run_id
        saga = self.saga_name
        correlation_id = self.correlation_id
        name = step.name
        started = clock()
        notify = self.notify
        if notify is not None:
            notify(_new_event(Event, (kinds[0], run_id, saga, _EPOCH_OFFSET + started, name, index, phase,
                                      attempt, None, None, None, False, data, None, correlation_id, None)))
        injected = False
        try:
            fires = False
            if fault is not None:
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                fires = fault.fires()
                if fires and fault.mode != "fail_after":
                    injected = self.injected = True
                    raise InjectedFault(name, fault.mode)
            result = fn(data, context)
            if hasattr(result, "__await__"):
                result = await result
            if fires:
                injected = self.injected = True
                raise InjectedFault(name, "fail_after")
        except BaseException as exc:
            self.record_attempt_error(exc, step, index, phase, kinds, attempt, started, injected, scope)
            raise
        ended = clock()
        emit(_new_event(Event, (kinds[1], run_id, saga, _EPOCH_OFFSET + ended, name, index, phase,
                                attempt, _EPOCH_OFFSET + started, (ended - started) * 1000.0,
                                None, False, data if result is None else result, "succeeded",
                                correlation_id, None)))
        return result

    async def forward(self, step: Step, index: int, data: Any, completed: list[_Undo]) -> Any:
        context = self.context._for_step(step.name)
        fault = self.forward_faults.get(step.name) if self.forward_faults else None
        forward = step.forward
        try:
            if step.plain:
                result = await self.attempt(step, index, "forward", _FORWARD_KINDS, fault, 1, forward, data,
                                            context, None)
            else:
                context._scope = _Scope(self, step, index, "forward", fault)
                result = await forward(data, context)
        except BaseException:
            if step.compensate_on_failure and step.compensate is not None:
                self.undo_failed.append((step, index, data, context))
            raise
        if result is None:
            result = data
        completed.append((step, index, result, context))
        return result

    async def parallel(self, stage: Parallel, first_index: int, data: Any, completed: list[_Undo]) -> Any:
        loop = asyncio.get_running_loop()
        outputs: dict[str, Any] = {}
        failures: list[tuple[Step, BaseException]] = []

        async def branch(step: Step, index: int) -> None:
            try:
                outputs[step.name] = await self.forward(step, index, data, completed)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                failures.append((step, exc))
                raise

        tasks = [loop.create_task(branch(step, first_index + i)) for i, step in enumerate(stage.steps)]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            await _wait_through_cancellation(tasks)
            raise
        if failures:
            for task in tasks:
                task.cancel()
            await _wait_through_cancellation(tasks)
            step, error = failures[0]
            self.failed_step = step.name
            raise error
        for task in tasks:
            task.result()
        merged: dict[str, Any] = {}
        for step in stage.steps:
            output = outputs[step.name]
            if not isinstance(output, Mapping):
                self.failed_step = step.name
                raise TypeError(
                    f"saga {self.saga_name!r}: parallel branch {step.name!r} returned "
                    f"{type(output).__name__}; parallel branches must return a dict (or None to pass "
                    "their input through) so that their outputs can be merged"
                )
            merged.update(output)
        return merged

    def compensate(self, step: Step, index: int, data: Any, forward_context: WorkflowContext) -> Awaitable[Any]:
        """Start the compensation of ``step``: the awaitable running it (policy or one attempt)."""
        compensate = step.compensate
        assert compensate is not None
        context = forward_context  # a compensation sees the same context as its step
        context.phase = "compensate"
        context._scope = None
        fault = self.compensate_faults.get(step.name) if self.compensate_faults else None
        self.compensations_run += 1
        if isinstance(compensate, Policy):
            context._scope = _Scope(self, step, index, "compensate", fault)
            return compensate(data, context)  # type: ignore[no-any-return]
        return self.attempt(step, index, "compensate", _COMPENSATE_KINDS, fault, 1, compensate, data, context, None)

    async def rollback(self, undo: Sequence[_Undo], original: BaseException | None) -> CompensationError | None:
        self.emit(self.event(_K.ROLLBACK_STARTED, step=self.failed_step, error=original, status="rolling_back"))
        failures: list[CompensationFailure] = []
        pending: list[str] = []
        for position, (step, index, data, context) in enumerate(undo):
            if step.compensate is None:
                now = _EPOCH_OFFSET + self.clock()
                self.emit(Event(_K.COMPENSATION_SKIPPED, self.run_id, self.saga_name, now, step.name, index,
                                "compensate", 0, now, 0.0, None, False, data, "skipped", self.correlation_id))
                continue
            try:
                await self.compensate(step, index, data, context)
            except Exception as exc:
                _drop_internal_frames(exc)
                failures.append(CompensationFailure(step.name, exc))
                if not self.continue_on_failure:
                    pending = [later[0].name for later in undo[position + 1 :] if later[0].compensate is not None]
                    break
        if not failures:
            return None
        return CompensationError(saga=self.saga_name, original=original, failures=failures, pending=pending)


async def _wait_through_cancellation(tasks: Sequence[asyncio.Future[Any]]) -> bool:
    """Wait until every task is done, even if this task is cancelled meanwhile.

    Returns whether a cancellation arrived while waiting (the caller re-raises it).
    """
    cancelled = False
    pending = [task for task in tasks if not task.done()]
    while pending:
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError:
            cancelled = True
        pending = [task for task in pending if not task.done()]
    for task in tasks:
        if not task.cancelled():
            task.exception()  # mark retrieved: the error is reported through the run
    return cancelled


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
    number of cancellations. Rollbacks whose compensations never wait stay cheap.
    """
    try:
        pending = coro.send(None)
    except StopIteration as stop:
        return stop.value, False
    task = asyncio.ensure_future(_carry_on(_Resume(coro, pending)))
    cancelled = await _wait_through_cancellation([task])
    return task.result(), cancelled


_INTERNAL_FILES = frozenset({__file__, policies.__file__})


def _drop_internal_frames(error: BaseException) -> None:
    """Leave sagakit's own frames out of ``error``'s traceback.

    A traceback keeps every frame it passes through alive, and the engine's frames hold the
    whole run (contexts, payloads, events): a history of failed runs would keep all of that,
    and the garbage collector would walk it again and again. What remains starts at the
    caller and goes straight to the step or compensation that raised.
    """
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
    _info: Mapping[str, Any] = MappingProxyType({"backend": "local"})

    async def run(self, request: RunRequest) -> Run:
        execution = _Execution(request)
        saga = request.saga
        emit = execution.emit
        clock = execution.clock
        run_started = clock()
        data = request.data
        emit(_new_event(Event, (_K.RUN_STARTED, execution.run_id, execution.saga_name, _EPOCH_OFFSET + run_started,
                                None, -1, None, 0, None, None, None, False, data, None, execution.correlation_id,
                                self._info)))
        completed: list[_Undo] = []
        settlers = execution.settlers
        run_context = execution.context
        attempt = execution.attempt
        run_id = execution.run_id
        notify = execution.notify
        saga_name = execution.saga_name
        correlation_id = execution.correlation_id
        forward_faults = execution.forward_faults
        status: RunStatus
        error: BaseException | None = None
        original: BaseException | None = None
        interrupt: BaseException | None = None
        result: Any = None
        try:
            if settlers:
                await execution.settle()
            index = 0
            for stage in saga.stages:
                if type(stage) is Step:
                    # execution.forward() and attempt(), inlined for a plain step without a
                    # fault: this is the hot path of every saga.
                    name = stage.name
                    context = run_context._for_step(name)
                    fault = forward_faults.get(name) if forward_faults else None
                    try:
                        if stage.plain and fault is None:
                            context.attempt = 1
                            started = clock()
                            if notify is not None:
                                notify(_new_event(Event, (_STEP_STARTED, run_id, saga_name, _EPOCH_OFFSET + started,
                                                          name, index, "forward", 1, None, None, None, False, data,
                                                          None, correlation_id, None)))
                            try:
                                output = stage.action(data, context)
                                if hasattr(output, "__await__"):
                                    output = await output
                            except BaseException as exc:
                                execution.record_attempt_error(exc, stage, index, "forward", _FORWARD_KINDS, 1,
                                                               started, False, None)
                                raise
                            if output is not None:
                                data = output
                            ended = clock()
                            emit(_new_event(Event, (_STEP_SUCCEEDED, run_id, saga_name, _EPOCH_OFFSET + ended, name,
                                                    index, "forward", 1, _EPOCH_OFFSET + started,
                                                    (ended - started) * 1000.0, None, False, data, "succeeded",
                                                    correlation_id, None)))
                        elif stage.plain:
                            output = await attempt(stage, index, "forward", _FORWARD_KINDS, fault, 1, stage.action,
                                                   data, context, None)
                            if output is not None:
                                data = output
                        else:
                            context._scope = _Scope(execution, stage, index, "forward", fault)
                            output = await stage.forward(data, context)
                            if output is not None:
                                data = output
                    except BaseException:
                        execution.failed_step = name
                        if stage.compensate_on_failure and stage.compensate is not None:
                            execution.undo_failed.append((stage, index, data, context))
                        raise
                    completed.append((stage, index, data, context))
                    index += 1
                else:
                    data = await execution.parallel(stage, index, data, completed)  # type: ignore[arg-type]
                    index += len(stage.steps)  # type: ignore[union-attr]
                if settlers:
                    await execution.settle()
            result = data
            status = "completed"
        except BaseException as exc:
            _drop_internal_frames(exc)
            if execution.failed_step is None and completed:
                execution.failed_step = completed[-1][0].name
            if isinstance(exc, _INTERRUPTS):
                interrupt = exc
            else:
                original = exc
            undo = list(execution.undo_failed)
            undo.extend(reversed(completed))
            compensation_error, cancelled_meanwhile = await _shielded(execution.rollback(undo, original))
            if cancelled_meanwhile and interrupt is None:
                interrupt = asyncio.CancelledError()
            if compensation_error is not None:
                status = "compensation_failed"
                error = compensation_error
            elif original is not None:
                status = "compensated"
                error = original
            else:
                status = "cancelled"
                error = interrupt
        ended = clock()
        emit(_new_event(Event, (_K.RUN_FINISHED, execution.run_id, execution.saga_name, _EPOCH_OFFSET + ended,
                                None, -1, None, 0, _EPOCH_OFFSET + run_started, (ended - run_started) * 1000.0, error,
                                execution.injected, result, status, execution.correlation_id, None)))
        run = Run(
            run_id=execution.run_id,
            saga=execution.saga_name,
            definition=saga,
            correlation_id=execution.correlation_id,
            backend=self.name,
            status=status,
            result=result,
            error=error,
            original_error=original,
            failed_step=execution.failed_step,
            events=execution.events,
            started_at=_EPOCH_OFFSET + run_started,
            duration_ms=(ended - run_started) * 1000.0,
            steps_completed=len(completed),
            compensations_run=execution.compensations_run,
            injected=execution.injected,
        )
        if settlers:
            settle_interrupt = None
            try:
                await _shielded(execution.settle())
            except BaseException as exc:  # the journal could not record the end: report, keep the run
                settle_interrupt = exc
            if settle_interrupt is not None and interrupt is None:
                warnings.warn(f"sagakit: recording the end of run {run.run_id} failed: {settle_interrupt!r}",
                              RuntimeWarning, stacklevel=2)
        saga.history.append(run)
        if interrupt is not None:
            raise interrupt
        return run
