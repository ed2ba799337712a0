"""``assert_isolated`` and ``replay_interleaving`` in this process, under this session's plugin."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "explore"))

from isolation_shop import both, no_oversell, shop, two_orders

import sagakit.testing


class TestAssertIsolated:
    async def test_a_semantic_lock_passes(self) -> None:
        """An exhaustive exploration that holds returns the exploration, complete."""
        exploration = await sagakit.testing.assert_isolated(two_orders("locked"), world=shop, invariant=both)
        assert exploration.ok and exploration.complete and exploration.search == "exhaustive"

    async def test_a_violation_names_the_anomaly_and_prints_the_line_that_replays_it(self) -> None:
        """The failure lists each minimal counterexample: the anomaly, its explanation, the violation, the
        order and timeline, and a replay line whose plain data runs again and fails the same way."""
        with pytest.raises(sagakit.testing.InvariantViolated) as caught:
            await sagakit.testing.assert_isolated(two_orders("naive"), world=shop, invariant=both)
        failure = caught.value
        assert isinstance(failure, AssertionError)
        message = str(failure)
        assert message.startswith("run 0 (order-naive), run 1 (order-naive) violate both in ")
        assert "(search=exhaustive)" in message
        assert [c.anomaly for c in failure.counterexamples] == ["lost update", "dirty read"]  # type: ignore[union-attr]
        assert "counterexample 1 of 2: lost update (no faults; 2 context switches, 0 faults;" in message
        assert "counterexample 2 of 2: dirty read (run 0: charge=fail; 2 context switches, 1 fault;" in message
        assert "  timeline:\n" in message and "* lost update:" in message
        lines = re.findall(r"replay: +await sagakit\.testing\.replay_interleaving\(runs, (\{.*\}), world=shop, "
                           r"invariant=both\)$", message, re.MULTILINE)
        assert len(lines) == 2
        data = ast.literal_eval(lines[1])
        with pytest.raises(sagakit.testing.InvariantViolated, match="dirty read: run 1's step 'check_stock' read"):
            await sagakit.testing.replay_interleaving(two_orders("naive"), data, world=shop, invariant=both)
        result = await sagakit.testing.replay_interleaving(two_orders("naive"), data, world=shop)
        assert not result.violated and result.holds is None

    async def test_an_exhaustive_search_cut_short_fails(self) -> None:
        """A budget that ends the exhaustive search early fails the assertion, saying so and what to do."""
        with pytest.raises(sagakit.testing.InvariantViolated, match=r"the exhaustive search stopped after 5 "
                                                                    r"interleavings, so isolation is not shown"):
            await sagakit.testing.assert_isolated(two_orders("locked"), world=shop, invariant=both, budget=5)

    async def test_random_search_uses_the_session_seed_and_budget(self, sagakit_seed: int,
                                                                 sagakit_budget: int) -> None:
        """With search="random" the plugin's seed and budget apply."""
        exploration = await sagakit.testing.assert_isolated(two_orders("locked"), world=shop, invariant=both,
                                                            search="random")
        assert exploration.seed == sagakit_seed and len(exploration) == sagakit_budget

    async def test_the_invariant_is_required(self) -> None:
        """Without a callable invariant there is nothing to assert."""
        with pytest.raises(TypeError, match=r"assert_isolated invariant: expected a callable invariant\(world, runs\)"):
            await sagakit.testing.assert_isolated(two_orders(), world=shop, invariant=None)  # type: ignore[arg-type]


class TestSyncTwins:
    def test_in_plain_code(self) -> None:
        """assert_isolated_sync and replay_interleaving_sync work from a plain test function."""
        with pytest.raises(sagakit.testing.InvariantViolated) as caught:
            sagakit.testing.assert_isolated_sync(two_orders("naive"), world=shop, invariant=no_oversell)
        found = caught.value.counterexamples[0]
        with pytest.raises(sagakit.testing.InvariantViolated, match="lost update"):
            sagakit.testing.replay_interleaving_sync(two_orders("naive"), found, world=shop,  # type: ignore[arg-type]
                                                     invariant=no_oversell)
        assert sagakit.testing.assert_isolated_sync(two_orders("locked"), world=shop, invariant=both).ok

    async def test_inside_a_running_loop(self) -> None:
        """Called from a coroutine, the twin runs on a worker thread and still answers."""
        assert sagakit.testing.assert_isolated_sync(two_orders("reread"), world=shop, invariant=no_oversell).ok
