"""How an exploration shows itself: the steps-by-modes matrix (and, for a saga with retriable
steps, the table of their first attempt failing only) as text and HTML, with its notes."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import TYPE_CHECKING

from sagakit.explore._scenario import TRANSIENT_MODES, ScenarioResult
from sagakit.explore._shared import kind_labels, steps_by_modes_text
from sagakit.runs import error_message

if TYPE_CHECKING:
    from sagakit.explore._exploration import Exploration

__all__ = ["COLOURS", "matrix_html", "matrix_text", "outcome_of", "summary", "tooltip"]


#: A matrix cell's background and text colours, by outcome.
COLOURS = {
    "completed": ("#dbeafe", "#1e3a8a"),
    "compensated": ("#dcfce7", "#14532d"),
    "cancelled": ("#e5e7eb", "#374151"),
    "stuck": ("#ede9fe", "#5b21b6"),
    "compensation_failed": ("#fef3c7", "#78350f"),
    "violated": ("#fecaca", "#7f1d1d"),
    "n/a": ("#f3f4f6", "#9ca3af"),
}


def summary(exploration: Exploration) -> str:
    """The exploration in one line: scenarios, violations and (with a pivot) stuck runs."""
    total = len(exploration.results)
    text = f"Exploration of saga {exploration.saga.name!r}: {total} scenario{'s' if total != 1 else ''}"
    if exploration.checked:
        bad = sum(1 for outcome in exploration.results if outcome.holds is False)
        text += f", {bad} violat{'es' if bad == 1 else 'e'} the invariant"
    if exploration.saga.pivot is not None:
        stuck = sum(1 for outcome in exploration.results if outcome.run.status == "stuck")
        text += f", {stuck} end{'s' if stuck == 1 else ''} stuck"
    return text


def matrix_text(exploration: Exploration) -> str:
    """The matrix as plain text (and, for a saga with retriable steps, the outcomes when only
    their first attempt fails), with its notes."""
    matrix = exploration.matrix()
    labels = kind_labels(exploration.saga)
    table = steps_by_modes_text(list(exploration.saga.step_names), exploration.modes,
                                lambda name, mode: str(matrix.loc[name, mode]), "compensation_failed", labels)
    lines = [summary(exploration), "", *table]
    retried = exploration.matrix(transient=True)
    if len(retried.index) and len(retried.columns):
        lines += ["", "retriable steps failing their first attempt only (retried):"]
        lines += steps_by_modes_text(list(retried.index), list(retried.columns),
                                     lambda name, mode: str(retried.loc[name, mode]), "compensation_failed", labels)
    lines.extend(_footnotes(exploration))
    return "\n".join(lines)


def _footnotes(exploration: Exploration) -> list[str]:
    notes = []
    baseline = exploration.results[0] if exploration.results and exploration.results[0].scenario.kind == "baseline" else None
    if baseline is not None:
        notes.append(f"no faults: {outcome_of(baseline)}")
    pairs = [o for o in exploration.results if o.scenario.kind == "pair"]
    if pairs:
        bad = [o for o in pairs if o.holds is False]
        notes.append(f"pairs: {len(pairs)} scenarios, {len(bad)} violate the invariant")
        notes.extend(f"  {o.scenario.label}: {o.violation}" for o in bad[:10])
        if len(bad) > 10:
            notes.append(f"  ... and {len(bad) - 10} more (see .violations)")
    for o in exploration.results:
        if o.holds is False and o.scenario.kind in ("baseline", "single", "transient"):
            notes.append(f"violated by {o.scenario.label}: {o.violation}")
    drawn = [o for o in exploration.results if o.scenario.kind == "random"]
    if exploration.search == "random":
        violating = sum(1 for o in drawn if o.holds is False)
        notes.append(f"random: {len(drawn)} scenarios (seed {exploration.seed}), {violating} violate the invariant")
    stuck = [o for o in exploration.results if o.run.status == "stuck"]
    if stuck:
        steps = sorted({str(o.run.failed_step) for o in stuck}, key=lambda step: _position(exploration, step))
        notes.append(f"stuck: {len(stuck)} scenario{'s' if len(stuck) != 1 else ''}, at "
                     + ", ".join(repr(step) for step in steps) + " (nothing compensated; see .stuck)")
    for found in exploration.counterexamples:
        notes.append(f"minimal counterexample: {found.scenario.label}: {found.violation}")
    return notes


def _position(exploration: Exploration, step: str) -> int:
    names = exploration.saga.step_names
    return names.index(step) if step in names else len(names)


def matrix_html(exploration: Exploration, missing: Mapping[tuple[str, str], str]) -> str:
    """The matrix as an HTML table, coloured by outcome, with details on hover (and, for a
    saga with retriable steps, a second table: their first attempt failing only)."""
    esc = html.escape
    parts = [
        f'<div class="sagakit-exploration" data-saga="{esc(exploration.saga.name)}">',
        f'<div style="font-weight:600;margin:4px 0;font-family:sans-serif">{esc(summary(exploration))}</div>',
    ]
    parts.append(_html_table(exploration, missing, "single", list(exploration.saga.step_names), list(exploration.modes), "cell"))
    retriable = [member.name for member in exploration.saga.steps if member.kind == "retriable"]
    transient_modes = [mode for mode in exploration.modes if mode in TRANSIENT_MODES]
    if retriable and transient_modes:
        parts.append('<div style="margin:6px 0 2px 0;font-family:sans-serif;font-size:12px">retriable steps failing '
                     "their first attempt only (retried):</div>")
        parts.append(_html_table(exploration, missing, "transient", retriable, transient_modes, "transient"))
    notes = _footnotes(exploration)
    if notes:
        parts.append('<pre style="font-size:11px;margin:4px 0">' + esc("\n".join(notes)) + "</pre>")
    parts.append("</div>")
    return "".join(parts)


def _html_table(exploration: Exploration, missing: Mapping[tuple[str, str], str], kind: str, names: list[str],
                modes: list[str], prefix: str) -> str:
    esc = html.escape
    cells = {(o.scenario.step, o.scenario.mode): o for o in exploration.results if o.scenario.kind == kind}
    kinds = {member.name: member.kind for member in exploration.saga.steps}
    parts = [
        '<table style="border-collapse:collapse;font-family:monospace;font-size:12px">',
        '<thead><tr><th style="text-align:left;padding:4px 8px">step</th>',
    ]
    parts.extend(f'<th style="padding:4px 8px">{esc(mode)}</th>' for mode in modes)
    parts.append("</tr></thead><tbody>")
    for name in names:
        kind = kinds.get(name, "compensatable")
        marker = (f' <span class="sagakit-kind kind-{esc(kind)}" style="font-weight:normal;color:#6b7280">'
                  f"{esc(kind)}</span>") if kind != "compensatable" else ""
        parts.append(f'<tr><th style="text-align:left;padding:4px 8px">{esc(name)}{marker}</th>')
        for mode in modes:
            found = cells.get((name, mode))
            if found is None:
                value, tip, text = "n/a", missing.get((name, mode), "not explored"), "n/a"
            else:
                value = outcome_of(found)
                tip = tooltip(found)
                text = value.replace("_", " ") if found.run.injected else f"{value.replace('_', ' ')} (not reached)"
            background, colour = COLOURS.get(value, COLOURS["n/a"])
            parts.append(
                f'<td id="{prefix}-{esc(name)}-{esc(mode)}" class="sagakit-cell outcome-{esc(value)}" '
                f'title="{esc(tip)}" style="background:{background};color:{colour};padding:4px 8px;'
                f'border:1px solid #fff;text-align:center">{esc(text)}</td>'
            )
        parts.append("</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def outcome_of(outcome: ScenarioResult) -> str:
    """``violated`` or the run's status."""
    return "violated" if outcome.holds is False else outcome.run.status


def tooltip(outcome: ScenarioResult) -> str:
    """What a matrix cell says on hover."""
    run = outcome.run
    lines = [f"faults: {outcome.scenario.label}", f"status: {run.status}"]
    if run.status == "stuck":
        lines.append(f"stuck at: {run.failed_step} (retried forward until its policy ran out; nothing compensated)")
    elif run.failed_step is not None:
        lines.append(f"failed step: {run.failed_step}")
    lines.append("compensated: " + (", ".join(run.compensated_steps) or "nothing"))
    if run.error is not None:
        lines.append(f"error: {type(run.error).__name__}: {error_message(run.error, run=run)}")
    if outcome.violation is not None:
        lines.append(f"invariant violated: {outcome.violation}")
    if not run.injected:
        lines.append("the fault never fired: the saga stopped before reaching it")
    return "\n".join(lines)
