"""Scenarios as plain data: fault schedules, how one is run and checked, drawn and shrunk.

A :class:`Scenario` is a fault schedule (step name -> :class:`~sagakit.Fault`) and where
it came from. Running it (:func:`run_scenario`) gives a :class:`ScenarioResult`: the run and
the invariant's verdict. Everything a scenario does follows from its schedule: flaky faults
carry their own seed, and each run gets fresh copies of them, so a scenario replays exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sagakit.context import WorkflowContext
from sagakit.events import Observer
from sagakit.explore._shared import resolve
from sagakit.faults import COMPENSATION_MODES, Fault, FaultLike, FaultPlan, as_fault
from sagakit.policies import RETRY_RANDOM
from sagakit.runs import Run, run_redactor

if TYPE_CHECKING:
    from sagakit.saga import Saga

__all__ = [
    "MODE_ORDER",
    "RECOVERIES",
    "TRANSIENT_MODES",
    "Counterexample",
    "Schedule",
    "SeededOnUse",
    "check_search",
    "describe_run",
    "find_counterexamples",
    "is_transient",
    "modes_for",
    "recovery_of",
    "Scenario",
    "ScenarioKind",
    "ScenarioResult",
    "as_schedule",
    "check_invariant",
    "scrubbed",
    "draw_schedule",
    "end_planned_cancellations",
    "fault_label",
    "run_scenario",
    "shrink",
    "story_of",
    "simpler_faults",
    "transient",
]

#: Every mode exploration knows, simplest first (the order shrinking prefers).
MODE_ORDER: tuple[str, ...] = ("fail", "fail_after", "fail_compensation", "cancel", "cancel_compensation")

ScenarioKind = Literal["baseline", "single", "transient", "pair", "random", "shrunk", "replay"]

Schedule = tuple[tuple[str, Fault], ...]

#: The forward modes a transient fault takes (see :func:`transient`).
TRANSIENT_MODES: tuple[str, ...] = ("fail", "fail_after")

#: How a run recovered (see :func:`recovery_of`).
RECOVERIES: tuple[str, ...] = ("none", "backward", "forward", "stuck")

# A transient fault is a seeded flaky fault whose draws fire on the first attempt and on none
# of the next twenty: plain data that every backend replays (a Fault has no "fire n times").
_TRANSIENT_PROBABILITY = 0.5
_TRANSIENT_SEED = 1031239


def transient(mode: str = "fail") -> Fault:
    """A fault that fails a step's first attempt only: its retry goes through.

    On a retriable step (after the pivot) it is the scenario "the step failed once and was
    retried to completion", next to the plain fault, which fails every attempt and leaves the
    run stuck. It is an ordinary :class:`~sagakit.Fault` (``probability=0.5`` under a seed whose
    draws fire on the first attempt and on none of the next twenty), so it replays anywhere a
    fault plan goes: ``saga.run(data, faults={"ship": transient("fail_after")})``.

    Args:
        mode: ``"fail"`` (the attempt raises before acting) or ``"fail_after"`` (it acts, then
            its response is lost: the retry acts again).

    Raises:
        ValueError: another mode.
    """
    if mode not in TRANSIENT_MODES:
        raise ValueError(f"transient mode: expected 'fail' or 'fail_after', got {mode!r}")
    return Fault(mode, 0.0, _TRANSIENT_PROBABILITY, _TRANSIENT_SEED)  # type: ignore[arg-type]


def is_transient(fault: Fault) -> bool:
    """Whether ``fault`` is a :func:`transient` one."""
    return (fault.seed == _TRANSIENT_SEED and fault.probability == _TRANSIENT_PROBABILITY and fault.delay == 0
            and fault.mode in TRANSIENT_MODES)


def _plain(fault: Fault) -> bool:
    return fault.delay == 0 and fault.probability >= 1.0 and fault.seed is None


def fault_label(name: str, fault: Fault) -> str:
    """``step=mode``, ``step=mode (first attempt)`` for a :func:`transient` fault, other flaky or
    delayed faults in full."""
    if _plain(fault):
        return f"{name}={fault.mode}"
    if is_transient(fault):
        return f"{name}={fault.mode} (first attempt)"
    return f"{name}={_fault_text(fault)}"


def _fault_text(fault: Fault) -> str:
    if _plain(fault):
        return repr(fault.mode)
    options = [repr(fault.mode)]
    if fault.delay:
        options.append(f"delay={fault.delay!r}")
    if fault.probability < 1.0:
        options.append(f"probability={fault.probability!r}")
    if fault.seed is not None:
        options.append(f"seed={fault.seed!r}")
    return f"Fault({', '.join(options)})"


@dataclass(frozen=True, slots=True)
class Scenario:
    """One scenario of an exploration, as plain data: a fault schedule and its origin.

    Attributes:
        index: its number in the exploration (``-1`` for scenarios made by shrinking or
            replay).
        kind: ``baseline``, ``single``, ``transient`` (a retriable step failing its first
            attempt only), ``pair`` (exhaustive search), ``random`` (drawn), ``shrunk`` (a
            minimal counterexample) or ``replay``.
        faults: the schedule, ``(step, Fault)`` pairs in saga order.
        seed: for a drawn scenario, the seed it was drawn from (with the exploration's seed
            and its position, it draws the same schedule again).
        step: the step of its first fault (``None`` for the baseline).
        mode: the mode of its first fault.
    """

    index: int
    kind: ScenarioKind
    faults: Schedule
    seed: int | None = None

    @property
    def step(self) -> str | None:
        return self.faults[0][0] if self.faults else None

    @property
    def mode(self) -> str | None:
        return self.faults[0][1].mode if self.faults else None

    @property
    def label(self) -> str:
        """``step=mode + ...`` (``step=mode (first attempt)`` for a :func:`transient` fault,
        other flaky or delayed faults in full), or ``no faults``."""
        if not self.faults:
            return "no faults"
        return " + ".join(fault_label(name, fault) for name, fault in self.faults)

    @property
    def plan(self) -> dict[str, FaultLike]:
        """The schedule as a fault plan for ``saga.run(..., faults=...)``: a mode string for a
        plain fault, a fresh :class:`~sagakit.Fault` (its random draws from the start) else."""
        return {
            name: fault.mode if _plain(fault) else Fault(fault.mode, fault.delay, fault.probability, fault.seed)
            for name, fault in self.faults
        }

    def run_plan(self) -> dict[str, Fault]:
        """:attr:`plan` for one run: the plain faults themselves (they never draw), fresh
        copies of the flaky ones."""
        return {
            name: fault if fault.probability >= 1.0 else Fault(fault.mode, fault.delay, fault.probability, fault.seed)
            for name, fault in self.faults
        }

    @property
    def plan_text(self) -> str:
        """:attr:`plan` as Python source."""
        return "{" + ", ".join(f"{name!r}: {_fault_text(fault)}" for name, fault in self.faults) + "}"

    @property
    def size(self) -> int:
        return len(self.faults)


def as_schedule(saga: Saga, faults: Mapping[str, FaultLike] | Iterable[tuple[str, FaultLike]]) -> Schedule:
    """``faults`` checked against ``saga`` and put in saga order.

    Raises:
        UnknownStepError: a step the saga lacks (the message lists its steps).
        FaultError: a compensation fault on a step without a compensation (a pivot, a retriable
            or a read-only step among them), which could never fire, as ``saga.run`` says.
    """
    items = faults.items() if isinstance(faults, Mapping) else faults
    chosen: dict[str, Fault] = {}
    for name, fault in items:
        if name not in saga.step_names:
            saga.get_step(name)  # raises UnknownStepError listing the steps
        chosen[name] = as_fault(fault, step=name)
    # The saga's own plan check, before anything runs.
    FaultPlan(chosen, steps=saga.step_names, saga=saga.name,
              uncompensated=[member.name for member in saga.steps if member.compensate is None])
    return tuple((name, chosen[name]) for name in saga.step_names if name in chosen)


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    """A scenario run once: the run and what the invariant said.

    Attributes:
        scenario: the scenario.
        run: its :class:`~sagakit.Run` (a run cancelled by a ``cancel`` fault included).
        holds: ``True`` the invariant held, ``False`` it was violated, ``None`` no invariant.
        violation: the invariant's message when violated.
    """

    scenario: Scenario
    run: Run
    holds: bool | None
    violation: str | None

    @property
    def outcome(self) -> str:
        """``violated`` or the run's status."""
        return "violated" if self.holds is False else self.run.status

    @property
    def violated(self) -> bool:
        return self.holds is False

    @property
    def recovery(self) -> str:
        """How the run recovered: see :func:`recovery_of`."""
        return recovery_of(self.run)

    def ran(self) -> str:
        """What the run did, in one line: steps, compensations, statuses."""
        return describe_run(self.run)


