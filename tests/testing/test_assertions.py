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


CARD = "4111 1111 1111 1111"


def card_leak(world: Shop, run: sagakit.Run) -> None:
    """The leak invariant, with a message that repeats the card the run carried."""
    leaked = [order for order in world.charges if order not in world.orders]
    assert not leaked, f"card {CARD} charged without an order: {leaked}"


class TestSecrets:
    async def test_the_failure_message_carries_no_card_and_names_secret_input(self) -> None:
        """The violation line masks the card; the replay line names input holding a secret instead of
        printing it (and prints plain input as a literal)."""
        data = {**ORDER, "card": CARD}
        with pytest.raises(sagakit.testing.InvariantViolated) as caught:
            await sagakit.testing.assert_invariant(order_saga(), data, world=Shop, invariant=card_leak, budget=10,
                                                   seed=1)
        message = str(caught.value)
        assert CARD not in message and CARD.replace(" ", "") not in message
        assert "violation:      card [REDACTED] charged without an order: [7]" in message
        assert "await sagakit.testing.replay(saga, data, faults={'charge_payment': 'fail_after'}" in message
        with pytest.raises(sagakit.testing.InvariantViolated) as replayed:
            await sagakit.testing.replay(order_saga(), data, faults={"charge_payment": "fail_after"}, world=Shop,
                                         invariant=card_leak)
        assert CARD not in str(replayed.value) and "card [REDACTED] charged" in str(replayed.value)


class TestSyncTwins:
    def test_assert_invariant_sync_and_replay_sync_in_plain_code(self) -> None:
        """The synchronous twins pass, fail and replay as the coroutines do."""
        passed = sagakit.testing.assert_invariant_sync(
            order_saga(fixed=True), ORDER, world=Shop, invariant=no_money_without_an_order, budget=10, seed=3
        )
        assert passed.ok
        with pytest.raises(sagakit.testing.InvariantViolated, match=r"minimal faults: \{'charge_payment': 'fail_after'\}"):
            sagakit.testing.assert_invariant_sync(
                order_saga(), ORDER, world=Shop, invariant=no_money_without_an_order, budget=10, seed=3
            )
        run = sagakit.testing.replay_sync(order_saga(), ORDER, faults={"ship_order": "fail"}, world=Shop,
                                          invariant=no_money_without_an_order)
        assert run.status == "compensated"

    async def test_the_twins_work_inside_a_running_loop(self) -> None:
        """Called from a coroutine (a notebook cell), the twins run on a worker thread and still answer."""
        with pytest.raises(sagakit.testing.InvariantViolated, match="charged without an order"):
            sagakit.testing.replay_sync(order_saga(), ORDER, faults={"charge_payment": "fail_after"}, world=Shop,
                                        invariant=no_money_without_an_order)


def test_the_plugin_loads_without_the_exploration_machinery() -> None:
    """pytest loads the plugin (its ``pytest11`` entry point) in every session: it must not import pandas
    or the explorer."""
    code = (
        "import sys\n"
        "from importlib.metadata import entry_points\n"
        "(plugin,) = [e for e in entry_points(group='pytest11') if e.name == 'sagakit']\n"
        "plugin.load()\n"
        "print(sorted(m for m in ('pandas', 'numpy', 'sagakit.explore', 'IPython') if m in sys.modules))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"
