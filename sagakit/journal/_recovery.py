"""Backward recovery: roll back the runs that a crash left unfinished in a journal.

A run is unfinished when its journal has no recorded end: the process running it was killed,
the machine lost power, or the notebook kernel was restarted. :func:`recover` finds those runs
(skipping any whose process is still alive), and for each one:

1. claims it in the journal, so that two recoveries never work on the same run;
2. works out, from the recorded events and the saga's definition, which steps completed and
   with what data, and which compensations already succeeded;
3. runs the missing compensations in reverse order of completion, with the recorded data and
   a context carrying the run's id, saga, step and correlation id (so the idempotency key is
   the one the engine would have used), recording each before starting the next;
4. records the run's end: ``compensated``, or ``compensation_failed`` (marked for attention,
   following the saga's ``continue_on_compensation_failure``), or ``completed`` when every
   step had completed and no rollback had begun.

Compensations run at least once: one that ran but whose success was not recorded before a
crash runs again, with the same idempotency key. A crash during recovery leaves the run
claimed by a dead process, so the next recovery takes it over. Recovering twice compensates
nothing twice.

A step caught in flight by the crash is not compensated (its outcome is unknown and, as in a
rollback, a failed step is not undone), unless it says ``compensate_on_failure=True``: then
its compensation runs first, with the step's input, whether or not the step had started.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sagakit._checks import check_bool, check_observers, check_positive_int
from sagakit._recorder import compensation_error, deliver, pending_after, rollback_outcome, undo_order
from sagakit.context import WorkflowContext
from sagakit.errors import CompensationFailure, JournalError, RunInterrupted
from sagakit.events import Event, EventKind, Observer
from sagakit.journal._attempts import SUCCEEDED, whole_outcomes
from sagakit.journal._file import ACTIVE_RUNS, Owner, current_owner, owner_alive
from sagakit.journal._history import (
    RecordedRun,
    damage_report,
    damaged_run,
    is_damage,
    read_each_run,
    runs_rows,
    saga_definitions,
)
from sagakit.journal._sqlite import SqliteJournal
from sagakit.policies import Policy, call_step_function
from sagakit.runs import Run, RunStatus
from sagakit.steps import Parallel, Step

if TYPE_CHECKING:
    from pathlib import Path

    from sagakit.saga import Saga

__all__ = ["Recovery", "SkippedRun", "recover"]

_K = EventKind
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
        """Recovered runs whose compensation failed: a person must look at them."""
        return [run for run in self.runs if run.status == "compensation_failed"]

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


@dataclass(slots=True)
class _Undo:
    """One compensation recovery owes: the step (``None`` if the saga lost it) and its data."""

    name: str
    index: int
    step: Step | None
    data: Any
    stored: bool


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
        retry_failed: also retry the failed compensations of runs that ended
            ``compensation_failed`` (after you fixed what made them fail).
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


async def _recover_all(
    journal: SqliteJournal,
    definitions: Mapping[str, Saga],
    *,
    force: bool,
    retry_failed: bool,
    concurrency: int,
    observers: Sequence[Observer],
) -> Recovery:
    where = "status IS NULL" + (" OR status = 'compensation_failed'" if retry_failed else "")
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

    async def one(record: RecordedRun, saga: Saga) -> Run | SkippedRun:
        async with limit:
            try:
                return await _recover_run(journal, record, saga, observers)
            except JournalError as exc:
                return SkippedRun(record.run_id, saga.name, f"could not be recovered: {exc}")

    for chunk in range(0, len(eligible), _CHUNK):
        part = eligible[chunk : chunk + _CHUNK]
        # One transaction claims them all, so that two recoveries never share a run.
        claims = [(r, s, o) for r, _, s, o in part]
        claimed_ids, unclaimable = await journal._call(functools.partial(_claim_each, path=journal.path, runs=claims))
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
                definitions[outcome.saga].history.append(outcome)
                recovered.append(outcome)
            else:
                skipped.append(outcome)
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


def _claim_each(
    connection: sqlite3.Connection, *, path: Path, runs: Sequence[tuple[str, str | None, Owner]]
) -> tuple[list[str], dict[str, JournalError]]:
    """:func:`_claim` all ``runs`` at once or, in a damaged file, one by one; also the runs that could not be."""
    try:
        return _claim(connection, runs=runs), {}
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise JournalError(path, f"cannot claim runs for recovery ({exc}); try again") from exc
    claimed: list[str] = []
    failed: dict[str, JournalError] = {}
    for run in runs:
        try:
            claimed.extend(_claim(connection, runs=[run]))
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise JournalError(path, f"cannot claim runs for recovery ({exc}); try again") from exc
            failed[run[0]] = damaged_run(path, run[0], f"it cannot be claimed for recovery ({exc})")
    return claimed, failed


def _claim(connection: sqlite3.Connection, *, runs: Sequence[tuple[str, str | None, Owner]]) -> list[str]:
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


def _plan(record: RecordedRun, saga: Saga) -> tuple[list[_Undo], Any, bool]:
    """What recovery owes a run: compensations in order, the result if complete, and whether it is complete."""
    events = record.events
    completed: dict[str, tuple[int, int, Any, bool]] = {}  # name -> (position, index, data, stored)
    attempts: dict[str, list[int]] = {}  # name -> positions of the events ending its forward attempts
    compensations: dict[str, list[int]] = {}  # name -> positions of its compensation events
    skipped: set[str] = set()
    rolling_back = False
    for position, event in enumerate(events):
        kind = event.kind
        if kind is _K.STEP_SUCCEEDED or kind is _K.STEP_FAILED or kind is _K.STEP_CANCELLED:
            name = event.step or ""
            attempts.setdefault(name, []).append(position)
            if kind is _K.STEP_SUCCEEDED:
                completed[name] = (position, event.index, event.data, record.payload_states[position] == "stored")
        elif kind is _K.COMPENSATION_SKIPPED:
            skipped.add(event.step or "")
        elif event.phase == "compensate":
            compensations.setdefault(event.step or "", []).append(position)
        elif kind is _K.ROLLBACK_STARTED:
            rolling_back = True
    steps = {member.name: member for member in saga.steps}
    stage_of = {member.name: number for number, stage in enumerate(saga.stages)
                for member in (stage.steps if isinstance(stage, Parallel) else (stage,))}
    done = {name: entry for name, entry in completed.items()
            if _forward_done(events, attempts[name], steps.get(name), stage_of)}
    compensated = skipped | {name for name, positions in compensations.items()
                             if _compensation_done(events, positions, steps.get(name))}
    on_failure: list[_Undo] = []
    # The first stage that did not complete: its steps may have been in flight.
    stage_input = events[0].data
    index = 0
    all_done = True
    for stage in saga.stages:
        members = stage.steps if isinstance(stage, Parallel) else (stage,)
        if all(member.name in done for member in members):
            stage_input = _stage_output(stage, members, done, stage_input)
            index += len(members)
            continue
        all_done = False
        for offset, member in enumerate(members):
            ambiguous = member.compensate_on_failure and member.compensate is not None
            if ambiguous and member.name not in done and member.name not in compensated:
                on_failure.append(_Undo(member.name, index + offset, member, stage_input, True))
        break
    unstored = any(not stored for _, _, _, stored in done.values())
    if all_done and not rolling_back and not unstored and set(done) >= set(steps):
        return [], stage_input, True
    completed_in_order = [_Undo(name, step_index, steps.get(name), data, stored)
                          for name, (_, step_index, data, stored) in sorted(done.items(), key=lambda item: item[1][0])
                          if name not in compensated]
    return undo_order(on_failure, completed_in_order), None, False


def _forward_done(events: Sequence[Event], positions: Sequence[int], step: Step | None,
                  stage_of: Mapping[str, int]) -> bool:
    """Whether a step's whole forward call completed, from the events ending its attempts.

    The end of one attempt is the end of the step only for a plain action. For a policy, the
    step completed if something recorded after its last attempt shows the run moved past its
    stage (a later stage's attempt, the rollback), or if its attempts cannot be read otherwise.
    """
    last = events[positions[-1]]
    if last.kind is not _K.STEP_SUCCEEDED:
        return False
    if step is None or step.plain:
        return True
    stage = stage_of[step.name]
    for later in events[positions[-1] + 1 :]:
        if later.phase != "forward" or stage_of.get(later.step or "", -1) != stage:
            return True  # stages run one after another: the run moved past this one
    return _whole_succeeded(step.forward, [events[p].kind is _K.STEP_SUCCEEDED for p in positions])


def _compensation_done(events: Sequence[Event], positions: Sequence[int], step: Step | None) -> bool:
    """Whether a step's whole compensation succeeded, from its recorded events.

    Every call of the compensation (by the engine's rollback, or by a recovery) starts again
    at attempt 1; only the last one counts. A compensation that is a policy succeeded when
    its last attempt succeeded and the rollback moved on to something else, or when its
    attempts add up to the whole.
    """
    ends = [p for p in positions if events[p].kind is not _K.COMPENSATION_STARTED]
    if not ends or events[ends[-1]].kind is not _K.COMPENSATION_SUCCEEDED or positions[-1] != ends[-1]:
        return False  # never succeeded, or a later attempt started after its last success
    compensate = step.compensate if step is not None else None
    if compensate is None or not isinstance(compensate, Policy):
        return True
    name = events[ends[-1]].step
    if any(later.step != name for later in events[ends[-1] + 1 :]):
        return True  # compensations run one after another: the rollback moved on
    call = ends[max((i for i, p in enumerate(ends) if events[p].attempt <= 1), default=0) :]
    return _whole_succeeded(compensate, [events[p].kind is _K.COMPENSATION_SUCCEEDED for p in call])


def _whole_succeeded(fn: Any, attempts: Sequence[bool]) -> bool:
    outcomes = whole_outcomes(fn, attempts)
    if not outcomes:
        # A policy of the user's own (or a definition changed since the run): the end of
        # its last attempt is all there is to go by.
        return attempts[-1]
    return outcomes == {SUCCEEDED}


def _stage_output(stage: Step | Parallel, members: Sequence[Step], done: Mapping[str, Any], data: Any) -> Any:
    if not isinstance(stage, Parallel):
        return done[stage.name][2]
    merged: dict[str, Any] = {}
    for member in members:
        output = done[member.name][2]
        if isinstance(output, Mapping):
            merged.update(output)
    return merged


async def _recover_run(journal: SqliteJournal, record: RecordedRun, saga: Saga, observers: Sequence[Observer]) -> Run:
    events = record.events
    run_id = record.run_id
    correlation_id = record.correlation_id
    new_events: list[Event] = []
    # The run's own list: an observer that raises is dropped from it (see deliver).
    watching = list(observers)

    def emit(event: Event) -> None:
        new_events.append(event)
        journal(event)
        if watching:
            deliver(watching, event)

    def now() -> float:
        return time.time()

    undo, result, complete = _plan(record, saga)
    original: BaseException | None = None
    rollback = next((event for event in events if event.kind is _K.ROLLBACK_STARTED), None)
    status: RunStatus
    error: BaseException | None
    if complete:
        status, error = "completed", None
    else:
        if rollback is None:
            original = RunInterrupted(run_id)
            completed = [event.step for event in events if event.kind is _K.STEP_SUCCEEDED]
            emit(Event(_K.ROLLBACK_STARTED, run_id, record.saga, now(), completed[-1] if completed else None,
                       error=original, status="rolling_back", correlation_id=correlation_id))
        else:
            original = rollback.error
        failures: list[CompensationFailure] = []
        pending: list[str] = []
        for position, entry in enumerate(undo):
            step = entry.step
            if step is not None and step.compensate is None:
                at = now()
                emit(Event(_K.COMPENSATION_SKIPPED, run_id, record.saga, at, entry.name, entry.index, "compensate", 0,
                           at, 0.0, None, False, entry.data, "skipped", correlation_id))
                continue
            failure = await _compensate(emit, record, saga, entry)
            await journal.settle()
            if failure is not None:
                failures.append(failure)
                if not saga.continue_on_compensation_failure:
                    pending = [later.name for later in pending_after(undo, position, _compensates)]
                    break
        rollback_failure = compensation_error(record.saga, original, failures, pending) if failures else None
        # A run that was rolling back a cancellation (no original error) ends cancelled.
        status, error = rollback_outcome(rollback_failure, original, None)
    started = events[0].at
    ended = now()
    emit(Event(_K.RUN_FINISHED, run_id, record.saga, ended, None, -1, None, 0, started, (ended - started) * 1000.0,
               error, any(event.injected for event in events), result, status, correlation_id))
    await journal.settle()
    info = dict(record.info)
    info["recovered"] = True
    return Run.from_events([*events, *new_events], definition=saga, backend=record.backend, info=info)


def _compensates(entry: _Undo) -> bool:
    """Whether recovery owes ``entry`` a compensation (a step the saga lost counts: it failed)."""
    return entry.step is None or entry.step.compensate is not None


async def _compensate(emit: Any, record: RecordedRun, saga: Saga, entry: _Undo) -> CompensationFailure | None:
    """Run one owed compensation as attempt 1, emitting its start and end; return its failure, if any."""
    context = WorkflowContext(correlation_id=record.correlation_id)
    context.run_id = record.run_id
    context.saga = record.saga
    context.step = entry.name
    context.phase = "compensate"
    context.attempt = 1
    started = time.time()
    emit(Event(_K.COMPENSATION_STARTED, record.run_id, record.saga, started, entry.name, entry.index, "compensate", 1,
               None, None, None, False, entry.data, None, record.correlation_id))
    error: BaseException
    try:
        if entry.step is None:
            raise LookupError(
                f"saga {saga.name!r} has no step {entry.name!r} any more; undo what it did by hand, then mark the run"
            )
        if not entry.stored:
            raise LookupError(
                f"the data step {entry.name!r} returned was never recorded (the journal could not serialise it), "
                "so its compensation cannot run; undo what it did by hand"
            )
        assert entry.step.compensate is not None
        await call_step_function(entry.step.compensate, entry.data, context)
    except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
        # The run stays claimed by this process; once it stops, the next recovery takes it over.
        ended = time.time()
        emit(Event(_K.COMPENSATION_CANCELLED, record.run_id, record.saga, ended, entry.name, entry.index,
                   "compensate", 1, started, (ended - started) * 1000.0, None, False, None, "cancelled",
                   record.correlation_id))
        raise
    except Exception as exc:
        error = exc
    else:
        ended = time.time()
        emit(Event(_K.COMPENSATION_SUCCEEDED, record.run_id, record.saga, ended, entry.name, entry.index,
                   "compensate", 1, started, (ended - started) * 1000.0, None, False, entry.data, "succeeded",
                   record.correlation_id))
        return None
    ended = time.time()
    emit(Event(_K.COMPENSATION_FAILED, record.run_id, record.saga, ended, entry.name, entry.index, "compensate", 1,
               started, (ended - started) * 1000.0, error, False, None, "failed", record.correlation_id))
    return CompensationFailure(entry.name, error)
