"""Exploration of sagas with a pivot: forward recovery, stuck runs, transient faults, coverage, shrinking."""

from __future__ import annotations

import asyncio
import random
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pivot_shop import CHECKOUT, FAST, Warehouse, checkout_saga, one_parcel

import sagakit as sk
from sagakit.explore import (
    COVERAGE_STATUSES,
    EXPLORE_MODES,
    OUTCOMES,
    RECOVERIES,
    TRANSIENT_MODES,
    explore,
    recovery_of,
    replay,
    transient,
)
from sagakit.faults import COMPENSATION_MODES


class Ledger:
    """A world that records every action and compensation in order."""

    def __init__(self) -> None:
        self.log: list[str] = []


def make_step(name: str, *, undo: bool = False, kind: str = "compensatable") -> sk.Step:
    async def action(data: Any, context: sk.WorkflowContext) -> Any:
        context.world.log.append(name)
        return {**data, name: True}

    async def compensate(data: Any, context: sk.WorkflowContext) -> None:
        context.world.log.append("undo_" + name)

    action.__name__ = name
    retry = FAST if kind == "retriable" else None
    return sk.step(action, compensate if undo else None, kind=kind, retry=retry)  # type: ignore[arg-type]


@st.composite
def pivot_sagas(draw: st.DrawFn) -> sk.Saga:
    """Sagas of 0-3 stages before a pivot (compensatable, some without a compensation, some
    read-only, some parallel), the pivot, then 1-3 retriable stages (some parallel)."""
    stages: list[Any] = []
    count = 0

    def name() -> str:
        nonlocal count
        count += 1
        return f"s{count}"

    for _ in range(draw(st.integers(0, 3))):
        width = draw(st.sampled_from([1, 1, 2]))
        members = []
        for _ in range(width):
            if draw(st.integers(0, 3)) == 0:
                members.append(make_step(name(), kind="readonly"))
            else:
                members.append(make_step(name(), undo=draw(st.booleans())))
        stages.append(members[0] if width == 1 else sk.parallel(*members))
    stages.append(make_step(name(), kind="pivot"))
    for _ in range(draw(st.integers(1, 3))):
        width = draw(st.sampled_from([1, 1, 2]))
        members = [make_step(name(), kind="retriable") for _ in range(width)]
        stages.append(members[0] if width == 1 else sk.parallel(*members))
    return sk.Saga("pivoted", stages)


def expected_count(saga: sk.Saga, modes: tuple[str, ...], pairs: bool) -> int:
    """The documented scenario count of a saga with a pivot, from its shape."""
    stage_of = {}
    for position, stage in enumerate(saga.stages):
        for member in stage.steps if isinstance(stage, sk.Parallel) else (stage,):
            stage_of[member.name] = position
    assert saga.forward_from is not None
    forward = [m for m in modes if m not in COMPENSATION_MODES]
    compensating = {s.name for s in saga.steps if s.compensate is not None}
    explores_compensation = "fail_compensation" in modes
    # Every compensatable step comes before the pivot, so a later stage (the pivot) can fail.
    triggered = compensating if explores_compensation else set()
    retriable = [s.name for s in saga.steps if s.kind == "retriable"]
    count = 1 + len(saga.steps) * len(forward) + len(triggered)
    count += len(retriable) * len([m for m in forward if m in TRANSIENT_MODES])
    if not pairs:
        return count
    names = saga.step_names
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            if stage_of[first] == stage_of[second]:
                count += len(forward) * len(forward)
                if explores_compensation and second in compensating:
                    count += len(forward)
            if explores_compensation and first in compensating and stage_of[second] < saga.forward_from:
                count += len(forward)
    if "fail" in forward:
        count -= len(triggered)  # the single fail_compensation plans, not repeated as pairs
    return count


def pivot_passed(run: sk.Run, saga: sk.Saga) -> bool:
    return saga.pivot in run.completed_steps


