"""Exploration on the virtual clock: exact in any process, interruptible, with sync twins and no secrets."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from explore_shop import ORDER, Shop, Trail, no_money_without_an_order, order_saga, trail_saga

import sagakit as sk
from sagakit.explore import MAX_BUDGET, Counterexample, ScenarioResult, explore, explore_sync, replay

FAN_OUT = textwrap.dedent(
    """
    import asyncio, json, sys
    import sagakit as sk
    from sagakit.explore import explore


    def branch(name, wait):
        async def action(data, context):
            await asyncio.sleep(wait)
            context.world.append(name)
            return {name: True}

        async def undo(data, context):
            context.world.append("undo_" + name)

        action.__name__ = name
        return sk.step(action, compensate=undo)


    saga = sk.Saga("fan", [branch("a", 0.001), sk.parallel(branch("b", 0.002), branch("c", 0.002),
                                                            branch("d", 0.003)), branch("e", 0.001)])


    async def main():
        exploration = await explore(saga, {}, world=list, search="random", budget=150, seed=7, max_delay=0.004,
                                    progress=False)
        print(json.dumps([[result.scenario.label, [[e.kind.value, e.step, e.status] for e in result.run.events]]
                          for result in exploration.results]))

    asyncio.run(main())
    """
)


class TestExactInAnyProcess:
    def test_the_same_seed_gives_the_same_events_in_two_processes(self, tmp_path: Path) -> None:
        """Random search with delays in a parallel stage (which sibling is cancelled, which compensated
        depends on them) gives the same scenarios and the same events in the same order in two processes
        with different hash seeds: the delays are on the virtual clock."""
        script = tmp_path / "fan_out.py"
        script.write_text(FAN_OUT)
        outputs = []
        for hash_seed in ("1", "2"):
            env = {**os.environ, "PYTHONHASHSEED": hash_seed}
            done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300,
                                  check=True)
            outputs.append(done.stdout)
        first, second = outputs
        assert first == second
        assert first.count('"step_cancelled"') > 0 and first.count('"compensation_succeeded"') > 0

    async def test_delays_cost_no_real_time_and_are_recorded_in_virtual_time(self) -> None:
        """An hour of fault delay on a step is recorded as an hour, without waiting for it."""
        exploration = await explore(trail_saga("ab"), {}, world=Trail, modes=("fail",), progress=False)
        slow = await exploration.replay({"b": sk.Fault("fail", delay=3600.0)})
        assert slow.run.status == "compensated"
        assert slow.run.duration_ms >= 3_600_000.0

    async def test_retry_backoff_repeats_on_replay(self) -> None:
        """Retry jitter draws from a generator of the scenario's own: a replay waits exactly as long."""
        calls: list[int] = []

        async def flaky(data: Any, context: sk.WorkflowContext) -> Any:
            calls.append(context.attempt)
            if context.attempt < 3:
                raise ConnectionError("try again")
            return data

        saga = sk.Saga("retried", [sk.step(flaky, retry=sk.RetryPolicy(max_retries=3, jitter=5.0))])
        exploration = await explore(saga, {}, modes=("fail_after",), progress=False)
        again = await exploration.replay(exploration.results[0])
        assert again.run.duration_ms == exploration.results[0].run.duration_ms > 0


class TestOutsideCancellation:
    @pytest.mark.parametrize("clock", ["virtual", "real"])
    async def test_a_planned_cancel_that_has_not_fired_does_not_swallow_the_callers(self, clock: str) -> None:
        """A scenario plans ``cancel`` on a later step; the caller cancels while an earlier step is in
        flight: the caller's cancellation propagates (after the rollback), it is not taken for the plan's."""
        started = threading.Event()
        undone: list[str] = []

        async def first(data: Any, context: sk.WorkflowContext) -> Any:
            return data

        async def undo_first(data: Any, context: sk.WorkflowContext) -> None:
            undone.append("first")

        async def hang(data: Any, context: sk.WorkflowContext) -> Any:
            started.set()
            await asyncio.Event().wait()

        async def later(data: Any, context: sk.WorkflowContext) -> Any:
            return data

        saga = sk.Saga("planned", [sk.step(first, undo_first), sk.step(hang), sk.step(later)])
        task = asyncio.ensure_future(replay(saga, {}, faults={"later": "cancel"}, clock=clock))  # type: ignore[arg-type]
        assert await asyncio.to_thread(started.wait, 60)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert undone == ["first"]


class TestBudget:
    async def test_an_absurd_budget_is_refused(self) -> None:
        """A budget beyond MAX_BUDGET is refused before anything runs, saying why and what to do instead."""
        with pytest.raises(ValueError, match=r"explore budget: expected at most 100,000 schedules .* got "
                                             r"1,000,000,000; for a longer search, run several explorations"):
            await explore(trail_saga("ab"), {}, world=Trail, search="random", budget=10**9)
        assert MAX_BUDGET == 100_000

    async def test_a_timeout_around_a_long_search_fires(self) -> None:
        """Schedules are drawn as the search goes and the caller's loop stays free: a timeout around a
        search of the largest budget ends it part-way."""
        worlds: list[Trail] = []

        def make_world() -> Trail:
            worlds.append(Trail())
            return worlds[-1]

        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await explore(trail_saga("abcdefgh"), {}, world=make_world, search="random", budget=MAX_BUDGET,
                              seed=1, progress=False)
        assert 0 < len(worlds) < MAX_BUDGET

    async def test_repeated_draws_end_the_progress_at_what_ran(self) -> None:
        """A small saga draws the same schedules again and again; the progress ends at the number that ran."""
        calls: list[tuple[int, int]] = []
        exploration = await explore(trail_saga("a"), {}, world=Trail, search="random", budget=500, seed=2,
                                    progress=lambda done, total: calls.append((done, total)))
        assert calls[-1] == (len(exploration), len(exploration))
        assert len(exploration) < 500


