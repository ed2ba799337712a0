"""The Temporal backend's own promises: live events, cancellation, serialisation, run facts."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

import sagakit as sk

from . import sagas_under_test as S

pytestmark = [pytest.mark.temporal, pytest.mark.asyncio(loop_scope="session")]


async def cancel_when(saga: sk.Saga, data: Any, context: sk.WorkflowContext, backend: Any,
                      kind: sk.EventKind, step: str) -> sk.Run:
    """Run ``saga`` on ``backend``, cancel the caller once ``step`` emits ``kind``, check the
    CancelledError propagates, and return the run it recorded."""
    reached = asyncio.Event()

    def observer(event: sk.Event) -> None:
        if event.kind is kind and event.step == step:
            reached.set()

    task = asyncio.ensure_future(saga.run(data, context, backend=backend, observers=[observer]))
    await asyncio.wait_for(reached.wait(), timeout=30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    run = saga.history.last
    assert run is not None
    return run


class TestLiveEvents:
    async def test_events_arrive_while_the_workflow_runs_in_order(self, backend: Any) -> None:
        """An observer sees step events before the run ends, run_started first, run_finished last."""
        seen: list[sk.Event] = []
        c_started = asyncio.Event()

        def observer(event: sk.Event) -> None:
            seen.append(event)
            if event.kind is sk.EventKind.STEP_STARTED and event.step == "c":
                c_started.set()

        task = asyncio.ensure_future(
            S.linear.run({"plan": {"c": "sleep:0.5"}}, sk.WorkflowContext("live-1"), backend=backend,
                         observers=[observer])
        )
        await asyncio.wait_for(c_started.wait(), timeout=30)
        assert not task.done()
        assert [e.kind for e in seen][:2] == [sk.EventKind.RUN_STARTED, sk.EventKind.STEP_STARTED]
        run = await task
        # As locally, start events go to observers only; the run keeps every other event.
        assert [e for e in seen if e.kind not in (sk.EventKind.STEP_STARTED, sk.EventKind.COMPENSATION_STARTED)] \
            == run.events
        assert seen[-1].kind is sk.EventKind.RUN_FINISHED
        assert seen[0].info is not None and seen[0].info["workflow_id"] == run.info["workflow_id"]
        assert S.linear.history.last is run


    @staticmethod
    def counting_client(client: Any) -> tuple[Any, list[str]]:
        """A client on the same connection that notes the name of every query it sends."""
        from temporalio.client import Client, Interceptor, OutboundInterceptor, QueryWorkflowInput

        sent: list[str] = []

        class Counting(OutboundInterceptor):
            async def query_workflow(self, input: QueryWorkflowInput) -> Any:
                sent.append(input.query)
                return await super().query_workflow(input)

        class Counter(Interceptor):
            def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
                return Counting(next)

        return Client(client.service_client, namespace=client.namespace, interceptors=[Counter()]), sent

    async def test_a_run_in_one_workflow_task_is_not_queried(self, client: Any, worker: Any) -> None:
        """Local steps without retries run in one workflow task, which answers no query until
        the run ends (then by replaying the whole history): the caller sends none, and the
        observer still gets every event, in order, once the run ends."""
        from sagakit.temporal import TemporalBackend

        counting, sent = self.counting_client(client)
        seen: list[sk.Event] = []
        backend = TemporalBackend(counting, task_queue="sagakit-tests", local_activities=True, poll_interval=0.01)
        run = await S.linear.run({"plan": {"c": "sleep:0.3", "d": "raise"}}, sk.WorkflowContext("one-task-1"),
                                 backend=backend, observers=[seen.append])
        assert run.status == "compensated" and run.compensated_steps == ["c", "b", "a"]
        assert sent == []
        assert [e for e in seen if e.kind not in (sk.EventKind.STEP_STARTED, sk.EventKind.COMPENSATION_STARTED)] \
            == run.events
        assert [e.step for e in seen if e.kind is sk.EventKind.STEP_STARTED] == ["a", "b", "sync_step", "c", "d"]
        S.CALLS.pop("one-task-1", None)

    async def test_a_run_with_regular_activities_is_queried_while_it_runs(self, client: Any, worker: Any) -> None:
        """A regular activity ends the workflow task, so the caller polls for events meanwhile."""
        from sagakit.temporal import TemporalBackend

        counting, sent = self.counting_client(client)
        backend = TemporalBackend(counting, task_queue="sagakit-tests", poll_interval=0.05)
        run = await S.linear.run({"plan": {"c": "sleep:0.5"}}, sk.WorkflowContext("queried-1"), backend=backend,
                                 observers=[lambda event: None])
        assert run.status == "completed"
        assert sent and set(sent) == {"sagakit.events"}
        S.CALLS.pop("queried-1", None)


class TestCancellation:
    async def test_cancelling_the_caller_compensates_completed_steps(self, backend: Any, client: Any) -> None:
        """Cancel while c runs: b and a are compensated, the run is cancelled, CancelledError propagates."""
        from temporalio.client import WorkflowExecutionStatus

        cid = f"cancel-{uuid.uuid4().hex[:8]}"
        run = await cancel_when(S.linear, {"plan": {"c": "sleep:30"}}, sk.WorkflowContext(cid), backend,
                                sk.EventKind.STEP_STARTED, "c")
        assert run.backend == "temporal"
        assert run.status == "cancelled"
        assert run.compensated_steps == ["b", "a"]
        assert [e.status for e in run.events if e.step == "c" and e.phase == "forward"][-1] == "cancelled"
        compensations = [(step, phase) for step, phase, _, _ in S.CALLS.pop(cid) if phase == "compensate"]
        assert compensations == [("b", "compensate"), ("a", "compensate")]
        description = await client.get_workflow_handle(run.info["workflow_id"]).describe()
        assert description.status == WorkflowExecutionStatus.CANCELED

    async def test_a_plain_function_step_cancelled_mid_run_finishes_and_is_compensated(self, backend: Any) -> None:
        """A ``def`` step cannot be interrupted: it runs to its end, counts as completed, and is undone."""
        cid = f"block-{uuid.uuid4().hex[:8]}"
        run = await cancel_when(S.blocking, {"block": 2.0}, sk.WorkflowContext(cid), backend,
                                sk.EventKind.STEP_STARTED, "blocking_step")
        assert run.status == "cancelled"
        assert run.completed_steps == ["a", "blocking_step"]
        assert run.compensated_steps == ["blocking_step", "a"]
        calls = [(step, phase) for step, phase, _, _ in S.CALLS.pop(cid)]
        assert calls == [("a", "forward"), ("blocking", "forward"), ("blocking", "finished"),
                         ("blocking", "compensate"), ("a", "compensate")]

    async def test_a_cancellation_while_a_parallel_stage_winds_down_propagates(
        self, backend: Any, client: Any
    ) -> None:
        """p1 fails while p2 runs; the caller is cancelled before the rollback ends: the run is
        compensated with p1's error, the workflow ends cancelled, and CancelledError propagates."""
        from temporalio.client import WorkflowExecutionStatus

        cid = f"winddown-{uuid.uuid4().hex[:8]}"
        plan = {"p1": "raise", "p2": "sleep:30", "a:compensate": "sleep:1"}
        run = await cancel_when(S.fanout, {"plan": plan}, sk.WorkflowContext(cid), backend,
                                sk.EventKind.STEP_FAILED, "p1")
        assert run.status == "compensated"
        assert run.failed_step == "p1" and isinstance(run.error, ValueError) and "p1 refused" in str(run.error)
        assert run.compensated_steps == ["a"]
        S.CALLS.pop(cid, None)
        description = await client.get_workflow_handle(run.info["workflow_id"]).describe()
        assert description.status == WorkflowExecutionStatus.CANCELED

    async def test_execute_raises_the_original_error(self, backend: Any) -> None:
        """execute() with the Temporal backend raises what it raises locally."""
        with pytest.raises(ValueError, match="b refused"):
            await S.linear.execute({"plan": {"b": "raise"}}, sk.WorkflowContext("exec-1"), backend=backend)
        assert await S.linear.execute({}, sk.WorkflowContext("exec-2"), backend=backend) == {
            "a": "a-done", "b": "b-done", "sync_step": "sync-done", "c": "c-done", "d": "d-done"}


