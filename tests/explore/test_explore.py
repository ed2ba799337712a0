"""Failure-space exploration: scenarios, invariants, the matrix, and what is left untouched."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from explore_shop import ORDER, Shop, no_money_without_an_order, order_saga
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sagakit as sk
from sagakit.explore import EXPLORE_MODES, Exploration, explore

# -- random sagas -------------------------------------------------------------------------


class Ledger:
    """A world that records every action and compensation in order."""

    def __init__(self) -> None:
        self.log: list[str] = []


def make_step(name: str, *, undo: bool, on_failure: bool, yields: bool) -> sk.Step:
    async def action(data: Any, context: sk.WorkflowContext) -> Any:
        if yields:
            await asyncio.sleep(0)
        context.world.log.append(name)
        return {**data, name: True}

    async def compensate(data: Any, context: sk.WorkflowContext) -> None:
        if yields:
            await asyncio.sleep(0)
        context.world.log.append("undo_" + name)

    action.__name__ = name
    return sk.step(action, compensate if undo else None, compensate_on_failure=on_failure and undo)


@st.composite
def sagas(draw: st.DrawFn) -> sk.Saga:
    """Sagas of 1-5 stages, some of them parallel, with and without compensations."""
    stages: list[Any] = []
    count = 0
    for _ in range(draw(st.integers(1, 5))):
        width = draw(st.sampled_from([1, 1, 1, 2, 3]))
        members = []
        for _ in range(width):
            members.append(
                make_step(
                    f"s{count}",
                    undo=draw(st.booleans()),
                    on_failure=draw(st.booleans()),
                    yields=draw(st.booleans()),
                )
            )
            count += 1
        stages.append(members[0] if width == 1 else sk.parallel(*members))
    return sk.Saga("random", stages)


def expected_count(saga: sk.Saga, modes: tuple[str, ...], pairs: bool) -> int:
    """The documented scenario count, computed from the saga's shape."""
    stage_of = {}
    for position, stage in enumerate(saga.stages):
        for member in stage.steps if isinstance(stage, sk.Parallel) else (stage,):
            stage_of[member.name] = position
    last = len(saga.stages) - 1
    forward = [m for m in modes if m != "fail_compensation"]
    compensating = {s.name for s in saga.steps if s.compensate is not None}
    explores_compensation = "fail_compensation" in modes
    triggered = {name for name in compensating if stage_of[name] < last} if explores_compensation else set()
    count = 1 + len(saga.steps) * len(forward) + len(triggered)
    if not pairs:
        return count
    names = saga.step_names
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            same = stage_of[first] == stage_of[second]
            if same:
                count += len(forward) * len(forward)
                if explores_compensation and second in compensating:
                    count += len(forward)
            if explores_compensation and first in compensating:
                count += len(forward)
    if "fail" in forward:
        count -= len(triggered)  # the single fail_compensation plans, not repeated as pairs
    return count


def verdict(world: Ledger, run: sk.Run) -> bool:
    """A deterministic invariant that some scenarios violate: nothing done stays done after a failure."""
    if run.status == "completed":
        return True
    done = [entry for entry in world.log if not entry.startswith("undo_")]
    return all(("undo_" + entry) in world.log for entry in done)


