"""An interleaving shown: the table of its actions and the timeline with one lane per run.

Values read and written are shown through the runs' redactors: a value under a sensitive key
(``card``, ``password`` ...) is masked, and the secrets the runs carried are scrubbed from
every text, as everywhere else sagakit writes.
"""

from __future__ import annotations

import html
import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sagakit.explore._world import ABSENT, KEYS, Access
from sagakit.redaction import Redactor
from sagakit.runs import Run, run_redactor

if TYPE_CHECKING:
    import pandas as pd

    from sagakit.explore._anomaly import Anomaly
    from sagakit.explore._interleave import Performed

__all__ = ["Shown", "Timeline", "table", "timeline"]

_VALUE_LIMIT = 60


class Shown:
    """How values are shown for a set of runs: masked under sensitive keys, secrets scrubbed."""

    __slots__ = ("redactors", "secrets")

    def __init__(self, runs: Sequence[Run], data: Sequence[Any] = ()) -> None:
        redactors: list[Redactor] = []
        for run in runs:
            redactor = run_redactor(run)
            if redactor not in redactors:
                redactors.append(redactor)
        if not redactors:
            from sagakit.redaction import default_redactor

            redactors.append(default_redactor())
        self.redactors = tuple(redactors)
        found: set[str] = set()
        for redactor in redactors:
            for run in runs:
                found |= redactor.payload_secrets(event.data for event in run.events)
            found |= redactor.secrets(*data)
        self.secrets = frozenset(found)

    def text(self, value: str) -> str:
        for redactor in self.redactors:
            value = redactor.scrub(value, self.secrets)
        return value

    def value(self, value: Any, key: Any = None) -> str:
        """``value`` (found under world key ``key``) as shown: masked, scrubbed, cut short."""
        if value is ABSENT:
            return "<absent>"
        if key is not None and key is not KEYS and any(r.is_sensitive(key) for r in self.redactors):
            return self.redactors[0].mask
        shown = value
        for redactor in self.redactors:
            shown = redactor.redact(shown)
        text = self.text(repr(shown))
        return text if len(text) <= _VALUE_LIMIT else text[: _VALUE_LIMIT - 3] + "..."

    def key(self, key: Any) -> str:
        return "<keys>" if key is KEYS else self.text(repr(key) if not isinstance(key, str) else key)

    def accesses(self, accesses: Sequence[Access]) -> str:
        """``key=value, ...`` for the accesses of one kind of one action (last value per key)."""
        last: dict[str, str] = {}
        for access in accesses:
            last[self.key(access.key)] = self.value(access.value, access.key)
        return ", ".join(f"{key}={value}" for key, value in last.items())


def table(
    actions: Sequence[Performed], accesses: Sequence[Access], labels: Sequence[str], shown: Shown,
    involved: Sequence[int] = (),
) -> pd.DataFrame:
    """One row per action: ``action`` (its position), ``run``, ``saga``, ``step``, ``phase``,
    ``status``, ``attempts``, ``reads`` and ``writes`` (``key=value``, shown redacted),
    ``anomaly`` (whether it takes part in the anomaly)."""
    import pandas as pd

    per_action: dict[int, tuple[list[Access], list[Access]]] = {}
    for access in accesses:
        reads, writes = per_action.setdefault(access.action, ([], []))
        (reads if access.kind == "read" else writes).append(access)
    empty: tuple[list[Access], list[Access]] = ([], [])
    marked = set(involved)
    return pd.DataFrame(
        {
            "action": pd.array([a.position for a in actions], dtype="int64"),
            "run": pd.array([a.run for a in actions], dtype="int64"),
            "saga": pd.array([labels[a.run] for a in actions], dtype="string"),
            "step": pd.array([a.step for a in actions], dtype="string"),
            "phase": pd.array([a.phase for a in actions], dtype="string"),
            "status": pd.array([a.status for a in actions], dtype="string"),
            "attempts": pd.array([a.attempts for a in actions], dtype="int64"),
            "reads": pd.array([shown.accesses(per_action.get(a.position, empty)[0]) for a in actions],
                              dtype="string"),
            "writes": pd.array([shown.accesses(per_action.get(a.position, empty)[1]) for a in actions],
                               dtype="string"),
            "anomaly": pd.array([a.position in marked for a in actions], dtype="bool"),
        }
    )


_STATUS_COLOURS = {
    "succeeded": ("#dcfce7", "#166534"),
    "failed": ("#fee2e2", "#991b1b"),
    "cancelled": ("#e5e7eb", "#374151"),
}


class Timeline:
    """An interleaving drawn: one lane per run, one box per action in order, the actions that
    conflict (touch a key one of them writes) joined by grey lines and the anomaly's by red ones.

    In a notebook it displays as SVG (``text/html``), with a text form (``text/plain``,
    :meth:`to_text`); :attr:`svg` is the drawing alone.
    """

    __slots__ = ("svg", "text")

    def __init__(self, svg: str, text: str) -> None:
        self.svg = svg
        self.text = text

    def to_html(self) -> str:
        return f'<div class="sagakit-timeline-view">{self.svg}</div>'

    def to_text(self) -> str:
        return self.text

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {"text/html": self.to_html(), "text/plain": self.text}

    def __repr__(self) -> str:
        return self.text


