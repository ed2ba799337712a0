"""A small "service" in its own SQLite file, and sagas whose steps change it.

Shared by the tests and the child processes they start and kill. Each forward step inserts a
row keyed by its idempotency key (``run_id:step``); each compensation deletes the row of its
step, found through the same key, so that it also undoes a step caught in flight by a crash
(every step is ``compensate_on_failure=True``). A compensation counts its calls and records
its own idempotency key, so a repeated call changes nothing.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
from pathlib import Path
from typing import Any

import sagakit
from sagakit import Saga, WorkflowContext, parallel, step

SERVICE_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (key TEXT PRIMARY KEY, run_id TEXT NOT NULL, step TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS undone (key TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS forward_calls (key TEXT PRIMARY KEY, n INTEGER NOT NULL);
"""

#: Set in a child's environment to slow compensations down (so that a kill lands during recovery).
SLOW = "SAGAKIT_TEST_SLOW_COMPENSATE"
#: Set to a step name to make that step's compensation fail.
BROKEN = "SAGAKIT_TEST_BROKEN_COMPENSATION"
#: Set to ``<step>:before`` or ``<step>:after`` to end the process abruptly (``os._exit``) in that
#: step, before or after its effect: a crash at a precise point.
#: Set in a child's environment to add text (careless details) to the broken compensation's error.
BROKEN_SAYS = "SAGAKIT_TEST_BROKEN_SAYS"
EXIT_AT = "SAGAKIT_TEST_EXIT_AT"
#: Set to a step name to end the process abruptly right after that step's compensation acted.
EXIT_IN_COMPENSATION = "SAGAKIT_TEST_EXIT_IN_COMPENSATION"
#: Set to ``<step>:<n>`` to make that step's first ``n`` attempts fail (before acting).
FLAKY = "SAGAKIT_TEST_FLAKY"
#: Set to ``<step>:before``/``<step>:after``: the process SIGKILLs itself in that step.
KILL_AT = "SAGAKIT_TEST_KILL_AT"
#: Set to a step name to make that step wait a minute before acting (a run that stays in flight).
HOLD = "SAGAKIT_TEST_HOLD"


