"""``assert_invariant`` and ``replay`` in this process, under this session's plugin."""

from __future__ import annotations

import subprocess
import sys

import pytest
from testing_shop import ORDER, Shop, no_money_without_an_order, order_saga

import sagakit.testing


class TestAssertInvariant:
    async def test_a_holding_invariant_returns_the_exploration_with_the_session_seed(
        self, sagakit_seed: int, sagakit_budget: int
    ) -> None:
        """Under the plugin the search uses the session's seed and budget, and passes."""
        exploration = await sagakit.testing.assert_invariant(
            order_saga(fixed=True), ORDER, world=Shop, invariant=no_money_without_an_order
        )
        assert exploration.ok and exploration.search == "random"
        assert exploration.seed == sagakit_seed
        drawn = exploration.scenarios[exploration.scenarios["kind"] == "random"]
        assert 0 < len(drawn) <= sagakit_budget

    async def test_a_violation_lists_its_minimal_counterexample(self) -> None:
        """The error is an AssertionError carrying the seed and the counterexamples; its
        message has the minimal faults, the violation, what ran and the replay line."""
        with pytest.raises(sagakit.testing.InvariantViolated) as caught:
            await sagakit.testing.assert_invariant(
                order_saga(), ORDER, world=Shop, invariant=no_money_without_an_order, budget=30, seed=2
            )
        failure = caught.value
        assert isinstance(failure, AssertionError) and failure.seed == 2
        assert [c.scenario.plan for c in failure.counterexamples] == [{"charge_payment": "fail_after"}]
        message = str(failure)
        assert message.startswith("saga 'order' violates no_money_without_an_order in ")
        assert "(search=random, seed=2)" in message and "--sagakit-seed=2" in message
        assert "faults={'charge_payment': 'fail_after'}, world=Shop, invariant=no_money_without_an_order)" in message

    async def test_the_invariant_is_required(self) -> None:
        """Without a callable invariant there is nothing to assert: a TypeError says so."""
        with pytest.raises(TypeError, match=r"assert_invariant invariant: expected a callable invariant\(world, run\)"):
            await sagakit.testing.assert_invariant(order_saga(), ORDER, invariant=None)  # type: ignore[arg-type]


class TestReplay:
    async def test_replay_raises_on_a_violation_and_returns_the_run_otherwise(self) -> None:
        """``replay`` reproduces a violation as an AssertionError, and returns a good run."""
        saga = order_saga()
        with pytest.raises(sagakit.testing.InvariantViolated, match=r"charge_payment=fail_after: charged without"):
            await sagakit.testing.replay(
                saga, ORDER, faults={"charge_payment": "fail_after"}, world=Shop, invariant=no_money_without_an_order
            )
        run = await sagakit.testing.replay(
            saga, ORDER, faults={"ship_order": "cancel"}, world=Shop, invariant=no_money_without_an_order
        )
        assert run.status == "cancelled"
        assert len(saga.history) == 0


def test_the_plugin_loads_without_the_exploration_machinery() -> None:
    """pytest loads the plugin in every session: it must not import pandas or the explorer."""
    code = (
        "import sys, sagakit.testing._plugin\n"
        "print(sorted(m for m in ('pandas', 'numpy', 'sagakit.explore', 'IPython') if m in sys.modules))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"
