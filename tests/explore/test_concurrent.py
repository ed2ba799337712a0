"""Concurrent exploration: planted anomalies found, named and shrunk; countermeasures pass; bad input named."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from isolation_shop import both, no_false_sold_out, no_oversell, order_saga, shop, two_orders

import sagakit as sk
from sagakit.explore import (
    ANOMALIES,
    ConcurrentExploration,
    World,
    explore_concurrent,
    explore_concurrent_sync,
)


def step_of(name: str, body: Any, undo: Any = None, **options: Any) -> sk.Step:
    async def action(data: Any, context: sk.WorkflowContext) -> Any:
        result = body(data, context.world)
        return data if result is None else result

    action.__name__ = name
    compensate = None
    if undo is not None:
        async def compensate(data: Any, context: sk.WorkflowContext) -> None:
            undo(data, context.world)

    return sk.step(action, compensate, name=name, **options)


def report_saga() -> sk.Saga:
    """Reads the stock twice, in two steps, and reports both readings."""
    return sk.Saga("report", [
        step_of("count", lambda data, world: {"first": world["stock"]}),
        step_of("recount", lambda data, world: world.__setitem__("report", (data["first"], world["stock"]))),
    ])


def restock_saga() -> sk.Saga:
    return sk.Saga("restock", [step_of("restock", lambda data, world: world.__setitem__("stock", 5))])


def consistent_report(world: World, runs: Any) -> None:
    if "report" not in world:  # the report failed: nothing to compare
        return
    first, second = world["report"]
    assert first == second, f"the report read {first}, then {second}"


def writer(name: str) -> sk.Saga:
    return sk.Saga(f"set-{name}", [step_of("set", lambda data, world: world.__setitem__("winner", name))])


class TestPlantedAnomalies:
    async def test_a_lost_update_is_found_named_and_shrunk(self) -> None:
        """Two orders read the last item, then both write the stock back: the oversell is a lost update,
        shrunk to no faults and the two context switches it needs."""
        exploration = await explore_concurrent(two_orders("naive"), world=shop, invariant=no_oversell)
        assert not exploration.ok and exploration.complete
        (found,) = exploration.counterexamples
        assert found.anomaly == "lost update"
        assert found.interleaving.fault_count == 0 and found.interleaving.switches == 2
        anomaly = found.minimal.anomalies[0]
        assert anomaly.key == "stock" and sorted(anomaly.runs) == [0, 1]
        assert [found.minimal.actions[p].step for p in anomaly.actions] == ["check_stock", "reserve", "reserve"]
        assert "update is lost" in found.explanation
        assert found.explains == len(exploration.violations)
        assert set(exploration.violations["anomaly"]) == {"lost update"}

    async def test_a_dirty_read_of_a_compensated_reservation(self) -> None:
        """An order turned away by a reservation that a failed payment then compensates: a dirty read, shrunk
        to one plain fault and two context switches."""
        exploration = await explore_concurrent(two_orders("naive"), world=shop, invariant=no_false_sold_out)
        (found,) = exploration.counterexamples
        assert found.anomaly == "dirty read"
        (faults,) = [schedule for schedule in found.interleaving.faults if schedule]
        assert [(name, fault.mode) for name, fault in faults] == [("charge", "fail")]
        assert found.interleaving.switches == 2
        steps = [(found.minimal.actions[p].step, found.minimal.actions[p].phase) for p in found.minimal.anomalies[0].actions]
        assert steps == [("reserve", "forward"), ("check_stock", "forward"), ("reserve", "compensate")]
        assert found.explains == len(exploration.violations) > 1

    async def test_a_fuzzy_read(self) -> None:
        """A report reading the stock in two steps sees a restock in between: a fuzzy read."""
        exploration = await explore_concurrent([report_saga(), restock_saga()], world=lambda: World(stock=1),
                                               invariant=consistent_report)
        (found,) = exploration.counterexamples
        assert found.anomaly == "fuzzy read"
        assert found.interleaving.text == "0:count 1:restock 0:recount"
        assert found.interleaving.switches == 2

    async def test_a_violation_no_anomaly_explains(self) -> None:
        """Two blind writes race; no read was stale: the violation is named "invariant violated"."""

        def first_wins(world: World, runs: Any) -> None:
            assert world["winner"] == "a", f"{world['winner']} wrote last"

        exploration = await explore_concurrent([writer("a"), writer("b")], world=lambda: World(winner=None),
                                               invariant=first_wins)
        (found,) = exploration.counterexamples
        assert found.anomaly == "invariant violated" and found.minimal.anomalies == ()
        assert found.interleaving.text == "0:set 1:set" and found.interleaving.switches == 1
        assert "b wrote last" in found.explanation
        assert ANOMALIES == ("lost update", "dirty read", "fuzzy read", "invariant violated")


class TestCountermeasures:
    async def test_reread_value_stops_the_oversell_but_not_the_dirty_read(self) -> None:
        """Rereading the stock before writing it removes the lost update; the dirty read remains."""
        oversell = await explore_concurrent(two_orders("reread"), world=shop, invariant=no_oversell)
        assert oversell.ok and oversell.complete
        dirty = await explore_concurrent(two_orders("reread"), world=shop, invariant=no_false_sold_out)
        assert [found.anomaly for found in dirty.counterexamples] == ["dirty read"]

    async def test_a_semantic_lock_passes_an_exhaustive_exploration(self) -> None:
        """Holding the item for the pending order (cleared by confirmation or compensation) removes both
        anomalies under every interleaving, with every single fault and every pair of faults on two runs."""
        exploration = await explore_concurrent(two_orders("locked"), world=shop, invariant=both, pairs=True)
        assert exploration.ok and exploration.complete
        assert len(exploration) > 100
        assert set(exploration.interleavings["faults"]) > {"no faults"}


class TestSearch:
    async def test_exhaustive_counts_with_and_without_reduction(self) -> None:
        """Two runs of five steps on keys of their own: 252 interleavings, one of them after reduction; on one
        shared key, every order matters and none is reduced away."""

        def saga_of(shared: bool) -> sk.Saga:
            def bump(n: int) -> sk.Step:
                def body(data: Any, world: World) -> None:
                    key = "shared" if shared else (data["run"], n)
                    world[key] = world.get(key, 0) + 1
                return step_of(f"s{n}", body)
            return sk.Saga("bumps", [bump(n) for n in range(5)])

        for shared, reduced in ((False, 1), (True, 252)):
            saga = saga_of(shared)
            runs = [(saga, {"run": 0}), (saga, {"run": 1})]
            full = await explore_concurrent(runs, world=World, modes=(), reduce=False)
            fewer = await explore_concurrent(runs, world=World, modes=(), reduce=True)
            assert (len(full), len(fewer)) == (252, reduced)
            assert set(full.interleavings["order"]) >= set(fewer.interleavings["order"])

    async def test_branches_of_a_parallel_stage_run_in_every_order(self) -> None:
        """A parallel stage's branches are actions of their own, explored in both orders."""
        logged = sk.Saga("fan", [sk.parallel(
            step_of("a", lambda data, world: world.__setitem__("log", (*world["log"], "a")) or {}),
            step_of("b", lambda data, world: world.__setitem__("log", (*world["log"], "b")) or {}),
        )])
        other = sk.Saga("other", [step_of("c", lambda data, world: None)])
        logs: set[tuple[str, ...]] = set()

        def collect(world: World, runs: Any) -> None:
            logs.add(world["log"])

        await explore_concurrent([logged, other], world=lambda: World(log=()), invariant=collect, modes=())
        assert logs == {("a", "b"), ("b", "a")}

    async def test_random_search_is_a_function_of_its_seed(self) -> None:
        """Drawn schedules (faults and PCT priorities) repeat with the seed and differ with another."""

        async def search(seed: int) -> ConcurrentExploration:
            return await explore_concurrent(two_orders("naive"), world=shop, invariant=both, search="random",
                                            budget=40, seed=seed, shrink=False)

        first, again, other = await search(3), await search(3), await search(4)
        columns = ["faults", "order", "anomaly", "seed"]
        assert first.interleavings[columns].equals(again.interleavings[columns])
        assert list(first.interleavings["order"]) != list(other.interleavings["order"])
        assert not first.ok and first.search == "random" and not first.complete
        assert set(first.violations["anomaly"]) <= {"lost update", "dirty read"}

    async def test_the_budget_stops_an_exhaustive_search_and_says_so(self) -> None:
        """Out of budget, the exploration is marked incomplete and its summary says so."""
        exploration = await explore_concurrent(two_orders("naive"), world=shop, invariant=both, budget=5, shrink=False)
        assert len(exploration) == 5 and not exploration.complete
        assert "NOT every interleaving" in exploration.summary()

    async def test_checking_after_every_action(self) -> None:
        """A stock that dips below zero and is put back by a compensation holds at the end; checked after
        every action, the dip is a violation, found after the action that made it."""

        def take(data: Any, world: World) -> None:
            world["stock"] = world["stock"] - 1

        def verify(data: Any, world: World) -> None:
            if world["stock"] < 0:
                raise RuntimeError("oversold")

        saga = sk.Saga("take", [step_of("take", take, lambda data, world: world.__setitem__("stock", world["stock"] + 1)),
                                step_of("verify", verify)])

        def never_negative(world: World, runs: Any) -> None:
            assert world["stock"] >= 0, f"stock {world['stock']}"

        runs = [(saga, {"n": 0}), (saga, {"n": 1})]
        at_end = await explore_concurrent(runs, world=lambda: World(stock=1), invariant=never_negative, modes=())
        assert at_end.ok
        every = await explore_concurrent(runs, world=lambda: World(stock=1), invariant=never_negative, modes=(),
                                         check="every action")
        (found,) = every.counterexamples
        assert found.violation.startswith("stock -1")
        after = found.minimal.violated_after
        assert after is not None and found.minimal.actions[after].step == "take"

    async def test_the_invariant_sees_the_runs(self) -> None:
        """The invariant gets each run's Run, by run number, when all have ended."""
        seen: list[tuple[str, ...]] = []

        def statuses(world: World, runs: tuple[sk.Run | None, ...]) -> None:
            seen.append(tuple(run.status for run in runs if run is not None))

        await explore_concurrent(two_orders("naive"), world=shop, invariant=statuses, modes=("fail",))
        assert ("completed", "completed") in seen and ("compensated", "completed") in seen
        assert ("completed", "compensated") in seen