class TestScenarios:
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        saga=pivot_sagas(),
        modes=st.lists(st.sampled_from(EXPLORE_MODES), min_size=1, unique=True).map(tuple),
        pairs=st.booleans(),
    )
    async def test_every_scenario_matches_a_direct_run_and_nothing_is_compensated_past_the_pivot(
        self, saga: sk.Saga, modes: tuple[str, ...], pairs: bool
    ) -> None:
        """explore plans exactly the documented scenarios for a saga with a pivot; each outcome is
        what that plan gives when run alone; no scenario puts a compensation fault on a step
        without a compensation; once the pivot completed, nothing is compensated; a plain fault on
        a retriable step leaves the run stuck there, a transient one is retried to completion."""
        checked: list[str] = []

        def invariant(world: Ledger, run: sk.Run) -> None:
            checked.append(run.status)

        exploration = await explore(saga, {}, world=Ledger, invariant=invariant, modes=modes, pairs=pairs,
                                    progress=False)
        frame = exploration.scenarios
        ordered = tuple(m for m in EXPLORE_MODES if m in modes)
        assert len(frame) == expected_count(saga, ordered, pairs)
        assert sorted(checked) == sorted(run.status for run in exploration.runs)  # stuck runs checked too
        kinds = {member.name: member.kind for member in saga.steps}
        for result in exploration.results:
            run, scenario = result.run, result.scenario
            for name, fault in scenario.faults:
                assert fault.mode not in COMPENSATION_MODES or saga.get_step(name).compensate is not None
            if pivot_passed(run, saga):
                assert run.compensated_steps == [] and run.status in ("completed", "stuck"), scenario.label
            if scenario.kind == "single" and kinds[str(scenario.step)] == "retriable":
                assert (run.status, run.failed_step, result.recovery) == ("stuck", scenario.step, "stuck")
            if scenario.kind == "transient":
                assert (run.status, result.recovery) == ("completed", "forward"), scenario.label
            world = Ledger()
            direct = await saga.run({}, sk.WorkflowContext(world=world), faults=scenario.plan)
            assert (run.status, run.failed_step) == (direct.status, direct.failed_step), scenario.label
            assert run.completed_steps == direct.completed_steps, scenario.label
            assert run.compensated_steps == direct.compensated_steps, scenario.label
        assert set(frame["outcome"]) <= set(OUTCOMES) and set(frame["recovery"]) <= set(RECOVERIES)

    async def test_the_matrix_says_stuck_and_the_transient_table_retried_to_completion(self) -> None:
        """Every attempt failing leaves the checkout stuck at that step; the first attempt failing
        only is retried to completion, and a lost shipping response then ships twice."""
        exploration = await explore(checkout_saga(), CHECKOUT, world=Warehouse, invariant=one_parcel, progress=False)
        assert exploration.outcome("ship", "fail") == "stuck"
        assert exploration.outcome("confirm", "fail_after") == "stuck"
        assert exploration.outcome("capture", "fail") == "compensated"  # at the pivot: rolled back
        assert exploration.outcome("capture", "fail_compensation") == "n/a"
        assert exploration.outcome("ship", "fail", transient=True) == "completed"
        assert exploration.outcome("ship", "fail_after", transient=True) == "violated"
        assert exploration.outcome("reserve", "fail", transient=True) == "n/a"  # not retriable
        retried = exploration.matrix(transient=True)
        assert list(retried.index) == ["ship", "confirm"] and list(retried.columns) == ["fail", "fail_after"]
        assert exploration.stuck["failed_step"].tolist() == ["ship", "ship", "confirm", "confirm"]

    async def test_the_frame_knows_step_kinds_and_recovery(self) -> None:
        """step_kind is the faulted step's kind; recovery tells rollback, forward recovery and stuck apart."""
        exploration = await explore(checkout_saga(idempotent=True), CHECKOUT, world=Warehouse, invariant=one_parcel,
                                    progress=False)
        frame = exploration.scenarios.set_index("label")
        assert frame.loc["no faults", "recovery"] == "none" and frame["step_kind"].isna().iloc[0]
        assert tuple(frame.loc["capture=fail", ["step_kind", "recovery", "status"]]) == (
            "pivot", "backward", "compensated")
        assert tuple(frame.loc["ship=fail_after", ["step_kind", "recovery", "status"]]) == (
            "retriable", "stuck", "stuck")
        row = frame.loc["ship=fail_after (first attempt)"]
        assert (row["kind"], row["recovery"], row["status"], row["invariant"]) == (
            "transient", "forward", "completed", True)
        assert row["faults"] == {"ship": transient("fail_after")}

    async def test_no_compensation_fault_on_a_step_without_one_even_at_random(self) -> None:
        """Random search never draws fail_compensation or cancel_compensation on the pivot, the
        retriable steps or a read-only step; a plan that asks for one is refused before it runs."""
        saga = sk.Saga("order", [make_step("quote", kind="readonly"), make_step("reserve", undo=True),
                                 make_step("pay", kind="pivot"), make_step("ship", kind="retriable")])
        exploration = await explore(saga, {}, world=Ledger, search="random", budget=400, seed=5, pairs=True,
                                    progress=False)
        compensatable = {"reserve"}
        drawn = [(name, fault.mode) for result in exploration.results for name, fault in result.scenario.faults]
        assert any(name == "ship" for name, _ in drawn)  # post-pivot faults are drawn
        assert {name for name, mode in drawn if mode in COMPENSATION_MODES} == compensatable
        for step in ("quote", "pay", "ship"):
            with pytest.raises(sk.FaultError, match=f"step {step!r} of saga 'order' has no compensation"):
                await exploration.replay({step: "fail_compensation"})

    async def test_the_missing_cells_say_why_for_each_kind(self) -> None:
        """The matrix's hover text says why a pivot, retriable or read-only step has no compensation fault."""
        saga = sk.Saga("order", [make_step("quote", kind="readonly"), make_step("reserve", undo=True),
                                 make_step("pay", kind="pivot"), make_step("ship", kind="retriable")])
        page = (await explore(saga, {}, world=Ledger, progress=False)).to_html()
        assert "a read-only step has nothing to undo" in page
        assert "the pivot has no compensation" in page
        assert "a retriable step is retried forward, never compensated" in page
        assert 'id="transient-ship-fail_after"' in page and "kind-pivot" in page

    async def test_pairs_leave_out_compensation_faults_behind_a_post_pivot_fault(self) -> None:
        """A fault after the pivot never starts a rollback, so it cannot trigger a compensation fault."""
        exploration = await explore(checkout_saga(), CHECKOUT, world=Warehouse, pairs=True, progress=False)
        pairs = [result.scenario.label for result in exploration.results if result.scenario.kind == "pair"]
        assert pairs == ["reserve=fail_compensation + capture=fail_after"]


