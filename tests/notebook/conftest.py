"""Fixtures of the notebook-layer tests: small sagas, and the diagram renderer reset."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from testsupport import ROOT, require, stop_process

import sagakit
from sagakit.notebook import diagram

__all__ = ["ROOT", "Carrier", "pivot_saga", "require", "stop_process"]


def make_step(name: str, *, delay: float = 0.0, log: list[str] | None = None) -> Any:
    """An async step function called ``name`` that records its calls in ``log``."""

    async def action(data: Any, context: sagakit.WorkflowContext) -> Any:
        if delay:
            await asyncio.sleep(delay)
        if log is not None:
            log.append(name)
        return data

    action.__name__ = name
    return action


def linear_saga(count: int, name: str = "chain", log: list[str] | None = None) -> sagakit.Saga:
    """``count`` steps ``s0 .. s<count-1>``, each with a compensation ``undo_s<i>``."""
    return sagakit.Saga(
        name,
        [sagakit.step(make_step(f"s{i}", log=log), compensate=make_step(f"undo_s{i}", log=log)) for i in range(count)],
    )


class Carrier:
    """A shipping service that is down until it is fixed: what makes a run stuck after its pivot."""

    def __init__(self) -> None:
        self.up = False
        self.calls = 0
        #: While set, each call waits for it (after calling ``arrived``): a shipment in flight.
        self.hold: asyncio.Event | None = None
        self.arrived: Any = None

    async def ship(self, data: Any, context: sagakit.WorkflowContext) -> Any:
        self.calls += 1
        if self.hold is not None:
            if self.arrived is not None:
                self.arrived()
            await self.hold.wait()
        if not self.up:
            raise ConnectionError("carrier unreachable")
        return {**data, "parcel": context.idempotency_key}


def pivot_saga(carrier: Carrier, name: str = "order") -> sagakit.Saga:
    """reserve (compensatable) -> check (read-only) -> capture (the pivot) -> ship (retried
    twice, quickly) -> mail: a saga of every kind."""
    ship = carrier.ship
    quick = sagakit.RetryPolicy(max_retries=2, initial_delay=0.01, jitter=0)
    return sagakit.Saga(name, [
        sagakit.step(make_step("reserve"), compensate=make_step("release")),
        sagakit.step(make_step("check"), kind="readonly"),
        sagakit.step(make_step("capture"), kind="pivot"),
        sagakit.step(ship, name="ship", retry=quick),
        sagakit.step(make_step("mail")),
    ])


def from_browser(widget: Any, content: dict[str, Any]) -> None:
    """What a front-end sends when the user clicks: a custom message, delivered through the
    widget's comm as a kernel delivers it."""
    widget.comm.handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})


def edit_from_browser(widget: Any, **state: Any) -> None:
    """What a front-end sends when the user edits a control: a state update through the comm."""
    widget.comm.handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": []}},
                            "buffers": []})


def record_messages(view: Any) -> list[dict[str, Any]]:
    """Keep a copy of every custom message ``view`` sends (still sent on)."""
    sent: list[dict[str, Any]] = []
    send = view.send

    def recording(message: dict[str, Any]) -> None:
        sent.append(message)
        send(message)

    view.send = recording
    return sent


@pytest.fixture
def order_saga() -> sagakit.Saga:
    """Five steps, the last without compensation, the middle one with a retry policy."""
    return sagakit.Saga(
        "order",
        [
            sagakit.step(make_step("reserve_inventory"), compensate=make_step("release_inventory")),
            sagakit.step(make_step("authorize_payment"), compensate=make_step("void_authorization")),
            sagakit.step(make_step("charge_payment"), compensate=make_step("refund_payment"), retry=1),
            sagakit.parallel(
                sagakit.step(make_step("ship_order"), compensate=make_step("cancel_shipment")),
                sagakit.step(make_step("notify_warehouse")),
            ),
            sagakit.step(make_step("send_receipt")),
        ],
    )


@pytest.fixture(autouse=True)
def default_renderer() -> Iterator[None]:
    """Every test starts and ends with the automatic renderer choice."""
    diagram.set_renderer("auto")
    yield
    diagram.set_renderer("auto")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item (``rep_call``) for failure screenshots."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