class TestScenarios:
    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        saga=sagas(),
        modes=st.lists(st.sampled_from(EXPLORE_MODES), min_size=1, unique=True).map(tuple),
        pairs=st.booleans(),
    )
    async def test_every_scenario_matches_a_direct_run(self, saga: sk.Saga, modes: tuple[str, ...], pairs: bool) -> None:
        """explore visits exactly the documented scenarios, and each outcome is what that plan gives when run alone."""
        exploration = await explore(saga, {}, world=Ledger, invariant=verdict, modes=modes, pairs=pairs, progress=False)
        frame = exploration.scenarios
        assert len(frame) == expected_count(saga, tuple(m for m in EXPLORE_MODES if m in modes), pairs)
        assert len({frozenset(plan.items()) for plan in frame["faults"]}) == len(frame)
        for row, run in zip(frame.itertuples(), exploration.runs, strict=True):
            world = Ledger()
            direct = await saga.run({}, sk.WorkflowContext(world=world), faults=row.faults)  # type: ignore[arg-type]
            assert (run.status, run.failed_step) == (direct.status, direct.failed_step), row.label
            assert run.compensated_steps == direct.compensated_steps, row.label
            assert run.completed_steps == direct.completed_steps, row.label
            assert bool(row.invariant) == verdict(world, direct), row.label
        assert len(saga.history) == len(frame)  # only the direct runs above

    async def test_fail_compensation_pairs_with_a_fail_on_the_next_stage(self) -> None:
        """A compensation fault is triggered by the next stage's first step, so that compensation runs first."""
        saga = sk.Saga(
            "shape",
            [
                make_step("a", undo=True, on_failure=False, yields=False),
                sk.parallel(
                    make_step("b", undo=True, on_failure=False, yields=False),
                    make_step("c", undo=False, on_failure=False, yields=False),
                ),
                make_step("d", undo=True, on_failure=False, yields=False),
            ],
        )
        exploration = await explore(saga, {}, world=Ledger, modes="fail_compensation", progress=False)
        plans = list(exploration.scenarios["faults"])
        assert plans == [{}, {"a": "fail_compensation", "b": "fail"}, {"b": "fail_compensation", "d": "fail"}]
        assert exploration.matrix().loc["c", "fail_compensation"] == "n/a"
        assert exploration.matrix().loc["d", "fail_compensation"] == "n/a"
        assert set(exploration.scenarios["status"][1:]) == {"compensation_failed"}
        assert "nothing after it can fail" in exploration.to_html()
        assert "no compensation" in exploration.to_html()

    async def test_pairs_skip_faults_that_cannot_fire(self) -> None:
        """With pairs, a fault after a forward fault is never planned: the saga stops before it."""
        saga = order_saga()
        exploration = await explore(saga, ORDER, world=Shop, pairs=True, progress=False)
        pairs = exploration.scenarios[exploration.scenarios["kind"] == "pair"]
        assert list(pairs["label"]) == [
            "reserve_inventory=fail_compensation + charge_payment=fail_after",
            "reserve_inventory=fail_compensation + ship_order=fail",
            "reserve_inventory=fail_compensation + ship_order=fail_after",
            "charge_payment=fail_compensation + ship_order=fail_after",
        ]
        assert pairs["fired"].all()


