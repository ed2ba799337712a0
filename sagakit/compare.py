"""Comparing two runs of a saga: where they first went different ways, and everything side by side.

``run_a.compare(run_b)`` (or :func:`compare_runs`) gives a :class:`RunComparison`: its
``frame`` has one row per step and phase that either run reached, with the status, the
number of attempts, the duration, the output and the error of each run next to each other
(outputs and errors after the runs' redaction), whether and in what the row differs
(``differs``, ``difference``), and ``first_divergence`` names the first point where the runs
differ.

What counts as a divergence is what happened, in the saga's order: which steps ran forward,
with which status and how many attempts, then which were compensated. Outputs differ between
any two runs that make ids or timestamps, so an output counts only when nothing else differs
(``what == "output"``). Durations never count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sagakit.events import END_KINDS, EventKind

if TYPE_CHECKING:
    import pandas as pd

    from sagakit.runs import Run

__all__ = ["COMPARE_COLUMNS", "Divergence", "RunComparison", "compare_runs"]

#: The columns of :attr:`RunComparison.frame`, in order.
COMPARE_COLUMNS: tuple[str, ...] = (
    "step",
    "phase",
    "index",
    "status_a",
    "status_b",
    "attempts_a",
    "attempts_b",
    "duration_ms_a",
    "duration_ms_b",
    "output_a",
    "output_b",
    "error_a",
    "error_b",
    "differs",
    "difference",
)

_K = EventKind


@dataclass(frozen=True, slots=True)
class Divergence:
    """The first point where two runs differ.

    Attributes:
        step: the step.
        phase: ``forward`` or ``compensate``.
        what: what differs: ``ran`` (only one run reached it), ``status``, ``attempts``,
            ``error`` or ``output``.
        a: how it reads in the first run (``None``: not reached).
        b: how it reads in the second run.
    """

    step: str
    phase: str
    what: str
    a: str | None
    b: str | None

    def __str__(self) -> str:
        where = self.step if self.phase == "forward" else f"the compensation of {self.step}"
        if self.what == "ran":
            ran = "a" if self.a is not None else "b"
            return f"first divergence at {where}: it ran only in run {ran} ({self.a or self.b})"
        return f"first divergence at {where}: {self.what} {self.a} in run a, {self.b} in run b"


@dataclass(slots=True)
class _Phase:
    """One step's phase in one run, summed over its attempts."""

    index: int
    status: str
    attempts: int
    started: float | None
    ended: float
    output: str | None
    error: str | None


def _summaries(run: Run) -> dict[tuple[str, str], _Phase]:
    from sagakit.runs import error_message, run_redactor

    redactor = run_redactor(run)
    found: dict[tuple[str, str], _Phase] = {}
    for event in run.events:
        if event.kind not in END_KINDS or event.step is None or event.phase is None:
            continue
        key = (event.step, event.phase)
        error = None
        if event.error is not None:
            text = error_message(event.error, run=run) or ""
            error = f"{type(event.error).__name__}: {text}" if text else type(event.error).__name__
        output = redactor.shown(event.data) if event.kind is _K.STEP_SUCCEEDED else None
        began = event.started_at if event.started_at is not None else event.at
        current = found.get(key)
        skipped = event.kind is _K.COMPENSATION_SKIPPED
        if current is None:
            found[key] = _Phase(event.index, event.status or "", 0 if skipped else 1, began, event.at, output, error)
        else:
            current.status = event.status or current.status
            current.attempts += 0 if skipped else 1
            current.ended = event.at
            current.output = output if output is not None else current.output
            current.error = error
    return found




def _order(keys: set[tuple[str, str]], index: dict[str, int]) -> list[tuple[str, str]]:
    # The saga's order: every step forward, then the compensations as a rollback runs them.
    forward = sorted((key for key in keys if key[1] == "forward"), key=lambda key: index[key[0]])
    undo = sorted((key for key in keys if key[1] != "forward"), key=lambda key: -index[key[0]])
    return forward + undo


