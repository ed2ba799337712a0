"""The one driver of a run after a failure: the pure rules, and the engine held to them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sagakit as sk
from sagakit import _driver as driver
from sagakit.errors import compensation_message, error_text, unmergeable_branch_message


class _Unprintable(Exception):
    """An exception whose ``__str__`` raises."""

    def __str__(self) -> str:
        raise RuntimeError("no text")


class TestUndoOrder:
    """What a rollback undoes, in order."""

    def test_failed_steps_first_then_completed_newest_first(self) -> None:
        """compensate_on_failure entries lead; completed steps follow in reverse order of completion."""
        assert driver.undo_order(["failed"], ["a", "b", "c"]) == ["failed", "c", "b", "a"]
        assert driver.undo_order((), []) == []


class TestRollback:
    """Skip or compensate, stop or go on, and what is left pending."""

    @staticmethod
    def _walk(undo: list[tuple[str, bool]], outcomes: dict[str, str], *, stop: bool,
              ) -> tuple[list[tuple[str, str]], driver.Rollback[tuple[str, bool], str]]:
        rollback: driver.Rollback[tuple[str, bool], str] = driver.Rollback(undo, lambda e: e[1], stop=stop)
        seen = []
        for action, (name, _) in rollback:
            seen.append((action, name))
            outcome = outcomes.get(name, "ok")
            if outcome == "fail":
                rollback.failed(name)
            elif outcome == "interrupt":
                rollback.interrupted(name, KeyboardInterrupt(name))
        return seen, rollback

    def test_entries_without_compensation_are_skipped_in_order(self) -> None:
        """Each entry comes once, in undo order; those without a compensation as SKIP."""
        seen, rollback = self._walk([("c", True), ("b", False), ("a", True)], {}, stop=True)
        assert seen == [("compensate", "c"), ("skip", "b"), ("compensate", "a")]
        assert rollback.failures == [] and rollback.pending == [] and not rollback.stopped

    def test_a_failure_stops_the_rollback_and_lists_the_compensated_entries_left(self) -> None:
        """Stopping at 'c' leaves 'a' pending; 'b' (no compensation) is not pending."""
        seen, rollback = self._walk([("c", True), ("b", False), ("a", True)], {"c": "fail"}, stop=True)
        assert seen == [("compensate", "c")]
        assert rollback.stopped and rollback.failures == ["c"] and rollback.pending == [("a", True)]

    def test_continuing_after_failures_runs_everything_and_keeps_every_failure(self) -> None:
        """continue_on_compensation_failure: nothing is pending, each failure is kept in order."""
        seen, rollback = self._walk([("c", True), ("b", True), ("a", True)], {"c": "fail", "a": "fail"}, stop=False)
        assert [name for _, name in seen] == ["c", "b", "a"]
        assert rollback.failures == ["c", "a"] and rollback.pending == [] and not rollback.stopped

    def test_an_interrupted_compensation_counts_as_failed_but_never_stops_the_rollback(self) -> None:
        """KeyboardInterrupt/SystemExit/cancellation: the rest still runs; the first interruption is kept."""
        seen, rollback = self._walk([("c", True), ("b", True), ("a", True)],
                                    {"c": "interrupt", "b": "interrupt"}, stop=True)
        assert [name for _, name in seen] == ["c", "b", "a"]
        assert rollback.failures == ["c", "b"] and not rollback.stopped
        assert isinstance(rollback.interrupt, KeyboardInterrupt) and rollback.interrupt.args == ("c",)

    def test_a_resumed_rollback_keeps_its_earlier_failures(self) -> None:
        """A rollback carried on after a crash starts from the failures already recorded."""
        rollback: driver.Rollback[str, str] = driver.Rollback(["b", "a"], bool, stop=False, failures=["c"])
        assert [entry for _, entry in rollback] == ["b", "a"] and rollback.failures == ["c"]

    def test_a_rollback_that_had_stopped_runs_nothing_and_leaves_everything_pending(self) -> None:
        """stopped=True (a recorded rollback that stopped before a crash): the rest is pending."""
        rollback: driver.Rollback[tuple[str, bool], str] = driver.Rollback(
            [("b", True), ("x", False), ("a", True)], lambda e: e[1], stop=True, failures=["c"], stopped=True)
        assert list(rollback) == []
        assert rollback.pending == [("b", True), ("a", True)] and rollback.failures == ["c"]


class TestOutcome:
    """How a rolled-back run ends, and which step it blames."""

    def test_a_compensation_failure_wins_then_the_original_error_then_the_interruption(self) -> None:
        """compensation_failed beats compensated, which beats cancelled (with the interruption as error)."""
        failure, original, interrupt = object(), object(), object()
        assert driver.rollback_outcome(failure, original, interrupt) == ("compensation_failed", failure)
        assert driver.rollback_outcome(None, original, interrupt) == ("compensated", original)
        assert driver.rollback_outcome(None, None, interrupt) == ("cancelled", interrupt)
        assert driver.rollback_outcome(None, None, None) == ("cancelled", None)

    def test_the_step_in_flight_is_blamed_else_the_next_one(self) -> None:
        """A run stopped between stages blames the step it was about to start."""
        assert driver.blamed_step("charge", "ship") == "charge"
        assert driver.blamed_step(None, "ship") == "ship"
        assert driver.blamed_step(None, None) is None


class TestParallelStage:
    """The wind-down of a parallel stage, written once."""

    async def test_outputs_come_back_in_branch_order(self) -> None:
        """Whatever order the branches finish in, their outputs keep the stage's order."""
        async def after(delay: float, value: int) -> int:
            await asyncio.sleep(delay)
            return value

        assert await driver.parallel_stage([after(0.02, 1), after(0.0, 2)], asyncio.wait) == [1, 2]

    async def test_a_failure_cancels_the_siblings_and_waits_until_they_stopped(self) -> None:
        """The sibling sees its cancellation and finishes its cleanup before the stage reports."""
        stopped: list[str] = []

        async def slow() -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                await asyncio.sleep(0.01)  # cleanup that itself waits
                stopped.append("slow")
                raise

        async def failing() -> None:
            await asyncio.sleep(0)
            raise ValueError("branch")

        with pytest.raises(driver.StageFailed) as caught:
            await driver.parallel_stage([slow(), failing()], asyncio.wait)
        assert stopped == ["slow"]
        assert caught.value.position == 1 and isinstance(caught.value.error, ValueError)
        assert not caught.value.cancelled

    async def test_a_cancellation_during_the_wind_down_is_reported_not_lost(self) -> None:
        """The stage waits through its own cancellation and says it came (it propagates after rollback)."""
        gate = asyncio.Event()

        async def stubborn() -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                await gate.wait()
                raise

        async def failing() -> None:
            await asyncio.sleep(0)
            raise ValueError("branch")

        stage = asyncio.ensure_future(driver.parallel_stage([stubborn(), failing()], asyncio.wait))
        for _ in range(5):
            await asyncio.sleep(0)
        stage.cancel()
        for _ in range(5):
            await asyncio.sleep(0)
        assert not stage.done()  # still waiting for the stubborn branch
        gate.set()
        with pytest.raises(driver.StageFailed) as caught:
            await stage
        assert caught.value.cancelled

    def test_outputs_merge_in_branch_order_and_a_non_mapping_is_named(self) -> None:
        """Later branches win on shared keys; the first non-mapping output stops the merge."""
        assert driver.merge_outputs([{"a": 1, "k": 1}, {"b": 2, "k": 2}]) == ({"a": 1, "b": 2, "k": 2}, None)
        assert driver.merge_outputs([{"a": 1}, [1, 2], "x"]) == ({"a": 1}, 1)


