"""Sagas the Temporal tests run on both backends; their behaviour is driven by the input.

Every step and compensation appends ``(step, phase, attempt, data)`` to ``CALLS[correlation
id]`` and then does what ``data["plan"][<step>]`` (or ``[<step>:compensate]``) says:
``raise`` (ValueError), ``declined`` (PaymentDeclined), ``keyerror``, ``flaky:N`` (fail the first
N attempts), ``sleep:S`` (a cancellation during the sleep is recorded as a ``cancelled`` call),
``list`` (return a list), ``set`` (return a set inside), ``after:<step>`` (wait until that step
of the run succeeded, then raise). The worker runs in the test process, so the calls are
visible to the tests whichever backend ran them.

The ``notes`` saga's steps leave notes for each other in ``context.metadata`` and record the
metadata each of them saw.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from typing import Any

import sagakit as sk

CALLS: dict[str, list[tuple[str, str, int, Any]]] = defaultdict(list)
_DONE: dict[tuple[str, str], asyncio.Event] = {}


class PaymentDeclined(Exception):
    """A business error defined by the user's code."""


def _done(correlation_id: str, step: str) -> asyncio.Event:
    return _DONE.setdefault((correlation_id, step), asyncio.Event())


async def _behave(name: str, phase: str, data: Any, context: sk.WorkflowContext) -> Any:
    cid = context.correlation_id or ""
    CALLS[cid].append((name, phase, context.attempt, data))
    key = name if phase == "forward" else f"{name}:compensate"
    action = (data.get("plan") or {}).get(key, "") if isinstance(data, dict) else ""
    if action == "raise":
        raise ValueError(f"{name} refused")
    if action == "declined":
        raise PaymentDeclined(f"card declined at {name}")
    if action == "keyerror":
        raise KeyError(name)
    if action.startswith("flaky:") and context.attempt <= int(action.split(":")[1]):
        raise ConnectionError(f"{name} flaked on attempt {context.attempt}")
    if action.startswith("sleep:"):
        try:
            await asyncio.sleep(float(action.split(":")[1]))
        except asyncio.CancelledError:
            CALLS[cid].append((name, "cancelled", context.attempt, None))
            raise
    if action.startswith("after:"):
        await _done(cid, action.split(":")[1]).wait()
        raise ValueError(f"{name} failed after {action.split(':')[1]}")
    if action == "list":
        return [name]
    if action == "set":
        return {**data, name: {1, 2}}
    if phase == "forward":
        _done(cid, name).set()
        return {**data, name: f"{name}-done"}
    return None


def _forward(name: str) -> Any:
    async def action(data: Any, context: sk.WorkflowContext) -> Any:
        return await _behave(name, "forward", data, context)

    action.__name__ = action.__qualname__ = name
    return action


def _compensation(name: str) -> Any:
    async def compensate(data: Any, context: sk.WorkflowContext) -> Any:
        return await _behave(name, "compensate", data, context)

    compensate.__name__ = compensate.__qualname__ = f"undo_{name}"
    return compensate


def sync_step(data: Any, context: sk.WorkflowContext) -> Any:
    """A plain ``def`` step (runs on a thread on the worker)."""
    CALLS[context.correlation_id or ""].append(("sync_step", "forward", context.attempt, data))
    time.sleep(0.001)
    return {**data, "sync_step": "sync-done"}


def blocking_step(data: Any, context: sk.WorkflowContext) -> Any:
    """A plain ``def`` step that blocks for ``data["block"]`` seconds: it cannot be interrupted."""
    CALLS[context.correlation_id or ""].append(("blocking", "forward", context.attempt, None))
    time.sleep(data["block"])
    CALLS[context.correlation_id or ""].append(("blocking", "finished", context.attempt, None))
    return {**data, "blocking": "done"}


linear = sk.Saga(
    "linear",
    [
        sk.step(_forward("a"), compensate=_compensation("a")),
        sk.step(_forward("b"), compensate=_compensation("b")),
        sk.step(sync_step),
        sk.step(_forward("c"), compensate=_compensation("c")),
        sk.step(_forward("d"), compensate=_compensation("d")),
    ],
)

fanout = sk.Saga(
    "fanout",
    [
        sk.step(_forward("a"), compensate=_compensation("a")),
        sk.parallel(
            sk.step(_forward("p1"), compensate=_compensation("p1")),
            sk.step(_forward("p2"), compensate=_compensation("p2")),
            sk.step(_forward("p3")),
        ),
        sk.step(_forward("c"), compensate=_compensation("c")),
    ],
)

retrying = sk.Saga(
    "retrying",
    [
        sk.step(_forward("a"), compensate=_compensation("a")),
        sk.step(
            _forward("b"),
            compensate=_compensation("b"),
            retry=sk.RetryPolicy(max_retries=2, initial_delay=0.05, max_delay=0.1, jitter=0.0),
        ),
        sk.step(_forward("c"), compensate=_compensation("c")),
    ],
)

def _noting(name: str, phase: str) -> Any:
    """A step phase that records the metadata it sees, then leaves a note (after a pause, if planned)."""

    async def action(data: Any, context: sk.WorkflowContext) -> Any:
        # A snapshot, with keys sorted: Temporal's JSON converter sorts the keys of nested dicts.
        seen = json.dumps(context.metadata, sort_keys=True)
        CALLS[context.correlation_id or ""].append((name, phase, context.attempt, seen))
        key = name if phase == "forward" else f"{name}:compensate"
        plan = data.get("plan", {}).get(key, "")
        if plan.startswith("sleep:"):
            await asyncio.sleep(float(plan.split(":")[1]))
        if phase == "forward":
            context.metadata[f"note_{name}"] = {"by": name, "attempt": context.attempt}
            if name == "b":
                del context.metadata["drop_me"]
            if plan == "raise":
                raise ValueError(f"{name} refused after leaving its note")
            return {**data, name: "done"}
        context.metadata.setdefault("undone", []).append(name)  # a nested value, changed in place
        return None

    action.__name__ = action.__qualname__ = name if phase == "forward" else f"undo_{name}"
    return action


def _noting_step(name: str, **options: Any) -> sk.Step:
    return sk.step(_noting(name, "forward"), compensate=_noting(name, "compensate"), **options)


notes = sk.Saga(
    "notes",
    [
        _noting_step("a"),
        sk.parallel(_noting_step("p1"), _noting_step("p2")),
        _noting_step("b"),
        _noting_step("c", compensate_on_failure=True),
    ],
)

blocking = sk.Saga(
    "blocking",
    [
        sk.step(_forward("a"), compensate=_compensation("a")),
        sk.step(blocking_step, compensate=_compensation("blocking")),
        sk.step(_forward("c")),
    ],
)

ALL = [linear, fanout, retrying, notes, blocking]
