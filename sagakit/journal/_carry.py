"""Carrying a recorded run on: claims, and the hand-over to the local engine.

Shared by :func:`sagakit.recover` (every unfinished run) and :meth:`SqliteJournal.resume` (one
run that needs an operator). A run is claimed in the journal first, so that two processes never
carry the same run on; then :mod:`sagakit._resume` reads where its record stands, and the local
engine carries it on in the same record, under the same driver as any run.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sagakit._checks import check_observers
from sagakit._resume import RESUMABLE, Record, mismatch, position
from sagakit.context import WorkflowContext
from sagakit.engine import LocalBackend, RunRequest
from sagakit.errors import JournalError, ResumeRefused
from sagakit.events import Observer
from sagakit.faults import FaultPlan
from sagakit.journal._file import ACTIVE_RUNS, Owner, current_owner, owner_alive
from sagakit.journal._history import RecordedRun, damaged_run, is_damage, read_each_run
from sagakit.runs import Run

if TYPE_CHECKING:
    from pathlib import Path

    from sagakit.journal._sqlite import SqliteJournal
    from sagakit.saga import Saga

__all__ = ["carry_on", "claim_each", "resume"]

_ENGINE = LocalBackend()


async def resume(journal: SqliteJournal, run_id: str, saga: Saga, *, observers: Iterable[Observer] = ()) -> Run:
    """Finish one run that needs an operator, after its cause was fixed: see :meth:`SqliteJournal.resume`."""
    if not isinstance(run_id, str) or not run_id:
        raise TypeError(f"resume run_id: expected a run id (a non-empty str), got {run_id!r}")
    from sagakit.saga import Saga

    if not isinstance(saga, Saga):
        raise TypeError(f"resume saga: expected the sagakit.Saga the run belongs to, got {type(saga).__name__}")
    extra = check_observers(observers, "resume observers")
    journal.bind(saga)
    rows = await journal._call(functools.partial(_run_row, path=journal.path, run_id=run_id))
    if not rows:
        raise ResumeRefused(run_id, f"journal {journal.path} has no run {run_id!r}")
    _, saga_name, status, host, pid, started = rows[0]
    owner = Owner(host or "", pid or 0, started or "")
    if saga_name != saga.name:
        raise ResumeRefused(run_id, f"it is a run of saga {saga_name!r}, not of {saga.name!r}")
    if status is None and owner_alive(owner, run_id):
        place = "this process" if owner.pid == os.getpid() else f"process {owner.pid} on {owner.host}"
        raise ResumeRefused(run_id, f"it is still running in {place}")
    if status is not None and status not in RESUMABLE:
        raise ResumeRefused(run_id, f"it ended {status}: there is nothing left to do (resumable: an interrupted run, "
                                    f"or one that ended {' or '.join(RESUMABLE)})")
    records, unreadable = await journal._call(functools.partial(
        read_each_run, path=journal.path, serializer=journal.serializer, run_ids=[run_id]))
    if unreadable:
        raise unreadable[run_id]
    record = records[0]
    different = mismatch(record.events, saga)
    if different is not None:
        raise ResumeRefused(run_id, f"its recorded steps do not match saga {saga.name!r}: {different}")
    claimed, _ = await journal._call(functools.partial(claim_each, path=journal.path, runs=[(run_id, status, owner)]))
    if not claimed:
        raise ResumeRefused(run_id, "another process took it over meanwhile")
    try:
        return await carry_on(journal, record, saga, extra, retry_failed=True)
    finally:
        ACTIVE_RUNS.discard(run_id)


def _run_row(connection: sqlite3.Connection, *, path: Path, run_id: str) -> list[Any]:
    try:
        return connection.execute("SELECT run_id, saga, status, owner_host, owner_pid, owner_started FROM runs"
                                  " WHERE run_id = ?", (run_id,)).fetchall()
    except sqlite3.DatabaseError as exc:
        raise JournalError(path, f"cannot read run {run_id} ({exc})") from exc


def claim_each(
    connection: sqlite3.Connection, *, path: Path, runs: Sequence[tuple[str, str | None, Owner]]
) -> tuple[list[str], dict[str, JournalError]]:
    """:func:`_claim` all ``runs`` at once or, in a damaged file, one by one; also the runs that could not be."""
    try:
        return claim(connection, runs=runs), {}
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise JournalError(path, f"cannot claim runs for recovery ({exc}); try again") from exc
    claimed: list[str] = []
    failed: dict[str, JournalError] = {}
    for run in runs:
        try:
            claimed.extend(claim(connection, runs=[run]))
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise JournalError(path, f"cannot claim runs for recovery ({exc}); try again") from exc
            failed[run[0]] = damaged_run(path, run[0], f"it cannot be claimed for recovery ({exc})")
    return claimed, failed


def claim(connection: sqlite3.Connection, *, runs: Sequence[tuple[str, str | None, Owner]]) -> list[str]:
    """Make this process the owner of ``runs``, except those someone changed since we looked."""
    me = current_owner()
    claimed = []
    connection.execute("BEGIN IMMEDIATE")
    try:
        for run_id, status, previous in runs:
            cursor = connection.execute(
                "UPDATE runs SET owner_host = ?, owner_pid = ?, owner_started = ? WHERE run_id = ? AND status IS ?"
                " AND coalesce(owner_host, '') = ? AND coalesce(owner_pid, 0) = ?"
                " AND coalesce(owner_started, '') = ?",
                (me.host, me.pid, me.started, run_id, status, previous.host, previous.pid, previous.started),
            )
            if cursor.rowcount == 1:
                claimed.append(run_id)
        # Marked active before the claim is visible, so that another recovery in this
        # process takes these runs for live ones.
        ACTIVE_RUNS.update(claimed)
        connection.execute("COMMIT")
    except BaseException:
        ACTIVE_RUNS.difference_update(claimed)
        if connection.in_transaction:  # SQLite may have rolled back already
            connection.execute("ROLLBACK")
        raise
    return claimed


async def carry_on(journal: SqliteJournal, record: RecordedRun, saga: Saga, observers: Sequence[Observer],
                       retry_failed: bool) -> Run:
    """Carry ``record`` on from where it stands, on the local engine: the same driver, shielding
    and rules as any run, recorded into the same run in the journal."""
    resumption = position(Record(record.run_id, record.status, record.info, record.events,
                                 [state == "stored" for state in record.payload_states]), saga, retry_failed=retry_failed)
    context = WorkflowContext(correlation_id=record.correlation_id)._derive(record.run_id, saga.name)
    request = RunRequest(saga, None, context, FaultPlan(saga=saga.name), (journal, *observers), record.run_id,
                         resume=resumption)
    return await _ENGINE.run(request)
