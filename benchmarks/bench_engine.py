"""Engine overhead: sagakit next to a hand-written asyncio saga, in the same process.

W1: a 10-step saga of no-op async steps that succeeds.
W2: the same with step 10 failing and steps 1–9 compensated.
W3: 10 steps with a pivot at step 5 (steps 1–4 compensatable, 6–10 retriable); step 8 fails
twice and then succeeds (forward recovery, no backoff), and the saga completes.

The hand-written saga is the physical limit: a try/except loop with no bookkeeping at all.
sagakit runs with run traces recorded (the default): every event kept, every run in
``saga.history``. Rounds interleave the variants so that machine noise hits them alike.
Also reported: RunHistory memory per 10-step run, and the time to build the ``steps``
frame for 100,000 runs.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc

from _common import fail, hand_w2, hand_written, median, noop, per_call_us, report

import sagakit as sk

ROUNDS = 15
PER_ROUND = 2000
STEPS = 10


class _Flaky:
    """Step 8 of W3: fails twice, then succeeds (every third call succeeds)."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, data: object, context: object) -> object:
        self.calls += 1
        if self.calls % 3:
            raise ConnectionError("step 8 is flaky")
        return data


NO_WAIT = sk.RetryPolicy(max_retries=3, initial_delay=0, max_delay=0, jitter=0)


def w3_saga() -> tuple[sk.Saga, _Flaky]:
    flaky = _Flaky()
    stages = [sk.step(noop, noop, name=f"s{i}") for i in range(4)]
    stages.append(sk.step(noop, name="s4", kind="pivot"))
    for i in range(5, STEPS):
        stages.append(sk.step(flaky if i == 7 else noop, name=f"s{i}", retry=NO_WAIT))
    return sk.Saga("w3", stages), flaky


async def hand_w3(steps: list[tuple[object, object]], pivot: int, attempts: int) -> object:
    """The hand-written W3: compensate before the pivot, retry each step after it."""
    data: object = {}
    done: list[tuple[object, object]] = []
    try:
        for action, compensate in steps[: pivot + 1]:
            data = await action(data, None)  # type: ignore[operator]
            done.append((compensate, data))
    except Exception:
        for compensate, output in reversed(done):
            if compensate is not None:
                await compensate(output, None)  # type: ignore[operator]
        raise
    for action, _ in steps[pivot + 1 :]:
        for attempt in range(attempts):
            try:
                data = await action(data, None)  # type: ignore[operator]
                break
            except Exception:
                if attempt == attempts - 1:
                    raise
    return data


def sagas() -> tuple[sk.Saga, sk.Saga]:
    w1 = sk.Saga("w1", [sk.step(noop, noop, name=f"s{i}") for i in range(STEPS)])
    w2 = sk.Saga("w2", [sk.step(noop, noop, name=f"s{i}") for i in range(STEPS - 1)] + [sk.step(fail, name="s9")])
    return w1, w2


async def timings(collect: bool) -> None:
    """Interleaved rounds; ``collect=False`` shows how much of the cost is the garbage
    collector walking the runs kept in ``saga.history``."""
    w1, w2 = sagas()
    w3, flaky = w3_saga()
    hand1 = [(noop, noop)] * STEPS
    hand2 = [(noop, noop)] * (STEPS - 1) + [(fail, None)]
    hand_flaky = _Flaky()
    hand3 = [(noop, noop)] * 4 + [(noop, None)] + [(hand_flaky if i == 7 else noop, None) for i in range(5, STEPS)]
    variants = ("hand W1", "sagakit W1", "hand W2", "sagakit W2", "hand W3", "sagakit W3")
    results: dict[str, list[float]] = {k: [] for k in variants}
    if not collect:
        gc.disable()
    for _ in range(ROUNDS):
        w1.history.clear()
        w2.history.clear()
        w3.history.clear()
        if collect:
            gc.collect()  # the runs just dropped are collected now, not inside the next timing
        results["hand W1"].append(await per_call_us(lambda: hand_written({}, hand1, None), PER_ROUND))
        results["sagakit W1"].append(await per_call_us(lambda: w1.run({}), PER_ROUND))
        results["hand W2"].append(await per_call_us(lambda: hand_w2(hand2), PER_ROUND))
        results["sagakit W2"].append(await per_call_us(lambda: w2.run({}), PER_ROUND))
        results["hand W3"].append(await per_call_us(lambda: hand_w3(hand3, 4, NO_WAIT.attempts), PER_ROUND))
        results["sagakit W3"].append(await per_call_us(lambda: w3.run({}), PER_ROUND))
    last = w3.history.last
    if last is None or last.status != "completed" or flaky.calls % 3 or hand_flaky.calls % 3:
        raise SystemExit("W3 did not run as designed: step 8 must fail twice, then succeed")
    gc.enable()
    m = {k: median(v) for k, v in results.items()}
    # The ratio is the median of the per-round ratios: each round times sagakit right after
    # its baseline, so a burst of machine noise moves both sides of a ratio alike.
    ratio = {
        w: median([s / h for s, h in zip(results[f"sagakit {w}"], results[f"hand {w}"], strict=True)])
        for w in ("W1", "W2", "W3")
    }
    report(
        f"W1/W2 per saga ({STEPS} steps, {ROUNDS} rounds × {PER_ROUND} runs, traces recorded, "
        f"GC {'on' if collect else 'off'}; ratio: median of per-round ratios)",
        [
            ("hand-written W1 (baseline)", m["hand W1"], None),
            ("sagakit W1", m["sagakit W1"], ratio["W1"]),
            ("hand-written W2 (baseline)", m["hand W2"], None),
            ("sagakit W2", m["sagakit W2"], ratio["W2"]),
            ("hand-written W3 (baseline)", m["hand W3"], None),
            ("sagakit W3", m["sagakit W3"], ratio["W3"]),
        ],
    )


async def memory() -> None:
    w1, w2 = sagas()
    for saga, label in ((w1, "W1"), (w2, "W2")):
        runs = 10_000
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(runs):
            await saga.run({})
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        print(f"  RunHistory memory per {label} run: {(after - before) / runs / 1024:.2f} KiB ({runs} runs kept)")


async def frame_build() -> None:
    w1, _ = sagas()
    w1.history.maxlen = None
    runs = 100_000
    start = time.perf_counter()
    for _ in range(runs):
        await w1.run({})
    ran = time.perf_counter() - start
    start = time.perf_counter()
    frame = w1.history.steps
    built = time.perf_counter() - start
    start = time.perf_counter()
    runs_frame = w1.history.runs
    built_runs = time.perf_counter() - start
    print(f"  ran {runs} W1 runs in {ran:.1f} s")
    print(f"  steps frame for {runs} runs ({len(frame):,} rows): {built:.2f} s")
    print(f"  runs frame for {runs} runs ({len(runs_frame):,} rows): {built_runs:.2f} s")


async def main() -> None:
    await timings(collect=True)
    await timings(collect=False)
    print("\nMemory")
    await memory()
    print("\nFrames")
    await frame_build()


if __name__ == "__main__":
    asyncio.run(main())