def connect(path: str | Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")  # a process crash loses nothing; the tests need no fsync
    return connection


def create_service(path: str | Path) -> None:
    connection = connect(path)
    try:
        connection.executescript(SERVICE_SCHEMA)
    finally:
        connection.close()


def items(path: str | Path) -> list[tuple[str, str, str]]:
    """The service's business state: one row per forward step that is not undone."""
    connection = connect(path)
    try:
        return connection.execute("SELECT key, run_id, step FROM items ORDER BY key").fetchall()
    finally:
        connection.close()


def snapshot(path: str | Path) -> tuple[list[Any], list[Any], list[Any]]:
    """Everything in the service, bookkeeping included."""
    connection = connect(path)
    try:
        return (
            connection.execute("SELECT * FROM items ORDER BY key").fetchall(),
            connection.execute("SELECT * FROM undone ORDER BY key").fetchall(),
            connection.execute("SELECT * FROM calls ORDER BY key").fetchall(),
        )
    finally:
        connection.close()


def _kill_at(point: str) -> None:
    if os.environ.get(EXIT_AT) == point:
        os._exit(17)
    if os.environ.get(KILL_AT) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def _flaky(name: str, attempt: int) -> None:
    planned = os.environ.get(FLAKY, "")
    if planned.partition(":")[0] == name and attempt <= int(planned.partition(":")[2] or 0):
        raise ConnectionError(f"{name} is unavailable (attempt {attempt})")


def _make_step(name: str, *, jitter: float, kind: str = "compensatable") -> sagakit.Step:
    async def action(data: dict[str, Any], context: WorkflowContext) -> dict[str, Any]:
        if jitter:
            await asyncio.sleep(random.random() * jitter)
        if os.environ.get(HOLD) == name:
            await asyncio.sleep(60)
        _kill_at(f"{name}:before")
        _flaky(name, context.attempt)
        connection = connect(data["service"])
        try:
            # Idempotent, as a well-behaved step is: a step that acted but whose completion a crash
            # kept from the journal runs again (at least once), and acts once.
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("INSERT OR IGNORE INTO items VALUES (?, ?, ?)",
                               (context.idempotency_key, context.run_id, name))
            connection.execute("INSERT INTO forward_calls VALUES (?, 1) ON CONFLICT (key) DO UPDATE SET n = n + 1",
                               (context.idempotency_key,))
            connection.execute("COMMIT")
        finally:
            connection.close()
        _kill_at(f"{name}:after")
        return {**data, name: context.idempotency_key}

    async def compensate(data: dict[str, Any], context: WorkflowContext) -> None:
        if os.environ.get(SLOW):
            await asyncio.sleep(float(os.environ[SLOW]))
        if os.environ.get(BROKEN) == name:
            raise RuntimeError(f"the {name} service is down{os.environ.get(BROKEN_SAYS, '')}")
        forward_key = f"{context.run_id}:{context.step}"
        connection = connect(data["service"])
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(
                "INSERT INTO calls VALUES (?, 1) ON CONFLICT (key) DO UPDATE SET n = n + 1", (context.idempotency_key,)
            )
            if connection.execute("SELECT 1 FROM undone WHERE key = ?", (context.idempotency_key,)).fetchone() is None:
                connection.execute("DELETE FROM items WHERE key = ?", (forward_key,))
                connection.execute("INSERT INTO undone VALUES (?)", (context.idempotency_key,))
            connection.execute("COMMIT")
        finally:
            connection.close()
        if os.environ.get(EXIT_IN_COMPENSATION) == name:
            os._exit(17)

    action.__name__ = name
    if kind != "compensatable":
        return step(action, name=name, kind=kind, retry=sagakit.RetryPolicy(max_retries=2, initial_delay=0.001,
                                                                            jitter=0.0))  # type: ignore[arg-type]
    return step(action, compensate=compensate, name=name, compensate_on_failure=True)


def validate(data: dict[str, Any], context: WorkflowContext) -> None:
    raise ValueError("order rejected")


def order_saga(*, jitter: float = 0.0, name: str = "order") -> Saga:
    """reserve -> [charge | notify] -> ship -> validate (always fails: every run rolls back)."""
    return Saga(
        name,
        [
            _make_step("reserve", jitter=jitter),
            parallel(_make_step("charge", jitter=jitter), _make_step("notify", jitter=jitter)),
            _make_step("ship", jitter=jitter),
            step(validate),
        ],
    )


def checkout_saga(*, name: str = "checkout") -> Saga:
    """reserve -> charge -> ship, succeeding."""
    return Saga(name, [_make_step("reserve", jitter=0), _make_step("charge", jitter=0), _make_step("ship", jitter=0)])


def pivot_saga(*, name: str = "shipment") -> Saga:
    """reserve -> capture (the pivot) -> [label | notify] -> ship: forward recovery past capture."""
    return Saga(name, [
        _make_step("reserve", jitter=0),
        _make_step("capture", jitter=0, kind="pivot"),
        parallel(_make_step("label", jitter=0, kind="retriable"), _make_step("notify", jitter=0, kind="retriable")),
        _make_step("ship", jitter=0, kind="retriable"),
    ])


#: For ``python -m sagakit recover --journal PATH journal_service:order``.
order = order_saga()
checkout = checkout_saga()
shipment = pivot_saga()


def forward_calls(path: str | Path) -> dict[str, int]:
    """How many times each forward step (by idempotency key) acted."""
    connection = connect(path)
    try:
        return {key.rpartition(":")[2]: n for key, n in connection.execute("SELECT key, n FROM forward_calls")}
    finally:
        connection.close()


def calls(path: str | Path) -> dict[str, int]:
    """How many times each compensation (by idempotency key) was called."""
    connection = connect(path)
    try:
        return dict(connection.execute("SELECT key, n FROM calls"))
    finally:
        connection.close()
