"""Exploration and simulation speed, next to hand-written asyncio baselines.

1. Scenarios per second: ``saga.explore`` over a 10-step saga (30 scenarios), against the same
   fault plans run one by one with ``saga.run``, and against a hand-written asyncio saga that
   injects the same faults.
2. Simulated runs per second: 10,000 runs of a 10-step saga with 100 ms of virtual latency per
   step, against a hand-written asyncio saga sleeping the same latencies on the same virtual
   clock. Targets: under 10 s of wall time, and at least 1,000x faster than real time.

Run: ``.venv/bin/python benchmarks/bench_explore.py``. Prints medians.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

import sagakit
from sagakit.explore import explore, run_on_virtual_clock

STEPS = 10
LATENCY = 0.1
RUNS = 10_000
CONCURRENCY = 100


def ten_step_saga() -> sagakit.Saga:
    def make(i: int) -> sagakit.Step:
        async def act(data: dict[str, Any], context: sagakit.WorkflowContext) -> None:
            data[f"s{i}"] = True

        async def undo(data: dict[str, Any], context: sagakit.WorkflowContext) -> None:
            data.pop(f"s{i}", None)

        act.__name__ = f"s{i}"
        return sagakit.step(act, compensate=undo)

    return sagakit.Saga("ten", [make(i) for i in range(STEPS)])


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


async def hand_written_saga(data: dict[str, Any], faults: dict[str, str], latency: float = 0.0) -> str:
    """The saga pattern by hand: steps, reverse-order undo, and the three fault modes."""
    done: list[int] = []
    try:
        for i in range(STEPS):
            mode = faults.get(f"s{i}")
            if mode == "fail":
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
            if faults.get(f"s{i}") == "fail_compensation":
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


if __name__ == "__main__":
    bench_explore()
    print()
    bench_simulate()
