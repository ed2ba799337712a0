"""Concurrent exploration: the anomalies between runs that see each other's half-done work.

:func:`explore_concurrent` runs several sagas (or several runs of one) against one shared
:class:`~sagakit.explore.World`, on a deterministic scheduler that decides at every step and
compensation which run moves next, under fault plans built from the same modes as
:func:`~sagakit.explore.explore`. Every violation of the invariant is classified (lost update,
dirty read, fuzzy read, or ``invariant violated``), shrunk to the fewest faults and context
switches that still violate, and kept as plain data (:class:`Interleaving`) that replays the
same actions, in the same order, with the same values, in this process or another.
"""

from __future__ import annotations

import dataclasses
import html
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sagakit._checks import check_bool, check_observers, check_positive_int, describe
from sagakit.events import Observer
from sagakit.explore._anomaly import Anomaly
from sagakit.explore._clock import on_virtual_clock, run_on_virtual_clock
from sagakit.explore._interleave import (
    Execution,
    RunSpec,
    Setup,
    execute,
    gated_saga,
)
from sagakit.explore._planning import check_budget, check_modes, check_seed, plan_scenarios
from sagakit.explore._report import Shown
from sagakit.explore._results import ConcurrentCounterexample, Interleaving, InterleavingResult
from sagakit.explore._scenario import (
    MODE_ORDER,
    Schedule,
    as_schedule,
    check_search,
    draw_schedule,
    modes_for,
)
from sagakit.explore._search import Dpor, Pct, Strict
from sagakit.explore._shared import Progress, check_optional_callable, copier
from sagakit.explore._shrinking import anomalies_of, shrink_execution
from sagakit.runs import Run

if TYPE_CHECKING:
    import pandas as pd

    from sagakit.saga import Saga

__all__ = [
    "CHECKS",
    "ConcurrentCounterexample",
    "ConcurrentExploration",
    "Interleaving",
    "InterleavingResult",
    "explore_concurrent",
    "explore_concurrent_sync",
    "replay_interleaving",
    "replay_interleaving_sync",
]

#: When the invariant is checked: when every run has ended, or also after every action.
CHECKS: tuple[str, ...] = ("end", "every action")

#: The most violating interleavings kept whole (with their runs) for shrinking and display.
_KEPT = 1_000
RunsLike = Sequence["Saga | tuple[Saga, Any]"]
ConcurrentInvariant = Callable[[Any, tuple["Run | None", ...]], Any]


# -- the exploration --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Row:
    """One explored interleaving, as the frame shows it."""

    index: int
    kind: str
    interleaving: Interleaving
    statuses: tuple[str, ...]
    holds: bool | None
    violation: str | None
    anomaly: str | None
    seed: int | None


@dataclass(frozen=True, slots=True)
class _Job:
    setup: Setup
    specs: tuple[tuple[Saga, Any], ...]
    labels: tuple[str, ...]
    modes: tuple[str, ...]
    pairs: bool
    search: str
    budget: int
    seed: int
    depth: int
    max_faults: int
    reduce: bool
    shrink: bool


def _check_runs(runs: object, what: str) -> tuple[tuple[Saga, Any], ...]:
    from sagakit.saga import Saga

    if isinstance(runs, str | bytes | Mapping) or not isinstance(runs, Sequence):
        raise TypeError(f"{what} runs: expected a list of sagas or (saga, data) pairs, got {describe(runs)}")
    specs: list[tuple[Saga, Any]] = []
    for position, item in enumerate(runs):
        if isinstance(item, Saga):
            specs.append((item, None))
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], Saga):
            specs.append((item[0], item[1]))
        else:
            raise TypeError(f"{what} runs[{position}]: expected a Saga or a (saga, data) pair, got {describe(item)}")
    if len(specs) < 2:
        raise ValueError(
            f"{what} runs: expected at least two runs to interleave, got {len(specs)}; explore one run with "
            "sagakit.explore.explore(saga, data, ...)"
        )
    names: dict[str, Saga] = {}
    for position, (saga, data) in enumerate(specs):
        known = names.setdefault(saga.name, saga)
        if known is not saga:
            raise ValueError(
                f"{what} runs[{position}]: a second saga named {saga.name!r}; runs are named by their saga in "
                "interleavings (plain data a replay checks), so different sagas need different names "
                "(saga.replace(name=...))"
            )
        copier(data, f"{what} runs[{position}]")
    return tuple(specs)