def recovery_of(run: Run) -> str:
    """How ``run`` recovered from what went wrong in it, one of :data:`RECOVERIES`.

    ``stuck``: it ended stuck (a step after the pivot ran out of its forward policy);
    ``forward``: it completed past its pivot although a step after the pivot failed an attempt
    or had a fault fire (retried to completion); ``backward``: it rolled back; ``none``:
    nothing needed recovering (it completed, or was cancelled before any step).
    """
    status = run.status
    if status == "stuck":
        return "stuck"
    kinds = _step_kinds(run)
    forward = False
    for event in run.events:
        if event.kind == "rollback_started":
            return "backward"
        if (event.step is not None and event.phase == "forward" and kinds.get(event.step) == "retriable"
                and (event.status == "failed" or event.injected)):
            forward = True
    return "forward" if forward else "none"


def _step_kinds(run: Run) -> dict[str, str]:
    """The kinds of ``run``'s steps that are not compensatable (from its saga, else its record)."""
    definition = run.definition
    if definition is not None:
        return {member.name: member.kind for member in definition.steps if member.kind != "compensatable"}
    recorded = (run.info or {}).get("kinds")
    return dict(recorded) if isinstance(recorded, Mapping) else {}


def story_of(saga: Saga, run: Run) -> str | None:
    """What a shrunk counterexample must keep of the violation it came from: for a saga with a
    pivot, how the run recovered (a violation in a run retried to completion must not shrink into
    one in a stuck run, nor into a rollback); ``None`` (anything goes) without a pivot."""
    return recovery_of(run) if saga.pivot is not None else None


