"""Exploration and simulation speed, next to hand-written asyncio baselines.

1. Scenarios per second: ``saga.explore`` over a 10-step saga (30 scenarios), against the same
   fault plans run one by one with ``saga.run``, and against a hand-written asyncio saga that
   injects the same faults.
2. Simulated runs per second: 10,000 runs of a 10-step saga with 100 ms of virtual latency per
   step, against a hand-written asyncio saga sleeping the same latencies on the same virtual
   clock. Targets: under 10 s of wall time, and at least 1,000x faster than real time.
3. Random search: scenarios per second of ``explore(search="random")`` on a 20-step saga,
   against ``saga.run`` per plan on the same loop (target: at least half its rate) and a
   hand-written asyncio saga injecting the same modes.
4. Shrinking: the time to shrink a planted three-fault violation in a 20-step saga from a
   schedule with a fault on every step (target: under 5 s).
5. Concurrent exploration: interleavings per second for 2 runs of a 5-step saga on the virtual
   clock, and the exhaustive 2 x 5 search (252 interleavings before reduction; target: under
   1 s), against a hand-written enumeration of the same orders calling the same step functions
   directly; the number of interleavings with and without partial-order reduction for 2 x 5 and
   3 x 4, on keys of each run's own and on one shared key.
6. The tracked World outside exploration: a read and a write, against a dict.

Run: ``.venv/bin/python benchmarks/bench_explore.py``. Prints medians.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import timeit
from collections.abc import Callable
from typing import Any

import sagakit
from sagakit.explore import World, explore, explore_concurrent_sync, run_on_virtual_clock

STEPS = 10
LATENCY = 0.1
RUNS = 10_000
CONCURRENCY = 100


def ten_step_saga(steps: int = STEPS, **options: Any) -> sagakit.Saga:
    def make(i: int) -> sagakit.Step:
        async def act(data: dict[str, Any], context: sagakit.WorkflowContext) -> None:
            data[f"s{i}"] = True

        async def undo(data: dict[str, Any], context: sagakit.WorkflowContext) -> None:
            data.pop(f"s{i}", None)

        act.__name__ = f"s{i}"
        return sagakit.step(act, compensate=undo)

    return sagakit.Saga("ten" if steps == STEPS else f"s{steps}", [make(i) for i in range(steps)], **options)


def median_seconds(work: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# -- 1. exploration ------------------------------------------------------------------------


class InjectedError(Exception):
    pass


async def hand_written_saga(
    data: dict[str, Any], faults: dict[str, Any], latency: float = 0.0, steps: int = STEPS
) -> str:
    """The saga pattern by hand: steps, reverse-order undo, and the three fault modes (a
    ``cancel`` fault counts as ``fail``, ``cancel_compensation`` as ``fail_compensation``)."""
    done: list[int] = []
    try:
        for i in range(steps):
            mode = faults.get(f"s{i}")
            if mode == "fail" or mode == "cancel":
                raise InjectedError(i)
            if latency:
                await asyncio.sleep(latency)
            data[f"s{i}"] = True
            if mode == "fail_after":
                raise InjectedError(i)
            done.append(i)
        return "completed"
    except InjectedError:
        for i in reversed(done):
            if faults.get(f"s{i}") in ("fail_compensation", "cancel_compensation"):
                return "compensation_failed"
            if latency:
                await asyncio.sleep(latency)
            data.pop(f"s{i}", None)
        return "compensated"


def bench_explore() -> None:
    saga = ten_step_saga()
    probe = asyncio.run(explore(saga, {}, progress=False))
    plans = list(probe.scenarios["faults"])
    count = len(plans)

    def with_explore() -> None:
        asyncio.run(explore(saga, {}, progress=False))

    def with_runs() -> None:
        async def main() -> None:
            for plan in plans:
                await saga.run({}, faults=plan)

        asyncio.run(main())
        saga.history.clear()

    def by_hand() -> None:
        async def main() -> None:
            for plan in plans:
                await hand_written_saga({}, plan)

        asyncio.run(main())

    explore_s = median_seconds(with_explore, 15)
    runs_s = median_seconds(with_runs, 15)
    hand_s = median_seconds(by_hand, 15)
    print(f"explore, {STEPS}-step saga, {count} scenarios (median of 15):")
    print(f"  sagakit explore         {count / explore_s:10,.0f} scenarios/s  ({explore_s * 1000:.1f} ms)")
    print(f"  saga.run per plan       {count / runs_s:10,.0f} scenarios/s  ({runs_s * 1000:.1f} ms)")
    print(f"  hand-written asyncio    {count / hand_s:10,.0f} scenarios/s  ({hand_s * 1000:.1f} ms)")
    print(f"  ratio explore / hand-written: {hand_s / explore_s:.2f}x the speed "
          f"(explore also builds worlds, checks invariants and a DataFrame)")


# -- 2. simulation -------------------------------------------------------------------------


def bench_simulate() -> None:
    saga = ten_step_saga()
    results: list[sagakit.RunHistory] = []

    def with_sagakit() -> None:
        results.append(saga.simulate(RUNS, {}, latency=LATENCY, concurrency=CONCURRENCY, progress=False))

    def by_hand() -> None:
        async def main() -> None:
            numbers = iter(range(RUNS))

            async def worker() -> None:
                for _ in numbers:
                    await hand_written_saga({}, {}, LATENCY)

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

        run_on_virtual_clock(main, start=0.0)

    repeat = 3
    sim_s = median_seconds(with_sagakit, repeat)
    hand_s = median_seconds(by_hand, repeat)
    history = results[-1]
    # Each run's span from its first event to its last, in simulated seconds.
    simulated = sum(run.events[-1].at - run.events[0].at for run in history)
    span = max(run.events[-1].at for run in history) - min(run.events[0].at for run in history)
    steps = history.steps
    forward = steps[steps["phase"] == "forward"]["duration_ms"]
    print(f"simulate, {RUNS:,} runs x {STEPS} steps x {LATENCY * 1000:.0f} ms virtual latency, "
          f"concurrency {CONCURRENCY} (median of {repeat}):")
    print(f"  sagakit simulate        {RUNS / sim_s:10,.0f} runs/s  ({sim_s:.2f} s wall; target < 10 s: "
          f"{'met' if sim_s < 10 else 'MISSED'})")
    print(f"  hand-written asyncio    {RUNS / hand_s:10,.0f} runs/s  ({hand_s:.2f} s wall, same virtual loop)")
    print(f"  ratio sagakit / hand-written: {hand_s / sim_s:.2f}x the speed")
    print(f"  simulated saga time {simulated:,.0f} s -> {simulated / sim_s:,.0f}x faster than running them "
          f"one after another in real time (target >= 1,000x: {'met' if simulated / sim_s >= 1000 else 'MISSED'})")
    print(f"  simulated span {span:,.1f} s at concurrency {CONCURRENCY} -> {span / sim_s:,.1f}x faster than the "
          f"same concurrency in real time")
    print(f"  recorded step durations: median {forward.median():.6f} ms, max deviation "
          f"{(forward - LATENCY * 1000).abs().max():.2e} ms")


# -- 3. random search ---------------------------------------------------------------------

WIDE = 20
BUDGET = 2_000


class Tally:
    """A world: counts the steps that acted."""

    def __init__(self) -> None:
        self.acted = 0


def always_holds(world: Tally, run: sagakit.Run) -> bool:
    return world.acted >= 0


def bench_random_search() -> None:
    saga = ten_step_saga(WIDE)
    probe = asyncio.run(explore(saga, {}, world=Tally, invariant=always_holds, search="random", budget=BUDGET,
                                seed=1, progress=False))
    plans = list(probe.scenarios["faults"])
    modes = [{name: getattr(fault, "mode", fault) for name, fault in plan.items()} for plan in plans]
    count = len(plans)

    def with_explore() -> None:
        asyncio.run(explore(saga, {}, world=Tally, invariant=always_holds, search="random", budget=BUDGET, seed=1,
                            progress=False))

    def bare_explore() -> None:
        asyncio.run(explore(saga, {}, search="random", budget=BUDGET, seed=1, progress=False))

    def with_runs() -> None:
        async def main() -> None:
            task = asyncio.current_task()
            for plan in plans:
                try:
                    await saga.run({}, faults=plan)
                except asyncio.CancelledError:  # a cancel fault: the run is in the history
                    task.uncancel()  # type: ignore[union-attr]

        asyncio.run(main())
        saga.history.clear()

    def by_hand() -> None:
        async def main() -> None:
            for plan in modes:
                await hand_written_saga({}, plan, steps=WIDE)

        asyncio.run(main())

    repeat = 7
    # Interleaved rounds, so that load from elsewhere on the machine falls on all three alike.
    rounds: list[list[float]] = [[], [], [], []]
    for _ in range(repeat):
        for position, work in enumerate((with_explore, bare_explore, with_runs, by_hand)):
            rounds[position].append(median_seconds(work, 1))
    explore_s, bare_s, runs_s, hand_s = (statistics.median(times) for times in rounds)
    drawn = int((probe.scenarios["kind"] == "random").sum())
    print(f"random search, {WIDE}-step saga, {count} scenarios ({drawn} drawn, seed 1) (median of {repeat}):")
    print(f"  sagakit explore(search='random') {count / explore_s:10,.0f} scenarios/s  ({explore_s * 1000:.0f} ms)")
    print(f"  ... without world or invariant   {count / bare_s:10,.0f} scenarios/s  ({bare_s * 1000:.0f} ms)")
    print(f"  saga.run per plan, same loop     {count / runs_s:10,.0f} scenarios/s  ({runs_s * 1000:.0f} ms)")
    print(f"  hand-written asyncio             {count / hand_s:10,.0f} scenarios/s  ({hand_s * 1000:.0f} ms)")
    ratio = runs_s / explore_s
    print(f"  ratio random search / saga.run: {ratio:.2f}x the rate (target >= 0.5: {'met' if ratio >= 0.5 else 'MISSED'}); "
          f"without world or invariant {runs_s / bare_s:.2f}x")
    print(f"  ratio random search / hand-written: {hand_s / explore_s:.2f}x the rate")


# -- 4. shrinking ---------------------------------------------------------------------------


def planted(world: Tally, run: sagakit.Run) -> None:
    """Violated when the undos of s3 and s9 both fail after s15 acted and failed."""
    failed = {e.step for e in run.events if e.kind is sagakit.EventKind.COMPENSATION_FAILED}
    lost = run.failed_step == "s15" and any(
        e.step == "s15" and e.kind is sagakit.EventKind.STEP_FAILED and e.error is not None
        and getattr(e.error, "mode", None) == "fail_after" for e in run.events
    )
    assert not (lost and {"s3", "s9"} <= failed), "two undos failed after a lost response"


def bench_shrink() -> None:
    saga = ten_step_saga(WIDE, continue_on_compensation_failure=True)
    noisy: dict[str, Any] = {f"s{i}": "fail_compensation" for i in range(15)}
    noisy.update({"s15": "fail_after", **{f"s{i}": "fail_after" for i in range(16, WIDE)}})

    async def shrink_once() -> tuple[float, int, dict[str, Any]]:
        exploration = await explore(saga, {}, world=Tally, invariant=planted, modes="fail", progress=False)
        started = time.perf_counter()
        found = await exploration.shrink(noisy)
        return time.perf_counter() - started, found.tried, found.scenario.plan

    def hand_shrink() -> float:
        async def violates(plan: dict[str, Any]) -> bool:
            failed: set[str] = set()
            done: list[int] = []
            for i in range(WIDE):
                mode = plan.get(f"s{i}")
                if mode == "fail":
                    break
                done.append(i)
                if mode == "fail_after":
                    for j in reversed(done[:-1]):
                        if plan.get(f"s{j}") == "fail_compensation":
                            failed.add(f"s{j}")
                    return i == 15 and {"s3", "s9"} <= failed
            return False

        async def main() -> None:
            plan = dict(noisy)
            changed = True
            while changed:
                changed = False
                for name in list(plan):
                    candidate = {k: v for k, v in plan.items() if k != name}
                    if await violates(candidate):
                        plan, changed = candidate, True
                        break

        started = time.perf_counter()
        asyncio.run(main())
        return time.perf_counter() - started

    outcomes = [asyncio.run(shrink_once()) for _ in range(5)]
    seconds = statistics.median(o[0] for o in outcomes)
    hand = statistics.median(hand_shrink() for _ in range(5))
    _, tried, plan = outcomes[-1]
    print(f"shrink a planted three-fault violation, {WIDE}-step saga, from {len(noisy)} faults (median of 5):")
    print(f"  sagakit shrink        {seconds * 1000:8.1f} ms, {tried} runs -> {plan} "
          f"(target < 5 s: {'met' if seconds < 5 else 'MISSED'})")
    print(f"  hand-written greedy   {hand * 1000:8.1f} ms (fault removal only, simulated saga, no engine)")
    print(f"  ratio sagakit / hand-written: {seconds / hand:.1f}x the time")


# -- 5. concurrent exploration --------------------------------------------------------------


def bumping_saga(steps: int, *, shared: bool) -> sagakit.Saga:
    """``steps`` steps, each adding one to a key: the run's own (``(run, step)``) or one shared key."""

    def make(i: int) -> sagakit.Step:
        async def bump(data: dict[str, Any], context: sagakit.WorkflowContext) -> None:
            key = "shared" if shared else (data["run"], i)
            context.world[key] = context.world.get(key, 0) + 1

        bump.__name__ = f"s{i}"
        return sagakit.step(bump)

    return sagakit.Saga(f"bump{steps}", [make(i) for i in range(steps)])


