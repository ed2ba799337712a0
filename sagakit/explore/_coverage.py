"""Coverage of a saga's failure points by an exploration: a DataFrame, text, and the diagram.

A *failure point* is a step under a forward mode (``fail``, ``fail_after``, ``cancel``) or
a compensation under a compensation mode (``fail_compensation``, ``cancel_compensation``).
Steps without a compensation (pivot, retriable and read-only steps among them) have no
compensation points. A point is *violated* when it took effect in a violating scenario that no
smaller violating schedule explains (a scenario whose schedule contains a violating one, or a
minimal counterexample, is not blamed on its extra faults); *stuck* when, violating nothing, it
took effect in a scenario whose run ended stuck at its step (a step after the pivot ran out of its forward
policy: the saga needs an operator there, which is an outcome to know of, not a violation);
*explored* when its fault took effect in some scenario (rolled back, or retried to completion);
*never reached* when scenarios planned it but the saga always stopped (or the dice fell) before
it fired; and *not explored* when no scenario planned it.

The overlay re-colours the saga's own diagram (the SVG of
:func:`sagakit.notebook.diagram.saga_svg`, through its stable ``step-<name>`` and
``undo-<name>`` element ids): nothing here lays a diagram out.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sagakit.explore._shared import kind_labels, steps_by_modes_text
from sagakit.faults import COMPENSATION_MODES

if TYPE_CHECKING:
    import pandas as pd

    from sagakit.explore._scenario import ScenarioResult
    from sagakit.saga import Saga

__all__ = ["COVERAGE_STATUSES", "Coverage"]

#: What a failure point can come to, worst first.
COVERAGE_STATUSES: tuple[str, ...] = ("violated", "stuck", "explored", "never reached", "not explored")

_COLOURS = {
    "violated": ("#fecaca", "#b91c1c"),
    "stuck": ("#ede9fe", "#6d28d9"),
    "explored": ("#dcfce7", "#15803d"),
    "never reached": ("#fef3c7", "#b45309"),
    "not explored": ("#f3f4f6", "#9ca3af"),
}
#: Text on the coverage fills (all light, whatever the page's theme).
_COVERAGE_INK = "#1f2933"
# Graphviz writes the ids' hyphen as an entity.
_ELEMENT = re.compile(r'<g id="(step|undo)(-|&#45;)([^"]*)" class="([^"]*)">')


def _overlay_style() -> str:
    # A step's box is its node's first shape (a rounded box is a path; a pivot's second
    # outline, drawn after it, stays unfilled); its text is dark on the light coverage fills
    # even where the diagram takes a dark theme. An undo edge is its path and arrowhead.
    rules = []
    for status, (fill, stroke) in _COLOURS.items():
        css = "coverage-" + status.replace(" ", "-")
        box = ", ".join(f".sagakit-svg g.step.{css} > {shape}:first-of-type" for shape in ("path", "polygon", "ellipse"))
        rules += [
            f"{box} {{ fill: {fill} !important; stroke: {stroke} !important; }}",
            f".sagakit-svg g.step.{css} > text {{ fill: {_COVERAGE_INK} !important; }}",
            f".sagakit-svg g.undo.{css} > path {{ stroke: {stroke} !important; }}",
            f".sagakit-svg g.undo.{css} > polygon {{ fill: {stroke} !important; stroke: {stroke} !important; }}",
        ]
    return "\n".join(rules)


class Coverage:
    """Which failure points an exploration exercised.

    Attributes:
        saga: the explored saga.
        modes: the explored modes.
        frame: one row per failure point: ``step``, ``kind`` (the step's kind:
            ``compensatable``, ``pivot``, ``retriable``, ``readonly``), ``phase`` (``forward``
            or ``compensate``), ``mode``, ``scheduled`` (scenarios planning it), ``fired``
            (scenarios where it took effect), ``violations`` (of those, how many violated the
            invariant, not counting those a smaller violating schedule explains), ``stuck``
            (of those, how many ended stuck at this step), ``completed`` (of those, how many still
            completed: retried to completion past the pivot, or carried through a
            cancellation) and ``status`` (see :data:`COVERAGE_STATUSES`).
    """

    __slots__ = ("frame", "modes", "saga")

    def __init__(
        self,
        saga: Saga,
        modes: Sequence[str],
        results: Sequence[ScenarioResult],
        minimal: Sequence[tuple[tuple[str, Any], ...]] = (),
    ) -> None:
        import pandas as pd

        self.saga = saga
        self.modes = tuple(modes)
        # Compared by step and mode: a flaky or delayed fault is explained by its plain form.
        violating = {frozenset((name, fault.mode) for name, fault in s) for s in minimal}
        violating |= {frozenset((n, f.mode) for n, f in r.scenario.faults) for r in results if r.holds is False}
        points: dict[tuple[str, str], list[int]] = {}
        kinds = {member.name: member.kind for member in saga.steps}
        for member in saga.steps:
            for mode in self.modes:
                if mode not in COMPENSATION_MODES or member.compensate is not None:
                    points[(member.name, mode)] = [0, 0, 0, 0, 0]
        for result in results:
            if not result.scenario.faults:
                continue
            fired = {(event.step, event.phase) for event in result.run.events if event.injected and event.step}
            schedule = frozenset((name, fault.mode) for name, fault in result.scenario.faults)
            # A violation that a smaller violating schedule explains is not blamed on its faults.
            blamed = result.holds is False and not any(other < schedule for other in violating)
            status = result.run.status
            for name, fault in result.scenario.faults:
                counts = points.setdefault((name, fault.mode), [0, 0, 0, 0, 0])
                counts[0] += 1
                if (name, fault.phase) in fired:
                    counts[1] += 1
                    counts[2] += blamed
                    # A stuck run is blamed on the step it is stuck at, not on other faults that fired.
                    counts[3] += status == "stuck" and name == result.run.failed_step
                    counts[4] += status == "completed"
        keys = list(points)
        tallies = [points[key] for key in keys]
        self.frame: pd.DataFrame = pd.DataFrame(
            {
                "step": pd.array([name for name, _ in keys], dtype="string"),
                "kind": pd.array([kinds.get(name, "compensatable") for name, _ in keys], dtype="string"),
                "phase": pd.array(
                    ["compensate" if mode in COMPENSATION_MODES else "forward" for _, mode in keys], dtype="string"
                ),
                "mode": pd.array([mode for _, mode in keys], dtype="string"),
                "scheduled": pd.array([c[0] for c in tallies], dtype="int64"),
                "fired": pd.array([c[1] for c in tallies], dtype="int64"),
                "violations": pd.array([c[2] for c in tallies], dtype="int64"),
                "stuck": pd.array([c[3] for c in tallies], dtype="int64"),
                "completed": pd.array([c[4] for c in tallies], dtype="int64"),
                "status": pd.array([_status(*c[:4]) for c in tallies], dtype="string"),
            }
        )

    # -- reading it ---------------------------------------------------------------------

    def status(self, step: str, mode: str) -> str:
        """The status of failure point ``step`` x ``mode`` (``n/a`` where it cannot exist)."""
        frame = self.frame
        found = frame[(frame["step"] == step) & (frame["mode"] == mode)]
        return "n/a" if found.empty else str(found["status"].iloc[0])

    def counts(self) -> dict[str, int]:
        """How many failure points have each status."""
        values = self.frame["status"].value_counts()
        return {status: int(values.get(status, 0)) for status in COVERAGE_STATUSES}

    def _worst(self, step: str, phase: str) -> str | None:
        frame = self.frame
        statuses = set(frame[(frame["step"] == step) & (frame["phase"] == phase)]["status"])
        return next((status for status in COVERAGE_STATUSES if status in statuses), None)

    # -- display ------------------------------------------------------------------------

    def summary(self) -> str:
        counts = self.counts()
        total = len(self.frame)
        reached = counts["violated"] + counts["stuck"] + counts["explored"]
        stuck = f", {counts['stuck']} left the run stuck" if counts["stuck"] else ""
        return (
            f"Coverage of saga {self.saga.name!r}: {reached} of {total} failure points exercised "
            f"({counts['violated']} violated{stuck}), {counts['never reached']} never reached, "
            f"{counts['not explored']} not explored"
        )

    def to_text(self) -> str:
        """A steps-by-modes table of statuses (``VIOLATED`` in capitals, ``-`` where the
        point cannot exist), for a terminal."""
        def cell(name: str, mode: str) -> str:
            value = self.status(name, mode)
            return "-" if value == "n/a" else value

        table = steps_by_modes_text(list(self.saga.step_names), self.modes, cell, "not explored",
                                    kind_labels(self.saga))
        return "\n".join([self.summary(), "", *table])

    def to_svg(self) -> str | None:
        """The saga's diagram with each step coloured by the worst status of its forward
        points and each compensation edge by its compensation points (classes
        ``coverage-<status>``, details on hover), or ``None`` without a renderer."""
        from sagakit.notebook.diagram import saga_svg

        svg = saga_svg(self.saga)
        if svg is None:
            return None

        def mark(match: re.Match[str]) -> str:
            kind, name, classes = match.group(1), match.group(3), match.group(4)
            worst = self._worst(html.unescape(name), "forward" if kind == "step" else "compensate")
            if worst is None:
                return match.group(0)
            frame = self.frame
            rows = frame[(frame["step"] == html.unescape(name)) & (frame["phase"] == ("forward" if kind == "step" else "compensate"))]
            tip = "\n".join(
                f"{mode}: {status} ({fired} of {scheduled} scenarios fired, {violations} violated"
                + (f", {stuck} stuck" if stuck else "") + ")"
                for mode, status, fired, scheduled, violations, stuck in zip(
                    rows["mode"].tolist(), rows["status"].tolist(), rows["fired"].tolist(), rows["scheduled"].tolist(),
                    rows["violations"].tolist(), rows["stuck"].tolist(), strict=True)
            )
            css = "coverage-" + worst.replace(" ", "-")
            return f'<g id="{kind}{match.group(2)}{name}" class="{classes} {css}"><title>{html.escape(tip)}</title>'

        marked = _ELEMENT.sub(mark, svg)
        head_end = marked.index(">", marked.index("<svg")) + 1
        return marked[:head_end] + f"<style>\n{_overlay_style()}\n</style>" + marked[head_end:]

    def to_html(self) -> str:
        """The overlay with a legend above it, or the text table without a renderer."""
        esc = html.escape
        svg = self.to_svg()
        legend = " ".join(
            f'<span style="background:{fill};color:{_COVERAGE_INK};padding:1px 6px;border:1px solid {stroke};'
            f'border-left-width:4px">{esc(status)}</span>'
            for status, (fill, stroke) in _COLOURS.items()
        )
        body = svg if svg is not None else f"<pre>{esc(self.to_text())}</pre>"
        # The summary and the key take the page's own text colour: they read in any theme.
        return (
            f'<div class="sagakit-coverage" data-saga="{esc(self.saga.name)}" style="font-family:sans-serif;font-size:12px">'
            f'<div style="font-weight:600;margin:4px 0">{esc(self.summary())}</div>'
            f'<div style="margin:4px 0">{legend} <span>steps: forward points; '
            f"dashed edges: compensation points</span></div>{body}</div>"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {"text/html": self.to_html(), "text/plain": self.to_text()}

    def __repr__(self) -> str:
        return f"<{self.summary()}>"


def _status(scheduled: int, fired: int, violations: int, stuck: int = 0) -> str:
    if violations:
        return "violated"
    if stuck:
        return "stuck"
    if fired:
        return "explored"
    return "never reached" if scheduled else "not explored"