class TestOrderSaga:
    async def test_fail_after_on_the_payment_leaks_a_charge(self) -> None:
        """The lost-response case on the payment step charges money with no order: the invariant catches it."""
        exploration = await order_saga().explore(
            ORDER, world=Shop, invariant=no_money_without_an_order, progress=False
        )
        assert exploration.outcome("charge_payment", "fail_after") == "violated"
        violations = exploration.violations
        assert list(violations["label"]) == ["charge_payment=fail_after"]
        assert violations["violation"].iloc[0] == "charged without an order: [7]"
        assert not exploration.ok

    async def test_compensate_on_failure_fixes_the_leak(self) -> None:
        """With compensate_on_failure=True the lost charge is refunded, and no scenario violates the invariant."""
        exploration = await order_saga(fixed=True).explore(
            ORDER, world=Shop, invariant=no_money_without_an_order, pairs=True, progress=False
        )
        assert exploration.ok
        assert exploration.outcome("charge_payment", "fail_after") == "compensated"
        row = exploration.scenarios.set_index("label").loc["charge_payment=fail_after"]
        assert row["compensated_steps"] == ("charge_payment", "reserve_inventory")

    async def test_the_matrix(self) -> None:
        """The matrix gives each step and mode its outcome, as a frame, as text and as coloured HTML."""
        exploration = await order_saga().explore(ORDER, world=Shop, invariant=no_money_without_an_order, progress=False)
        matrix = exploration.matrix()
        assert list(matrix.index) == ["reserve_inventory", "charge_payment", "ship_order"]
        assert list(matrix.columns) == list(EXPLORE_MODES)
        assert matrix.loc["ship_order", "fail_compensation"] == "n/a"
        assert matrix.loc["reserve_inventory", "fail_compensation"] == "compensation_failed"
        assert matrix.loc["ship_order", "fail"] == "compensated"
        text = exploration.to_text()
        assert "VIOLATED" in text and "no faults: completed" in text
        bundle = exploration._repr_mimebundle_()
        assert bundle["text/plain"] == text
        page = bundle["text/html"]
        assert 'id="cell-charge_payment-fail_after" class="sagakit-cell outcome-violated"' in page
        assert "charged without an order: [7]" in page
        assert exploration._repr_html_() == page
        assert repr(exploration) == "<Exploration of saga 'order': 9 scenarios, 1 violates the invariant>"
        assert len(exploration) == 9

    async def test_the_frame(self) -> None:
        """One row per scenario, with the documented columns and types."""
        exploration = await order_saga().explore(ORDER, world=Shop, invariant=no_money_without_an_order, progress=False)
        frame = exploration.scenarios
        assert list(frame.columns) == [
            "scenario", "kind", "step", "mode", "step_kind", "label", "faults", "status", "recovery", "failed_step",
            "completed_steps", "compensated_steps", "invariant", "violation", "outcome", "fired", "error_type", "error",
            "duration_ms", "run_id", "seed",
        ]
        assert list(frame["scenario"]) == list(range(9))
        baseline = frame.iloc[0]
        assert (baseline["kind"], baseline["status"], bool(baseline["fired"])) == ("baseline", "completed", False)
        assert frame["error_type"].iloc[1] == "InjectedFault"
        assert [run.run_id for run in exploration.runs] == list(frame["run_id"])
        assert len(exploration.history.runs) == 9


class TestInvariants:
    async def test_without_an_invariant_outcomes_are_recorded(self) -> None:
        """No invariant: the verdict column is missing values, and nothing counts as a violation."""
        exploration = await order_saga().explore(ORDER, world=Shop, progress=False)
        assert exploration.scenarios["invariant"].isna().all()
        assert exploration.ok
        assert "violat" not in repr(exploration)

    async def test_returning_false_is_a_violation(self) -> None:
        """An invariant returning False (or a falsy value) fails; True or None holds."""
        answers = iter([True, None, False, 0, 1] * 5)
        exploration = await order_saga().explore(
            ORDER, world=Shop, invariant=lambda world, run: next(answers), concurrency=1, progress=False
        )
        assert list(exploration.scenarios["invariant"])[:5] == [True, True, False, False, True]
        assert exploration.scenarios["violation"].iloc[2] == "the invariant returned False"

    async def test_async_world_and_invariant(self) -> None:
        """World factories and invariants may be coroutine functions."""

        async def make_world() -> Shop:
            await asyncio.sleep(0)
            return Shop()

        async def check(world: Shop, run: sk.Run) -> bool:
            await asyncio.sleep(0)
            return isinstance(world, Shop) and not [o for o in world.charges if o not in world.orders]

        exploration = await order_saga().explore(ORDER, world=make_world, invariant=check, progress=False)
        assert list(exploration.violations["label"]) == [
            "charge_payment=fail_after",
            "charge_payment=fail_compensation + ship_order=fail",
        ]

    async def test_a_broken_invariant_stops_the_exploration(self) -> None:
        """An invariant raising anything but AssertionError is a bug: it propagates, naming the scenario."""

        def broken(world: Shop, run: sk.Run) -> bool:
            return world.nonexistent  # type: ignore[attr-defined,no-any-return]

        with pytest.raises(AttributeError) as caught:
            await order_saga().explore(ORDER, world=Shop, invariant=broken, progress=False)
        assert any("raised by the invariant while checking scenario '" in note for note in caught.value.__notes__)