class TestSerialisation:
    async def test_unserialisable_input_fails_before_the_workflow_starts(self, backend: Any) -> None:
        """A set in the input: TypeError naming where and what, no run at all, no fault draw spent."""
        before = len(S.linear.history)
        flaky = sk.Fault("fail", probability=0.5, seed=3)
        with pytest.raises(TypeError, match=r"saga 'linear' data\['items'\]\[1\] is a set"):
            await S.linear.run({"items": [1, {2, 3}]}, faults={"a": flaky}, backend=backend)
        fresh = sk.Fault("fail", probability=0.5, seed=3)
        assert [flaky.fires() for _ in range(32)] == [fresh.fires() for _ in range(32)]
        with pytest.raises(TypeError, match=r"context.metadata\[.when.\] is a object"):
            await S.linear.run({}, sk.WorkflowContext("m", {"when": object()}), backend=backend)
        assert len(S.linear.history) == before

    async def test_an_unserialisable_step_result_fails_that_step(self, backend: Any) -> None:
        """A step returning a set fails with a TypeError naming the step; the rollback runs."""
        run = await S.linear.run({"plan": {"b": "set"}}, sk.WorkflowContext("set-1"), backend=backend)
        assert run.status == "compensated" and run.failed_step == "b"
        assert isinstance(run.error, TypeError)
        assert "step 'b' returned a dict" in str(run.error)
        assert run.compensated_steps == ["a"]
        S.CALLS.pop("set-1", None)


