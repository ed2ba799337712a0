"""What the view shows of one run, as plain data: the inspector, the replay frames, the inputs
each step and compensation received.

Everything here returns JSON-ready dictionaries and lists of text; the ES module builds its
elements from them with text nodes, so no value can be read as markup. Payloads and error
messages go through the run's redactor before they are turned into text.
"""

from __future__ import annotations

import sys
import sysconfig
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sagakit.events import END_KINDS, Event, EventKind
from sagakit.notebook._layout import DiagramTemplate, StepShape
from sagakit.notebook._palette import KINDS
from sagakit.notebook.diagram_state import STATUS_WORDS, DiagramState, format_ms, run_caption

if TYPE_CHECKING:
    from sagakit.runs import Run

__all__ = ["IN_FLIGHT", "inspector_data", "received", "replay_frames", "wire_state"]

#: What the inspector says of a step while a run is in flight.
IN_FLIGHT = "A run is in flight: its attempts show here when it ends."

_K = EventKind


# -- the diagram's state as data ------------------------------------------------------------


def wire_state(steps: Sequence[StepShape], state: DiagramState) -> dict[str, Any]:
    """The full picture of ``state`` as the front-end applies it (every step named)."""
    names = [member.name for member in steps]
    return {
        "s": {name: state.classes.get(name, "state-pending") for name in names},
        "n": {name: state.notes.get(name) or "" for name in names},
        "u": {name: state.undo_classes.get(name, "state-pending") for name in names},
        "un": {name: state.undo_notes.get(name) or "" for name in names},
        "c": state.caption or "",
    }


def delta(state: DiagramState, names: Sequence[str] | set[str]) -> dict[str, Any]:
    """What the front-end needs to redraw ``names`` as ``state`` has them."""
    classes, notes, undo_classes, undo_notes = state.classes, state.notes, state.undo_classes, state.undo_notes
    return {
        "s": {name: classes.get(name, "state-pending") for name in names},
        "n": {name: notes.get(name) or "" for name in names},
        "u": {name: undo_classes.get(name, "state-pending") for name in names},
        "un": {name: undo_notes.get(name) or "" for name in names},
    }


# -- replay -------------------------------------------------------------------------------


def _label(event: Event) -> str:
    if event.kind is _K.RUN_RESUMED:
        # The point where an operator carried the run on: what it was, and which resumption.
        was = f" (it was {STATUS_WORDS.get(event.status, event.status)})" if event.status else " (it was interrupted)"
        number = f", resumption {event.attempt}" if event.attempt > 1 else ""
        return f"run resumed{was}{number}"
    what = str(event.kind).replace("_", " ")
    return f"{what} {event.step}" if event.step is not None else what


def replay_frames(run: Run, template: DiagramTemplate, events: Sequence[Event] | None = None) -> dict[str, Any]:
    """The run's events as replay frames: ``base`` (before the run) and one delta per event.

    A frame holds only the steps its event changed, so the front-end steps through a run of
    any length without asking the kernel again. ``resumed`` lists the slider positions
    (1-based, as the frames) where the run was resumed from its journal.

    Args:
        run: the run.
        template: the diagram it is drawn on.
        events: the run's events as observed live (with the start of each attempt, which a
            finished run does not keep); default: ``run.events``.
    """
    steps = template.steps
    state = DiagramState(steps)
    state.dirty = set()
    state.cleared = False
    base = wire_state(steps, state)
    frames: list[dict[str, Any]] = []
    labels: list[str] = []
    resumed: list[int] = []
    for event in run.events if events is None else events:
        state(event)
        dirty = state.dirty
        names = [member.name for member in steps] if dirty is None else sorted(dirty)
        state.dirty = set()
        frame = delta(state, names)
        if state.cleared:
            state.cleared = False
            frame["r"] = 1
        if event.kind is _K.RUN_FINISHED:
            state.caption = run_caption(run)
            frame["c"] = state.caption
        frames.append(frame)
        labels.append(_label(event))
        if event.kind is _K.RUN_RESUMED:
            resumed.append(len(frames))
    return {"base": base, "frames": frames, "labels": labels, "resumed": resumed}


# -- payloads and frames ------------------------------------------------------------------


def payload_text(run: Run, value: Any) -> str:
    """``value`` as the notebook shows it: through the run's redactor, then a bounded ``repr``."""
    from sagakit.runs import run_redactor

    return run_redactor(run).shown(value)


