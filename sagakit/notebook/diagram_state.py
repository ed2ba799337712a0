"""What a saga diagram shows: per-step states fed by events, durations, fault notes, hints and
the words that tell a run's outcome.

:class:`DiagramState` is an observer: each :class:`~sagakit.Event` updates a few dictionaries
(classes, notes, compensation classes and notes) and records which steps changed, so that a
front-end can be sent just those. The error text shown anywhere in the notebook layer goes
through :func:`sagakit.runs.error_message` (the run's redaction). :mod:`sagakit.notebook.diagram` re-exports
every public name here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sagakit.events import Event, EventKind

if TYPE_CHECKING:
    from sagakit.runs import Run

__all__ = [
    "STATUS_WORDS",
    "DiagramState",
    "Outcome",
    "error_summary",
    "fault_hints",
    "fault_note",
    "format_ms",
    "outcome",
    "planned_notes",
    "run_caption",
    "step_kinds",
]

_K = EventKind


class _Shape(Protocol):
    """What the state needs of a step's shape (``sagakit.notebook.diagram.StepShape``)."""

    @property
    def name(self) -> str: ...
    @property
    def undo(self) -> str | None: ...
    @property
    def options(self) -> str: ...
    @property
    def retries(self) -> int: ...
    @property
    def kind(self) -> str: ...


def format_ms(seconds: float) -> str:
    """A duration as shown on diagrams: ``412 ms``, ``3.2 ms``, under a millisecond in ``µs``."""
    ms = seconds * 1000.0
    if ms >= 100.0:
        return f"{ms:.0f} ms"
    if ms >= 1.0:
        return f"{ms:.1f} ms"
    return f"{ms * 1000.0:.0f} µs"


_ms = format_ms


