"""Laying a saga out: DOT built with ``graphviz``, run once per saga shape, kept as a template.

A saga is drawn left to right: a start point, one box per step, parallel stages as clusters,
an end point. Every step before the pivot has a dashed reverse edge for its compensation
(dotted, its box saying ``no undo`` or ``read-only``, when it has none). The pivot has a double
outline and the forward arrow after it reads "point of no return"; the steps after it (retried
forward, never undone) have no reverse edge. A saga too wide to read in one row is wrapped onto
rows (:func:`layout` with ``width``).

Layout is the only expensive part, so it runs once per *shape* (the stages, step names,
compensation names and options) and the SVG is kept as a :class:`DiagramTemplate`: the
``class`` attribute of every step node and compensation edge, and the last text line of
each, are slots filled in at render time. Colour lives in CSS keyed on those classes (see
:mod:`sagakit.notebook._palette`), so a live update is a string join, never another ``dot``
call. The interactive view receives the template as a tree of plain data
(:meth:`DiagramTemplate.tree`), which it builds into elements without parsing markup.
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
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from sagakit.events import Event, EventKind
from sagakit.notebook._names import dot_id
from sagakit.notebook._palette import svg_style
from sagakit.notebook.diagram_state import DiagramState
from sagakit.policies import callable_name
from sagakit.steps import Parallel

if TYPE_CHECKING:
    from sagakit.runs import Run
    from sagakit.saga import Saga

__all__ = [
    "KIND_LINES",
    "NO_RETURN",
    "READABLE_POINTS",
    "RENDERERS",
    "DiagramTemplate",
    "DiagramWarning",
    "Renderer",
    "Shape",
    "StepShape",
    "find_renderer",
    "step_classes",
    "layout",
    "layout_count",
    "run_layout_shape",
    "saga_dot",
    "saga_shape",
    "set_renderer",
]

#: The renderer settings :func:`set_renderer` accepts.
RENDERERS: tuple[str, ...] = ("auto", "dot", "graphviz-pure", "text")

#: The smallest font in a diagram, in points (arrow labels; step names are 11 pt). A view
#: never draws the diagram smaller than this reads at about 11 CSS pixels.
READABLE_POINTS = 10.0

_NBSP = "\u00a0"
_RUN_NOTE_PLACEHOLDER = "000.0 ms ×3 ⚡"
_RETRY_NOTE_PLACEHOLDER = "attempt 10 failed"  # a step that retries tells which attempt failed
#: The label of the forward arrow leaving the pivot.
NO_RETURN = "point of no return"
#: Each kind's line in its box, where a compensatable step names its compensation.
KIND_LINES = {"pivot": "pivot", "retriable": "↻ retried forward", "readonly": "read-only"}
_UNDO_LINE = ' class="undo-line"'
_ELEMENT = re.compile(r'<g id="([^"]*)" class="([^"]*)">')
_COMMENT = re.compile(r"<!--.*?-->\n?", re.DOTALL)
_TITLE = re.compile(r"<title>[^<]*</title>")
_TEXT = re.compile(r"(<text[^>]*>)([^<]*)(</text>)")
_SIZE = re.compile(r'<svg class="sagakit-svg" width="([\d.]+)pt" height="([\d.]+)pt"')
_SVG_NS = "{http://www.w3.org/2000/svg}"


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
    return shutil.which("graphviz-pure")


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
        stacklevel=5,
    )


# -- shapes and DOT -----------------------------------------------------------------------


class StepShape(NamedTuple):
    """What the layout of one step depends on.

    Attributes:
        name: the step's name.
        undo: the compensation's name, ``None`` when there is nothing to undo.
        options: retry/timeout facts shown under the name.
        retries: how many times the step's policy retries a failed attempt.
        kind: the step's kind (``compensatable``, ``pivot``, ``retriable`` or ``readonly``).
    """

    name: str
    undo: str | None
    options: str
    retries: int = 0
    kind: str = "compensatable"


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


def _options(step: Any) -> tuple[str, int]:
    """Retry and timeout facts, as in ``step(retry=, timeout=)``, for options and seed primitives
    alike; and the number of retries."""
    parts = []
    retries, timeout = _policy_options(getattr(step, "action", None))
    retry = getattr(step, "retry", None)
    if retry is not None and retry.max_retries:
        retries = retry.max_retries
    if retries:
        parts.append(f"retry={retries}")
    elif retry is None and getattr(step, "kind", None) == "retriable":
        # The forward policy a retriable step gets by default: counted (live notes name the
        # attempt), not written in the box.
        from sagakit.steps import FORWARD_RETRY

        retries = FORWARD_RETRY.max_retries
    if getattr(step, "timeout", None) is not None:
        timeout = step.timeout
    if timeout is not None:
        parts.append(f"timeout={timeout:g}s")
    if getattr(step, "compensate_on_failure", False):
        parts.append("undo on failure")
    return ", ".join(parts), retries or 0


def _step_shape(member: Any) -> StepShape:
    options, retries = _options(member)
    undo = callable_name(member.compensate) if member.compensate is not None else None
    return StepShape(member.name, undo, options, retries, getattr(member, "kind", "compensatable"))


def saga_shape(saga: Saga) -> Shape:
    """The parts of a saga's definition that its layout depends on."""
    stages = []
    for stage in saga.stages:
        members = stage.steps if isinstance(stage, Parallel) else (stage,)
        stages.append((isinstance(stage, Parallel), tuple(_step_shape(member) for member in members)))
    return tuple(stages)