#: Where sagakit's own machinery and the installed libraries live: not the step's frames.
_NOT_THE_STEP = tuple(
    {str(Path(__file__).resolve().parent.parent)}
    | {str(Path(path).resolve()) for key in ("stdlib", "platstdlib", "purelib", "platlib")
       if (path := sysconfig.get_paths().get(key))}
)


def _where(filename: str) -> str:
    """A frame's file as a reader knows it: ``Cell In[5]`` for a notebook cell, else its name."""
    ipython = sys.modules.get("IPython")
    if ipython is not None:
        try:
            shell = ipython.get_ipython()
            named = shell.compile.format_code_name(filename) if shell is not None else None
        except Exception:  # no shell, or one without a cell compiler: name the file
            named = None
        if named:
            return f"{named[0]} {named[1]}"
    name = Path(filename).name
    if name.startswith("__marimo__cell_") and name.endswith("_.py"):
        return f"marimo cell {name[len('__marimo__cell_'):-4]}"
    return name


def error_frames(error: BaseException | None) -> list[str]:
    """The step's own frames of ``error``'s traceback (the newest six), as ``where, line N in fn``.

    An injected fault, or the retry machinery re-raising an error, adds only frames that say
    nothing about the step; a notebook cell is named as the notebook names it (``Cell In[5]``).
    """
    if error is None or error.__traceback__ is None:
        return []
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if not str(Path(frame.filename).resolve()).startswith(_NOT_THE_STEP)][-6:]
    return [f"{_where(frame.filename)}, line {frame.lineno} in {frame.name}" for frame in frames]


# -- what each function received ------------------------------------------------------------


def _last_outputs(events: Sequence[Event]) -> dict[str, Any]:
    outputs: dict[str, Any] = {}
    for event in events:
        if event.kind is _K.STEP_SUCCEEDED and event.step is not None:
            outputs[event.step] = event.data
    return outputs


def received(run: Run, step: str, phase: str) -> tuple[bool, Any]:
    """What ``step``'s action (``phase`` ``forward``) or its compensation received in ``run``.

    A stage receives the previous stage's output: a step's own output (its input passed
    through when it returned ``None``), or a parallel stage's merged branch outputs, in
    definition order. A compensation receives its step's output, or, when the step failed and
    compensates on failure, the step's input.

    Returns:
        Whether it is known, and the value.
    """
    events = run.events
    outputs = _last_outputs(events)
    if phase == "compensate":
        if step in outputs:
            return True, outputs[step]
        phase = "forward"  # compensated on failure: it received what the step received
    if not any(event.step == step and event.phase == "forward" for event in events):
        return False, None
    started = next((event for event in events if event.kind is _K.RUN_STARTED), None)
    if started is None:
        return False, None
    definition = run.definition
    if definition is None:
        return _received_by_order(events, step)
    from sagakit.steps import Parallel

    value: Any = started.data
    for stage in definition.stages:
        members = stage.steps if isinstance(stage, Parallel) else (stage,)
        if any(member.name == step for member in members):
            return True, value
        if isinstance(stage, Parallel):
            merged: dict[str, Any] = {}
            for member in members:
                if member.name not in outputs or not isinstance(outputs[member.name], Mapping):
                    return False, None
                merged.update(outputs[member.name])
            value = merged
        else:
            if stage.name not in outputs:
                return False, None
            value = outputs[stage.name]
    return False, None


def _received_by_order(events: Sequence[Event], step: str) -> tuple[bool, Any]:
    # Without the definition, stages are read from the events: the last output before the
    # step's first attempt ended (a finished run keeps no start events).
    value: tuple[bool, Any] = (False, None)
    for event in events:
        if event.step == step and event.phase == "forward":
            return value
        if event.kind is _K.RUN_STARTED or event.kind is _K.STEP_SUCCEEDED:
            value = (True, event.data)
    return (False, None)


# -- the inspector --------------------------------------------------------------------------


_KIND_WORDS = {kind: (label, meaning) for kind, label, meaning in KINDS}
_KIND_WORDS["compensatable"] = ("compensatable", "a failure after it rolls it back: its compensation undoes it")

