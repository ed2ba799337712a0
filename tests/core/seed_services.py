"""Small in-memory fake services for the seed's examples (shared by several test modules)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Inventory:
    stock: dict[str, int] = field(default_factory=lambda: {"widget": 5})
    reservations: dict[str, tuple[str, int]] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=itertools.count)

    async def reserve(self, product_id: str, quantity: int) -> str:
        if self.stock.get(product_id, 0) < quantity:
            raise RuntimeError(f"out of stock: {product_id}")
        self.stock[product_id] -= quantity
        reservation = f"res-{next(self.ids)}"
        self.reservations[reservation] = (product_id, quantity)
        return reservation

    async def release(self, reservation: str) -> None:
        product_id, quantity = self.reservations.pop(reservation)
        self.stock[product_id] += quantity


@dataclass
class Payments:
    charges: dict[str, tuple[str, int]] = field(default_factory=dict)
    refunded: list[str] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=itertools.count)

    async def charge(self, customer_id: str, amount: int) -> str:
        charge = f"ch-{next(self.ids)}"
        self.charges[charge] = (customer_id, amount)
        return charge

    async def refund(self, charge: str) -> None:
        self.charges.pop(charge)
        self.refunded.append(charge)


@dataclass
class Shipping:
    shipments: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=itertools.count)

    async def ship(self, address: str, items: list[str]) -> str:
        tracking = f"trk-{next(self.ids)}"
        self.shipments[tracking] = (address, items)
        return tracking

    async def cancel(self, tracking: str) -> None:
        self.shipments.pop(tracking)


@dataclass
class KeyValue:
    """A primary database, a cache or a search index: a dict with an id counter."""

    rows: dict[str, Any] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=itertools.count)

    async def insert(self, record: Any) -> str:
        key = f"id-{next(self.ids)}"
        self.rows[key] = record
        return key

    async def set(self, key: str, value: Any) -> None:
        self.rows[key] = value

    async def delete(self, key: str) -> None:
        self.rows.pop(key, None)


@dataclass
class Auth:
    accounts: dict[str, str] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=itertools.count)

    async def create_account(self, email: str, password: str) -> str:
        auth_id = f"auth-{next(self.ids)}"
        self.accounts[auth_id] = email
        return auth_id

    async def delete_account(self, auth_id: str) -> None:
        del self.accounts[auth_id]


@dataclass
class Outbox:
    sent: list[str] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)

    async def send_verification(self, email: str) -> None:
        self.sent.append(email)

    async def log(self, **entry: Any) -> None:
        self.audit.append(entry)
