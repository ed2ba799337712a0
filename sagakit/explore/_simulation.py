"""Simulation: many runs of a saga on a virtual clock, with latency and flaky faults.

:func:`simulate` runs a saga many times on an event loop whose clock jumps to the next timer
whenever nothing is ready (:class:`VirtualClockLoop`), with per-step latency distributions
(:class:`Latency`) and flaky faults drawn from a seed. Simulated seconds cost microseconds,
while the recorded ``started_at`` and ``duration_ms`` are the simulated ones, so the
analysis helpers work on the returned :class:`~sagakit.RunHistory` as on real runs.

Real I/O and threads still take real time, and the virtual clock does not wait for them
while timers are pending: a simulated step should be ``async`` and wait with
``asyncio.sleep`` (which is what the latency does).

The saga itself is left untouched: the runs use a copy with the same steps and names, so they
never reach ``saga.history``, the saga's observers or its journal.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import inspect
import math
import random
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from sagakit._checks import check_observers, check_positive_int, check_seconds
from sagakit.context import WorkflowContext
from sagakit.engine import epoch_offset
from sagakit.errors import UnknownStepError
from sagakit.events import Observer
from sagakit.explore._clock import run_on_virtual_clock
from sagakit.explore._scenario import is_transient
from sagakit.explore._shared import (
    Progress,
    check_optional_callable,
    check_saga,
    copier,
    derived_saga,
    resolve,
    run_pooled,
)
from sagakit.faults import Fault, FaultLike, as_fault
from sagakit.policies import (
    RETRY_RANDOM,
    AnyStepFunction,
    FallbackPrimitive,
    Policy,
    RetryPrimitive,
    SequentialPrimitive,
    TimeoutPrimitive,
)
from sagakit.runs import Run, RunHistory
from sagakit.steps import Parallel, Stage, Step

if TYPE_CHECKING:
    from sagakit.saga import Saga

__all__ = ["DEFAULT_START", "Latency", "LatencyLike", "simulate"]

T = TypeVar("T")

#: When ``simulate`` starts its clock unless told otherwise: fixed, so that a seed gives the
#: same frames on every call.
DEFAULT_START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

# ---------------------------------------------------------------------------------------
# simulation


class Latency:
    """A latency distribution in seconds, drawn once per attempt of a step (or compensation).

    Build one with :meth:`constant`, :meth:`uniform` or :meth:`exponential`, or wrap any
    callable with :meth:`of`. Wherever ``simulate`` takes a latency, a number means
    :meth:`constant` and a callable means :meth:`of`.
    """

    __slots__ = ("_sample", "description")

    def __init__(self, sample: Callable[[random.Random], float], description: str) -> None:
        self._sample = sample
        self.description = description

    @classmethod
    def constant(cls, seconds: float) -> Latency:
        """Always ``seconds``."""
        value = _seconds(seconds, "Latency.constant seconds")
        return cls(lambda rng: value, f"constant({value:g})")

    @classmethod
    def uniform(cls, low: float, high: float) -> Latency:
        """Uniformly between ``low`` and ``high`` seconds."""
        lo, hi = _seconds(low, "Latency.uniform low"), _seconds(high, "Latency.uniform high")
        if hi < lo:
            raise ValueError(f"Latency.uniform: expected low <= high, got low={lo!r}, high={hi!r}")
        return cls(lambda rng: rng.uniform(lo, hi), f"uniform({lo:g}, {hi:g})")

    @classmethod
    def exponential(cls, mean: float, *, minimum: float = 0.0) -> Latency:
        """``minimum`` plus an exponentially distributed wait with the given ``mean`` (seconds)."""
        average = _seconds(mean, "Latency.exponential mean")
        floor = _seconds(minimum, "Latency.exponential minimum")
        if average == 0:
            return cls(lambda rng: floor, f"exponential(0, minimum={floor:g})")
        rate = 1.0 / average
        return cls(lambda rng: floor + rng.expovariate(rate), f"exponential({average:g}, minimum={floor:g})")

    @classmethod
    def of(cls, fn: Callable[..., float]) -> Latency:
        """Any callable: ``fn(rng)`` with the run's seeded :class:`random.Random`, or ``fn()``."""
        if isinstance(fn, Latency):
            return fn
        if not callable(fn):
            raise TypeError(f"Latency.of: expected a callable, got {type(fn).__name__} {fn!r}")
        try:
            takes_rng = bool(inspect.signature(fn).parameters)
        except (TypeError, ValueError):  # no signature (a builtin): give it the generator
            takes_rng = True
        sample = fn if takes_rng else (lambda rng: fn())
        return cls(sample, getattr(fn, "__name__", type(fn).__name__))

    def sample(self, rng: random.Random) -> float:
        """Draw one latency with ``rng``."""
        return self._sample(rng)

    def __repr__(self) -> str:
        return f"Latency.{self.description}" if "(" in self.description else f"Latency.of({self.description})"