class TestIsolation:
    async def test_history_faults_and_observers_are_untouched(self) -> None:
        """Exploration runs stay out of saga.history and the saga's observers; saga.faults is neither used nor changed."""
        saga = order_saga()
        seen: list[sk.Event] = []
        saga.observe(seen.append)
        saga.faults["ship_order"] = "fail"
        watched: list[sk.Run] = []
        saga.history.watch(watched.append)
        extra: list[sk.Event] = []
        exploration = await saga.explore(ORDER, world=Shop, observers=[extra.append], progress=False)
        assert len(saga.history) == 0 and watched == [] and seen == []
        assert dict(saga.faults) == {"ship_order": sk.Fault("fail")}
        assert exploration.scenarios["status"].iloc[0] == "completed"  # the baseline ignores saga.faults
        assert {event.run_id for event in extra} == set(exploration.scenarios["run_id"])
        assert all(run.definition is saga for run in exploration.runs)

    async def test_record_history(self) -> None:
        """record_history=True appends the runs to saga.history."""
        saga = order_saga()
        exploration = await saga.explore(ORDER, world=Shop, record_history=True, progress=False)
        assert [run.run_id for run in saga.history] == [run.run_id for run in exploration.runs]

    async def test_each_scenario_gets_a_fresh_world_and_a_copy_of_the_input(self) -> None:
        """Runs cannot affect each other: every scenario has its own world and its own input."""
        worlds: list[Shop] = []

        def make_world() -> Shop:
            worlds.append(Shop())
            return worlds[-1]

        data = {"order_id": 7, "qty": 2, "amount": 30.0, "notes": []}

        async def scribble(value: dict[str, Any], context: sk.WorkflowContext) -> None:
            value["notes"].append(context.correlation_id)

        saga = sk.Saga("scribble", [sk.step(scribble)])
        exploration = await saga.explore(data, world=make_world, progress=False)
        assert len(worlds) == len(exploration) == 3 and len({id(w) for w in worlds}) == 3
        assert data["notes"] == []

    async def test_concurrency_is_limited(self) -> None:
        """No more than `concurrency` scenarios are in flight at once."""
        running = 0
        most = 0

        async def busy(data: Any, context: sk.WorkflowContext) -> None:
            nonlocal running, most
            running += 1
            most = max(most, running)
            for _ in range(5):
                await asyncio.sleep(0)
            running -= 1

        saga = sk.Saga("busy", [sk.step(busy, name=f"b{i}") for i in range(6)])
        exploration = await saga.explore(concurrency=3, modes=("fail",), progress=False)
        assert len(exploration) == 7
        assert most == 3

    @pytest.mark.parametrize("clock", ["virtual", "real"])
    async def test_cancellation_rolls_back_and_propagates(self, clock: str) -> None:
        """Cancelling an exploration cancels its runs, on either clock; their completed steps are
        compensated first."""
        started = threading.Event()  # set on the exploration's thread, waited for on this one
        shops: list[Shop] = []

        async def hang(data: Any, context: sk.WorkflowContext) -> None:
            started.set()
            await asyncio.Event().wait()

        def make_world() -> Shop:
            shops.append(Shop())
            return shops[-1]

        saga = sk.Saga("hangs", [sk.step(_reserve, compensate=_release), sk.step(hang)])
        task = asyncio.ensure_future(
            saga.explore(ORDER, world=make_world, modes=("fail",), concurrency=1, progress=False, clock=clock)
        )
        assert await asyncio.to_thread(started.wait, 60)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert shops and shops[-1].reserved == {}
        assert shops[-1].orders == {7: "released"}


async def _reserve(data: Any, context: sk.WorkflowContext) -> None:
    context.world.reserved[data["order_id"]] = data["qty"]


async def _release(data: Any, context: sk.WorkflowContext) -> None:
    context.world.reserved.pop(data["order_id"])
    context.world.orders[data["order_id"]] = "released"  # a trace that the compensation ran