def _prepare(
    runs: object, *, world: object, invariant: object, modes: object, pairs: object, search: object,
    budget: object, seed: object, depth: object, max_faults: object, reduce: object, check: object,
    shrink: object, observers: object, what: str,
) -> _Job:
    specs = _check_runs(runs, what)
    if world is None or not callable(world):
        raise TypeError(f"{what} world: expected a factory callable returning a fresh sagakit.explore.World (or "
                        f"dict), got {describe(world)}")
    check_optional_callable(invariant, f"{what} invariant", "a callable invariant(world, runs)")
    checked_search = check_search(search, what)
    if modes is not None and not isinstance(modes, str) and isinstance(modes, Sequence) and len(modes) == 0:
        checked_modes: tuple[str, ...] = ()
    else:
        checked_modes = check_modes(modes, checked_search, what)
    for flag, name in ((pairs, "pairs"), (reduce, "reduce"), (shrink, "shrink")):
        check_bool(flag, f"{what} {name}")
    draws = check_budget(budget, f"{what} budget")
    checked_seed = check_seed(seed, f"{what} seed")
    check_positive_int(depth, f"{what} depth")
    check_positive_int(max_faults, f"{what} max_faults")
    if check not in CHECKS:
        raise ValueError(f"{what} check: expected 'end' or 'every action', got {describe(check)}")
    extra = check_observers(observers, f"{what} observers")
    labels = tuple(f"run {number} ({saga.name})" for number, (saga, _) in enumerate(specs))
    gated: dict[int, Saga] = {}
    run_specs = []
    for number, (saga, data) in enumerate(specs):
        copy = gated_saga(saga)  # one gated copy per run: the engine keeps its last run in its history
        gated[number] = copy
        run_specs.append(RunSpec(saga, copy, copier(data, f"{what} runs[{number}]"), labels[number]))
    setup = Setup(tuple(run_specs), world, invariant, check == "every action", extra)  # type: ignore[arg-type]
    return _Job(setup, specs, labels, checked_modes, bool(pairs), checked_search, draws, checked_seed,
                depth, max_faults, bool(reduce), bool(shrink))  # type: ignore[arg-type]


def _identical(specs: Sequence[tuple[Saga, Any]]) -> list[int]:
    """For each run, the first run with the same saga and an equal input (faults on it mirror)."""
    first: list[int] = []
    for number, (saga, data) in enumerate(specs):
        match = number
        for other in range(number):
            other_saga, other_data = specs[other]
            try:
                same = other_saga is saga and bool(other_data == data)
            except Exception:
                same = False
            if same:
                match = first[other]
                break
        first.append(match)
    return first


def _fault_plans(job: _Job) -> Iterator[tuple[Schedule, ...]]:
    """The exhaustive fault plans: none, then each single-run scenario of explore() on each run
    (not on runs identical to an earlier one: they mirror it), then, with ``pairs``, two at once."""
    count = len(job.specs)
    empty: tuple[Schedule, ...] = ((),) * count
    yield empty
    if not job.modes:
        return
    singles: list[list[Schedule]] = []
    for saga, _ in job.specs:
        planned, _ = plan_scenarios(saga, job.modes, False)
        singles.append([scenario.faults for scenario in planned if scenario.faults])
    mirror = _identical(job.specs)
    for run in range(count):
        if mirror[run] != run:
            continue
        for schedule in singles[run]:
            yield tuple(schedule if other == run else () for other in range(count))
    if job.pairs:
        for first in range(count):
            for second in range(first + 1, count):
                for one in singles[first]:
                    for two in singles[second]:
                        plan: list[Schedule] = [()] * count
                        plan[first], plan[second] = one, two
                        yield tuple(plan)