def _events_shape(events: Sequence[Event]) -> Shape:
    # A run without its definition (replayed from elsewhere): one stage per step, in index order;
    # the kinds other than compensatable are recorded with the run's start.
    index: dict[str, int] = {}
    undone: set[str] = set()
    kinds: dict[str, str] = {}
    for event in events:
        if event.kind is EventKind.RUN_STARTED and event.info:
            recorded = event.info.get("kinds")
            if isinstance(recorded, dict):
                kinds = {str(name): str(kind) for name, kind in recorded.items()}
        if event.step is not None:
            index.setdefault(event.step, event.index)
            if event.phase == "compensate" and event.kind is not EventKind.COMPENSATION_SKIPPED:
                undone.add(event.step)
    ordered = sorted(index, key=index.__getitem__)
    return tuple((False, (StepShape(name, "compensate" if name in undone else None, "", 0,
                                    kinds.get(name, "compensatable")),)) for name in ordered)


def run_layout_shape(run: Run) -> Shape:
    """The shape a run is drawn with: its saga's, or (a run without its definition) its events'."""
    if run.definition is not None:
        return saga_shape(run.definition)
    return _events_shape(run.events)


def _label(*lines: str) -> str:
    # DOT keeps backslash escapes, so a backslash in a name must be doubled; \n breaks lines.
    # An ampersand is escaped, so that an entity in a name reads as written.
    return "\\n".join(dot_id(line.replace("\\", "\\\\")) for line in lines)


def _undo_line(member: StepShape) -> str:
    """The line naming a step's compensation in its box (after a rollback it tells the outcome),
    or its kind when it has none by design."""
    if member.undo is not None:
        return f"↺ {member.undo}"
    return KIND_LINES.get(member.kind, "no undo")


def step_classes(member: StepShape) -> str:
    """A step node's classes other than its state: ``step``, and ``kind-<kind>`` for a pivot,
    retriable or read-only step, or ``no-compensation`` for a compensatable one without one."""
    if member.kind in KIND_LINES:
        return f"step kind-{member.kind}"
    return "step" if member.undo is not None else "step no-compensation"


def _has_undo_edge(member: StepShape) -> bool:
    # The rollback path: nothing goes back from the pivot or from a step after it.
    return member.kind not in ("pivot", "retriable")


def _add_steps(target: Any, node_ids: Sequence[str], steps: Sequence[StepShape]) -> None:
    for node_id, member in zip(node_ids, steps, strict=True):
        # The last label line is a slot (durations, fault marks): reserve its width now. The
        # compensation is named inside the box, so that the arrows between stages stay short.
        placeholder = max((member.options, _note_placeholder(member)), key=len)
        undo = _undo_line(member)
        extra = {"peripheries": "2"} if member.kind == "pivot" else {}
        target.node(node_id, label=_label(member.name, undo, placeholder), id=dot_id(f"step-{member.name}"),
                    **{"class": step_classes(member)}, **extra)


def _note_placeholder(member: StepShape) -> str:
    return _RETRY_NOTE_PLACEHOLDER if member.retries else _RUN_NOTE_PLACEHOLDER


