"""``assert_isolated`` and ``replay_interleaving``: concurrent exploration as a test assertion."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from sagakit._checks import check_bool
from sagakit._sync import run_sync
from sagakit.testing._assertions import InvariantViolated, _source_name, stuck_text
from sagakit.testing._settings import DEFAULT_BUDGET, Record, session

if TYPE_CHECKING:
    from sagakit.events import Observer
    from sagakit.explore import (
        ConcurrentCounterexample,
        ConcurrentExploration,
        Interleaving,
        InterleavingResult,
    )
    from sagakit.runs import Run
    from sagakit.saga import Saga

__all__ = [
    "NoneStuck",
    "assert_isolated",
    "assert_isolated_sync",
    "interleaving_replay_line",
    "replay_interleaving",
    "replay_interleaving_sync",
]

#: The most interleavings an exhaustive ``assert_isolated`` explores unless told otherwise.
EXHAUSTIVE_BUDGET = 10_000


def interleaving_replay_line(interleaving: Interleaving, world: Any, invariant: Any, runs: str = "runs",
                             allow_stuck: bool = True) -> str:
    """The one line that replays ``interleaving`` (plain data, written out) with :func:`replay_interleaving`."""
    return (
        f"await sagakit.testing.replay_interleaving({runs}, {interleaving.to_dict()!r}, "
        f"world={_source_name(world, 'world')}, invariant={_source_name(invariant, 'invariant')}"
        + (", allow_stuck=False)" if not allow_stuck else ")")
    )


class NoneStuck:
    """A concurrent invariant that also fails when any run ended stuck (``allow_stuck=False``):
    the caller's invariant first (its failure wins), then ``run 1 (order) stuck at 'ship' ...``."""

    __slots__ = ("invariant",)

    def __init__(self, invariant: Callable[[Any, tuple[Any, ...]], Any] | None) -> None:
        self.invariant = invariant

    async def __call__(self, world: Any, runs: tuple[Run | None, ...]) -> bool:
        if self.invariant is not None:
            verdict = self.invariant(world, runs)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            if verdict is not None and not verdict:
                return False
        stuck = [f"run {number} ({run.saga}) {stuck_text(run)}" for number, run in enumerate(runs)
                 if run is not None and run.status == "stuck"]
        if stuck:
            raise AssertionError("; ".join(stuck))
        return True


def _checked(invariant: Callable[[Any, tuple[Any, ...]], Any] | None, allow_stuck: object, what: str
             ) -> Callable[[Any, tuple[Any, ...]], Any] | None:
    check_bool(allow_stuck, f"{what} allow_stuck")
    return invariant if allow_stuck else NoneStuck(invariant)