class TestTexts:
    """Error texts live in sagakit.errors and never raise."""

    def test_an_exception_whose_str_raises_reads_as_a_placeholder(self) -> None:
        """error_text names the type instead of failing."""
        assert error_text(ValueError("plain")) == "plain"
        assert error_text(_Unprintable()) == "<_Unprintable: message unavailable>"

    def test_compensation_error_message_names_failures_original_and_pending(self) -> None:
        """The one message builder, used by CompensationError and by the Temporal workflow."""
        error = sk.CompensationError(saga="order", original=_Unprintable(),
                                     failures=[sk.CompensationFailure("charge", KeyError("card"))], pending=["reserve"])
        assert str(error) == compensation_message(
            "order", [("charge", "KeyError", "'card'")], ("_Unprintable", "<_Unprintable: message unavailable>"),
            ["reserve"])
        assert str(error) == (
            "saga 'order': compensation failed for 'charge' (KeyError: 'card'); rollback was started by "
            "_Unprintable: <_Unprintable: message unavailable>; left uncompensated: 'reserve'"
        )

    def test_an_unmergeable_branch_message_names_saga_branch_and_type(self) -> None:
        """The TypeError text both backends and recovery use."""
        assert unmergeable_branch_message("order", "notify", "list").startswith(
            "saga 'order': parallel branch 'notify' returned list;")


