"""Failure injection (DESIGN.md §5): modes, delay, seeded probability, plans."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import sagakit as sk


def build(log: list[str]) -> sk.Saga:
    def make(name: str) -> Any:
        async def action(data: Any, context: sk.WorkflowContext) -> Any:
            log.append(name)
            return {**data, name: True}

        async def undo(data: Any, context: sk.WorkflowContext) -> None:
            log.append("undo_" + name)

        action.__name__ = name
        return sk.step(action, undo)

    return sk.Saga("f", [make("a"), make("b"), make("c")])


class TestModes:
    async def test_fail_raises_before_the_action(self) -> None:
        """`fail` stops the step before it acts; earlier steps are compensated."""
        log: list[str] = []
        run = await build(log).run({}, faults={"b": "fail"})
        assert log == ["a", "undo_a"]
        assert isinstance(run.error, sk.InjectedFault) and run.error.mode == "fail"
        assert run.injected

    async def test_fail_after_lets_the_action_act(self) -> None:
        """`fail_after` runs the action, then reports failure: its effect is not undone."""
        log: list[str] = []
        run = await build(log).run({}, faults={"b": "fail_after"})
        assert log == ["a", "b", "undo_a"]
        assert run.failed_step == "b"

    async def test_fail_compensation_makes_the_compensation_raise(self) -> None:
        """`fail_compensation` replaces the compensation with an InjectedFault."""
        log: list[str] = []
        saga = build(log)
        run = await saga.run({}, faults={"a": "fail_compensation", "c": "fail"})
        assert log == ["a", "b", "undo_b"]
        assert run.status == "compensation_failed"
        assert isinstance(run.error, sk.CompensationError)
        assert run.error.step == "a" and isinstance(run.error.failures[0].error, sk.InjectedFault)

    async def test_injected_events_are_marked(self) -> None:
        """Every event an injected fault causes is marked injected, and only those."""
        log: list[str] = []
        run = await build(log).run({}, faults={"b": "fail"})
        marked = [(e.kind, e.step) for e in run.events if e.injected]
        assert marked == [(sk.EventKind.STEP_FAILED, "b"), (sk.EventKind.RUN_FINISHED, None)]
        rows = run.steps
        assert rows.injected.tolist() == [False, True, False]

    async def test_delay_adds_latency(self) -> None:
        """A fault's delay is spent before the action, and shows in the step's duration."""
        log: list[str] = []
        run = await build(log).run({}, faults={"b": sk.Fault("none", delay=0.05)})
        assert run.status == "completed"
        durations = dict(zip(run.steps.step, run.steps.duration_ms, strict=True))
        assert durations["b"] >= 45.0

    def test_delay_adds_exactly_its_latency_to_its_step_only(self) -> None:
        """On a virtual clock (real time does not count) the delay is the whole of the step's
        duration, and the other steps take none of it."""
        history = build([]).simulate(1, {}, faults={"b": sk.Fault("none", delay=0.05)})
        steps = history.steps
        durations = dict(zip(steps.step, steps.duration_ms, strict=True))
        assert durations == {"a": 0.0, "b": pytest.approx(50.0, abs=1e-3), "c": 0.0}  # float seconds since 1970
        assert history.runs["duration_ms"].tolist() == [pytest.approx(50.0, abs=1e-3)]

    async def test_fault_is_checked_per_attempt(self) -> None:
        """With retries, a flaky fault fails some attempts and the step can still succeed."""
        calls: list[int] = []

        async def pay(data: Any, context: sk.WorkflowContext) -> Any:
            calls.append(context.attempt)
            return data

        saga = sk.Saga("p", [sk.step(pay, retry=sk.RetryPolicy(max_retries=20, initial_delay=0, jitter=0))])
        run = await saga.run({}, faults={"pay": sk.Fault("fail", probability=0.5, seed=7)})
        assert run.status == "completed"
        failed = run.steps[run.steps.status == "failed"]
        assert len(failed) >= 1 and failed.injected.all()
        assert len(calls) == 1  # `fail` never reaches the action


class TestProbability:
    def test_seeded_faults_are_reproducible(self) -> None:
        """The same seed gives the same sequence of firings."""
        first = sk.Fault("fail", probability=0.3, seed=42)
        second = sk.Fault("fail", probability=0.3, seed=42)
        assert [first.fires() for _ in range(200)] == [second.fires() for _ in range(200)]

    def test_probability_is_respected(self) -> None:
        """About 30 % of draws fire at probability 0.3."""
        fault = sk.Fault("fail", probability=0.3, seed=1)
        fired = sum(fault.fires() for _ in range(5000))
        assert 1300 < fired < 1700

    def test_extremes(self) -> None:
        """Probability 0 never fires; 1 always does; mode none never does."""
        assert not any(sk.Fault("fail", probability=0.0).fires() for _ in range(100))
        assert all(sk.Fault("fail").fires() for _ in range(100))
        assert not sk.Fault("none", delay=1).fires()


class TestPlans:
    async def test_saga_faults_apply_until_removed(self) -> None:
        """saga.faults applies to every run; deleting the entry stops it."""
        log: list[str] = []
        saga = build(log)
        saga.faults["c"] = sk.Fault("fail")
        assert (await saga.run({})).status == "compensated"
        del saga.faults["c"]
        assert (await saga.run({})).status == "completed"

    async def test_per_run_faults_override_the_saga_plan(self) -> None:
        """run(faults=...) replaces saga.faults for that run only."""
        log: list[str] = []
        saga = build(log)
        saga.faults["a"] = "fail"
        assert (await saga.run({}, faults={})).status == "completed"
        assert (await saga.run({})).failed_step == "a"

    def test_watchers_hear_every_change(self) -> None:
        """A watcher (the Lab) is told about each change, and can stop listening."""
        saga = build([])
        seen: list[dict[str, sk.Fault]] = []
        stop = saga.faults.watch(lambda plan: seen.append(dict(plan)))
        saga.faults["a"] = "fail"
        saga.faults = {"b": "fail_after"}
        saga.faults.clear()
        stop()
        saga.faults["c"] = "fail"
        assert [sorted(s) for s in seen] == [["a"], ["b"], []]
        assert seen[1]["b"].mode == "fail_after"

    def test_shorthand_strings_become_faults(self) -> None:
        """A bare mode string is Fault(mode)."""
        plan = sk.FaultPlan({"a": "fail_after"})
        assert plan["a"] == sk.Fault("fail_after")
        assert "fail_after" in repr(plan)

    @pytest.mark.parametrize("mode", ["fail_compensation", "cancel_compensation"])
    async def test_compensation_fault_on_a_step_without_compensation_is_refused(self, mode: str) -> None:
        """A compensation fault on a step with nothing to undo could never fire: every way of
        planning it (the saga's plan, one run's plan, the constructor) refuses it, naming the
        step and the steps that could take it, and the plan in force is left as it was."""
        log: list[str] = []

        async def ship(data: Any, context: sk.WorkflowContext) -> Any:
            log.append("ship")
            return data

        saga = sk.Saga("f", [*build(log).stages, sk.step(ship)])
        saga.faults["a"] = "fail"
        with pytest.raises(sk.FaultError, match=rf"step 'ship' of saga 'f' has no compensation, so a '{mode}'") as caught:
            saga.faults["ship"] = mode
        assert "'a', 'b', 'c'" in str(caught.value) and isinstance(caught.value, ValueError)
        with pytest.raises(sk.FaultError, match=r"'ship'.*no compensation"):
            saga.faults = {"ship": mode}
        assert dict(saga.faults) == {"a": sk.Fault("fail")}
        with pytest.raises(sk.FaultError, match=r"'ship'.*no compensation"):
            await saga.run({}, faults={"ship": sk.Fault(mode)})  # type: ignore[arg-type]
        with pytest.raises(sk.FaultError, match=r"'ship'.*no compensation"):
            saga.replace(faults={"ship": mode})
        assert log == []  # nothing ran
        with pytest.raises(sk.FaultError, match=r"'ship'.*no compensation.*\(this saga has none\)"):
            sk.Saga("g", [ship], faults={"ship": mode})

    async def test_forward_faults_on_a_step_without_compensation_are_accepted(self) -> None:
        """Only the compensation modes are refused there: ``fail`` still fails the step."""
        async def ship(data: Any, context: sk.WorkflowContext) -> Any:
            return data

        saga = sk.Saga("g", [ship])
        run = await saga.run({}, faults={"ship": "fail_after"})
        assert run.status == "compensated" and run.failed_step == "ship"

    async def test_fault_delay_is_cancellable(self) -> None:
        """A run waiting in an injected delay can be cancelled and still rolls back."""
        log: list[str] = []
        saga = build(log)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await saga.execute({}, faults={"b": sk.Fault("none", delay=30)})
        assert log == ["a", "undo_a"]


class TestCancelModes:
    """``cancel`` and ``cancel_compensation``: the run is cancelled while a step or a
    compensation is in flight, as a caller's timeout would cancel it."""

    @staticmethod
    def build(log: list[str], *, sync_b: bool = False) -> sk.Saga:
        async def a(data: Any, context: sk.WorkflowContext) -> Any:
            log.append("a")
            return data

        async def undo_a(data: Any, context: sk.WorkflowContext) -> None:
            log.append("undo_a started")
            await asyncio.sleep(0.01)
            log.append("undo_a done")

        async def b(data: Any, context: sk.WorkflowContext) -> Any:
            log.append("b started")
            await asyncio.sleep(0.01)
            log.append("b done")
            return data

        def b_sync(data: Any, context: sk.WorkflowContext) -> Any:
            log.append("b started")
            return data

        def undo_b(data: Any, context: sk.WorkflowContext) -> None:
            log.append("undo_b")

        def c(data: Any, context: sk.WorkflowContext) -> Any:
            log.append("c")
            return data

        return sk.Saga(
            "cancels",
            [sk.step(a, compensate=undo_a), sk.step(b_sync if sync_b else b, compensate=undo_b, name="b"), sk.step(c)],
        )

    async def test_cancel_reaches_the_action_in_flight_and_rolls_back(self) -> None:
        """The action starts, is cancelled at its first wait, the completed steps are undone,
        and ``run()`` raises the cancellation with the run kept in the history."""
        log: list[str] = []
        saga = self.build(log)
        with pytest.raises(asyncio.CancelledError):
            await saga.run({}, faults={"b": "cancel"})
        task = asyncio.current_task()
        assert task is not None and task.uncancel() == 0
        assert log == ["a", "b started", "undo_a started", "undo_a done"]
        run = saga.history[-1]
        assert run.status == "cancelled" and run.injected
        cancelled = [e for e in run.events if e.kind is sk.EventKind.STEP_CANCELLED]
        assert [(e.step, e.injected) for e in cancelled] == [("b", True)]

    async def test_cancel_of_an_action_that_never_waits_lands_as_it_returns(self) -> None:
        """A synchronous action runs to its end; the cancellation arrives right after, before
        the next step, so the outcome does not depend on what the action awaits."""
        log: list[str] = []
        saga = self.build(log, sync_b=True)
        with pytest.raises(asyncio.CancelledError):
            await saga.run({}, faults={"b": "cancel"})
        asyncio.current_task().uncancel()  # type: ignore[union-attr]
        assert log == ["a", "b started", "undo_a started", "undo_a done"]
        assert saga.history[-1].status == "cancelled"

    async def test_cancel_compensation_lets_the_shielded_rollback_finish(self) -> None:
        """Cancelled while a compensation runs, the rollback still completes every
        compensation, then the cancellation propagates; the run is ``compensated``."""
        log: list[str] = []
        saga = self.build(log)
        with pytest.raises(asyncio.CancelledError):
            await saga.run({}, faults={"a": "cancel_compensation", "c": "fail"})
        asyncio.current_task().uncancel()  # type: ignore[union-attr]
        assert log == ["a", "b started", "b done", "undo_b", "undo_a started", "undo_a done"]
        run = saga.history[-1]
        assert run.status == "compensated"
        undone = [(e.step, e.injected) for e in run.events if e.kind is sk.EventKind.COMPENSATION_SUCCEEDED]
        assert undone == [("b", False), ("a", True)]

    async def test_cancel_of_an_action_that_fails_without_waiting_propagates_from_the_run(self) -> None:
        """The action raises before its cancellation could land: the run rolls back for its error,
        then ``run()`` raises the cancellation, which is not left pending for the caller's next
        await."""
        log: list[str] = []

        def refuses(data: Any, context: sk.WorkflowContext) -> Any:
            log.append("refuses")
            raise ValueError("refused")

        saga = self.build(log).replace(stages=[self.build(log).stages[0], sk.step(refuses)])
        with pytest.raises(asyncio.CancelledError):
            await saga.run({}, faults={"refuses": "cancel"})
        task = asyncio.current_task()
        assert task is not None and task.uncancel() == 0
        await asyncio.sleep(0)  # no cancellation left pending on the caller
        run = saga.history[-1]
        assert run.status == "compensated" and isinstance(run.error, ValueError)
        assert log == ["a", "refuses", "undo_a started", "undo_a done"]

    def test_cancel_modes_act_on_their_phase(self) -> None:
        """``cancel_compensation`` is a compensation fault; ``cancel`` a forward one."""
        assert sk.Fault("cancel").phase == "forward"
        assert sk.Fault("cancel_compensation").phase == "compensate"
