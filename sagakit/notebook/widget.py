"""The notebook front-end as anywidget views: the live diagram, the clickable run history, and
the failure lab's whole panel (:class:`LabView`: the diagram, the history, the charts and the
fault controls in one view).

One ES module and one style sheet ship inside the package (``static/``): no CDN, no build
step. Every front-end anywidget reaches draws them (JupyterLab, Jupyter Notebook 7, VS Code,
Colab, marimo); elsewhere (nbconvert, GitHub, a notebook reopened without its kernel) the
static fallback shown next to the view stays: the last drawn SVG and the status line.

The kernel sends the laid-out diagram once per saga shape and wrapping (the ``tree`` trait:
elements as plain data, built by the view with text nodes, never parsed as markup);
afterwards each redraw sends only what changed, as a custom message ``{"t": "d", "s":
classes, "n": notes, "u": compensation classes, "un": compensation notes, "c": caption}``
keyed by step, with ``"r": 1`` when everything went back to pending first (a new run). The
``state`` trait holds the full picture for views opened later; it is synced when no run is in
flight. Clicks come back as messages: ``inspect`` (a step or compensation: the inspector shows
its attempts), ``replay`` (the events of the shown run, one slider position each), ``live``,
``stop``, ``width`` (the points a row may take: the kernel wraps a wide saga onto rows),
``views`` (a view opened or closed) and, from the history, ``select`` (draw a past run) and
``compare`` (two past runs side by side).

Stable classes: ``sagakit-diagram`` (given by the Lab), ``sagakit-fit``, ``sagakit-zoom-in``,
``sagakit-zoom-out``, ``sagakit-stop``, ``sagakit-replay`` (the slider bar),
``sagakit-replay-button``, ``sagakit-inspector``, ``sagakit-caption``, ``sagakit-fit-note``
(why Fit cannot show everything at a readable size); in the history,
``sagakit-history-table`` rows ``run-<status>`` with ``data-run`` (the run's number); the
Lab's classes are listed in :mod:`sagakit.notebook.lab`.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from sagakit.events import Event
from sagakit.notebook._inspect import delta, inspector_data, replay_frames, wire_state
from sagakit.notebook._layout import DiagramTemplate, layout, run_layout_shape, saga_shape
from sagakit.notebook._names import css_names
from sagakit.notebook._palette import legend, theme_css
from sagakit.notebook.diagram_state import DiagramState, planned_notes

if TYPE_CHECKING:
    from sagakit.runs import Run
    from sagakit.saga import Saga

__all__ = ["DiagramView", "HistoryView", "LabView", "diagram_view", "publish", "replay_frames", "static_bundle",
           "wire_state"]

STATIC = Path(__file__).with_name("static")

#: The mime type of a widget view in a display bundle.
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


# A notebook reopened without its kernel has no widget models: JupyterLab and Notebook 7 write
# "Error displaying widget: model not found" (a widget output with no element in it) where the
# view was. The fallback just before it shows the Lab instead, so that line is hidden (in a
# trusted notebook; an untrusted one drops styles and keeps it).
# (:has() does not nest: the widget output itself is hidden, its empty prompt stays.)
_DEAD_VIEW = ("<style>.jp-OutputArea-child:has(> .jp-OutputArea-output .sagakit-static) + .jp-OutputArea-child"
              " > .jp-OutputArea-output.jupyter-widgets:not(:has(*)) { display: none; }</style>")


def static_bundle(template: DiagramTemplate, state: DiagramState, status: str = "") -> dict[str, Any]:
    """What shows where the view cannot (nbconvert, GitHub, a notebook reopened without its
    kernel): the diagram as drawn now, with ``status`` (or the run's caption) under it.

    A live view hides the output holding it (the ``sagakit-static`` class marks it).
    """
    svg = template.render(state)
    if status and state.caption and status.lstrip("✖✔■ ") in state.caption:
        status = ""  # the drawing's caption says it already
    caption = status or state.caption or ""
    text = f"{caption}\n" if caption else ""
    if template.renderer is None:
        return {"text/html": f'<div class="sagakit-static">{_DEAD_VIEW}{svg}</div>', "text/plain": text or "(saga diagram)"}
    body = (f'<div class="sagakit-static" style="max-width:100%;overflow-x:auto">{_DEAD_VIEW}{svg}'
            + (f'<div style="font:12px Helvetica,Arial,sans-serif">{html.escape(status)}</div>' if status else "")
            + "</div>")
    return {"text/html": body, "image/svg+xml": svg, "text/plain": text or "(saga diagram)"}


def publish(output: Any, *, display_id: str | bool | None = None, update: bool = False) -> str | None:
    """Display ``output`` (a raw bundle, or a widget) as a notebook output; ``update`` replaces
    the output ``display_id`` instead. Returns the output's display id, if it has one."""
    from IPython import display as ipython_display

    show: Callable[..., Any] = ipython_display.update_display if update else ipython_display.display
    raw = isinstance(output, dict)
    handle = show(output, raw=raw, display_id=display_id) if display_id is not None else show(output, raw=raw)
    found = getattr(handle, "display_id", None)
    return found if isinstance(found, str) else None


class DiagramView(anywidget.AnyWidget):  # type: ignore[misc]
    """A saga's diagram in the browser: fit, pan, zoom, inspector, replay and an optional Stop.

    Args:
        template: the laid-out diagram (sent once per wrapping).
        state: what it shows now; :meth:`push` sends what changed since the last push.
        stoppable: show a Stop button (the Lab's), calling ``on_stop`` when pressed.
        name: the saga's name (the graph's, when the view wraps the saga onto rows).
    """

    _esm = STATIC / "sagakit.js"
    _css = STATIC / "sagakit.css"
    kind = traitlets.Unicode("diagram").tag(sync=True)
    tree: traitlets.List[Any] = traitlets.List().tag(sync=True)
    state = traitlets.Dict().tag(sync=True)
    replay = traitlets.Dict().tag(sync=True)
    inspector = traitlets.Dict().tag(sync=True)
    busy = traitlets.Bool(False).tag(sync=True)
    stoppable = traitlets.Bool(False).tag(sync=True)
    replayable = traitlets.Bool(False).tag(sync=True)
    theme = traitlets.Unicode("").tag(sync=True)
    legend: traitlets.List[list[str]] = traitlets.List().tag(sync=True)

    def __init__(self, template: DiagramTemplate, state: DiagramState, *, stoppable: bool = False,
                 name: str = "saga") -> None:
        pivot = any(member.kind == "pivot" for member in template.steps)
        super().__init__(tree=template.tree(), state=wire_state(template.steps, state), stoppable=stoppable,
                         theme=theme_css(), legend=legend(pivot))
        self.template = template
        self.diagram_state = state
        self.graph_name = name
        self.names = [member.name for member in template.steps]
        #: The run drawn (inspected and replayed), if any.
        self.run: Run | None = None
        #: The events of :attr:`run` as observed live (with attempt starts), if they were.
        self.run_events: Sequence[Event] | None = None
        #: The step and phase the inspector shows, if it is open.
        self.inspected: tuple[str, str] | None = None
        #: Whether a replay (or a playback) may be showing instead of the live diagram.
        self.replaying = False
        self.on_stop: Callable[[], object] | None = None
        self.on_live: Callable[[], None] | None = None
        self.on_views: Callable[[int], None] | None = None
        #: How many views of this widget are open in a browser now.
        self.views = 0
        self._caption = state.caption or ""
        self._live_status: dict[str, Any] | None = None
        self._sent_version = state.version
        state.dirty = set()
        self.on_msg(self._on_message)

    def __repr__(self) -> str:
        # What shows where the view cannot (an export, a notebook viewer) and in a console.
        return (f"<sagakit {type(self).__name__} of saga {self.graph_name!r}: a live view, drawn in a running "
                "Jupyter front-end>")

    def show_run(self, run: Run | None, events: Sequence[Event] | None = None) -> None:
        """Make ``run`` the one the inspector and the replay read (``events``: as observed live)."""
        self.run = run
        self.run_events = events
        self.replayable = run is not None
        self.refresh_inspector()

    def inspect(self, step: str, phase: str = "forward", *, in_flight: bool = False) -> None:
        """Open the inspector on ``step`` (``phase`` ``compensate``: its compensation); ``""`` closes it."""
        self.inspected = (step, "compensate" if phase == "compensate" else "forward") if step else None
        self.refresh_inspector(in_flight=in_flight)

    def refresh_inspector(self, *, in_flight: bool = False) -> None:
        """Show the inspected step of the run shown now (never a previous run's)."""
        if self.inspected is None:
            if self.inspector:
                self.inspector = {}
            return
        step, phase = self.inspected
        member = next((member for member in self.template.steps if member.name == step), None)
        self.inspector = inspector_data(self.run, step, phase, self.diagram_state, in_flight=in_flight,
                                        compensation=member.undo if member is not None else None,
                                        kind=member.kind if member is not None else "compensatable")

    def relayout(self, width: float | None) -> bool:
        """Wrap the diagram for rows of at most ``width`` points (none: one row); returns
        whether the drawing changed."""
        template = layout(self.template.shape, name=self.graph_name, width=width)
        if template is self.template:
            return False
        self.template = template
        with self.hold_sync():
            self.tree = template.tree()
            self.state = wire_state(template.steps, self.diagram_state)
        return True

    def push(self, *, full: bool = False, status: dict[str, Any] | None = None) -> bool:
        """Send what changed since the last push (``full``: also sync the ``state`` trait), in one
        message with ``status`` (a live status line) when that changed too.

        Returns whether anything was sent.
        """
        state = self.diagram_state
        message: dict[str, Any] = {}
        if state.version != self._sent_version:
            self._sent_version = state.version
            dirty = state.dirty
            changed = delta(state, self.names if dirty is None else dirty)
            state.dirty = set()
            if state.cleared:
                state.cleared = False
                changed["r"] = 1
                self._caption = ""
            if (state.caption or "") != self._caption:
                self._caption = changed["c"] = state.caption or ""
            if any(changed[key] for key in ("s", "n", "u", "un")) or "c" in changed or "r" in changed:
                message = changed
        if status is not None and status != self._live_status:
            self._live_status = message["st"] = status
        if message:
            message["t"] = "d"
            self.send(message)
        if full:
            self.state = wire_state(self.template.steps, state)
        return bool(message)

    def static_bundle(self, status: str = "") -> dict[str, Any]:
        """The static fallback of this view as drawn now (see :func:`static_bundle`)."""
        return static_bundle(self.template, self.diagram_state, status)

    def _on_message(self, _widget: Any, content: Mapping[str, Any], _buffers: Any) -> None:
        kind = content.get("t")
        if kind == "stop" and self.on_stop is not None:
            self.on_stop()
        elif kind == "inspect":
            self.inspect(str(content.get("step") or ""), str(content.get("phase") or "forward"),
                         in_flight=self.busy)
        elif kind == "replay" and self.run is not None:
            self.replay = replay_frames(self.run, self.template, self.run_events)
            self.replaying = True
        elif kind == "live":
            self.replay = {}
            self.replaying = False
            self.push(full=True)
            if self.on_live is not None:
                self.on_live()
        elif kind == "width":
            width = content.get("pt")
            if isinstance(width, int | float) and not isinstance(width, bool) and width > 0:
                self.relayout(float(width))
        elif kind == "views":
            change = content.get("n")
            if change in (1, -1):
                self.views = max(0, self.views + int(change))  # type: ignore[arg-type]
                if self.on_views is not None:
                    self.on_views(self.views)


def diagram_view(target: Saga | Run) -> DiagramView:
    """The interactive view of a saga (planned faults marked) or of a run (inspector and replay).

    Jupyter front-ends get it from ``display(saga)`` or ``display(run)`` already; elsewhere
    (marimo: ``mo.ui.anywidget(diagram_view(run))``) make it with this.

    Raises:
        TypeError: ``target`` is neither a :class:`~sagakit.Saga` nor a :class:`~sagakit.Run`.
    """
    from sagakit.runs import Run
    from sagakit.saga import Saga

    if isinstance(target, Saga):
        template = layout(saga_shape(target), name=target.name)
        return DiagramView(template, DiagramState(template.steps, planned_notes(target.faults)), name=target.name)
    if isinstance(target, Run):
        template = layout(run_layout_shape(target), name=target.saga)
        view = DiagramView(template, DiagramState.of_run(target, template.steps), name=target.saga)
        view.show_run(target)
        return view
    raise TypeError(f"diagram_view: expected a sagakit.Saga or a sagakit.Run, got {type(target).__name__}")


class HistoryView(anywidget.AnyWidget):  # type: ignore[misc]
    """The run history table; clicking a row calls ``on_select`` with the run's number (1-based).

    ``rows`` are :func:`sagakit.notebook._panels.history_rows`.
    """

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


#: What each fault mode does, as the selectors' tooltips and the modes' legend say it.
MODE_HELP: dict[str, str] = {
    "none": "no fault: the step runs as written",
    "fail": "the step fails before its action runs (nothing happened remotely)",
    "fail_after": "the action runs, then the step reports failure (a lost response: it did happen)",
    "fail_compensation": "the step's compensation fails when a rollback reaches it",
    "cancel": "the run is cancelled while the action is in flight (as a caller's timeout would)",
    "cancel_compensation": "the run is cancelled while the step's compensation is in flight",
}


class LabView(DiagramView):
    """The failure lab's whole panel as one view: fault controls, buttons, status, progress,
    the diagram (with its inspector, replay and Stop), the charts and the clickable history.

    The kernel side (:class:`~sagakit.notebook.lab.Lab`) owns the behaviour; this view holds
    what the browser shows and edits. The browser writes ``faults`` (step -> ``[mode, delay,
    probability]``, only steps with a fault), ``n``, ``backend`` and ``pace``; its buttons send
    ``run``, ``run_n``, ``reset``, ``reload``, ``select``, ``compare``, ``compare_close`` and
    ``resume`` (``run``: the history's number of the run to resume) messages, which call the
    ``on_*`` callbacks.

    Args:
        template: the laid-out diagram (sent once).
        state: what the diagram shows now.
        title: the saga's name, shown on top.
        steps: ``(name, has a compensation, kind)`` per step, in order.
        modes: the fault modes (a step's selector offers the compensation modes only when it
            has a compensation).
        runs: the initial N of Run x N.
        backends: the labels of the backends to choose from (none: no choice shown).
        pace: seconds per event when a run too fast to watch is played back (0: off).
        journal: the journal's name, when the history comes from one (a Reload button shows).
        charts: draw the charts.
    """

    kind = traitlets.Unicode("lab").tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    steps: traitlets.List[list[Any]] = traitlets.List().tag(sync=True)
    modes: traitlets.List[list[str]] = traitlets.List().tag(sync=True)
    faults = traitlets.Dict().tag(sync=True)
    n = traitlets.Int(20).tag(sync=True)
    progress: traitlets.List[int] = traitlets.List([0, 20]).tag(sync=True)
    backends: traitlets.List[str] = traitlets.List().tag(sync=True)
    backend = traitlets.Unicode("").tag(sync=True)
    status = traitlets.Dict().tag(sync=True)
    rows: traitlets.List[list[Any]] = traitlets.List().tag(sync=True)
    total = traitlets.Int(0).tag(sync=True)
    selected = traitlets.Int(0).tag(sync=True)
    pace = traitlets.Float(0.0).tag(sync=True)
    playback = traitlets.Dict().tag(sync=True)
    journal = traitlets.Unicode("").tag(sync=True)
    show_charts = traitlets.Bool(True).tag(sync=True)
    charts = traitlets.Dict().tag(sync=True)
    comparison = traitlets.Dict().tag(sync=True)

    def __init__(self, template: DiagramTemplate, state: DiagramState, *, title: str,
                 steps: Sequence[tuple[str, bool, str]], modes: Sequence[str], runs: int, backends: Sequence[str] = (),
                 pace: float = 0.0, journal: str = "", charts: bool = True) -> None:
        super().__init__(template, state, stoppable=True, name=title)
        classes = css_names(name for name, _, _ in steps)
        with self.hold_sync():
            self.title = title
            self.steps = [[name, classes[name], undo, kind] for name, undo, kind in steps]
            self.modes = [[mode, MODE_HELP.get(mode, "")] for mode in modes]
            self.n = runs
            self.progress = [0, runs]
            self.backends = list(backends)
            self.backend = backends[0] if backends else ""
            self.pace = pace
            self.journal = journal
            self.show_charts = charts
            self.status = {"level": "ready", "text": [["", "ready"]], "hints": []}
        self.on_run: Callable[[], None] | None = None
        self.on_run_n: Callable[[], None] | None = None
        self.on_reset: Callable[[], None] | None = None
        self.on_reload: Callable[[], None] | None = None
        self.on_select: Callable[[int], None] | None = None
        self.on_compare: Callable[[int, int], None] | None = None
        self.on_resume: Callable[[int], None] | None = None

    @traitlets.validate("n")
    def _valid_n(self, proposal: Mapping[str, Any]) -> int:
        value = proposal["value"]
        if value < 1:
            raise traitlets.TraitError(f"Lab n: expected an int >= 1, got {value!r}")
        return int(value)

    @traitlets.validate("pace")
    def _valid_pace(self, proposal: Mapping[str, Any]) -> float:
        value = float(proposal["value"])
        if not 0.0 <= value <= 5.0:
            raise traitlets.TraitError(f"Lab pace: expected seconds per event from 0 (off) to 5, got {value!r}")
        return value

    @traitlets.validate("backend")
    def _valid_backend(self, proposal: Mapping[str, Any]) -> str:
        value = str(proposal["value"])
        if self.backends and value not in self.backends:
            raise traitlets.TraitError(f"Lab backend: expected one of {self.backends!r}, got {value!r}")
        return value

    def _on_message(self, widget: Any, content: Mapping[str, Any], buffers: Any) -> None:
        kind = content.get("t")
        handler = {"run": self.on_run, "run_n": self.on_run_n, "reset": self.on_reset,
                   "reload": self.on_reload}.get(str(kind))
        if handler is not None:
            handler()
        elif kind == "select":
            number = content.get("run")
            if self.on_select is not None and isinstance(number, int) and _is_int(number):
                self.on_select(number)
        elif kind == "compare":
            picked = content.get("runs")
            if self.on_compare is not None and isinstance(picked, list) and len(picked) == 2:
                first, second = picked
                if isinstance(first, int) and isinstance(second, int) and _is_int(first) and _is_int(second):
                    self.on_compare(first, second)
        elif kind == "compare_close":
            self.comparison = {}
        elif kind == "resume":
            number = content.get("run")
            if self.on_resume is not None and isinstance(number, int) and _is_int(number):
                self.on_resume(number)
        else:
            super()._on_message(widget, content, buffers)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
