"""Where a recorded run stands: its events read back into a :class:`~sagakit.engine.Resumption`.

:func:`sagakit.recover`, :meth:`sagakit.SqliteJournal.resume` and
:meth:`sagakit.temporal.TemporalBackend.resume` do not roll a run back, or forward, themselves:
they work out from the run's record where the run stood when it stopped, and hand that to a
backend, which carries the run on with the same driver as any run (:mod:`sagakit._driver`). This
module is that reading, shared by the journal and Temporal. It is pure: a record and a saga in,
a :class:`~sagakit.engine.Resumption` out.

How the records are read:

- A step *completed* when the events ending its attempts add up to the whole step (for a
  policy, see :mod:`sagakit._attempts`), or the run moved past its stage.
- The stages complete in order; the first stage that did not is where the run stopped. A
  parallel stage whose branches all completed merges their outputs by the driver's rule, so a
  branch that returned something else than a mapping fails the stage there, with the same
  ``TypeError`` the engine raised.
- The step *blamed* for an interruption is the step in flight (the first of that stage not
  completed), as the engine names it (:func:`sagakit._driver.blamed_step`).
- A run that had passed its pivot goes on *forward* from the first stage that did not complete,
  with the recorded output of the stage before it: it is never rolled back. A run stopped
  before its pivot, or in it, rolls back (a failure at the pivot rolls back, as in the engine).
- A compensation *succeeded* when its last call did; it *failed for good* when its last call
  failed and the rollback moved on (or its attempts add up to a failure); otherwise it was in
  flight, and runs again (at least once, with the same idempotency key).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sagakit._attempts import FAILED, SUCCEEDED, whole_outcomes
from sagakit._driver import blamed_step, merge_outputs
from sagakit.engine import Resumption
from sagakit.errors import CompensationFailure, RunInterrupted, unmergeable_branch_message
from sagakit.events import Event, EventKind
from sagakit.policies import Policy
from sagakit.steps import Parallel, Step

if TYPE_CHECKING:
    from sagakit.saga import Saga

__all__ = ["RESUMABLE", "Record", "mismatch", "position"]

#: The statuses of finished runs an operator can resume once the cause is fixed.
RESUMABLE = ("stuck", "compensation_failed")


@dataclass(frozen=True, slots=True)
class Record:
    """A run's record, as read back from wherever it was kept.

    Attributes:
        run_id: the run.
        status: its recorded status (``None``: it never recorded an end).
        info: its facts (``run.info``).
        events: its events, in order (start-of-attempt events other than compensations' may
            be missing: nothing here needs them).
        stored: per event, whether its payload was kept (a journal could not serialise some).
    """

    run_id: str
    status: str | None
    info: Mapping[str, Any]
    events: Sequence[Event]
    stored: Sequence[bool]


def mismatch(events: Sequence[Event], saga: Saga) -> str | None:
    """How a record's steps differ from ``saga``'s, or ``None`` when the saga can carry it on."""
    names = saga.step_names
    for event in events:
        if event.step is None or event.index < 0:
            continue
        if event.index >= len(names) or names[event.index] != event.step:
            have = names[event.index] if event.index < len(names) else "no step"
            return f"step {event.step!r} was step {event.index} of the run, the saga has {have!r} there"
    return None

_K = EventKind
_FORWARD_ENDS = (_K.STEP_SUCCEEDED, _K.STEP_FAILED, _K.STEP_CANCELLED)
_COMPENSATION_ENDS = (_K.COMPENSATION_SUCCEEDED, _K.COMPENSATION_FAILED, _K.COMPENSATION_CANCELLED)


def position(record: Record, saga: Saga, *, retry_failed: bool = False) -> Resumption:
    """Where ``record`` stands, for the engine to carry it on.

    Args:
        record: the run's records (an unfinished run, or with ``retry_failed`` a run that ended
            ``compensation_failed``).
        saga: its saga's definition.
        retry_failed: retry the compensations that failed (an operator fixed their cause);
            otherwise they stay failed, and a stopped rollback stays stopped.
    """
    events = record.events
    steps = {member.name: member for member in saga.steps}
    stage_of = {member.name: number for number, stage in enumerate(saga.stages)
                for member in (stage.steps if isinstance(stage, Parallel) else (stage,))}
    completed: dict[str, tuple[int, int, Any, bool]] = {}  # name -> (position, index, data, stored)
    # name -> positions of the events of its last call: the ends of its forward attempts, or its
    # compensation's events (each call of a step, or of a compensation, belongs to one part of
    # the record: the run's start, or one resumption)
    attempts: dict[str, list[int]] = {}
    compensations: dict[str, list[int]] = {}
    skipped: set[str] = set()
    rollback: Event | None = None
    resumptions = 0
    counted: dict[tuple[str, str], int] = {}
    for at, event in enumerate(events):
        kind = event.kind
        name = event.step or ""
        if kind in _FORWARD_ENDS or kind in _COMPENSATION_ENDS:
            key = (name, "forward" if kind in _FORWARD_ENDS else "compensate")
            counted[key] = max(counted.get(key, 0), event.attempt)
        if kind in _FORWARD_ENDS:
            _add_call_position(attempts, name, at, resumptions)
            if kind is _K.STEP_SUCCEEDED:
                completed[name] = (at, event.index, event.data, record.stored[at])
        elif kind is _K.COMPENSATION_SKIPPED:
            skipped.add(name)
        elif event.phase == "compensate":
            _add_call_position(compensations, name, at, resumptions)
        elif kind is _K.ROLLBACK_STARTED and rollback is None:
            rollback = event
        elif kind is _K.RUN_RESUMED:
            resumptions += 1
    done = {name: entry for name, entry in completed.items()
            if _forward_done(events, attempts[name][1:], steps.get(name), stage_of)}
    compensated: set[str] = set(skipped)
    failed: dict[str, BaseException] = {}
    for name, positions in compensations.items():
        verdict, error = _compensation_outcome(events, positions[1:], steps.get(name))
        if verdict == SUCCEEDED:
            compensated.add(name)
        elif verdict == FAILED and not retry_failed:
            failed[name] = error or RuntimeError("compensation failed")

    # Forward: the stages that completed, in order, and the first that did not.
    data = events[0].data
    stage_number = 0
    stopped_at: str | None = None
    branches: dict[str, Any] = {}  # the completed branches of the first stage not complete
    original: BaseException | None = None
    undo_on_failure: list[tuple[Step, int, Any]] = []
    index = 0
    for stage_number, stage in enumerate(saga.stages):  # noqa: B007 - read after the loop
        members = stage.steps if isinstance(stage, Parallel) else (stage,)
        if all(member.name in done for member in members):
            outputs = [done[member.name][2] for member in members]
            if isinstance(stage, Parallel):
                merged, unmergeable = merge_outputs(outputs)
                if unmergeable is not None:  # the engine failed the stage here, as it does
                    stopped_at = members[unmergeable].name
                    original = TypeError(unmergeable_branch_message(
                        saga.name, stopped_at, type(outputs[unmergeable]).__name__))
                    break
                data = merged
            else:
                data = outputs[0]
            index += len(members)
            continue
        branches = {member.name: done[member.name][2] for member in members if member.name in done}
        for offset, member in enumerate(members):
            if member.name not in done:
                if stopped_at is None:
                    stopped_at = member.name
                if (member.compensate_on_failure and member.compensate is not None
                        and member.name not in compensated and member.name not in failed):
                    undo_on_failure.append((member, index + offset, data))
        break
    else:
        stage_number = len(saga.stages)

    entries = [(name, step_index, value, stored) for name, (_, step_index, value, stored)
               in sorted(done.items(), key=lambda item: item[1][0])]
    remaining = [(_resumable_step(saga, steps.get(name), name, stored), step_index, value)
                 for name, step_index, value, stored in entries if name not in compensated and name not in failed]
    failures = [CompensationFailure(name, error) for name, error in failed.items()]
    failures.sort(key=lambda failure: compensations[failure.step][-1])  # in the order they ran
    resumption = Resumption(
        events=list(events),
        started_at=events[0].at,
        info={**record.info, **({"recovered": True} if record.status is None else {}), "resumed": resumptions + 1},
        status=record.status,
        number=resumptions + 1,
        attempts=counted,
        branches=branches,
        completed=remaining,
        undo_on_failure=undo_on_failure,
        failures=failures,
    )
    if rollback is not None:
        resumption.rolling_back = resumption.rollback_recorded = True
        resumption.original = rollback.error
        resumption.failed_step = rollback.step
        resumption.stopped = bool(failures) and not saga.continue_on_compensation_failure
        return resumption
    unstored = any(not stored for _, _, _, stored in entries)
    past_pivot = saga.forward_from is not None and stage_number >= saga.forward_from and original is None
    if past_pivot or (stopped_at is None and not unstored and set(done) >= set(steps)):
        # Past the pivot the run only ever goes forward: from the first stage that did not
        # complete, with the recorded output before it (or, every stage done, to its end).
        resumption.stage = stage_number
        resumption.data = data
        return resumption
    resumption.rolling_back = True
    resumption.original = original if original is not None else RunInterrupted(record.run_id)
    resumption.failed_step = blamed_step(stopped_at, None)
    return resumption


def _add_call_position(table: dict[str, list[int]], name: str, at: int, part: int) -> None:
    """Record event ``at`` for ``name``'s call in part ``part`` of the record: a call in a later
    part (a resumption called it again) replaces the earlier call."""
    entry = table.get(name)
    if entry is None or entry[0] != part:
        table[name] = entry = [part]
    entry.append(at)


def _resumable_step(saga: Saga, step: Step | None, name: str, stored: bool) -> Step:
    """``step``, or a stand-in whose compensation explains why it cannot run."""
    if step is not None and stored:
        return step
    if step is None:
        reason = (f"saga {saga.name!r} has no step {name!r} any more; undo what it did by hand, then mark the run")
    else:
        reason = (f"the data step {name!r} returned was never recorded (the journal could not serialise it), "
                  "so its compensation cannot run; undo what it did by hand")

    def cannot_compensate(data: Any, context: Any) -> None:
        raise LookupError(reason)

    def unknown(data: Any, context: Any) -> None:  # pragma: no cover - never runs forward
        raise LookupError(reason)

    return Step(unknown, cannot_compensate, name=name)


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
    return _whole(step.forward, [events[p].kind is _K.STEP_SUCCEEDED for p in positions]) == SUCCEEDED


def _compensation_outcome(events: Sequence[Event], positions: Sequence[int],
                          step: Step | None) -> tuple[str | None, BaseException | None]:
    """How a step's compensation ended, from its recorded events: ``SUCCEEDED``, ``FAILED``
    (for good) or ``None`` (in flight, or never started), with the failure's error.

    ``positions`` are its last call's. A compensation that is a policy ended when the rollback
    moved on to something else after its last attempt, or when its attempts add up to the whole.
    """
    ends = [p for p in positions if events[p].kind in _COMPENSATION_ENDS]
    if not ends or positions[-1] != ends[-1]:
        return None, None  # never ended, or a later attempt started after its last end
    last = events[ends[-1]]
    verdict = SUCCEEDED if last.kind is _K.COMPENSATION_SUCCEEDED else FAILED
    compensate = step.compensate if step is not None else None
    if compensate is None or not isinstance(compensate, Policy):
        return verdict, last.error
    name = last.step
    if any(later.step != name or later.kind is _K.RUN_FINISHED for later in events[ends[-1] + 1 :]):
        return verdict, last.error  # compensations run one after another: the rollback moved on
    whole = _whole(compensate, [events[p].kind is _K.COMPENSATION_SUCCEEDED for p in ends])
    return (whole, last.error) if whole in (SUCCEEDED, FAILED) else (None, None)


def _whole(fn: Any, attempts: Sequence[bool]) -> str | None:
    """How a call whose attempts ended as ``attempts`` ended, if the records say for sure."""
    outcomes = whole_outcomes(fn, attempts)
    if not outcomes:
        # A policy of the user's own (or a definition changed since the run): the end of
        # its last attempt is all there is to go by.
        return SUCCEEDED if attempts[-1] else FAILED
    if len(outcomes) == 1:
        return next(iter(outcomes))
    return None
