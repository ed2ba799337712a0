"""Sagas for the concurrent exploration tests: the last item in stock, ordered twice.

``order_saga("naive")`` reads the stock in one step and writes it back in the next: two orders
can both see the last item (a lost update), and an order can be turned away by a reservation
that is later compensated (a dirty read). ``"reread"`` checks the stock again before writing
it (reread value): no oversell, but the dirty read remains. ``"locked"`` marks the item as held
by a pending order (a semantic lock, cleared when the order is confirmed or compensated):
neither anomaly remains.
"""

from __future__ import annotations

from typing import Any

import sagakit as sk
from sagakit.explore import World


class SoldOut(Exception):
    """The item is gone."""


class Busy(Exception):
    """Another order holds the item: try again later."""


class Changed(Exception):
    """The stock changed since it was read: try again."""


def shop() -> World:
    return World(stock=1, orders=(), confirmed=(), refused=(), hold=None)


def order_saga(variant: str = "naive") -> sk.Saga:
    locked = variant == "locked"

    async def check_stock(data: dict[str, Any], context: sk.WorkflowContext) -> dict[str, Any]:
        world = context.world
        if locked and world["hold"] not in (None, data["order"]):
            raise Busy(f"held by order {world['hold']}")
        stock = world["stock"]
        if stock < 1:  # turned away because of the orders holding the stock now
            world["refused"] = (*world["refused"], (data["order"], world["orders"]))
            raise SoldOut(data["order"])
        if locked:
            world["hold"] = data["order"]
        return {**data, "seen": stock}

    async def unhold(data: dict[str, Any], context: sk.WorkflowContext) -> None:
        if context.world["hold"] == data["order"]:
            context.world["hold"] = None

    async def reserve(data: dict[str, Any], context: sk.WorkflowContext) -> dict[str, Any]:
        world = context.world
        if variant == "reread" and world["stock"] != data["seen"]:
            raise Changed(f"stock is {world['stock']}, was {data['seen']}")
        world["stock"] = data["seen"] - 1
        world["orders"] = (*world["orders"], data["order"])
        return data

    async def release(data: dict[str, Any], context: sk.WorkflowContext) -> None:
        world = context.world
        if data["order"] in world["orders"]:  # idempotent: it also runs after a lost response
            world["orders"] = tuple(order for order in world["orders"] if order != data["order"])
            world["stock"] = world["stock"] + 1

    async def charge(data: dict[str, Any], context: sk.WorkflowContext) -> dict[str, Any]:
        return data

    async def confirm(data: dict[str, Any], context: sk.WorkflowContext) -> dict[str, Any]:
        context.world["confirmed"] = (*context.world["confirmed"], data["order"])
        if locked:
            await unhold(data, context)
        return data

    steps = [
        sk.step(check_stock, compensate=unhold if locked else None, compensate_on_failure=locked),
        sk.step(reserve, compensate=release, compensate_on_failure=True),
        sk.step(charge),
        sk.step(confirm),
    ]
    return sk.Saga(f"order-{variant}", steps)


def no_oversell(world: World, runs: tuple[sk.Run | None, ...]) -> None:
    """Every unit is either in stock or in exactly one order."""
    assert world["stock"] >= 0 and len(world["orders"]) + world["stock"] == 1, (
        f"stock {world['stock']} with orders {world['orders']}"
    )


def no_false_sold_out(world: World, runs: tuple[sk.Run | None, ...]) -> None:
    """Nobody is told "sold out" because of an order that never went through (unless a
    compensation failed: then the run's error calls for an operator anyway)."""
    if any(run is not None and run.status == "compensation_failed" for run in runs):
        return
    for order, holders in world["refused"]:
        never = [holder for holder in holders if holder not in world["confirmed"]]
        assert not never, f"{order} was told sold out because of {never}, which never went through"


def both(world: World, runs: tuple[sk.Run | None, ...]) -> None:
    no_oversell(world, runs)
    no_false_sold_out(world, runs)


def two_orders(variant: str = "naive") -> list[tuple[sk.Saga, dict[str, str]]]:
    saga = order_saga(variant)
    return [(saga, {"order": "ann"}), (saga, {"order": "bob"})]
