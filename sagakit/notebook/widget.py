"""The notebook front-end as anywidget views: the live diagram, the clickable run history, and
the failure lab's whole panel (:class:`LabView`: the diagram, the history and the fault
controls in one view).

One ES module and one style sheet ship inside the package (``static/``): no CDN, no build
step. Every front-end anywidget reaches draws them (JupyterLab, Jupyter Notebook 7, VS Code,
Colab, marimo); elsewhere (nbconvert, GitHub) the static SVG of the mimebundle stays.

The kernel sends the laid-out SVG once per saga shape (the ``svg`` trait); afterwards each
redraw sends only what changed, as a custom message ``{"t": "d", "s": classes, "n": notes,
"u": compensation classes, "un": compensation notes, "c": caption}`` keyed by step, with
``"r": 1`` when everything went back to pending first (a new run). The
``state`` trait holds the full picture for views opened later; it is synced when no run is
in flight. Clicks come back as messages: ``inspect`` (a step or compensation: the inspector
shows its attempts), ``replay`` (the events of the shown run, one slider position each),
``live``, ``stop`` and, from the history, ``select`` (draw a past run).

Stable classes: ``sagakit-diagram`` (given by the Lab), ``sagakit-fit``, ``sagakit-zoom-in``,
``sagakit-zoom-out``, ``sagakit-stop``, ``sagakit-replay`` (the slider bar),
``sagakit-replay-button``, ``sagakit-inspector``, ``sagakit-caption``; in the history,
``sagakit-history-table`` rows ``run-<status>`` with ``data-run`` (the run's number); the Lab's
classes are listed in :mod:`sagakit.notebook.lab`.
"""

from __future__ import annotations

import html
import reprlib
import sysconfig
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from sagakit.events import END_KINDS, Event, EventKind
from sagakit.notebook.diagram import (
    DiagramState,
    DiagramTemplate,
    StepShape,
    error_summary,
    error_text,
    format_ms,
    run_caption,
)

if TYPE_CHECKING:
    from sagakit.runs import Run
    from sagakit.saga import Saga

__all__ = ["DiagramView", "HistoryView", "LabView", "diagram_view", "inspector_html", "replay_frames", "wire_state"]

STATIC = Path(__file__).with_name("static")

_K = EventKind
_PAYLOAD = reprlib.Repr()
_PAYLOAD.maxstring = 200
_PAYLOAD.maxother = 200
_PAYLOAD.maxdict = 12
_PAYLOAD.maxlist = 12
_PAYLOAD.maxlevel = 4


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


def _delta(state: DiagramState, names: Sequence[str] | set[str]) -> dict[str, Any]:
    classes, notes, undo_classes, undo_notes = state.classes, state.notes, state.undo_classes, state.undo_notes
    return {
        "s": {name: classes.get(name, "state-pending") for name in names},
        "n": {name: notes.get(name) or "" for name in names},
        "u": {name: undo_classes.get(name, "state-pending") for name in names},
        "un": {name: undo_notes.get(name) or "" for name in names},
    }


