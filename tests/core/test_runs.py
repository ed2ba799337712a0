"""Runs and RunHistory: statuses, and the two DataFrames with exactly DESIGN.md's columns."""

from __future__ import annotations

import asyncio
from typing import Any

import pandas as pd

import sagakit as sk

RUN_COLUMNS = [
    "run_id", "saga", "correlation_id", "backend", "status", "failed_step", "error_type", "error_message",
    "started_at", "duration_ms", "steps_completed", "compensations_run", "injected", "resumed",
]
STEP_COLUMNS = [
    "run_id", "saga", "step", "kind", "index", "phase", "attempt", "status", "started_at", "ended_at", "duration_ms",
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


class TestTrace:
    """A finished run keeps its events as a compact trace; what it gives back is what was seen live."""

    @staticmethod
    def scenarios() -> list[tuple[sk.Saga, dict[str, Any], dict[str, Any] | None]]:
        async def flaky(data: Any, context: sk.WorkflowContext) -> Any:
            if context.attempt < 3:
                raise ConnectionError(f"attempt {context.attempt} failed")
            return {**data, "flaky": context.attempt}

        async def broken_undo(data: Any, context: sk.WorkflowContext) -> None:
            raise RuntimeError("undo broke")

        retrying = sk.Saga(
            "retrying",
            [
                sk.step(a, undo_a),
                sk.step(flaky, undo_a, retry=sk.RetryPolicy(max_retries=3, initial_delay=0)),
                sk.step(b),
            ],
        )
        skipping = sk.Saga("skipping", [sk.step(a), sk.step(a, broken_undo, name="a2"), sk.step(b)],
                           continue_on_compensation_failure=True)
        return [
            (saga(), {}, None),
            (saga(), {"fail": True}, None),
            (retrying, {}, None),
            (retrying, {"fail": True}, None),
            (skipping, {"fail": True}, None),
            (saga(), {}, {"b": "fail_after"}),
            (saga(), {"card": "4111 1111 1111 1111"}, {"a": sk.Fault("fail_compensation"), "b": "fail"}),
        ]

    async def test_events_are_those_the_observers_saw(self) -> None:
        """Every kept event comes back equal, field for field (times to the bit, the same
        error objects), to the one handed to observers while the run went on."""
        for s, data, faults in self.scenarios():
            seen: list[sk.Event] = []
            run = await s.run(data, faults=faults, observers=[seen.append])
            live = [e for e in seen if e.kind not in (sk.EventKind.STEP_STARTED, sk.EventKind.COMPENSATION_STARTED)]
            assert run.events == live, (s.name, data, faults)
            assert all(type(e.kind) is sk.EventKind for e in run.events)
            for kept, told in zip(run.events, live, strict=True):
                assert kept.error is told.error and kept.data is told.data

    async def test_steps_frame_from_the_trace_equals_the_frame_from_events(self) -> None:
        """The frames read the compact trace directly; they match those built from events."""
        history = sk.RunHistory()
        for s, data, faults in self.scenarios():
            history.append(await s.run(data, faults=faults))
        from_trace = history.steps  # before any run's events are built
        steps_from_trace = [(run.completed_steps, run.compensated_steps) for run in history]
        assert all(run._events is None for run in history)
        rebuilt = sk.RunHistory(
            [sk.Run.from_events(run.events, definition=run.definition, backend=run.backend) for run in history]
        )
        pd.testing.assert_frame_equal(from_trace, rebuilt.steps)
        assert [(run.completed_steps, run.compensated_steps) for run in rebuilt] == steps_from_trace
        assert any(completed and compensated for completed, compensated in steps_from_trace)
        assert from_trace.error_message.str.contains("4111").sum() == 0  # still redacted
        assert (from_trace.error_type == "RuntimeError").sum() == 1

    async def test_a_long_history_costs_the_collector_little(self) -> None:
        """Runs kept in a history add a handful of objects for the garbage collector to walk,
        not one per event: a 10-step run adds at most three."""
        import gc

        s = sk.Saga("ten", [sk.step(a, undo_a, name=f"s{i}") for i in range(10)])
        await s.run({"n": 0})
        gc.collect()
        before = len(gc.get_objects())
        for n in range(300):
            await s.run({"n": n})
        gc.collect()
        per_run = (len(gc.get_objects()) - before) / 300
        assert len(s.history) == 301
        assert per_run <= 3, per_run
        assert len(s.history[-1].events) == 12

    async def test_a_run_pickles_without_its_saga(self) -> None:
        """A run survives pickling (to be saved or sent to another process) with its trace or
        its events; its saga (functions, whole history) stays behind: ``definition`` is None."""
        import pickle

        for observed in (False, True):
            s = saga()
            run = await s.run({"fail": True}, observers=[lambda event: None] if observed else [])
            copy = pickle.loads(pickle.dumps(run))
            assert copy.definition is None and run.definition is s
            assert (copy.status, copy.failed_step, copy.completed_steps, copy.compensated_steps) == (
                "compensated", "b", ["a"], ["a"]
            )
            assert [(e.kind, e.step, e.at, e.duration_ms, e.data, e.info) for e in copy.events] == [
                (e.kind, e.step, e.at, e.duration_ms, e.data, e.info) for e in run.events
            ]
            assert type(copy.error) is ValueError and str(copy.error) == "b broke"
            pd.testing.assert_frame_equal(copy.steps, run.steps)


class TestRunIds:
    def test_ids_are_hex_unique_and_time_ordered(self) -> None:
        """32 hex digits; the first 12 are the start millisecond, so ids sort by start."""
        import time

        from sagakit.engine import new_run_id

        first = [new_run_id() for _ in range(5000)]
        time.sleep(0.002)
        later = new_run_id()
        assert len(set(first)) == 5000
        assert all(len(i) == 32 and int(i, 16) >= 0 for i in first)
        assert later > max(first)

    def test_user_seeding_random_never_repeats_ids(self) -> None:
        """random.seed() in user code does not touch the generator behind run ids."""
        import random

        from sagakit.engine import new_run_id

        random.seed(7)
        one = [new_run_id()[12:] for _ in range(50)]
        random.seed(7)
        two = [new_run_id()[12:] for _ in range(50)]
        assert not set(one) & set(two)

    def test_a_forked_child_draws_other_ids(self) -> None:
        """After os.fork() the child's ids differ from the parent's (the generator is reseeded)."""
        import os

        from sagakit.engine import new_run_id

        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: write 100 ids and leave at once
            try:
                os.write(write, "".join(new_run_id()[12:] for _ in range(100)).encode())
            finally:
                os._exit(0)
        os.close(write)
        parent = {new_run_id()[12:] for _ in range(100)}
        with os.fdopen(read, "rb") as pipe:
            text = pipe.read().decode()
        os.waitpid(pid, 0)
        child = {text[i : i + 20] for i in range(0, len(text), 20)}
        assert len(child) == 100
        assert not parent & child