class TestRunFacts:
    async def test_the_run_records_workflow_and_backend(self, backend: Any, client: Any) -> None:
        """The run's info names the workflow; Temporal's memo carries the correlation id."""
        run = await S.linear.run({}, sk.WorkflowContext("facts-1"), backend=backend)
        assert run.info["workflow_id"] == f"linear/facts-1/{run.run_id}"
        assert run.info["task_queue"] == backend.task_queue and run.info["namespace"] == "default"
        description = await client.get_workflow_handle(run.info["workflow_id"]).describe()
        memo = await description.memo()
        assert memo == {"saga": "linear", "correlation_id": "facts-1", "run_id": run.run_id}
        assert S.linear.history.runs.iloc[-1]["backend"] == "temporal"
        S.CALLS.pop("facts-1", None)

    async def test_a_custom_workflow_id(self, client: Any, worker: Any) -> None:
        """workflow_id= decides the id; here the bare correlation id."""
        from sagakit.temporal import TemporalBackend

        cid = f"custom-{uuid.uuid4().hex[:8]}"
        backend = TemporalBackend(client, task_queue="sagakit-tests", workflow_id=lambda r: r.context.correlation_id)
        run = await S.linear.run({}, sk.WorkflowContext(cid), backend=backend)
        assert run.info["workflow_id"] == cid
        S.CALLS.pop(cid, None)

    @pytest.mark.parametrize("made", [5, "", None])
    async def test_a_workflow_id_that_is_not_a_str_is_named(self, client: Any, made: Any) -> None:
        """A workflow_id callable returning no usable id: a TypeError naming the argument, what
        it returned and what was expected; nothing starts, and no fault draw is spent."""
        from sagakit.temporal import TemporalBackend

        backend = TemporalBackend(client, task_queue="sagakit-tests", workflow_id=lambda request: made)
        flaky = sk.Fault("fail", probability=0.5, seed=3)
        before = len(S.linear.history)
        expected = (rf"TemporalBackend workflow_id: the callable returned {type(made).__name__} {made!r} for a run "
                    r"of saga 'linear'; expected a non-empty str \(the Temporal workflow id\)")
        with pytest.raises(TypeError, match=expected):
            await S.linear.run({}, faults={"a": flaky}, backend=backend)
        assert len(S.linear.history) == before
        fresh = sk.Fault("fail", probability=0.5, seed=3)
        assert [flaky.fires() for _ in range(32)] == [fresh.fires() for _ in range(32)]

    async def test_bad_backend_arguments_are_named(self, client: Any) -> None:
        """Wrong arguments raise naming the argument."""
        from sagakit.temporal import TemporalBackend

        with pytest.raises(TypeError, match="task_queue"):
            TemporalBackend(client, task_queue="")
        with pytest.raises(ValueError, match="activity_timeout"):
            TemporalBackend(client, task_queue="q", activity_timeout=-1)
        with pytest.raises(TypeError, match="TemporalBackend poll_interval: expected a number of seconds > 0, got str"):
            TemporalBackend(client, task_queue="q", poll_interval="5")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"TemporalBackend heartbeat_timeout: .* too large for a float"):
            TemporalBackend(client, task_queue="q", heartbeat_timeout=10**400)
        with pytest.raises(TypeError, match="client"):
            TemporalBackend("localhost:7233", task_queue="q")  # type: ignore[arg-type]


