"""The Lab's panels as plain data: the status line, the history rows, the charts and a comparison.

Like :mod:`sagakit.notebook._inspect`, everything here is JSON-ready: the ES module draws it
with text nodes. A status is ``{"level": ..., "text": [[kind, text], ...], "hints": [...]}``
where ``kind`` is ``""`` (plain) or ``"code"`` (a step name), and ``level`` one of
``ready``, ``running``, ``ok``, ``warn``, ``error``, ``stuck``, ``stopped`` and ``invalid``;
``resume`` (when present) is the history's number of the run the line is about, which can be
resumed from the Lab's journal (the view offers a Resume button).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sagakit.events import END_KINDS, EventKind
from sagakit.notebook.diagram_state import STATUS_WORDS, Outcome, error_summary, outcome

if TYPE_CHECKING:
    from sagakit.compare import RunComparison
    from sagakit.runs import Run

__all__ = ["NO_JOURNAL_HINT", "RESUME_HINTS", "batch_status", "chart_data", "compare_data", "history_rows",
           "message_status", "run_status"]

_K = EventKind


# -- status ---------------------------------------------------------------------------------


def message_status(level: str, text: str, hints: Iterable[str] = ()) -> dict[str, Any]:
    """A status of one plain sentence."""
    return {"level": level, "text": [["", text]], "hints": list(hints)}


def _outcome_parts(found: Outcome) -> list[list[str]]:
    parts: list[list[str]] = []
    again = [["", f" · {found.resumed_words()}"]] if found.resumed else []
    if found.status == "stuck":
        if found.failed_step:
            parts += [["", "⚠ stuck at "], ["code", found.failed_step], ["", found.attempts_words()]]
        else:
            parts.append(["", "⚠ stuck"])
        if found.error:
            parts.append(["", f" ({found.error})"])
        parts.append(["", "; nothing undone"])
        if found.pivot:
            parts += [["", " (past the pivot "], ["code", found.pivot], ["", ")"]]
        return [*parts, *again, ["", f" · {found.took_words()}"]]
    if found.status == "cancelled":
        if found.failed_step:
            parts += [["", "■ stopped while "], ["code", found.failed_step], ["", " ran"]]
        else:
            parts.append(["", "■ stopped"])
    else:
        parts.append(["", f"✖ {found.words}"])
        if found.failed_step:
            parts += [["", ": "], ["code", found.failed_step], ["", " failed"]]
        if found.error:
            parts.append(["", f" ({found.error})"])
    for phrase in found.rollback_parts():
        parts.append(["", "; " + phrase])
    return [*parts, *again, ["", f" · {found.took_words()}"]]


#: What the status line adds about a run that needs an operator.
RESUME_HINTS = {
    "stuck": "fix the cause (the step's error above), then Resume: the run retries {step} and goes on forward; "
             "nothing that succeeded runs again",
    "compensation_failed": "fix the cause, then Resume: the run retries the failed compensation and goes on with "
                           "the rollback; nothing that succeeded runs again",
}

#: What the status line says of a run that needs an operator when the Lab has no journal.
NO_JOURNAL_HINT = ("only a run recorded in a journal can be resumed: give the Lab one "
                   "(saga.lab(journal=\"runs.db\")) and run again")


def run_status(run: Run, hints: Iterable[str] = (), *, resume: int = 0, journal: bool = False) -> dict[str, Any]:
    """The status line after ``run``: what failed, what the rollback did, what is left.

    Args:
        run: the run.
        hints: the fault plan's hints.
        resume: the run's number in the history when it can be resumed from the Lab's journal.
        journal: the Lab has a journal (else a run that needs an operator is told how to get one).
    """
    hints = list(hints)
    if run.status == "completed":
        found = outcome(run)
        text = f"✔ {found.sentence()}"
        return {"level": "ok", "text": [["", text]], "hints": hints}
    found = outcome(run)
    level = {"cancelled": "stopped", "compensated": "warn", "stuck": "stuck"}.get(run.status, "error")
    status: dict[str, Any] = {"level": level, "text": _outcome_parts(found), "hints": hints}
    if run.status in RESUME_HINTS:
        if resume:
            status["resume"] = resume
            hints.append(RESUME_HINTS[run.status].format(step=run.failed_step or "its pending step"))
        elif not journal:
            hints.append(NO_JOURNAL_HINT)
    return status


def batch_status(runs: Sequence[Run], hints: Iterable[str] = ()) -> dict[str, Any]:
    """The status line after Run × N: the totals by outcome, where runs failed, and the last run."""
    if len(runs) == 1:
        return run_status(runs[0], hints)
    counts: dict[str, int] = {}
    failed_at: dict[str, int] = {}
    for run in runs:
        counts[run.status] = counts.get(run.status, 0) + 1
        if run.status != "completed" and run.failed_step is not None:
            failed_at[run.failed_step] = failed_at.get(run.failed_step, 0) + 1
    order = ("completed", "compensated", "compensation_failed", "stuck", "cancelled")
    totals = ", ".join(f"{counts[status]} {STATUS_WORDS[status]}" for status in order if counts.get(status))
    parts: list[list[str]] = [["", f"{len(runs)} runs: {totals}"]]
    if failed_at:
        parts.append(["", " · failed at "])
        for number, (step, count) in enumerate(sorted(failed_at.items(), key=lambda item: -item[1])):
            if number:
                parts.append(["", ", "])
            parts += [["code", step], ["", f" ×{count}"]]
    durations = [run.duration_ms for run in runs]
    parts.append(["", f" · median {statistics.median(durations):.1f} ms"])
    level = "ok" if counts.get("completed") == len(runs) else (
        "error" if counts.get("compensation_failed") else "stuck" if counts.get("stuck") else "warn")
    return {"level": level, "text": parts, "hints": list(hints)}


# -- history ----------------------------------------------------------------------------------


def history_rows(runs: Sequence[Run], first_number: int, journal_ids: frozenset[str] = frozenset(),
                 resumable: Callable[[Run], bool] | None = None) -> list[list[Any]]:
    """The rows of the history table, newest first: number, status, failed step, error, ms,
    backend, fault, when it started (``HH:MM:SS``, local time), where it comes from
    (``journal`` for a run read from a journal, else ``""``), whether it can be resumed (by
    ``resumable``) and how often it was resumed."""
    rows: list[list[Any]] = []
    for number, run in zip(range(first_number + len(runs) - 1, first_number - 1, -1), reversed(runs), strict=True):
        error = run.original_error if run.original_error is not None else run.error
        message = "" if error is None else error_summary(error, run)
        if len(message) > 90:
            message = message[:87] + "..."
        when = time.strftime("%H:%M:%S", time.localtime(run.started_at))
        resumed = int((run.info or {}).get("resumed", 0) or 0)
        rows.append([number, run.status, run.failed_step or "", message, f"{run.duration_ms:.1f}", run.backend,
                     bool(run.injected), when, "journal" if run.run_id in journal_ids else "",
                     bool(resumable(run)) if resumable is not None else False, resumed])
    return rows


# -- charts -----------------------------------------------------------------------------------


#: The state a timeline bar is drawn in (the diagram's colours): by the attempt's phase and status.
_BAR_STATES = {
    ("forward", "succeeded"): "succeeded",
    ("forward", "failed"): "failed",
    ("forward", "cancelled"): "cancelled",
    ("compensate", "succeeded"): "compensated",
    ("compensate", "failed"): "compensation-failed",
    ("compensate", "cancelled"): "compensation-failed",
}


def _stuck_steps(run: Run) -> set[str]:
    # In a stuck run, the steps whose last attempt did not succeed are the ones it waits at
    # (the diagram draws them stuck): their failed attempts are drawn stuck, not failed.
    if run.status != "stuck":
        return set()
    last: dict[str, str | None] = {}
    for event in run.events:
        if event.phase == "forward" and event.step is not None and event.kind in END_KINDS:
            last[event.step] = event.status
    return {step for step, status in last.items() if status != "succeeded"}


def _timeline(run: Run, order: Sequence[str]) -> dict[str, Any]:
    bars = []
    seen: list[str] = []
    start = run.started_at
    stuck = _stuck_steps(run)
    for event in run.events:
        if event.kind not in END_KINDS or event.step is None or event.kind is _K.COMPENSATION_SKIPPED:
            continue
        began = event.started_at if event.started_at is not None else event.at
        error = "" if event.error is None else error_summary(event.error, run)
        state = _BAR_STATES.get((event.phase or "", event.status or ""), "pending")
        if event.step in stuck and event.phase == "forward" and state in ("failed", "cancelled"):
            state = "stuck"
        bars.append([event.step, event.phase, round((began - start) * 1000.0, 3), round((event.at - start) * 1000.0, 3),
                     event.status or "", event.attempt, bool(event.injected), error, state])
        if event.step not in seen:
            seen.append(event.step)
    rows = [name for name in order if name in seen] + [name for name in seen if name not in order]
    return {"rows": rows, "bars": bars, "total": round(run.duration_ms, 3)}


def _durations(runs: Sequence[Run], shown: Run | None, order: Sequence[str]) -> dict[str, Any]:
    values: dict[str, list[float]] = {}
    mine: dict[str, float] = {}
    for run in runs:
        for event in run.events:
            if (event.phase == "compensate" and event.duration_ms is not None and event.step is not None
                    and event.kind is not _K.COMPENSATION_SKIPPED and event.kind in END_KINDS):
                values.setdefault(event.step, []).append(event.duration_ms)
                if run is shown:
                    mine[event.step] = event.duration_ms
    steps = []
    for name in [*[n for n in order if n in values], *[n for n in values if n not in order]]:
        found = sorted(values[name])
        p95 = found[min(len(found) - 1, round(0.95 * (len(found) - 1)))]
        steps.append([name, len(found), round(statistics.median(found), 3), round(p95, 3), round(found[-1], 3),
                      [round(value, 3) for value in values[name][-200:]], mine.get(name)])
    return {"steps": steps, "runs": len(runs)}


def chart_data(shown: Run | None, runs: Sequence[Run], order: Sequence[str], label: str) -> dict[str, Any]:
    """What the charts draw: the timeline of the run shown, and the compensation durations of
    every step across ``runs`` (the shown run's own marked).

    A timeline bar is ``[step, phase, start ms, end ms, status, attempt, injected, error, state]``,
    ``state`` the diagram's state its colour is (a stuck run's waiting step: ``stuck``).

    Args:
        shown: the run the diagram shows (none: no timeline).
        runs: the runs to summarise (the newest few hundred of the history).
        order: the saga's steps, in order (the rows of both charts).
        label: the title of the timeline (``run 3: rolled back``).
    """
    return {
        "label": label,
        "timeline": _timeline(shown, order) if shown is not None else None,
        "durations": _durations(runs[-500:], shown, order),
    }


# -- comparing two runs ------------------------------------------------------------------------


def compare_data(comparison: RunComparison, numbers: tuple[int, int], states: tuple[dict[str, Any], dict[str, Any]]
                 ) -> dict[str, Any]:
    """A comparison as the view draws it: both runs' diagrams (``states``, wire form), the first
    divergence and the frame's rows (every value as text)."""
    import pandas as pd

    frame = comparison.frame
    columns = [str(column) for column in frame.columns]
    rows = [["" if pd.isna(value) else f"{value:.2f}" if isinstance(value, float) else str(value) for value in row]
            for row in frame.itertuples(index=False, name=None)]
    first = comparison.first_divergence
    runs = (comparison.a, comparison.b)
    return {
        "runs": [{"number": number, "status": STATUS_WORDS.get(run.status, run.status), "id": run.run_id,
                  "state": state} for number, run, state in zip(numbers, runs, states, strict=True)],
        "first": None if first is None else {"step": first.step, "phase": first.phase, "what": first.what,
                                             "text": str(first)},
        "columns": columns,
        "rows": rows,
    }