def concurrent_count(runs: int, steps: int, *, shared: bool, reduce: bool) -> tuple[int, float]:
    saga = bumping_saga(steps, shared=shared)
    started = time.perf_counter()
    exploration = explore_concurrent_sync([(saga, {"run": n}) for n in range(runs)], world=World, modes=(),
                                          reduce=reduce, budget=100_000)
    assert exploration.complete
    return len(exploration), time.perf_counter() - started


def hand_interleavings(runs: int, steps: int) -> int:
    """Every order of ``runs`` x ``steps`` step calls, each on a fresh dict, by hand: the orders
    generated once each (no duplicates to filter), the step functions called directly (no saga
    engine, no scheduler, no record of reads and writes)."""

    async def bump(world: dict[Any, int], key: Any) -> None:
        world[key] = world.get(key, 0) + 1

    def orders(left: list[int]) -> Any:
        if not any(left):
            yield ()
            return
        for run, remaining in enumerate(left):
            if remaining:
                left[run] -= 1
                for rest in orders(left):
                    yield (run, *rest)
                left[run] += 1

    async def main() -> int:
        count = 0
        for order in orders([steps] * runs):
            world: dict[Any, int] = {}
            for _ in order:
                await bump(world, "shared")
            count += 1
        return count

    return run_on_virtual_clock(main, start=0.0)