class DiagramView(anywidget.AnyWidget):  # type: ignore[misc]
    """A saga's diagram in the browser: fit, pan, zoom, inspector, replay and an optional Stop.

    Args:
        template: the laid-out diagram (sent once).
        state: what it shows now; :meth:`push` sends what changed since the last push.
        stoppable: show a Stop button (the Lab's), calling ``on_stop`` when pressed.
    """

    _esm = STATIC / "sagakit.js"
    _css = STATIC / "sagakit.css"
    kind = traitlets.Unicode("diagram").tag(sync=True)
    svg = traitlets.Unicode("").tag(sync=True)
    state = traitlets.Dict().tag(sync=True)
    replay = traitlets.Dict().tag(sync=True)
    inspector = traitlets.Unicode("").tag(sync=True)
    busy = traitlets.Bool(False).tag(sync=True)
    stoppable = traitlets.Bool(False).tag(sync=True)
    replayable = traitlets.Bool(False).tag(sync=True)

    def __init__(self, template: DiagramTemplate, state: DiagramState, *, stoppable: bool = False) -> None:
        steps = template.steps
        super().__init__(svg=template.render(DiagramState(steps)), state=wire_state(steps, state), stoppable=stoppable)
        self.template = template
        self.diagram_state = state
        self.names = [member.name for member in steps]
        #: The run drawn (inspected and replayed), if any.
        self.run: Run | None = None
        self.on_stop: Callable[[], object] | None = None
        self.on_live: Callable[[], None] | None = None
        self._caption = state.caption or ""
        self._sent_version = state.version
        state.dirty = set()
        self.on_msg(self._on_message)

    def show_run(self, run: Run | None) -> None:
        """Make ``run`` the one the inspector and the replay read."""
        self.run = run
        self.replayable = run is not None

    def push(self, *, full: bool = False) -> bool:
        """Send what changed since the last push (``full``: also sync the ``state`` trait).

        Returns whether anything was sent.
        """
        state = self.diagram_state
        sent = False
        if state.version != self._sent_version:
            self._sent_version = state.version
            dirty = state.dirty
            delta = _delta(state, self.names if dirty is None else dirty)
            state.dirty = set()
            if state.cleared:
                state.cleared = False
                delta["r"] = 1
                self._caption = ""
            if (state.caption or "") != self._caption:
                self._caption = delta["c"] = state.caption or ""
            if any(delta[key] for key in ("s", "n", "u", "un")) or "c" in delta or "r" in delta:
                delta["t"] = "d"
                self.send(delta)
                sent = True
        if full:
            self.state = wire_state(self.template.steps, state)
        return sent

    def _on_message(self, _widget: Any, content: Mapping[str, Any], _buffers: Any) -> None:
        kind = content.get("t")
        if kind == "stop" and self.on_stop is not None:
            self.on_stop()
        elif kind == "inspect":
            step = str(content.get("step") or "")
            phase = "compensate" if content.get("phase") == "compensate" else "forward"
            self.inspector = inspector_html(self.run, step, phase, self.diagram_state) if step else ""
        elif kind == "replay" and self.run is not None:
            self.replay = replay_frames(self.run, self.template)
        elif kind == "live":
            self.replay = {}
            if self.on_live is not None:
                self.on_live()


def diagram_view(target: Saga | Run) -> DiagramView:
    """The interactive view of a saga (planned faults marked) or of a run (inspector and replay).

    Jupyter front-ends get it from ``display(saga)`` or ``display(run)`` already; elsewhere
    (marimo: ``mo.ui.anywidget(diagram_view(run))``) make it with this.

    Raises:
        TypeError: ``target`` is neither a :class:`~sagakit.Saga` nor a :class:`~sagakit.Run`.
    """
    from sagakit.notebook.diagram import layout, planned_notes, run_layout_shape, saga_shape
    from sagakit.runs import Run
    from sagakit.saga import Saga

    if isinstance(target, Saga):
        template = layout(saga_shape(target), name=target.name)
        return DiagramView(template, DiagramState(template.steps, planned_notes(target.faults)))
    if isinstance(target, Run):
        template = layout(run_layout_shape(target), name=target.saga)
        view = DiagramView(template, DiagramState.of_run(target, template.steps))
        view.show_run(target)
        return view
    raise TypeError(f"diagram_view: expected a sagakit.Saga or a sagakit.Run, got {type(target).__name__}")


class HistoryView(anywidget.AnyWidget):  # type: ignore[misc]
    """The run history table; clicking a row calls ``on_select`` with the run's number (1-based)."""

    _esm = STATIC / "sagakit.js"
    _css = STATIC / "sagakit.css"
    kind = traitlets.Unicode("history").tag(sync=True)
    rows: traitlets.List[list[Any]] = traitlets.List().tag(sync=True)
    total = traitlets.Int(0).tag(sync=True)
    selected = traitlets.Int(0).tag(sync=True)

    def __init__(self) -> None:
        super().__init__()
        self.on_select: Callable[[int], None] | None = None
        self.on_msg(self._on_message)

    def _on_message(self, _widget: Any, content: Mapping[str, Any], _buffers: Any) -> None:
        if content.get("t") == "select" and self.on_select is not None:
            number = content.get("run")
            if isinstance(number, int) and not isinstance(number, bool):
                self.on_select(number)


