"""How each state looks: one entry per state, for the static SVG, the live view and the legend.

A step (or its compensation arrow) is drawn in exactly one state, the CSS class
``state-<state>``. :data:`LOOKS` gives each state its colours in a light and a dark theme, its
stroke and its legend entry; everything else is generated from it: the ``<style>`` embedded in
every diagram (:func:`svg_style`, light colours behind CSS variables), the variables the
view sets for the theme it finds (:func:`theme_css`), and the legend (:func:`legend`). A new
state is one more :class:`Look`.

A diagram shown without the view (a static fallback, a ``Run`` drawn as a plain SVG, an
exported notebook) paints its own background and takes the dark colours where the page says it
is dark (:data:`DARK_PAGES`: JupyterLab's and Notebook 7's dark themes, marimo's, VS Code's),
so that its captions and arrow labels read on any page, and in an ``<img>``, where no page
style reaches, it is the light drawing on its own white. A step's kind is drawn by its own class, ``kind-<kind>``
(:data:`KINDS`): the pivot with a double outline in the text colour and the forward arrow after
it labelled "point of no return".

Every colour pair here meets WCAG AA (4.5:1) for text: node text on its fill, and arrow
labels on the page (white to ``#f6f7f9`` in light themes, ``#111`` to ``#2b2b2b`` in dark
ones); a browser test measures it in each front-end.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DARK_PAGES", "KINDS", "LOOKS", "STATES", "Look", "Shade", "legend", "svg_style", "theme_css"]


@dataclass(frozen=True, slots=True)
class Shade:
    """A state's colours in one theme.

    Attributes:
        fill: the step box's fill.
        stroke: the box's outline.
        text: the text inside the box.
        edge: the compensation arrow and its label (drawn on the page background).
    """

    fill: str
    stroke: str
    text: str
    edge: str


@dataclass(frozen=True, slots=True)
class Look:
    """How one state is drawn and explained.

    Attributes:
        state: the state's name (the class is ``state-<state>``).
        label: its name in the legend.
        meaning: what it means, shown as the legend entry's tooltip.
        light: its colours in light themes.
        dark: its colours in dark themes.
        width: the outline's width.
        dash: the outline's dash pattern (``""``: solid).
        in_legend: listed in the legend (``skipped`` only ever colours an arrow).
        needs_pivot: listed only for a saga with a pivot (``stuck`` happens only after one).
    """

    state: str
    label: str
    meaning: str
    light: Shade
    dark: Shade
    width: float = 1.2
    dash: str = ""
    in_legend: bool = True
    needs_pivot: bool = False


_INK = "#1f2933"  # text on light fills
_PAPER = "#e6edf3"  # text on dark fills

LOOKS: tuple[Look, ...] = (
    Look("pending", "pending", "not run (yet) in the run shown",
         Shade("#f6f7f9", "#5f6b7a", _INK, "#57606a"), Shade("#22272e", "#8b949e", _PAPER, "#9da7b3")),
    Look("running", "running", "the step's action is in flight",
         Shade("#fff4c2", "#a07800", _INK, "#7a5c00"), Shade("#4a3b00", "#e3b341", _PAPER, "#e3b341"), 2.5),
    Look("retrying", "retrying", "an attempt failed and the step's retry policy will try again",
         Shade("#fff4c2", "#a07800", _INK, "#7a5c00"), Shade("#4a3b00", "#e3b341", _PAPER, "#e3b341"), 2.5, "4 2"),
    Look("succeeded", "succeeded", "the step's action completed",
         Shade("#dcf3dc", "#2e7d32", _INK, "#256b29"), Shade("#12361a", "#56d364", _PAPER, "#56d364")),
    Look("failed", "failed", "the step failed (its retries spent): the rollback starts here",
         Shade("#fbd3d3", "#c62828", _INK, "#c62828"), Shade("#5c1a1a", "#ff7b72", _PAPER, "#ff7b72"), 2.5),
    Look("cancelled", "cancelled", "the run was stopped while this step was in flight",
         Shade("#e4e4e4", "#616161", _INK, "#57606a"), Shade("#30363d", "#9da7b3", _PAPER, "#9da7b3"), 2.0, "6 2"),
    Look("compensating", "compensating", "the step's compensation is in flight",
         Shade("#ffe2b8", "#e65100", _INK, "#a84300"), Shade("#4a2a00", "#f0883e", _PAPER, "#f0883e"), 2.5),
    Look("compensated", "compensated", "the step's compensation undid it",
         Shade("#d8e6ff", "#1f5fbf", _INK, "#1f5fbf"), Shade("#0f2c57", "#79b8ff", _PAPER, "#79b8ff")),
    Look("compensation-failed", "compensation failed", "the step's compensation failed: its effect may remain",
         Shade("#8e1b1b", "#5c0000", "#ffffff", "#c62828"), Shade("#8e1b1b", "#ff7b72", "#ffffff", "#ff7b72"), 2.5),
    Look("not-compensated", "not compensated: needs manual cleanup",
         "the rollback stopped before it reached this completed step: undo it by hand",
         Shade("#ffe9a8", "#b71c1c", _INK, "#b71c1c"), Shade("#4a3a00", "#ff7b72", _PAPER, "#ff7b72"), 2.5, "5 2"),
    Look("not-undone", "not undone (no compensation)",
         "the step ran and has no compensation: its effect stays after the rollback",
         Shade("#efe4fb", "#6a3d9a", _INK, "#6a3d9a"), Shade("#33214f", "#c297ff", _PAPER, "#c297ff"), 1.5, "2 2"),
    Look("stuck", "stuck: nothing undone",
         "a step after the pivot ran out of retries: the run can neither complete nor roll back, and nothing was "
         "undone; fix the cause, then resume it from the journal",
         Shade("#fde2f3", "#a3106b", _INK, "#a3106b"), Shade("#4a1035", "#ff8fcb", _PAPER, "#ff8fcb"), 3.0,
         needs_pivot=True),
    Look("skipped", "skipped", "nothing to compensate",
         Shade("#f0f0f0", "#9e9e9e", _INK, "#57606a"), Shade("#2d333b", "#768390", _PAPER, "#9da7b3"),
         in_legend=False),
)

#: Every state a step can be drawn in; each is the CSS class ``state-<state>``.
STATES: tuple[str, ...] = tuple(look.state for look in LOOKS)

#: Colours of the parts that are no state: outlines of planned faults, forward arrows, text.
#: ``bg`` and ``fg`` are the page's and its text's where the front-end names none (the view
#: takes them from the front-end's variables; so does a static diagram, which paints ``bg``).
_CHROME = {
    "light": {"fault": "#c62828", "arrow": "#5f6b7a", "muted": "#57606a", "bg": "#ffffff", "fg": _INK,
              "diverges": "#6f42c1", "pivot": "#1f2933"},
    "dark": {"fault": "#ff7b72", "arrow": "#8b949e", "muted": "#9da7b3", "bg": "#111111", "fg": _PAPER,
             "diverges": "#c297ff", "pivot": "#e6edf3"},
}

#: What marks a page dark, for a diagram shown without the view: JupyterLab's and Notebook 7's
#: dark themes (nbconvert's dark HTML too), VS Code's, and marimo's (``dark`` on the body) or
#: any page marked the same ways. The view itself tells by the same marks (and, failing them,
#: by the colour behind it).
DARK_PAGES: tuple[str, ...] = (
    'body[data-jp-theme-light="false"]',
    'body[data-vscode-theme-kind="vscode-dark"]',
    'body[data-vscode-theme-kind="vscode-high-contrast"]',
    *(f"{node}{mark}" for node in ("html", "body")
      for mark in (".dark", ".dark-theme", ".dark-mode", '[data-theme="dark"]', '[data-mode="dark"]')),
)

#: A diagram outside the view (whose root sets the variables for the theme it finds).
_STATIC = ".sagakit-svg:not(.sagakit-root *)"
#: The page's colours a static diagram takes where the front-end names them, as the view does
#: (``--jp-*`` in Jupyter, ``--background``/``--foreground`` in marimo).
_PAGE = {"bg": "var(--jp-layout-color0, var(--background, {}))", "fg": "var(--jp-ui-font-color0, var(--foreground, {}))"}

#: How each step kind is drawn and explained: ``[kind, label, meaning]`` (the class is
#: ``kind-<kind>``; compensatable steps are the plain boxes).
KINDS: tuple[tuple[str, str, str], ...] = (
    ("pivot", "pivot: the point of no return",
     "a double outline: the go/no-go step; once it succeeds the saga must complete, so nothing before it is undone "
     "any more and nothing undoes it"),
    ("retriable", "retriable (after the pivot)",
     "↻ retried forward: a failure is retried under the step's policy, never compensated; when the retries run "
     "out the run is stuck"),
    ("readonly", "read-only",
     "the step changes nothing, so there is nothing to undo: it needs no compensation"),
)

_SHAPES = ("path", "polygon", "ellipse")


def _shape_rule(selector: str, declarations: str) -> str:
    return ", ".join(f".sagakit-svg {selector} > {shape}" for shape in _SHAPES) + " { " + declarations + " }"


def svg_style() -> str:
    """The ``<style>`` element embedded in every diagram: light colours behind CSS variables.

    The view sets the variables for the theme it finds (:func:`theme_css`). Outside the view,
    the diagram paints the page's background (Jupyter's ``--jp-layout-color0``, marimo's
    ``--background``, else white) under itself and takes the dark colours on a page marked
    dark (:data:`DARK_PAGES`); where no page style reaches (an ``<img>``), the light colours
    show on white.
    """
    light = _CHROME["light"]
    rules = [
        ".sagakit-svg text { font-family: Helvetica, Arial, sans-serif; }",
        # Outside the view: the page's colours, its own background painted under the whole
        # drawing (captions included), and the dark colours on a page marked dark.
        f"{_STATIC} {{ {_page_declarations('light')} background: var(--sk-bg); }}",
        f":is({', '.join(DARK_PAGES)}) {_STATIC} {{ {_page_declarations('dark')} "
        + " ".join(_declarations("dark")) + " }",
        _shape_rule("g.step", "stroke-width: 1.2; transition: fill .15s, stroke .15s;"),
        _shape_rule("g.step.no-compensation", "stroke-dasharray: 2 2;"),
        f".sagakit-svg g.edge > path {{ stroke: var(--sk-arrow, {light['arrow']}); }}",
        f".sagakit-svg g.edge > polygon {{ fill: var(--sk-arrow, {light['arrow']}); "
        f"stroke: var(--sk-arrow, {light['arrow']}); }}",
        f".sagakit-svg g.edge > text, .sagakit-svg g.cluster > text {{ fill: var(--sk-muted, {light['muted']}); }}",
        f".sagakit-svg g.cluster > path, .sagakit-svg g.cluster > polygon {{ stroke: var(--sk-arrow, {light['arrow']}); "
        "fill: none; }",
        f".sagakit-svg g.terminal > ellipse, .sagakit-svg g.wrap > ellipse {{ fill: var(--sk-arrow, {light['arrow']}); "
        f"stroke: var(--sk-arrow, {light['arrow']}); }}",
    ]
    for look in LOOKS:
        state, shade = look.state, look.light
        dash = f" stroke-dasharray: {look.dash};" if look.dash else ""
        rules.append(_shape_rule(
            f"g.step.state-{state}",
            f"fill: var(--sk-{state}-fill, {shade.fill}); stroke: var(--sk-{state}-stroke, {shade.stroke}); "
            f"stroke-width: {look.width};{dash}"))
        rules.append(f".sagakit-svg g.step.state-{state} > text {{ fill: var(--sk-{state}-text, {shade.text}); }}")
        edge = f"var(--sk-{state}-edge, {shade.edge})"
        heavy = "" if state in ("pending", "skipped") else " stroke-width: 2;"
        rules.append(f".sagakit-svg g.undo.state-{state} > path {{ stroke: {edge};{heavy} }}")
        rules.append(f".sagakit-svg g.undo.state-{state} > polygon {{ fill: {edge}; stroke: {edge}; }}")
        rules.append(f".sagakit-svg g.undo.state-{state} > text {{ fill: {edge}; }}")
    rules.append(_shape_rule("g.step.injected", f"stroke: var(--sk-fault, {light['fault']}); stroke-width: 2.5; "
                                                "stroke-dasharray: 6 3;"))
    rules.append(_shape_rule("g.step.diverges", f"stroke: var(--sk-diverges, {light['diverges']}); stroke-width: 4; "
                                                "stroke-dasharray: none;"))
    rules.append(".sagakit-svg g.undo.no-compensation > path, .sagakit-svg g.undo.kind-readonly > path "
                 "{ stroke-dasharray: 2 3; }")
    # The pivot's second outline (graphviz draws it after the box, unfilled): the point of no
    # return, in the text colour whatever the state, so that it reads in every state.
    rules.append(f".sagakit-svg g.step.kind-pivot > path + path, .sagakit-svg g.step.kind-pivot > polygon + polygon "
                 f"{{ fill: none; stroke: var(--sk-pivot, {light['pivot']}); stroke-width: 2; stroke-dasharray: none; }}")
    rules.append(f".sagakit-svg g.edge.no-return > path {{ stroke: var(--sk-pivot, {light['pivot']}); stroke-width: 2; }}")
    rules.append(f".sagakit-svg g.edge.no-return > polygon {{ fill: var(--sk-pivot, {light['pivot']}); "
                 f"stroke: var(--sk-pivot, {light['pivot']}); }}")
    rules.append(f".sagakit-svg g.edge.no-return > text {{ fill: var(--sk-pivot, {light['pivot']}); font-weight: bold; }}")
    return "<style>\n" + "\n".join(rules) + "\n</style>"


def theme_css(scope: str = ".sagakit-root") -> str:
    """The CSS variables of every state and part, for the view: light under
    ``<scope>[data-sk-theme="light"]``, dark under ``<scope>[data-sk-theme="dark"]``."""
    return "\n".join(f'{scope}[data-sk-theme="{theme}"] {{ ' + " ".join(_declarations(theme)) + " }"
                     for theme in ("light", "dark"))


def _declarations(theme: str) -> list[str]:
    # Every state's variables and the parts' (the page's own colours come from elsewhere).
    declarations = [f"--sk-{name}: {value};" for name, value in _CHROME[theme].items() if name not in _PAGE]
    for look in LOOKS:
        shade = look.light if theme == "light" else look.dark
        declarations += [f"--sk-{look.state}-fill: {shade.fill};", f"--sk-{look.state}-stroke: {shade.stroke};",
                         f"--sk-{look.state}-text: {shade.text};", f"--sk-{look.state}-edge: {shade.edge};"]
    return declarations


def _page_declarations(theme: str) -> str:
    return " ".join(f"--sk-{name}: {value.format(_CHROME[theme][name])};" for name, value in _PAGE.items())


def legend(pivot: bool = True) -> list[list[str]]:
    """The legend's entries, in order: ``[state, label, meaning]``.

    Args:
        pivot: the saga has a pivot (without one, ``stuck`` cannot happen and is not listed).
    """
    return [[look.state, look.label, look.meaning] for look in LOOKS
            if look.in_legend and (pivot or not look.needs_pivot)]