class TestReport:
    async def test_the_frames(self) -> None:
        """One row per interleaving, with the documented columns; one row per counterexample in anomalies."""
        exploration = await explore_concurrent(two_orders("naive"), world=shop, invariant=both)
        assert list(exploration.interleavings.columns) == [
            "interleaving", "kind", "faults", "order", "switches", "actions", "statuses", "stuck", "invariant",
            "violation", "anomaly", "seed",
        ]
        assert list(exploration.interleavings["interleaving"]) == list(range(len(exploration)))
        anomalies = exploration.anomalies
        assert list(anomalies.columns) == ["anomaly", "key", "runs", "explanation", "faults", "switches", "explains",
                                           "interleaving"]
        assert set(anomalies["anomaly"]) == {"lost update", "dirty read"}
        assert set(anomalies["key"]) == {"stock"}

    async def test_the_table_of_an_interleaving(self) -> None:
        """The table lists each action with its run, step, phase, status, the values read and written, and
        marks the actions of the anomaly."""
        exploration = await explore_concurrent(two_orders("naive"), world=shop, invariant=no_oversell)
        frame = exploration.counterexamples[0].table()
        assert list(frame.columns) == ["action", "run", "saga", "step", "phase", "status", "attempts", "reads",
                                       "writes", "anomaly"]
        marked = frame[frame["anomaly"]]
        assert list(marked["step"]) == ["check_stock", "reserve", "reserve"]
        assert marked["reads"].iloc[0] == "hold=None, stock=1" or "stock=1" in marked["reads"].iloc[0]
        assert "stock=0" in marked["writes"].iloc[1] and "stock=0" in marked["writes"].iloc[2]

    async def test_the_timeline_joins_the_conflicting_actions(self) -> None:
        """One lane per run, one box per action, conflicts joined, the anomaly's in red; text for terminals."""
        exploration = await explore_concurrent(two_orders("naive"), world=shop, invariant=no_false_sold_out)
        found = exploration.counterexamples[0]
        view = found.timeline()
        svg = view.svg
        assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg" class="sagakit-timeline"')
        assert svg.count('class="action run-0') + svg.count('class="action run-1') == len(found.minimal.actions)
        assert svg.count("class=\"conflict anomaly\"") == 2
        assert "phase-compensate" in svg and "in-anomaly" in svg and "run 1 (order-naive)" in svg
        bundle = view._repr_mimebundle_()
        assert bundle["text/plain"] == view.to_text() and "sagakit-timeline" in bundle["text/html"]
        assert "* dirty read:" in view.to_text()
        page = exploration._repr_mimebundle_()
        assert 'data-anomaly="dirty read"' in page["text/html"]
        assert "counterexample 1: dirty read" in page["text/plain"]

    async def test_secrets_stay_out_of_every_report(self) -> None:
        """A card kept in the world, and repeated by the invariant's message, is masked in the table, the
        timeline, the explanation and the frames."""
        card = "4111 1111 1111 1111"

        def pay(data: Any, world: World) -> None:
            world["card"] = data["card"]
            world["total"] = world["total"] + 1

        def charge_once(world: World, runs: Any) -> None:
            assert world["total"] == 2, f"card {world['card']} charged {world['total']} times"

        saga = sk.Saga("pay", [step_of("read", lambda data, world: {**data, "seen": world["total"]}),
                               step_of("pay", lambda data, world: world.__setitem__("total", data["seen"] + 1)),
                               step_of("keep", pay)])
        runs = [(saga, {"card": card, "n": 0}), (saga, {"card": card, "n": 1})]
        exploration = await explore_concurrent(runs, world=lambda: World(total=0, card=None),
                                               invariant=charge_once, modes=())
        found = exploration.counterexamples[0]
        texts = [found.table().to_csv(), found.timeline().svg, found.timeline().to_text(), found.explanation,
                 found.violation, exploration.to_text(), exploration.to_html(), exploration.interleavings.to_csv(),
                 exploration.anomalies.to_csv(), repr(found)]
        for text in texts:
            assert card not in text and card.replace(" ", "") not in text
        assert "card=[REDACTED]" in found.table().to_csv()