class TestDisplay:
    async def test_text_and_html_show_kinds_stuck_runs_and_the_retried_table(self) -> None:
        """The text names each step's kind, counts the stuck scenarios and where they stuck."""
        exploration = await explore(checkout_saga(), CHECKOUT, world=Warehouse, invariant=one_parcel, progress=False)
        text = exploration.to_text()
        assert "14 scenarios, 2 violate the invariant, 4 end stuck" in text
        assert "capture (pivot)" in text and "ship (retriable)" in text
        assert "retriable steps failing their first attempt only (retried):" in text
        assert "stuck: 4 scenarios, at 'ship', 'confirm' (nothing compensated; see .stuck)" in text
        assert "violated by ship=fail_after (first attempt): completed with 2 parcels" in text
        page = exploration.to_html()
        assert 'id="cell-confirm-fail" class="sagakit-cell outcome-stuck"' in page
        assert "stuck at: confirm (retried forward until its policy ran out; nothing compensated)" in page
        assert 'id="transient-ship-fail_after" class="sagakit-cell outcome-violated"' in page

    async def test_a_saga_without_pivot_shows_no_stuck_count_and_no_retried_table(self) -> None:
        """Nothing about forward recovery where there is none."""
        saga = sk.Saga("plain", [make_step("a", undo=True), make_step("b")])
        text = (await explore(saga, {}, world=Ledger, progress=False)).to_text()
        assert "stuck" not in text and "retried" not in text