LatencyLike = Latency | float | int | Callable[..., float]


def _seconds(value: object, what: str) -> float:
    return check_seconds(value, what, allow_zero=True)


def _as_latency(value: object, what: str) -> Latency:
    if isinstance(value, Latency):
        return value
    if isinstance(value, bool | str | bytes):
        raise TypeError(
            f"{what}: expected seconds, a Latency (constant, uniform, exponential) or a callable "
            f"(rng) -> seconds, got {type(value).__name__} {value!r}"
        )
    if isinstance(value, int | float):
        return Latency.constant(_seconds(value, what))
    if callable(value):
        return Latency.of(value)
    raise TypeError(
        f"{what}: expected seconds, a Latency (constant, uniform, exponential) or a callable "
        f"(rng) -> seconds, got {type(value).__name__} {value!r}"
    )


def _latency_table(spec: object, saga: Saga, what: str) -> dict[str, Latency]:
    """Per-step latencies from one spec for every step, or a mapping of step name to spec."""
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        table = {}
        for name, value in spec.items():
            if name not in saga.step_names:
                raise UnknownStepError(str(name), saga.step_names, saga=saga.name)
            table[name] = _as_latency(value, f"{what} for step {name!r}")
        return table
    latency = _as_latency(spec, what)
    return dict.fromkeys(saga.step_names, latency)




class _Draws:
    """The random draws of one simulated run: its own generator, so interleaving never matters."""

    __slots__ = ("mistake", "rng")

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.mistake: Exception | None = None


#: The draws of the simulated run in progress (context variables follow a run into its tasks).
_RUN_DRAWS: contextvars.ContextVar[_Draws] = contextvars.ContextVar("sagakit_simulated_run")


def _delayed(fn: AnyStepFunction, latency: Latency, step: str, phase: str) -> AnyStepFunction:
    """``fn`` preceded, on every call, by a sleep drawn from ``latency``."""
    async def delayed(data: Any, context: WorkflowContext) -> Any:
        draws = _RUN_DRAWS.get()
        seconds = latency.sample(draws.rng)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds < 0:
            # A mistake in the simulation, not a failure of the step: the run records it as
            # the step's error, and simulate raises it once the run has rolled back.
            draws.mistake = ValueError(
                f"latency {latency!r} for step {step!r} ({phase}) returned {seconds!r}; "
                "expected a finite number of seconds >= 0"
            )
            raise draws.mistake
        await asyncio.sleep(seconds)
        result = fn(data, context)
        if inspect.isawaitable(result):
            result = await result
        return result

    delayed.__name__ = getattr(fn, "__name__", step)
    delayed.__qualname__ = delayed.__name__
    return delayed


