
import pytest

import sagakit
import sagakit.testing


class Shop:
    def __init__(self):
        self.charges, self.orders = {}, {}


async def charge_payment(data, context):
    context.world.charges[data["order_id"]] = data["amount"]
    return data


async def refund_payment(data, context):
    context.world.charges.pop(data["order_id"], None)


async def create_order(data, context):
    context.world.orders[data["order_id"]] = data
    return data


def no_money_without_an_order(world, run):
    assert set(world.charges) <= set(world.orders) or run.status == "compensation_failed"


@pytest.mark.asyncio                  # pytest-asyncio runs async tests
async def test_orders_never_leak_money():
    saga = sagakit.Saga("order", [
        sagakit.step(charge_payment, compensate=refund_payment),
        sagakit.step(create_order),
    ])
    await sagakit.testing.assert_invariant(saga, {"order_id": 7, "amount": 30.0}, world=Shop,
                                           invariant=no_money_without_an_order)