class TestTransient:
    @given(attempts=st.integers(2, 21))
    def test_a_transient_fault_fires_on_the_first_attempt_only(self, attempts: int) -> None:
        """Its draws: the first fires, none of the next twenty does; each copy starts over."""
        for mode in TRANSIENT_MODES:
            fault = transient(mode)
            fresh = sk.Fault(fault.mode, fault.delay, fault.probability, fault.seed)
            assert [fresh.fires() for _ in range(attempts)] == [True] + [False] * (attempts - 1)

    def test_a_transient_fault_takes_only_forward_failing_modes(self) -> None:
        """cancel or a compensation mode is refused, naming the argument."""
        with pytest.raises(ValueError, match="transient mode: expected 'fail' or 'fail_after', got 'cancel'"):
            transient("cancel")

    async def test_a_transient_fault_completes_a_run_forward_anywhere_a_plan_goes(self) -> None:
        """saga.run with the plan: the retriable step fails once, its retry succeeds."""
        saga = checkout_saga(idempotent=True)
        run = await saga.run(CHECKOUT, sk.WorkflowContext(world=Warehouse()), faults={"ship": transient()})
        assert run.status == "completed" and recovery_of(run) == "forward"
        ship = run.steps[run.steps.step == "ship"]
        assert ship.status.tolist() == ["failed", "succeeded"] and ship.injected.tolist() == [True, False]


class TestCoverage:
    async def test_stuck_is_a_coverage_status_of_its_own(self) -> None:
        """A fault that leaves the run stuck at its step is ``stuck``, not ``violated`` nor ``explored``;
        the frame has the step's kind and counts stuck and completed scenarios."""
        exploration = await explore(checkout_saga(idempotent=True), CHECKOUT, world=Warehouse, invariant=one_parcel,
                                    progress=False)
        coverage = exploration.coverage
        assert coverage.status("ship", "fail") == "stuck"
        assert coverage.status("capture", "fail") == "explored"
        assert coverage.status("capture", "fail_compensation") == "n/a"
        frame = coverage.frame.set_index(["step", "mode"])
        ship = frame.loc[("ship", "fail")]
        # The plain fault (stuck) and the transient one (retried to completion) both fired.
        assert (ship["kind"], ship["scheduled"], ship["fired"], ship["stuck"], ship["completed"]) == (
            "retriable", 2, 2, 1, 1)
        assert set(coverage.frame["status"]) <= set(COVERAGE_STATUSES)
        assert coverage.counts()["stuck"] == 4
        assert "left the run stuck" in coverage.summary() and "ship (retriable)" in coverage.to_text()

    async def test_a_violation_outranks_stuck(self) -> None:
        """With the naive ship, its lost response violates the invariant: the point is ``violated``."""
        exploration = await explore(checkout_saga(), CHECKOUT, world=Warehouse, invariant=one_parcel, progress=False)
        assert exploration.coverage.status("ship", "fail_after") == "violated"
        assert exploration.coverage.status("ship", "fail") == "stuck"

    async def test_the_overlay_colours_stuck_steps(self) -> None:
        """The diagram overlay marks a step whose points left runs stuck with its own class."""
        exploration = await explore(checkout_saga(idempotent=True), CHECKOUT, world=Warehouse, progress=False)
        svg = exploration.coverage.to_svg()
        assert svg is not None
        assert re.search(r'<g id="step(?:-|&#45;)[^"]+" class="[^"]*\bcoverage-stuck"><title>', svg)
        # Its box (a rounded box is a path) takes the stuck colours.
        assert re.search(r"g\.step\.coverage-stuck > path:first-of-type[^{]*\{ fill: #[0-9a-f]{6} !important", svg)