# -- the engine held to the driver ----------------------------------------------------------

_OUTCOMES = st.sampled_from(["ok", "fail", "interrupt", "none"])


def _saga(outcomes: list[str], continue_on_failure: bool, calls: list[str]) -> sk.Saga:
    steps = []
    for number, outcome in enumerate(outcomes):
        name = f"s{number}"

        def action(data: Any, context: sk.WorkflowContext) -> None:
            return None

        def compensate(data: Any, context: sk.WorkflowContext, name: str = name, outcome: str = outcome) -> None:
            calls.append(name)
            if outcome == "fail":
                raise ValueError(name)
            if outcome == "interrupt":
                raise asyncio.CancelledError()

        steps.append(sk.step(action, None if outcome == "none" else compensate, name=name))

    def last(data: Any, context: sk.WorkflowContext) -> None:
        raise RuntimeError("last step fails")

    steps.append(sk.step(last, name="last"))
    return sk.Saga("held", steps, continue_on_compensation_failure=continue_on_failure)


class TestEngineFollowsTheDriver:
    """The engine's rollback (with its inlined fast path) decides exactly as the pure driver does."""

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(outcomes=st.lists(_OUTCOMES, min_size=1, max_size=6), continue_on_failure=st.booleans())
    def test_compensations_statuses_and_pending_match_the_driver(self, outcomes: list[str],
                                                                 continue_on_failure: bool) -> None:
        """Same compensations called, same skips, same failures, pending and final status."""
        calls: list[str] = []
        saga = _saga(outcomes, continue_on_failure, calls)

        async def go() -> tuple[sk.Run | None, bool]:
            try:
                return await saga.run({}), False
            except asyncio.CancelledError:
                return saga.history[-1], True

        run, raised = asyncio.run(go())
        assert run is not None
        # The driver, told the same outcomes.
        names = [f"s{number}" for number in range(len(outcomes))]
        undo = driver.undo_order([], list(zip(names, outcomes, strict=True)))
        rollback: driver.Rollback[tuple[str, str], str] = driver.Rollback(
            undo, lambda e: e[1] != "none", stop=not continue_on_failure)
        expected_calls, expected_skips = [], []
        for action, (name, outcome) in rollback:
            if action is driver.SKIP:
                expected_skips.append(name)
                continue
            expected_calls.append(name)
            if outcome == "fail":
                rollback.failed(name)
            elif outcome == "interrupt":
                rollback.interrupted(name, asyncio.CancelledError())
        assert calls == expected_calls
        assert [e.step for e in run.events if e.kind is sk.EventKind.COMPENSATION_SKIPPED] == expected_skips
        status, _ = driver.rollback_outcome(rollback.failures or None, RuntimeError("last step fails"), None)
        assert run.status == status
        assert raised == (rollback.interrupt is not None)
        if rollback.failures:
            assert isinstance(run.error, sk.CompensationError)
            assert [f.step for f in run.error.failures] == rollback.failures
            assert list(run.error.pending) == [name for name, _ in rollback.pending]