class TestProgress:
    async def test_a_callable_gets_done_and_total(self) -> None:
        """A progress callable is told (done, total) as scenarios finish, ending at (total, total)."""
        calls: list[tuple[int, int]] = []
        await order_saga().explore(ORDER, world=Shop, progress=lambda done, total: calls.append((done, total)))
        assert calls[-1] == (9, 9)
        assert [done for done, _ in calls] == sorted(done for done, _ in calls)

    async def test_text_progress_outside_a_notebook(self, capsys: pytest.CaptureFixture[str]) -> None:
        """progress=True prints a line to stderr when there is no notebook."""
        await order_saga().explore(ORDER, world=Shop, progress=True)
        assert "explore: 9/9" in capsys.readouterr().err


class TestBadInput:
    @pytest.mark.parametrize(
        ("options", "error", "message"),
        [
            ({"modes": ("fail", "explode")}, sk.FaultError, "unknown mode 'explode'"),
            ({"modes": ("none",)}, sk.FaultError, "unknown mode 'none'"),
            ({"modes": ()}, TypeError, "expected a non-empty list of modes"),
            ({"invariant": "no leaks"}, TypeError, "explore invariant: expected a callable invariant(world, run)"),
            ({"world": Shop()}, TypeError, "explore world: expected a factory callable"),
            ({"concurrency": 0}, ValueError, "explore concurrency: expected an int >= 1, got 0"),
            ({"pairs": "yes"}, TypeError, "explore pairs: expected True or False"),
            ({"progress": "loud"}, TypeError, "explore progress: expected True, False, None"),
        ],
    )
    async def test_bad_arguments_are_named(self, options: dict[str, Any], error: type[Exception], message: str) -> None:
        """Each bad argument fails before anything runs, naming the argument and what was expected."""
        saga = order_saga()
        with pytest.raises(error, match=None) as caught:
            await saga.explore(ORDER, **options)
        assert message in str(caught.value)
        assert len(saga.history) == 0

    async def test_unknown_step_or_mode_in_outcome(self) -> None:
        """Exploration.outcome names the saga's steps, or the explored modes, when asked for others."""
        exploration = await order_saga().explore(ORDER, world=Shop, modes=["fail"], progress=False)
        with pytest.raises(sk.UnknownStepError, match="reserve_inventory"):
            exploration.outcome("pay", "fail")
        with pytest.raises(sk.FaultError, match="explored: fail"):
            exploration.outcome("charge_payment", "fail_after")

    async def test_uncopyable_input(self) -> None:
        """Every scenario gets a deep copy of the input; input that cannot be copied is refused clearly."""
        import threading

        with pytest.raises(TypeError, match="explore data: every run gets a deep copy"):
            await order_saga().explore({"lock": threading.Lock()}, world=Shop)


def test_exploration_is_exported() -> None:
    """sagakit.Exploration is the class explore returns."""
    assert sk.Exploration is Exploration


async def test_the_saga_settings_carry_over() -> None:
    """The copy explore runs keeps the saga's settings: here, going on past a failed compensation."""

    async def ok(data: Any, context: sk.WorkflowContext) -> None:
        context.world.log.append(context.step)

    async def undo(data: Any, context: sk.WorkflowContext) -> None:
        context.world.log.append("undo_" + str(context.step))

    saga = sk.Saga(
        "settings",
        [sk.step(ok, undo, name="a"), sk.step(ok, undo, name="b"), sk.step(ok, name="c")],
        continue_on_compensation_failure=True,
    )
    worlds: list[Ledger] = []

    def make_world() -> Ledger:
        worlds.append(Ledger())
        return worlds[-1]

    exploration = await saga.explore({}, world=make_world, modes=("fail_compensation",), concurrency=1, progress=False)
    assert worlds[2].log == ["a", "b", "undo_a"]  # b's compensation failed, a's still ran
    assert exploration.scenarios["status"].iloc[2] == "compensation_failed"