def timeline(
    actions: Sequence[Performed], accesses: Sequence[Access], labels: Sequence[str], shown: Shown,
    anomaly: Anomaly | None, conflicts: Sequence[tuple[int, int]],
) -> Timeline:
    """The :class:`Timeline` of an interleaving (``conflicts``: pairs of positions to join)."""
    esc = html.escape
    lane, step_w, left, top, box_h, box_w = 46, 118, 150, 34, 30, 104
    runs = len(labels)
    width = left + step_w * max(len(actions), 1) + 20
    height = top + lane * runs + 64
    per_action: dict[int, tuple[list[Access], list[Access]]] = {}
    for access in accesses:
        reads, writes = per_action.setdefault(access.action, ([], []))
        (reads if access.kind == "read" else writes).append(access)

    def centre(action: Performed) -> tuple[float, float]:
        return left + step_w * action.position + box_w / 2, top + lane * action.run + box_h / 2

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="sagakit-timeline" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        "<style>.sagakit-timeline text{fill:var(--jp-ui-font-color1,#111827)}"
        ".sagakit-timeline .lane-label{font-weight:600}</style>",
    ]
    for position in range(len(actions)):
        x = left + step_w * position + box_w / 2
        parts.append(f'<text x="{x}" y="16" text-anchor="middle" class="position">{position}</text>')
    for run, label in enumerate(labels):
        y = top + lane * run + box_h / 2
        parts.append(f'<line x1="{left - 6}" y1="{y}" x2="{width - 10}" y2="{y}" stroke="#d1d5db" '
                     f'stroke-dasharray="2,3" class="lane lane-{run}"/>')
        parts.append(f'<text x="8" y="{y + 4}" class="lane-label">{esc(label)}</text>')
    involved = set(anomaly.actions) if anomaly is not None else set()
    for first, second in conflicts:
        if first in involved and second in involved:
            continue
        (x1, y1), (x2, y2) = centre(actions[first]), centre(actions[second])
        parts.append(f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#9ca3af" stroke-width="1.2" '
                     f'class="conflict" data-actions="{first} {second}"/>')
    if anomaly is not None:
        chain = sorted(anomaly.actions)
        for first, second in itertools.pairwise(chain):
            (x1, y1), (x2, y2) = centre(actions[first]), centre(actions[second])
            parts.append(f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#dc2626" stroke-width="2.5" '
                         f'class="conflict anomaly" data-actions="{first} {second}"/>')
    for action in actions:
        x = left + step_w * action.position
        y = top + lane * action.run
        fill, stroke = _STATUS_COLOURS.get(action.status, _STATUS_COLOURS["cancelled"])
        reads, writes = per_action.get(action.position, ([], []))
        tip = [f"{action.position}: run {action.run} {action.step} ({action.phase}), {action.status}"
               + (f", {action.attempts} attempts" if action.attempts > 1 else "")]
        if reads:
            tip.append("read " + shown.accesses(reads))
        if writes:
            tip.append("wrote " + shown.accesses(writes))
        classes = f"action run-{action.run} phase-{action.phase} status-{action.status}"
        if action.position in involved:
            classes += " in-anomaly"
        dash = ' stroke-dasharray="4,2"' if action.phase == "compensate" else ""
        width_line = "2.5" if action.position in involved else "1.2"
        label = ("↩ " if action.phase == "compensate" else "") + action.step
        if len(label) > 16:
            label = label[:15] + "…"
        parts.append(
            f'<g class="{classes}" data-position="{action.position}"><title>{esc(chr(10).join(tip))}</title>'
            f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="5" fill="{fill}" '
            f'stroke="{"#dc2626" if action.position in involved else stroke}" stroke-width="{width_line}"{dash}/>'
            f'<text x="{x + box_w / 2}" y="{y + box_h / 2 + 4}" text-anchor="middle" style="fill:{stroke}">'
            f"{esc(label)}</text></g>"
        )
    if anomaly is not None:
        parts.append(f'<text x="8" y="{height - 18}" class="anomaly-caption" style="fill:#b91c1c;font-weight:600">'
                     f"{esc(shown.text(anomaly.kind + ' on ' + shown.key(anomaly.key) if anomaly.key is not None else anomaly.kind))}"
                     "</text>")
    parts.append("</svg>")
    return Timeline("".join(parts), _text(actions, labels, anomaly, shown))


def _text(actions: Sequence[Performed], labels: Sequence[str], anomaly: Anomaly | None, shown: Shown) -> str:
    involved = set(anomaly.actions) if anomaly is not None else set()
    cells = []
    for action in actions:
        name = ("undo " if action.phase == "compensate" else "") + action.step
        if action.status != "succeeded":
            name += f" ({action.status})"
        if action.position in involved:
            name += " *"
        cells.append(name)
    width = max([len(cell) for cell in cells] + [3])
    head = max(len(label) for label in labels) if labels else 3
    lines = [" " * head + "  " + "  ".join(str(a.position).ljust(width) for a in actions).rstrip()]
    for run, label in enumerate(labels):
        row = [cells[a.position].ljust(width) if a.run == run else ".".ljust(width) for a in actions]
        lines.append(label.ljust(head) + "  " + "  ".join(row).rstrip())
    if anomaly is not None:
        lines.append(shown.text(f"* {anomaly.kind}: {anomaly.explanation}"))
    return "\n".join(lines)
