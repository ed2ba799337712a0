"""The pytest plugin, driven by ``pytester`` in a separate pytest process, as users meet it."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SHOP = (Path(__file__).parent / "testing_shop.py").read_text()


def write_test(pytester: pytest.Pytester, *, fixed: bool, name: str = "test_order") -> None:
    """A test module exploring the order saga (leaky or fixed), recording its scenarios."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        **{
            name: SHOP
            + textwrap.dedent(
                f"""
                saga = order_saga(fixed={fixed})


                def test_the_order_saga_never_leaks_money():
                    try:
                        exploration = asyncio.run(sagakit.testing.assert_invariant(
                            saga, ORDER, world=Shop, invariant=no_money_without_an_order))
                    except sagakit.testing.InvariantViolated as failure:
                        exploration = failure.exploration
                        raise
                    finally:
                        with open("scenarios.json", "w") as file:
                            json.dump(list(exploration.scenarios["label"]), file)
                """
            )
        }
    )


def test_a_leaky_saga_fails_with_its_minimal_counterexample_and_a_replay_that_reproduces_it(
    pytester: pytest.Pytester,
) -> None:
    """The leak needs only a lost charge response: the failure shows that one fault, the seed,
    what ran, and a replay line which, run on its own, fails with the same violation."""
    write_test(pytester, fixed=False)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--sagakit-seed=11", "--sagakit-budget=60")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "minimal faults: {'charge_payment': 'fail_after'}" in output
    assert "violation:      charged without an order: [7]" in output
    assert "ran:            steps: reserve_inventory ok, charge_payment FAILED (InjectedFault) [injected]" in output
    assert "--sagakit-seed=11" in output
    assert "exploration seed 11: repeat with --sagakit-seed=11" in output  # the report section
    replay = re.search(r"replay: +(await sagakit\.testing\.replay\(.*\))$", output, re.MULTILINE)
    assert replay is not None, output
    line = replay.group(1)
    assert line == (
        "await sagakit.testing.replay(saga, {'order_id': 7, 'amount': 30.0}, faults={'charge_payment': 'fail_after'}, "
        "world=Shop, invariant=no_money_without_an_order)"
    )

    pytester.makepyfile(
        test_replay=SHOP
        + "\nsaga = order_saga(fixed=False)\n\n\ndef test_replay():\n"
        + f"    async def main():\n        {line}\n\n    asyncio.run(main())\n"
    )
    replayed = pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_replay.py")
    replayed.assert_outcomes(failed=1)
    replayed.stdout.fnmatch_lines(
        ["*InvariantViolated: saga 'order' under charge_payment=fail_after: charged without an order: [[]7[]]*"]
    )


def test_the_fixed_saga_passes_and_coverage_is_printed(pytester: pytest.Pytester) -> None:
    """Refunding a charge whose response was lost keeps the invariant under every schedule;
    ``--sagakit-coverage`` prints the failure points the exploration reached."""
    write_test(pytester, fixed=True)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--sagakit-seed=5", "--sagakit-budget=60", "--sagakit-coverage"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "sagakit: exploration seed 5, budget 60 (repeat with --sagakit-seed=5)",
            "*sagakit exploration*",
            "1 exploration, 0 with violations; seed 5 (repeat with --sagakit-seed=5)",
            "*test_the_order_saga_never_leaks_money: saga 'order'*0 violate the invariant",
            "Coverage of saga 'order': * of 13 failure points exercised (0 violated)*",
            "step * fail * fail_after * fail_compensation * cancel * cancel_compensation",
            "charge_payment * explored *",
        ]
    )


