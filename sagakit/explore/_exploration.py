"""Failure-space exploration: every fault scenario of a saga, checked against an invariant.

:func:`explore` runs a saga once per fault scenario (every step under every fault mode,
optionally every pair of faults), each against a fresh *world* the steps act on, and checks
the caller's invariant after each run. The result, an :class:`Exploration`, is a DataFrame
and a steps-by-modes matrix coloured by outcome, which displays in a notebook.

The saga itself is left untouched: the runs use a copy with the same steps and names, so they
never reach ``saga.history``, the saga's observers or its journal (unless asked).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sagakit._checks import check_bool, check_observers, check_positive_int, check_seconds, describe
from sagakit.errors import FaultError, UnknownStepError
from sagakit.events import Observer
from sagakit.explore._clock import on_virtual_clock, run_on_virtual_clock
from sagakit.explore._coverage import Coverage
from sagakit.explore._matrix import matrix_html, matrix_text, outcome_of, summary
from sagakit.explore._planning import (
    CLOCKS,
    check_budget,
    check_modes,
    check_seed,
    draw_scenarios,
    plan_scenarios,
)
from sagakit.explore._scenario import (
    TRANSIENT_MODES,
    Counterexample,
    Scenario,
    ScenarioResult,
    as_schedule,
    check_search,
    find_counterexamples,
    recovery_of,
    run_scenario,
)
from sagakit.explore._shared import (
    Progress,
    check_optional_callable,
    check_saga,
    copier,
    derived_saga,
    run_pooled,
)
from sagakit.faults import FaultLike
from sagakit.runs import Run, RunHistory, error_message

if TYPE_CHECKING:
    import pandas as pd

    from sagakit.saga import Saga

__all__ = ["OUTCOMES", "Exploration", "explore", "explore_sync", "replay", "replay_sync"]

#: What a scenario can come to, worst last: a run status, or ``violated`` (the invariant failed).
#: ``stuck`` (a step after the pivot ran out of its forward policy: nothing compensated, an
#: operator resumes the run) is an outcome of its own, not a violation: the invariant is checked
#: on stuck runs as on the others, and decides.
OUTCOMES: tuple[str, ...] = ("completed", "compensated", "cancelled", "stuck", "compensation_failed", "violated")


@dataclass(frozen=True, slots=True)
class _Settings:
    """How an exploration ran, kept so that it can replay its scenarios."""

    search: str
    seed: int
    budget: int
    data: Any
    world: Callable[[], Any] | None
    invariant: Callable[[Any, Run], Any] | None
    observers: tuple[Observer, ...]
    virtual: bool = True

# ---------------------------------------------------------------------------------------
# exploration


_Outcome = ScenarioResult

@dataclass(frozen=True, slots=True)
class _Job:
    """An exploration's arguments, checked: what :func:`_run` needs."""

    saga: Saga
    modes: tuple[str, ...]
    pairs: bool
    shrink: bool
    limit: int
    max_faults: int
    max_delay: float
    flaky: float
    record_history: bool
    settings: _Settings


