"""How interleavings are chosen: exhaustive search with partial-order reduction, PCT-style random
search, context-bounded search (for shrinking), and guided and exact replays.

Every search here is *stateless*: an interleaving is executed from the start each time, and a
chooser (see :class:`~sagakit.explore._interleave.Chooser`) decides at each point where actions
wait. The exhaustive search is a depth-first walk of those decisions.

**Partial-order reduction.** Two actions *conflict* when one writes a world key the other
reads or writes; two actions of one run are always treated as dependent (a run's actions are
ordered by the run itself, and branches of a parallel stage can cancel each other). Orders
that differ only in swapping independent actions end in the same state, so only one of them
needs to run. The walk is Source-DPOR (Abdulla, Aronis, Jonsson, Sagonas, *Optimal dynamic
partial order reduction*, POPL 2014) with sleep sets: after each execution, every pair of
actions of different runs that race (conflict, with nothing in between ordering them) adds
the reversal to the decision point before the first of them, and an action already explored
from a decision point sleeps in the branches where it stays independent. Every branch of a
parallel stage is explored in every order. Reads and writes are those observed, so what one
action does after another changes it is seen when that order runs.

With the invariant checked after every action, intermediate states matter too: any two
actions that write are then dependent as well.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from sagakit.explore._interleave import ActionKey, Performed
from sagakit.explore._world import Footprint

__all__ = ["Bounded", "Dpor", "Guided", "Pct", "Strict", "prefer", "switches"]


def prefer(enabled: Sequence[ActionKey], previous: ActionKey | None) -> list[ActionKey]:
    """``enabled`` with the actions of the previous action's run first (no context switch)."""
    if previous is None:
        return list(enabled)
    same = [key for key in enabled if key[0] == previous[0]]
    return same + [key for key in enabled if key[0] != previous[0]]


def switches(order: Sequence[ActionKey]) -> int:
    """How many times the order passes from one run to another."""
    return sum(1 for before, after in itertools.pairwise(order) if before[0] != after[0])


def _dependent(first: ActionKey, first_print: Footprint, second: ActionKey, second_print: Footprint,
               every_action: bool) -> bool:
    if first[0] == second[0]:
        return True
    if first_print.conflicts(second_print):
        return True
    return every_action and bool(first_print.writes) and bool(second_print.writes)


@dataclass(slots=True)
class _Node:
    """One decision point of the walk: what waited, what to try, what sleeps, what each did."""

    enabled: tuple[ActionKey, ...]
    backtrack: list[ActionKey]
    sleep: dict[ActionKey, Footprint]
    choice: ActionKey
    done: set[ActionKey] = field(default_factory=set)
    footprints: dict[ActionKey, Footprint] = field(default_factory=dict)


