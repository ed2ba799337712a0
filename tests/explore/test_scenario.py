"""Random search, shrinking to minimal counterexamples, and exact replay of scenarios."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from explore_shop import ORDER, Shop, Trail, no_money_without_an_order, order_saga, trail_saga

import sagakit as sk
from sagakit.explore import Exploration, Scenario, explore


def failed_compensations(run: sk.Run) -> set[str]:
    return {e.step for e in run.events if e.kind is sk.EventKind.COMPENSATION_FAILED and e.step}


def two_fault_plant(world: Trail, run: sk.Run) -> None:
    """Violated only when ``a``'s compensation fails during a rollback a cancellation of
    ``c`` started: two faults, ``{a: fail_compensation, c: cancel}``."""
    cancelled = any(e.kind is sk.EventKind.STEP_CANCELLED and e.step == "c" for e in run.events)
    assert not (cancelled and "a" in failed_compensations(run)), "undo of a failed after c was cancelled"


def three_fault_plant(world: Trail, run: sk.Run) -> None:
    """Violated only when the compensations of ``b`` and ``d`` both fail after ``e`` acted
    and then failed: three faults, ``{b, d: fail_compensation, e: fail_after}``."""
    lost = run.failed_step == "e" and "e" in world.ran
    assert not (lost and {"b", "d"} <= failed_compensations(run)), "two undos failed after e's lost response"


class TestRandomSearch:
    async def test_the_same_seed_draws_the_same_scenarios_and_outcomes(self) -> None:
        """Random search is a function of its seed: scenarios, outcomes and order repeat;
        another seed draws other schedules."""

        async def search(seed: int) -> Exploration:
            return await explore(
                order_saga(), ORDER, world=Shop, invariant=no_money_without_an_order,
                search="random", budget=80, seed=seed, progress=False,
            )

        first, again, other = await search(21), await search(21), await search(22)
        assert first.seed == 21
        columns = ["label", "outcome", "seed"]
        assert first.scenarios[columns].equals(again.scenarios[columns])
        drawn = first.scenarios[first.scenarios["kind"] == "random"]
        assert len(drawn) > 30
        assert list(drawn["label"]) != list(other.scenarios[other.scenarios["kind"] == "random"]["label"])

    async def test_schedules_of_any_size_mode_and_flakiness_are_drawn(self) -> None:
        """Drawn schedules span sizes up to ``max_faults``, every mode (cancellations
        included), flaky faults with their own seed, and delays when asked."""
        saga = trail_saga("abcdef")
        exploration = await explore(
            saga, {}, world=Trail, search="random", budget=300, seed=1, max_faults=4, max_delay=0.002, progress=False
        )
        drawn = [r.scenario for r in exploration.results if r.scenario.kind == "random"]
        assert {s.size for s in drawn} == {1, 2, 3, 4}
        faults = [fault for s in drawn for _, fault in s.faults]
        assert {f.mode for f in faults} == {"fail", "fail_after", "fail_compensation", "cancel", "cancel_compensation"}
        flaky = [f for f in faults if f.probability < 1]
        assert flaky and all(f.seed is not None for f in flaky)
        assert any(0 < f.delay <= 0.002 for f in faults)
        assert all(s.seed is not None for s in drawn)

    async def test_a_drawn_seed_is_reported_and_reproduces_the_search(self) -> None:
        """Without a seed one is drawn, kept on the exploration, and gives the same search again."""
        first = await explore(trail_saga("abc"), {}, world=Trail, search="random", budget=30, progress=False)
        again = await explore(trail_saga("abc"), {}, world=Trail, search="random", budget=30, seed=first.seed,
                              progress=False)
        assert list(first.scenarios["label"]) == list(again.scenarios["label"])
        assert str(first.seed) in first.to_text()

    @pytest.mark.parametrize(
        ("options", "error", "message"),
        [
            ({"search": "everything"}, ValueError, "explore search: expected 'exhaustive' or 'random'"),
            ({"budget": 0}, ValueError, "explore budget: expected an int >= 1"),
            ({"seed": -1}, ValueError, "explore seed: expected an int >= 0 or None"),
            ({"seed": "1"}, TypeError, "explore seed: expected an int >= 0 or None, got str"),
            ({"max_delay": -0.5}, ValueError, "explore max_delay: expected a finite number of seconds >= 0"),
            ({"max_delay": "1"}, TypeError, "explore max_delay: expected a number of seconds >= 0, got str"),
            ({"max_delay": 10**400}, ValueError, "explore max_delay: .* too large for a float"),
            ({"flaky": 2}, ValueError, "explore flaky: expected a share from 0 to 1"),
            ({"flaky": "0.5"}, TypeError, "explore flaky: expected a share from 0 to 1, got str"),
            ({"shrink": 1}, TypeError, "explore shrink: expected True or False"),
            ({"observers": None}, TypeError, "explore observers: expected an iterable of callables"),
            ({"modes": ["explode"]}, sk.FaultError, "explore modes: unknown mode 'explode'"),
        ],
    )
    async def test_bad_options_are_refused_before_anything_runs(
        self, options: dict[str, Any], error: type[Exception], message: str
    ) -> None:
        """Each bad option names itself and what was expected; no scenario runs."""
        world_made: list[Trail] = []
        with pytest.raises(error, match=message):
            await explore(trail_saga("ab"), {}, world=lambda: world_made.append(Trail()), **options)
        assert world_made == []


class TestShrinking:
    async def test_random_search_shrinks_a_planted_two_fault_violation(self) -> None:
        """Every violating schedule random search finds shrinks to the two faults that matter."""
        saga = trail_saga("abcd")
        exploration = await explore(
            saga, {}, world=Trail, invariant=two_fault_plant, search="random", budget=300, seed=3, progress=False
        )
        assert not exploration.ok
        assert [c.scenario.plan for c in exploration.counterexamples] == [{"a": "fail_compensation", "c": "cancel"}]
        found = exploration.counterexamples[0]
        assert found.explains == len(exploration.violations)
        assert found.minimal.violated and "undo of a failed" in found.violation

    async def test_a_planted_three_fault_violation_shrinks_from_a_noisy_schedule(self) -> None:
        """A schedule with faults on every step, flaky and delayed ones among them, shrinks to
        exactly the three planted faults, each in its simplest mode."""
        saga = trail_saga("abcdefgh", continue_on_compensation_failure=True)
        exploration = await explore(saga, {}, world=Trail, invariant=three_fault_plant, progress=False)
        noisy = {
            "a": sk.Fault("fail_compensation", probability=0.5, seed=4),
            "b": sk.Fault("fail_compensation", delay=0.001),
            "c": "cancel_compensation",
            "d": "fail_compensation",
            "e": "fail_after",
            "f": "cancel",
            "g": sk.Fault("fail", probability=0.5, seed=9),
            "h": "fail_after",
        }
        assert (await exploration.replay(noisy)).violated
        found = await exploration.shrink(noisy)
        assert found.scenario.plan == {"b": "fail_compensation", "d": "fail_compensation", "e": "fail_after"}
        assert found.minimal.violated
        assert found.found.scenario.size == 8

    async def test_shrinking_refuses_a_scenario_that_holds(self) -> None:
        """Only a violation can be shrunk; the message names the scenario."""
        exploration = await explore(trail_saga("ab"), {}, world=Trail, invariant=two_fault_plant, progress=False)
        with pytest.raises(ValueError, match="shrink: scenario 'a=fail' does not violate the invariant"):
            await exploration.shrink({"a": "fail"})


class TestReplay:
    async def test_every_scenario_replays_with_the_same_outcome_and_event_order(self) -> None:
        """Replaying a scenario, flaky and cancelling ones included, gives the same outcome
        and the same events in the same order; so does ``saga.run(faults=scenario.plan)``."""
        saga = trail_saga("abcde")
        exploration = await explore(
            saga, {}, world=Trail, invariant=two_fault_plant, search="random", budget=120, seed=8, flaky=0.5,
            progress=False,
        )

        def trace(run: sk.Run) -> list[tuple[Any, ...]]:
            return [(e.kind, e.step, e.phase, e.attempt, e.status, e.injected) for e in run.events]

        for result in exploration.results:
            again = await exploration.replay(result.scenario)
            assert (again.outcome, trace(again.run)) == (result.outcome, trace(result.run)), result.scenario.label
        cancelling = [r for r in exploration.results if r.run.status == "cancelled"]
        flaky = [r for r in exploration.results if any(f.probability < 1 for _, f in r.scenario.faults)]
        assert cancelling and flaky
        for result in (*cancelling[:3], *flaky[:3]):
            try:
                run = await saga.run({}, sk.WorkflowContext(world=Trail()), faults=result.scenario.plan)
            except asyncio.CancelledError:
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                run = saga.history[-1]
            assert trace(run) == trace(result.run)

    async def test_a_scenario_is_plain_data(self) -> None:
        """A scenario's plan reads back as Python source and as a fault plan for ``run()``."""
        scenario = Scenario(-1, "replay", (("a", sk.Fault("fail")), ("b", sk.Fault("cancel", probability=0.5, seed=3))))
        assert scenario.label == "a=fail + b=Fault('cancel', probability=0.5, seed=3)"
        assert scenario.plan_text == "{'a': 'fail', 'b': Fault('cancel', probability=0.5, seed=3)}"
        assert eval(scenario.plan_text, {"Fault": sk.Fault}) == scenario.plan