async def check_invariant(
    invariant: Callable[..., Any] | None, world: Any, outcome: Any, label: str, what: str = "scenario"
) -> tuple[bool | None, str | None]:
    """``invariant(world, outcome)``: ``(holds, violation message)``; other errors propagate, noted.

    The message is raw: the caller scrubs it (see :func:`scrubbed`) before it is kept.
    """
    if invariant is None:
        return None, None
    try:
        verdict = await resolve(invariant(world, outcome))
    except AssertionError as exc:
        return False, str(exc) or "AssertionError raised by the invariant"
    except Exception as exc:
        exc.add_note(f"sagakit: raised by the invariant while checking {what} {label!r}")
        raise
    if verdict is None or bool(verdict):
        return True, None
    return False, "the invariant returned False"


def scrubbed(text: str | None, runs: Iterable[Run], *extra: Any) -> str | None:
    """``text`` with the secrets ``runs`` carried (and any found in ``extra``) masked.

    Each run's saga's redactor masks the values its payloads carried under sensitive keys,
    sensitive ``key=value`` pairs and card numbers: an invariant's message is shown in frames,
    HTML, text and test output, and a message such as ``f"charged {card}"`` must not carry
    the card there.
    """
    if text is None:
        return None
    for run in runs:
        redactor = run_redactor(run)
        secrets = redactor.payload_secrets(event.data for event in run.events)
        if extra:
            secrets |= redactor.secrets(*extra)
        text = redactor.scrub(text, secrets)
    return text


