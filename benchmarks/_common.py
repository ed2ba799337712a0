"""Helpers shared by the benchmarks: interleaved timing rounds and a results table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable


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
