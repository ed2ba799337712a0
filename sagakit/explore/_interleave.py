"""One interleaving of concurrent runs: the gate, the scheduler, and what the execution recorded.

Each run of a concurrent exploration executes a copy of its saga whose every step action and
compensation sits behind a *gate* (a policy around the whole step, retries and timeouts
included, so that a step and a compensation are each one atomic action; a retriable step, after
the pivot, is retried for as long as its forward policy allows while other runs go on, so each of
its attempts is an action of its own). A gate waits until the
scheduler lets its action through; while the action runs, its accesses to the world are
recorded (see :mod:`sagakit.explore._world`). The scheduler runs on a
:class:`~sagakit.explore.VirtualClockLoop`: it waits until the loop is idle (every run has gone
as far as it can: it waits at a gate, or it is done), asks its *chooser* which waiting action
goes next, lets it through, waits for it to end, and so on until every run has ended. The
engine is not changed: the gates are policies of a derived saga, and the run an action belongs
to is a context variable of that run's task.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from sagakit.context import WorkflowContext
from sagakit.events import Observer
from sagakit.explore._scenario import Schedule, SeededOnUse, check_invariant, end_planned_cancellations, scrubbed
from sagakit.explore._shared import derived_saga, resolve
from sagakit.explore._world import Access, Footprint, Tracker, World, tracked, tracking
from sagakit.faults import Fault
from sagakit.policies import RETRY_RANDOM, Policy, RetryPolicy, RetryPrimitive, TimeoutPrimitive, invoke
from sagakit.runs import Run
from sagakit.steps import FORWARD_RETRY, Parallel, Stage, Step

if TYPE_CHECKING:
    from sagakit.saga import Saga

__all__ = [
    "ActionKey",
    "Chooser",
    "Execution",
    "Performed",
    "RunSpec",
    "Setup",
    "execute",
    "gated_saga",
]

#: An action of an interleaving: ``(run, step, phase)``, phase ``"forward"`` or ``"compensate"``.
ActionKey = tuple[int, str, str]


class Chooser(Protocol):
    """Decides, at each point where actions wait, which one goes next."""

    def choose(self, position: int, enabled: Sequence[ActionKey], previous: ActionKey | None) -> ActionKey:
        """The key (one of ``enabled``, in canonical order) of the action to let through."""
        ...

    def performed(self, action: Performed) -> None:
        """Told what the chosen action did, before the next choice."""
        ...


class Performed(NamedTuple):
    """One atomic action as it ran in an interleaving.

    Attributes:
        position: its place in the interleaving (0 first).
        run: the run's number.
        step: the step's name.
        phase: ``"forward"`` or ``"compensate"``.
        status: ``"succeeded"``, ``"failed"`` or ``"cancelled"``.
        attempts: how many attempts it made (retries count); for an attempt of a retriable
            step, each an action of its own, its attempt number.
        footprint: the world keys it read and wrote.
        enabled: the actions that were waiting when it was chosen (itself included).
        at: the virtual clock's reading when it was let through (a retry's backoff passes after
            that, inside the action).
    """

    position: int
    run: int
    step: str
    phase: str
    status: str
    attempts: int
    footprint: Footprint
    enabled: tuple[ActionKey, ...]
    at: float

    @property
    def key(self) -> ActionKey:
        return (self.run, self.step, self.phase)


# -- the gate ---------------------------------------------------------------------------


class _Current:
    """The scheduler and run number of a run's task (a context variable, inherited by its
    branch and rollback tasks)."""

    __slots__ = ("run", "scheduler")

    def __init__(self, scheduler: _Scheduler, run: int) -> None:
        self.scheduler = scheduler
        self.run = run


_CURRENT: contextvars.ContextVar[_Current | None] = contextvars.ContextVar("sagakit_interleaving", default=None)


class _Gated(Policy):
    """A step action or compensation that waits for the scheduler before it runs, whole."""

    __slots__ = ("inner",)

    def __init__(self, inner: Callable[..., Any]) -> None:
        self.inner = inner

    async def __call__(self, data: Any, context: WorkflowContext | None = None) -> Any:
        current = _CURRENT.get()
        if current is None or context is None or context.step is None:  # outside an interleaving
            return await invoke(self.inner, data, context)
        scheduler = current.scheduler
        tracker = await scheduler.gate((current.run, context.step, context.phase or "forward"), context)
        token = tracking(tracker)
        try:
            result = await invoke(self.inner, data, context)
        except BaseException as exc:
            tracker.status = "cancelled" if isinstance(exc, asyncio.CancelledError) else "failed"
            raise
        finally:
            tracked(token)
            scheduler.release(tracker)
        return result

    def __repr__(self) -> str:
        return f"<gated {self.inner!r}>"


class _GatedRetry(Policy):
    """A retriable step's forward policy in an interleaving: every attempt is an action of its own.

    A step after the pivot is retried until its policy runs out, and other runs go on meanwhile:
    each retry waits at the gate as soon as the attempt before it failed, and its backoff passes
    (on the virtual clock) once it is let through, before the attempt. So a retry can come
    anywhere among the other runs' actions, while the policy's delays and deadline still measure
    virtual time as :class:`~sagakit.RetryPrimitive` does: the same rules (``on``, attempts,
    deadline, exponential backoff capped at ``max_delay``, jitter from ``RETRY_RANDOM``).
    """

    __slots__ = ("inner", "policy")

    def __init__(self, inner: Callable[..., Any], policy: RetryPolicy) -> None:
        self.inner = inner
        self.policy = policy

    async def __call__(self, data: Any, context: WorkflowContext | None = None) -> Any:
        current = _CURRENT.get()
        if current is None or context is None or context.step is None:  # outside an interleaving
            return await RetryPrimitive.from_policy(self.inner, self.policy)(data, context)
        scheduler, policy = current.scheduler, self.policy
        loop = asyncio.get_running_loop()
        until = loop.time() + policy.deadline if policy.deadline is not None else None
        key = (current.run, context.step, "forward")
        number = 1
        delay = 0.0
        while True:
            tracker = await scheduler.gate(key, context)
            token = tracking(tracker)
            try:
                if delay:
                    await asyncio.sleep(delay)
                return await invoke(self.inner, data, context)
            except policy.on:
                tracker.status = "failed"
                if number >= policy.attempts or (until is not None and loop.time() >= until):
                    raise
            except BaseException as exc:
                tracker.status = "cancelled" if isinstance(exc, asyncio.CancelledError) else "failed"
                raise
            finally:
                tracked(token)
                scheduler.release(tracker)
            delay = policy.delay_after(number)  # the wait before attempt ``number + 1``
            number += 1

    def __repr__(self) -> str:
        return f"<gated retries of {self.inner!r}>"


#: A retriable step's forward policy, in the gated copy, is its _GatedRetry: nothing more around it.
_NO_RETRY = RetryPolicy(max_retries=0)


def _gated_step(member: Step) -> Step:
    undo = _Gated(member.compensate) if member.compensate is not None else None
    if member.kind == "retriable":
        policy = member.retry if member.retry is not None else FORWARD_RETRY
        inner: Callable[..., Any] = member.action
        if member.timeout is not None:
            inner = TimeoutPrimitive(inner, member.timeout)
        if policy.max_retries > 0:
            return member.replace(action=_GatedRetry(inner, policy), name=member.name, retry=_NO_RETRY, timeout=None)
        return member.replace(action=_Gated(inner), name=member.name, retry=_NO_RETRY, timeout=None)
    # The gate wraps the whole forward policy (retries, timeouts): one atomic action, whose
    # waiting for its turn never counts against its own timeout.
    return member.replace(action=_Gated(member.forward), compensate=undo, name=member.name, retry=None, timeout=None)


def gated_saga(saga: Saga) -> Saga:
    """A copy of ``saga`` (see :func:`~sagakit.explore._shared.derived_saga`) whose every
    action and compensation waits at a gate."""
    stages: list[Stage] = []
    for stage in saga.stages:
        if isinstance(stage, Parallel):
            stages.append(Parallel([_gated_step(member) for member in stage.steps], name=stage.name))
        else:
            stages.append(_gated_step(stage))
    return derived_saga(saga, stages)


# -- the scheduler ----------------------------------------------------------------------


class _Scheduler:
    """Lets one waiting action through at a time, and records what each did."""

    __slots__ = ("free", "in_flight", "log", "loop", "position", "released", "waiting", "woken", "worlds")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiting: dict[ActionKey, tuple[asyncio.Future[Tracker], WorkflowContext]] = {}
        self.log: list[Access] = []
        self.worlds: dict[int, tuple[int, World]] = {}
        self.position = 0
        self.in_flight: Tracker | None = None
        self.released: asyncio.Future[None] | None = None
        self.woken: asyncio.Future[None] | None = None
        # Winding down after the exploration itself was cancelled: every gate opens at once.
        self.free = False

    async def gate(self, key: ActionKey, context: WorkflowContext) -> Tracker:
        waiter: asyncio.Future[Tracker] = self.loop.create_future()
        if self.free:
            waiter.set_result(Tracker(-1, key[0], key[1], key[2], context, [], {}))
        else:
            self.waiting[key] = (waiter, context)
            self._wake()
        try:
            return await waiter
        except asyncio.CancelledError:
            if self.waiting.get(key, (None,))[0] is waiter:
                del self.waiting[key]
            if waiter.done() and not waiter.cancelled():  # let through as it was cancelled: it did nothing
                tracker = waiter.result()
                tracker.status = "cancelled"
                self.release(tracker)
            raise

    def _wake(self) -> None:
        if self.woken is not None and not self.woken.done():
            self.woken.set_result(None)

    def grant(self, key: ActionKey) -> Tracker:
        waiter, context = self.waiting.pop(key)
        tracker = Tracker(self.position, key[0], key[1], key[2], context, self.log, self.worlds)
        self.position += 1
        self.in_flight = tracker
        self.released = self.loop.create_future()
        waiter.set_result(tracker)
        return tracker

    def release(self, tracker: Tracker) -> None:
        if tracker is self.in_flight and self.released is not None and not self.released.done():
            self.released.set_result(None)

    def open_all(self) -> None:
        """Let every waiting action through, now and from now on (winding down)."""
        self.free = True
        for key in list(self.waiting):
            waiter, context = self.waiting.pop(key)
            if not waiter.done():
                waiter.set_result(Tracker(-1, key[0], key[1], key[2], context, [], {}))
        if self.released is not None and not self.released.done():
            self.released.set_result(None)


# -- one execution ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One run of a concurrent exploration: the saga, its gated copy, its input."""

    saga: Saga
    gated: Saga
    data: Callable[[], Any]
    label: str


