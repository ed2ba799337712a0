"""Backward recovery: roll back the runs that a crash left unfinished in a journal.

A run is unfinished when its journal has no recorded end: the process running it was killed,
the machine lost power, or the notebook kernel was restarted. :func:`recover` finds those runs
(skipping any whose process is still alive), and for each one:

1. claims it in the journal, so that two recoveries never work on the same run (the claims of
   up to 500 runs share one transaction; in a damaged file, one transaction per run);
2. works out from the recorded events and the saga's definition where the run stood
   (:mod:`sagakit._resume`): which steps completed and with what data, which
   compensations already succeeded or failed, and which step was in flight;
3. hands the run to the local engine, which carries it on under the same driver as any run
   (:mod:`sagakit._driver`): ``run_resumed`` in the same record, then the rollback from where
   it stood (``rollback_started`` first, with :class:`~sagakit.RunInterrupted` as its error
   and the step in flight blamed, if no rollback had begun), the missing compensations in
   undo order with the recorded data and a context carrying the run's id, saga, step and
   correlation id (so the idempotency key is the one the engine would have used), each
   recorded before the next starts, shielded from cancellation;
4. the run ends as the engine ends it: ``compensated``, ``compensation_failed`` (marked for
   attention, following the saga's ``continue_on_compensation_failure``), or ``completed``
   when every step had completed and no rollback had begun.

Compensations run at least once: one that ran but whose success was not recorded before a
crash runs again, with the same idempotency key. A crash during recovery leaves the run
claimed by a dead process, so the next recovery takes it over. Recovering twice compensates
nothing twice. A compensation interrupted (``KeyboardInterrupt``, ``SystemExit``, its own
cancellation) counts as failed and the rollback goes on, as in the engine; the interruption
propagates from :func:`recover` once every run it took on is recorded.

A step caught in flight by the crash is not compensated (its outcome is unknown and, as in a
rollback, a failed step is not undone), unless it says ``compensate_on_failure=True``: then
its compensation runs first, with the step's input, whether or not the step had started.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sagakit._checks import check_bool, check_observers, check_positive_int
from sagakit._resume import RESUMABLE
from sagakit._sync import run_sync
from sagakit.errors import JournalError
from sagakit.events import Observer
from sagakit.journal._carry import carry_on, claim_each
from sagakit.journal._file import ACTIVE_RUNS, Owner, owner_alive
from sagakit.journal._history import (
    RecordedRun,
    damage_report,
    read_each_run,
    runs_rows,
    saga_definitions,
)
from sagakit.journal._sqlite import SqliteJournal
from sagakit.runs import Run

if TYPE_CHECKING:
    from pathlib import Path

    from sagakit.saga import Saga

__all__ = ["Recovery", "SkippedRun", "recover", "recover_sync"]

# Runs claimed and read per transaction (SQLite limits the parameters of one statement).
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class SkippedRun:
    """An unfinished run that :func:`recover` left alone, and why.

    Attributes:
        run_id: the run.
        saga: its saga's name.
        reason: why it was not recovered (its process is alive, no definition was given ...).
    """

    run_id: str
    saga: str
    reason: str


@dataclass(frozen=True, slots=True)
class Recovery:
    """What :func:`recover` did.

    Attributes:
        runs: the runs it finished, as :class:`~sagakit.Run` objects (also appended to their
            saga's ``history``).
        skipped: unfinished runs it left alone, with the reason.
    """

    runs: tuple[Run, ...] = ()
    skipped: tuple[SkippedRun, ...] = field(default=())

    @property
    def needs_attention(self) -> list[Run]:
        """Recovered runs whose compensation failed or that are stuck: a person must look at them."""
        return [run for run in self.runs if run.status in RESUMABLE]

    @property
    def ok(self) -> bool:
        """Whether every unfinished run was rolled back (or completed) cleanly."""
        return not self.skipped and not self.needs_attention

    def __len__(self) -> int:
        return len(self.runs)

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for run in self.runs:
            counts[run.status] = counts.get(run.status, 0) + 1
        parts = [f"{status}={count}" for status, count in sorted(counts.items())]
        if self.skipped:
            parts.append(f"skipped={len(self.skipped)}")
        return f"<Recovery {len(self.runs)} runs{': ' + ', '.join(parts) if parts else ''}>"


async def recover(
    journal: SqliteJournal | str | os.PathLike[str],
    sagas: Iterable[Saga] | Mapping[str, Saga],
    *,
    force: bool = False,
    retry_failed: bool = False,
    concurrency: int = 64,
    observers: Iterable[Observer] = (),
) -> Recovery:
    """Roll back every run the journal shows unfinished, at least once, with stable idempotency keys.

    Args:
        journal: a :class:`~sagakit.SqliteJournal` or the path of one.
        sagas: the definitions of the sagas whose runs may need recovery (matched by name);
            runs of other sagas are skipped and reported.
        force: also recover runs whose process still seems alive. Only for when you know it
            no longer runs them (a process on another host, a run abandoned in this one).
        retry_failed: also carry on the runs that need an operator, after you fixed their
            cause: those that ended ``compensation_failed`` retry their failed compensations,
            those that ended ``stuck`` their pending step (as :meth:`SqliteJournal.resume` does
            for one run).
        concurrency: how many runs are rolled back at once (their records share commits);
            each run's compensations still run one at a time, in reverse order.
        observers: also send the recovery's events to these observers.

    Returns:
        A :class:`Recovery` listing the runs it finished and the runs it skipped.

    Raises:
        JournalError: the journal cannot be opened or written; or some runs' records are
            damaged in the file: then every run that could be read was recovered first (and is
            in its saga's ``history``), and the message names the file and the damaged runs.
        TypeError, ValueError: an argument is not what is expected (the message names it), for
            instance ``sagas`` holds something else than sagas, or two sagas share a name.
    """
    path_like = isinstance(journal, str | os.PathLike) and not isinstance(journal, bytes)
    if not isinstance(journal, SqliteJournal) and not path_like:
        raise TypeError(f"recover journal: expected a SqliteJournal or a file path, got {type(journal).__name__} "
                        f"{journal!r}")
    definitions = saga_definitions(sagas, "recover sagas", optional=False)
    for name, value in (("force", force), ("retry_failed", retry_failed)):
        check_bool(value, f"recover {name}")
    check_positive_int(concurrency, "recover concurrency")
    extra = check_observers(observers, "recover observers")
    owned = not isinstance(journal, SqliteJournal)
    target = journal if isinstance(journal, SqliteJournal) else SqliteJournal(journal)
    for saga in definitions.values():
        target.bind(saga)  # what recovery records is masked with the saga's redactor
    try:
        return await _recover_all(target, definitions, force=force, retry_failed=retry_failed,
                                  concurrency=concurrency, observers=extra)
    finally:
        if owned:
            target.close()


def recover_sync(
    journal: SqliteJournal | str | os.PathLike[str],
    sagas: Iterable[Saga] | Mapping[str, Saga],
    *,
    force: bool = False,
    retry_failed: bool = False,
    concurrency: int = 64,
    observers: Iterable[Observer] = (),
) -> Recovery:
    """:func:`recover` from synchronous code, also inside a running loop (a notebook cell)."""
    return run_sync(lambda: recover(journal, sagas, force=force, retry_failed=retry_failed,
                                    concurrency=concurrency, observers=observers))


async def _recover_all(
    journal: SqliteJournal,
    definitions: Mapping[str, Saga],
    *,
    force: bool,
    retry_failed: bool,
    concurrency: int,
    observers: Sequence[Observer],
) -> Recovery:
    where = "status IS NULL" + (" OR status IN ('compensation_failed', 'stuck')" if retry_failed else "")
    rows, lost_rows = await journal._call(functools.partial(_unfinished_runs, path=journal.path, where=where))
    damaged_runs: dict[str, JournalError] = {}
    skipped: list[SkippedRun] = []
    eligible: list[tuple[str, Saga, str | None, Owner]] = []
    for run_id, saga_name, status, host, pid, started in rows:
        owner = Owner(host or "", pid or 0, started or "")
        if status is None and not force and owner_alive(owner, run_id):
            place = "this process" if owner.pid == os.getpid() else f"process {owner.pid} on {owner.host}"
            skipped.append(SkippedRun(run_id, saga_name, f"still running in {place}; pass force=True if it is not"))
            continue
        saga = definitions.get(saga_name)
        if saga is None:
            given = ", ".join(repr(name) for name in definitions) or "none"
            skipped.append(
                SkippedRun(run_id, saga_name, f"no saga named {saga_name!r} was given to recover() (given: {given})")
            )
            continue
        eligible.append((run_id, saga, status, owner))
    recovered: list[Run] = []
    limit = asyncio.Semaphore(concurrency)
    # Interruptions of compensations (KeyboardInterrupt, SystemExit, their own cancellation):
    # each run is recorded first, and the other runs' compensations are not cut off; the first
    # propagates once every run is done, as the engine does within one run.
    interrupts: list[BaseException] = []

    async def one(record: RecordedRun, saga: Saga) -> Run | SkippedRun | None:
        async with limit:
            try:
                return await carry_on(journal, record, saga, observers, retry_failed)
            except JournalError as exc:
                return SkippedRun(record.run_id, saga.name, f"could not be recovered: {exc}")
            except BaseException as exc:  # the run is recorded: see interrupts above
                interrupts.append(exc)
                return None

    for chunk in range(0, len(eligible), _CHUNK):
        part = eligible[chunk : chunk + _CHUNK]
        # One transaction claims them all, so that two recoveries never share a run.
        claims = [(r, s, o) for r, _, s, o in part]
        claimed_ids, unclaimable = await journal._call(functools.partial(claim_each, path=journal.path, runs=claims))
        claimed = set(claimed_ids)
        damaged_runs.update(unclaimable)
        skipped.extend(SkippedRun(run_id, saga.name, "another recovery took it over meanwhile")
                       for run_id, saga, _, _ in part if run_id not in claimed and run_id not in unclaimable)
        try:
            records, unreadable = await journal._call(functools.partial(
                read_each_run, path=journal.path, serializer=journal.serializer, run_ids=list(claimed)
            ))
            damaged_runs.update(unreadable)
            by_id = {record.run_id: record for record in records}
            outcomes = await asyncio.gather(
                *(one(by_id[run_id], saga) for run_id, saga, _, _ in part if run_id in by_id)
            )
        finally:
            ACTIVE_RUNS.difference_update(claimed)
        for outcome in outcomes:
            if isinstance(outcome, Run):
                recovered.append(outcome)  # the engine added it to its saga's history
            elif outcome is not None:
                skipped.append(outcome)
        if interrupts:
            raise interrupts[0]
    if damaged_runs or lost_rows:
        # Every readable run is recovered first: damage costs only the runs stored in it.
        raise damage_report(journal.path, damaged_runs, lost_rows,
                            f"{len(recovered)} other run(s) were recovered, {len(skipped)} skipped")
    return Recovery(tuple(recovered), tuple(skipped))


def _unfinished_runs(connection: sqlite3.Connection, *, path: Path, where: str) -> tuple[list[Any], int]:
    """The runs to look at, and how many rows of a damaged ``runs`` table could not be read."""
    return runs_rows(
        connection,
        path,
        columns="run_id, saga, status, owner_host, owner_pid, owner_started",
        where=where,
        doing="list its unfinished runs",
    )


