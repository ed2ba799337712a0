"""The world the conformance table's sagas act on: one ledger file that every process appends to.

Every step and compensation of the table's sagas writes what happened to it to an append-only
JSON-lines ledger (the file named by the ``SAGAKIT_CONFORMANCE_LEDGER`` environment variable):
``call`` when it is called (with the data it received), ``did`` / ``undid`` once its effect has
taken place, ``cancelled`` when a cancellation reached it while it waited. Lines carry the
run's correlation id, the step, the phase and ``context.attempt``. The ledger is a real file,
so the effects of the crash child (killed mid-run), of ``recover()`` in the test process and of
the Temporal worker's activities all land in the same place, in the order they happened.

What a step does beyond taking effect is its *behaviour*, given per saga (see
:func:`action`): ``raise``, ``declined``, ``keyerror``, ``flaky:N``, ``sleep:S``, ``hang``,
``list``, ``raise_after``, ``after:<step>`` (wait until ``<step>`` of the run took effect, in
this process or, before a crash, in another; then raise), ``wait:<step>`` (the same wait, then
go on), and the interruptions ``exit`` (``SystemExit``), ``keyboard`` (``KeyboardInterrupt``)
and ``cancel`` (the function raises ``CancelledError`` itself); ``x+y`` does ``x``, then ``y``.
``<behaviour>@N`` applies only to run ``N`` of a row that starts several runs, and ``x@0|y``
means ``x`` in run 0, ``y`` in the others.

*Points* (:class:`Point`) are where a run is interrupted from outside: a test arms a point
for a correlation id with a hook (cancel the caller's task, or SIGKILL the crash child), and
the step or compensation that reaches it calls the hook and then (if the hook says so) waits,
as a real call in flight would, until the interruption reaches it.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import sagakit as sk

__all__ = ["HANG", "LEDGER", "PaymentDeclined", "Point", "action", "arm", "compensation", "disarm", "entries",
           "plain_action", "run_number"]

#: The environment variable naming the ledger file.
LEDGER = "SAGAKIT_CONFORMANCE_LEDGER"
#: Seconds a ``hang`` step (or a step at an armed point) waits: far longer than any
#: interruption takes to reach it, so that only the interruption ends it.
HANG = 30.0

Phase = Literal["forward", "compensate"]
#: Called when a run reaches an armed point; returns whether the call then waits for an interruption.
Hook = Callable[[], Awaitable[bool] | bool]


class PaymentDeclined(Exception):
    """A business error defined by the user's code (importable wherever the caller runs)."""


@dataclass(frozen=True, slots=True)
class Point:
    """A place in a run: ``step``'s ``phase``, ``before`` or ``after`` its effect took place, in
    its attempt number ``attempt`` (``None``: in any attempt)."""

    step: str
    phase: Phase = "forward"
    moment: Literal["before", "after"] = "before"
    attempt: int | None = None

    def __str__(self) -> str:
        what = "compensation of " if self.phase == "compensate" else ""
        which = f" (attempt {self.attempt})" if self.attempt is not None else ""
        return f"{self.moment} the {what}{self.step} took effect{which}"

    def anywhen(self) -> Point:
        """The same place, in whichever attempt gets there."""
        return Point(self.step, self.phase, self.moment)


_ARMED: dict[tuple[str, Point], Hook] = {}
_DONE: dict[tuple[str, str], asyncio.Event] = {}


def arm(correlation_id: str, point: Point, hook: Hook) -> None:
    """Call ``hook`` when the run ``correlation_id`` reaches ``point`` (see :data:`Hook`)."""
    _ARMED[(correlation_id, point)] = hook


def disarm(correlation_id: str) -> None:
    """Forget the points armed for ``correlation_id`` and its in-process bookkeeping."""
    for key in [key for key in _ARMED if key[0] == correlation_id]:
        del _ARMED[key]
    for key in [key for key in _DONE if key[0] == correlation_id]:
        del _DONE[key]


def run_number(correlation_id: str) -> int:
    """The number of a row's run, from its correlation id ``<cell>#<n>``."""
    return int(correlation_id.rpartition("#")[2] or 0)