def engine_only(runs: int, steps: int, interleavings: int) -> float:
    """The saga engine's share: ``runs`` runs of the saga, one after another, ``interleavings`` times,
    each time on a fresh dict (no scheduler, no gates, no record of reads and writes)."""
    saga = bumping_saga(steps, shared=True)

    async def main() -> None:
        for _ in range(interleavings):
            world: dict[Any, int] = {}
            for run in range(runs):
                await saga.run({"run": run}, sagakit.WorkflowContext(world=world))
        saga.history.clear()

    started = time.perf_counter()
    run_on_virtual_clock(main, start=0.0)
    return time.perf_counter() - started


def bench_concurrent() -> None:
    repeat = 5
    rounds: list[list[float]] = [[], [], [], []]
    counts = {}
    for _ in range(repeat):  # interleaved, so that load from elsewhere falls on all alike
        count, seconds = concurrent_count(2, 5, shared=True, reduce=False)
        rounds[0].append(seconds)
        counts["full"] = count
        count, seconds = concurrent_count(2, 5, shared=True, reduce=True)
        rounds[1].append(seconds)
        counts["reduced"] = count
        started = time.perf_counter()
        hand = hand_interleavings(2, 5)
        rounds[2].append(time.perf_counter() - started)
        rounds[3].append(engine_only(2, 5, counts["full"]))
    full_s, reduced_s, hand_s, engine_s = (statistics.median(times) for times in rounds)
    print(f"concurrent exploration, 2 runs x 5 steps on one shared key, exhaustive (median of {repeat}):")
    print(f"  sagakit, no reduction       {counts['full'] / full_s:10,.0f} interleavings/s  ({counts['full']} in "
          f"{full_s * 1000:.0f} ms; target < 1 s: {'met' if full_s < 1 else 'MISSED'})")
    print(f"  sagakit, with reduction     {counts['reduced'] / reduced_s:10,.0f} interleavings/s  "
          f"({counts['reduced']} in {reduced_s * 1000:.0f} ms: every order conflicts)")
    print(f"  hand-written enumeration    {hand / hand_s:10,.0f} interleavings/s  ({hand} in {hand_s * 1000:.1f} ms; "
          "steps called directly, no engine, no record)")
    print(f"  the same runs through saga.run, one after another, no scheduler: {engine_s * 1000:.0f} ms "
          f"({engine_s / full_s:.0%} of the exploration)")
    print(f"  ratio sagakit / hand-written: {hand_s / full_s:.4f}x the rate")
    print("interleavings explored, with and without partial-order reduction (no faults):")
    for runs, steps in ((2, 5), (3, 4)):
        for shared in (False, True):
            reduced, reduced_s = concurrent_count(runs, steps, shared=shared, reduce=True)
            full, full_s = concurrent_count(runs, steps, shared=shared, reduce=False)
            keys = "one shared key" if shared else "keys of their own"
            print(f"  {runs} x {steps}, {keys:<18} without {full:7,} ({full_s:6.2f} s)   with {reduced:7,} "
                  f"({reduced_s:6.2f} s)")


# -- 6. the World outside exploration ---------------------------------------------------------


def bench_world() -> None:
    world, plain = World(stock=1), {"stock": 1}
    number = 1_000_000
    statements = ('world["stock"]', 'plain["stock"]', 'world["stock"] = 2', 'plain["stock"] = 2')
    rounds: list[list[float]] = [[] for _ in statements]
    for _ in range(5):  # interleaved rounds
        for position, statement in enumerate(statements):
            seconds = timeit.timeit(statement, globals={"world": world, "plain": plain}, number=number)
            rounds[position].append(seconds)
    read, read_dict, write, write_dict = (statistics.median(times) / number * 1e9 for times in rounds)
    print("World outside exploration, per access (median of 5 x 1,000,000):")
    print(f"  read   World {read:6.1f} ns   dict {read_dict:6.1f} ns   {read / read_dict:.1f}x")
    print(f"  write  World {write:6.1f} ns   dict {write_dict:6.1f} ns   {write / write_dict:.1f}x")


if __name__ == "__main__":
    bench_explore()
    print()
    bench_simulate()
    print()
    bench_random_search()
    print()
    bench_shrink()
    print()
    bench_concurrent()
    print()
    bench_world()