def _draw(job: _Job, position: int) -> tuple[tuple[Schedule, ...], Pct, int]:
    own_seed = (job.seed * 1_000_003 + position) % 2**63
    rng = random.Random(own_seed)
    count = len(job.specs)
    plan: list[Schedule] = [()] * count
    if job.modes and rng.random() < 0.5:
        faulty = 1
        while faulty < count and rng.random() < 0.3:
            faulty += 1
        for run in sorted(rng.sample(range(count), faulty)):
            saga = job.specs[run][0]
            plan[run] = draw_schedule(saga, rng, modes_for(saga, job.modes), job.max_faults, 0.0, 0.0)
    length = sum(2 * len(saga.steps) for saga, _ in job.specs)
    return tuple(plan), Pct(rng, count, job.depth, length), own_seed


class _Collector:
    """What the search saw: a row per interleaving, the violating ones kept whole."""

    def __init__(self, job: _Job) -> None:
        self.job = job
        self.rows: list[_Row] = []
        self.violations: list[InterleavingResult] = []
        self.redundant = 0

    def add(self, execution: Execution, kind: str, seed: int | None = None) -> InterleavingResult | None:
        index = len(self.rows)
        result = None
        if execution.violated:
            result = result_of(self.job, execution, index, kind)
            if len(self.violations) < _KEPT:
                self.violations.append(result)
        interleaving = Interleaving(tuple(s.name for s, _ in self.job.specs), execution.faults, execution.order)
        self.rows.append(_Row(index, kind, interleaving, tuple(run.status for run in execution.runs),
                              execution.holds, execution.violation, result.anomaly if result else None, seed))
        return result


def result_of(job: _Job, execution: Execution, index: int, kind: str) -> InterleavingResult:
    """The public record of an execution (anomalies classified, values shown redacted)."""
    shown = Shown(execution.runs, [spec.data() for spec in job.setup.runs])
    anomalies: tuple[Anomaly, ...] = ()
    if execution.violated:
        found = anomalies_of(execution, lambda value, key: shown.value(value, key))
        anomalies = tuple(dataclasses.replace(a, explanation=shown.text(a.explanation)) for a in found)
    interleaving = Interleaving(tuple(s.name for s, _ in job.specs), execution.faults, execution.order)
    return InterleavingResult(
        index, kind, interleaving, tuple(execution.actions), tuple(execution.accesses), execution.runs,
        job.labels, execution.holds, execution.violation, execution.violated_after, anomalies,
        execution.world, shown,
    )


async def _exhaustive(job: _Job, collector: _Collector, bar: Progress) -> bool:
    """Every interleaving of every fault plan, up to the budget; whether it got through all."""
    explored = 0
    for faults in _fault_plans(job):
        dpor = Dpor(reduce=job.reduce, every_action=job.setup.every_action)
        while True:
            if explored >= job.budget:
                return False
            walk = dpor.walk()
            execution = await execute(job.setup, faults, walk)
            if walk.blocked:
                collector.redundant += 1
            else:
                collector.add(execution, "exhaustive")
                explored += 1
                bar.update(explored)
            if not dpor.advance(execution.actions):
                break
    return True


async def _random(job: _Job, collector: _Collector, bar: Progress) -> None:
    for position in range(job.budget):
        faults, chooser, own_seed = _draw(job, position)
        execution = await execute(job.setup, faults, chooser)
        collector.add(execution, "random", own_seed)
        bar.update(position + 1)


def _signature(job: _Job, result: InterleavingResult) -> tuple[Any, ...]:
    """What makes two violations the same story, whichever run plays which part: the anomaly,
    its key, and the steps (of which sagas, in which phase) involved; without an anomaly, the
    faults (by saga)."""
    names = [saga.name for saga, _ in job.specs]
    if result.anomalies:
        anomaly = result.anomalies[0]
        parts = sorted((names[result.actions[p].run], result.actions[p].step, result.actions[p].phase)
                       for p in anomaly.actions)
        return (anomaly.kind, repr(anomaly.key), tuple(parts))
    faults = sorted((names[run], name, fault.mode) for run, schedule in enumerate(result.interleaving.faults)
                    for name, fault in schedule)
    return ("invariant violated", None, tuple(faults))


def _weight(faults: tuple[Schedule, ...]) -> tuple[int, int]:
    """Fewer faults, then simpler modes, come first."""
    modes = [fault.mode for schedule in faults for _, fault in schedule]
    return (len(modes), sum(MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER) for mode in modes))


