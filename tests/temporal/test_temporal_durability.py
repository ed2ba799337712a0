"""Temporal's durability end to end: a worker process killed mid-step, a new one finishes."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import sagakit as sk

from . import durable_saga

pytestmark = [pytest.mark.temporal, pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]


def _worker(address: str, queue: str, env: dict[str, str], log: Path, *options: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "sagakit.temporal", "worker", "--address", address, "--task-queue", queue,
             "--sticky-timeout", "1", *options, "temporal.durable_saga:durable"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )


async def _wait_for(condition: Any, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("local", [False, True], ids=["activities", "local_activities"])
async def test_a_worker_killed_mid_step_is_replaced_and_the_saga_completes(
    client: Any, temporal_address: str, subprocess_env: dict[str, str], tmp_path: Path, local: bool
) -> None:
    """SIGKILL the worker while step 2 runs; a new worker finishes the saga without a rollback.

    As a regular activity, the dead worker is noticed when its heartbeats stop (after 1 s
    here), not after the activity timeout (left at its 60 s default), and step 2 is retried
    as attempt 2. As a local activity, the workflow task times out (10 s) and the new
    worker, replaying the history, runs the local steps of that workflow task again (step 1
    too: local activities are recorded when their workflow task completes); the lost attempt
    leaves no trace, and nothing is compensated.
    """
    from sagakit.temporal import TemporalBackend

    queue = f"durable-{tmp_path.name}"
    log = tmp_path / "worker.log"
    options = ("--max-concurrent-local-activities", "2") if local else ()
    first = _worker(temporal_address, queue, subprocess_env, log, *options)
    backend = TemporalBackend(client, task_queue=queue, heartbeat_timeout=1.0, local_activities=local)
    assert backend.activity_timeout == 60.0
    saga = durable_saga.durable
    run_task = asyncio.ensure_future(saga.run({"dir": str(tmp_path)}, sk.WorkflowContext("durable-1"), backend=backend))
    second = None
    try:
        await _wait_for(lambda: (tmp_path / "slow-started").exists() or run_task.done(), 60, "step 2 to start")
        assert not run_task.done(), run_task
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        second = _worker(temporal_address, queue, subprocess_env, log, *options)
        run = await asyncio.wait_for(run_task, timeout=45)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
    assert second is not None
    assert second.wait(timeout=20) == 0, log.read_text()
    assert "sagakit worker: stopped" in log.read_text()

    assert run.status == "completed", run
    assert run.result["shipped"] is True
    calls = (tmp_path / "calls.log").read_text().splitlines()
    slow_rows = run.steps[run.steps["step"] == "slow"]
    assert list(run.steps["step"]) == (["reserve", "slow", "ship"] if local else ["reserve", "slow", "slow", "ship"])
    if local:
        # reserve's result was still in the workflow task the dead worker held: it runs again, once.
        assert calls == ["reserve 1", "slow 1", "reserve 1", "slow 1", "ship 1"]
        assert list(slow_rows["attempt"]) == [1]
        assert list(slow_rows["status"]) == ["succeeded"]
        assert run.info["local_activities"] == ["reserve", "slow", "ship"]
    else:
        assert calls == ["reserve 1", "slow 1", "slow 2", "ship 1"]
        assert list(slow_rows["attempt"]) == [1, 2]
        assert list(slow_rows["status"]) == ["failed", "succeeded"]
        assert list(slow_rows["error_type"].fillna("")) == ["StepTimeout", ""]
        assert list(slow_rows["error_message"].fillna("")) == ["step 'slow' timed out after 1s", ""]
    assert run.info["workflow_id"] == f"durable/durable-1/{run.run_id}"