async def assert_isolated(
    runs: Sequence[Saga | tuple[Saga, Any]],
    *,
    world: Callable[[], Any],
    invariant: Callable[[Any, tuple[Any, ...]], Any],
    modes: Sequence[str] | str | None = None,
    pairs: bool = False,
    search: Literal["exhaustive", "random"] = "exhaustive",
    budget: int | None = None,
    seed: int | None = None,
    depth: int = 3,
    max_faults: int = 2,
    reduce: bool = True,
    check: Literal["end", "every action"] = "end",
    allow_stuck: bool = True,
) -> ConcurrentExploration:
    """Explore concurrent runs and fail if ``invariant`` is violated in any interleaving.

    Runs :func:`sagakit.explore.explore_concurrent` and shrinks each violation to its minimal
    interleaving. By default the search is exhaustive (every interleaving under every single
    fault, reduced), and a search that the budget cuts short fails too: a test that claims
    isolation must not pass on part of the evidence. With ``search="random"``, ``budget`` and
    ``seed`` default to the plugin's ``--sagakit-budget`` and ``--sagakit-seed`` (else 200
    schedules and a fresh seed), as for :func:`assert_invariant`.

    Args:
        runs: two or more runs: sagas or ``(saga, data)`` pairs.
        world: a factory for the shared :class:`~sagakit.explore.World` (or dict).
        invariant: ``invariant(world, runs)``: returns ``False`` or raises ``AssertionError``
            when violated.
        modes: the fault modes, as for :func:`~sagakit.explore.explore_concurrent`.
        pairs: also faults on two runs at once.
        search: ``"exhaustive"`` (the default) or ``"random"``.
        budget: exhaustive: the most interleavings (default 10,000); random: the schedules
            drawn (``--sagakit-budget``, else 200).
        seed: the random search's seed (the session's, else a fresh one).
        depth: the PCT depth of drawn schedules.
        max_faults: the most faults a drawn plan puts on one run.
        reduce: partial-order reduction.
        check: ``"end"`` or ``"every action"``.
        allow_stuck: whether a run may end ``stuck`` (a step after its pivot ran out of its
            forward policy, say because another run took what it needed); with ``False`` an
            interleaving in which a run ends stuck fails too (``run 1 (order) stuck at
            'ship' ...``), its anomaly named from the reads and writes.

    Returns:
        The :class:`~sagakit.explore.ConcurrentExploration`, when the invariant held in every
        interleaving.

    Raises:
        InvariantViolated: an ``AssertionError`` listing each minimal counterexample: the
            anomaly's name and explanation, the violation, the interleaving, its timeline, and
            the one line that replays it; or saying that the exhaustive search was cut short.
    """
    __tracebackhide__ = True  # pytest leaves this frame, and the input it holds, out of reports
    from sagakit.explore import explore_concurrent

    if invariant is None or not callable(invariant):
        raise TypeError(f"assert_isolated invariant: expected a callable invariant(world, runs), got {invariant!r}")
    if search == "random":
        chosen_budget = budget if budget is not None else session.budget if session.budget is not None \
            else DEFAULT_BUDGET
    else:
        chosen_budget = budget if budget is not None else EXHAUSTIVE_BUDGET
    chosen_seed = seed if seed is not None else session.seed
    checked = _checked(invariant, allow_stuck, "assert_isolated")
    exploration = await explore_concurrent(
        runs, world=world, invariant=checked, modes=modes, pairs=pairs, search=search, budget=chosen_budget,
        seed=chosen_seed, depth=depth, max_faults=max_faults, reduce=reduce, check=check, progress=False,
    )
    violations = len(exploration.violations)
    frame = exploration.interleavings
    stuck = int(frame["stuck"].gt(0).sum()) if len(frame) else 0
    keep = session.keep_explorations or violations > 0
    session.records.append(
        Record(session.test, ", ".join(exploration.labels), len(exploration), violations, exploration.seed,
               f"concurrent {exploration.search}", exploration if keep else None, stuck)
    )
    if violations:
        raise InvariantViolated(_message(exploration, world, invariant, bool(allow_stuck)), exploration,
                                exploration.counterexamples)
    if search == "exhaustive" and not exploration.complete:
        raise InvariantViolated(
            f"{exploration.summary()}: the exhaustive search stopped after {len(exploration)} interleavings, "
            f"so isolation is not shown; raise budget= (now {chosen_budget}), lower the runs' steps, or use "
            "search='random'",
            exploration,
        )
    return exploration


def _message(exploration: ConcurrentExploration, world: Any, invariant: Any, allow_stuck: bool = True) -> str:
    name = _source_name(invariant, "the invariant")
    total, bad = len(exploration), len(exploration.violations)
    lines = [f"{', '.join(exploration.labels)} violate {name} in {bad} of {total} interleavings "
             f"(search={exploration.search}" + (f", seed={exploration.seed})" if exploration.search == "random" else ")")]
    if exploration.search == "random":
        lines.append(f"the same interleavings again: --sagakit-seed={exploration.seed} (or seed={exploration.seed})")
    found = exploration.counterexamples
    for number, example in enumerate(found, 1):
        interleaving = example.interleaving
        faults = interleaving.fault_count
        lines += [
            "",
            f"counterexample {number} of {len(found)}: {example.anomaly} ({interleaving.label}; "
            f"{interleaving.switches} context switch{'es' if interleaving.switches != 1 else ''}, {faults} "
            f"fault{'s' if faults != 1 else ''}; explains {example.explains} violating interleaving"
            f"{'s' if example.explains != 1 else ''})",
            f"  anomaly:        {example.explanation}",
            f"  violation:      {_indented(example.violation)}",
            f"  interleaving:   {interleaving.text}",
            "  timeline:",
            *("    " + line for line in example.timeline().to_text().splitlines()),
            f"  replay:         {interleaving_replay_line(interleaving, world, invariant, allow_stuck=allow_stuck)}",
        ]
    return "\n".join(lines)