@dataclass(frozen=True, slots=True)
class Setup:
    """What every interleaving of an exploration shares."""

    runs: tuple[RunSpec, ...]
    world: Callable[[], Any]
    invariant: Callable[[Any, tuple[Run | None, ...]], Any] | None
    every_action: bool
    observers: tuple[Observer, ...]


@dataclass(slots=True)
class Execution:
    """What one interleaving did: its actions in order, the world's accesses, the runs, the verdict."""

    faults: tuple[Schedule, ...]
    actions: list[Performed] = field(default_factory=list)
    accesses: list[Access] = field(default_factory=list)
    runs: tuple[Run, ...] = ()
    holds: bool | None = None
    violation: str | None = None
    violated_after: int | None = None
    invariant_keys: frozenset[Any] = frozenset()
    world: dict[Any, Any] = field(default_factory=dict)

    @property
    def order(self) -> tuple[ActionKey, ...]:
        return tuple(action.key for action in self.actions)

    @property
    def violated(self) -> bool:
        return self.holds is False


def world_of(value: Any, what: str) -> World:
    """The world a factory returned, as a :class:`World` (a dict becomes one); else a TypeError."""
    if isinstance(value, World):
        return value
    if type(value) is dict:
        return World(value)
    raise TypeError(
        f"{what}: the factory returned {type(value).__name__} {value!r:.60}; concurrent exploration needs a "
        "sagakit.explore.World (or a dict, used as one) to see which run reads and writes what: build the "
        "state as World({...}) and reach it in steps as context.world"
    )


