"""Local engine and Temporal, side by side: what the conformance table does not observe.

The scenarios every backend must run alike (failures at each position, parallel stages,
policies, injected faults, cancellation, compensation failures...) are rows of the
conformance table in ``tests/conformance``, which runs each of them on the local engine, after
a crash through ``recover()`` and on Temporal with regular and with local activities. What
stays here is what the table does not observe: ``context.metadata`` flowing between steps,
compensations and the caller (each call's view of it, with parallel branches), and the
latency a delay-only fault adds. Each case runs once locally and once through the Temporal
backend (a real dev server and a worker in this process), with the steps as regular activities
and again as local activities, and the observations must be equal.
"""

from __future__ import annotations

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


class TestInjectedFaults:
    async def test_a_delay_only_fault_adds_its_latency(self, backend: Any) -> None:
        """mode none only adds latency: the step takes at least the delay, and nothing fails."""
        local, run = await _both(S.linear, {}, backend, faults={"a": sk.Fault("none", delay=0.05)})
        assert local["status"] == "completed"
        assert run.steps.loc[run.steps["step"] == "a", "duration_ms"].iloc[0] >= 50


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