class SeededOnUse(random.Random):
    """A generator seeded from ``text`` when first drawn from: most scenarios never retry, and
    seeding costs more than the rest of a short run's bookkeeping."""

    def __init__(self, text: str) -> None:  # no seeding yet: see random()
        self._text: str | None = text

    def _ready(self) -> None:
        if self._text is not None:
            text, self._text = self._text, None
            self.seed(text)

    def random(self) -> float:
        self._ready()
        return super().random()

    def getrandbits(self, k: int) -> int:
        self._ready()
        return super().getrandbits(k)


async def end_planned_cancellations(run: Run, faults: Schedule, *, delivered: bool) -> None:
    """End the cancellations that ``run``'s own ``cancel`` faults requested of this task.

    A ``cancel`` fault cancels the task running the saga. Usually the run meets the
    cancellation and raises it (``delivered``: one has reached us); but an action that fails
    without ever waiting ends the run first, and the request stays pending on the task. Either
    way it was planned, so it ends here, while a cancellation from elsewhere (a caller's
    timeout), which may have come before the planned one fired or instead of it, propagates.
    """
    task = asyncio.current_task()
    if not delivered and (task is None or not task.cancelling()):
        return  # nothing pending: the common case, without reading the run's events
    cancelling = {(name, fault.phase) for name, fault in faults if fault.mode.startswith("cancel")}
    # One cancellation per attempt the fault fired on: a retried step (after the pivot, the run
    # carries on through them) may fire it several times.
    planned = sum(1 for event in run.events if event.injected and event.status is not None
                  and (event.step, event.phase) in cancelling) if cancelling else 0
    if task is None or (delivered and planned == 0):
        if delivered:
            raise asyncio.CancelledError
        return
    for _ in range(planned):
        if not task.cancelling():
            break
        if not delivered:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0)  # a request still pending is delivered here
        delivered = False
        task.uncancel()
    if task.cancelling():  # a cancellation from elsewhere too
        raise asyncio.CancelledError


async def run_scenario(
    saga: Saga,
    derived: Saga,
    scenario: Scenario,
    data: Any,
    world: Callable[[], Any] | None,
    invariant: Callable[[Any, Run], Any] | None,
    observers: Sequence[Observer] = (),
    correlation_id: str | None = None,
) -> ScenarioResult:
    """Run ``scenario`` once on ``derived`` (a copy of ``saga``) with a fresh world and check it.

    A ``cancel`` fault cancels the task running the saga; the cancellation it caused ends
    here, with the cancelled run, while a cancellation from elsewhere still propagates.
    """
    label = scenario.label
    state = await resolve(world()) if world is not None else None
    cid = correlation_id if correlation_id is not None else f"explore {scenario.index}: {label}"
    context = WorkflowContext(correlation_id=cid, world=state)
    # Retry jitter from a generator of the scenario's own: a replay waits the same backoff.
    jitter = RETRY_RANDOM.set(SeededOnUse(f"sagakit explore: {label}"))
    try:
        run = await derived.run(data, context, faults=scenario.run_plan(), observers=observers)
    except asyncio.CancelledError:
        # The engine puts the run in the history and raises in one go, nothing runs between.
        run = derived.history[-1]
        if run.correlation_id != cid:
            raise
        await end_planned_cancellations(run, scenario.faults, delivered=True)
        if run.error is not None:  # its traceback would keep this frame, and the world, alive
            run.error.__traceback__ = None
    else:
        await end_planned_cancellations(run, scenario.faults, delivered=False)
    finally:
        RETRY_RANDOM.reset(jitter)
    run.definition = saga
    holds, violation = await check_invariant(invariant, state, run, label)
    return ScenarioResult(scenario, run, holds, scrubbed(violation, (run,), data))


# ---------------------------------------------------------------------------------------
# drawing schedules