#: What the inspector says of a step that is stuck.
STUCK_HINT = ("stuck: its retries ran out after the pivot, so nothing was undone and the run waits here. Fix the "
              "cause, then resume the run from its journal (Resume in a Lab given the journal, or "
              "journal.resume(run_id, saga)): nothing that succeeded runs again.")


def inspector_data(run: Run | None, step: str, phase: str, state: DiagramState | None = None,
                   *, in_flight: bool = False, compensation: str | None = None,
                   kind: str = "compensatable") -> dict[str, Any]:
    """The inspector's content for one step (``phase`` ``forward``) or its compensation, as data.

    Keys: ``step``, ``phase``, ``title``, ``kind`` and ``kind_help`` (the step's kind and what
    it means), ``state`` (as drawn now), ``hint``, ``message`` (when there are no attempts to
    show), ``run`` and ``key`` (the idempotency key), ``input`` (what the function received,
    redacted; ``None`` when unknown), and ``attempts``: per attempt ``[attempt, status,
    duration, injected, output, error type, error message, frames, resumption]`` (output and
    error redacted; ``resumption``: 0 before the run was first resumed, then which resumption
    made it); ``other``: the phase to switch to (``compensate`` for a step with a
    compensation, ``forward`` for a compensation, else ``""``). ``compensation`` names the
    step's compensation (none: it has none); ``kind`` is the step's kind.
    """
    what = step if phase == "forward" else f"compensation of {step}" + (f" ({compensation})" if compensation else "")
    # The other phase to switch to: a step's compensation (when it has one), or the step.
    other = "forward" if phase == "compensate" else ("compensate" if compensation else "")
    label, meaning = _KIND_WORDS.get(kind, (kind, ""))
    if kind == "compensatable" and not compensation:
        meaning = "it has no compensation: a rollback leaves its effect in place"
    shown: dict[str, Any] = {"step": step, "phase": phase, "title": what, "kind": label, "kind_help": meaning,
                             "state": "", "hint": "", "message": "", "run": "", "key": "", "input": None,
                             "attempts": [], "other": other}
    if state is not None:
        current = state.states.get(step, "pending")
        if phase == "compensate":
            current = state.undo_classes.get(step, "state-pending").removeprefix("state-")
        shown["state"] = current.replace("-", " ")
        shown["hint"] = state.hints.get(step, "") or (STUCK_HINT if current == "stuck" else "")
    if in_flight:
        shown["message"] = IN_FLIGHT
        return shown
    if run is None:
        shown["message"] = "No run yet: press Run to see this step's attempts."
        return shown
    events = run.events
    mine = [event for event in events if event.step == step and event.phase == phase]
    attempts = [event for event in mine if event.kind in END_KINDS]
    shown["run"] = run.run_id[:8]
    if not attempts:
        status = run.status.replace("_", " ")
        shown["message"] = (f"Not run in run {run.run_id[:8]} ({status})." if phase == "forward"
                            else f"No compensation ran for {step} in run {run.run_id[:8]} ({status}).")
        return shown
    shown["key"] = f"{run.run_id}:{step}" + (":compensate" if phase == "compensate" else "")
    known, value = received(run, step, phase)
    if known:
        shown["input"] = payload_text(run, value)
    from sagakit.runs import error_message

    resumptions = _resumptions(events)
    rows = []
    for event in attempts:
        error = event.error
        output = None
        if event.kind is _K.STEP_SUCCEEDED:
            output = payload_text(run, event.data)
        elif event.kind is _K.COMPENSATION_SUCCEEDED and event.data is not None:
            output = "(returned nothing)" if known and event.data is value else payload_text(run, event.data)
        duration = format_ms(event.duration_ms / 1000.0) if event.duration_ms is not None else ""
        rows.append([event.attempt, event.status or str(event.kind), duration, bool(event.injected), output,
                     type(error).__name__ if error is not None else "",
                     (error_message(error, run=run) or "") if error is not None else "", error_frames(error),
                     resumptions.get(id(event), 0)])
    shown["attempts"] = rows
    return shown


def _resumptions(events: Sequence[Event]) -> dict[int, int]:
    """Which resumption made each event (by identity); empty for a run never resumed."""
    found: dict[int, int] = {}
    number = 0
    for event in events:
        if event.kind is _K.RUN_RESUMED:
            number = event.attempt or number + 1
        elif number:
            found[id(event)] = number
    return found