class DiagramState:
    """What a diagram shows: per-step classes and notes, fed by events.

    Call it with each :class:`~sagakit.Event` (it is an observer) or :meth:`reset` it. It
    is cheap: a few dictionary writes per event.

    A step whose attempt failed while its retry policy has attempts left is ``retrying``, not
    ``failed`` (its note names the attempt); after a rollback, a step that ran and has no
    compensation is ``not-undone`` (its effect stays), a read-only step stays ``succeeded``
    (it changed nothing), and a completed step the rollback never reached is
    ``not-compensated``. A step after the pivot whose retries ran out is ``stuck``: nothing is
    undone, and the run waits for an operator to resume it. A resumed run (``run_resumed``)
    numbers its attempts on, each step's policy starting anew.

    Args:
        steps: the shapes of the saga's steps, for the per-step option notes of the definition
            view and the retry policies.
        planned: the note of each step with a planned fault (see :func:`fault_note`); those
            whose note has a failure mode are drawn ``injected`` before any run.
    """

    __slots__ = ("_resumed_at", "_rolled_back", "_started", "attempts", "caption", "classes", "cleared", "dirty", "hints",
                 "injected", "kinds", "notes", "options", "planned", "resumed", "retries", "states", "undo_classes",
                 "undo_notes", "undoable", "version")

    def __init__(self, steps: Iterable[_Shape] = (), planned: Mapping[str, str] | None = None) -> None:
        members = tuple(steps)
        self.options = {member.name: member.options for member in members}
        self.undoable = {member.name for member in members if member.undo is not None}
        self.retries = {member.name: getattr(member, "retries", 0) for member in members}
        #: Each step's kind (``compensatable``, ``pivot``, ``retriable``, ``readonly``).
        self.kinds = {member.name: getattr(member, "kind", "compensatable") for member in members}
        self.planned: dict[str, str] = dict(planned or {})
        #: Why a planned fault may show nothing, by step (see :func:`fault_hints`).
        self.hints: dict[str, str] = {}
        #: The steps changed since a front-end last read them; ``None``: every step.
        self.dirty: set[str] | None = None
        #: Everything went back to pending without notes since a front-end last read the state.
        self.cleared = False
        self._rolled_back = False
        self.states: dict[str, str] = {}
        self.classes: dict[str, str] = {}
        self.notes: dict[str, str] = {}
        self.undo_classes: dict[str, str] = {}
        self.undo_notes: dict[str, str] = {}
        self.injected: set[str] = set()
        self.attempts: dict[str, int] = {}
        self._started: dict[str, float] = {}
        #: How often the run shown was resumed (``run_resumed`` events seen).
        self.resumed = 0
        self._resumed_at: dict[str, int] = {}  # each step's attempts before the last resumption
        self.caption: str | None = None
        self.version = 0
        self.reset()

    def _forget_run(self) -> None:
        """Drop everything the last run coloured."""
        self.states.clear()
        self.classes.clear()
        self.undo_classes.clear()
        self.undo_notes.clear()
        self.injected.clear()
        self.attempts.clear()
        self._started.clear()
        self._resumed_at.clear()
        self.resumed = 0
        self._rolled_back = False
        self.caption = None
        self.notes = {}
        # A front-end redraws this as "all pending, no notes": no per-step list to send.
        self.dirty = set()
        self.cleared = True

    def reset(self) -> None:
        """Back to the definition view: every step pending, planned faults marked."""
        self._forget_run()
        for name, options in self.options.items():
            planned = self.planned.get(name)
            self.notes[name] = " · ".join(part for part in (options, planned) if part)
            if planned and "⚡" in planned:
                self.classes[name] = "state-pending injected"
        self.dirty = None
        self.version += 1

    def plan(self, planned: Mapping[str, str]) -> None:
        """Show the planned faults (see :func:`fault_note`) by step name; keeps run colouring."""
        self.planned = dict(planned)
        if not self.states:
            self.reset()
            return
        for name in self.options:
            self._refresh(name)
        self.dirty = None
        self.version += 1

    def _refresh(self, step: str) -> None:
        state = self.states.get(step, "pending")
        marked = step in self.injected or (not self.states and "⚡" in self.planned.get(step, ""))
        self.classes[step] = f"state-{state} injected" if marked else f"state-{state}"

    def _set(self, step: str, state: str) -> None:
        self.states[step] = state
        self._refresh(step)
        if self.dirty is not None:
            self.dirty.add(step)

    def __call__(self, event: Event) -> None:
        kind = event.kind
        step = event.step
        self.version += 1
        if step is None:
            if kind is _K.RUN_STARTED:
                self._forget_run()
            elif kind is _K.RUN_FINISHED:
                self._settle(event.status)
            elif kind is _K.RUN_RESUMED:
                # Attempts are numbered on; each step's policy starts anew from here.
                self.resumed += 1
                self._resumed_at = dict(self.attempts)
                self._started.clear()  # a step's time is its resumed attempts', not the wait before
            return
        if kind is _K.ROLLBACK_STARTED:
            self._rolled_back = True
            if self.states.get(step) == "retrying":
                self._set(step, "failed")
            return
        if event.injected:
            self.injected.add(step)
        if kind is _K.STEP_STARTED:
            self.states[step] = "running"
            self._started.setdefault(step, event.at)
            attempt = self.attempts[step] = event.attempt
            if attempt > 1:  # a retry in flight: which attempt, of how many the policy allows
                ceiling = self._resumed_at.get(step, 0) + self.retries.get(step, 0) + 1
                self.notes[step] = f"attempt {attempt}/{ceiling}" if attempt <= ceiling else f"attempt {attempt}"
        elif kind is _K.STEP_SUCCEEDED or kind is _K.STEP_FAILED or kind is _K.STEP_CANCELLED:
            if kind is _K.STEP_SUCCEEDED:
                state = "succeeded"
            elif kind is _K.STEP_CANCELLED:
                state = "cancelled"
            elif event.attempt - self._resumed_at.get(step, 0) <= self.retries.get(step, 0):
                state = "retrying"
            else:
                # After the pivot nothing rolls back: a retriable step that ran out is stuck.
                state = "stuck" if self.kinds.get(step) == "retriable" else "failed"
            self.states[step] = state
            self.attempts[step] = max(self.attempts.get(step, 1), event.attempt)
            began = self._started.get(step, event.started_at or event.at)
            self._started.setdefault(step, began)
            attempts = self.attempts[step]
            if state == "retrying":
                note = f"attempt {event.attempt} failed"
            else:
                note = _ms(event.at - began)
                if attempts > 1:
                    note += f" \u00d7{attempts}"
            if step in self.injected:
                note += " ⚡"
            self.notes[step] = note
        elif kind is _K.COMPENSATION_STARTED:
            self.states[step] = "compensating"
            self.undo_classes[step] = "state-compensating"
        elif kind is _K.COMPENSATION_SUCCEEDED:
            self.states[step] = "compensated"
            self.undo_classes[step] = "state-compensated"
            self.undo_notes[step] = "↺ " + _ms((event.duration_ms or 0.0) / 1000.0)
        elif kind is _K.COMPENSATION_FAILED or kind is _K.COMPENSATION_CANCELLED:
            self.states[step] = "compensation-failed"
            self.undo_classes[step] = "state-compensation-failed"
            self.undo_notes[step] = "↺ failed" if kind is _K.COMPENSATION_FAILED else "↺ cancelled"
        elif kind is _K.COMPENSATION_SKIPPED:
            self.undo_classes[step] = "state-skipped"
            if self.kinds.get(step) == "readonly":
                # A read-only step changed nothing: there is nothing to undo, nothing to flag.
                self.states[step] = "succeeded"
            else:
                # The step ran and has nothing to undo it: its effect stays.
                self.states[step] = "not-undone"
                self.undo_notes[step] = "not undone"
        else:
            return
        self._refresh(step)
        dirty = self.dirty
        if dirty is not None:
            dirty.add(step)

    def _settle(self, status: str | None = None) -> None:
        # At the end of a run: a step still "retrying" did not get another attempt (in a stuck
        # run, every step left failing is the one it waits at); after a rollback, completed
        # steps it never reached must not read as fine.
        stuck = status == "stuck"
        for name, state in list(self.states.items()):
            if stuck and state in ("retrying", "failed", "cancelled", "running"):
                self._set(name, "stuck")
            elif state == "retrying":
                self._set(name, "failed")
            elif state == "succeeded" and self._rolled_back and self.kinds.get(name) != "readonly":
                if name in self.undoable:
                    self.undo_classes[name] = "state-not-compensated"
                    self.undo_notes[name] = "↺ not run"
                    self.notes[name] = "manual cleanup"
                    self._set(name, "not-compensated")
                else:
                    self.undo_classes[name] = "state-skipped"
                    self.undo_notes[name] = "not undone"
                    self._set(name, "not-undone")

    @classmethod
    def of_run(cls, run: Run, steps: Iterable[_Shape]) -> DiagramState:
        """The state a finished run leaves, with its outcome as the caption."""
        state = cls(steps)
        for event in run.events:
            state(event)
        state.caption = run_caption(run)
        return state