def _with_latency(fn: AnyStepFunction, latency: Latency, step: str, phase: str) -> AnyStepFunction:
    """Put the latency inside the policies, so that every attempt (every call of an innermost
    function, as the event stream counts them) waits its own draw, inside its timeout."""
    if isinstance(fn, RetryPrimitive):
        return RetryPrimitive.from_policy(_with_latency(fn.inner, latency, step, phase), fn.policy)
    if isinstance(fn, TimeoutPrimitive):
        return TimeoutPrimitive(_with_latency(fn.inner, latency, step, phase), fn.timeout)
    if isinstance(fn, FallbackPrimitive):
        return FallbackPrimitive(
            _with_latency(fn.inner, latency, step, phase),
            _with_latency(fn.fallback, latency, step, phase),
            on=fn.on,
        )
    if isinstance(fn, SequentialPrimitive):
        return SequentialPrimitive([_with_latency(part, latency, step, phase) for part in fn.parts])
    if isinstance(fn, Policy):  # a policy we cannot see into: one draw per call of the whole
        return _delayed(fn, latency, step, phase)
    return _delayed(fn, latency, step, phase)


def _timed_stages(saga: Saga, forward: Mapping[str, Latency], compensate: Mapping[str, Latency]) -> list[Stage]:
    def timed(member: Step) -> Step:
        action = member.action
        undo = member.compensate
        if member.name in forward:
            action = _with_latency(action, forward[member.name], member.name, "forward")
        if undo is not None and member.name in compensate:
            undo = _with_latency(undo, compensate[member.name], member.name, "compensate")
        if action is member.action and undo is member.compensate:
            return member
        # replace() keeps the kind: a pivot stays the pivot, and a retriable step keeps its
        # forward policy (FORWARD_RETRY when it gives none), now around the timed action.
        return member.replace(action=action, compensate=undo, name=member.name)

    stages: list[Stage] = []
    for stage in saga.stages:
        if isinstance(stage, Parallel):
            stages.append(Parallel([timed(member) for member in stage.steps], name=stage.name))
        else:
            stages.append(timed(stage))
    return stages


def _start_seconds(start: object) -> float:
    if start is None:
        return DEFAULT_START.timestamp()
    if isinstance(start, dt.datetime):
        return (start if start.tzinfo is not None else start.replace(tzinfo=dt.UTC)).timestamp()
    if isinstance(start, bool) or not isinstance(start, int | float) or not math.isfinite(start):
        raise TypeError(
            f"simulate start: expected a datetime or epoch seconds (UTC), got {type(start).__name__} {start!r}"
        )
    return float(start)