class TestReplay:
    async def test_histories_replay_without_nondeterminism(self, backend: Any, client: Any) -> None:
        """A rolled-back parallel run with metadata notes and a run cancelled mid-step replay cleanly."""
        from temporalio.worker import Replayer

        from sagakit.temporal import SagaWorkflow
        from sagakit.temporal.worker import sandbox_runner

        plan = {"p1": "sleep:0.05", "p2": "sleep:0.2", "c": "raise"}
        rolled_back = await S.notes.run({"plan": plan}, sk.WorkflowContext("replay-1", {"drop_me": 0}), backend=backend)
        assert rolled_back.status == "compensated"

        cancelled = await cancel_when(S.linear, {"plan": {"c": "sleep:30"}}, sk.WorkflowContext("replay-2"), backend,
                                      sk.EventKind.STEP_STARTED, "c")
        assert cancelled.status == "cancelled"

        replayer = Replayer(workflows=[SagaWorkflow], workflow_runner=sandbox_runner())
        for run in (rolled_back, cancelled):
            history = await client.get_workflow_handle(run.info["workflow_id"]).fetch_history()
            result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
            assert result.replay_failure is None, (run.info["workflow_id"], result.replay_failure)
        S.CALLS.pop("replay-1", None)
        S.CALLS.pop("replay-2", None)