class TestRandomSearchAndShrinking:
    async def test_random_search_finds_both_stories_and_shrinks_each_to_its_own_outcome(self) -> None:
        """A lost shipping response violates in two ways: retried to completion (two parcels) and
        stuck (a parcel per attempt). Each minimal counterexample keeps the outcome it came from."""
        exploration = await explore(checkout_saga(), CHECKOUT, world=Warehouse, invariant=one_parcel,
                                    search="random", budget=300, seed=3, progress=False)
        found = {example.scenario.label: example for example in exploration.counterexamples}
        assert set(found) == {"ship=fail_after", "ship=fail_after (first attempt)"}
        assert found["ship=fail_after"].minimal.run.status == "stuck"
        assert found["ship=fail_after (first attempt)"].minimal.run.status == "completed"
        for example in exploration.counterexamples:
            assert example.minimal.recovery == example.found.recovery
        drawn = [r for r in exploration.results if r.scenario.kind == "random" and r.violated]
        assert drawn and sum(example.explains for example in exploration.counterexamples) == len(
            [r for r in exploration.results if r.violated])

    async def test_a_flaky_fault_retried_to_completion_shrinks_to_the_transient_one_not_to_stuck(self) -> None:
        """The plain fault also violates (stuck with parcels), but that is another story: shrinking
        keeps the run completing forward."""
        exploration = await explore(checkout_saga(), CHECKOUT, world=Warehouse, invariant=one_parcel, progress=False)
        seed = next(s for s in range(1000) if _fires(s) == [True, True, False])
        flaky = sk.Fault("fail_after", probability=0.5, seed=seed)
        before = await exploration.replay({"ship": flaky, "confirm": "cancel"})
        assert before.violated and before.run.status == "completed" and before.recovery == "forward"
        example = await exploration.shrink({"ship": flaky, "confirm": "cancel"})
        assert example.scenario.faults == (("ship", transient("fail_after")),)
        assert example.minimal.run.status == "completed"

    async def test_a_stuck_violation_shrinks_to_a_stuck_one(self) -> None:
        """From a noisy schedule that left the run stuck with parcels, the plain lost response remains."""
        exploration = await explore(checkout_saga(), CHECKOUT, world=Warehouse, invariant=one_parcel, progress=False)
        example = await exploration.shrink({"reserve": "cancel_compensation", "ship": "fail_after",
                                            "confirm": "fail"})
        assert example.scenario.plan == {"ship": "fail_after"}
        assert example.minimal.run.status == "stuck" and example.minimal.recovery == "stuck"

    async def test_without_a_pivot_shrinking_still_crosses_outcomes(self) -> None:
        """The story is kept only where forward recovery exists: a saga without a pivot shrinks as before."""
        def leaky(world: Ledger, run: sk.Run) -> None:
            assert "b" not in world.log or "undo_b" in world.log or run.status == "completed", "b left done"

        saga = sk.Saga("plain", [make_step("a", undo=True), make_step("b"), make_step("c", undo=True)])
        exploration = await explore(saga, {}, world=Ledger, invariant=leaky, progress=False)
        example = await exploration.shrink({"b": "cancel", "c": "fail"})
        assert example.scenario.plan == {"c": "fail"}


def _fires(seed: int) -> list[bool]:
    draws = random.Random(seed)
    return [draws.random() < 0.5 for _ in range(3)]