class Dpor:
    """The exhaustive walk of one fault plan's interleavings (with ``reduce=False``, all of them).

    Use: ``while True: walk = dpor.walk(); execution = await execute(..., walk); ...;
    if not dpor.advance(execution.actions): break``. ``walk.blocked`` marks an execution that
    only repeats an order already covered (it is not counted).
    """

    __slots__ = ("every_action", "fresh", "reduce", "stack")

    def __init__(self, *, reduce: bool = True, every_action: bool = False) -> None:
        self.reduce = reduce
        self.every_action = every_action
        self.stack: list[_Node] = []
        self.fresh = 0  # the first position whose action is new in the next execution

    def walk(self) -> Walk:
        return Walk(self)

    def advance(self, actions: Sequence[Performed]) -> bool:
        """Learn from an execution's actions; set up the next one. False when the walk is over."""
        if self.reduce:
            self._races(actions)
        stack = self.stack
        while stack:
            node = stack[-1]
            node.done.add(node.choice)
            if self.reduce:
                node.sleep[node.choice] = node.footprints.get(node.choice, Footprint())
            for key in node.backtrack:
                if key not in node.done and key not in node.sleep:
                    node.choice = key
                    self.fresh = len(stack) - 1
                    return True
            stack.pop()
        return False

    def _races(self, actions: Sequence[Performed]) -> None:
        stack = self.stack
        count = min(len(actions), len(stack))
        every_action = self.every_action
        # Happens-before as bit sets: ``before[j]`` holds the actions ordered before action j,
        # ``after[i]`` the actions ordered after action i; ``racing[j]`` the earlier actions of
        # other runs that action j depends on directly.
        before = [0] * count
        after = [0] * count
        racing = [0] * count
        for j in range(count):
            later = actions[j]
            bits = 0
            direct = 0
            for i in range(j):
                earlier = actions[i]
                if earlier.run == later.run:
                    bits |= (1 << i) | before[i]
                elif _dependent(earlier.key, earlier.footprint, later.key, later.footprint, every_action):
                    bits |= (1 << i) | before[i]
                    direct |= 1 << i
            before[j] = bits
            racing[j] = direct
            flag = 1 << j
            while bits:
                low = bits & -bits
                after[low.bit_length() - 1] |= flag
                bits ^= low
        for j in range(max(self.fresh, 1), count):
            candidates = racing[j]
            while candidates:
                low = candidates & -candidates
                candidates ^= low
                i = low.bit_length() - 1
                between = ((1 << j) - 1) & ~((1 << (i + 1)) - 1)
                if before[j] & after[i] & between:
                    continue  # ordered through another action: not a race of these two
                # Reversing the race: what ran after action i without depending on it, then action j.
                members = (between & ~after[i]) | (1 << j)
                initials = []
                rest = members
                while rest:
                    bit = rest & -rest
                    rest ^= bit
                    k = bit.bit_length() - 1
                    if not before[k] & members:
                        initials.append(actions[k].key)
                node = stack[i]
                if any(key in node.backtrack for key in initials):
                    continue
                ready = [key for key in initials if key in node.enabled]
                awake = [key for key in ready if key not in node.sleep]
                if awake or ready:
                    node.backtrack.append((awake or ready)[0])
                else:  # cannot happen when runs are deterministic; stay sound regardless
                    node.backtrack.extend(key for key in node.enabled if key not in node.backtrack)


class Walk:
    """One execution of a :class:`Dpor` walk: follows the decisions made so far, then extends them."""

    __slots__ = ("blocked", "dpor")

    def __init__(self, dpor: Dpor) -> None:
        self.dpor = dpor
        self.blocked = False

    def choose(self, position: int, enabled: Sequence[ActionKey], previous: ActionKey | None) -> ActionKey:
        dpor = self.dpor
        stack = dpor.stack
        if position < len(stack):
            node = stack[position]
            if node.enabled != tuple(enabled):
                raise RuntimeError(
                    f"explore_concurrent: the runs did not repeat themselves: at action {position} the actions "
                    f"waiting were {list(enabled)}, before {list(node.enabled)}; steps must act only on the world "
                    "and their input (no clocks, random numbers or outside state) to be explored"
                )
            return node.choice
        ordered = prefer(enabled, previous)
        if self.blocked:
            return ordered[0]
        sleep: dict[ActionKey, Footprint] = {}
        if stack and dpor.reduce:
            parent = stack[-1]
            made = parent.footprints.get(parent.choice, Footprint())
            sleep = {
                key: footprint for key, footprint in parent.sleep.items()
                if not _dependent(key, footprint, parent.choice, made, dpor.every_action)
            }
        awake = [key for key in ordered if key not in sleep]
        if not awake:
            self.blocked = True  # every order from here repeats one already explored
            return ordered[0]
        choice = awake[0]
        if dpor.reduce:
            # Branches of one run are reordered eagerly: one may cancel another.
            backtrack = [choice, *(key for key in ordered if key[0] == choice[0] and key != choice)]
        else:
            backtrack = [choice, *(key for key in ordered if key != choice)]
        stack.append(_Node(tuple(enabled), backtrack, sleep, choice))
        return choice

    def performed(self, action: Performed) -> None:
        stack = self.dpor.stack
        if action.position < len(stack) and stack[action.position].choice == action.key:
            stack[action.position].footprints[action.key] = action.footprint


