"""The cost of durability: W1 with the SQLite journal, and group commit against a naive journal.

W1 is a 10-step saga of no-op async steps (each with a no-op compensation) that succeeds.

1. Per saga, one at a time: the hand-written asyncio try/except saga, sagakit without a
   journal, and sagakit with the journal at ``durability="normal"`` and ``"full"`` (one fsync
   per stage: a step is never acknowledged before its record is on disk).
2. Throughput of 1,000 concurrent W1 sagas: the journal (group commit: one transaction per
   batch of events) next to a naive journal observer that commits one transaction per event,
   measured in the same run. The naive journal at ``"full"`` pays one fsync per event
   whatever the concurrency (its commits are serial), so it is measured on 100 concurrent
   sagas to keep this script short; its rate does not depend on the count.

Every measurement uses a fresh saga object: a saga keeps the runs it made (``saga.history``),
and a history growing from one measurement to the next would make the later ones pay for
the garbage collector's walks over it.

Prints medians and ratios. Run with the project's virtual environment: ``python benchmarks/bench_journal.py``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import sagakit
from sagakit import Event, Saga, WorkflowContext, step

STEPS = 10


async def noop(data: Any, context: WorkflowContext) -> None:
    return None


async def undo(data: Any, context: WorkflowContext) -> None:
    return None


def w1() -> Saga:
    return Saga("w1", [step(noop, compensate=undo, name=f"step{i}") for i in range(STEPS)])


async def plain_noop(data: Any) -> None:
    return None


async def handwritten(data: Any) -> Any:
    """The physical limit: a try/except saga with no bookkeeping at all."""
    done: list[Any] = []
    try:
        for _ in range(STEPS):
            result = await plain_noop(data)
            data = data if result is None else result
            done.append(data)
    except BaseException:
        for item in reversed(done):
            await plain_noop(item)
        raise
    return data


class NaiveJournal:
    """One transaction (and, at synchronous=FULL, one fsync) per event, committed before the saga goes on."""

    def __init__(self, path: Path, synchronous: str) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None)
        self.connection.execute("PRAGMA journal_mode = WAL")
        self.connection.execute(f"PRAGMA synchronous = {synchronous}")
        self.connection.execute(
            "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, run_id TEXT, kind TEXT, at REAL, step TEXT,"
            " payload TEXT)"
        )
        self.events = 0

    def __call__(self, event: Event) -> None:
        import json

        self.connection.execute("BEGIN IMMEDIATE")
        self.connection.execute(
            "INSERT INTO events (run_id, kind, at, step, payload) VALUES (?, ?, ?, ?, ?)",
            (event.run_id, event.kind.value, event.at, event.step, json.dumps(event.data)),
        )
        self.connection.execute("COMMIT")
        self.events += 1

    def close(self) -> None:
        self.connection.close()


async def per_saga(run: Callable[[], Awaitable[Any]], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        await run()
    return (time.perf_counter() - started) / count


async def concurrent(saga: Saga, count: int, journal: Any) -> float:
    """Sagas per second for ``count`` concurrent runs."""
    started = time.perf_counter()
    runs = await asyncio.gather(*(saga.run({"n": i}, journal=journal) for i in range(count)))
    elapsed = time.perf_counter() - started
    assert all(run.ok for run in runs)
    return count / elapsed


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:9.3f} ms"


async def latency(directory: Path) -> None:
    rounds = 7
    results: dict[str, list[float]] = {"hand-written": [], "sagakit, no journal": [], "journal normal": [],
                                       "journal full": []}
    normal = sagakit.SqliteJournal(directory / "normal.db", durability="normal")
    full = sagakit.SqliteJournal(directory / "full.db", durability="full")
    for _ in range(rounds):  # interleaved, so that a noisy neighbour hits every variant alike
        run = w1().run
        results["hand-written"].append(await per_saga(lambda: handwritten({}), 2000))
        results["sagakit, no journal"].append(await per_saga(functools.partial(run, {}), 500))
        results["journal normal"].append(await per_saga(functools.partial(run, {}, journal=normal), 100))
        results["journal full"].append(await per_saga(functools.partial(run, {}, journal=full), 8))
    normal.close()
    full.close()
    base = statistics.median(results["hand-written"])
    print(f"W1 per saga ({STEPS} steps), one at a time, median of {rounds} rounds:")
    for name, values in results.items():
        print(f"  {name:22s} {median_ms(values)}   {statistics.median(values) / base:8.1f}x hand-written")


async def throughput(directory: Path) -> None:
    rows: list[tuple[str, str, int, float, float]] = []
    for durability, synchronous, naive_count in (("normal", "NORMAL", 1000), ("full", "FULL", 100)):
        group_rates, naive_rates = [], []
        for attempt in range(3):
            journal = sagakit.SqliteJournal(directory / f"group-{durability}-{attempt}.db", durability=durability)
            group_rates.append(await concurrent(w1(), 1000, journal))
            journal.close()
            assert journal.stats.events == 1000 * (STEPS + 2), journal.stats  # every step's end is on disk
            naive = NaiveJournal(directory / f"naive-{durability}-{attempt}.db", synchronous)
            naive_rates.append(await concurrent(w1(), naive_count, naive))
            naive.close()
        group = statistics.median(group_rates)
        naive_rate = statistics.median(naive_rates)
        rows.append((durability, synchronous, naive_count, group, naive_rate))
    print("Throughput of concurrent W1 sagas (sagas per second, median of 3 interleaved rounds):")
    for durability, synchronous, naive_count, group, naive_rate in rows:
        print(f"  durability={durability:6s} group commit, 1,000 concurrent: {group:8.0f}/s   "
              f"naive (1 commit per event, synchronous={synchronous}), {naive_count:,} concurrent: "
              f"{naive_rate:7.0f}/s   ratio {group / naive_rate:6.1f}x")


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-journal-", dir=os.environ.get("BENCH_DIR")) as name:
        directory = Path(name)
        print(f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, files in {directory}")
        await latency(directory)
        await throughput(directory)


if __name__ == "__main__":
    asyncio.run(main())
