"""The seed document's three real-world sagas, run against in-memory fake services.

Each saga is written as the seed writes it (``CompensationPrimitive`` over tuples); every
failure point is injected and the services' end state is checked.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pytest
from seed_services import Auth, Inventory, KeyValue, Outbox, Payments, Shipping

from sagakit import (
    CompensationError,
    CompensationPrimitive,
    InjectedFault,
    RetryPrimitive,
    TimeoutPrimitive,
    WorkflowContext,
)


@dataclass
class Shop:
    inventory: Inventory = field(default_factory=Inventory)
    payments: Payments = field(default_factory=Payments)
    shipping: Shipping = field(default_factory=Shipping)

    def state(self) -> dict[str, Any]:
        return {
            "stock": dict(self.inventory.stock),
            "reservations": dict(self.inventory.reservations),
            "charges": dict(self.payments.charges),
            "shipments": dict(self.shipping.shipments),
        }


def order_workflow(shop: Shop, *, policies: bool = False) -> CompensationPrimitive:
    async def reserve_inventory(data: dict[str, Any], context: WorkflowContext) -> dict[str, Any]:
        reservation_id = await shop.inventory.reserve(product_id=data["product_id"], quantity=data["quantity"])
        return {**data, "reservation_id": reservation_id}

    async def release_inventory(data: dict[str, Any], context: WorkflowContext) -> None:
        await shop.inventory.release(data["reservation_id"])

    async def charge_payment(data: dict[str, Any], context: WorkflowContext) -> dict[str, Any]:
        charge_id = await shop.payments.charge(customer_id=data["customer_id"], amount=data["amount"])
        return {**data, "charge_id": charge_id}

    async def refund_payment(data: dict[str, Any], context: WorkflowContext) -> None:
        await shop.payments.refund(data["charge_id"])

    async def ship_order(data: dict[str, Any], context: WorkflowContext) -> dict[str, Any]:
        tracking_id = await shop.shipping.ship(address=data["address"], items=[data["product_id"]])
        return {**data, "tracking_id": tracking_id}

    async def cancel_shipment(data: dict[str, Any], context: WorkflowContext) -> None:
        await shop.shipping.cancel(data["tracking_id"])

    if policies:  # the seed's "Combine with Other Primitives" form
        return CompensationPrimitive(
            primitives=[
                (RetryPrimitive(reserve_inventory, max_retries=3, initial_delay=0), release_inventory),
                (TimeoutPrimitive(charge_payment, timeout=10), refund_payment),
                (ship_order, cancel_shipment),
            ]
        )
    return CompensationPrimitive(
        primitives=[
            (reserve_inventory, release_inventory),
            (charge_payment, refund_payment),
            (ship_order, cancel_shipment),
        ]
    )


ORDER = {"product_id": "widget", "quantity": 2, "customer_id": "c-1", "amount": 30, "address": "1 Main St"}
ORDER_STEPS = ["reserve_inventory", "charge_payment", "ship_order"]


class TestOrderProcessing:
    async def test_success_changes_every_service(self) -> None:
        """A clean run reserves, charges and ships, and returns every id."""
        shop = Shop()
        result = await order_workflow(shop).execute(dict(ORDER), WorkflowContext(correlation_id="order-1"))
        assert result["reservation_id"] == "res-0"
        assert result["charge_id"] == "ch-0"
        assert result["tracking_id"] == "trk-0"
        assert shop.inventory.stock == {"widget": 3}
        assert shop.payments.charges == {"ch-0": ("c-1", 30)}
        assert shop.shipping.shipments == {"trk-0": ("1 Main St", ["widget"])}

    @pytest.mark.parametrize("failing", ORDER_STEPS)
    @pytest.mark.parametrize("policies", [False, True])
    async def test_fail_at_each_step_restores_every_service(self, failing: str, policies: bool) -> None:
        """A step failing before it acts leaves every service as it was."""
        shop = Shop()
        before = copy.deepcopy(shop.state())
        workflow = order_workflow(shop, policies=policies)
        with pytest.raises(InjectedFault) as raised:
            await workflow.execute(dict(ORDER), WorkflowContext(correlation_id="o"), faults={failing: "fail"})
        assert raised.value.step == failing
        assert shop.state() == before
        run = workflow.history.last
        assert run is not None and run.status == "compensated" and run.failed_step == failing
        done = ORDER_STEPS[: ORDER_STEPS.index(failing)]
        assert run.compensated_steps == list(reversed(done))

    @pytest.mark.parametrize("failing", ORDER_STEPS)
    async def test_fail_after_leaks_only_the_failed_steps_effect(self, failing: str) -> None:
        """The lost-response case: the failed step did act, and only its effect remains."""
        shop = Shop()
        with pytest.raises(InjectedFault):
            await order_workflow(shop).execute(dict(ORDER), WorkflowContext(), faults={failing: "fail_after"})
        state = shop.state()
        assert (state["reservations"] != {}) == (failing == "reserve_inventory")
        assert (state["charges"] != {}) == (failing == "charge_payment")
        assert (state["shipments"] != {}) == (failing == "ship_order")

    async def test_failing_refund_stops_rollback_and_says_what_is_left(self) -> None:
        """With the default policy a failed compensation stops rollback; nothing is swallowed."""
        shop = Shop()
        workflow = order_workflow(shop)
        with pytest.raises(CompensationError) as raised:
            await workflow.execute(
                dict(ORDER), WorkflowContext(), faults={"charge_payment": "fail_compensation", "ship_order": "fail"}
            )
        error = raised.value
        assert error.step == "charge_payment"
        assert isinstance(error.original, InjectedFault) and error.original.step == "ship_order"
        assert error.pending == ("reserve_inventory",)
        assert shop.payments.charges == {"ch-0": ("c-1", 30)}  # the refund never happened
        assert shop.inventory.reservations  # and inventory was left reserved
        assert workflow.history.last is not None and workflow.history.last.status == "compensation_failed"

    async def test_continue_on_compensation_failure_undoes_the_rest(self) -> None:
        """With continue_on_compensation_failure=True the other compensations still run."""
        shop = Shop()
        workflow = order_workflow(shop).replace(continue_on_compensation_failure=True)
        with pytest.raises(CompensationError) as raised:
            await workflow.execute(
                dict(ORDER), WorkflowContext(), faults={"charge_payment": "fail_compensation", "ship_order": "fail"}
            )
        assert [f.step for f in raised.value.failures] == ["charge_payment"]
        assert raised.value.pending == ()
        assert shop.inventory.reservations == {} and shop.inventory.stock == {"widget": 5}
        assert shop.payments.charges == {"ch-0": ("c-1", 30)}


@dataclass
class Onboarding:
    auth: Auth = field(default_factory=Auth)
    profiles: KeyValue = field(default_factory=KeyValue)
    outbox: Outbox = field(default_factory=Outbox)


def onboarding_workflow(world: Onboarding) -> CompensationPrimitive:
    async def create_auth_account(data: dict[str, Any], context: WorkflowContext) -> dict[str, Any]:
        auth_id = await world.auth.create_account(email=data["email"], password=data["password"])
        return {**data, "auth_id": auth_id}

    async def delete_auth_account(data: dict[str, Any], context: WorkflowContext) -> None:
        await world.auth.delete_account(data["auth_id"])

    async def create_profile(data: dict[str, Any], context: WorkflowContext) -> dict[str, Any]:
        profile_id = await world.profiles.insert({"auth_id": data["auth_id"], "name": data["name"]})
        return {**data, "profile_id": profile_id}

    async def delete_profile(data: dict[str, Any], context: WorkflowContext) -> None:
        await world.profiles.delete(data["profile_id"])

    async def send_verification_email(data: dict[str, Any], context: WorkflowContext) -> dict[str, Any]:
        await world.outbox.send_verification(data["email"])
        return {**data, "verification_sent": True}

    async def log_verification_rollback(data: dict[str, Any], context: WorkflowContext) -> None:
        await world.outbox.log(event="verification_rollback", user_id=data.get("auth_id"), email=data["email"])

    return CompensationPrimitive(
        primitives=[
            (create_auth_account, delete_auth_account),
            (create_profile, delete_profile),
            (send_verification_email, log_verification_rollback),
        ]
    )


SIGNUP = {"email": "ada@example.com", "password": "hunter2", "name": "Ada"}
ONBOARDING_STEPS = ["create_auth_account", "create_profile", "send_verification_email"]


class TestUserOnboarding:
    async def test_success_creates_account_profile_and_email(self) -> None:
        """A clean signup leaves an account, a profile and a sent email."""
        world = Onboarding()
        result = await onboarding_workflow(world).execute(dict(SIGNUP), WorkflowContext(correlation_id="signup-123"))
        assert result["verification_sent"] is True
        assert world.auth.accounts == {"auth-0": "ada@example.com"}
        assert world.profiles.rows == {"id-0": {"auth_id": "auth-0", "name": "Ada"}}
        assert world.outbox.sent == ["ada@example.com"]

    @pytest.mark.parametrize("failing", ONBOARDING_STEPS)
    async def test_fail_at_each_step_undoes_account_and_profile(self, failing: str) -> None:
        """Any failure removes the account and profile; the email can't be unsent."""
        world = Onboarding()
        workflow = onboarding_workflow(world)
        run = await workflow.run(dict(SIGNUP), WorkflowContext(), faults={failing: "fail"})
        assert run.status == "compensated"
        assert world.auth.accounts == {} and world.profiles.rows == {}
        assert world.outbox.sent == []

    async def test_irreversible_step_is_logged_when_a_later_step_fails(self) -> None:
        """The email step's compensation logs for audit (seed's irreversible-operation pattern)."""
        world = Onboarding()

        async def activate(data: dict[str, Any], context: WorkflowContext) -> dict[str, Any]:
            raise RuntimeError("billing down")

        base = onboarding_workflow(world)
        workflow = CompensationPrimitive([*((s.action, s.compensate) for s in base.steps), (activate, None)])
        with pytest.raises(RuntimeError, match="billing down"):
            await workflow.execute(dict(SIGNUP), WorkflowContext())
        assert world.outbox.sent == ["ada@example.com"]
        assert world.outbox.audit == [
            {"event": "verification_rollback", "user_id": "auth-0", "email": "ada@example.com"}
        ]
        assert world.auth.accounts == {}


