"""Runs and RunHistory: statuses, and the two DataFrames with exactly DESIGN.md's columns."""

from __future__ import annotations

import asyncio
from typing import Any

import pandas as pd

import sagakit as sk

RUN_COLUMNS = [
    "run_id", "saga", "correlation_id", "backend", "status", "failed_step", "error_type", "error_message",
    "started_at", "duration_ms", "steps_completed", "compensations_run", "injected",
]
STEP_COLUMNS = [
    "run_id", "saga", "step", "index", "phase", "attempt", "status", "started_at", "ended_at", "duration_ms",
    "error_type", "error_message", "injected",
]


async def a(data: Any, context: sk.WorkflowContext) -> Any:
    return {**data, "a": 1}


async def undo_a(data: Any, context: sk.WorkflowContext) -> None:
    await asyncio.sleep(0)


async def b(data: Any, context: sk.WorkflowContext) -> Any:
    if data.get("fail"):
        raise ValueError("b broke")
    return {**data, "b": 1}


def saga() -> sk.Saga:
    return sk.Saga("order", [sk.step(a, undo_a), sk.step(b)])


class TestFrames:
    async def test_runs_frame_has_exactly_the_design_columns(self) -> None:
        """RunHistory.runs: one row per run, the documented columns in order, right values."""
        s = saga()
        ok = await s.run({}, sk.WorkflowContext(correlation_id="c-1"))
        bad = await s.run({"fail": True}, sk.WorkflowContext(correlation_id="c-2"))
        frame = s.history.runs
        assert list(frame.columns) == RUN_COLUMNS == list(sk.RUN_COLUMNS)
        assert frame.run_id.tolist() == [ok.run_id, bad.run_id]
        assert frame.status.tolist() == ["completed", "compensated"]
        assert frame.correlation_id.tolist() == ["c-1", "c-2"]
        assert frame.backend.tolist() == ["local", "local"]
        assert frame.failed_step.isna().tolist() == [True, False] and frame.failed_step[1] == "b"
        assert frame.error_type[1] == "ValueError" and frame.error_message[1] == "b broke"
        assert frame.steps_completed.tolist() == [2, 1]
        assert frame.compensations_run.tolist() == [0, 1]
        assert frame.injected.tolist() == [False, False]
        assert str(frame.started_at.dtype) == "datetime64[ns, UTC]"
        assert frame.duration_ms.dtype == "float64" and (frame.duration_ms > 0).all()

    async def test_steps_frame_has_exactly_the_design_columns(self) -> None:
        """RunHistory.steps: one row per attempt and phase, in event order."""
        s = saga()
        run = await s.run({"fail": True})
        frame = s.history.steps
        assert list(frame.columns) == STEP_COLUMNS == list(sk.STEP_COLUMNS)
        assert frame[["step", "index", "phase", "attempt", "status"]].values.tolist() == [
            ["a", 0, "forward", 1, "succeeded"],
            ["b", 1, "forward", 1, "failed"],
            ["a", 0, "compensate", 1, "succeeded"],
        ]
        assert set(frame.run_id) == {run.run_id}
        assert (frame.ended_at >= frame.started_at).all()
        expected = (frame.ended_at - frame.started_at).dt.total_seconds() * 1000
        assert ((frame.duration_ms - expected).abs() < 0.01).all()
        assert frame.started_at.dt.tz is not None
        assert frame.error_type.tolist()[1] == "ValueError"

    async def test_empty_history_frames_have_the_columns(self) -> None:
        """An empty history still has typed, empty frames."""
        history = sk.RunHistory()
        assert list(history.runs.columns) == RUN_COLUMNS and len(history.runs) == 0
        assert list(history.steps.columns) == STEP_COLUMNS and len(history.steps) == 0

    async def test_frames_are_cached_until_a_run_arrives(self) -> None:
        """Reading a frame twice gives the same object; a new run rebuilds it."""
        s = saga()
        await s.run({})
        first = s.history.steps
        assert s.history.steps is first
        await s.run({})
        assert s.history.steps is not first and len(s.history.steps) == 4

    async def test_frames_concatenate_across_sagas(self) -> None:
        """Histories of different sagas concatenate into one analysis."""
        one, two = saga(), sk.Saga("other", [a])
        await one.run({})
        await two.run({})
        both = pd.concat([one.history.runs, two.history.runs], ignore_index=True)
        assert both.saga.tolist() == ["order", "other"]


class TestRuns:
    async def test_run_reports_completed_and_failed(self) -> None:
        """A Run tells status, result, error and which steps completed or were compensated."""
        s = saga()
        ok = await s.run({})
        assert ok.ok and ok.result == {"a": 1, "b": 1} and ok.error is None
        bad = await s.run({"fail": True})
        assert not bad.ok and bad.result is None
        assert bad.completed_steps == ["a"] and bad.compensated_steps == ["a"]
        assert "compensated" in repr(bad) and "'b'" in repr(bad)

    async def test_from_events_rebuilds_the_same_run(self) -> None:
        """A backend that replays events gets the same Run facts."""
        s = saga()
        run = await s.run({"fail": True})
        copy = sk.Run.from_events(run.events, definition=s, backend="replayed")
        for field in ("run_id", "status", "failed_step", "steps_completed", "compensations_run", "injected"):
            assert getattr(copy, field) == getattr(run, field), field
        assert copy.error is run.error and copy.backend == "replayed"
        assert copy.steps.drop(columns=[]).equals(run.steps)

    async def test_history_maxlen_keeps_the_newest(self) -> None:
        """A bounded history forgets the oldest runs."""
        history = sk.RunHistory(maxlen=2)
        s = saga()
        runs = [await s.run({}) for _ in range(3)]
        history.extend(runs)
        assert [r.run_id for r in history] == [r.run_id for r in runs[1:]]

    async def test_history_watchers(self) -> None:
        """watch() is told about each new run."""
        s = saga()
        seen: list[str] = []
        stop = s.history.watch(lambda run: seen.append(run.status))
        await s.run({})
        await s.run({"fail": True})
        stop()
        await s.run({})
        assert seen == ["completed", "compensated"]
        assert "3 runs" in repr(s.history)


class TestRunTiming:
    async def test_run_times_span_its_steps(self) -> None:
        """A run's start is its run_started event, and its duration covers every step."""

        async def slow(data: Any, context: sk.WorkflowContext) -> Any:
            await asyncio.sleep(0.02)

        s = sk.Saga("t", [sk.step(slow, name="one"), sk.step(slow, name="two")])
        run = await s.run({})
        first, last = run.events[0], run.events[-1]
        assert run.started_at == first.at == last.started_at
        assert run.duration_ms == last.duration_ms
        assert run.duration_ms >= run.steps.duration_ms.sum() >= 40.0
        assert s.history.runs.duration_ms[0] == run.duration_ms