def simulate(
    saga: Saga,
    n: int,
    data: Any = None,
    *,
    faults: Mapping[str, FaultLike] | None = None,
    latency: LatencyLike | Mapping[str, LatencyLike] | None = None,
    compensation_latency: LatencyLike | Mapping[str, LatencyLike] | None = None,
    seed: int | None = 0,
    concurrency: int = 100,
    world: Callable[[], Any] | None = None,
    start: dt.datetime | float | None = None,
    clock: Literal["virtual", "real"] = "virtual",
    observers: Iterable[Observer] = (),
    progress: bool | Callable[[int, int], Any] | None = None,
) -> RunHistory:
    """Run ``saga`` ``n`` times on a virtual clock and return the runs.

    Every attempt of a step first waits a latency drawn from its distribution; the event
    loop's clock jumps to the next timer whenever nothing is ready, so simulated seconds
    cost microseconds while the recorded ``started_at`` and ``duration_ms`` are the simulated
    ones. Runs go ``concurrency`` at a time, each starting as soon as an earlier one ends.

    Reproducible: each run draws its latencies and its flaky faults from its own generator,
    seeded from ``seed`` and the run's number, so the same seed gives the same outcomes,
    step order and timings, however the runs interleave. For the duration of the call,
    Python's global :mod:`random` is seeded too (and restored afterwards), so that retry
    backoff jitter and the steps' own ``random`` calls repeat as well. Correlation ids are
    ``sim-<number>``; run ids are fresh.

    Args:
        saga: the saga to simulate; it is not changed, and these runs are not added to
            ``saga.history`` nor sent to its observers or journal.
        n: how many runs.
        data: the input of every run (each run gets a deep copy).
        faults: a fault plan for every run (default: ``saga.faults``); a fault with
            ``probability`` below 1 is drawn per run and attempt from the seed.
        latency: of each forward attempt: seconds, a :class:`Latency`, a callable
            ``(rng) -> seconds``, or a mapping of step name to one of those (unnamed steps
            take no time).
        compensation_latency: the same for compensations (default: as ``latency``).
        seed: the seed of every draw (``None``: fresh entropy, not reproducible).
        concurrency: how many runs are in flight at once.
        world: a factory for each run's ``context.world``, as in :func:`explore`.
        start: when the simulated clock starts, a datetime or epoch seconds (default:
            2025-01-01 00:00 UTC, fixed so that frames repeat).
        clock: ``"virtual"``, or ``"real"`` to run the same simulation in real time (to
            check a simulation against reality; ``start`` is then ignored).
        observers: observers for every run.
        progress: as in :func:`explore`.

    Returns:
        A new :class:`~sagakit.RunHistory` with the runs in order of their number.

    Raises:
        TypeError, ValueError: an argument is invalid (the message names it).
    """
    check_saga(saga, "simulate")
    count = check_positive_int(n, "simulate n")
    limit = check_positive_int(concurrency, "simulate concurrency")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"simulate seed: expected an int or None, got {type(seed).__name__} {seed!r}")
    if clock not in ("virtual", "real"):
        raise ValueError(f"simulate clock: expected 'virtual' or 'real', got {clock!r}")
    check_optional_callable(world, "simulate world", "a factory callable returning a fresh world")
    forward = _latency_table(latency, saga, "simulate latency")
    backward = forward if compensation_latency is None else _latency_table(
        compensation_latency, saga, "simulate compensation_latency"
    )
    plan = {
        name: as_fault(fault, step=name)
        for name, fault in (saga.faults if faults is None else faults).items()
    }
    for name in plan:
        if name not in saga.step_names:
            raise UnknownStepError(name, saga.step_names, saga=saga.name)
    # A transient fault (first attempt only) keeps its own seed: redrawn, it would be flaky.
    flaky = {name: fault for name, fault in plan.items() if 0.0 < fault.probability < 1.0 and not is_transient(fault)}
    fixed = {name: fault for name, fault in plan.items() if name not in flaky}
    extra = check_observers(observers, "simulate observers")
    fresh_data = copier(data, "simulate")
    derived = derived_saga(saga, _timed_stages(saga, forward, backward))
    base_seed = seed if seed is not None else random.SystemRandom().getrandbits(64)
    started = _start_seconds(start) - epoch_offset()
    bar = Progress(progress, count, "simulate")
    runs: list[Run | None] = [None] * count

    async def one(number: int) -> None:
        rng = random.Random(f"{base_seed}:{number}")
        run_faults: dict[str, Fault] = dict(fixed)
        for name, fault in fixed.items():
            if is_transient(fault):  # its draws from the start, in every run
                run_faults[name] = Fault(fault.mode, fault.delay, fault.probability, fault.seed)
        for name, fault in flaky.items():
            run_faults[name] = Fault(
                fault.mode,
                delay=fault.delay,
                probability=fault.probability,
                seed=rng.getrandbits(64) ^ (fault.seed or 0),
            )
        draws = _Draws(rng)
        token = _RUN_DRAWS.set(draws)
        jitter_token = RETRY_RANDOM.set(rng)  # retry jitter replays with the run's seed
        try:
            state = await resolve(world()) if world is not None else None
            context = WorkflowContext(correlation_id=f"sim-{number}", world=state)
            run = await derived.run(fresh_data(), context, faults=run_faults, observers=extra)
        finally:
            RETRY_RANDOM.reset(jitter_token)
            _RUN_DRAWS.reset(token)
        if draws.mistake is not None:
            raise draws.mistake
        run.definition = saga
        runs[number] = run

    async def main() -> None:
        await run_pooled(range(count), one, min(limit, count), bar)

    ok = False
    try:
        run_on_virtual_clock(main, start=started, virtual=clock == "virtual")
        ok = True
    finally:
        bar.close(ok=ok)
    return RunHistory(run for run in runs if run is not None)