class TestReplay:
    async def test_replay_repeats_forward_retries_on_the_virtual_clock(self) -> None:
        """A stuck scenario under the default forward policy (backoff with jitter, a deadline) replays
        with the same attempts at the same virtual offsets."""
        saga = checkout_saga(retry=None)  # FORWARD_RETRY: 0.2 s doubling, jitter, 60 s deadline
        exploration = await explore(saga, CHECKOUT, world=Warehouse, invariant=one_parcel, progress=False)
        result = next(r for r in exploration.results if r.scenario.label == "confirm=fail")
        again = await exploration.replay(result.scenario)
        elsewhere = await replay(saga, CHECKOUT, faults=result.scenario.plan, world=Warehouse, invariant=one_parcel)
        first = _timeline(result.run)
        assert len([e for e in first if e[1] == "confirm"]) == sk.FORWARD_RETRY.attempts
        assert first == _timeline(again.run) == _timeline(elsewhere.run)
        gaps = [at for kind, step, at in first if step == "confirm" and kind == "step_failed"]
        assert gaps[-1] - gaps[0] > 6.0  # the backoffs passed on the virtual clock, 0.2 + 0.4 + ... s

    async def test_a_transient_scenario_replays_in_another_plan_form(self) -> None:
        """Its plan is plain data: saga.run with it on a virtual clock gives the same events."""
        saga = checkout_saga()
        exploration = await explore(saga, CHECKOUT, world=Warehouse, invariant=one_parcel, progress=False)
        result = next(r for r in exploration.results if r.scenario.kind == "transient"
                      and r.scenario.mode == "fail_after" and r.scenario.step == "ship")
        again = await replay(saga, CHECKOUT, faults=result.scenario.plan, world=Warehouse, invariant=one_parcel)
        assert again.violated and again.violation == "completed with 2 parcels"
        assert _timeline(again.run) == _timeline(result.run)


def _timeline(run: sk.Run) -> list[tuple[str, str | None, float]]:
    """Each event's kind, step and virtual offset from the run's start, rounded to the microsecond."""
    return [(str(event.kind), event.step, round(event.at - run.started_at, 6)) for event in run.events]


async def test_the_default_forward_policy_deadline_holds_in_exploration() -> None:
    """A retriable step taking 30 virtual seconds per attempt stops at FORWARD_RETRY's 60 s deadline."""
    async def slow(data: Any, context: sk.WorkflowContext) -> None:
        await asyncio.sleep(30)
        raise ConnectionError("carrier down")

    saga = sk.Saga("slow", [make_step("pay", kind="pivot"), sk.step(slow, name="ship")])
    exploration = await explore(saga, {}, world=Ledger, progress=False)
    baseline = exploration.results[0]
    assert baseline.run.status == "stuck" and baseline.recovery == "stuck"
    assert baseline.run.steps[baseline.run.steps.step == "ship"].attempt.tolist() == [1, 2]


async def test_a_cancel_fault_firing_on_every_retry_ends_with_the_scenario() -> None:
    """A cancel fault on a retriable step that keeps failing fires on each attempt (each cancels the
    run's task, which carries on past the pivot): every one of those cancellations was planned, so
    the exploration goes on, and the run is stuck with one injected attempt per try."""
    async def down(data: Any, context: sk.WorkflowContext) -> None:
        await asyncio.sleep(0.1)
        raise ConnectionError("carrier down")

    saga = sk.Saga("s", [make_step("pay", kind="pivot"), sk.step(down, name="ship", retry=FAST)])
    exploration = await explore(saga, {}, world=Ledger, modes=("cancel",), progress=False)
    assert exploration.outcome("ship", "cancel") == "stuck"
    run = exploration.results[-1].run
    ship = run.steps[run.steps.step == "ship"]
    assert ship.injected.tolist() == [True] * FAST.attempts


async def test_a_cancel_fault_firing_on_every_retry_in_concurrent_runs() -> None:
    """The same in an interleaving: the runs end, the exploration goes on."""
    from sagakit.explore import World, explore_concurrent

    async def down(data: Any, context: sk.WorkflowContext) -> None:
        context.world["tries"] = context.world.get("tries", 0) + 1
        raise ConnectionError("carrier down")

    async def pay(data: Any, context: sk.WorkflowContext) -> None:
        return None

    saga = sk.Saga("s", [sk.step(pay, kind="pivot"), sk.step(down, name="ship", retry=FAST)])
    exploration = await explore_concurrent([saga, saga], world=World, modes=("cancel",))
    rows = exploration.interleavings
    cancelled = rows[rows["faults"] == "run 0: ship=cancel"]
    assert len(cancelled) and set(cancelled["statuses"]) == {("stuck", "stuck")}