class Pct:
    """A PCT-style random schedule (Burckhardt et al., *A randomized scheduler with probabilistic
    guarantees of finding bugs*, ASPLOS 2010): each run gets a random priority, the highest
    waiting run goes next, and at ``depth - 1`` random points the running run drops below all
    others. A bug needing ``d`` ordering constraints is found with probability at least
    ``1 / (runs * length**(d - 1))`` per schedule."""

    __slots__ = ("changes", "priority", "rng")

    def __init__(self, rng: random.Random, runs: int, depth: int, length: int) -> None:
        self.rng = rng
        order = list(range(runs))
        rng.shuffle(order)
        self.priority = {run: depth + rank for rank, run in enumerate(order)}
        points = rng.sample(range(1, max(length, 1) + 1), min(depth - 1, max(length, 1)))
        self.changes = {position: depth - 1 - rank for rank, position in enumerate(sorted(points))}

    def choose(self, position: int, enabled: Sequence[ActionKey], previous: ActionKey | None) -> ActionKey:
        best = max(self.priority[key[0]] for key in enabled)
        runs = [key for key in enabled if self.priority[key[0]] == best]
        if position in self.changes:
            self.priority[runs[0][0]] = self.changes[position]
            best = max(self.priority[key[0]] for key in enabled)
            runs = [key for key in enabled if self.priority[key[0]] == best]
        return runs[0] if len(runs) == 1 else self.rng.choice(runs)

    def performed(self, action: Performed) -> None:
        pass


class Strict:
    """Replays an order exactly; anything else is an error saying where the runs diverged."""

    __slots__ = ("order", "what")

    def __init__(self, order: Sequence[ActionKey], what: str = "replay") -> None:
        self.order = tuple(order)
        self.what = what

    def choose(self, position: int, enabled: Sequence[ActionKey], previous: ActionKey | None) -> ActionKey:
        if position < len(self.order) and self.order[position] in enabled:
            return self.order[position]
        expected = f"run {self.order[position][0]} {self.order[position][1]!r} ({self.order[position][2]})" \
            if position < len(self.order) else "the end of every run"
        raise RuntimeError(
            f"{self.what}: the runs did not follow the interleaving at action {position}: it has {expected}, but "
            f"the actions waiting were {list(enabled)}. Steps must act only on the world and their input (no "
            "clocks, random numbers or outside state), and the sagas, inputs and world factory must be the same"
        )

    def performed(self, action: Performed) -> None:
        pass


class Guided:
    """Follows an order where it can (the first of its remaining actions that waits), else keeps
    to the previous action's run: to try an old interleaving under changed faults."""

    __slots__ = ("remaining",)

    def __init__(self, order: Sequence[ActionKey]) -> None:
        self.remaining = list(order)

    def choose(self, position: int, enabled: Sequence[ActionKey], previous: ActionKey | None) -> ActionKey:
        for index, key in enumerate(self.remaining):
            if key in enabled:
                del self.remaining[index]
                return key
        return prefer(enabled, previous)[0]

    def performed(self, action: Performed) -> None:
        pass


@dataclass(slots=True)
class _Choice:
    options: list[ActionKey]
    costs: list[int]
    index: int = 0
    enabled: tuple[ActionKey, ...] = ()


class Bounded:
    """A walk of every interleaving with at most ``bound`` context switches (fewest first at each
    point). Use as :class:`Dpor`: ``walk()``, execute, ``advance()``."""

    __slots__ = ("bound", "stack")

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self.stack: list[_Choice] = []

    def walk(self) -> _BoundedWalk:
        return _BoundedWalk(self)

    def advance(self) -> bool:
        stack = self.stack
        while stack:
            top = stack[-1]
            spent = sum(choice.costs[choice.index] for choice in stack[:-1])
            while top.index + 1 < len(top.options):
                top.index += 1
                if spent + top.costs[top.index] <= self.bound:
                    return True
            stack.pop()
        return False


class _BoundedWalk:
    __slots__ = ("search",)

    def __init__(self, search: Bounded) -> None:
        self.search = search

    def choose(self, position: int, enabled: Sequence[ActionKey], previous: ActionKey | None) -> ActionKey:
        stack = self.search.stack
        if position < len(stack):
            choice = stack[position]
            if choice.enabled != tuple(enabled):
                raise RuntimeError(f"explore_concurrent: the runs did not repeat themselves at action {position}")
            return choice.options[choice.index]
        ordered = prefer(enabled, previous)
        costs = [0 if previous is None or key[0] == previous[0] else 1 for key in ordered]
        spent = sum(choice.costs[choice.index] for choice in stack)
        index = next((i for i, cost in enumerate(costs) if spent + cost <= self.search.bound), 0)
        stack.append(_Choice(ordered, costs, index, tuple(enabled)))
        return ordered[index]

    def performed(self, action: Performed) -> None:
        pass