# -- error text ---------------------------------------------------------------------------


def error_summary(error: BaseException, run: Run | None = None) -> str:
    """``Type: message`` (redacted, as :func:`sagakit.runs.error_message`), or the bare type name for an error
    without a message, such as a ``CancelledError``."""
    from sagakit.runs import error_message

    text = error_message(error, run=run) or ""
    name = type(error).__name__
    return f"{name}: {text}" if text else name


# -- what a run came to, in words ---------------------------------------------------------------

#: How each run status reads in the notebook layer.
STATUS_WORDS: dict[str, str] = {
    "completed": "completed",
    "compensated": "rolled back",
    "compensation_failed": "rollback failed",
    "cancelled": "stopped",
    "stuck": "stuck",
}


@dataclass(slots=True)
class Outcome:
    """What a run came to, read from its events: the facts every description of it uses.

    Attributes:
        status: the run's status.
        words: the status as it reads (``rolled back``, ``rollback failed``, ``stopped``).
        failed_step: the step whose failure started the rollback (or that was in flight when
            the run was stopped).
        error: ``Type: message`` of that failure (redacted); empty for a stop.
        compensated: the steps whose compensation succeeded, in the order they ran.
        compensation_failures: ``(step, "Type: message")`` of each compensation that failed.
        not_undone: completed steps without a compensation (their effect stays); read-only
            steps, which changed nothing, are never listed.
        left: completed steps with a compensation that never ran (manual cleanup).
        duration_ms: how long the run took.
        attempts: how many attempts the failed step made (the pending step of a stuck run).
        pivot: the saga's pivot, if it has one.
        resumed: how often the run was resumed from its journal.
        resumed_ms: how long the run took after its last resumption (``duration_ms`` counts
            from its first start, the wait for an operator included).
        read_only: completed read-only steps (nothing to undo).
    """

    status: str
    words: str
    failed_step: str | None
    error: str
    compensated: list[str] = field(default_factory=list)
    compensation_failures: list[tuple[str, str]] = field(default_factory=list)
    not_undone: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    duration_ms: float = 0.0
    attempts: int = 0
    pivot: str | None = None
    resumed: int = 0
    resumed_ms: float = 0.0
    read_only: list[str] = field(default_factory=list)

    def sentence(self) -> str:
        """The outcome in one line: what failed, what the rollback did, what is left."""
        again = f" · {self.resumed_words()}" if self.resumed else ""
        took = self.took_words()
        if self.status == "completed":
            return f"completed{again} · {took}" if self.resumed else f"completed in {self.duration_ms:.1f} ms"
        if self.status == "stuck":
            head = f"stuck at {self.failed_step}{self.attempts_words()}" if self.failed_step else "stuck"
            if self.error:
                head += f" ({self.error})"
            return f"{head}; {self.stuck_words()}{again} · {took}"
        if self.status == "cancelled":
            head = f"stopped while {self.failed_step} ran" if self.failed_step else "stopped"
        else:
            head = f"{self.words}: {self.failed_step} failed" if self.failed_step else self.words
            if self.error:
                head += f" ({self.error})"
        return "; ".join([head, *self.rollback_parts()]) + f"{again} · {took}"

    def attempts_words(self) -> str:
        """`` after 3 attempts`` (empty when the number is unknown)."""
        if not self.attempts:
            return ""
        return f" after {self.attempts} attempt{'' if self.attempts == 1 else 's'}"

    def stuck_words(self) -> str:
        """What a stuck run means, in a phrase: nothing undone, past which pivot."""
        return f"nothing undone (past the pivot {self.pivot})" if self.pivot else "nothing undone"

    def resumed_words(self) -> str:
        """``resumed once, 902.1 ms to finish``, ``resumed 3 times, ...``."""
        times = "once" if self.resumed == 1 else f"{self.resumed} times"
        return f"resumed {times}, {self.resumed_ms:.1f} ms to finish"

    def took_words(self) -> str:
        """How long the run took: ``12.3 ms``, or for a resumed run ``28249.9 ms since it
        started`` (the wait for an operator included)."""
        return f"{self.duration_ms:.1f} ms since it started" if self.resumed else f"{self.duration_ms:.1f} ms"

    def rollback_parts(self) -> list[str]:
        """What the rollback did, as short phrases."""
        parts = []
        count = len(self.compensated)
        if count:
            parts.append(f"{count} step{'' if count == 1 else 's'} compensated")
        for step, error in self.compensation_failures:
            parts.append(f"the compensation of {step} failed ({error})")
        if self.left:
            parts.append(f"{len(self.left)} left to clean up by hand: {', '.join(self.left)}")
        if self.not_undone:
            parts.append(f"not undone (no compensation): {', '.join(self.not_undone)}")
        if not count and not self.compensation_failures and not self.left and not self.not_undone:
            parts.append("nothing to undo (only read-only steps had completed)" if self.read_only
                         else "nothing to undo (no step had completed)")
        return parts


