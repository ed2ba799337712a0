"""``assert_invariant`` and ``replay``: failure exploration as a test assertion."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from sagakit._checks import check_bool
from sagakit._sync import run_sync
from sagakit.faults import FaultLike
from sagakit.redaction import Redactor, default_redactor
from sagakit.runs import Run, error_message
from sagakit.testing._settings import DEFAULT_BUDGET, Record, session

if TYPE_CHECKING:
    from sagakit.explore import (
        ConcurrentCounterexample,
        ConcurrentExploration,
        Counterexample,
        Exploration,
        ScenarioResult,
    )
    from sagakit.saga import Saga

__all__ = [
    "InvariantViolated",
    "NotStuck",
    "assert_invariant",
    "assert_invariant_sync",
    "replay",
    "replay_line",
    "replay_sync",
    "stuck_text",
]


class InvariantViolated(AssertionError):
    """An invariant failed under some fault schedules (or some interleavings of concurrent runs).

    Attributes:
        exploration: the :class:`~sagakit.explore.Exploration` (or
            :class:`~sagakit.explore.ConcurrentExploration`) that found it (``None`` for a replay).
        counterexamples: the minimal counterexamples, in the order found.
        seed: the random search's seed (repeat it with ``--sagakit-seed``).
    """

    def __init__(
        self,
        message: str,
        exploration: Exploration | ConcurrentExploration | None = None,
        counterexamples: Sequence[Counterexample | ConcurrentCounterexample] = (),
    ) -> None:
        super().__init__(message)
        self.exploration = exploration
        self.counterexamples = tuple(counterexamples)
        self.seed = exploration.seed if exploration is not None else None


InvariantViolated.__module__ = "sagakit.testing"


def stuck_text(run: Run) -> str:
    """Why a stuck run fails an invariant that does not allow it: ``stuck at 'ship' after its
    pivot 'charge' (ConnectionError: ...)``."""
    error = run.error
    pivot = getattr(error, "pivot", None)
    original = run.original_error
    text = f"stuck at {run.failed_step!r}" + (f" after its pivot {pivot!r}" if pivot else "")
    if original is not None:
        text += f" ({type(original).__name__}: {error_message(original, run=run)})"
    return text + "; nothing was compensated, and allow_stuck=False"


class NotStuck:
    """An invariant that also fails a run that ended stuck (``allow_stuck=False``).

    It checks the caller's invariant first (its failure wins), then the run's status.
    """

    __slots__ = ("invariant",)

    def __init__(self, invariant: Callable[[Any, Run], Any]) -> None:
        self.invariant = invariant

    async def __call__(self, world: Any, run: Run) -> bool:
        verdict = self.invariant(world, run)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        if verdict is not None and not verdict:
            return False
        if run.status == "stuck":
            raise AssertionError(stuck_text(run))
        return True


def _source_name(value: Any, fallback: str) -> str:
    """How a replay line names ``value``: its qualified name when that is plain source."""
    if value is None:
        return "None"
    name = getattr(value, "__qualname__", None)
    if isinstance(name, str) and all(part.isidentifier() for part in name.split(".")):
        return name
    return fallback


def _data_source(data: Any, redactor: Redactor | None = None) -> str:
    """``data`` as a literal when it reads back equal, is short and holds no secret, else ``data``.

    A replay line is printed in test output, where a card number or a password must not
    appear: input that ``redactor`` (the saga's) would mask is named, not written out.
    """
    try:
        if (redactor or default_redactor()).redact(data) != data:
            return "data"
    except Exception:  # a value that cannot be compared is not written out either
        return "data"
    text = repr(data)
    if len(text) > 160:
        return "data"
    try:
        equal = bool(ast.literal_eval(text) == data)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return "data"
    return text if equal else "data"


def replay_line(
    plan: str,
    data: Any,
    world: Callable[[], Any] | None,
    invariant: Callable[..., Any] | None,
    saga: str = "saga",
    redactor: Redactor | None = None,
    allow_stuck: bool = True,
) -> str:
    """The one line that replays fault plan ``plan`` (Python source) with :func:`replay`.

    ``data`` is written out when it is a short literal without secrets (by ``redactor``,
    default the default one); else the line names it ``data``.
    """
    return (
        f"await sagakit.testing.replay({saga}, {_data_source(data, redactor)}, faults={plan}, "
        f"world={_source_name(world, 'world')}, invariant={_source_name(invariant, 'invariant')}"
        + (", allow_stuck=False)" if not allow_stuck else ")")
    )


async def assert_invariant(
    saga: Saga,
    data: Any = None,
    *,
    world: Callable[[], Any] | None = None,
    invariant: Callable[[Any, Run], Any],
    pairs: bool = True,
    search: Literal["exhaustive", "random"] = "random",
    budget: int | None = None,
    seed: int | None = None,
    modes: Sequence[str] | str | None = None,
    max_faults: int = 4,
    max_delay: float = 0.0,
    flaky: float = 0.2,
    concurrency: int = 8,
    allow_stuck: bool = True,
) -> Exploration:
    """Explore ``saga`` and fail if ``invariant`` is violated under any fault schedule.

    Runs :func:`sagakit.explore.explore` (every single fault, with ``pairs`` every pair,
    and with ``search="random"`` then ``budget`` random schedules) and shrinks each violation
    to a minimal schedule. Under the pytest plugin, ``budget`` and ``seed`` default to
    ``--sagakit-budget`` and ``--sagakit-seed`` (the session's seed, drawn once and printed
    in the header when not given); elsewhere to 200 schedules and a fresh seed.

    Args:
        saga: the saga under test.
        data: its input (each run gets a deep copy).
        world: a factory for the state the steps act on (``context.world``).
        invariant: ``invariant(world, run)``: returns ``False`` or raises ``AssertionError``
            when violated.
        pairs: also explore every pair of faults that can both take effect.
        search: ``"random"`` (the default) or ``"exhaustive"``.
        budget: random schedules to draw after the exhaustive ones (the plugin's
            ``--sagakit-budget``, else 200, when ``None``).
        seed: the search's seed (the session's seed, else a fresh one, when ``None``).
        modes: the fault modes to explore, as for :func:`~sagakit.explore.explore`.
        max_faults: the most faults in one random schedule.
        max_delay: the most seconds of delay a random schedule may add to a fault.
        flaky: the share of random faults that fire with a probability.
        concurrency: how many scenarios run at once.
        allow_stuck: whether a run may end ``stuck`` (a step after the pivot ran out of its
            forward policy; an operator resumes it). The invariant is checked on stuck runs
            as on the others either way; with ``False`` a stuck run also fails the test,
            ``stuck at 'ship' after its pivot 'charge' (...)``.

    Returns:
        The :class:`~sagakit.explore.Exploration`, when the invariant held everywhere.

    Raises:
        InvariantViolated: an ``AssertionError`` listing each minimal counterexample with
            its violation, what ran, and the line that replays it, and the seed.
    """
    __tracebackhide__ = True  # pytest leaves this frame, and the input it holds, out of reports
    from sagakit.explore import explore

    if invariant is None or not callable(invariant):
        raise TypeError(f"assert_invariant invariant: expected a callable invariant(world, run), got {invariant!r}")
    check_bool(allow_stuck, "assert_invariant allow_stuck")
    chosen_budget = budget if budget is not None else session.budget if session.budget is not None else DEFAULT_BUDGET
    chosen_seed = seed if seed is not None else session.seed
    exploration = await explore(
        saga,
        data,
        world=world,
        invariant=invariant if allow_stuck else NotStuck(invariant),
        modes=modes,
        pairs=pairs,
        search=search,
        budget=chosen_budget,
        seed=chosen_seed,
        max_faults=max_faults,
        max_delay=max_delay,
        flaky=flaky,
        concurrency=concurrency,
        progress=False,
    )
    violations = sum(1 for result in exploration.results if result.violated)
    stuck = sum(1 for result in exploration.results if result.run.status == "stuck")
    keep = session.keep_explorations or violations > 0
    session.records.append(
        Record(session.test, saga.name, len(exploration), violations, exploration.seed, exploration.search,
               exploration if keep else None, stuck)
    )
    if violations == 0:
        return exploration
    raise InvariantViolated(_message(exploration, data, world, invariant, allow_stuck), exploration,
                            exploration.counterexamples)


def assert_invariant_sync(
    saga: Saga,
    data: Any = None,
    *,
    world: Callable[[], Any] | None = None,
    invariant: Callable[[Any, Run], Any],
    pairs: bool = True,
    search: Literal["exhaustive", "random"] = "random",
    budget: int | None = None,
    seed: int | None = None,
    modes: Sequence[str] | str | None = None,
    max_faults: int = 4,
    max_delay: float = 0.0,
    flaky: float = 0.2,
    concurrency: int = 8,
    allow_stuck: bool = True,
) -> Exploration:
    """:func:`assert_invariant` from synchronous code (a plain test function, a notebook cell).

    Same arguments, result and failure; inside a running loop the exploration runs on a
    worker thread while this call blocks (nothing is patched).
    """
    __tracebackhide__ = True  # pytest leaves this frame, and the input it holds, out of reports
    return run_sync(lambda: assert_invariant(
        saga, data, world=world, invariant=invariant, pairs=pairs, search=search, budget=budget, seed=seed,
        modes=modes, max_faults=max_faults, max_delay=max_delay, flaky=flaky, concurrency=concurrency,
        allow_stuck=allow_stuck,
    ))


def _message(exploration: Exploration, data: Any, world: Any, invariant: Any, allow_stuck: bool = True) -> str:
    name = _source_name(invariant, "the invariant")
    total, bad = len(exploration), sum(1 for result in exploration.results if result.violated)
    lines = [
        f"saga {exploration.saga.name!r} violates {name} in {bad} of {total} scenarios "
        f"(search={exploration.search}, seed={exploration.seed})",
        f"the same scenarios again: --sagakit-seed={exploration.seed} (or seed={exploration.seed})",
    ]
    found = exploration.counterexamples
    for number, example in enumerate(found, 1):
        scenario = example.scenario
        origin = example.found.scenario
        size = f"{origin.size} fault{'s' if origin.size != 1 else ''}"
        lines += [
            "",
            f"counterexample {number} of {len(found)}: {scenario.size} fault{'s' if scenario.size != 1 else ''} "
            f"(first seen in scenario {origin.index}, {origin.kind}, {size}: {origin.label}; "
            f"explains {example.explains} violating scenario{'s' if example.explains != 1 else ''})",
            f"  minimal faults: {scenario.plan_text}",
            f"  violation:      {_indented(example.violation)}",
            f"  ran:            {example.ran()}",
            "  replay:         "
            + replay_line(scenario.plan_text, exploration.data, world, invariant, redactor=exploration.saga.redactor,
                          allow_stuck=allow_stuck),
        ]
    return "\n".join(lines)


def _indented(text: str) -> str:
    return text.replace("\n", "\n" + " " * 18)


def _replayed(saga: Saga, result: ScenarioResult) -> Run:
    __tracebackhide__ = True  # pytest leaves this frame, and the input it holds, out of reports
    if result.violated:
        raise InvariantViolated(f"saga {saga.name!r} under {result.scenario.label}: {result.violation}\n"
                                f"  ran: {result.ran()}")
    return result.run


async def replay(
    saga: Saga,
    data: Any = None,
    *,
    faults: Mapping[str, FaultLike],
    world: Callable[[], Any] | None = None,
    invariant: Callable[[Any, Run], Any] | None = None,
    allow_stuck: bool = True,
) -> Run:
    """Run ``saga`` once under ``faults`` exactly as an exploration did, and check ``invariant``.

    The run gets a fresh world from ``world()`` and a deep copy of ``data``; it stays out of
    ``saga.history``; it runs on the virtual clock, as exploration does
    (:func:`sagakit.explore.replay`). A ``cancel`` fault's cancellation ends with the run, as
    in exploration. With ``allow_stuck=False`` a run that ends stuck fails too, as in
    :func:`assert_invariant`.

    Returns:
        The run, when the invariant holds.

    Raises:
        InvariantViolated: the invariant was violated (the message says how and what ran).
    """
    __tracebackhide__ = True  # pytest leaves this frame, and the input it holds, out of reports
    from sagakit.explore import replay as replay_scenario

    return _replayed(saga, await replay_scenario(saga, data, faults=faults, world=world,
                                                 invariant=_checked(invariant, allow_stuck, "replay")))


def replay_sync(
    saga: Saga,
    data: Any = None,
    *,
    faults: Mapping[str, FaultLike],
    world: Callable[[], Any] | None = None,
    invariant: Callable[[Any, Run], Any] | None = None,
    allow_stuck: bool = True,
) -> Run:
    """:func:`replay` from synchronous code, also inside a running loop (a notebook cell)."""
    __tracebackhide__ = True  # pytest leaves this frame, and the input it holds, out of reports
    from sagakit.explore import replay_sync as replay_scenario

    return _replayed(saga, replay_scenario(saga, data, faults=faults, world=world,
                                           invariant=_checked(invariant, allow_stuck, "replay")))


def _always(world: Any, run: Run) -> None:
    """The invariant of a replay that only refuses stuck runs."""


def _checked(invariant: Callable[[Any, Run], Any] | None, allow_stuck: object, what: str
             ) -> Callable[[Any, Run], Any] | None:
    """``invariant``, or (``allow_stuck=False``) one that also refuses a stuck run."""
    check_bool(allow_stuck, f"{what} allow_stuck")
    if allow_stuck:
        return invariant
    return NotStuck(invariant if invariant is not None else _always)
