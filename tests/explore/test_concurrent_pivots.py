"""Concurrent exploration of sagas with a pivot: retries as actions, stuck runs, anomalies after the pivot."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sagakit as sk
from sagakit.explore import World, explore_concurrent, replay_interleaving, transient

#: Retries one virtual second apart: a retry is an action of its own, backing off on the virtual clock.
PATIENT = sk.RetryPolicy(max_retries=2, initial_delay=1.0, max_delay=1.0, jitter=0)


class OutOfStock(Exception):
    """Nothing left to ship."""


def store() -> World:
    return World(stock=1, payments=(), parcels=(), confirmed=())


def checkout(variant: str = "naive", retry: sk.RetryPolicy | None = PATIENT) -> sk.Saga:
    """Two orders for the last item, the payment the pivot.

    ``naive`` checks the stock (a read-only step), captures the payment, then ships, taking the
    item only then: once both have paid, one shipment finds the shelf empty, is retried, and
    the run ends stuck with the money taken. ``stale`` ships from the stock it saw when it
    checked (a lost update after the pivot). ``reserved`` takes the item before the pivot (a
    compensatable reservation): past the pivot there is nothing left to race for.
    """

    async def check(data: dict[str, Any], context: sk.WorkflowContext) -> dict[str, Any]:
        stock = context.world["stock"]
        if stock < 1:
            raise OutOfStock(data["order"])
        return {**data, "seen": stock}

    async def reserve(data: dict[str, Any], context: sk.WorkflowContext) -> dict[str, Any]:
        world = context.world
        if world["stock"] < 1:
            raise OutOfStock(data["order"])
        world["stock"] = world["stock"] - 1
        return data

    async def release(data: dict[str, Any], context: sk.WorkflowContext) -> None:
        context.world["stock"] = context.world["stock"] + 1

    async def pay(data: dict[str, Any], context: sk.WorkflowContext) -> dict[str, Any]:
        context.world["payments"] = (*context.world["payments"], data["order"])
        return data

    async def ship(data: dict[str, Any], context: sk.WorkflowContext) -> dict[str, Any]:
        world = context.world
        if variant == "naive":
            if world["stock"] < 1:
                raise OutOfStock(data["order"])
            world["stock"] = world["stock"] - 1
        elif variant == "stale":
            world["stock"] = data["seen"] - 1  # from what check saw, not what is there now
        world["parcels"] = (*world["parcels"], data["order"])
        return data

    async def confirm(data: dict[str, Any], context: sk.WorkflowContext) -> dict[str, Any]:
        context.world["confirmed"] = (*context.world["confirmed"], data["order"])
        return data

    first = sk.step(reserve, release) if variant == "reserved" else sk.step(check, kind="readonly")
    return sk.Saga(f"checkout-{variant}", [first, sk.step(pay, kind="pivot"), sk.step(ship, retry=retry),
                                           sk.step(confirm, retry=retry)])


def two(variant: str = "naive", retry: sk.RetryPolicy | None = PATIENT) -> list[tuple[sk.Saga, dict[str, str]]]:
    saga = checkout(variant, retry)
    return [(saga, {"order": "ann"}), (saga, {"order": "bob"})]


def paid_means_shipped(world: World, runs: tuple[sk.Run | None, ...]) -> None:
    """Every order paid for is shipped, and no item is shipped twice."""
    unshipped = [order for order in world["payments"] if order not in world["parcels"]]
    assert not unshipped, f"paid, never shipped: {unshipped}"
    assert world["stock"] + len(world["parcels"]) == 1, f"stock {world['stock']} with parcels {world['parcels']}"


def involved(result: Any) -> set[tuple[str, str]]:
    """The (step, phase) of the actions the first anomaly joins."""
    return {(result.actions[p].step, result.actions[p].phase) for p in result.anomalies[0].actions}


class TestAfterThePivot:
    async def test_a_shipment_racing_for_the_last_item_leaves_a_paid_order_stuck(self) -> None:
        """Both orders see the item, both pay (past the pivot, no way back), one shipment finds the
        shelf empty: retried, then stuck. The anomaly is a fuzzy read that involves the retriable
        step; the minimal interleaving shows each retry of it as an action of its own."""
        exploration = await explore_concurrent(two(), world=store, invariant=paid_means_shipped, modes=())
        assert not exploration.ok and exploration.complete
        example = exploration.counterexamples[0]
        assert example.anomaly == "fuzzy read"
        assert ("ship", "forward") in involved(example.minimal)
        stuck = [run for run in example.minimal.runs if run.status == "stuck"]
        assert len(stuck) == 1 and stuck[0].failed_step == "ship"
        assert stuck[0].compensations_run == 0
        loser = stuck[0].correlation_id.split()[2]
        ships = [key for key in example.interleaving.order if key == (int(loser), "ship", "forward")]
        assert len(ships) == PATIENT.attempts
        assert [a.status for a in example.minimal.actions if a.key == (int(loser), "ship", "forward")] == [
            "failed"] * PATIENT.attempts
        assert [a.attempts for a in example.minimal.actions if a.key == (int(loser), "ship", "forward")] == [1, 2, 3]
        assert "paid, never shipped" in example.violation
        assert set(exploration.interleavings["stuck"]) == {0, 1}
        assert "leave a run stuck" in exploration.summary()

    async def test_a_stale_shipment_is_a_lost_update_after_the_pivot(self) -> None:
        """Shipping from the stock seen before the pivot overwrites the other order's shipment."""
        exploration = await explore_concurrent(two("stale"), world=store, invariant=paid_means_shipped, modes=())
        names = {example.anomaly for example in exploration.counterexamples}
        assert "lost update" in names
        lost = next(example for example in exploration.counterexamples if example.anomaly == "lost update")
        assert involved(lost.minimal) == {("check", "forward"), ("ship", "forward")}
        assert all(run.status == "completed" for run in lost.minimal.runs)

    async def test_reserving_before_the_pivot_leaves_nothing_to_race_for(self) -> None:
        """The fix: the item is taken by a compensatable step before the payment. Every interleaving
        under every single failing step (shipments failing for good, or once) holds."""
        exploration = await explore_concurrent(two("reserved"), world=store, invariant=paid_and_not_stuck_wrongly,
                                               modes=("fail",))
        assert exploration.ok and exploration.complete
        labels = set(exploration.interleavings["faults"])
        assert {"run 0: ship=fail", "run 0: ship=fail (first attempt)", "run 0: confirm=fail"} <= labels
        statuses = {status for row in exploration.interleavings["statuses"] for status in row}
        assert {"completed", "compensated", "stuck"} <= statuses

    async def test_the_invariant_sees_stuck_runs_and_every_run_ends(self) -> None:
        """Stuck runs end (the exploration finishes), and the invariant gets them with their status."""
        seen: list[tuple[str, ...]] = []

        def record(world: World, runs: tuple[sk.Run | None, ...]) -> None:
            seen.append(tuple(run.status for run in runs if run is not None))

        exploration = await explore_concurrent(two(), world=store, invariant=record, modes=())
        assert len(seen) == len(exploration) and all(len(statuses) == 2 for statuses in seen)
        assert ("completed", "stuck") in seen and ("stuck", "completed") in seen