def test_the_seed_option_repeats_the_same_scenarios(pytester: pytest.Pytester) -> None:
    """Two sessions with one ``--sagakit-seed`` draw the same scenarios; another seed draws
    others; ``--sagakit-budget`` sets how many are drawn."""
    write_test(pytester, fixed=True)
    drawn = []
    for seed, budget in ((3, 60), (3, 60), (4, 60), (3, 5)):
        pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", f"--sagakit-seed={seed}", f"--sagakit-budget={budget}"
        ).assert_outcomes(passed=1)
        drawn.append(json.loads((pytester.path / "scenarios.json").read_text()))
    assert drawn[0] == drawn[1]
    assert drawn[0] != drawn[2]
    # The exhaustive scenarios come first whatever the seed; the drawn ones follow.
    exhaustive = next(i for i, (a, b) in enumerate(zip(drawn[0], drawn[2], strict=False)) if a != b)
    assert exhaustive > 10 and len(drawn[0]) - exhaustive > 20
    assert 0 < len(drawn[3]) - exhaustive <= 5 and drawn[3] == drawn[0][: len(drawn[3])]


def test_the_failure_output_carries_no_secret(pytester: pytest.Pytester) -> None:
    """A card that travelled under ``card`` and is repeated by the invariant's message appears nowhere in
    the session's output: the violation line masks it, the replay line names the input ``data``."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        test_card=SHOP
        + textwrap.dedent(
            """
            CARD = "4111 1111 1111 1111"


            def no_charge_without_an_order(world, run):
                leaked = [order for order in world.charges if order not in world.orders]
                assert not leaked, f"card {CARD} charged without an order: {leaked}"


            def test_card():
                asyncio.run(sagakit.testing.assert_invariant(
                    order_saga(), {**ORDER, "card": CARD}, world=Shop, invariant=no_charge_without_an_order))
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--sagakit-seed=2", "--sagakit-budget=20")
    result.assert_outcomes(failed=1)
    output = result.stdout.str() + result.stderr.str()
    assert "4111 1111 1111 1111" not in output.replace("CARD = \"4111 1111 1111 1111\"", "")
    assert "4111111111111111" not in output
    assert "violation:      card [REDACTED] charged without an order: [7]" in output
    assert "replay:         await sagakit.testing.replay(saga, data, faults={'charge_payment': 'fail_after'}" in output


ISOLATION_SHOP = (Path(__file__).resolve().parents[1] / "explore" / "isolation_shop.py").read_text()


def test_a_concurrent_violation_reports_the_anomaly_and_a_replay_that_reproduces_it(pytester: pytest.Pytester) -> None:
    """assert_isolated fails with each anomaly's name, its minimal interleaving and the line that replays it;
    that line, run in another session, fails with the same anomaly. A card kept in the world and repeated
    by the invariant's message appears nowhere in the output."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        test_orders=ISOLATION_SHOP
        + textwrap.dedent(
            """
            import asyncio
            import sagakit.testing

            CARD = "4111 1111 1111 1111"


            def shop_with_card():
                world = shop()
                world["card"] = CARD
                return world


            def no_oversell_of_card(world, runs):
                assert len(world["orders"]) + world["stock"] == 1, f"oversold; card {world['card']}"


            def test_two_orders_for_the_last_item():
                asyncio.run(sagakit.testing.assert_isolated(two_orders("naive"), world=shop_with_card,
                                                            invariant=no_oversell_of_card, modes=()))
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "counterexample 1 of 1: lost update (no faults; 2 context switches, 0 faults;" in output
    assert "anomaly:        run 0's step 'check_stock' read 'stock' = 1" in output
    assert "violation:      oversold; card [REDACTED]" in output
    assert "4111 1111 1111 1111" not in output.replace('CARD = "4111 1111 1111 1111"', "")
    assert "test_two_orders_for_the_last_item: run 0 (order-naive), run 1 (order-naive), 6 interleavings (concurrent " \
        "exhaustive" in output  # the session summary
    replay = re.search(r"replay: +(await sagakit\.testing\.replay_interleaving\(runs, .*\))$", output, re.MULTILINE)
    assert replay is not None, output
    pytester.makepyfile(
        test_replay=ISOLATION_SHOP
        + textwrap.dedent(
            """
            import asyncio
            import sagakit.testing
            from test_orders import no_oversell_of_card, shop_with_card

            runs = two_orders("naive")
            world, invariant = shop_with_card, no_oversell_of_card


            def test_replay():
                async def main():
            """
        )
        + f"        {replay.group(1).replace('world=shop_with_card', 'world=world').replace('invariant=no_oversell_of_card', 'invariant=invariant')}\n\n"
        + "    asyncio.run(main())\n"
    )
    replayed = pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_replay.py")
    replayed.assert_outcomes(failed=1)
    replayed.stdout.fnmatch_lines(["*InvariantViolated: run 0 (order-naive), run 1 (order-naive) in the order *lost update*"])