def _indented(text: str) -> str:
    return text.replace("\n", "\n" + " " * 18)


def assert_isolated_sync(
    runs: Sequence[Saga | tuple[Saga, Any]],
    *,
    world: Callable[[], Any],
    invariant: Callable[[Any, tuple[Any, ...]], Any],
    modes: Sequence[str] | str | None = None,
    pairs: bool = False,
    search: Literal["exhaustive", "random"] = "exhaustive",
    budget: int | None = None,
    seed: int | None = None,
    depth: int = 3,
    max_faults: int = 2,
    reduce: bool = True,
    check: Literal["end", "every action"] = "end",
    allow_stuck: bool = True,
) -> ConcurrentExploration:
    """:func:`assert_isolated` from synchronous code (a plain test function, a notebook cell)."""
    __tracebackhide__ = True  # pytest leaves this frame, and the input it holds, out of reports
    return run_sync(lambda: assert_isolated(
        runs, world=world, invariant=invariant, modes=modes, pairs=pairs, search=search, budget=budget, seed=seed,
        depth=depth, max_faults=max_faults, reduce=reduce, check=check, allow_stuck=allow_stuck,
    ))


def _replayed(result: InterleavingResult) -> InterleavingResult:
    __tracebackhide__ = True  # pytest leaves this frame, and the input it holds, out of reports
    if result.violated:
        raise InvariantViolated(
            f"{', '.join(result.labels)} in the order {result.interleaving.text} ({result.interleaving.label}): "
            f"{result.anomaly}: {result.explanation}\n  violation: {result.violation}\n"
            + "\n".join("  " + line for line in result.timeline().to_text().splitlines())
        )
    return result


async def replay_interleaving(
    runs: Sequence[Saga | tuple[Saga, Any]],
    interleaving: Interleaving | InterleavingResult | ConcurrentCounterexample | Mapping[str, Any],
    *,
    world: Callable[[], Any],
    invariant: Callable[[Any, tuple[Any, ...]], Any] | None = None,
    check: Literal["end", "every action"] = "end",
    observers: Iterable[Observer] = (),
    allow_stuck: bool = True,
) -> InterleavingResult:
    """Run ``runs`` in exactly the order of ``interleaving`` (plain data, as a failure prints it)
    and fail if ``invariant`` is violated (see :func:`sagakit.explore.replay_interleaving`), or,
    with ``allow_stuck=False``, if a run ends stuck.

    Returns:
        The :class:`~sagakit.explore.InterleavingResult`, when the invariant holds.

    Raises:
        InvariantViolated: the invariant was violated (the message names the anomaly).
    """
    __tracebackhide__ = True  # pytest leaves this frame, and the input it holds, out of reports
    from sagakit.explore import replay_interleaving as replay

    checked = _checked(invariant, allow_stuck, "replay_interleaving")
    return _replayed(await replay(runs, interleaving, world=world, invariant=checked, check=check,
                                  observers=observers))


def replay_interleaving_sync(
    runs: Sequence[Saga | tuple[Saga, Any]],
    interleaving: Interleaving | InterleavingResult | ConcurrentCounterexample | Mapping[str, Any],
    *,
    world: Callable[[], Any],
    invariant: Callable[[Any, tuple[Any, ...]], Any] | None = None,
    check: Literal["end", "every action"] = "end",
    observers: Iterable[Observer] = (),
    allow_stuck: bool = True,
) -> InterleavingResult:
    """:func:`replay_interleaving` from synchronous code, also inside a running loop."""
    __tracebackhide__ = True  # pytest leaves this frame, and the input it holds, out of reports
    from sagakit.explore import replay_interleaving_sync as replay

    checked = _checked(invariant, allow_stuck, "replay_interleaving")
    return _replayed(replay(runs, interleaving, world=world, invariant=checked, check=check, observers=observers))