async def execute(
    setup: Setup, faults: tuple[Schedule, ...], chooser: Chooser, what: str = "explore_concurrent"
) -> Execution:
    """Run every run of ``setup`` once, concurrently, each action let through as ``chooser`` says.

    Must be awaited on a :class:`~sagakit.explore.VirtualClockLoop`. The invariant is checked
    when every run has ended (and, with ``setup.every_action``, after each action).
    """
    loop = asyncio.get_running_loop()
    idle = getattr(loop, "idle", None)
    if idle is None:  # pragma: no cover - the callers put the work on a virtual clock
        raise RuntimeError("concurrent exploration runs on a sagakit.explore.VirtualClockLoop")
    world = world_of(await resolve(setup.world()), f"{what} world")
    scheduler = _Scheduler(loop)
    execution = Execution(faults)
    outcomes: list[Run | None] = [None] * len(setup.runs)
    tasks: list[asyncio.Task[None]] = []
    for number, spec in enumerate(setup.runs):
        context = contextvars.copy_context()
        context.run(_CURRENT.set, _Current(scheduler, number))
        # Retry jitter from a generator of the run's own: a replay waits the same backoff.
        context.run(RETRY_RANDOM.set, _jitter(number, faults[number]))
        plan = {name: _fresh(fault) for name, fault in faults[number]}
        task = loop.create_task(_one_run(spec, number, world, plan, outcomes, setup.observers), context=context)
        task.add_done_callback(lambda _: scheduler._wake())
        tasks.append(task)
    try:
        await _drive(scheduler, tasks, chooser, execution, setup, world, outcomes, idle, what)
    except BaseException:
        scheduler.open_all()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for task in tasks:
        task.result()  # a run's own error (never a step failure: those end in its Run)
    execution.runs = tuple(run for run in outcomes if run is not None)
    execution.accesses = scheduler.log
    if setup.invariant is not None and execution.holds is not False:
        await _check(setup, world, execution, tuple(execution.runs), None)
    execution.world = world.to_dict()
    return execution