async def _counterexamples(job: _Job, violations: Sequence[InterleavingResult]) -> list[ConcurrentCounterexample]:
    """One counterexample per story (see :func:`_signature`), shrunk from its simplest violation."""
    found: list[ConcurrentCounterexample] = []
    signatures: list[tuple[Any, ...]] = []
    for result in violations:
        signature = _signature(job, result)
        known = next((n for n, other in enumerate(signatures) if other == signature), None)
        if known is not None:
            example = found[known]
            if _weight(result.interleaving.faults) >= _weight(example.found.interleaving.faults):
                found[known] = dataclasses.replace(example, explains=example.explains + 1)
                continue
        again = await execute(job.setup, result.interleaving.faults, Strict(result.interleaving.order, "shrink"))
        minimal, tried = await shrink_execution(job.setup, again)
        shrunk = result_of(job, minimal, -1, "shrunk")
        if known is not None:
            example = found[known]
            better = (_weight(shrunk.interleaving.faults), shrunk.switches) < (
                _weight(example.interleaving.faults), example.interleaving.switches)
            found[known] = ConcurrentCounterexample(
                shrunk if better else example.minimal, result if better else example.found, example.explains + 1,
                example.tried + tried,
            )
            continue
        same = next((n for n, example in enumerate(found) if example.interleaving == shrunk.interleaving), None)
        if same is not None:
            example = found[same]
            found[same] = dataclasses.replace(example, explains=example.explains + 1)
            continue
        found.append(ConcurrentCounterexample(shrunk, result, 1, tried))
        signatures.append(signature)
    return found


async def _run(job: _Job, bar: Progress) -> ConcurrentExploration:
    collector = _Collector(job)
    complete = True
    if job.search == "exhaustive":
        complete = await _exhaustive(job, collector, bar)
    else:
        await _random(job, collector, bar)
    bar.finish(len(collector.rows))
    examples: list[ConcurrentCounterexample] = []
    if job.shrink and job.setup.invariant is not None and collector.violations:
        examples = await _counterexamples(job, collector.violations)
    return ConcurrentExploration(job, collector.rows, collector.violations, examples, complete, collector.redundant)


