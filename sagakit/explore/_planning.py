"""Planning an exploration: the modes, the exhaustive scenarios, the drawn ones, and the checks
of the arguments that say how many and from which seed. Shared by :func:`explore` and
:func:`explore_concurrent`."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from sagakit._checks import describe
from sagakit.errors import FaultError
from sagakit.explore._scenario import (
    MODE_ORDER,
    TRANSIENT_MODES,
    Scenario,
    ScenarioKind,
    Schedule,
    draw_schedule,
    modes_for,
    transient,
)
from sagakit.explore._shared import stage_positions
from sagakit.faults import COMPENSATION_MODES, Fault
from sagakit.steps import Parallel, Step

if TYPE_CHECKING:
    from sagakit.saga import Saga

__all__ = [
    "CLOCKS",
    "EXPLORE_MODES",
    "MAX_BUDGET",
    "check_budget",
    "check_modes",
    "check_seed",
    "draw_scenarios",
    "plan_scenarios",
]

#: The fault modes :func:`explore` knows, in matrix order.
EXPLORE_MODES: tuple[str, ...] = ("fail", "fail_after", "fail_compensation")

#: The most schedules one random search draws: every scenario's run is kept in memory.
MAX_BUDGET = 100_000

CLOCKS = ("virtual", "real")


def check_modes(modes: object, search: str, what: str = "explore") -> tuple[str, ...]:
    """``modes`` checked, in matrix order (the search's default for ``None``)."""
    if modes is None:
        return EXPLORE_MODES if search == "exhaustive" else MODE_ORDER
    if isinstance(modes, str):
        modes = (modes,)
    if not isinstance(modes, Sequence | set | frozenset) or not modes:
        raise TypeError(f"{what} modes: expected a non-empty list of modes from {MODE_ORDER}, got {modes!r}")
    checked: list[str] = []
    for mode in modes:
        if mode not in MODE_ORDER:
            raise FaultError(
                f"{what} modes: unknown mode {mode!r}; expected some of "
                + ", ".join(repr(known) for known in MODE_ORDER)
            )
        if mode not in checked:
            checked.append(mode)
    return tuple(sorted(checked, key=MODE_ORDER.index))


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


#: Why a step of each kind has no compensation fault (the matrix's hover text).
_NO_COMPENSATION = {
    "compensatable": "no compensation",
    "pivot": "the pivot has no compensation: once it succeeds the saga completes",
    "retriable": "a retriable step is retried forward, never compensated",
    "readonly": "a read-only step has nothing to undo",
}


def plan_scenarios(saga: Saga, modes: tuple[str, ...], pairs: bool) -> tuple[list[Scenario], dict[tuple[str, str], str]]:
    """Every exhaustive scenario to run, and why the missing matrix cells are missing.

    In order: the baseline; each step under each mode (a compensation mode with the fault that
    triggers it); each retriable step under each transient mode (its first attempt fails, the
    retry goes through); with ``pairs``, the pairs that can both take effect.
    """
    positions = stage_positions(saga)
    forward = [mode for mode in modes if mode not in COMPENSATION_MODES]
    scenarios: list[Scenario] = [Scenario(0, "baseline", ())]
    seen: set[frozenset[tuple[str, str]]] = {frozenset()}
    missing: dict[tuple[str, str], str] = {}

    def add(kind: ScenarioKind, faults: tuple[tuple[str, str], ...]) -> None:
        key = frozenset(faults)
        if key not in seen:
            seen.add(key)
            schedule = tuple((name, Fault(mode)) for name, mode in faults)  # type: ignore[arg-type]
            scenarios.append(Scenario(len(scenarios), kind, schedule))

    for member in saga.steps:
        for mode in modes:
            if mode not in COMPENSATION_MODES:
                add("single", ((member.name, mode),))
            elif member.compensate is None:
                missing[(member.name, mode)] = _NO_COMPENSATION.get(member.kind, "no compensation")
            else:
                trigger = _compensation_trigger(saga, member, positions)
                if trigger is None:
                    missing[(member.name, mode)] = "nothing after it can fail"
                else:
                    add("single", ((member.name, mode), (trigger, "fail")))
    for member in saga.steps:
        if member.kind == "retriable":
            for mode in forward:
                if mode in TRANSIENT_MODES:
                    scenarios.append(Scenario(len(scenarios), "transient", ((member.name, transient(mode)),)))
    if pairs:
        compensating = [mode for mode in modes if mode in COMPENSATION_MODES]
        choices = {
            member.name: forward + (compensating if member.compensate is not None else []) for member in saga.steps
        }
        # A forward fault past the pivot is recovered forward: it never starts a rollback.
        rolls_back = {name for name, position in positions.items()
                      if saga.forward_from is None or position < saga.forward_from}
        names = saga.step_names
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                same_stage = positions[first] == positions[second]
                for first_mode in choices[first]:
                    for second_mode in choices[second]:
                        if _pair_takes_effect(first_mode, second_mode, same_stage, second in rolls_back):
                            add("pair", ((first, first_mode), (second, second_mode)))
    return scenarios, missing


def _pair_takes_effect(first: str, second: str, same_stage: bool, second_rolls_back: bool = True) -> bool:
    """Whether faults on two steps (``first`` before ``second``) can both take effect.

    A forward fault stops the saga (rolled back, or stuck past the pivot), so a fault on a later
    stage never fires; a compensation fault fires only when a forward fault after it starts a
    rollback, which a fault past the pivot never does. Branches of one parallel stage run side
    by side, so there both may fire.
    """
    if first in COMPENSATION_MODES:
        return second not in COMPENSATION_MODES and second_rolls_back
    return same_stage


def draw_scenarios(
    saga: Saga,
    modes: tuple[str, ...],
    budget: int,
    seed: int,
    first_index: int,
    seen: set[Schedule],
    max_faults: int,
    max_delay: float,
    flaky: float,
) -> Iterator[Scenario | None]:
    """``budget`` drawn schedules, lazily, each from its own seed: a :class:`Scenario`, or
    ``None`` for a repeat of an earlier one (left out, but the draw counts)."""
    choices = modes_for(saga, modes)
    index = first_index
    for position in range(budget):
        own_seed = (seed * 1_000_003 + position) % 2**63
        schedule = draw_schedule(saga, random.Random(own_seed), choices, max_faults, max_delay, flaky)
        if schedule and schedule not in seen:
            seen.add(schedule)
            yield Scenario(index, "random", schedule, own_seed)
            index += 1
        else:
            yield None


def check_budget(budget: object, what: str) -> int:
    """``budget`` if it is an int from 1 to :data:`MAX_BUDGET`; else an error naming ``what``."""
    if isinstance(budget, bool) or not isinstance(budget, int):
        raise TypeError(f"{what}: expected an int >= 1, got {describe(budget)}")
    if budget < 1:
        raise ValueError(f"{what}: expected an int >= 1, got {budget}")
    if budget > MAX_BUDGET:
        raise ValueError(
            f"{what}: expected at most {MAX_BUDGET:,} schedules (every scenario's run is kept in memory), "
            f"got {budget:,}; for a longer search, run several explorations with different seeds"
        )
    return budget


def check_seed(seed: object, what: str) -> int:
    """``seed`` if it is an int ``>= 0``, a fresh one for ``None``; else an error naming ``what``."""
    if seed is None:
        return random.SystemRandom().randrange(2**32)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"{what}: expected an int >= 0 or None, got {describe(seed)}")
    if seed < 0:
        raise ValueError(f"{what}: expected an int >= 0 or None, got {seed!r}")
    return seed