def _prepare(
    saga: Saga,
    data: Any,
    *,
    world: object,
    invariant: object,
    modes: object,
    pairs: object,
    search: object,
    budget: object,
    seed: object,
    max_faults: object,
    max_delay: object,
    flaky: object,
    shrink: object,
    concurrency: object,
    observers: object,
    record_history: object,
    clock: object,
    what: str = "explore",
) -> _Job:
    """Every argument of :func:`explore` checked, before anything runs."""
    check_saga(saga, what)
    checked_search = check_search(search, what)
    checked_modes = check_modes(modes, checked_search, what)
    check_optional_callable(world, f"{what} world", "a factory callable returning a fresh world")
    check_optional_callable(invariant, f"{what} invariant", "a callable invariant(world, run)")
    for flag, name in ((pairs, "pairs"), (record_history, "record_history"), (shrink, "shrink")):
        check_bool(flag, f"{what} {name}")
    limit = check_positive_int(concurrency, f"{what} concurrency")
    draws = check_budget(budget, f"{what} budget")
    check_positive_int(max_faults, f"{what} max_faults")
    checked_seed = check_seed(seed, f"{what} seed")
    delay = check_seconds(max_delay, f"{what} max_delay", allow_zero=True)
    if isinstance(flaky, bool) or not isinstance(flaky, int | float):
        raise TypeError(f"{what} flaky: expected a share from 0 to 1, got {describe(flaky)}")
    if not 0 <= flaky <= 1:
        raise ValueError(f"{what} flaky: expected a share from 0 to 1, got {flaky!r}")
    if clock not in CLOCKS:
        raise ValueError(f"{what} clock: expected 'virtual' or 'real', got {describe(clock)}")
    extra = check_observers(observers, f"{what} observers")
    copier(data, what)  # refuses input that cannot be copied, naming it
    settings = _Settings(
        checked_search, checked_seed, draws if checked_search == "random" else 0, data, world,  # type: ignore[arg-type]
        invariant, extra, clock == "virtual",  # type: ignore[arg-type]
    )
    return _Job(saga, checked_modes, bool(pairs), bool(shrink), limit, max_faults, delay, float(flaky),  # type: ignore[arg-type]
                bool(record_history), settings)


async def _run(job: _Job, bar: Progress) -> Exploration:
    """The exploration itself, on whatever loop it is awaited on (a virtual clock's)."""
    saga, settings = job.saga, job.settings
    fresh_data = copier(settings.data, "explore")
    planned, missing = plan_scenarios(saga, job.modes, job.pairs)
    scenarios: Iterable[Scenario | None] = planned
    if settings.search == "random":
        seen = {scenario.faults for scenario in planned}
        scenarios = itertools.chain(planned, draw_scenarios(
            saga, job.modes, settings.budget, settings.seed, len(planned), seen, job.max_faults, job.max_delay,
            job.flaky,
        ))
    derived = derived_saga(saga)
    outcomes: dict[int, ScenarioResult] = {}

    async def one(scenario: Scenario | None) -> bool:
        if scenario is None:  # a repeated draw: let the loop breathe (and a cancellation in)
            await asyncio.sleep(0)
            return False
        outcomes[scenario.index] = await run_scenario(
            saga, derived, scenario, fresh_data(), settings.world, settings.invariant, settings.observers
        )
        return True

    await run_pooled(scenarios, one, job.limit, bar)
    results = [outcomes[index] for index in sorted(outcomes)]
    found: list[Counterexample] = []
    if job.shrink and settings.invariant is not None:
        found = await find_counterexamples(
            saga, derived, results, fresh_data, settings.world, settings.invariant, settings.observers
        )
    return Exploration(saga, job.modes, results, missing, settings.invariant is not None, found, settings)


def _planned_total(job: _Job) -> int:
    planned, _ = plan_scenarios(job.saga, job.modes, job.pairs)
    return len(planned) + job.settings.budget


def _finish(job: _Job, exploration: Exploration) -> Exploration:
    if job.record_history:
        job.saga.history.extend(exploration.runs)
    return exploration


