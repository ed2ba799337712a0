"""The same sagas on the local engine and on Temporal: identical outcomes, case by case.

Each case runs once locally and once through the Temporal backend (a real dev server and a
worker in this process) and compares what a user can observe: the status, failed step and
error (type and message), the result, every step attempt and compensation with its status
and error, what each step and compensation received (data and ``context.metadata``), the
metadata the caller's context holds afterwards, what a cancelled step saw, and the frames'
columns. Every case runs with the steps as regular activities and again as local activities.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from typing import Any

import pytest

import sagakit as sk
from sagakit.steps import Parallel

from . import sagas_under_test as S

pytestmark = [pytest.mark.temporal, pytest.mark.asyncio(loop_scope="session")]

@pytest.fixture(params=["activities", "local_activities"])
def backend(request: pytest.FixtureRequest, client: Any, worker: Any) -> Any:
    """The Temporal backend of the session's worker, with each kind of activity in turn."""
    from sagakit.temporal import TemporalBackend

    from .conftest import TASK_QUEUE

    # A short heartbeat timeout: a cancellation reaches a running (regular) step within about a second.
    return TemporalBackend(client, task_queue=TASK_QUEUE, poll_interval=0.05, heartbeat_timeout=1.0,
                           local_activities=request.param == "local_activities")


STEP_FIELDS = ["step", "index", "phase", "attempt", "status", "error_type", "error_message", "injected"]


def _observed(run: sk.Run, correlation_id: str, context: sk.WorkflowContext | None = None) -> dict[str, Any]:
    steps = run.steps
    return {
        "metadata": context.metadata if context is not None else None,
        "status": run.status,
        "failed_step": run.failed_step,
        "error_type": type(run.error).__name__ if run.error is not None else None,
        "error_message": str(run.error) if run.error is not None else None,
        "original_error": repr(run.original_error) if run.original_error is not None else None,
        "result": run.result,
        "steps": [tuple(row) for row in steps[STEP_FIELDS].astype(object).itertuples(index=False)],
        "completed": run.completed_steps,
        "compensated": run.compensated_steps,
        "calls": [(step, phase, attempt, data) for step, phase, attempt, data in S.CALLS.pop(correlation_id, [])],
        "steps_completed": run.steps_completed,
        "compensations_run": run.compensations_run,
        "injected": run.injected,
    }


def _canonical(row: Any) -> str:
    """A sort key equal for equal rows, whatever order their dicts' keys come in."""
    return json.dumps(row, sort_keys=True, default=repr)


async def _both(saga: sk.Saga, data: Any, backend: Any, faults: Any = None, make_faults: Any = None,
                metadata: dict[str, Any] | None = None) -> Any:
    results = []
    for which in (None, backend):
        correlation_id = f"case-{uuid.uuid4().hex[:12]}"
        plan = make_faults() if make_faults is not None else faults
        context = sk.WorkflowContext(correlation_id, copy.deepcopy(metadata))
        run = await saga.run(data, context, faults=plan, backend=which)
        results.append((run, _observed(run, correlation_id, context)))
    (local_run, local), (remote_run, remote) = results
    assert local_run.backend == "local"
    assert remote_run.backend == "temporal"
    if any(isinstance(stage, Parallel) for stage in saga.stages):
        # Parallel branches run at once: which branch's row or call comes first is up to the
        # scheduler on either backend; what happened to each must still be the same.
        assert sorted(remote["steps"], key=_canonical) == sorted(local["steps"], key=_canonical)
        assert sorted(remote["calls"], key=_canonical) == sorted(local["calls"], key=_canonical)
        remote = {**remote, "steps": local["steps"], "calls": local["calls"]}
    assert remote == local
    assert list(saga.history.runs.columns) == list(sk.RUN_COLUMNS)
    assert list(remote_run.steps.columns) == list(local_run.steps.columns) == list(sk.STEP_COLUMNS)
    assert dict(remote_run.steps.dtypes) == dict(local_run.steps.dtypes)
    rows = saga.history.runs.tail(2)
    assert list(rows["backend"]) == ["local", "temporal"]
    return local, remote_run