def _record(correlation_id: str, step: str, phase: Phase, attempt: int, event: str, data: Any = None) -> None:
    line = {"cid": correlation_id, "step": step, "phase": phase, "attempt": attempt, "event": event}
    if event == "call":
        line["data"] = data
    # One write() on an O_APPEND descriptor: lines from several processes never interleave.
    payload = (json.dumps(line, sort_keys=True, default=repr) + "\n").encode()
    descriptor = os.open(os.environ[LEDGER], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(descriptor, payload)
    finally:
        os.close(descriptor)


def entries(correlation_id: str) -> list[tuple[str, str, int, str, Any]]:
    """What the ledger holds for one run, in order: ``(step, phase, attempt, event, data)``."""
    found = []
    with open(os.environ[LEDGER], encoding="utf-8") as ledger:
        for text in ledger:
            line = json.loads(text)
            if line["cid"] == correlation_id:
                found.append((line["step"], line["phase"], line["attempt"], line["event"], line.get("data")))
    return found


def _behaviour(plan: Mapping[str, str], key: str, correlation_id: str) -> str:
    """The first of ``plan[key]``'s alternatives (``a@0|b``) that applies to this run."""
    for alternative in plan.get(key, "").split("|"):
        what, at, run = alternative.partition("@")
        if not at or int(run) == run_number(correlation_id):
            return what
    return ""


async def _wait(correlation_id: str, step: str, phase: Phase, attempt: int, seconds: float) -> None:
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        _record(correlation_id, step, phase, attempt, "cancelled")
        raise


async def _reach(correlation_id: str, step: str, phase: Phase, attempt: int, moment: str) -> None:
    here = Point(step, phase, moment, attempt)  # type: ignore[arg-type]
    hook = _ARMED.get((correlation_id, here)) or _ARMED.get((correlation_id, here.anywhen()))
    if hook is None:
        return
    wait = hook()
    if inspect.isawaitable(wait):
        wait = await wait
    if wait:  # the run is interrupted here: the call waits, in flight, for the interruption to reach it
        await _wait(correlation_id, step, phase, attempt, HANG)


def _interrupt(what: str, text: str) -> None:
    if what == "exit":
        raise SystemExit(text)
    if what == "keyboard":
        raise KeyboardInterrupt(text)
    if what == "cancel":
        raise asyncio.CancelledError(text)


async def _before_effect(parts: list[str], cid: str, name: str, phase: Phase, attempt: int) -> None:
    """Act out the behaviours that come before the effect, in order: raise, interrupt or wait."""
    subject = name if phase == "forward" else f"undoing {name}"
    for part in parts:
        kind, _, argument = part.partition(":")
        if kind == "raise":
            raise ValueError(f"{name} refused" if phase == "forward" else f"undoing {name} failed")
        if kind == "declined":
            raise PaymentDeclined(f"card declined at {name}")
        if kind == "keyerror":
            raise KeyError(name if phase == "forward" else f"undo_{name}")
        _interrupt(kind, f"{subject} interrupted")
        if kind == "flaky" and attempt <= int(argument):
            raise ConnectionError(f"{subject} flaked on attempt {attempt}")
        if kind == "sleep":
            await _wait(cid, name, phase, attempt, float(argument))
        if kind == "hang":
            await _wait(cid, name, phase, attempt, HANG)
        if kind in ("after", "wait"):
            if not _took_effect(cid, argument):  # in this process, or (before a crash) in another
                await _done(cid, argument).wait()
            if kind == "after":
                raise ValueError(f"{name} failed after {argument}")


def action(name: str, plan: Mapping[str, str]) -> Callable[[Any, sk.WorkflowContext], Awaitable[Any]]:
    """The forward action of step ``name``, behaving as ``plan[name]`` says (``+`` chains behaviours)."""

    async def act(data: Any, context: sk.WorkflowContext) -> Any:
        cid = context.correlation_id or ""
        attempt = context.attempt
        parts = _behaviour(plan, name, cid).split("+")
        _record(cid, name, "forward", attempt, "call", data)
        await _reach(cid, name, "forward", attempt, "before")
        await _before_effect(parts, cid, name, "forward", attempt)
        _record(cid, name, "forward", attempt, "did")
        _done(cid, name).set()
        await _reach(cid, name, "forward", attempt, "after")
        if "raise_after" in parts:
            raise ValueError(f"{name} acted, then failed")
        if "list" in parts:
            return [name]
        return {**data, name: f"{name}-done"}

    act.__name__ = act.__qualname__ = name
    return act


def plain_action(name: str, plan: Mapping[str, str]) -> Callable[[Any, sk.WorkflowContext], Any]:
    """A plain ``def`` step (it runs on a thread on a Temporal worker); only ``raise`` applies."""

    def act(data: Any, context: sk.WorkflowContext) -> Any:
        cid = context.correlation_id or ""
        _record(cid, name, "forward", context.attempt, "call", data)
        if _behaviour(plan, name, cid) == "raise":
            raise ValueError(f"{name} refused")
        _record(cid, name, "forward", context.attempt, "did")
        return {**data, name: f"{name}-done"}

    act.__name__ = act.__qualname__ = name
    return act


def compensation(name: str, plan: Mapping[str, str]) -> Callable[[Any, sk.WorkflowContext], Awaitable[None]]:
    """The compensation of step ``name``, behaving as ``plan[f"{name}:compensate"]`` says."""

    async def undo(data: Any, context: sk.WorkflowContext) -> None:
        cid = context.correlation_id or ""
        attempt = context.attempt
        parts = _behaviour(plan, f"{name}:compensate", cid).split("+")
        _record(cid, name, "compensate", attempt, "call", data)
        await _reach(cid, name, "compensate", attempt, "before")
        await _before_effect(parts, cid, name, "compensate", attempt)
        _record(cid, name, "compensate", attempt, "undid")
        await _reach(cid, name, "compensate", attempt, "after")

    undo.__name__ = undo.__qualname__ = f"undo_{name}"
    return undo


def _took_effect(correlation_id: str, step: str) -> bool:
    return any(entry[0] == step and entry[3] == "did" for entry in entries(correlation_id))


def _done(correlation_id: str, step: str) -> asyncio.Event:
    return _DONE.setdefault((correlation_id, step), asyncio.Event())
