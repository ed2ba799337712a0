"""The order saga the plugin tests explore; its source is also written into pytester's
test modules, so that the tests there and here share one saga."""

from __future__ import annotations

import asyncio  # noqa: F401 - used by the test modules written from this source
import json  # noqa: F401

import sagakit
import sagakit.testing


class Shop:
    def __init__(self):
        self.charges = {}
        self.orders = {}


async def reserve_inventory(data, context):
    return data


async def release_inventory(data, context):
    return None


async def charge_payment(data, context):
    context.world.charges[data["order_id"]] = data["amount"]
    return data


async def refund_payment(data, context):
    context.world.charges.pop(data["order_id"], None)


async def ship_order(data, context):
    context.world.orders[data["order_id"]] = "shipped"
    return data


def order_saga(fixed=False):
    return sagakit.Saga("order", [
        sagakit.step(reserve_inventory, compensate=release_inventory),
        sagakit.step(charge_payment, compensate=refund_payment, compensate_on_failure=fixed),
        sagakit.step(ship_order),
    ])


def no_money_without_an_order(world, run):
    leaked = [order for order in world.charges if order not in world.orders]
    assert not leaked or run.status == "compensation_failed", f"charged without an order: {leaked}"


ORDER = {"order_id": 7, "amount": 30.0}