@dataclass
class DataSync:
    primary: KeyValue = field(default_factory=KeyValue)
    cache: KeyValue = field(default_factory=KeyValue)
    search: KeyValue = field(default_factory=KeyValue)


def sync_workflow(world: DataSync) -> CompensationPrimitive:
    async def sync_to_primary_db(data: dict[str, Any], context: WorkflowContext) -> dict[str, Any]:
        primary_id = await world.primary.insert(data["record"])
        return {**data, "primary_id": primary_id}

    async def rollback_primary_db(data: dict[str, Any], context: WorkflowContext) -> None:
        await world.primary.delete(data["primary_id"])

    async def sync_to_cache(data: dict[str, Any], context: WorkflowContext) -> dict[str, Any]:
        await world.cache.set(f"record:{data['primary_id']}", data["record"])
        return data

    async def clear_cache(data: dict[str, Any], context: WorkflowContext) -> None:
        await world.cache.delete(f"record:{data['primary_id']}")

    async def sync_to_search_index(data: dict[str, Any], context: WorkflowContext) -> dict[str, Any]:
        await world.search.set(data["primary_id"], data["record"])
        return data

    async def remove_from_search_index(data: dict[str, Any], context: WorkflowContext) -> None:
        await world.search.delete(data["primary_id"])

    return CompensationPrimitive(
        primitives=[
            (sync_to_primary_db, rollback_primary_db),
            (sync_to_cache, clear_cache),
            (sync_to_search_index, remove_from_search_index),
        ]
    )


