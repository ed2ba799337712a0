"""The sagas used across the exploration and simulation tests, each acting on a small world."""

from __future__ import annotations

import asyncio
from typing import Any

import sagakit as sk


class Shop:
    """The world the order saga acts on: reservations, charges and orders by order id."""

    def __init__(self) -> None:
        self.reserved: dict[int, int] = {}
        self.charges: dict[int, float] = {}
        self.orders: dict[int, str] = {}


async def reserve_inventory(data: dict[str, Any], context: sk.WorkflowContext) -> dict[str, Any]:
    context.world.reserved[data["order_id"]] = data["qty"]
    return {**data, "reservation": f"r-{data['order_id']}"}


async def release_inventory(data: dict[str, Any], context: sk.WorkflowContext) -> None:
    context.world.reserved.pop(data["order_id"], None)


async def charge_payment(data: dict[str, Any], context: sk.WorkflowContext) -> dict[str, Any]:
    context.world.charges[data["order_id"]] = data["amount"]
    return {**data, "charge": f"c-{data['order_id']}"}


async def refund_payment(data: dict[str, Any], context: sk.WorkflowContext) -> None:
    # Looks the charge up by order id, so it also works on the step's input
    # (compensate_on_failure=True hands the compensation what the step received).
    context.world.charges.pop(data["order_id"], None)


async def ship_order(data: dict[str, Any], context: sk.WorkflowContext) -> dict[str, Any]:
    context.world.orders[data["order_id"]] = "shipped"
    return data


def order_saga(*, fixed: bool = False) -> sk.Saga:
    """Reserve, charge, ship; ``fixed`` refunds a charge whose response was lost."""
    return sk.Saga(
        "order",
        [
            sk.step(reserve_inventory, compensate=release_inventory),
            sk.step(charge_payment, compensate=refund_payment, compensate_on_failure=fixed),
            sk.step(ship_order),
        ],
    )


def no_money_without_an_order(world: Shop, run: sk.Run) -> None:
    """Money charged without an order is a leak, unless the run reports a failed compensation."""
    leaked = [order for order in world.charges if order not in world.orders]
    assert not leaked or run.status == "compensation_failed", f"charged without an order: {leaked}"


ORDER = {"order_id": 7, "qty": 2, "amount": 30.0}


class Trail:
    """A world recording which actions ran and which compensations failed."""

    def __init__(self) -> None:
        self.ran: list[str] = []


def trail_saga(names: str, *, continue_on_compensation_failure: bool = False) -> sk.Saga:
    """A saga of one step per letter, each with a compensation, acting on a :class:`Trail`."""

    def make(name: str) -> sk.Step:
        async def action(data: Any, context: sk.WorkflowContext) -> Any:
            await asyncio.sleep(0)
            context.world.ran.append(name)
            return data

        async def undo(data: Any, context: sk.WorkflowContext) -> None:
            context.world.ran.append("undo_" + name)

        action.__name__ = name
        return sk.step(action, compensate=undo)

    return sk.Saga("trail", [make(n) for n in names], continue_on_compensation_failure=continue_on_compensation_failure)