def _first_stuck(exploration: Any) -> int:
    """The number of the first interleaving in which a run ended stuck."""
    rows = exploration.interleavings
    return int(rows[rows["stuck"] > 0]["interleaving"].iloc[0])


def paid_and_not_stuck_wrongly(world: World, runs: tuple[sk.Run | None, ...]) -> None:
    """With faults, a stuck run is the fault's doing; otherwise every payment is shipped."""
    if any(run is not None and run.status == "stuck" for run in runs):
        return
    paid_means_shipped(world, runs)


class TestRetriesAsActions:
    async def test_another_run_can_act_between_two_attempts_of_a_retriable_step(self) -> None:
        """A retry waits at the gate as soon as its attempt failed: some interleaving puts the other
        run's action between two attempts of one shipment."""
        exploration = await explore_concurrent(two(), world=store, modes=(), reduce=False)
        orders = [exploration.interleaving(n).order for n in range(len(exploration))]

        def split(order: tuple[Any, ...]) -> bool:
            for run in (0, 1):
                positions = [i for i, key in enumerate(order) if key == (run, "ship", "forward")]
                if len(positions) > 1 and any(key[0] != run for key in order[positions[0]:positions[-1]]):
                    return True
            return False

        assert any(split(order) for order in orders)

    async def test_the_waits_between_attempts_follow_the_forward_policy(self) -> None:
        """Exponential backoff capped at max_delay, on the virtual clock, between the actions of one
        shipment's attempts (the same waits as RetryPrimitive's), and the deadline stops the retries."""
        growing = sk.RetryPolicy(max_retries=4, initial_delay=1.0, max_delay=3.0, jitter=0)
        exploration = await explore_concurrent(two(retry=growing), world=store, modes=())
        result = await exploration.replay(_first_stuck(exploration))
        stuck = next(run for run in result.runs if run.status == "stuck")
        ship = stuck.steps[stuck.steps["step"] == "ship"]
        starts, ends = list(ship["started_at"]), list(ship["ended_at"])
        waits = [(start - end).total_seconds() for end, start in zip(ends, starts[1:], strict=False)]
        assert [round(wait, 6) for wait in waits] == [1.0, 2.0, 3.0, 3.0]
        bounded = sk.RetryPolicy(max_retries=10, initial_delay=2.0, max_delay=2.0, jitter=0, deadline=5.0)
        exploration = await explore_concurrent(two(retry=bounded), world=store, modes=())
        result = await exploration.replay(_first_stuck(exploration))
        stuck = next(n for n, run in enumerate(result.runs) if run.status == "stuck")
        assert len([a for a in result.actions if a.key == (stuck, "ship", "forward")]) == 4  # at 0, 2, 4, 6 s

    async def test_reduction_finds_what_the_full_search_finds_with_retries(self) -> None:
        """With retries as actions, partial-order reduction still finds every story the full search
        finds, and the full search finds nothing more."""
        def stories(exploration: Any) -> set[tuple[str, frozenset[tuple[str, str]]]]:
            return {(r.anomaly, frozenset(involved(r)) if r.anomalies else frozenset()) for r in exploration.violating}

        reduced = await explore_concurrent(two(), world=store, invariant=paid_means_shipped, shrink=False)
        full = await explore_concurrent(two(), world=store, invariant=paid_means_shipped, shrink=False, reduce=False)
        assert len(reduced) < len(full)
        assert stories(reduced) == stories(full)

    async def test_a_transient_fault_on_a_retriable_step_is_one_failed_action_then_the_retry(self) -> None:
        """The fault plans include the retriable step failing once; its retry is the next action of its run."""
        exploration = await explore_concurrent(two("reserved"), world=store, invariant=paid_means_shipped,
                                               modes=("fail",))
        rows = exploration.interleavings
        once = rows[rows["faults"] == "run 0: ship=fail (first attempt)"]
        assert len(once) and set(once["statuses"]) <= {("completed", "compensated"), ("compensated", "completed")}
        assert ("completed", "compensated") in set(once["statuses"])
        forever = rows[rows["faults"] == "run 0: ship=fail"]
        assert ("stuck", "compensated") in set(forever["statuses"])
        plans = [exploration.interleaving(n).faults for n in range(len(exploration))]
        assert ((("ship", transient("fail")),), ()) in plans