def outcome(run: Run) -> Outcome:
    """The :class:`Outcome` of a finished run."""
    error = run.original_error if run.original_error is not None else run.error
    failure = "" if error is None or run.status == "cancelled" else error_summary(error, run)
    kinds = step_kinds(run)
    found = Outcome(run.status, STATUS_WORDS.get(run.status, run.status.replace("_", " ")), run.failed_step, failure,
                    duration_ms=run.duration_ms, resumed=int((run.info or {}).get("resumed", 0) or 0),
                    pivot=next((name for name, kind in kinds.items() if kind == "pivot"), None))
    completed: dict[str, None] = {}
    undone: set[str] = set()
    if found.resumed:
        resumed_at = next((event.at for event in reversed(run.events) if event.kind is _K.RUN_RESUMED), None)
        ended_at = next((event.at for event in reversed(run.events) if event.kind is _K.RUN_FINISHED), None)
        if resumed_at is not None and ended_at is not None:
            found.resumed_ms = max(0.0, (ended_at - resumed_at) * 1000.0)
    if run.status == "completed":
        return found
    for event in run.events:
        kind, step = event.kind, event.step
        if step is None:
            continue
        if step == run.failed_step and event.phase == "forward" and kind in _ATTEMPT_ENDS:
            found.attempts = max(found.attempts, event.attempt)
        if kind is _K.STEP_SUCCEEDED:
            completed[step] = None
        elif kind is _K.COMPENSATION_SUCCEEDED:
            found.compensated.append(step)
            undone.add(step)
        elif kind is _K.COMPENSATION_FAILED or kind is _K.COMPENSATION_CANCELLED:
            text = error_summary(event.error, run) if event.error is not None else "cancelled"
            found.compensation_failures.append((step, text))
            undone.add(step)
        elif kind is _K.COMPENSATION_SKIPPED:
            if kinds.get(step) != "readonly":
                found.not_undone.append(step)
            undone.add(step)
    if run.status == "stuck":  # nothing is undone past the pivot: there is no rollback to tell
        return found
    compensates = _compensating_steps(run)
    for step in completed:
        if kinds.get(step) == "readonly":
            found.read_only.append(step)
            continue
        if step in undone or step == run.failed_step:
            continue
        if compensates is None or step in compensates:
            found.left.append(step)
        else:
            found.not_undone.append(step)
    return found