class TestBadInput:
    @pytest.mark.parametrize(
        ("runs", "options", "error", "message"),
        [
            ("one", {}, TypeError, "explore_concurrent runs: expected a list of sagas or (saga, data) pairs"),
            ([order_saga()], {}, ValueError, "explore_concurrent runs: expected at least two runs to interleave, got 1; "
                                             "explore one run with sagakit.explore.explore"),
            ([order_saga(), "saga"], {}, TypeError, "explore_concurrent runs[1]: expected a Saga or a (saga, data) pair"),
            ([order_saga(), order_saga()], {}, ValueError, "explore_concurrent runs[1]: a second saga named 'order-naive'"),
            (None, {"world": None}, TypeError, "explore_concurrent world: expected a factory callable"),
            (None, {"world": World()}, TypeError, "explore_concurrent world: expected a factory callable"),
            (None, {"invariant": "no oversell"}, TypeError, "explore_concurrent invariant: expected a callable"),
            (None, {"budget": 0}, ValueError, "explore_concurrent budget: expected an int >= 1, got 0"),
            (None, {"budget": 10**9}, ValueError, "explore_concurrent budget: expected at most 100,000"),
            (None, {"budget": "10"}, TypeError, "explore_concurrent budget: expected an int >= 1, got str"),
            (None, {"seed": -1}, ValueError, "explore_concurrent seed: expected an int >= 0 or None, got -1"),
            (None, {"seed": 1.5}, TypeError, "explore_concurrent seed: expected an int >= 0 or None, got float"),
            (None, {"depth": 0}, ValueError, "explore_concurrent depth: expected an int >= 1, got 0"),
            (None, {"check": "sometimes"}, ValueError, "explore_concurrent check: expected 'end' or 'every action'"),
            (None, {"search": "clever"}, ValueError, "explore_concurrent search: expected 'exhaustive' or 'random'"),
            (None, {"reduce": "yes"}, TypeError, "explore_concurrent reduce: expected True or False"),
            (None, {"modes": ["explode"]}, sk.FaultError, "explore_concurrent modes: unknown mode 'explode'"),
            (None, {"observers": print}, TypeError, "explore_concurrent observers: expected an iterable"),
        ],
    )
    async def test_each_refusal_names_the_argument(self, runs: Any, options: dict[str, Any], error: type[Exception],
                                                   message: str) -> None:
        """Bad input fails before anything runs, naming the argument and what was expected."""
        made: list[World] = []

        def world() -> World:
            made.append(shop())
            return made[-1]

        arguments: dict[str, Any] = {"world": world, **options}
        with pytest.raises(error) as caught:
            await explore_concurrent(two_orders() if runs is None else runs, **arguments)
        assert message in str(caught.value)
        assert made == []

    async def test_sagas_may_share_step_names(self) -> None:
        """Actions are named by run and step, so two different sagas may both have a step called 'set'."""
        exploration = await explore_concurrent([writer("a"), writer("b")], world=lambda: World(winner=None))
        assert set(exploration.interleavings["order"]) == {"0:set 1:set", "1:set 0:set"}


class TestCancellationAndTwins:
    async def test_a_timeout_ends_a_long_search(self) -> None:
        """The search runs on its own loop; a timeout around it fires and ends it part-way."""
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await explore_concurrent(two_orders(), world=shop, invariant=both, search="random", budget=100_000)

    def test_the_sync_twin_outside_a_loop(self) -> None:
        """explore_concurrent_sync explores from plain code and finds the same anomaly."""
        exploration = explore_concurrent_sync(two_orders(), world=shop, invariant=no_oversell)
        assert [found.anomaly for found in exploration.counterexamples] == ["lost update"]

    async def test_the_sync_twin_inside_a_running_loop(self) -> None:
        """Inside a running loop it works too, on a worker thread."""
        exploration = explore_concurrent_sync(two_orders(), world=shop, invariant=no_oversell, modes=())
        assert not exploration.ok

    async def test_progress_counts_interleavings(self) -> None:
        """A progress callable receives (done, total), ending at the number explored."""
        calls: list[tuple[int, int]] = []
        exploration = await explore_concurrent(two_orders(), world=shop, modes=(),
                                               progress=lambda done, total: calls.append((done, total)))
        assert calls[-1] == (len(exploration), len(exploration))