class ConcurrentExploration:
    """What :func:`explore_concurrent` found: every interleaving explored, and the anomalies.

    In a notebook it displays as a summary, the anomalies found, and the timeline of each
    minimal counterexample.

    Attributes:
        runs: the explored runs, ``(saga, data)`` by run number.
        labels: each run's label (``run 0 (order)``).
        search: ``"exhaustive"`` or ``"random"``.
        seed: the random search's seed (drawn when not given).
        reduce: whether partial-order reduction was on.
        complete: whether the exhaustive search went through every interleaving of every fault
            plan (``False``: the budget ran out first; random search is never complete).
        redundant: executions of the exhaustive search that only repeated an order already
            covered (partial-order reduction found it out part-way); not counted as explored.
        counterexamples: each distinct violation, shrunk, in the order found.
        violating: the violating interleavings, whole (the first 1,000).
    """

    __slots__ = (
        "_frame_cache",
        "_job",
        "_rows",
        "complete",
        "counterexamples",
        "labels",
        "reduce",
        "redundant",
        "runs",
        "search",
        "seed",
        "violating",
    )

    def __init__(self, job: _Job, rows: Sequence[_Row], violating: Sequence[InterleavingResult],
                 counterexamples: Sequence[ConcurrentCounterexample], complete: bool, redundant: int) -> None:
        self._job = job
        self._rows = tuple(rows)
        self.runs = job.specs
        self.labels = job.labels
        self.search = job.search
        self.seed = job.seed
        self.reduce = job.reduce
        self.complete = complete and job.search == "exhaustive"
        self.redundant = redundant
        self.violating = tuple(violating)
        self.counterexamples = list(counterexamples)
        self._frame_cache: pd.DataFrame | None = None

    @property
    def interleavings(self) -> pd.DataFrame:
        """One row per explored interleaving: ``interleaving`` (its number), ``kind``, ``faults``
        (a label), ``order`` (``0:check 1:check ...``; each attempt of a retriable step is an
        action of its own), ``switches``, ``actions``, ``statuses`` (each run's), ``stuck`` (how
        many runs ended stuck), ``invariant`` (nullable bool), ``violation``, ``anomaly``,
        ``seed`` (a drawn one's)."""
        if self._frame_cache is None:
            import pandas as pd

            rows = self._rows
            self._frame_cache = pd.DataFrame(
                {
                    "interleaving": pd.array([r.index for r in rows], dtype="int64"),
                    "kind": pd.array([r.kind for r in rows], dtype="string"),
                    "faults": pd.array([r.interleaving.label for r in rows], dtype="string"),
                    "order": pd.array([r.interleaving.text for r in rows], dtype="string"),
                    "switches": pd.array([r.interleaving.switches for r in rows], dtype="int64"),
                    "actions": pd.array([len(r.interleaving.order) for r in rows], dtype="int64"),
                    "statuses": [r.statuses for r in rows],
                    "stuck": pd.array([sum(status == "stuck" for status in r.statuses) for r in rows], dtype="int64"),
                    "invariant": pd.array([r.holds for r in rows], dtype="boolean"),
                    "violation": pd.array([r.violation for r in rows], dtype="string"),
                    "anomaly": pd.array([r.anomaly for r in rows], dtype="string"),
                    "seed": pd.array([r.seed for r in rows], dtype="Int64"),
                }
            )
        return self._frame_cache

    @property
    def violations(self) -> pd.DataFrame:
        """The interleavings whose invariant failed."""
        frame = self.interleavings
        return frame[frame["invariant"].eq(False).fillna(False).astype(bool)]

    @property
    def anomalies(self) -> pd.DataFrame:
        """One row per counterexample: ``anomaly``, ``key``, ``runs``, ``explanation``, ``faults``,
        ``switches``, ``explains``, ``interleaving`` (its plain data, :meth:`Interleaving.to_dict`)."""
        import pandas as pd

        found = self.counterexamples
        first = [c.minimal.anomalies[0] if c.minimal.anomalies else None for c in found]
        return pd.DataFrame(
            {
                "anomaly": pd.array([c.anomaly for c in found], dtype="string"),
                "key": pd.array([c.minimal.shown.key(a.key) if a is not None else None for c, a in zip(found, first,
                                                                                                        strict=True)],
                                dtype="string"),
                "runs": [a.runs if a is not None else () for a in first],
                "explanation": pd.array([c.explanation for c in found], dtype="string"),
                "faults": pd.array([c.interleaving.label for c in found], dtype="string"),
                "switches": pd.array([c.interleaving.switches for c in found], dtype="int64"),
                "explains": pd.array([c.explains for c in found], dtype="int64"),
                "interleaving": [c.interleaving.to_dict() for c in found],
            }
        )

    @property
    def ok(self) -> bool:
        """Whether the invariant held in every interleaving explored."""
        return not any(row.holds is False for row in self._rows)

    def interleaving(self, number: int) -> Interleaving:
        """Interleaving ``number`` (its ``interleaving`` column), as plain data."""
        if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < len(self._rows):
            raise ValueError(f"interleaving: expected a number from 0 to {len(self._rows) - 1}, got {number!r}")
        return self._rows[number].interleaving

    def _chosen(self, which: object, what: str) -> Interleaving:
        if isinstance(which, bool):
            raise TypeError(f"{what} interleaving: expected an Interleaving, an InterleavingResult, a "
                            f"ConcurrentCounterexample, a number or Interleaving.to_dict() data, got {describe(which)}")
        if isinstance(which, int):
            return self.interleaving(which)
        if isinstance(which, Interleaving):
            return which
        if isinstance(which, InterleavingResult | ConcurrentCounterexample):
            return which.interleaving
        if isinstance(which, Mapping):
            return Interleaving.from_dict(which)
        raise TypeError(f"{what} interleaving: expected an Interleaving, an InterleavingResult, a "
                        f"ConcurrentCounterexample, a number or Interleaving.to_dict() data, got {describe(which)}")

    async def replay(
        self, which: Interleaving | InterleavingResult | ConcurrentCounterexample | int | Mapping[str, Any]
    ) -> InterleavingResult:
        """Run an interleaving again, exactly: the same actions in the same order with the same
        values, on a fresh world, the invariant checked again.

        Raises:
            RuntimeError: the runs did not follow it (a step depends on more than the world and
                its input: a clock, random numbers, outside state).
        """
        chosen = self._chosen(which, "replay")
        return await on_virtual_clock(lambda: _replay(self._job, chosen))

    def replay_sync(
        self, which: Interleaving | InterleavingResult | ConcurrentCounterexample | int | Mapping[str, Any]
    ) -> InterleavingResult:
        """:meth:`replay` from synchronous code, also inside a running loop (a notebook cell)."""
        chosen = self._chosen(which, "replay")
        return run_on_virtual_clock(lambda: _replay(self._job, chosen), start=time.monotonic())

    # -- display ------------------------------------------------------------------------

    def summary(self) -> str:
        total = len(self._rows)
        runs = ", ".join(self.labels)
        text = f"Concurrent exploration of {runs}: {total} interleaving{'s' if total != 1 else ''}"
        if self.search == "exhaustive":
            text += " (every one, with partial-order reduction)" if self.complete and self.reduce else \
                " (every one)" if self.complete else " (stopped at the budget: NOT every interleaving)"
        else:
            text += f" (random, seed {self.seed})"
        if self._job.setup.invariant is not None:
            bad = sum(1 for row in self._rows if row.holds is False)
            text += f", {bad} violate the invariant"
        if any(saga.pivot is not None for saga, _ in self.runs):
            stuck = sum(1 for row in self._rows if "stuck" in row.statuses)
            text += f", {stuck} leave a run stuck"
        return text

    def to_text(self) -> str:
        lines = [self.summary()]
        for number, example in enumerate(self.counterexamples, 1):
            lines += ["", f"counterexample {number}: {example.anomaly} ({example.interleaving.label}; "
                          f"{example.interleaving.switches} context switches; explains {example.explains})",
                      f"  {example.explanation}", f"  violation: {example.violation}",
                      *("  " + line for line in example.timeline().to_text().splitlines())]
        return "\n".join(lines)

    def to_html(self) -> str:
        esc = html.escape
        parts = [f'<div class="sagakit-concurrent"><div style="font-weight:600;font-family:sans-serif;margin:4px 0">'
                 f"{esc(self.summary())}</div>"]
        for number, example in enumerate(self.counterexamples, 1):
            parts.append(
                f'<div class="sagakit-counterexample" data-anomaly="{esc(example.anomaly)}" '
                f'style="font-family:sans-serif;margin:8px 0 2px 0"><b>{number}. {esc(example.anomaly)}</b> '
                f"({esc(example.interleaving.label)}; {example.interleaving.switches} context switches; explains "
                f"{example.explains}): {esc(example.explanation)}</div>{example.timeline().svg}"
            )
        parts.append("</div>")
        return "".join(parts)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {"text/html": self.to_html(), "text/plain": self.to_text()}

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return f"<{self.summary()}>"