class TestReplay:
    async def test_the_counterexample_replays_exactly_from_json_under_the_default_forward_policy(self) -> None:
        """FORWARD_RETRY (backoff with jitter): the replay repeats the same actions, at the same virtual
        times, with the same values."""
        runs = two(retry=None)
        exploration = await explore_concurrent(runs, world=store, invariant=paid_means_shipped, modes=())
        example = exploration.counterexamples[0]
        data = json.loads(json.dumps(example.interleaving.to_dict()))
        again = await replay_interleaving(runs, data, world=store, invariant=paid_means_shipped)
        assert again.interleaving.order == example.interleaving.order
        assert [(a.key, a.status, a.attempts) for a in again.actions] == [
            (a.key, a.status, a.attempts) for a in example.minimal.actions]
        start, first = again.actions[0].at, example.minimal.actions[0].at
        assert [a.at - start for a in again.actions] == pytest.approx([a.at - first for a in example.minimal.actions])
        assert again.accesses == example.minimal.accesses
        ships = [a for a in again.actions if a.step == "ship" and a.status == "failed"]
        assert len(ships) >= 2 and ships[-1].at - ships[0].at > 1.0  # the backoffs passed on the virtual clock


def _operation(kind: str, key: str) -> Any:
    def act(world: World) -> None:
        if kind == "read":
            world[key]
        elif kind == "write":
            world[key] = 1
        elif kind == "add":
            world[key] = world[key] + 1
        elif world[key] == 0:  # "need": fails until another step wrote the key
            raise ConnectionError(f"{key} not there yet")

    return act


