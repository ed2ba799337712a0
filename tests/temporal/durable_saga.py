"""A saga for the durability test, served by a worker subprocess.

Steps write what they do to files in ``data["dir"]`` so that the test, in another process,
sees how many times each ran. ``slow`` hangs the first time it runs, until the worker is killed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import sagakit as sk


def _note(data: Any, line: str) -> None:
    with (Path(data["dir"]) / "calls.log").open("a") as log:
        log.write(line + "\n")


async def reserve(data: Any, context: sk.WorkflowContext) -> Any:
    _note(data, f"reserve {context.attempt}")
    return {**data, "reservation": "r-1"}


async def release(data: Any, context: sk.WorkflowContext) -> None:
    _note(data, "release")


async def slow(data: Any, context: sk.WorkflowContext) -> Any:
    _note(data, f"slow {context.attempt}")
    started = Path(data["dir"]) / "slow-started"
    if not started.exists():
        started.touch()
        await asyncio.sleep(120)  # the test kills the worker meanwhile
    return {**data, "slow": "done"}


async def ship(data: Any, context: sk.WorkflowContext) -> Any:
    _note(data, f"ship {context.attempt}")
    return {**data, "shipped": True}


durable = sk.Saga(
    "durable",
    [sk.step(reserve, compensate=release), sk.step(slow, retry=sk.RetryPolicy(max_retries=2, initial_delay=0.1)),
     sk.step(ship)],
)

not_a_saga = {"name": "durable"}