class RunComparison:
    """Two runs side by side: the first divergence and a DataFrame of every step's phases.

    Attributes:
        a: the first run.
        b: the second run.
        first_divergence: where they first differ (``None``: they did the same).
    """

    __slots__ = ("_frame", "_rows", "a", "b", "first_divergence")

    def __init__(self, a: Run, b: Run) -> None:
        from sagakit.runs import Run

        for name, run in (("a", a), ("b", b)):
            if not isinstance(run, Run):
                raise TypeError(f"compare_runs {name}: expected a sagakit.Run, got {type(run).__name__}")
        self.a = a
        self.b = b
        first, second = _summaries(a), _summaries(b)
        index = {step: phase.index for (step, _), phase in [*second.items(), *first.items()]}
        self._rows: list[tuple[Any, ...]] = []
        path: Divergence | None = None
        output: Divergence | None = None
        for key in _order(set(first) | set(second), index):
            one, two = first.get(key), second.get(key)
            step, phase = key
            what = _difference(one, two)
            if what is not None:
                found = Divergence(step, phase, what, *_readings(what, one, two))
                if what == "output":
                    output = output or found
                else:
                    path = path or found
            self._rows.append((
                step, phase, index[step],
                one.status if one else None, two.status if two else None,
                one.attempts if one else None, two.attempts if two else None,
                _duration(one), _duration(two),
                one.output if one else None, two.output if two else None,
                one.error if one else None, two.error if two else None,
                what is not None, what or "",
            ))
        self.first_divergence: Divergence | None = path or output
        self._frame: pd.DataFrame | None = None

    @property
    def same(self) -> bool:
        """Whether the two runs did the same (durations aside)."""
        return self.first_divergence is None

    @property
    def frame(self) -> pd.DataFrame:
        """One row per step and phase either run reached, in the saga's order: ``COMPARE_COLUMNS``."""
        if self._frame is None:
            import pandas as pd

            dtypes = ("string", "string", "int64", "string", "string", "Int64", "Int64", "float64", "float64",
                      "string", "string", "string", "string", "bool", "string")
            self._frame = pd.DataFrame(self._rows, columns=list(COMPARE_COLUMNS)).astype(
                dict(zip(COMPARE_COLUMNS, dtypes, strict=True)))
        return self._frame

    def __repr__(self) -> str:
        summary = "the same path" if self.first_divergence is None else str(self.first_divergence)
        return (f"<RunComparison {self.a.run_id[:8]} ({self.a.status}) vs {self.b.run_id[:8]} ({self.b.status}):"
                f" {summary}>")

    def _repr_html_(self) -> str:
        import html

        return f"<p>{html.escape(repr(self))}</p>" + self.frame.to_html(index=False, na_rep="")


def _duration(phase: _Phase | None) -> float | None:
    if phase is None or phase.started is None:
        return None
    return round((phase.ended - phase.started) * 1000.0, 6)


def _difference(one: _Phase | None, two: _Phase | None) -> str | None:
    if one is None or two is None:
        return "ran"
    if one.status != two.status:
        return "status"
    if one.attempts != two.attempts:
        return "attempts"
    if (one.error or "") != (two.error or ""):
        return "error"
    if one.output != two.output:
        return "output"
    return None


def _readings(what: str, one: _Phase | None, two: _Phase | None) -> tuple[str | None, str | None]:
    def reading(phase: _Phase | None) -> str | None:
        if phase is None:
            return None
        if what == "attempts":
            return str(phase.attempts)
        if what == "error":
            return phase.error or "no error"
        if what == "output":
            return phase.output
        return phase.status

    return reading(one), reading(two)


def compare_runs(a: Run, b: Run) -> RunComparison:
    """Compare two runs (``a.compare(b)``): see :class:`RunComparison`.

    Raises:
        TypeError: ``a`` or ``b`` is not a :class:`~sagakit.Run`.
    """
    return RunComparison(a, b)

