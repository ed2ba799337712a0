"""Stuck runs in test assertions: allowed by default, refused with ``allow_stuck=False``, said plainly."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "explore"))

from pivot_shop import CHECKOUT, Warehouse, checkout_saga, one_parcel
from test_concurrent_pivots import paid_means_shipped, store, two

import sagakit as sk
import sagakit.testing


def holds(world: Warehouse, run: sk.Run) -> None:
    """An invariant with nothing to say: only allow_stuck decides."""


class TestAssertInvariant:
    async def test_stuck_runs_are_allowed_by_default_and_checked_by_the_invariant(self) -> None:
        """The idempotent checkout holds one parcel per order in every scenario, stuck ones included."""
        exploration = await sagakit.testing.assert_invariant(
            checkout_saga(idempotent=True), CHECKOUT, world=Warehouse, invariant=one_parcel, budget=40, seed=1)
        assert exploration.ok and len(exploration.stuck) > 0

    async def test_never_stuck_fails_saying_where_each_run_got_stuck(self) -> None:
        """With allow_stuck=False each stuck scenario is a violation: the minimal ones say
        "stuck at <step>", what ran, and the replay line carries allow_stuck=False."""
        with pytest.raises(sagakit.testing.InvariantViolated) as caught:
            await sagakit.testing.assert_invariant(
                checkout_saga(idempotent=True), CHECKOUT, world=Warehouse, invariant=one_parcel, budget=40, seed=1,
                allow_stuck=False)
        failure = caught.value
        plans = [example.scenario.plan for example in failure.counterexamples]  # type: ignore[union-attr]
        assert plans == [{"ship": "fail"}, {"confirm": "fail"}]
        message = str(failure)
        assert ("violation:      stuck at 'ship' after its pivot 'capture' (InjectedFault: injected fault 'fail' "
                "on step 'ship'); nothing was compensated, and allow_stuck=False") in message
        assert "ship FAILED (InjectedFault) [injected]; status: stuck at 'ship'" in message
        lines = re.findall(r"replay: +await sagakit\.testing\.replay\(saga, (\{.*?\}), faults=(\{.*?\}), "
                           r"world=Warehouse, invariant=one_parcel, allow_stuck=False\)$", message, re.MULTILINE)
        assert len(lines) == 2
        data, faults = (ast.literal_eval(part) for part in lines[0])
        with pytest.raises(sagakit.testing.InvariantViolated, match=r"under ship=fail: stuck at 'ship'"):
            await sagakit.testing.replay(checkout_saga(idempotent=True), data, faults=faults, world=Warehouse,
                                         invariant=one_parcel, allow_stuck=False)
        run = await sagakit.testing.replay(checkout_saga(idempotent=True), data, faults=faults, world=Warehouse,
                                           invariant=one_parcel)
        assert run.status == "stuck"

    async def test_the_invariant_speaks_first(self) -> None:
        """A stuck run that also violates the invariant fails with the invariant's own message."""
        with pytest.raises(sagakit.testing.InvariantViolated, match="under ship=fail_after: stuck with 3 parcels"):
            await sagakit.testing.replay(checkout_saga(), CHECKOUT, faults={"ship": "fail_after"}, world=Warehouse,
                                         invariant=one_parcel, allow_stuck=False)
        with pytest.raises(sagakit.testing.InvariantViolated) as caught:
            await sagakit.testing.assert_invariant(
                checkout_saga(), CHECKOUT, world=Warehouse, invariant=one_parcel, budget=20, seed=1, allow_stuck=False)
        violations = {example.scenario.label: example.violation
                      for example in caught.value.counterexamples}  # type: ignore[union-attr]
        # The stuck lost response shrinks to the plain failure (stuck too); the retried one keeps its own story.
        assert violations["ship=fail"].startswith("stuck at 'ship'")
        assert violations["ship=fail_after (first attempt)"] == "completed with 2 parcels"

    def test_the_sync_twins_take_allow_stuck(self) -> None:
        """assert_invariant_sync and replay_sync refuse stuck runs as the coroutines do."""
        with pytest.raises(sagakit.testing.InvariantViolated, match="stuck at 'confirm'"):
            sagakit.testing.assert_invariant_sync(checkout_saga(idempotent=True), CHECKOUT, world=Warehouse,
                                                  invariant=holds, search="exhaustive", allow_stuck=False)
        with pytest.raises(sagakit.testing.InvariantViolated, match="stuck at 'ship'"):
            sagakit.testing.replay_sync(checkout_saga(), CHECKOUT, faults={"ship": "fail"}, world=Warehouse,
                                        allow_stuck=False)

    @pytest.mark.parametrize("value", [None, 0, "no"])
    async def test_allow_stuck_must_be_a_bool(self, value: object) -> None:
        """A TypeError names the function and the argument, before anything runs."""
        with pytest.raises(TypeError, match=r"assert_invariant allow_stuck: expected True or False"):
            await sagakit.testing.assert_invariant(checkout_saga(), CHECKOUT, world=Warehouse, invariant=holds,
                                                   allow_stuck=value)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"replay allow_stuck: expected True or False"):
            await sagakit.testing.replay(checkout_saga(), CHECKOUT, faults={}, allow_stuck=value)  # type: ignore[arg-type]


class TestAssertIsolated:
    async def test_a_run_stuck_because_of_another_fails_with_the_anomaly_and_where_it_stuck(self) -> None:
        """Two orders for the last item, shipped after the payment: never stuck is refused by a fuzzy
        read; the violation names the stuck run and step, the replay line carries allow_stuck=False."""
        with pytest.raises(sagakit.testing.InvariantViolated) as caught:
            await sagakit.testing.assert_isolated(two(), world=store, invariant=holds_always, modes=(),
                                                  allow_stuck=False)
        message = str(caught.value)
        assert "fuzzy read" in message
        assert re.search(r"violation: +run [01] \(checkout-naive\) stuck at 'ship' after its pivot 'pay' "
                         r"\(OutOfStock: (ann|bob)\)", message), message
        lines = re.findall(r"replay: +await sagakit\.testing\.replay_interleaving\(runs, (\{.*\}), world=store, "
                           r"invariant=holds_always, allow_stuck=False\)$", message, re.MULTILINE)
        assert lines
        data = ast.literal_eval(lines[0])
        with pytest.raises(sagakit.testing.InvariantViolated, match="stuck at 'ship'"):
            await sagakit.testing.replay_interleaving(two(), data, world=store, invariant=holds_always,
                                                      allow_stuck=False)
        result = sagakit.testing.replay_interleaving_sync(two(), data, world=store, invariant=holds_always)
        assert "stuck" in [run.status for run in result.runs]

    async def test_stuck_runs_pass_by_default_when_the_invariant_allows_them(self) -> None:
        """allow_stuck defaults to True: the invariant alone decides."""
        exploration = await sagakit.testing.assert_isolated(two(), world=store, invariant=holds_always, modes=())
        assert exploration.ok and exploration.interleavings["stuck"].max() == 1
        with pytest.raises(sagakit.testing.InvariantViolated, match="paid, never shipped"):
            await sagakit.testing.assert_isolated(two(), world=store, invariant=paid_means_shipped, modes=())

    async def test_allow_stuck_must_be_a_bool(self) -> None:
        with pytest.raises(TypeError, match=r"assert_isolated allow_stuck: expected True or False"):
            await sagakit.testing.assert_isolated(two(), world=store, invariant=holds_always,
                                                  allow_stuck=1)  # type: ignore[arg-type]


def holds_always(world: object, runs: object) -> None:
    """A concurrent invariant with nothing to say."""