class LabView(DiagramView):
    """The failure lab's whole panel as one view: fault controls, buttons, status, progress,
    the diagram (with its inspector, replay and Stop) and the clickable history.

    The kernel side (:class:`~sagakit.notebook.lab.Lab`) owns the behaviour; this view holds
    what the browser shows and edits. The browser writes ``faults`` (step -> ``[mode, delay,
    probability]``, only steps with a fault), ``n`` and ``backend``; its buttons send ``run``,
    ``run_n`` and ``reset`` messages, which call ``on_run``, ``on_run_n`` and ``on_reset``.

    Args:
        template: the laid-out diagram (sent once).
        state: what the diagram shows now.
        title: the saga's name, shown on top.
        steps: the step names, in order.
        modes: the fault modes the selectors offer.
        runs: the initial N of Run x N.
        backends: the labels of the backends to choose from (none: no choice shown).
    """

    kind = traitlets.Unicode("lab").tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    steps: traitlets.List[list[str]] = traitlets.List().tag(sync=True)
    modes: traitlets.List[str] = traitlets.List().tag(sync=True)
    faults = traitlets.Dict().tag(sync=True)
    n = traitlets.Int(20).tag(sync=True)
    progress: traitlets.List[int] = traitlets.List([0, 20]).tag(sync=True)
    backends: traitlets.List[str] = traitlets.List().tag(sync=True)
    backend = traitlets.Unicode("").tag(sync=True)
    status = traitlets.Unicode("ready").tag(sync=True)
    rows: traitlets.List[list[Any]] = traitlets.List().tag(sync=True)
    total = traitlets.Int(0).tag(sync=True)
    selected = traitlets.Int(0).tag(sync=True)

    def __init__(self, template: DiagramTemplate, state: DiagramState, *, title: str, steps: Sequence[str],
                 modes: Sequence[str], runs: int, backends: Sequence[str] = ()) -> None:
        from sagakit.notebook.lab import css_name

        super().__init__(template, state, stoppable=True)
        with self.hold_sync():
            self.title = title
            self.steps = [[name, css_name(name)] for name in steps]
            self.modes = list(modes)
            self.n = runs
            self.progress = [0, runs]
            self.backends = list(backends)
            self.backend = backends[0] if backends else ""
        self.on_run: Callable[[], None] | None = None
        self.on_run_n: Callable[[], None] | None = None
        self.on_reset: Callable[[], None] | None = None
        self.on_select: Callable[[int], None] | None = None

    @traitlets.validate("n")
    def _valid_n(self, proposal: Mapping[str, Any]) -> int:
        value = proposal["value"]
        if value < 1:
            raise traitlets.TraitError(f"Lab n: expected an int >= 1, got {value!r}")
        return int(value)

    @traitlets.validate("backend")
    def _valid_backend(self, proposal: Mapping[str, Any]) -> str:
        value = str(proposal["value"])
        if self.backends and value not in self.backends:
            raise traitlets.TraitError(f"Lab backend: expected one of {self.backends!r}, got {value!r}")
        return value

    def _on_message(self, widget: Any, content: Mapping[str, Any], buffers: Any) -> None:
        kind = content.get("t")
        handler = {"run": self.on_run, "run_n": self.on_run_n, "reset": self.on_reset}.get(str(kind))
        if handler is not None:
            handler()
        elif kind == "select":
            number = content.get("run")
            if self.on_select is not None and isinstance(number, int) and not isinstance(number, bool):
                self.on_select(number)
        else:
            super()._on_message(widget, content, buffers)


def history_rows(runs: Sequence[Run], first_number: int) -> list[list[Any]]:
    """The rows of the history table, newest first: number, status, failed step, error, ms, backend, fault."""
    rows: list[list[Any]] = []
    for number, run in zip(range(first_number + len(runs) - 1, first_number - 1, -1), reversed(runs), strict=True):
        error = run.original_error if run.original_error is not None else run.error
        message = "" if error is None else error_summary(error, run)
        if len(message) > 90:
            message = message[:87] + "..."
        rows.append([number, run.status, run.failed_step or "", message, f"{run.duration_ms:.1f}", run.backend,
                     bool(run.injected)])
    return rows


# -- replay -------------------------------------------------------------------------------


def _label(event: Event) -> str:
    what = str(event.kind).replace("_", " ")
    return f"{what} {event.step}" if event.step is not None else what


def replay_frames(run: Run, template: DiagramTemplate) -> dict[str, Any]:
    """The run's events as replay frames: ``base`` (before the run) and one delta per event.

    A frame holds only the steps its event changed, so the front-end steps through a run of
    any length without asking the kernel again.
    """
    steps = template.steps
    state = DiagramState(steps)
    state.dirty = set()
    state.cleared = False
    base = wire_state(steps, state)
    frames: list[dict[str, Any]] = []
    labels: list[str] = []
    for event in run.events:
        state(event)
        dirty = state.dirty
        names = [member.name for member in steps] if dirty is None else sorted(dirty)
        state.dirty = set()
        frame = _delta(state, names)
        if state.cleared:
            state.cleared = False
            frame["r"] = 1
        if event.kind is _K.RUN_FINISHED:
            state.caption = run_caption(run)
            frame["c"] = state.caption
        frames.append(frame)
        labels.append(_label(event))
    return {"base": base, "frames": frames, "labels": labels}


# -- inspector ----------------------------------------------------------------------------