@st.composite
def pivot_cases(draw: st.DrawFn) -> tuple[list[sk.Saga], tuple[str, ...], str]:
    """Two small sagas: an optional compensatable step, a pivot, one or two retriable steps (some
    waiting for a key another step writes, so that their retries race), on one or two keys."""
    keys = ["x", "y"][: draw(st.integers(1, 2))]
    ops = st.lists(st.tuples(st.sampled_from(["read", "write", "add"]), st.sampled_from(keys)), max_size=2)

    def make(name: str, operations: list[tuple[str, str]], **options: Any) -> sk.Step:
        actions = [_operation(kind, key) for kind, key in operations]

        async def action(data: Any, context: sk.WorkflowContext) -> Any:
            for act in actions:
                act(context.world)
            return data

        action.__name__ = name
        return sk.step(action, name=name, **options)

    sagas = []
    for number in range(2):
        name = f"p{number}"
        stages: list[Any] = []
        if draw(st.booleans()):
            undo = [_operation(kind, key) for kind, key in draw(ops)]

            async def compensate(data: Any, context: sk.WorkflowContext, undo: list[Any] = undo) -> None:
                for act in undo:
                    act(context.world)

            first = make(f"{name}a", draw(ops))
            stages.append(first.replace(compensate=compensate))
        stages.append(make(f"{name}p", draw(ops), kind="pivot"))
        for position in range(draw(st.integers(1, 2))):
            needs = [("need", draw(st.sampled_from(keys)))] if draw(st.booleans()) else []
            stages.append(make(f"{name}r{position}", needs + draw(ops), retry=PATIENT))
        sagas.append(sk.Saga(name, stages))
    modes = draw(st.sampled_from([(), ("fail",)]))
    check = draw(st.sampled_from(["end", "end", "every action"]))
    return sagas, modes, check


class TestReductionWithPivots:
    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(case=pivot_cases())
    async def test_reduction_loses_no_outcome_and_no_violation_with_retries(
        self, case: tuple[list[sk.Saga], tuple[str, ...], str]
    ) -> None:
        """With retriable steps whose retries race other runs' writes, the reduced search reaches exactly
        the end states (world and statuses, stuck included) of the full one, and a violation in one is a
        violation in the other, both ways."""
        sagas, modes, check = case
        outcomes: dict[bool, set[Any]] = {True: set(), False: set()}
        violated: dict[bool, bool] = {}
        for reduce in (True, False):
            seen = outcomes[reduce]

            def record(world: World, runs: tuple[sk.Run | None, ...], seen: set[Any] = seen) -> bool:
                if all(run is not None for run in runs):
                    seen.add((tuple(sorted(world.to_dict().items())), tuple(run.status for run in runs if run)))
                return world.get("x") != 2  # some states violate

            exploration = await explore_concurrent(
                list(sagas), world=lambda: World(x=0, y=0), invariant=record, modes=modes, reduce=reduce,
                check=check, shrink=False, budget=50_000,  # type: ignore[arg-type]
            )
            assert exploration.complete
            violated[reduce] = not exploration.ok
        if check == "end":
            assert outcomes[True] == outcomes[False]
        assert violated[True] == violated[False]