async def explore(
    saga: Saga,
    data: Any = None,
    *,
    world: Callable[[], Any] | None = None,
    invariant: Callable[[Any, Run], Any] | None = None,
    modes: Sequence[str] | str | None = None,
    pairs: bool = False,
    search: Literal["exhaustive", "random"] = "exhaustive",
    budget: int = 200,
    seed: int | None = None,
    max_faults: int = 4,
    max_delay: float = 0.0,
    flaky: float = 0.2,
    shrink: bool = True,
    concurrency: int = 8,
    progress: bool | Callable[[int, int], Any] | None = None,
    observers: Iterable[Observer] = (),
    record_history: bool = False,
    clock: Literal["virtual", "real"] = "virtual",
) -> Exploration:
    """Run ``saga`` under fault scenarios and check ``invariant`` after each run.

    The exhaustive scenarios, in order:

    * ``no faults``: the baseline, so the invariant is checked on the happy path too;
    * for every step, each forward mode in ``modes``: ``{step: "fail"}`` (the step raises
      before acting), ``{step: "fail_after"}`` (it acts, then reports failure),
      ``{step: "cancel"}`` (the run is cancelled while the step is in flight);
    * ``fail_compensation`` (and ``cancel_compensation``) for every step whose compensation
      would run: the step has a compensation and a later stage exists. The scenario pairs
      the compensation fault with a ``fail`` on the first step of the next stage, the
      smallest failure after which that compensation is the first to run. Steps without a
      compensation, or in the last stage, have no such scenario (the matrix says why);
    * for every retriable step (after the pivot), each of ``fail`` and ``fail_after`` in
      ``modes`` as a :func:`transient` fault: the first attempt fails, the retry goes through
      (retried to completion), next to the plain fault above, which fails every attempt and
      leaves the run ``stuck``;
    * with ``pairs=True``, also every combination of faults on two different steps in which
      both can take effect: a compensation fault with a forward fault on a later (or the
      same parallel) stage that rolls back (at or before the pivot), or two forward faults on
      branches of one parallel stage. Plans already listed are not repeated.

    A compensation fault is never planned (nor drawn) on a step without a compensation: the
    pivot, retriable and read-only steps have none. The invariant is checked on every run,
    stuck ones and ones retried to completion included; ``stuck`` is an outcome of its own.

    With ``search="random"`` come, after those, ``budget`` drawn schedules of any size (up
    to ``max_faults`` faults on distinct steps, any of ``modes``, some flaky, some delayed),
    each drawn from a seed made of ``seed`` and its position: the same ``seed`` draws the
    same scenarios. They are drawn as the search goes, not all beforehand. Every violation is
    then shrunk (``shrink=True``) to a minimal schedule that still violates the invariant (in
    a saga with a pivot, with a run that recovered the same way: see :func:`recovery_of`):
    see :attr:`Exploration.counterexamples`.

    Each scenario gets a fresh world from ``world()`` (steps reach it as ``context.world``),
    a deep copy of ``data``, and a run with that fault plan only (``saga.faults`` is not used).
    Then ``invariant(world, run)`` decides: returning ``False`` or raising
    ``AssertionError`` is a violation (the assertion's message is kept, secrets masked);
    ``True`` or ``None`` means it holds. Any other exception from the invariant stops the
    exploration.

    **Exact.** The runs execute on a virtual clock (a :class:`VirtualClockLoop`, on a worker
    thread when the caller's loop is an ordinary one, which stays free meanwhile): delays,
    timeouts and retry backoff cost no real time, and the order of events follows from the
    scenario alone, so the same seed gives the same events in the same order in any process.
    Retry jitter draws from a generator seeded by the scenario. World factories, steps,
    invariants and observers therefore run on that thread and loop: a world should be built
    by its factory, not borrowed from the caller's loop. ``clock="real"`` runs everything on
    the caller's loop in real time instead (and is exact only without delays).

    Args:
        saga: the saga to explore; it is not changed, and its runs here are not added to
            ``saga.history`` nor sent to its observers or journal.
        data: the input of every run (each run gets a deep copy).
        world: a factory (sync or async) for the state the steps act on, or ``None``.
        invariant: ``invariant(world, run)``, sync or async, or ``None`` to only record outcomes.
        modes: which of ``fail``, ``fail_after``, ``fail_compensation``, ``cancel`` and
            ``cancel_compensation`` to explore; by default the first three for exhaustive
            search, all five for random search.
        pairs: also explore pairs of faults.
        search: ``"exhaustive"`` (single faults, and pairs if asked) or ``"random"`` (those,
            then ``budget`` drawn schedules).
        budget: how many schedules random search draws (at most :data:`MAX_BUDGET`).
        seed: the random search's seed; ``None`` draws one (see :attr:`Exploration.seed`).
        max_faults: the most faults a drawn schedule has.
        max_delay: the longest delay, in seconds, a drawn fault adds (``0``: none).
        flaky: the share of drawn faults that fire with probability 0.5, under a seed.
        shrink: reduce each violation to a minimal counterexample.
        concurrency: how many scenarios run at once.
        progress: ``None`` shows a bar in a notebook only; ``True`` also prints to stderr
            elsewhere; ``False`` shows nothing; a callable receives ``(done, total)`` (on the
            exploration's thread).
        observers: extra observers for every scenario's run.
        record_history: also append the runs to ``saga.history``.
        clock: ``"virtual"`` (exact, the default) or ``"real"``.

    Returns:
        The :class:`Exploration`: one row per scenario, the matrix, counterexamples, coverage.

    Raises:
        TypeError, ValueError: an argument is invalid (the message names it).
        FaultError: an unknown mode.
    """
    job = _prepare(
        saga, data, world=world, invariant=invariant, modes=modes, pairs=pairs, search=search, budget=budget,
        seed=seed, max_faults=max_faults, max_delay=max_delay, flaky=flaky, shrink=shrink, concurrency=concurrency,
        observers=observers, record_history=record_history, clock=clock,
    )
    bar = Progress(progress, _planned_total(job), "explore")
    try:
        exploration = await on_virtual_clock(lambda: _run(job, bar), virtual=job.settings.virtual)
    except BaseException:
        bar.close(ok=False)
        raise
    bar.close()
    return _finish(job, exploration)