SYNC_STEPS = ["sync_to_primary_db", "sync_to_cache", "sync_to_search_index"]


class TestMultiServiceDataSync:
    async def test_success_writes_all_three_stores(self) -> None:
        """The record lands in the database, the cache and the index."""
        world = DataSync()
        result = await sync_workflow(world).execute({"record": {"title": "x"}}, WorkflowContext())
        assert world.primary.rows == {"id-0": {"title": "x"}}
        assert world.cache.rows == {"record:id-0": {"title": "x"}}
        assert world.search.rows == {"id-0": {"title": "x"}}
        assert result["primary_id"] == "id-0"

    @pytest.mark.parametrize("failing", SYNC_STEPS)
    @pytest.mark.parametrize("mode", ["fail", "fail_after"])
    async def test_each_failure_point_leaves_stores_consistent(self, failing: str, mode: str) -> None:
        """After any failure, only a fail_after step's own write can remain, never an earlier one."""
        world = DataSync()
        run = await sync_workflow(world).run({"record": {"title": "x"}}, WorkflowContext(), faults={failing: mode})
        assert run.status == "compensated"
        position = SYNC_STEPS.index(failing)
        stores = [world.primary.rows, world.cache.rows, world.search.rows]
        for index, rows in enumerate(stores):
            leaked = mode == "fail_after" and index == position
            assert bool(rows) == leaked, (index, rows)