class TestSuccess:
    async def test_a_saga_that_completes_returns_the_same_result(self, backend: Any) -> None:
        """Every step runs once, nothing is compensated, the results are equal."""
        local, run = await _both(S.linear, {"order": 7}, backend)
        assert local["status"] == "completed"
        assert local["result"] == {"order": 7, "a": "a-done", "b": "b-done", "sync_step": "sync-done",
                                   "c": "c-done", "d": "d-done"}
        assert run.info["workflow_id"].startswith("linear/case-")

    async def test_a_parallel_stage_merges_its_branches(self, backend: Any) -> None:
        """Branch outputs are merged in branch order on both backends."""
        local, _ = await _both(S.fanout, {"plan": {"p2": "sleep:0.05", "p3": "sleep:0.1"}}, backend)
        assert local["status"] == "completed"
        assert set(local["result"]) >= {"a", "p1", "p2", "p3", "c"}


class TestFailure:
    @pytest.mark.parametrize("position", ["a", "b", "c", "d"])
    async def test_a_failure_at_each_position_compensates_the_completed_steps(self, backend: Any, position: str) -> None:
        """The failed step's error is the run's error; earlier steps are undone in reverse."""
        local, _ = await _both(S.linear, {"plan": {position: "raise"}}, backend)
        assert local["status"] == "compensated"
        assert local["error_type"] == "ValueError" and local["failed_step"] == position

    async def test_user_exception_types_and_builtin_arguments_survive(self, backend: Any) -> None:
        """A user's exception class and a KeyError's repr come back as they were raised."""
        _local, run = await _both(S.linear, {"plan": {"b": "declined"}}, backend)
        assert isinstance(run.error, S.PaymentDeclined)
        _local, run = await _both(S.linear, {"plan": {"c": "keyerror"}}, backend)
        assert isinstance(run.error, KeyError) and str(run.error) == "'c'"

    async def test_a_failed_parallel_branch_compensates_its_completed_siblings(self, backend: Any) -> None:
        """p2 fails after p1 succeeded: p1 and the earlier step are compensated, p3 is cancelled mid-step."""
        local, _ = await _both(S.fanout, {"plan": {"p2": "after:p1", "p3": "sleep:30"}}, backend)
        assert local["failed_step"] == "p2"
        assert local["compensated"] == ["p1", "a"]
        assert ("p3", "cancelled") in [(c[0], c[1]) for c in local["calls"]]

    async def test_a_failure_after_a_parallel_stage_undoes_its_branches(self, backend: Any) -> None:
        """c fails: the branches (without p3, which has no compensation) and a are undone."""
        local, _ = await _both(S.fanout, {"plan": {"p2": "sleep:0.05", "p3": "sleep:0.1", "c": "raise"}}, backend)
        assert local["compensated"] == ["p2", "p1", "a"]

    async def test_a_parallel_branch_returning_a_list_fails_the_merge(self, backend: Any) -> None:
        """The merge error is the same TypeError, naming the branch."""
        local, _ = await _both(S.fanout, {"plan": {"p1": "list", "p2": "sleep:0.05", "p3": "sleep:0.1"}}, backend)
        assert local["error_type"] == "TypeError" and "p1" in local["error_message"]

    async def test_compensate_on_failure_undoes_the_timed_out_step_first(self, backend: Any) -> None:
        """A timed-out step marked compensate_on_failure is compensated first, with its input."""
        local, run = await _both(S.ambiguous, {"plan": {"b": "sleep:5"}}, backend)
        assert local["error_type"] == "StepTimeout"
        assert local["compensated"] == ["b", "a"]
        assert isinstance(run.error, TimeoutError)