def modes_for(saga: Saga, modes: Sequence[str]) -> dict[str, list[str]]:
    """The modes each step can take: compensation modes only where there is a compensation."""
    return {
        member.name: [mode for mode in modes if mode not in COMPENSATION_MODES or member.compensate is not None]
        for member in saga.steps
    }


def draw_schedule(
    saga: Saga,
    rng: random.Random,
    choices: Mapping[str, Sequence[str]],
    max_faults: int,
    max_delay: float,
    flaky: float,
) -> Schedule:
    """A random schedule: 1 to ``max_faults`` faults (fewer more likely) on distinct steps.

    Each fault takes any of its step's modes; with chance ``flaky`` it fires with probability
    0.5 under a seed of its own, and with ``max_delay > 0`` a quarter of them add a delay.
    """
    names = [name for name in saga.step_names if choices[name]]
    if not names:
        return ()
    count = 1
    while count < min(max_faults, len(names)) and rng.random() < 0.5:
        count += 1
    picked = set(rng.sample(names, count))
    schedule = []
    for name in saga.step_names:
        if name not in picked:
            continue
        mode = rng.choice(choices[name])
        probability, seed = (0.5, rng.randrange(2**31)) if rng.random() < flaky else (1.0, None)
        delay = round(rng.uniform(0.0, max_delay), 4) if max_delay > 0 and rng.random() < 0.25 else 0.0
        schedule.append((name, Fault(mode, delay, probability, seed)))  # type: ignore[arg-type]
    return tuple(schedule)


# ---------------------------------------------------------------------------------------
# shrinking


def simpler_faults(fault: Fault) -> list[Fault]:
    """Faults simpler than ``fault``, simplest first: plain, then (for another flaky fault) the
    :func:`transient` one of its mode, then plain simpler modes, then without its delay or its
    flakiness."""
    candidates: list[Fault] = []
    if not _plain(fault):
        candidates.append(Fault(fault.mode))
        if fault.probability < 1.0 and fault.mode in TRANSIENT_MODES and not is_transient(fault):
            candidates.append(transient(fault.mode))
    position = MODE_ORDER.index(fault.mode) if fault.mode in MODE_ORDER else len(MODE_ORDER)
    candidates.extend(Fault(mode) for mode in MODE_ORDER[:position])  # type: ignore[arg-type]
    if fault.delay and fault.probability < 1.0:
        candidates.append(Fault(fault.mode, 0.0, fault.probability, fault.seed))
        candidates.append(Fault(fault.mode, fault.delay))
    return candidates


async def shrink(
    schedule: Schedule, violates: Callable[[Schedule], Any], limit: int = 500
) -> tuple[Schedule, int]:
    """The smallest schedule found that still ``violates`` (awaited), and how many were tried.

    Greedy and deterministic: drop any one fault that is not needed, again until each is;
    then make each fault as simple as it can be (plain, then the simplest mode that still
    violates). The result is locally minimal: without any one of its faults, or with any one
    of them simpler, the violation goes away. ``limit`` bounds the runs.
    """
    current = schedule
    tried = 0
    changed = True
    while changed and tried < limit:
        changed = False
        for position in range(len(current)):
            candidate = current[:position] + current[position + 1 :]
            tried += 1
            if await resolve(violates(candidate)):
                current, changed = candidate, True
                break
        if changed:
            continue
        for position, (name, fault) in enumerate(current):
            for simpler in simpler_faults(fault):
                candidate = (*current[:position], (name, simpler), *current[position + 1 :])
                tried += 1
                if await resolve(violates(candidate)):
                    current, changed = candidate, True
                    break
            if changed:
                break
    return current, tried


def check_search(search: object, what: str = "explore") -> Literal["exhaustive", "random"]:
    if search not in ("exhaustive", "random"):
        raise ValueError(f"{what} search: expected 'exhaustive' or 'random', got {search!r}")
    return search  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------
# counterexamples


