"""Helpers shared by the benchmarks: interleaved timing rounds and a results table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def per_call_us(make: Callable[[], Awaitable[object]], n: int) -> float:
    """Microseconds per awaited call, over ``n`` sequential calls."""
    start = time.perf_counter()
    for _ in range(n):
        await make()
    return (time.perf_counter() - start) / n * 1e6


def median(values: list[float]) -> float:
    return statistics.median(values)


def report(title: str, rows: list[tuple[str, float, float | None]], unit: str = "µs/saga") -> None:
    """Print ``name, median, ratio to baseline`` rows."""
    print(f"\n{title}")
    print(f"  {'variant':<44} {'median ' + unit:>16} {'ratio':>8}")
    for name, value, ratio in rows:
        ratio_text = f"{ratio:.2f}×" if ratio is not None else "—"
        print(f"  {name:<44} {value:>16.2f} {ratio_text:>8}")


async def noop(data: Any, context: Any) -> Any:
    """A step that does nothing: the workloads measure overhead, not work."""
    return data


async def fail(data: Any, context: Any) -> Any:
    """The failing last step of W2."""
    raise ValueError("step 10 failed")


async def hand_written(data: Any, steps: list[tuple[Any, Any]], context: Any) -> Any:
    """The baseline: a try/except saga with no bookkeeping at all (the physical limit)."""
    done: list[tuple[Any, Any]] = []
    try:
        for action, compensate in steps:
            data = await action(data, context)
            done.append((compensate, data))
    except Exception:
        for compensate, output in reversed(done):
            await compensate(output, context)
        raise
    return data


async def hand_w2(steps: list[tuple[Any, Any]]) -> None:
    """Run the hand-written saga whose last step fails, swallowing its error."""
    try:  # noqa: SIM105 - the baseline stays the plainest, fastest code
        await hand_written({}, steps, None)
    except ValueError:
        pass
