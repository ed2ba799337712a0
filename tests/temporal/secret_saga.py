"""A saga whose data, metadata and error carry secrets, for the encrypted-payload tests.

``ship`` fails with a message quoting the card number, so every run rolls back.
"""

from __future__ import annotations

from typing import Any

import sagakit as sk

#: Secrets that must never appear in a Temporal history written through the AES-GCM codec.
PASSWORD = "hunter2-Sesame-9431"
CARD = "4111111111111111"
TOKEN = "tok_live_Zq81xP0dWm"
NOTE = "quartz-pelican-nebula"  # not under a sensitive key: only encryption hides it


async def reserve(data: Any, context: sk.WorkflowContext) -> Any:
    context.metadata["note"] = NOTE
    return {**data, "reservation": f"r-{data['order']}"}


async def release(data: Any, context: sk.WorkflowContext) -> None:
    return None


async def charge(data: Any, context: sk.WorkflowContext) -> Any:
    return {**data, "charge": "ch-1", "token": TOKEN}


async def refund(data: Any, context: sk.WorkflowContext) -> None:
    return None


async def ship(data: Any, context: sk.WorkflowContext) -> Any:
    raise ValueError(f"carrier refused card {data['card']} for {NOTE}")


secret = sk.Saga(
    "secret_order",
    [sk.step(reserve, compensate=release), sk.step(charge, compensate=refund), sk.step(ship)],
)


def order(number: int) -> dict[str, Any]:
    """An order whose fields are secrets."""
    return {"order": number, "password": PASSWORD, "card": CARD, "comment": NOTE}