class TestSyncTwins:
    def test_explore_sync_outside_a_loop(self) -> None:
        """explore_sync runs the same exploration from plain code."""
        exploration = explore_sync(order_saga(), ORDER, world=Shop, invariant=no_money_without_an_order,
                                   progress=False)
        assert exploration.outcome("charge_payment", "fail_after") == "violated"
        assert exploration.replay_sync(exploration.counterexamples[0]).violated
        assert exploration.shrink_sync({"charge_payment": "fail_after", "ship_order": "fail"}).scenario.plan == {
            "charge_payment": "fail_after"
        }

    async def test_explore_sync_inside_a_running_loop(self) -> None:
        """Inside a running loop (a notebook cell) explore_sync still works: the work runs on a worker thread."""
        exploration = explore_sync(order_saga(), ORDER, world=Shop, invariant=no_money_without_an_order,
                                   progress=False)
        assert [c.scenario.plan for c in exploration.counterexamples] == [{"charge_payment": "fail_after"}]

    def test_bad_arguments_are_named_by_the_twin_too(self) -> None:
        """The synchronous twin checks its arguments as explore does."""
        with pytest.raises(ValueError, match="explore clock: expected 'virtual' or 'real'"):
            explore_sync(order_saga(), ORDER, clock="wall")  # type: ignore[arg-type]


class TestReplayAcceptsWhatTheExplorationHandsOut:
    async def test_counterexamples_results_and_numbers(self) -> None:
        """replay and shrink take a Counterexample, a ScenarioResult, a Scenario, a number or a plan."""
        exploration = await explore(order_saga(), ORDER, world=Shop, invariant=no_money_without_an_order,
                                    progress=False)
        found = exploration.counterexamples[0]
        assert isinstance(found, Counterexample)
        assert (await exploration.replay(found)).violated
        result = next(r for r in exploration.results if r.violated)
        assert isinstance(result, ScenarioResult)
        assert (await exploration.replay(result)).scenario == result.scenario
        assert (await exploration.shrink(result)).scenario.plan == {"charge_payment": "fail_after"}
        assert (await exploration.replay(result.scenario.index)).violated

    async def test_anything_else_is_refused_naming_the_argument(self) -> None:
        """A value of another kind is a TypeError listing what replay takes."""
        exploration = await explore(order_saga(), ORDER, world=Shop, progress=False)
        with pytest.raises(TypeError, match="replay scenario: expected a Scenario, a ScenarioResult, a Counterexample"):
            await exploration.replay("charge_payment=fail_after")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="shrink scenario: expected"):
            await exploration.shrink(True)  # type: ignore[arg-type]


CARD = "4111 1111 1111 1111"
PASSWORD = "hunter2-horse-battery"


def charged_card(world: Shop, run: sk.Run) -> None:
    """An invariant whose message repeats what the run carried under sensitive keys."""
    leaked = [order for order in world.charges if order not in world.orders]
    assert not leaked, f"charged card {CARD} (password {PASSWORD}) without an order: {leaked}"


class TestSecrets:
    async def test_the_invariant_message_is_scrubbed_everywhere_it_is_shown(self) -> None:
        """A card number and a password that travelled under sensitive keys never reach the frames,
        the HTML, the text, the counterexamples or their repr."""
        data = {**ORDER, "card": CARD, "password": PASSWORD}
        exploration = await explore(order_saga(), data, world=Shop, invariant=charged_card, search="random",
                                    budget=20, seed=1, progress=False)
        assert not exploration.ok
        shown = [
            exploration.scenarios.to_csv(),
            exploration.violations.to_csv(),
            exploration.to_html(),
            exploration.to_text(),
            repr(exploration.counterexamples),
            *(found.violation for found in exploration.counterexamples),
            *(result.violation or "" for result in exploration.results),
        ]
        for text in shown:
            assert CARD not in text and CARD.replace(" ", "") not in text
            assert PASSWORD not in text
        assert "charged card [REDACTED] (password [REDACTED]) without an order: [7]" in exploration.to_text()


class TestCancelFaults:
    async def test_a_cancel_on_a_step_that_fails_without_waiting_ends_with_the_run(self) -> None:
        """A ``cancel`` fault on an action that raises before it ever waits leaves the cancellation pending on the
        task (the run ends failed first): the exploration ends it there, instead of dying of it later."""

        async def first(data: Any, context: sk.WorkflowContext) -> Any:
            return data

        async def undo(data: Any, context: sk.WorkflowContext) -> None:
            pass

        async def boom(data: Any, context: sk.WorkflowContext) -> Any:
            raise ValueError("boom")

        saga = sk.Saga("fails-at-once", [sk.step(first, undo), sk.step(boom)])
        exploration = await explore(saga, {}, modes=("cancel",), progress=False)
        assert list(exploration.scenarios["status"]) == ["compensated", "cancelled", "compensated"]
        again = await replay(saga, {}, faults={"boom": "cancel"}, clock="real")
        assert again.run.status == "compensated"
        assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]