def explore_sync(
    saga: Saga,
    data: Any = None,
    *,
    world: Callable[[], Any] | None = None,
    invariant: Callable[[Any, Run], Any] | None = None,
    modes: Sequence[str] | str | None = None,
    pairs: bool = False,
    search: Literal["exhaustive", "random"] = "exhaustive",
    budget: int = 200,
    seed: int | None = None,
    max_faults: int = 4,
    max_delay: float = 0.0,
    flaky: float = 0.2,
    shrink: bool = True,
    concurrency: int = 8,
    progress: bool | Callable[[int, int], Any] | None = None,
    observers: Iterable[Observer] = (),
    record_history: bool = False,
    clock: Literal["virtual", "real"] = "virtual",
) -> Exploration:
    """:func:`explore` from synchronous code, also inside a running loop (a notebook cell).

    Same arguments and result. Outside a loop it runs on a fresh loop of this thread;
    inside one, on a worker thread's loop while this call blocks (nothing is patched).
    """
    job = _prepare(
        saga, data, world=world, invariant=invariant, modes=modes, pairs=pairs, search=search, budget=budget,
        seed=seed, max_faults=max_faults, max_delay=max_delay, flaky=flaky, shrink=shrink, concurrency=concurrency,
        observers=observers, record_history=record_history, clock=clock, what="explore",
    )
    bar = Progress(progress, _planned_total(job), "explore")
    try:
        exploration = run_on_virtual_clock(lambda: _run(job, bar), start=time.monotonic(),
                                           virtual=job.settings.virtual)
    except BaseException:
        bar.close(ok=False)
        raise
    bar.close()
    return _finish(job, exploration)


def _replay_job(
    saga: Saga, data: Any, faults: object, world: object, invariant: object, observers: object, clock: object,
    what: str,
) -> tuple[Scenario, _Settings]:
    check_saga(saga, what)
    if isinstance(faults, str | bytes) or not isinstance(faults, Mapping):
        raise TypeError(f"{what} faults: expected a fault plan (a mapping of step name to a Fault or a mode), "
                        f"got {describe(faults)}")
    check_optional_callable(world, f"{what} world", "a factory callable returning a fresh world")
    check_optional_callable(invariant, f"{what} invariant", "a callable invariant(world, run)")
    extra = check_observers(observers, f"{what} observers")
    if clock not in CLOCKS:
        raise ValueError(f"{what} clock: expected 'virtual' or 'real', got {describe(clock)}")
    copier(data, what)
    scenario = Scenario(-1, "replay", as_schedule(saga, faults))
    settings = _Settings("exhaustive", 0, 0, data, world, invariant, extra, clock == "virtual")  # type: ignore[arg-type]
    return scenario, settings