def _payload(run: Run, value: Any) -> str:
    from sagakit.runs import run_redactor

    try:
        shown = run_redactor(run).redact(value)
    except Exception:  # a payload that cannot be redacted is not shown at all
        return "(not shown: could not be redacted)"
    return _PAYLOAD.repr(shown)


#: Where sagakit's own machinery and the installed libraries live: not the step's frames.
_NOT_THE_STEP = tuple(
    {str(Path(__file__).resolve().parent.parent)}
    | {str(Path(path).resolve()) for key in ("stdlib", "platstdlib", "purelib", "platlib")
       if (path := sysconfig.get_paths().get(key))}
)


def _frames(error: BaseException | None) -> str:
    """The step's own frames of ``error``'s traceback (the newest six): an injected fault, or the
    retry machinery re-raising an error, adds only frames that say nothing about the step."""
    if error is None or error.__traceback__ is None:
        return ""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if not str(Path(frame.filename).resolve()).startswith(_NOT_THE_STEP)][-6:]
    return "\n".join(f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}" for frame in frames)


def _step_input(run: Run, events: Sequence[Event], step: str) -> tuple[bool, Any]:
    # What the step received: the last output recorded before its first event (a finished
    # run keeps no start events, so its first attempt's end bounds the search).
    value: tuple[bool, Any] = (False, None)
    for event in events:
        if event.step == step and event.phase == "forward":
            return value
        if event.kind is _K.RUN_STARTED or event.kind is _K.STEP_SUCCEEDED:
            value = (True, event.data)
    return (False, None)


def inspector_html(run: Run | None, step: str, phase: str, state: DiagramState | None = None) -> str:
    """The inspector's content for one step (``phase`` ``forward``) or its compensation.

    Each attempt's status, duration, redacted input and output, error type and message (through
    the run's redactor), the error's frames, the idempotency key and whether a fault was injected.
    """
    e = html.escape
    what = step if phase == "forward" else f"compensation of {step}"
    parts = [f'<button type="button" class="sagakit-button sagakit-inspector-close" title="Close">\u00d7</button>'
             f'<div class="sagakit-inspector-title"><b>{e(what)}</b>']
    if state is not None:
        current = state.states.get(step, "pending")
        parts.append(f' \u00b7 <span class="sagakit-inspector-state">{e(current.replace("-", " "))}</span>')
        hint = state.hints.get(step)
        if hint:
            parts.append(f'<div class="sagakit-hint">{e(hint)}</div>')
    parts.append("</div>")
    if run is None:
        parts.append("<div>No run yet: press Run to see this step's attempts.</div>")
        return "".join(parts)
    events = run.events
    mine = [event for event in events if event.step == step and event.phase == phase]
    attempts = [event for event in mine if event.kind in END_KINDS]
    if not mine:
        parts.append(f"<div>Not run in run {e(run.run_id[:8])} ({e(run.status)}).</div>")
        return "".join(parts)
    key = f"{run.run_id}:{step}" + (":compensate" if phase == "compensate" else "")
    parts.append(f'<div>run <code>{e(run.run_id[:8])}</code> \u00b7 idempotency key <code>{e(key)}</code></div>')
    if phase == "forward":
        known, received = _step_input(run, events, step)
        if known:
            parts.append(f"<div>input</div><pre>{e(_payload(run, received))}</pre>")
    else:
        started = next((event for event in mine if event.kind is _K.COMPENSATION_STARTED), None)
        if started is not None:
            parts.append(f"<div>input</div><pre>{e(_payload(run, started.data))}</pre>")
    parts.append("<table><thead><tr><th>attempt</th><th>status</th><th>duration</th><th>fault</th><th>output / error</th>"
                 "</tr></thead><tbody>")
    for event in attempts:
        if event.error is not None:
            text = error_text(event.error, run)
            detail = (f"<b>{e(type(event.error).__name__)}</b>" + (f": {e(text)}" if text else "")
                      + f"<pre>{e(_frames(event.error))}</pre>")
        elif event.kind is _K.STEP_SUCCEEDED:
            detail = f"<pre>{e(_payload(run, event.data))}</pre>"
        else:
            detail = ""
        duration = format_ms(event.duration_ms / 1000.0) if event.duration_ms is not None else ""
        parts.append(f'<tr class="sagakit-attempt status-{e(event.status or "")}"><td>{event.attempt}</td>'
                     f"<td>{e(event.status or str(event.kind))}</td><td>{e(duration)}</td>"
                     f"<td>{'injected' if event.injected else ''}</td><td>{detail}</td></tr>")
    if not attempts:
        parts.append('<tr><td colspan="5">in flight</td></tr>')
    parts.append("</tbody></table>")
    return "".join(parts)