class TestCompensationFailure:
    async def test_stop_policy_lists_the_pending_compensations(self, backend: Any) -> None:
        """Rollback stops at the failing compensation; CompensationError lists what is left."""
        local, run = await _both(S.linear, {"plan": {"d": "raise", "b:compensate": "raise"}}, backend)
        assert local["status"] == "compensation_failed"
        assert isinstance(run.error, sk.CompensationError)
        assert run.error.pending == ("a",)
        assert isinstance(run.error.original, ValueError)
        assert [f.step for f in run.error.failures] == ["b"]

    async def test_continue_policy_runs_every_compensation(self, backend: Any) -> None:
        """With continue_on_compensation_failure every compensation runs and each failure is listed."""
        plan = {"d": "raise", "b:compensate": "raise", "c:compensate": "keyerror"}
        local, run = await _both(S.linear_continue, {"plan": plan}, backend)
        assert local["compensated"] == ["a"]
        assert [f.step for f in run.error.failures] == ["c", "b"]  # type: ignore[union-attr]
        assert run.error.pending == ()  # type: ignore[union-attr]


class TestPolicies:
    async def test_retry_then_success_records_every_attempt(self, backend: Any) -> None:
        """Two failed attempts and a third that succeeds, each an attempt row."""
        local, _run = await _both(S.retrying, {"plan": {"b": "flaky:2"}}, backend)
        assert local["status"] == "completed"
        b_rows = [row for row in local["steps"] if row[0] == "b"]
        assert [(row[3], row[4]) for row in b_rows] == [(1, "failed"), (2, "failed"), (3, "succeeded")]

    async def test_retries_spent_start_the_rollback(self, backend: Any) -> None:
        """Three failed attempts: the step fails with its last error."""
        local, _ = await _both(S.retrying, {"plan": {"b": "flaky:5"}}, backend)
        assert local["status"] == "compensated" and local["error_type"] == "ConnectionError"

    async def test_seed_form_policies_behave_the_same(self, backend: Any) -> None:
        """RetryPrimitive, TimeoutPrimitive and FallbackPrimitive used as in the seed."""
        local, _ = await _both(S.seed_form, {"plan": {"a": "flaky:1", "c": "raise", "d": "raise"}}, backend)
        assert local["status"] == "compensated"
        local, _ = await _both(S.seed_form, {"plan": {"b": "sleep:5"}}, backend)
        assert local["error_type"] == "StepTimeout"


class TestInjectedFaults:
    @pytest.mark.parametrize("mode", ["fail", "fail_after"])
    async def test_forward_faults(self, backend: Any, mode: str) -> None:
        """fail raises before the action, fail_after after it; both are marked injected."""
        local, run = await _both(S.linear, {}, backend, faults={"b": mode})
        assert local["error_type"] == "InjectedFault" and local["injected"] is True
        assert ("b", "forward") in {(c[0], c[1]) for c in local["calls"]} or mode == "fail"
        assert run.error.mode == mode  # type: ignore[union-attr]

    async def test_fail_compensation(self, backend: Any) -> None:
        """The compensation of b raises an injected fault while rolling back."""
        local, _ = await _both(S.linear, {"plan": {"d": "raise"}}, backend, faults={"b": "fail_compensation"})
        assert local["status"] == "compensation_failed"

    async def test_a_delay_only_fault(self, backend: Any) -> None:
        """mode none only adds latency."""
        local, run = await _both(S.linear, {}, backend, faults={"a": sk.Fault("none", delay=0.05)})
        assert local["status"] == "completed"
        assert run.steps.loc[run.steps["step"] == "a", "duration_ms"].iloc[0] >= 50

    async def test_seeded_probability_draws_the_same_outcomes(self, backend: Any) -> None:
        """A seeded flaky fault fires on the same attempts on both backends."""
        local, _ = await _both(S.retrying, {}, backend,
                               make_faults=lambda: {"b": sk.Fault("fail", probability=0.5, seed=4)})
        assert any(row[0] == "b" and row[7] for row in local["steps"])