_ATTEMPT_ENDS = frozenset({_K.STEP_SUCCEEDED, _K.STEP_FAILED, _K.STEP_CANCELLED})


def step_kinds(run: Run) -> dict[str, str]:
    """The kind of each step of ``run`` that is not ``compensatable``: from its saga's definition,
    else as recorded when it started (a run read from a journal)."""
    definition = run.definition
    if definition is not None:
        from sagakit.steps import Parallel

        found: dict[str, str] = {}
        for stage in definition.stages:
            for member in stage.steps if isinstance(stage, Parallel) else (stage,):
                if member.kind != "compensatable":
                    found[member.name] = member.kind
        return found
    recorded = (run.info or {}).get("kinds")
    if not isinstance(recorded, Mapping):
        started = next((event for event in run.events if event.kind is _K.RUN_STARTED), None)
        recorded = (started.info or {}).get("kinds") if started is not None else None
    return {str(name): str(kind) for name, kind in recorded.items()} if isinstance(recorded, Mapping) else {}


def _compensating_steps(run: Run) -> set[str] | None:
    definition = run.definition
    if definition is None:
        return None
    from sagakit.steps import Parallel

    names = set()
    for stage in definition.stages:
        for member in stage.steps if isinstance(stage, Parallel) else (stage,):
            if member.compensate is not None:
                names.add(member.name)
    return names


