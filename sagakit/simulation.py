"""Simulation: many runs of a saga on a virtual clock, with latency and flaky faults.

:func:`simulate` runs a saga many times on an event loop whose clock jumps to the next timer
whenever nothing is ready (:class:`VirtualClockLoop`), with per-step latency distributions
(:class:`Latency`) and flaky faults drawn from a seed. Simulated seconds cost microseconds,
while the recorded ``started_at`` and ``duration_ms`` are the simulated ones, so the
analysis helpers work on the returned :class:`~sagakit.RunHistory` as on real runs.

Real I/O and threads still take real time, and the virtual clock does not wait for them
while timers are pending: a simulated step should be ``async`` and wait with
``asyncio.sleep`` (which is what the latency does).

The maintained ``looptime`` package fakes loop time for test suites, as a pytest plugin with
idle timeouts and no-op cycles before each jump; a simulation needs only the jump itself,
which is the thirty lines of :class:`VirtualClockLoop`.

The saga itself is left untouched: the runs use a copy with the same steps and names, so they
never reach ``saga.history``, the saga's observers or its journal.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import datetime as dt
import inspect
import math
import random
import selectors
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from sagakit.context import WorkflowContext
from sagakit.engine import epoch_offset
from sagakit.errors import UnknownStepError
from sagakit.events import Observer
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

__all__ = ["DEFAULT_START", "Latency", "LatencyLike", "VirtualClockLoop", "run_on_virtual_clock", "simulate"]

T = TypeVar("T")

#: When ``simulate`` starts its clock unless told otherwise: fixed, so that a seed gives the
#: same frames on every call.
DEFAULT_START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

# ---------------------------------------------------------------------------------------
# the virtual clock

_RESOLUTION = time.get_clock_info("monotonic").resolution


class _JumpingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """The platform's selector, except that a timed wait with no I/O ready jumps the clock."""

    def __init__(self, jump: Callable[[float], None]) -> None:
        super().__init__()
        self._jump = jump

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            # No timer is pending: only the outside (a thread, a socket) can wake the
            # loop, so wait for it in real time, as an ordinary loop would.
            return super().select(None)  # type: ignore[no-any-return]
        self._jump(timeout)
        return ready


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` is virtual and jumps ahead instead of waiting.

    Args:
        start: the clock's first reading, in the same units as ``loop.time()`` (seconds).

    Example::

        loop = VirtualClockLoop(start=0.0)
        loop.run_until_complete(asyncio.sleep(3600))   # returns at once
        assert loop.time() == 3600.0
        loop.close()
    """

    def __new__(cls, start: float = 0.0) -> VirtualClockLoop:
        # Checked before the loop exists, so that a refused loop leaves nothing to close.
        if isinstance(start, bool) or not isinstance(start, int | float) or not math.isfinite(start):
            raise TypeError(f"VirtualClockLoop start: expected a finite number of seconds, got {start!r}")
        return super().__new__(cls)

    def __init__(self, start: float = 0.0) -> None:
        self._virtual_now = float(start)
        super().__init__(_JumpingSelector(self._jump))
        self._keep_resolution(self._virtual_now)

    def time(self) -> float:
        """The virtual clock's reading, in seconds."""
        return self._virtual_now

    def _jump(self, seconds: float) -> None:
        now = self._virtual_now
        later = now + seconds
        # The loop computes the wait as ``when - time()``; adding it back lands on ``when``
        # exactly whenever both have the same sign. Elsewhere, never stall on rounding.
        later = later if later > now else math.nextafter(now, math.inf)
        self._virtual_now = later
        self._keep_resolution(later)

    def _keep_resolution(self, now: float) -> None:
        # A timer is due when ``when < time() + resolution``. Far from zero (a simulated
        # clock set to a past date reads millions of seconds below it) adding the clock's
        # nanosecond resolution can round away, and a timer due now would never run.
        self._clock_resolution = max(_RESOLUTION, 4.0 * math.ulp(now))


def run_on_virtual_clock(make: Callable[[], Coroutine[Any, Any, T]], *, start: float, virtual: bool = True) -> T:
    """Run the coroutine ``make()`` returns on a fresh loop and give back its result.

    The loop is a :class:`VirtualClockLoop` starting at ``start`` (or, with
    ``virtual=False``, an ordinary loop). Called from inside a running loop (a notebook
    cell), the work happens on a worker thread with a copy of the caller's context
    variables, and this call blocks until it ends; nothing global is patched.
    """

    def factory() -> asyncio.AbstractEventLoop:
        return VirtualClockLoop(start) if virtual else asyncio.new_event_loop()

    def work() -> T:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(make())

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return work()
    context = contextvars.copy_context()
    outcome: dict[str, Any] = {}

    def thread_main() -> None:
        try:
            outcome["result"] = context.run(work)
        except BaseException as exc:  # handed back to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=thread_main, name="sagakit-simulate", daemon=True)
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------
# helpers shared with sagakit.explore


def _check_positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what}: expected an int >= 1, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{what}: expected an int >= 1, got {value}")
    return value


def _check_optional_callable(value: object, what: str, expected: str) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{what}: expected {expected} or None, got {type(value).__name__} {value!r}")


def _copier(data: Any, what: str) -> Callable[[], Any]:
    """A function returning a fresh deep copy of ``data`` for each run (checked once now)."""
    if data is None or isinstance(data, str | bytes | int | float):
        return lambda: data
    try:
        copy.deepcopy(data)
    except Exception as exc:
        raise TypeError(
            f"{what} data: every run gets a deep copy of the input so that runs cannot affect each "
            f"other, but copy.deepcopy failed: {type(exc).__name__}: {exc}"
        ) from exc
    return lambda: copy.deepcopy(data)


async def _resolve(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


#: A saga's own state, which a derived saga must not share: its definition, where its runs go.
_SAGA_STATE = frozenset({"name", "stages", "steps", "step_names", "observers", "_faults", "history"})


def _derived_saga(saga: Saga, stages: Sequence[Stage] | None = None) -> Saga:
    """A saga with the same steps, names and settings whose runs stay out of ``saga.history``.

    Its observers (and journal) are none of the saga's: the caller passes any per run.
    """
    from sagakit.saga import Saga

    derived = Saga(saga.name, list(saga.stages if stages is None else stages))
    for attribute, value in vars(saga).items():
        if attribute not in _SAGA_STATE:  # settings such as the redactor or the rollback policy
            setattr(derived, attribute, value)
    derived.history = RunHistory(maxlen=1)  # the runs are collected by the caller
    return derived


def _stage_positions(saga: Saga) -> dict[str, int]:
    positions: dict[str, int] = {}
    for position, stage in enumerate(saga.stages):
        for member in stage.steps if isinstance(stage, Parallel) else (stage,):
            positions[member.name] = position
    return positions


class _Progress:
    """A progress bar: an ipywidgets bar in a notebook, a line on stderr, a callback, or nothing."""

    __slots__ = ("bar", "callback", "every", "label", "last", "text", "total")

    def __init__(self, spec: bool | Callable[[int, int], Any] | None, total: int, label: str) -> None:
        if spec is not None and not isinstance(spec, bool) and not callable(spec):
            raise TypeError(
                f"{label} progress: expected True, False, None (a bar in notebooks) or a callable "
                f"(done, total), got {type(spec).__name__} {spec!r}"
            )
        self.total = total
        self.label = label
        self.last = 0
        self.every = max(1, total // 100)
        self.callback: Callable[[int, int], Any] | None = None
        self.bar: Any = None
        self.text = False
        if callable(spec) and not isinstance(spec, bool):
            self.callback = spec
        elif spec is not False:
            self.bar = _notebook_bar(total, label)
            self.text = self.bar is None and spec is True

    def update(self, done: int) -> None:
        if done != self.total and done - self.last < self.every:
            return
        self.last = done
        if self.callback is not None:
            self.callback(done, self.total)
        elif self.bar is not None:
            self.bar.value = done
        elif self.text:
            sys.stderr.write(f"\r{self.label}: {done}/{self.total}")
            sys.stderr.flush()

    def close(self, ok: bool = True) -> None:
        if self.bar is not None:
            self.bar.bar_style = "success" if ok else "danger"
        elif self.text:
            sys.stderr.write("\n")


def _notebook_bar(total: int, label: str) -> Any:
    """An ipywidgets progress bar shown in the current notebook cell, or ``None`` elsewhere."""
    if "IPython" not in sys.modules:  # not in IPython: do not import it
        return None
    try:
        import ipywidgets
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return None
    shell = get_ipython()  # type: ignore[no-untyped-call]
    if shell is None or getattr(shell, "kernel", None) is None:
        return None
    bar = ipywidgets.IntProgress(value=0, min=0, max=total, description=label)
    bar.add_class("sagakit-progress")
    display(bar)  # type: ignore[no-untyped-call]
    return bar

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
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what}: expected a number of seconds >= 0, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what}: expected a finite number of seconds >= 0, got {value!r}")
    return float(value)


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


async def _run_pooled(items: Iterable[T], work: Callable[[T], Awaitable[None]], limit: int, bar: _Progress) -> None:
    """``work(item)`` for every item, at most ``limit`` at a time, ticking ``bar``.

    The first error cancels the other workers, waits for them (their runs roll back,
    shielded, before their tasks end) and propagates.
    """
    pending = iter(items)
    done = 0

    async def worker() -> None:
        nonlocal done
        for item in pending:
            await work(item)
            done += 1
            bar.update(done)

    workers = [asyncio.ensure_future(worker()) for _ in range(limit)]
    try:
        finished, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
        failed = next((task for task in finished if task.exception() is not None), None)
        if failed is not None:
            raise failed.exception()  # type: ignore[misc]
    except BaseException:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise


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
        return Step(
            action,
            undo,
            name=member.name,
            retry=member.retry,
            timeout=member.timeout,
            compensate_on_failure=member.compensate_on_failure,
        )

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
    count = _check_positive_int(n, "simulate n")
    limit = _check_positive_int(concurrency, "simulate concurrency")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"simulate seed: expected an int or None, got {type(seed).__name__} {seed!r}")
    if clock not in ("virtual", "real"):
        raise ValueError(f"simulate clock: expected 'virtual' or 'real', got {clock!r}")
    _check_optional_callable(world, "simulate world", "a factory callable returning a fresh world")
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
    flaky = {name: fault for name, fault in plan.items() if 0.0 < fault.probability < 1.0}
    fixed = {name: fault for name, fault in plan.items() if name not in flaky}
    extra = tuple(observers)
    fresh_data = _copier(data, "simulate")
    derived = _derived_saga(saga, _timed_stages(saga, forward, backward))
    base_seed = seed if seed is not None else random.SystemRandom().getrandbits(64)
    started = _start_seconds(start) - epoch_offset()
    bar = _Progress(progress, count, "simulate")
    runs: list[Run | None] = [None] * count

    async def one(number: int) -> None:
        rng = random.Random(f"{base_seed}:{number}")
        run_faults: dict[str, Fault] = dict(fixed)
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
            state = await _resolve(world()) if world is not None else None
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
        await _run_pooled(range(count), one, min(limit, count), bar)

    ok = False
    try:
        run_on_virtual_clock(main, start=started, virtual=clock == "virtual")
        ok = True
    finally:
        bar.close(ok=ok)
    return RunHistory(run for run in runs if run is not None)