async def _replay_scenario(saga: Saga, scenario: Scenario, settings: _Settings) -> ScenarioResult:
    return await run_scenario(
        saga, derived_saga(saga), scenario, copier(settings.data, "replay")(), settings.world, settings.invariant,
        settings.observers, f"replay: {scenario.label}",
    )


async def replay(
    saga: Saga,
    data: Any = None,
    *,
    faults: Mapping[str, FaultLike],
    world: Callable[[], Any] | None = None,
    invariant: Callable[[Any, Run], Any] | None = None,
    observers: Iterable[Observer] = (),
    clock: Literal["virtual", "real"] = "virtual",
) -> ScenarioResult:
    """Run ``saga`` once under the fault plan ``faults`` exactly as :func:`explore` runs a scenario.

    A fresh world from ``world()``, a deep copy of ``data``, the run kept out of
    ``saga.history``, on the virtual clock (see :func:`explore`), then ``invariant(world, run)``.
    Given a plan from an exploration (``scenario.plan``), in this process or another, it gives
    the same outcome and the same events in the same order.

    Returns:
        The :class:`ScenarioResult` (``violated`` says whether the invariant failed).

    Raises:
        TypeError, ValueError: an argument is invalid (the message names it).
        UnknownStepError: the plan names a step the saga lacks.
    """
    scenario, settings = _replay_job(saga, data, faults, world, invariant, observers, clock, "replay")
    return await on_virtual_clock(lambda: _replay_scenario(saga, scenario, settings), virtual=settings.virtual)


def replay_sync(
    saga: Saga,
    data: Any = None,
    *,
    faults: Mapping[str, FaultLike],
    world: Callable[[], Any] | None = None,
    invariant: Callable[[Any, Run], Any] | None = None,
    observers: Iterable[Observer] = (),
    clock: Literal["virtual", "real"] = "virtual",
) -> ScenarioResult:
    """:func:`replay` from synchronous code, also inside a running loop (a notebook cell)."""
    scenario, settings = _replay_job(saga, data, faults, world, invariant, observers, clock, "replay")
    return run_on_virtual_clock(lambda: _replay_scenario(saga, scenario, settings), start=time.monotonic(),
                                virtual=settings.virtual)