def run_caption(run: Run) -> str:
    """One line about a run's outcome: what failed, what the rollback did, the duration (no payloads)."""
    text = outcome(run).sentence()
    if len(text) > 200:
        text = text[:197] + "..."
    return text


# -- fault notes ------------------------------------------------------------------------------


def fault_note(fault: Any) -> str:
    """How a planned fault is noted under its step: ``⚡ fail``, ``delay 1.5 s``, both or nothing.

    Only characters every common font has (no clock glyph).
    """
    parts = []
    if fault.mode != "none":
        parts.append(f"⚡ {fault.mode}" + (f" p={fault.probability:g}" if fault.probability < 1 else ""))
    if fault.delay:
        parts.append(f"delay {fault.delay:g} s")
    return " ".join(parts)


_TRIGGERS = ("fail", "fail_after", "cancel")


def fault_hints(plan: Mapping[str, Any], order: Sequence[str],
                kinds: Mapping[str, str] | None = None) -> dict[str, str]:
    """What a planned fault will show, where a newcomer may expect something else.

    A compensation fault shows only when a later step fails (or the run is stopped after it);
    without such a fault (and without a real failure) the run completes and the planned
    fault is never met. The last step's compensation never runs at all. A sure failure of a
    step after the pivot is retried, never rolled back: the run ends stuck.

    Args:
        plan: the fault plan (step name -> :class:`~sagakit.Fault`).
        order: the steps in definition order.
        kinds: each step's kind (those not ``compensatable`` suffice).
    """
    hints = {}
    for position, name in enumerate(order):
        fault = plan.get(name)
        if fault is None:
            continue
        if (kinds or {}).get(name) == "retriable" and fault.mode in ("fail", "fail_after") and fault.probability >= 1:
            hints[name] = (f"{fault.mode} on {name} fails every attempt: a step after the pivot is retried, never "
                           "undone, so the run ends stuck (resume it from a journal); set p below 1 to see a retry "
                           "succeed")
            continue
        if fault.mode not in ("fail_compensation", "cancel_compensation"):
            continue
        after = order[position + 1:]
        if not after:
            hints[name] = (f"{fault.mode} on {name} never shows: {name} is the last step, so nothing after it can "
                           "fail and start a rollback")
            continue
        later = [other for other in after
                 if (other_fault := plan.get(other)) is not None and other_fault.mode in _TRIGGERS]
        if not later:
            hints[name] = (f"{fault.mode} on {name} shows only when a later step fails: "
                           "set fail or fail_after on a step after it")
    return hints


def planned_notes(plan: Mapping[str, Any]) -> dict[str, str]:
    """The note of every step of a fault plan that plans something."""
    notes = {name: fault_note(fault) for name, fault in plan.items()}
    return {name: note for name, note in notes.items() if note}


def __getattr__(name: str) -> Any:
    # ``error_text`` here meant the redacted text while ``sagakit.errors.error_text`` is the raw
    # one; the redacted text has one name, ``sagakit.runs.error_message``.
    if name == "error_text":
        return _deprecated_error_text(stacklevel=3)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _deprecated_error_text(*, stacklevel: int) -> Any:
    import warnings

    from sagakit.runs import error_message

    warnings.warn(
        "sagakit.notebook.diagram.error_text is deprecated: use sagakit.runs.error_message(error, run=run), "
        "the redacted text (sagakit.errors.error_text is the raw one)",
        DeprecationWarning,
        stacklevel=stacklevel,
    )

    def error_text(error: BaseException | None, run: Run | None = None) -> str | None:
        return error_message(error, run=run)

    return error_text