async def _replay(job: _Job, interleaving: Interleaving, what: str = "replay") -> InterleavingResult:
    names = tuple(saga.name for saga, _ in job.specs)
    if interleaving.sagas != names:
        raise ValueError(f"{what}: the interleaving is of runs {list(interleaving.sagas)}, these runs are "
                         f"{list(names)}")
    for run, schedule in enumerate(interleaving.faults):
        as_schedule(job.specs[run][0], schedule)  # names the step a plan lacks
    execution = await execute(job.setup, interleaving.faults, Strict(interleaving.order, what))
    return result_of(job, execution, -1, "replay")


# -- entry points -----------------------------------------------------------------------


async def explore_concurrent(
    runs: RunsLike,
    *,
    world: Callable[[], Any],
    invariant: ConcurrentInvariant | None = None,
    modes: Sequence[str] | str | None = None,
    pairs: bool = False,
    search: Literal["exhaustive", "random"] = "exhaustive",
    budget: int = 10_000,
    seed: int | None = None,
    depth: int = 3,
    max_faults: int = 2,
    reduce: bool = True,
    check: Literal["end", "every action"] = "end",
    shrink: bool = True,
    progress: bool | Callable[[int, int], Any] | None = None,
    observers: Iterable[Observer] = (),
) -> ConcurrentExploration:
    """Explore the interleavings of concurrent runs against one shared world, and name the anomalies.

    Every run executes a copy of its saga whose step actions and compensations are each one
    atomic action: a deterministic scheduler on a virtual clock decides, whenever actions
    wait, which one goes next. The world comes fresh from ``world()`` for every interleaving
    (a :class:`~sagakit.explore.World`, or a dict used as one; steps reach it as
    ``context.world``), and records which action read and wrote which key.

    **Fault plans.** With ``search="exhaustive"``, every interleaving of: the runs without
    faults; then each single-run scenario that :func:`~sagakit.explore.explore` plans for
    ``modes`` (a fault on one step, a compensation fault with its trigger), on each run (runs
    identical to an earlier one, same saga and equal input, mirror it and get none); with
    ``pairs=True``, also one such scenario on each of two runs. ``modes=()`` explores
    interleavings without faults only. With ``search="random"``, ``budget`` schedules drawn
    from ``seed``: each a fault plan (none half the time, else up to ``max_faults`` faults on
    one or more runs) and a PCT-style priority schedule of ``depth``.

    **Partial-order reduction** (``reduce=True``): actions of different runs that touch no
    common key one of them writes are explored in one order only, since either order ends in
    the same state; nothing a full search would find is lost (see ``redundant``). Branches of
    a parallel stage are always explored in every order.

    **The invariant**, ``invariant(world, runs)`` (sync or async), gets the world and each
    run's :class:`~sagakit.Run` by run number, when every run has ended; with
    ``check="every action"`` also after each action (then runs still going are ``None``, and
    any two actions that write are no longer reduced). ``False`` or an ``AssertionError`` is a
    violation, its message kept (secrets masked); another exception stops the exploration.

    Each violation is classified from the recorded reads and writes (lost update, dirty read,
    fuzzy read, else ``invariant violated``), and, with ``shrink=True``, reduced to the fewest
    faults and then the fewest context switches that still violate: see
    :attr:`ConcurrentExploration.counterexamples`. Each interleaving is plain data
    (:class:`Interleaving`) that :meth:`ConcurrentExploration.replay` or
    :func:`replay_interleaving` runs again exactly.

    Args:
        runs: two or more runs: each a :class:`~sagakit.Saga` (input ``None``) or a
            ``(saga, data)`` pair (each run gets a deep copy of its data). Different sagas need
            different names; steps may share names across sagas.
        world: a factory (sync or async) returning a fresh :class:`~sagakit.explore.World`
            (or dict) for each interleaving.
        invariant: ``invariant(world, runs)``, or ``None`` to only record outcomes.
        modes: fault modes as for :func:`~sagakit.explore.explore` (default: ``fail``,
            ``fail_after``, ``fail_compensation`` exhaustively; all five at random); ``()`` for
            none.
        pairs: also faults on two runs at once (exhaustive search).
        search: ``"exhaustive"`` or ``"random"``.
        budget: exhaustive: the most interleavings explored before stopping (the result then
            says it is not complete); random: how many schedules are drawn. At most
            :data:`~sagakit.explore.MAX_BUDGET`.
        seed: the random search's seed (``None`` draws one).
        depth: the PCT depth: how many ordering constraints a drawn schedule can satisfy.
        max_faults: the most faults a drawn plan puts on one run.
        reduce: partial-order reduction.
        check: ``"end"`` or ``"every action"``.
        shrink: reduce each violation to a minimal counterexample.
        progress: as for :func:`~sagakit.explore.explore` (counts interleavings).
        observers: observers for every run.

    Returns:
        The :class:`ConcurrentExploration`.

    Raises:
        TypeError, ValueError: an argument is invalid (the message names it): fewer than two
            runs, two sagas of one name, a world the scheduler cannot track, a budget or seed of
            the wrong type or range.
        FaultError: an unknown mode.
    """
    job = _prepare(runs, world=world, invariant=invariant, modes=modes, pairs=pairs, search=search, budget=budget,
                   seed=seed, depth=depth, max_faults=max_faults, reduce=reduce, check=check, shrink=shrink,
                   observers=observers, what="explore_concurrent")
    bar = Progress(progress, job.budget, "explore_concurrent")
    try:
        exploration = await on_virtual_clock(lambda: _run(job, bar))
    except BaseException:
        bar.close(ok=False)
        raise
    bar.close()
    return exploration