class TestLocalActivities:
    async def test_the_kind_is_chosen_per_step_and_shows_in_the_history(self, client: Any, worker: Any) -> None:
        """Named steps run as local activities (markers), the others as regular ones (scheduled activities)."""
        from sagakit.temporal import TemporalBackend

        backend = TemporalBackend(client, task_queue="sagakit-tests", local_activities={"b", "linear.c", "fanout.a"})
        run = await S.linear.run({"plan": {"d": "raise"}}, sk.WorkflowContext("kinds-1"), backend=backend)
        assert run.status == "compensated" and run.compensated_steps == ["c", "b", "a"]
        assert run.info["local_activities"] == ["b", "c"]
        history = await client.get_workflow_handle(run.info["workflow_id"]).fetch_history()
        scheduled = [e.activity_task_scheduled_event_attributes.activity_type.name for e in history.events
                     if e.HasField("activity_task_scheduled_event_attributes")]
        markers = [e for e in history.events if e.HasField("marker_recorded_event_attributes")]
        assert scheduled == ["linear.a.forward", "linear.sync_step.forward", "linear.d.forward", "linear.a.compensate"]
        assert len(markers) == 4  # b and c forward, then c and b compensated
        S.CALLS.pop("kinds-1", None)

    async def test_a_local_step_longer_than_its_limit_times_out_and_rolls_back(self, client: Any, worker: Any) -> None:
        """c sleeps past local_activity_timeout: it is stopped, fails with StepTimeout, b and a are undone."""
        from sagakit.temporal import TemporalBackend

        backend = TemporalBackend(client, task_queue="sagakit-tests", local_activities=True,
                                  local_activity_timeout=0.5)
        run = await S.linear.run({"plan": {"c": "sleep:30"}}, sk.WorkflowContext("too-long-1"), backend=backend)
        assert run.status == "compensated" and run.failed_step == "c"
        assert isinstance(run.error, sk.StepTimeout) and str(run.error) == "step 'c' timed out after 0.5s"
        assert run.compensated_steps == ["b", "a"]
        assert ("c", "cancelled") in [(step, phase) for step, phase, _, _ in S.CALLS.pop("too-long-1")]
        # Stopped at its own limit, not by the workflow task timing out (and the task run again).
        history = await client.get_workflow_handle(run.info["workflow_id"]).fetch_history()
        assert not [e for e in history.events if e.HasField("workflow_task_timed_out_event_attributes")]

    async def test_local_retries_are_recorded_in_order_and_replay(self, client: Any, worker: Any) -> None:
        """b flakes twice as a local activity: three attempts in order; the history replays cleanly."""
        from temporalio.worker import Replayer

        from sagakit.temporal import SagaWorkflow, TemporalBackend
        from sagakit.temporal.worker import sandbox_runner

        backend = TemporalBackend(client, task_queue="sagakit-tests", local_activities=True)
        run = await S.retrying.run({"plan": {"b": "flaky:2"}}, sk.WorkflowContext("local-retry-1"), backend=backend)
        assert run.status == "completed"
        b_rows = run.steps[run.steps["step"] == "b"]
        assert list(zip(b_rows["attempt"], b_rows["status"], strict=True)) == [
            (1, "failed"), (2, "failed"), (3, "succeeded")]
        assert [attempt for step, _, attempt, _ in S.CALLS.pop("local-retry-1") if step == "b"] == [1, 2, 3]
        history = await client.get_workflow_handle(run.info["workflow_id"]).fetch_history()
        replayer = Replayer(workflows=[SagaWorkflow], workflow_runner=sandbox_runner())
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, result.replay_failure

    async def test_bad_local_activity_options_are_named(self, client: Any, worker: Any) -> None:
        """Wrong choices raise naming the option; an unknown step name fails before any workflow starts."""
        from sagakit.temporal import TemporalBackend

        with pytest.raises(TypeError, match="local_activities"):
            TemporalBackend(client, task_queue="q", local_activities="b")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="local_activities"):
            TemporalBackend(client, task_queue="q", local_activities=3)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"local_activity_timeout.*workflow task timeout"):
            TemporalBackend(client, task_queue="q", local_activity_timeout=30)
        with pytest.raises(ValueError, match="local_activity_timeout"):
            TemporalBackend(client, task_queue="q", local_activity_timeout=0)
        runs = len(S.linear.history)
        backend = TemporalBackend(client, task_queue="sagakit-tests", local_activities={"b", "nope"})
        with pytest.raises(ValueError, match="saga 'linear' has no step 'nope'"):
            await S.linear.run({}, sk.WorkflowContext("bad-local-1"), backend=backend)
        backend = TemporalBackend(client, task_queue="sagakit-tests", local_activities=lambda member: "yes")  # type: ignore[arg-type,return-value]
        with pytest.raises(TypeError, match="returned str for step 'a'"):
            await S.linear.run({}, sk.WorkflowContext("bad-local-2"), backend=backend)
        assert len(S.linear.history) == runs
        assert "bad-local-1" not in S.CALLS and "bad-local-2" not in S.CALLS
