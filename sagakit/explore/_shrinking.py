"""Shrinking a violation between concurrent runs: to the fewest faults, then the fewest context
switches, that still show the same anomaly."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sagakit.explore._anomaly import Anomaly, classify
from sagakit.explore._interleave import ActionKey, Chooser, Execution, Setup, execute
from sagakit.explore._scenario import Schedule, simpler_faults
from sagakit.explore._search import Bounded, Guided, switches

__all__ = ["anomalies_of", "shrink_execution"]

#: The most executions shrinking one violation may take.
_SHRINK_LIMIT = 2_000


def anomalies_of(execution: Execution, text: Callable[[Any, Any], str] | None = None) -> tuple[Anomaly, ...]:
    """The anomalies of a violating execution, up to the action after which it was violated."""
    actions, accesses = execution.actions, execution.accesses
    if execution.violated_after is not None:
        last = execution.violated_after
        actions = actions[: last + 1]
        accesses = [access for access in accesses if access.action <= last]
    if text is None:
        return classify(actions, accesses, execution.invariant_keys)
    return classify(actions, accesses, execution.invariant_keys, text)


def _story(execution: Execution) -> tuple[str, str]:
    """The anomaly (kind and key) that explains an execution's violation."""
    found = anomalies_of(execution)
    return (found[0].kind, repr(found[0].key)) if found else ("invariant violated", "None")


class _Shrinking:
    """One violation being shrunk: what must stay the same, and the executions spent."""

    def __init__(self, setup: Setup, story: tuple[str, str]) -> None:
        self.setup = setup
        self.story = story
        self.spent = 0

    def keeps(self, execution: Execution) -> bool:
        """Whether ``execution`` still violates the invariant, with the same anomaly."""
        return execution.violated and _story(execution) == self.story

    async def attempt(self, faults: tuple[Schedule, ...], chooser: Chooser) -> Execution:
        self.spent += 1
        return await execute(self.setup, faults, chooser)

    async def with_faults(self, faults: tuple[Schedule, ...], guide: Sequence[ActionKey], bound: int
                          ) -> Execution | None:
        """An execution under ``faults`` that keeps the violation: the guide's order first, then
        every order with at most ``bound`` context switches (within the shrinking budget)."""
        guided = await self.attempt(faults, Guided(guide))
        if self.keeps(guided):
            return guided
        return await self.bounded(faults, bound)

    async def bounded(self, faults: tuple[Schedule, ...], bound: int) -> Execution | None:
        search = Bounded(bound)
        while self.spent < _SHRINK_LIMIT:
            execution = await self.attempt(faults, search.walk())
            if self.keeps(execution) and switches(execution.order) <= bound:
                return execution
            if not search.advance():
                return None
        return None


async def shrink_execution(setup: Setup, execution: Execution) -> tuple[Execution, int]:
    """The violation with the fewest faults, then the fewest context switches, found from
    ``execution``, with the same anomaly (greedy over the faults, then an exhaustive search by
    increasing number of switches); and how many executions that took."""
    shrinking = _Shrinking(setup, _story(execution))
    current = execution
    changed = True
    while changed and shrinking.spent < _SHRINK_LIMIT:
        changed = False
        faults = current.faults
        candidates: list[tuple[Schedule, ...]] = []
        for run, schedule in enumerate(faults):  # without one fault
            for position in range(len(schedule)):
                candidates.append((*faults[:run], schedule[:position] + schedule[position + 1:], *faults[run + 1:]))
        for run, schedule in enumerate(faults):  # with one fault simpler
            for position, (name, fault) in enumerate(schedule):
                for simpler in simpler_faults(fault):
                    edited = (*schedule[:position], (name, simpler), *schedule[position + 1:])
                    candidates.append((*faults[:run], edited, *faults[run + 1:]))
        for candidate in candidates:
            found = await shrinking.with_faults(candidate, current.order, switches(current.order))
            if found is not None:
                current, changed = found, True
                break
    # Then the fewest context switches for those faults: every order with 0, 1, 2 ... of them.
    lowest = max(len({key[0] for key in current.order}) - 1, 0)
    for bound in range(lowest, switches(current.order)):
        if shrinking.spent >= _SHRINK_LIMIT:
            break
        found = await shrinking.bounded(current.faults, bound)
        if found is not None:
            current = found
            break
    return current, shrinking.spent
