"""The crash backend's child process: run one row on a real journal, and die at its crash point.

Usage: ``python -m conformance.child ROW JOURNAL CELL``, or ``python -m conformance.child`` and
then ``["ROW", "JOURNAL", "CELL"]`` as one JSON line on its standard input (so that a child can be
started, and pay for its imports, before the cell that uses it; it exits quietly if its input
closes first). The child starts the row's runs (the
correlation ids ``CELL#0`` ...) on the SQLite journal ``JOURNAL`` and SIGKILLs itself, with
``os.kill(os.getpid(), SIGKILL)``, once every run has reached the row's crash point: a point
in a step or compensation (see :mod:`conformance.world`), or an event kind, seen by an
observer. A row without a crash point runs to its end; the child then exits normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import sagakit as sk
from conformance import world
from conformance.drivers import wait_recorded
from conformance.table import ROWS, SAGAS, Row, fresh_faults
from conformance.world import Point


def _killer(row: Row, journal: Path) -> tuple[Any, Any]:
    """What to call when a run reaches the crash point: the last run to get there kills the process.

    Two forms: a plain function for an observer (the completions it waits for are committed
    already), and a coroutine function for a point in a step, which lets the event loop go on
    while the journal commits the completions the row waits for (the journal hands a turn's
    records to its writer on the loop's next turn).
    """
    arrived = 0

    def last() -> bool:
        nonlocal arrived
        arrived += 1
        return arrived == row.runs

    def reached() -> bool:
        if last():
            if row.kill_once_recorded:
                wait_recorded(journal, row.kill_once_recorded, row.runs)
            os.kill(os.getpid(), signal.SIGKILL)
        return True  # the others wait, in flight, for the kill

    async def reached_in_step() -> bool:
        if last():
            if row.kill_once_recorded:
                await asyncio.to_thread(wait_recorded, journal, row.kill_once_recorded, row.runs)
            os.kill(os.getpid(), signal.SIGKILL)
        return True

    return reached, reached_in_step


async def _main(row: Row, journal_path: Path, base: str) -> None:
    saga = SAGAS[row.name]
    journal = sk.SqliteJournal(journal_path)
    point = row.crash_point
    reached, reached_in_step = _killer(row, journal_path)
    observers: list[Any] = []
    correlation_ids = [f"{base}#{number}" for number in range(row.runs)]
    if isinstance(point, Point):
        for correlation_id in correlation_ids:
            world.arm(correlation_id, point, reached_in_step)
    elif point is not None:
        kind = point

        def observer(event: sk.Event) -> None:
            if event.kind == kind:
                reached()

        observers.append(observer)

    async def one(correlation_id: str) -> None:
        # The run re-raises a cancellation or an interruption after its rollback: the run is
        # recorded; what the call raised is no concern of the parent's.
        with contextlib.suppress(BaseException):
            await saga.run(dict(row.input), sk.WorkflowContext(correlation_id), faults=fresh_faults(row),
                           observers=observers, journal=journal)

    try:
        await asyncio.gather(*(one(correlation_id) for correlation_id in correlation_ids))
    finally:
        journal.close()


def main() -> None:
    if len(sys.argv) > 1:
        name, journal, base = sys.argv[1:4]
    else:
        line = sys.stdin.readline()
        if not line:
            return  # a spare child no cell needed
        name, journal, base = json.loads(line)
    row = next(row for row in ROWS if row.name == name)
    asyncio.run(_main(row, Path(journal), base))
    if row.crash_point is not None:
        sys.exit(f"row {name}: the runs ended without reaching the crash point {row.crash_point}")


if __name__ == "__main__":
    main()