def explore_concurrent_sync(
    runs: RunsLike,
    *,
    world: Callable[[], Any],
    invariant: ConcurrentInvariant | None = None,
    modes: Sequence[str] | str | None = None,
    pairs: bool = False,
    search: Literal["exhaustive", "random"] = "exhaustive",
    budget: int = 10_000,
    seed: int | None = None,
    depth: int = 3,
    max_faults: int = 2,
    reduce: bool = True,
    check: Literal["end", "every action"] = "end",
    shrink: bool = True,
    progress: bool | Callable[[int, int], Any] | None = None,
    observers: Iterable[Observer] = (),
) -> ConcurrentExploration:
    """:func:`explore_concurrent` from synchronous code, also inside a running loop (a notebook cell)."""
    job = _prepare(runs, world=world, invariant=invariant, modes=modes, pairs=pairs, search=search, budget=budget,
                   seed=seed, depth=depth, max_faults=max_faults, reduce=reduce, check=check, shrink=shrink,
                   observers=observers, what="explore_concurrent")
    bar = Progress(progress, job.budget, "explore_concurrent")
    try:
        exploration = run_on_virtual_clock(lambda: _run(job, bar), start=time.monotonic())
    except BaseException:
        bar.close(ok=False)
        raise
    bar.close()
    return exploration