def _jitter(number: int, faults: Schedule) -> random.Random:
    return SeededOnUse(f"sagakit interleaving: {number}: {faults!r}")


def _fresh(fault: Fault) -> Fault:
    """A flaky fault with its draws from the start (each interleaving replays them)."""
    if fault.probability >= 1.0:
        return fault
    return Fault(fault.mode, fault.delay, fault.probability, fault.seed)


async def _one_run(
    spec: RunSpec, number: int, world: World, plan: dict[str, Fault], outcomes: list[Run | None],
    observers: tuple[Observer, ...],
) -> None:
    gated = spec.gated
    context = WorkflowContext(correlation_id=f"interleaving: run {number} ({spec.saga.name})", world=world)
    try:
        run = await gated.run(spec.data(), context, faults=plan, observers=observers)
    except asyncio.CancelledError:
        # The engine puts the run in the history and raises in one go, nothing runs between.
        run = gated.history[-1]
        current = _CURRENT.get()
        if current is not None and current.scheduler.free:  # the exploration is winding down
            raise
        await end_planned_cancellations(run, tuple(plan.items()), delivered=True)
        if run.error is not None:
            run.error.__traceback__ = None
    else:
        await end_planned_cancellations(run, tuple(plan.items()), delivered=False)
    run.definition = spec.saga
    outcomes[number] = run


async def _drive(
    scheduler: _Scheduler,
    tasks: list[asyncio.Task[None]],
    chooser: Chooser,
    execution: Execution,
    setup: Setup,
    world: World,
    outcomes: list[Run | None],
    idle: Callable[[], asyncio.Future[bool]],
    what: str,
) -> None:
    previous: ActionKey | None = None
    quiet = getattr(asyncio.get_running_loop(), "quiet", lambda: None)
    timers = await idle()
    while True:
        if all(task.done() for task in tasks):
            return
        if not scheduler.waiting:
            if not timers:
                stuck = [setup.runs[n].label for n, task in enumerate(tasks) if not task.done()]
                raise RuntimeError(
                    f"{what}: runs {', '.join(stuck)} neither ended nor reached a step or compensation, and "
                    "nothing can wake them; a step waits for something only another run's step would do "
                    "(under atomic steps, that never happens) or for the outside world"
                )
            scheduler.woken = asyncio.get_running_loop().create_future()
            await scheduler.woken  # a timer of the runs' own (not of an action) is still to fire
            timers = await idle()
            continue
        enabled = tuple(sorted(scheduler.waiting, key=_canonical))
        key = chooser.choose(scheduler.position, enabled, previous)
        if key not in scheduler.waiting:
            raise RuntimeError(f"{what}: the scheduler chose {key!r}, which is not waiting ({enabled!r})")
        context = scheduler.waiting[key][1]
        at = asyncio.get_running_loop().time()
        tracker = scheduler.grant(key)
        assert scheduler.released is not None
        await scheduler.released
        footprint = tracker.close()
        performed = Performed(tracker.position, key[0], key[1], key[2], tracker.status, max(context.attempt, 1),
                              footprint, enabled, at)
        execution.actions.append(performed)
        chooser.performed(performed)
        previous = key
        # Woken as the action ended; when nothing else is ready, every run has gone as far as
        # it can already (the common case), without another turn of the loop.
        state = quiet()
        timers = await idle() if state is None else state
        if setup.every_action and setup.invariant is not None:
            if not await _check(setup, world, execution, tuple(outcomes), performed.position):
                # Violated mid-way: the rest still runs (its actions are recorded) but is not checked.
                setup = Setup(setup.runs, setup.world, setup.invariant, False, setup.observers)
            timers = await idle()


def _canonical(key: ActionKey) -> tuple[int, int, str]:
    return (key[0], 0 if key[2] == "forward" else 1, key[1])


async def _check(
    setup: Setup, world: World, execution: Execution, runs: tuple[Run | None, ...], after: int | None
) -> bool:
    """Check the invariant; record a violation (and the keys the invariant read). True if it holds."""
    observer = Tracker(-1, -1, "invariant", "check", None, [], {})
    token = tracking(observer)
    try:
        label = "the end of the interleaving" if after is None else f"action {after}"
        holds, violation = await check_invariant(setup.invariant, world, runs, label, "concurrent runs at")
    finally:
        tracked(token)
    finished = [run for run in runs if run is not None]
    data = [spec.data() for spec in setup.runs]
    execution.invariant_keys = frozenset(access.key for access in observer.log)
    if holds is False:
        execution.holds = False
        execution.violation = scrubbed(violation, finished, *data)
        execution.violated_after = after
        return False
    execution.holds = True
    return True
