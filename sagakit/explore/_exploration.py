"""Failure-space exploration: every fault scenario of a saga, checked against an invariant.

:func:`explore` runs a saga once per fault scenario (every step under every fault mode,
optionally every pair of faults), each against a fresh *world* the steps act on, and checks
the caller's invariant after each run. The result, an :class:`Exploration`, is a DataFrame
and a steps-by-modes matrix coloured by outcome, which displays in a notebook.

The saga itself is left untouched: the runs use a copy with the same steps and names, so they
never reach ``saga.history``, the saga's observers or its journal (unless asked).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sagakit.context import WorkflowContext
from sagakit.errors import FaultError, UnknownStepError
from sagakit.events import Observer
from sagakit.explore._shared import (
    Progress,
    check_optional_callable,
    check_positive_int,
    copier,
    derived_saga,
    resolve,
    run_pooled,
    stage_positions,
)
from sagakit.runs import Run, RunHistory
from sagakit.steps import Parallel, Step

if TYPE_CHECKING:
    import pandas as pd

    from sagakit.saga import Saga

__all__ = ["EXPLORE_MODES", "OUTCOMES", "Exploration", "explore"]

#: The fault modes :func:`explore` knows, in matrix order.
EXPLORE_MODES: tuple[str, ...] = ("fail", "fail_after", "fail_compensation")

#: What a scenario can come to, worst last: a run status, or ``violated`` (the invariant failed).
OUTCOMES: tuple[str, ...] = ("completed", "compensated", "cancelled", "compensation_failed", "violated")

_FORWARD_MODES = ("fail", "fail_after")

# ---------------------------------------------------------------------------------------
# exploration


@dataclass(frozen=True, slots=True)
class _Scenario:
    index: int
    kind: Literal["baseline", "single", "pair"]
    step: str | None
    mode: str | None
    faults: tuple[tuple[str, str], ...]

    @property
    def label(self) -> str:
        if not self.faults:
            return "no faults"
        return " + ".join(f"{name}={mode}" for name, mode in self.faults)


def _check_modes(modes: object) -> tuple[str, ...]:
    if isinstance(modes, str):
        modes = (modes,)
    if not isinstance(modes, Sequence | set | frozenset) or not modes:
        raise TypeError(f"explore modes: expected a non-empty list of modes from {EXPLORE_MODES}, got {modes!r}")
    checked: list[str] = []
    for mode in modes:
        if mode not in EXPLORE_MODES:
            raise FaultError(
                f"explore modes: unknown mode {mode!r}; expected some of "
                + ", ".join(repr(known) for known in EXPLORE_MODES)
            )
        if mode not in checked:
            checked.append(mode)
    return tuple(sorted(checked, key=EXPLORE_MODES.index))


def _compensation_trigger(saga: Saga, step: Step, positions: Mapping[str, int]) -> str | None:
    """The step whose ``fail`` makes ``step``'s compensation run first in the rollback.

    That is the first step of the stage after ``step``'s: ``step`` has completed and is the
    newest step to compensate. Steps of the last stage have none.
    """
    following = positions[step.name] + 1
    if following >= len(saga.stages):
        return None
    stage = saga.stages[following]
    return stage.steps[0].name if isinstance(stage, Parallel) else stage.name


def _plan_scenarios(saga: Saga, modes: tuple[str, ...], pairs: bool) -> tuple[list[_Scenario], dict[tuple[str, str], str]]:
    """Every scenario to run, and why the missing matrix cells are missing."""
    positions = stage_positions(saga)
    forward = [mode for mode in modes if mode in _FORWARD_MODES]
    scenarios: list[_Scenario] = [_Scenario(0, "baseline", None, None, ())]
    seen: set[frozenset[tuple[str, str]]] = {frozenset()}
    missing: dict[tuple[str, str], str] = {}

    def add(kind: Literal["single", "pair"], step: str, mode: str, faults: tuple[tuple[str, str], ...]) -> None:
        key = frozenset(faults)
        if key not in seen:
            seen.add(key)
            scenarios.append(_Scenario(len(scenarios), kind, step, mode, faults))

    for member in saga.steps:
        for mode in modes:
            if mode in _FORWARD_MODES:
                add("single", member.name, mode, ((member.name, mode),))
            elif member.compensate is None:
                missing[(member.name, mode)] = "no compensation"
            else:
                trigger = _compensation_trigger(saga, member, positions)
                if trigger is None:
                    missing[(member.name, mode)] = "nothing after it can fail"
                else:
                    add("single", member.name, mode, ((member.name, mode), (trigger, "fail")))
    if pairs:
        choices = {
            member.name: forward
            + (["fail_compensation"] if "fail_compensation" in modes and member.compensate is not None else [])
            for member in saga.steps
        }
        names = saga.step_names
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                same_stage = positions[first] == positions[second]
                for first_mode in choices[first]:
                    for second_mode in choices[second]:
                        if _pair_takes_effect(first_mode, second_mode, same_stage):
                            add("pair", first, first_mode, ((first, first_mode), (second, second_mode)))
    return scenarios, missing


def _pair_takes_effect(first: str, second: str, same_stage: bool) -> bool:
    """Whether faults on two steps (``first`` before ``second``) can both take effect.

    A forward fault stops the saga, so a fault on a later stage never fires; a compensation
    fault fires only when a forward fault after it starts a rollback. Branches of one
    parallel stage run side by side, so there both may fire.
    """
    if first == "fail_compensation":
        return second != "fail_compensation"
    return same_stage


@dataclass(frozen=True, slots=True)
class _Outcome:
    scenario: _Scenario
    run: Run
    holds: bool | None
    violation: str | None


async def _check_invariant(
    invariant: Callable[[Any, Run], Any] | None, world: Any, run: Run, label: str
) -> tuple[bool | None, str | None]:
    if invariant is None:
        return None, None
    try:
        verdict = await resolve(invariant(world, run))
    except AssertionError as exc:
        return False, str(exc) or "AssertionError raised by the invariant"
    except Exception as exc:
        exc.add_note(f"sagakit: raised by the invariant while checking scenario {label!r}")
        raise
    if verdict is None or bool(verdict):
        return True, None
    return False, "the invariant returned False"


async def explore(
    saga: Saga,
    data: Any = None,
    *,
    world: Callable[[], Any] | None = None,
    invariant: Callable[[Any, Run], Any] | None = None,
    modes: Sequence[str] | str = EXPLORE_MODES,
    pairs: bool = False,
    concurrency: int = 8,
    progress: bool | Callable[[int, int], Any] | None = None,
    observers: Iterable[Observer] = (),
    record_history: bool = False,
) -> Exploration:
    """Run ``saga`` under every fault scenario and check ``invariant`` after each run.

    The scenarios, in order:

    * ``no faults``: the baseline, so the invariant is checked on the happy path too;
    * for every step, each forward mode in ``modes``: ``{step: "fail"}`` (the step raises
      before acting) and ``{step: "fail_after"}`` (it acts, then reports failure);
    * ``fail_compensation`` for every step whose compensation would run: the step has a
      compensation and a later stage exists. The scenario pairs ``{step:
      "fail_compensation"}`` with a ``fail`` on the first step of the next stage, the
      smallest failure after which that compensation is the first to run. Steps without a
      compensation, or in the last stage, have no such scenario (the matrix says why);
    * with ``pairs=True``, also every combination of faults on two different steps in which
      both can take effect: a compensation fault with a forward fault on a later (or the
      same parallel) stage, or two forward faults on branches of one parallel stage.
      Plans already listed are not repeated.

    Each scenario gets a fresh world from ``world()`` (steps reach it as ``context.world``),
    a deep copy of ``data``, and a run with that fault plan only (``saga.faults`` is not used).
    Then ``invariant(world, run)`` decides: returning ``False`` or raising
    ``AssertionError`` is a violation (the assertion's message is kept); ``True`` or
    ``None`` means it holds. Any other exception from the invariant stops the exploration.

    Args:
        saga: the saga to explore; it is not changed, and its runs here are not added to
            ``saga.history`` nor sent to its observers or journal.
        data: the input of every run (each run gets a deep copy).
        world: a factory (sync or async) for the state the steps act on, or ``None``.
        invariant: ``invariant(world, run)``, sync or async, or ``None`` to only record outcomes.
        modes: which of ``fail``, ``fail_after``, ``fail_compensation`` to explore.
        pairs: also explore pairs of faults.
        concurrency: how many scenarios run at once.
        progress: ``None`` shows a bar in a notebook only; ``True`` also prints to stderr
            elsewhere; ``False`` shows nothing; a callable receives ``(done, total)``.
        observers: extra observers for every scenario's run.
        record_history: also append the runs to ``saga.history``.

    Returns:
        The :class:`Exploration`: one row per scenario, and the matrix.

    Raises:
        TypeError, ValueError: an argument is invalid (the message names it).
        FaultError: an unknown mode.
    """
    checked_modes = _check_modes(modes)
    check_optional_callable(world, "explore world", "a factory callable returning a fresh world")
    check_optional_callable(invariant, "explore invariant", "a callable invariant(world, run)")
    if not isinstance(pairs, bool):
        raise TypeError(f"explore pairs: expected a bool, got {pairs!r}")
    if not isinstance(record_history, bool):
        raise TypeError(f"explore record_history: expected a bool, got {record_history!r}")
    limit = check_positive_int(concurrency, "explore concurrency")
    extra = tuple(observers)
    fresh_data = copier(data, "explore")
    scenarios, missing = _plan_scenarios(saga, checked_modes, pairs)
    derived = derived_saga(saga)
    bar = Progress(progress, len(scenarios), "explore")
    outcomes: list[_Outcome | None] = [None] * len(scenarios)

    async def one(scenario: _Scenario) -> None:
        label = scenario.label
        state = await resolve(world()) if world is not None else None
        context = WorkflowContext(correlation_id=f"explore {scenario.index}: {label}", world=state)
        run = await derived.run(fresh_data(), context, faults=dict(scenario.faults), observers=extra)
        run.definition = saga
        holds, violation = await _check_invariant(invariant, state, run, label)
        outcomes[scenario.index] = _Outcome(scenario, run, holds, violation)

    try:
        await run_pooled(scenarios, one, min(limit, len(scenarios)), bar)
    except BaseException:
        bar.close(ok=False)
        raise
    bar.close()
    results = [outcome for outcome in outcomes if outcome is not None]
    if record_history:
        saga.history.extend(outcome.run for outcome in results)
    return Exploration(saga, checked_modes, results, missing, invariant is not None)


_COLOURS = {
    "completed": ("#dbeafe", "#1e3a8a"),
    "compensated": ("#dcfce7", "#14532d"),
    "cancelled": ("#e5e7eb", "#374151"),
    "compensation_failed": ("#fef3c7", "#78350f"),
    "violated": ("#fecaca", "#7f1d1d"),
    "n/a": ("#f3f4f6", "#9ca3af"),
}


class Exploration:
    """What :func:`explore` found: one row per scenario, and a steps-by-modes matrix.

    In a notebook it displays as the matrix, each cell coloured by the outcome of that
    step's fault (hover for details); pairs and the baseline are summarised below it.

    Attributes:
        saga: the explored saga.
        modes: the explored modes, in matrix order.
        runs: every scenario's :class:`~sagakit.Run`, in scenario order.
        scenarios: the DataFrame, one row per scenario: ``scenario`` (its number), ``kind``
            (``baseline``, ``single``, ``pair``), ``step`` and ``mode`` (the fault it
            explores; the first one for pairs), ``label``, ``faults`` (step -> mode),
            ``status``, ``failed_step``, ``completed_steps``, ``compensated_steps``,
            ``invariant`` (``True`` holds, ``False`` violated, ``<NA>`` without invariant),
            ``violation`` (the message), ``outcome`` (``violated`` or the status),
            ``fired`` (an injected fault took effect), ``error_type``, ``error``,
            ``duration_ms``, ``run_id``.
    """

    __slots__ = ("_missing", "_outcomes", "checked", "modes", "runs", "saga", "scenarios")

    def __init__(
        self,
        saga: Saga,
        modes: tuple[str, ...],
        outcomes: Sequence[_Outcome],
        missing: Mapping[tuple[str, str], str],
        checked: bool,
    ) -> None:
        self.saga = saga
        self.modes = modes
        self.checked = checked
        self._outcomes = tuple(outcomes)
        self._missing = dict(missing)
        self.runs: list[Run] = [outcome.run for outcome in outcomes]
        self.scenarios = self._frame()

    def _frame(self) -> pd.DataFrame:
        import pandas as pd

        outcomes = self._outcomes
        runs = [outcome.run for outcome in outcomes]
        errors = [run.error for run in runs]
        return pd.DataFrame(
            {
                "scenario": pd.array([o.scenario.index for o in outcomes], dtype="int64"),
                "kind": pd.array([o.scenario.kind for o in outcomes], dtype="string"),
                "step": pd.array([o.scenario.step for o in outcomes], dtype="string"),
                "mode": pd.array([o.scenario.mode for o in outcomes], dtype="string"),
                "label": pd.array([o.scenario.label for o in outcomes], dtype="string"),
                "faults": [dict(o.scenario.faults) for o in outcomes],
                "status": pd.array([run.status for run in runs], dtype="string"),
                "failed_step": pd.array([run.failed_step for run in runs], dtype="string"),
                "completed_steps": [tuple(run.completed_steps) for run in runs],
                "compensated_steps": [tuple(run.compensated_steps) for run in runs],
                "invariant": pd.array([o.holds for o in outcomes], dtype="boolean"),
                "violation": pd.array([o.violation for o in outcomes], dtype="string"),
                "outcome": pd.array([_outcome_of(o) for o in outcomes], dtype="string"),
                "fired": pd.array([run.injected for run in runs], dtype="bool"),
                "error_type": pd.array([type(e).__name__ if e is not None else None for e in errors], dtype="string"),
                "error": pd.array([str(e) if e is not None else None for e in errors], dtype="string"),
                "duration_ms": pd.array([run.duration_ms for run in runs], dtype="float64"),
                "run_id": pd.array([run.run_id for run in runs], dtype="string"),
            }
        )

    # -- reading it ---------------------------------------------------------------------

    @property
    def violations(self) -> pd.DataFrame:
        """The scenarios whose invariant failed."""
        frame = self.scenarios
        return frame[frame["invariant"].eq(False).fillna(False).astype(bool)]

    @property
    def ok(self) -> bool:
        """Whether the invariant held in every scenario (``True`` when there was none)."""
        return self.violations.empty

    @property
    def history(self) -> RunHistory:
        """The scenarios' runs as a :class:`~sagakit.RunHistory`, for the analysis helpers."""
        return RunHistory(self.runs)

    def matrix(self) -> pd.DataFrame:
        """Outcome per step (rows) and mode (columns); ``n/a`` where there is no scenario."""
        import pandas as pd

        cells = {(o.scenario.step, o.scenario.mode): _outcome_of(o) for o in self._outcomes if o.scenario.kind == "single"}
        names = list(self.saga.step_names)
        columns = {mode: [cells.get((name, mode), "n/a") for name in names] for mode in self.modes}
        frame = pd.DataFrame(columns, index=pd.Index(names, name="step"), dtype="string")
        frame.columns.name = "mode"
        return frame

    def outcome(self, step: str, mode: str) -> str:
        """The outcome of the single-fault scenario ``{step: mode}`` (``n/a`` if none)."""
        if step not in self.saga.step_names:
            raise UnknownStepError(step, self.saga.step_names, saga=self.saga.name)
        if mode not in self.modes:
            raise FaultError(f"mode {mode!r} was not explored; explored: {', '.join(self.modes)}")
        return str(self.matrix().loc[step, mode])

    # -- display ------------------------------------------------------------------------

    def _summary(self) -> str:
        total = len(self._outcomes)
        text = f"Exploration of saga {self.saga.name!r}: {total} scenario{'s' if total != 1 else ''}"
        if self.checked:
            bad = len(self.violations)
            text += f", {bad} violat{'es' if bad == 1 else 'e'} the invariant"
        return text

    def to_text(self) -> str:
        """The matrix as plain text."""
        names = list(self.saga.step_names)
        matrix = self.matrix()
        width = max(len("step"), *(len(name) for name in names))
        cell = max(len("compensation_failed"), *(len(mode) for mode in self.modes))
        lines = [self._summary(), ""]
        lines.append("  ".join(["step".ljust(width), *(mode.ljust(cell) for mode in self.modes)]).rstrip())
        for name in names:
            row = [name.ljust(width)]
            for mode in self.modes:
                value = str(matrix.loc[name, mode])
                row.append((value.upper() if value == "violated" else value).ljust(cell))
            lines.append("  ".join(row).rstrip())
        lines.extend(self._footnotes())
        return "\n".join(lines)

    def _footnotes(self) -> list[str]:
        notes = []
        baseline = self._outcomes[0] if self._outcomes and self._outcomes[0].scenario.kind == "baseline" else None
        if baseline is not None:
            notes.append(f"no faults: {_outcome_of(baseline)}")
        pairs = [o for o in self._outcomes if o.scenario.kind == "pair"]
        if pairs:
            bad = [o for o in pairs if o.holds is False]
            notes.append(f"pairs: {len(pairs)} scenarios, {len(bad)} violate the invariant")
            notes.extend(f"  {o.scenario.label}: {o.violation}" for o in bad[:10])
            if len(bad) > 10:
                notes.append(f"  ... and {len(bad) - 10} more (see .violations)")
        for o in self._outcomes:
            if o.holds is False and o.scenario.kind != "pair":
                notes.append(f"violated by {o.scenario.label}: {o.violation}")
        return notes

    def to_html(self) -> str:
        """The matrix as an HTML table, coloured by outcome, with details on hover."""
        esc = html.escape
        singles = {(o.scenario.step, o.scenario.mode): o for o in self._outcomes if o.scenario.kind == "single"}
        parts = [
            f'<div class="sagakit-exploration" data-saga="{esc(self.saga.name)}">',
            f'<div style="font-weight:600;margin:4px 0;font-family:sans-serif">{esc(self._summary())}</div>',
            '<table style="border-collapse:collapse;font-family:monospace;font-size:12px">',
            '<thead><tr><th style="text-align:left;padding:4px 8px">step</th>',
        ]
        parts.extend(f'<th style="padding:4px 8px">{esc(mode)}</th>' for mode in self.modes)
        parts.append("</tr></thead><tbody>")
        for name in self.saga.step_names:
            parts.append(f'<tr><th style="text-align:left;padding:4px 8px">{esc(name)}</th>')
            for mode in self.modes:
                found = singles.get((name, mode))
                if found is None:
                    value, tip, text = "n/a", self._missing.get((name, mode), "not explored"), "n/a"
                else:
                    value = _outcome_of(found)
                    tip = _tooltip(found)
                    text = value.replace("_", " ") if found.run.injected else f"{value.replace('_', ' ')} (not reached)"
                background, colour = _COLOURS.get(value, _COLOURS["n/a"])
                parts.append(
                    f'<td id="cell-{esc(name)}-{esc(mode)}" class="sagakit-cell outcome-{esc(value)}" '
                    f'title="{esc(tip)}" style="background:{background};color:{colour};padding:4px 8px;'
                    f'border:1px solid #fff;text-align:center">{esc(text)}</td>'
                )
            parts.append("</tr>")
        parts.append("</tbody></table>")
        notes = self._footnotes()
        if notes:
            parts.append('<pre style="font-size:11px;margin:4px 0">' + esc("\n".join(notes)) + "</pre>")
        parts.append("</div>")
        return "".join(parts)

    def _repr_html_(self) -> str:
        return self.to_html()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {"text/html": self.to_html(), "text/plain": self.to_text()}

    def __len__(self) -> int:
        return len(self._outcomes)

    def __repr__(self) -> str:
        return f"<{self._summary()}>"


def _outcome_of(outcome: _Outcome) -> str:
    return "violated" if outcome.holds is False else outcome.run.status


def _tooltip(outcome: _Outcome) -> str:
    run = outcome.run
    lines = [f"faults: {outcome.scenario.label}", f"status: {run.status}"]
    if run.failed_step is not None:
        lines.append(f"failed step: {run.failed_step}")
    lines.append("compensated: " + (", ".join(run.compensated_steps) or "nothing"))
    if run.error is not None:
        lines.append(f"error: {type(run.error).__name__}: {run.error}")
    if outcome.violation is not None:
        lines.append(f"invariant violated: {outcome.violation}")
    if not run.injected:
        lines.append("the fault never fired: the saga stopped before reaching it")
    return "\n".join(lines)

