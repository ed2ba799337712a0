"""A checkout whose payment capture is the pivot, for the exploration tests of forward recovery.

Reserving the stock is compensatable; capturing the payment is the pivot; shipping the parcel
and sending the confirmation are retriable. The naive ``ship`` is not idempotent: a retry after
a lost response ships a second parcel. The fixed one ships once per order.
"""

from __future__ import annotations

from typing import Any

import sagakit as sk

#: A forward policy that retries at once: runs off the virtual clock stay fast.
FAST = sk.RetryPolicy(max_retries=2, initial_delay=0.0, max_delay=0.0, jitter=0.0)

CHECKOUT = {"order_id": 7, "amount": 30.0}


class Warehouse:
    """The world: stock reserved, money captured, parcels shipped, confirmations sent."""

    def __init__(self) -> None:
        self.reserved = 0
        self.captured = 0.0
        self.parcels: list[int] = []
        self.emails = 0


async def reserve(data: dict[str, Any], context: sk.WorkflowContext) -> dict[str, Any]:
    context.world.reserved += 1
    return data


async def release(data: dict[str, Any], context: sk.WorkflowContext) -> None:
    context.world.reserved -= 1


async def capture(data: dict[str, Any], context: sk.WorkflowContext) -> dict[str, Any]:
    context.world.captured += data["amount"]
    return data


async def ship(data: dict[str, Any], context: sk.WorkflowContext) -> dict[str, Any]:
    context.world.parcels.append(data["order_id"])  # a retry ships again
    return data


async def ship_once(data: dict[str, Any], context: sk.WorkflowContext) -> dict[str, Any]:
    if data["order_id"] not in context.world.parcels:  # idempotent by order id
        context.world.parcels.append(data["order_id"])
    return data


async def confirm(data: dict[str, Any], context: sk.WorkflowContext) -> dict[str, Any]:
    context.world.emails += 1
    return data


def checkout_saga(*, idempotent: bool = False, retry: sk.RetryPolicy | None = FAST) -> sk.Saga:
    """reserve (compensatable) -> capture (pivot) -> ship, confirm (retriable)."""
    return sk.Saga("checkout", [
        sk.step(reserve, compensate=release),
        sk.step(capture, kind="pivot"),
        sk.step(ship_once if idempotent else ship, name="ship", retry=retry),
        sk.step(confirm, retry=retry),
    ])


def one_parcel(world: Warehouse, run: sk.Run) -> None:
    """A completed checkout shipped exactly one parcel; any other run at most one."""
    parcels = len(world.parcels)
    if run.status == "completed":
        assert parcels == 1, f"completed with {parcels} parcels"
    else:
        assert parcels <= 1, f"{run.status} with {parcels} parcels"