START = {"initial": "from the caller", "drop_me": 1}


class TestMetadata:
    """``context.metadata`` is one dict for the whole run: notes reach later steps and compensations."""

    async def test_notes_reach_later_steps_and_the_caller(self, backend: Any) -> None:
        """a's note reaches the branches; both branches' notes reach b; b's deletion sticks; the caller sees all."""
        plan = {"p1": "sleep:0.05", "p2": "sleep:0.3"}
        local, _ = await _both(S.notes, {"plan": plan}, backend, metadata=START)
        assert local["status"] == "completed"
        seen = {(c[0], c[1]): c[3] for c in local["calls"]}
        assert "note_a" in seen[("p1", "forward")] and "note_a" in seen[("p2", "forward")]
        assert "note_p1" in seen[("b", "forward")] and "note_p2" in seen[("b", "forward")]
        assert "drop_me" not in seen[("c", "forward")]
        assert set(local["metadata"]) == {"initial", "note_a", "note_p1", "note_p2", "note_b", "note_c"}

    async def test_compensations_read_the_notes_of_the_steps_they_undo(self, backend: Any) -> None:
        """c leaves a note and fails: every compensation sees it, and each sees the earlier ones' notes."""
        plan = {"p1": "sleep:0.05", "p2": "sleep:0.3", "c": "raise"}
        local, _ = await _both(S.notes, {"plan": plan}, backend, metadata=START)
        assert local["status"] == "compensated"
        assert local["compensated"] == ["c", "b", "p2", "p1", "a"]
        compensations = [(c[0], c[3]) for c in local["calls"] if c[1] == "compensate"]
        assert all("note_c" in seen for _, seen in compensations)
        assert '"undone": ["c", "b", "p2", "p1"]' in compensations[-1][1]
        assert local["metadata"]["undone"] == ["c", "b", "p2", "p1", "a"]


class TestCancellation:
    async def test_cancelling_mid_step_cancels_the_step_and_compensates(self, backend: Any) -> None:
        """Cancel while c sleeps: c's body gets CancelledError, b and a are compensated, on both backends.

        With local activities, c (a step long enough to be cancelled) runs as a regular activity
        and the others as local ones: a cancellation waits for the local steps running back to back.
        """
        if backend.local_activities is True:
            from sagakit.temporal import TemporalBackend

            backend = TemporalBackend(backend.client, task_queue=backend.task_queue, poll_interval=0.05,
                                      heartbeat_timeout=1.0, local_activities=lambda member: member.name != "c")
        observed = []
        for which in (None, backend):
            cid = f"cancel-{uuid.uuid4().hex[:12]}"
            c_started = asyncio.Event()

            def observer(event: sk.Event, c_started: asyncio.Event = c_started) -> None:
                if event.kind is sk.EventKind.STEP_STARTED and event.step == "c":
                    c_started.set()

            task = asyncio.ensure_future(S.linear.run({"plan": {"c": "sleep:30"}}, sk.WorkflowContext(cid),
                                                      backend=which, observers=[observer]))
            await asyncio.wait_for(c_started.wait(), timeout=30)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            run = S.linear.history.last
            assert run is not None and run.backend == ("local" if which is None else "temporal")
            observed.append(_observed(run, cid))
        local, remote = observed
        assert remote == local
        assert local["status"] == "cancelled"
        assert [(c[0], c[1]) for c in local["calls"]][-4:] == [
            ("c", "forward"), ("c", "cancelled"), ("b", "compensate"), ("a", "compensate")]
        assert local["compensated"] == ["b", "a"]
        run = S.linear.history.last
        assert run is not None
        assert run.info["local_activities"] == ([] if backend.local_activities is False else ["a", "b", "sync_step", "d"])