def saga_dot(shape_or_saga: Shape | Saga, name: str = "saga", rows: Sequence[int] | None = None) -> str:
    """The DOT source of a saga's diagram (before colouring).

    Args:
        shape_or_saga: the saga, or its shape.
        name: the graph's name (the saga's, when a saga is given).
        rows: how many stages each row holds (none: one row); a row after the first starts
            at a small point that the previous row's last stage leads to.
    """
    import graphviz

    if isinstance(shape_or_saga, tuple):
        shape = shape_or_saga
    else:
        shape = saga_shape(shape_or_saga)
        name = shape_or_saga.name
    breaks: set[int] = set()
    if rows:
        position = 0
        for count in list(rows)[:-1]:
            position += count
            breaks.add(position)
    graph = graphviz.Digraph(name=name)
    graph.attr(rankdir="LR", nodesep="0.25", ranksep="0.4", fontname="Helvetica", fontsize="10",
               bgcolor="transparent", id="saga")
    graph.attr("node", shape="box", style="rounded,filled", fillcolor="white", fontname="Helvetica", fontsize="11",
               margin="0.12,0.05", height="0.45")
    graph.attr("edge", color="#5f6b7a", arrowsize="0.6", fontname="Helvetica", fontsize=f"{READABLE_POINTS:g}")
    graph.node("start", label="", shape="circle", width="0.14", height="0.14", style="filled", fillcolor="#5f6b7a",
               color="#5f6b7a", id="saga-start", **{"class": "terminal"})
    graph.node("end", label="", shape="doublecircle", width="0.12", height="0.12", style="filled",
               fillcolor="#5f6b7a", color="#5f6b7a", id="saga-end", **{"class": "terminal"})
    previous = ["start"]
    counter = 0
    after_pivot = False
    for position, (is_parallel, steps) in enumerate(shape):
        if position in breaks:
            # A new row: its own start point, reached from the end of the row above.
            wrap = f"wrap{position}"
            graph.node(wrap, label="", shape="circle", width="0.1", height="0.1", style="filled",
                       fillcolor="#5f6b7a", color="#5f6b7a", id=f"wrap-{position}", **{"class": "wrap"})
            for source in previous:
                graph.edge(source, wrap, constraint="false", arrowhead="none")
            previous = [wrap]
        node_ids = [f"s{counter + offset}" for offset in range(len(steps))]
        counter += len(steps)
        if is_parallel:
            with graph.subgraph(name=f"cluster_stage{position}") as cluster:
                cluster.attr(label="parallel", style="rounded,dashed", color="#9aa5b1", fontcolor="#57606a",
                             fontsize=f"{READABLE_POINTS:g}", id=f"stage-{position}", **{"class": "parallel"})
                _add_steps(cluster, node_ids, steps)
        else:
            _add_steps(graph, node_ids, steps)
        labelled = False
        for source in previous:
            for node_id in node_ids:
                if after_pivot:
                    # The first arrow past the pivot: one label says what crossing it means.
                    label = {} if labelled else {"label": NO_RETURN, "id": "no-return"}
                    labelled = True
                    graph.edge(source, node_id, penwidth="2", **label, **{"class": "no-return"})
                else:
                    graph.edge(source, node_id)
        after_pivot = any(member.kind == "pivot" for member in steps)
        # The rollback path: each compensation leads back to the stage before its step.
        back = previous[len(previous) // 2]
        for node_id, member in zip(node_ids, steps, strict=True):
            if not _has_undo_edge(member):
                continue
            undo_id = dot_id(f"undo-{member.name}")
            # Unlabelled: the compensation's line in the step's box tells its name and outcome,
            # so that the stages stay close together.
            if member.undo is not None:
                graph.edge(node_id, back, style="dashed", constraint="false", id=undo_id, **{"class": "undo"})
            else:
                kind = "kind-readonly" if member.kind == "readonly" else "no-compensation"
                graph.edge(node_id, back, style="dotted", constraint="false", id=undo_id,
                           **{"class": f"undo {kind}"})
        previous = node_ids
    for source in previous:
        if after_pivot:  # the pivot is the last step: the end is past the point of no return
            graph.edge(source, "end", label=NO_RETURN, id="no-return", penwidth="2", **{"class": "no-return"})
        else:
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
        base_classes: each step's (``<step>``) and compensation's (``undo-<step>``) classes
            other than its state.
        rows: how many stages each row holds.
        width: the drawing's width, in points (0 for the text fallback).
        height: the drawing's height, in points.
        undo_lines: each step's compensation line as drawn before its compensation runs
            (``↺ <compensation>`` or ``no undo``).
    """

    shape: Shape
    source: str
    renderer: Renderer | None
    pieces: list[str] = field(default_factory=list)
    slots: list[tuple[str, str, str]] = field(default_factory=list)
    base_classes: dict[str, str] = field(default_factory=dict)
    rows: tuple[int, ...] = ()
    width: float = 0.0
    height: float = 0.0
    undo_lines: dict[str, str] = field(default_factory=dict)
    _tree: list[Any] | None = None

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
                    out.append(html.escape(f"{base[step]} {classes.get(step, 'state-pending')}"))
                else:
                    out.append(html.escape(notes.get(step) or _NBSP, quote=False))
            elif kind == "class":
                out.append(html.escape(f"{base['undo-' + step]} {undo_classes.get(step, 'state-pending')}"))
            else:
                out.append(html.escape(undo_notes.get(step) or self.undo_lines.get(step, _NBSP), quote=False))
            out.append(pieces[position])
        svg = "".join(out)
        if state.caption:
            svg = _add_caption(svg, state.caption)
        return svg

    def tree(self) -> list[Any]:
        """The uncoloured diagram as plain data, for the view to build without parsing markup.

        An element is ``[tag, {attribute: value}, child, ...]``; a child is an element or a
        text. The SVG's elements keep their ids and classes; the text fallback is a ``div`` of
        ``span`` elements with the same ids and classes.
        """
        if self._tree is None:
            self._tree = self._text_tree() if self.renderer is None else _as_tree(
                ElementTree.fromstring(self.render(DiagramState(self.steps))))
        return self._tree

    def _text_tree(self) -> list[Any]:
        def box(member: StepShape) -> list[Any]:
            return ["span", {"id": f"step-{member.name}", "class": f"node {step_classes(member)} state-pending"},
                    ["span", {"class": "sagakit-text-name"}, member.name],
                    ["span", {"class": "sagakit-text-note"}, ""]]

        return ["div", {"class": "sagakit-text-diagram"}, *_in_order(self.shape, box)]

    def _render_text(self, state: DiagramState) -> str:
        # Without a layout program: the steps in order, with the same ids and classes.
        def box(member: StepShape) -> str:
            step = member.name
            note = state.notes.get(step)
            return (f'<span id="{html.escape("step-" + step)}" class="node {step_classes(member)} '
                    f'{state.classes.get(step, "state-pending")}" '
                    f'style="padding: 1px 4px; border: 1px solid #9aa5b1; border-radius: 3px">'
                    f"{html.escape(step)}{html.escape(' (' + note + ')') if note else ''}</span>")

        parts = ['<div class="sagakit-text-diagram" style="font-family: monospace; line-height: 1.8">',
                 *_in_order(self.shape, box)]
        if state.caption:
            parts.append(f"<div>{html.escape(state.caption)}</div>")
        parts.append("</div>")
        return "".join(parts)


def _in_order(shape: Shape, box: Callable[[StepShape], Any]) -> list[Any]:
    """A diagram without a layout program: each step's ``box`` in order, stages joined by
    arrows, the branches of a parallel stage bracketed and separated by bars."""
    parts: list[Any] = []
    for position, (is_parallel, members) in enumerate(shape):
        if position:
            parts.append(" → ")
        if is_parallel:
            parts.append("[ ")
        for number, member in enumerate(members):
            if number:
                parts.append(" | ")
            parts.append(box(member))
        if is_parallel:
            parts.append(" ]")
    return parts


def _as_tree(element: ElementTree.Element) -> list[Any]:
    tag = element.tag.removeprefix(_SVG_NS)
    attributes = {name: value for name, value in element.attrib.items() if not name.startswith("{")}
    node: list[Any] = [tag, attributes]
    keep_text = tag in ("text", "title", "style", "tspan")
    if element.text and (keep_text or element.text.strip()):
        node.append(element.text)
    for child in element:
        node.append(_as_tree(child))
        if child.tail and child.tail.strip():
            node.append(child.tail)
    return node


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
    text = (f'<text class="caption" x="6" y="{height + 12.0:.2f}" font-size="10" style="fill: var(--sk-fg, #1f2933)">'
            f"{html.escape(caption, quote=False)}</text>\n</svg>")
    body = svg[: match.start()] + head + svg[match.end():]
    end = body.rfind("</svg>")
    return body[:end] + text + body[end + len("</svg>"):]


_templates: dict[tuple[Shape, Renderer | None, tuple[int, ...]], DiagramTemplate] = {}


def layout(shape: Shape, *, name: str = "saga", width: float | None = None) -> DiagramTemplate:
    """The template for ``shape``, laid out on first use and cached for the process.

    Args:
        shape: what to lay out.
        name: the graph's name.
        width: the most points a row may take: a saga wider than this is wrapped onto rows
            (none: one row, however wide).

    Runs the layout program at most once per shape, renderer and wrapping. Without a renderer
    (or if it fails), returns a text template and warns once per process.
    """
    rows = wrap_rows(shape, width) if width is not None else ()
    return _layout(shape, name, rows if len(rows) > 1 else ())


# What a stage takes in a row, in points, from the longest line in its boxes (11 pt Helvetica,
# measured on laid-out diagrams and rounded up, so that a row comes out no wider than asked).
_CHAR_POINTS = 7.1
_LABEL_CHAR_POINTS = 5.6
_STAGE_POINTS = 50.0
_CLUSTER_POINTS = 30.0
_LEAD_POINTS = 12.0
_TAIL_POINTS = 8.0


def _stage_points(is_parallel: bool, members: Sequence[StepShape]) -> float:
    longest = max(max(len(member.name), len(_undo_line(member)), len(member.options), len(_note_placeholder(member)))
                  for member in members)
    # The arrow leaving the pivot carries its label (10 pt) across the gap to the next stage.
    label = _LABEL_CHAR_POINTS * len(NO_RETURN) if any(member.kind == "pivot" for member in members) else 0.0
    return _CHAR_POINTS * longest + _STAGE_POINTS + (_CLUSTER_POINTS if is_parallel else 0.0) + label


@functools.lru_cache(maxsize=256)
def wrap_rows(shape: Shape, width: float) -> tuple[int, ...]:
    """How many stages each row holds when ``shape`` is wrapped onto rows of ``width`` points.

    Rows hold the same number of stages (the last may hold fewer): the layout puts the k-th
    stage of every row in one column, as wide as the widest of them, so the most stages per
    row whose columns fit ``width`` is chosen.
    """
    pitches = [_stage_points(is_parallel, members) for is_parallel, members in shape]
    total = len(pitches)

    def fits(per_row: int) -> bool:
        columns = [max(pitches[start::per_row]) for start in range(per_row)]
        return _LEAD_POINTS + _TAIL_POINTS + sum(columns) <= width

    # No row holds more stages than the narrowest ones side by side would fill.
    most = min(total, max(1, int((width - _LEAD_POINTS - _TAIL_POINTS) // min(pitches))))
    per_row = next((count for count in range(most, 1, -1) if fits(count)), 1)
    # As many rows, filled evenly: 25 stages at 6 a row are 5 rows of 5, not a last row of 1.
    balanced = -(-total // -(-total // per_row))
    if fits(balanced):
        per_row = balanced
    return tuple([per_row] * (total // per_row) + ([total % per_row] if total % per_row else []))


def _layout(shape: Shape, name: str, rows: tuple[int, ...]) -> DiagramTemplate:
    renderer = find_renderer()
    key = (shape, renderer, rows)
    template = _templates.get(key)
    if template is not None:
        return template
    with _lock:
        template = _templates.get(key)
        if template is not None:
            return template
        source = saga_dot(shape, name=name, rows=rows or None)
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
                template.rows = rows or (len(shape),)
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
    svg = svg[:opening_end] + "\n" + svg_style() + svg[opening_end:]
    names = {member.name for _, members in shape for member in members}
    svg = _retitle(svg, names)
    template = DiagramTemplate(shape, source, renderer)
    size = _SIZE.search(svg)
    if size is not None:
        template.width, template.height = float(size.group(1)), float(size.group(2))
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
        template.base_classes[key] = " ".join(
            name for name in html.unescape(match.group(2)).split() if not name.startswith("state-"))
        template.pieces.append(svg[cursor: match.start(2)])
        template.slots.append(("class", element, step))
        cursor = match.end(2)
        if element != "step":
            continue
        region_end = matches[number + 1].start() if number + 1 < len(matches) else len(svg)
        texts = list(_TEXT.finditer(svg, match.end(), region_end))
        if len(texts) >= 3:
            # The compensation's line: marked, and a slot of the compensation's own.
            line = texts[-2]
            template.pieces.append(svg[cursor: line.start(1) + len("<text")] + _UNDO_LINE
                                   + svg[line.start(1) + len("<text"): line.start(2)])
            template.slots.append(("text", "undo", step))
            template.undo_lines[step] = html.unescape(line.group(2))
            cursor = line.end(2)
        if len(texts) >= 2:
            last = texts[-1]
            template.pieces.append(svg[cursor: last.start(2)])
            template.slots.append(("text", "step", step))
            cursor = last.end(2)
    template.pieces.append(svg[cursor:])
    return template