@dataclass(frozen=True, slots=True)
class Counterexample:
    """A violation reduced to a minimal fault schedule.

    Attributes:
        minimal: the minimal scenario (kind ``shrunk``) and its run, which violates.
        found: the first scenario of the exploration that violated with these faults.
        explains: how many violating scenarios of the exploration contain its faults.
        tried: how many runs shrinking took.
    """

    minimal: ScenarioResult
    found: ScenarioResult
    explains: int
    tried: int

    @property
    def scenario(self) -> Scenario:
        return self.minimal.scenario

    @property
    def violation(self) -> str:
        return self.minimal.violation or ""

    def ran(self) -> str:
        """What the minimal run did, in one line: steps, compensations, statuses."""
        return describe_run(self.minimal.run)


_MARK = {"succeeded": "ok", "failed": "FAILED", "cancelled": "CANCELLED", "skipped": "skipped"}


def describe_run(run: Run) -> str:
    """``run`` in one line: each forward and compensation attempt with its status, then the
    run's status (``stuck at 'ship'`` for a stuck run)."""
    forward: list[str] = []
    undo: list[str] = []
    for event in run.events:
        if event.step is None or event.phase is None or event.status is None:
            continue
        mark = _MARK.get(event.status, event.status)
        if event.error is not None and event.status == "failed":
            mark += f" ({type(event.error).__name__})"
        text = f"{event.step} {mark}" + (" [injected]" if event.injected else "")
        (undo if event.phase == "compensate" else forward).append(text)
    line = "steps: " + (", ".join(forward) or "none")
    if undo:
        line += "; compensations: " + ", ".join(undo)
    if run.status == "stuck":
        return line + f"; status: stuck at {run.failed_step!r}"
    return line + f"; status: {run.status}"


async def find_counterexamples(
    saga: Saga,
    derived: Saga,
    results: Sequence[ScenarioResult],
    fresh_data: Callable[[], Any],
    world: Callable[[], Any] | None,
    invariant: Callable[[Any, Run], Any],
    observers: Sequence[Observer] = (),
) -> list[Counterexample]:
    """Shrink the violations of ``results``, in order, to distinct minimal counterexamples.

    A violation whose schedule contains the faults of a counterexample already found (with the
    same story, see :func:`story_of`) counts towards that one instead of being shrunk again.
    Shrinking keeps the story: in a saga with a pivot, a violation in a run retried to
    completion shrinks to one retried to completion, one in a stuck run to one stuck.
    """
    found: list[Counterexample] = []
    stories: list[str | None] = []
    tried_runs: dict[Schedule, ScenarioResult] = {}

    async def attempt(schedule: Schedule) -> ScenarioResult:
        known = tried_runs.get(schedule)
        if known is None:
            scenario = Scenario(-1, "shrunk", schedule)
            known = await run_scenario(
                saga, derived, scenario, fresh_data(), world, invariant, observers, f"shrink: {scenario.label}"
            )
            tried_runs[schedule] = known
        return known

    for result in results:
        if not result.violated:
            continue
        story = story_of(saga, result.run)
        faults = set(result.scenario.faults)
        for position, known in enumerate(found):
            if stories[position] == story and set(known.scenario.faults) <= faults:
                found[position] = Counterexample(known.minimal, known.found, known.explains + 1, known.tried)
                break
        else:
            tried_runs[result.scenario.faults] = result

            async def violates(schedule: Schedule, story: str | None = story) -> bool:
                tried = await attempt(schedule)
                return tried.violated and story_of(saga, tried.run) == story

            minimal, tried = await shrink(result.scenario.faults, violates)
            same = next((i for i, known in enumerate(found)
                         if known.scenario.faults == minimal and stories[i] == story), None)
            if same is not None:
                known = found[same]
                found[same] = Counterexample(known.minimal, known.found, known.explains + 1, known.tried)
                continue
            found.append(Counterexample(await attempt(minimal), result, 1, tried))
            stories.append(story)
    return found
