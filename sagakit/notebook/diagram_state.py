"""What a saga diagram shows: per-step states fed by events, durations, fault notes and hints.

:class:`DiagramState` is an observer: each :class:`~sagakit.Event` updates a few dictionaries
(classes, notes, compensation classes and notes) and records which steps changed, so that a
front-end can be sent just those. The error text shown anywhere in the notebook layer goes
through :func:`error_text` (the run's redaction). :mod:`sagakit.notebook.diagram` re-exports
every public name here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sagakit.events import Event, EventKind

if TYPE_CHECKING:
    from sagakit.notebook.diagram import StepShape
    from sagakit.runs import Run

__all__ = [
    "DiagramState",
    "error_summary",
    "error_text",
    "fault_hints",
    "fault_note",
    "format_ms",
    "planned_notes",
    "run_caption",
]


# -- state --------------------------------------------------------------------------------


_K = EventKind


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

    Args:
        steps: the shapes of the saga's steps, for the per-step option notes of the definition view.
        planned: the note of each step with a planned fault (see :func:`fault_note`); those
            whose note has a failure mode are drawn ``injected`` before any run.
    """

    __slots__ = ("_rolled_back", "_started", "attempts", "caption", "classes", "cleared", "dirty", "hints", "injected",
                 "notes",
                 "options", "planned", "states", "undo_classes", "undo_notes", "undoable", "version")

    def __init__(self, steps: Iterable[StepShape] = (), planned: Mapping[str, str] | None = None) -> None:
        members = tuple(steps)
        self.options = {member.name: member.options for member in members}
        self.undoable = {member.name for member in members if member.undo is not None}
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

    def __call__(self, event: Event) -> None:
        kind = event.kind
        step = event.step
        self.version += 1
        if kind is _K.ROLLBACK_STARTED:
            self._rolled_back = True
            return
        if step is None:
            if kind is _K.RUN_STARTED:
                self._forget_run()
            elif kind is _K.RUN_FINISHED and self._rolled_back:
                self._mark_not_compensated()
            return
        if event.injected:
            self.injected.add(step)
        if kind is _K.STEP_STARTED:
            self.states[step] = "running"
            self._started.setdefault(step, event.at)
            self.attempts[step] = event.attempt
        elif kind is _K.STEP_SUCCEEDED or kind is _K.STEP_FAILED or kind is _K.STEP_CANCELLED:
            self.states[step] = "succeeded" if kind is _K.STEP_SUCCEEDED else (
                "failed" if kind is _K.STEP_FAILED else "cancelled")
            began = self._started.get(step, event.started_at or event.at)
            attempts = self.attempts.get(step, 1)
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
            self.states[step] = "skipped"
            self.undo_classes[step] = "state-skipped"
        else:
            return
        self._refresh(step)
        dirty = self.dirty
        if dirty is not None:
            dirty.add(step)

    def _mark_not_compensated(self) -> None:
        # A rollback that stopped early (a compensation failed) leaves completed steps undone:
        # they must not read as fine.
        for name, state in self.states.items():
            if state == "succeeded" and name in self.undoable:
                self.states[name] = "not-compensated"
                self.undo_classes[name] = "state-not-compensated"
                self.undo_notes[name] = "↺ not run"
                self.notes[name] = "needs manual cleanup"
                self._refresh(name)
                if self.dirty is not None:
                    self.dirty.add(name)

    @classmethod
    def of_run(cls, run: Run, steps: Iterable[StepShape]) -> DiagramState:
        """The state a finished run leaves, with its outcome as the caption."""
        state = cls(steps)
        for event in run.events:
            state(event)
        state.caption = run_caption(run)
        return state


# -- error text ---------------------------------------------------------------------------


def error_text(error: BaseException | None, run: Run | None = None) -> str | None:
    """The text shown for an error: always through ``sagakit.runs.error_message`` (redacted)."""
    from sagakit.runs import error_message

    if error is None:
        return None
    return error_message(error, run=run)


def run_caption(run: Run) -> str:
    """One line about a run's outcome: status, failed step and error, duration (no payloads)."""
    text = f"{run.status} in {run.duration_ms:.1f} ms"
    if run.failed_step is not None:
        text += f" · failed at {run.failed_step}"
    error = run.original_error if run.original_error is not None else run.error
    if error is not None and run.status != "completed":
        message = error_text(error, run) or ""
        text += f" · {type(error).__name__}" + (f": {message}" if message else "")
    if len(text) > 160:
        text = text[:157] + "..."
    return text


# -- fault notes ------------------------------------------------------------------------------


def error_summary(error: BaseException, run: Run | None = None) -> str:
    """``Type: message`` (redacted, as :func:`error_text`), or the bare type name for an error
    without a message, such as a ``CancelledError``."""
    from sagakit.errors import error_line

    return error_line(type(error).__name__, error_text(error, run) or "")


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


_TRIGGERS = ("fail", "fail_after")


def fault_hints(plan: Mapping[str, Any], order: Sequence[str]) -> dict[str, str]:
    """Why a planned ``fail_compensation`` may show nothing: no later step is set to fail.

    A compensation runs only when a later step fails; without such a fault (and without a real
    failure) the run completes and the planned fault is never met.

    Args:
        plan: the fault plan (step name -> :class:`~sagakit.Fault`).
        order: the steps in definition order.
    """
    hints = {}
    for position, name in enumerate(order):
        fault = plan.get(name)
        if fault is None or fault.mode != "fail_compensation":
            continue
        later = [other for other in order[position + 1:]
                 if (other_fault := plan.get(other)) is not None and other_fault.mode in _TRIGGERS]
        if not later:
            hints[name] = (f"fail_compensation on {name} shows only when a later step fails: "
                           "set fail or fail_after on a step after it")
    return hints


def planned_notes(plan: Mapping[str, Any]) -> dict[str, str]:
    """The note of every step of a fault plan that plans something."""
    notes = {name: fault_note(fault) for name, fault in plan.items()}
    return {name: note for name, note in notes.items() if note}
