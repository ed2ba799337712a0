"""Sagas whose steps and compensations are made of several attempts, and a child that SIGKILLs itself.

Every function appends ``(function, data)`` to a ``calls`` table of a service file, so a test
sees which parts ran, in which order and with what data. ``python journal_parts.py SAGA JOURNAL
SERVICE KILL_IN`` runs one saga on the journal and sends itself SIGKILL when the function
named ``KILL_IN`` is called (``name#2``: called the second time) (once the journal has committed everything before it, and after
recording the call): a crash between two attempts of one step, exactly.

Sagas (all start with ``reserve``, a plain step whose compensation is ``release``):

- ``pack``: reserve -> pack = pick >> box (compensated by ``unpack``) -> ship -> reject (fails).
- ``pack_ambiguous``: the same, but ``pack`` says ``compensate_on_failure=True``.
- ``flaky``: reserve -> charge (retried; its first try fails) -> ship -> reject.
- ``retried``: reserve (compensated by ``release``, retried; its first try fails) -> reject.
- ``refund``: reserve -> pay (compensated by refund >> notify) -> reject.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import sagakit
from sagakit import RetryPrimitive, Saga, SequentialPrimitive, WorkflowContext, step

SERVICE = "SAGAKIT_TEST_PARTS_SERVICE"
KILL_IN = "SAGAKIT_TEST_PARTS_KILL_IN"
#: The child's journal: the killing function waits for it to commit what came before.
JOURNAL: list[sagakit.SqliteJournal] = []


def create_service(path: str | Path) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("CREATE TABLE IF NOT EXISTS calls (n INTEGER PRIMARY KEY, function TEXT, data TEXT)")
    finally:
        connection.close()


def calls(path: str | Path) -> list[tuple[str, Any]]:
    """``(function, data)`` of every call, in order."""
    connection = sqlite3.connect(path)
    try:
        return [(name, json.loads(data)) for name, data in connection.execute("SELECT function, data FROM calls "
                                                                             "ORDER BY n")]
    finally:
        connection.close()


_CALLS: dict[str, int] = {}


async def _called(name: str, data: Any) -> None:
    _CALLS[name] = _CALLS.get(name, 0) + 1
    killing = os.environ.get(KILL_IN) in (name, f"{name}#{_CALLS[name]}")
    if killing:
        await JOURNAL[0].settle()  # the attempts before this one are on disk
    connection = sqlite3.connect(os.environ[SERVICE], isolation_level=None)
    try:
        connection.execute("INSERT INTO calls (function, data) VALUES (?, ?)", (name, json.dumps(data)))
    finally:
        connection.close()
    if killing:
        os.kill(os.getpid(), signal.SIGKILL)


def _part(name: str, *, output: bool = True, failures: int = 0) -> Any:
    tries = {"n": 0}

    async def function(data: dict[str, Any], context: WorkflowContext) -> dict[str, Any] | None:
        await _called(name, data)
        tries["n"] += 1
        if tries["n"] <= failures:
            raise ConnectionError(f"{name}: try again")
        return {**data, name: True} if output else None

    function.__name__ = name
    return function


def _reject(data: dict[str, Any], context: WorkflowContext) -> None:
    raise ValueError("rejected")


def build(name: str) -> Saga:
    reserve = step(_part("reserve"), compensate=_part("release", output=False))
    ship = step(_part("ship"), compensate=_part("unship", output=False))
    if name in ("pack", "pack_ambiguous"):
        pack = step(SequentialPrimitive([_part("pick"), _part("box")]), compensate=_part("unpack", output=False),
                    name="pack", compensate_on_failure=name == "pack_ambiguous")
        return Saga(name, [reserve, pack, ship, step(_reject)])
    if name == "flaky":
        charge = step(_part("charge", failures=1), compensate=_part("uncharge", output=False), name="charge",
                      retry=sagakit.RetryPolicy(max_retries=2, initial_delay=0, jitter=0))
        return Saga(name, [reserve, charge, ship, step(_reject)])
    if name == "retried":
        undo = RetryPrimitive(_part("release", output=False, failures=1), max_retries=2, initial_delay=0, jitter=0)
        return Saga(name, [step(_part("reserve"), compensate=undo), step(_reject)])
    if name == "refund":
        pay = step(_part("pay"), compensate=SequentialPrimitive([_part("refund", output=False),
                                                                 _part("notify", output=False)]))
        return Saga(name, [reserve, pay, step(_reject)])
    raise ValueError(name)


def main() -> None:
    saga_name, journal_path, service, kill_in = sys.argv[1:5]
    os.environ[SERVICE] = service
    os.environ[KILL_IN] = kill_in
    journal = sagakit.SqliteJournal(journal_path, durability="normal")
    JOURNAL.append(journal)
    asyncio.run(build(saga_name).run({"order": 7}, journal=journal))
    journal.close()


if __name__ == "__main__":
    main()