def test_the_seed_and_budget_options_apply_to_random_concurrent_search(pytester: pytest.Pytester) -> None:
    """--sagakit-seed and --sagakit-budget set a random concurrent search: one seed draws the same
    interleavings twice, another seed others, the budget how many."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        test_random=ISOLATION_SHOP
        + textwrap.dedent(
            """
            import asyncio, json
            import sagakit.testing


            def test_random_orders():
                exploration = asyncio.run(sagakit.testing.assert_isolated(
                    two_orders("locked"), world=shop, invariant=both, search="random"))
                with open("orders.json", "w") as file:
                    json.dump(list(exploration.interleavings["order"]), file)
            """
        )
    )
    drawn = []
    for seed, budget in ((3, 30), (3, 30), (4, 30), (3, 7)):
        pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", f"--sagakit-seed={seed}", f"--sagakit-budget={budget}"
        ).assert_outcomes(passed=1)
        drawn.append(json.loads((pytester.path / "orders.json").read_text()))
    assert drawn[0] == drawn[1] and len(drawn[0]) == 30
    assert drawn[0] != drawn[2]
    assert drawn[3] == drawn[0][:7]


PIVOT_SHOP = (Path(__file__).parents[1] / "explore" / "pivot_shop.py").read_text()


def test_stuck_runs_are_counted_and_never_stuck_fails_saying_where(pytester: pytest.Pytester) -> None:
    """The session summary counts the scenarios that ended stuck; an assertion with allow_stuck=False
    fails saying at which step each minimal scenario got stuck, and its replay line, run in another
    session, fails the same way."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        test_checkout=PIVOT_SHOP
        + textwrap.dedent(
            """
            import asyncio
            import sagakit.testing

            saga = checkout_saga(idempotent=True)


            def test_stuck_is_allowed():
                asyncio.run(sagakit.testing.assert_invariant(saga, CHECKOUT, world=Warehouse, invariant=one_parcel))


            def test_never_stuck():
                asyncio.run(sagakit.testing.assert_invariant(saga, CHECKOUT, world=Warehouse, invariant=one_parcel,
                                                             allow_stuck=False))
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--sagakit-seed=4", "--sagakit-budget=30")
    result.assert_outcomes(passed=1, failed=1)
    output = result.stdout.str()
    assert "violation:      stuck at 'ship' after its pivot 'capture' (InjectedFault: " in output
    assert "; status: stuck at 'ship'" in output
    summary = re.search(r"test_never_stuck: saga 'checkout', \d+ scenarios \(random, seed 4\), (\d+) violate the "
                        r"invariant, (\d+) end stuck", output)
    assert summary is not None, output
    assert summary.group(1) == summary.group(2) != "0"  # every stuck scenario, and only those, violates
    replay = re.search(r"replay: +(await sagakit\.testing\.replay\(.*allow_stuck=False\))$", output, re.MULTILINE)
    assert replay is not None, output
    pytester.makepyfile(
        test_replay=PIVOT_SHOP
        + "\nimport asyncio\nimport sagakit.testing\n\nsaga = checkout_saga(idempotent=True)\n\n\ndef test_replay():\n"
        + f"    async def main():\n        {replay.group(1)}\n\n    asyncio.run(main())\n"
    )
    replayed = pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_replay.py")
    replayed.assert_outcomes(failed=1)
    replayed.stdout.fnmatch_lines(["*InvariantViolated: saga 'checkout' under ship=fail: stuck at 'ship'*"])