def _replay_job(runs: object, interleaving: object, world: object, invariant: object, check: object,
                observers: object) -> tuple[_Job, Interleaving]:
    job = _prepare(runs, world=world, invariant=invariant, modes=(), pairs=False, search="exhaustive", budget=1,
                   seed=0, depth=1, max_faults=1, reduce=True, check=check, shrink=False, observers=observers,
                   what="replay_interleaving")
    if isinstance(interleaving, Interleaving):
        return job, interleaving
    if isinstance(interleaving, InterleavingResult | ConcurrentCounterexample):
        return job, interleaving.interleaving
    if isinstance(interleaving, Mapping):
        return job, Interleaving.from_dict(interleaving)
    raise TypeError(f"replay_interleaving interleaving: expected an Interleaving, an InterleavingResult, a "
                    f"ConcurrentCounterexample or Interleaving.to_dict() data, got {describe(interleaving)}")


async def replay_interleaving(
    runs: RunsLike,
    interleaving: Interleaving | InterleavingResult | ConcurrentCounterexample | Mapping[str, Any],
    *,
    world: Callable[[], Any],
    invariant: ConcurrentInvariant | None = None,
    check: Literal["end", "every action"] = "end",
    observers: Iterable[Observer] = (),
) -> InterleavingResult:
    """Run ``runs`` once more in exactly the order (and with the faults) of ``interleaving``.

    The same sagas, inputs and world factory give the same actions in the same order with the
    same values read and written, in this process or another: ``interleaving`` may be plain
    data from :meth:`Interleaving.to_dict`, saved as JSON.

    Raises:
        TypeError, ValueError: an argument is invalid, or the interleaving is of other runs.
        RuntimeError: the runs did not follow the interleaving (a step depends on more than
            the world and its input).
    """
    job, chosen = _replay_job(runs, interleaving, world, invariant, check, observers)
    return await on_virtual_clock(lambda: _replay(job, chosen, "replay_interleaving"))


def replay_interleaving_sync(
    runs: RunsLike,
    interleaving: Interleaving | InterleavingResult | ConcurrentCounterexample | Mapping[str, Any],
    *,
    world: Callable[[], Any],
    invariant: ConcurrentInvariant | None = None,
    check: Literal["end", "every action"] = "end",
    observers: Iterable[Observer] = (),
) -> InterleavingResult:
    """:func:`replay_interleaving` from synchronous code, also inside a running loop."""
    job, chosen = _replay_job(runs, interleaving, world, invariant, check, observers)
    return run_on_virtual_clock(lambda: _replay(job, chosen, "replay_interleaving"), start=time.monotonic())