class Exploration:
    """What :func:`explore` found: one row per scenario, and a steps-by-modes matrix.

    In a notebook it displays as the matrix, each cell coloured by the outcome of that
    step's fault (hover for details); pairs and the baseline are summarised below it.

    Attributes:
        saga: the explored saga.
        modes: the explored modes, in matrix order.
        runs: every scenario's :class:`~sagakit.Run`, in scenario order.
        scenarios: the DataFrame, one row per scenario: ``scenario`` (its number), ``kind``
            (``baseline``, ``single``, ``transient``, ``pair``, ``random``), ``step`` and
            ``mode`` (the fault it explores; the first one for pairs), ``step_kind`` (that
            step's kind: ``compensatable``, ``pivot``, ``retriable``, ``readonly``), ``label``,
            ``faults`` (step -> mode), ``status``, ``recovery`` (``none``, ``backward``,
            ``forward`` or ``stuck``: see :func:`recovery_of`), ``failed_step``,
            ``completed_steps``, ``compensated_steps``,
            ``invariant`` (``True`` holds, ``False`` violated, ``<NA>`` without invariant),
            ``violation`` (the message), ``outcome`` (``violated`` or the status),
            ``fired`` (an injected fault took effect), ``error_type``, ``error``,
            ``duration_ms``, ``run_id``; ``seed`` (a drawn scenario's own seed).
        search: ``"exhaustive"`` or ``"random"``.
        seed: the random search's seed (drawn when not given): the same seed, saga and
            options draw the same scenarios again.
        counterexamples: each distinct violation shrunk to a minimal fault schedule, in the
            order they were found (empty without an invariant or with ``shrink=False``).
    """

    __slots__ = (
        "_frame_cache",
        "_missing",
        "_outcomes",
        "_settings",
        "checked",
        "counterexamples",
        "modes",
        "runs",
        "saga",
        "search",
        "seed",
    )

    def __init__(
        self,
        saga: Saga,
        modes: tuple[str, ...],
        outcomes: Sequence[_Outcome],
        missing: Mapping[tuple[str, str], str],
        checked: bool,
        counterexamples: Sequence[Counterexample] = (),
        settings: _Settings | None = None,
    ) -> None:
        self.saga = saga
        self.modes = modes
        self.checked = checked
        self._outcomes = tuple(outcomes)
        self._missing = dict(missing)
        self._settings = settings or _Settings("exhaustive", 0, 0, None, None, None, ())
        self.search = self._settings.search
        self.seed = self._settings.seed
        self.counterexamples: list[Counterexample] = list(counterexamples)
        self.runs: list[Run] = [outcome.run for outcome in outcomes]
        self._frame_cache: pd.DataFrame | None = None

    @property
    def scenarios(self) -> pd.DataFrame:
        """The DataFrame, one row per scenario (see the class docstring); built on first use."""
        if self._frame_cache is None:
            self._frame_cache = self._frame()
        return self._frame_cache

    def _frame(self) -> pd.DataFrame:
        import pandas as pd

        outcomes = self._outcomes
        runs = [outcome.run for outcome in outcomes]
        errors = [run.error for run in runs]
        kinds = {member.name: member.kind for member in self.saga.steps}
        return pd.DataFrame(
            {
                "scenario": pd.array([o.scenario.index for o in outcomes], dtype="int64"),
                "kind": pd.array([o.scenario.kind for o in outcomes], dtype="string"),
                "step": pd.array([o.scenario.step for o in outcomes], dtype="string"),
                "mode": pd.array([o.scenario.mode for o in outcomes], dtype="string"),
                "step_kind": pd.array([kinds.get(o.scenario.step) if o.scenario.step else None for o in outcomes],
                                      dtype="string"),
                "label": pd.array([o.scenario.label for o in outcomes], dtype="string"),
                "faults": [o.scenario.plan for o in outcomes],
                "status": pd.array([run.status for run in runs], dtype="string"),
                "recovery": pd.array([recovery_of(run) for run in runs], dtype="string"),
                "failed_step": pd.array([run.failed_step for run in runs], dtype="string"),
                "completed_steps": [tuple(run.completed_steps) for run in runs],
                "compensated_steps": [tuple(run.compensated_steps) for run in runs],
                "invariant": pd.array([o.holds for o in outcomes], dtype="boolean"),
                "violation": pd.array([o.violation for o in outcomes], dtype="string"),
                "outcome": pd.array([outcome_of(o) for o in outcomes], dtype="string"),
                "fired": pd.array([run.injected for run in runs], dtype="bool"),
                "error_type": pd.array([type(e).__name__ if e is not None else None for e in errors], dtype="string"),
                "error": pd.array([error_message(e, run=run) for e, run in zip(errors, runs, strict=True)],
                                  dtype="string"),
                "duration_ms": pd.array([run.duration_ms for run in runs], dtype="float64"),
                "run_id": pd.array([run.run_id for run in runs], dtype="string"),
                "seed": pd.array([o.scenario.seed for o in outcomes], dtype="Int64"),
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
        return not any(outcome.holds is False for outcome in self._outcomes)

    @property
    def history(self) -> RunHistory:
        """The scenarios' runs as a :class:`~sagakit.RunHistory`, for the analysis helpers."""
        return RunHistory(self.runs)

    @property
    def results(self) -> tuple[ScenarioResult, ...]:
        """Every scenario with its run and verdict, in scenario order."""
        return self._outcomes

    def scenario(self, number: int) -> Scenario:
        """Scenario ``number`` (its ``scenario`` column)."""
        if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < len(self._outcomes):
            raise ValueError(f"scenario: expected a scenario number from 0 to {len(self._outcomes) - 1}, got {number!r}")
        return self._outcomes[number].scenario

    def _chosen(self, scenario: object, what: str) -> Scenario:
        if isinstance(scenario, bool):
            raise TypeError(f"{what} scenario: expected a Scenario, a ScenarioResult, a Counterexample, a scenario "
                            f"number or a fault plan, got {describe(scenario)}")
        if isinstance(scenario, int):
            return self.scenario(scenario)
        if isinstance(scenario, Scenario):
            return scenario
        if isinstance(scenario, ScenarioResult | Counterexample):
            return scenario.scenario
        if isinstance(scenario, Mapping):
            return Scenario(-1, "replay", as_schedule(self.saga, scenario))
        raise TypeError(f"{what} scenario: expected a Scenario, a ScenarioResult, a Counterexample, a scenario "
                        f"number or a fault plan, got {describe(scenario)}")

    async def _replay(self, chosen: Scenario, observers: tuple[Observer, ...]) -> ScenarioResult:
        settings = self._settings
        fresh = copier(settings.data, "replay")
        return await run_scenario(
            self.saga, derived_saga(self.saga), chosen, fresh(), settings.world, settings.invariant,
            (*settings.observers, *observers), f"replay: {chosen.label}",
        )

    async def replay(
        self,
        scenario: Scenario | ScenarioResult | Counterexample | int | Mapping[str, FaultLike],
        *,
        observers: Iterable[Observer] = (),
    ) -> ScenarioResult:
        """Run a scenario again, exactly: same fault schedule (flaky faults from the start of
        their seeded draws), a fresh world, the same input, the invariant checked again, on
        the exploration's clock.

        Args:
            scenario: a :class:`Scenario`, a :class:`ScenarioResult` (from :attr:`results`),
                a :class:`Counterexample` (from :attr:`counterexamples`: its minimal
                scenario), a scenario number, or a fault plan (step -> fault or mode).
            observers: observers for the replayed run (to watch it on a diagram, say).

        Returns:
            The :class:`ScenarioResult`: same outcome and same order of events as before.
        """
        chosen = self._chosen(scenario, "replay")
        extra = check_observers(observers, "replay observers")
        return await on_virtual_clock(lambda: self._replay(chosen, extra), virtual=self._settings.virtual)

    def replay_sync(
        self,
        scenario: Scenario | ScenarioResult | Counterexample | int | Mapping[str, FaultLike],
        *,
        observers: Iterable[Observer] = (),
    ) -> ScenarioResult:
        """:meth:`replay` from synchronous code, also inside a running loop (a notebook cell)."""
        chosen = self._chosen(scenario, "replay")
        extra = check_observers(observers, "replay observers")
        return run_on_virtual_clock(lambda: self._replay(chosen, extra), start=time.monotonic(),
                                    virtual=self._settings.virtual)

    async def _shrink(self, chosen: Scenario) -> Counterexample:
        settings = self._settings
        if settings.invariant is None:
            raise ValueError("shrink: this exploration has no invariant to violate")
        first = await self._replay(chosen, ())
        if not first.violated:
            raise ValueError(f"shrink: scenario {first.scenario.label!r} does not violate the invariant")
        found = await find_counterexamples(
            self.saga, derived_saga(self.saga), [first], copier(settings.data, "shrink"), settings.world,
            settings.invariant, settings.observers,
        )
        return found[0]

    async def shrink(
        self, scenario: Scenario | ScenarioResult | Counterexample | int | Mapping[str, FaultLike]
    ) -> Counterexample:
        """Reduce a violating scenario (or fault plan) to a minimal one that still violates.

        Raises:
            ValueError: the exploration had no invariant, or the scenario does not violate it.
        """
        chosen = self._chosen(scenario, "shrink")
        return await on_virtual_clock(lambda: self._shrink(chosen), virtual=self._settings.virtual)

    def shrink_sync(
        self, scenario: Scenario | ScenarioResult | Counterexample | int | Mapping[str, FaultLike]
    ) -> Counterexample:
        """:meth:`shrink` from synchronous code, also inside a running loop (a notebook cell)."""
        chosen = self._chosen(scenario, "shrink")
        return run_on_virtual_clock(lambda: self._shrink(chosen), start=time.monotonic(),
                                    virtual=self._settings.virtual)

    @property
    def data(self) -> Any:
        """The input every scenario's run received (a deep copy each)."""
        return self._settings.data

    @property
    def coverage(self) -> Coverage:
        """Which failure points (step or compensation x mode) the scenarios exercised."""
        minimal = [found.scenario.faults for found in self.counterexamples]
        return Coverage(self.saga, self.modes, self._outcomes, minimal)

    def matrix(self, *, transient: bool = False) -> pd.DataFrame:
        """Outcome per step (rows) and mode (columns); ``n/a`` where there is no scenario.

        A fault on a retriable step (after the pivot) fails every attempt, so its cell says
        what happens when the step's forward policy runs out (``stuck``, unless the invariant
        is violated). With ``transient=True``: the outcomes of the ``transient`` scenarios
        instead, where only the first attempt fails and the retry goes through (retried to
        completion): one row per retriable step, one column per forward mode it takes
        (``fail``, ``fail_after``).
        """
        import pandas as pd

        kind = "transient" if transient else "single"
        cells = {(o.scenario.step, o.scenario.mode): outcome_of(o) for o in self._outcomes if o.scenario.kind == kind}
        if transient:
            names = [member.name for member in self.saga.steps if member.kind == "retriable"]
            modes = [mode for mode in self.modes if mode in TRANSIENT_MODES]
        else:
            names, modes = list(self.saga.step_names), list(self.modes)
        columns = {mode: [cells.get((name, mode), "n/a") for name in names] for mode in modes}
        frame = pd.DataFrame(columns, index=pd.Index(names, name="step"), dtype="string")
        frame.columns.name = "mode"
        return frame

    def outcome(self, step: str, mode: str, *, transient: bool = False) -> str:
        """The outcome of the single-fault scenario ``{step: mode}`` (``n/a`` if none); with
        ``transient=True``, of the fault failing only the step's first attempt."""
        if step not in self.saga.step_names:
            raise UnknownStepError(step, self.saga.step_names, saga=self.saga.name)
        if mode not in self.modes:
            raise FaultError(f"mode {mode!r} was not explored; explored: {', '.join(self.modes)}")
        matrix = self.matrix(transient=transient)
        if step not in matrix.index or mode not in matrix.columns:
            return "n/a"
        return str(matrix.loc[step, mode])

    @property
    def stuck(self) -> pd.DataFrame:
        """The scenarios whose run ended stuck (a step after the pivot ran out of its forward
        policy), whether or not the invariant held."""
        frame = self.scenarios
        return frame[frame["status"].eq("stuck").fillna(False).astype(bool)]

    # -- display ------------------------------------------------------------------------

    def _summary(self) -> str:
        return summary(self)

    def to_text(self) -> str:
        """The matrix as plain text (and, for a saga with retriable steps, the outcomes when only
        their first attempt fails), with notes: the baseline, pairs, violations, stuck runs."""
        return matrix_text(self)

    def to_html(self) -> str:
        """The matrix as an HTML table, coloured by outcome, with details on hover (and, for a
        saga with retriable steps, a second table: their first attempt failing only)."""
        return matrix_html(self, self._missing)

    def _repr_html_(self) -> str:
        return self.to_html()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {"text/html": self.to_html(), "text/plain": self.to_text()}

    def __len__(self) -> int:
        return len(self._outcomes)

    def __repr__(self) -> str:
        return f"<{self._summary()}>"
