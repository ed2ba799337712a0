"""Property-based tests of the engine's rollback invariants over random sagas, faults and cancellations.

Each example builds a saga of plain, retried and timed steps (some in parallel stages), with
injected faults, compensations that succeed, raise an error or raise a ``BaseException``, an
observer or none, and cancels the run at a random point. Some sagas have a pivot: the steps
after it are retriable. What the step functions saw is the reference: the run must agree with
it, and an observer must see exactly ``run.events``. Once the pivot has completed no
compensation ever runs; before it every rollback invariant holds.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import sagakit as sk
from sagakit import EventKind as K

# Sized for a 2-core machine: about 2,000 examples in CI, in a minute or two.
settings.register_profile("engine-ci", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("engine-dev", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
# SAGAKIT_QUICK_TESTS=1: the quick profile even in CI (the other interpreters' runs).
PROFILE = ("engine-dev" if os.environ.get("SAGAKIT_QUICK_TESTS")
           else "engine-ci" if os.environ.get("CI", "").lower() in {"1", "true", "yes"} else "engine-dev")

#: What a compensation does: nothing to undo, succeed, or raise one of these.
COMPENSATIONS = ("none", "ok", "ok", "ok", "error", "KeyboardInterrupt", "SystemExit", "CancelledError")
_INTERRUPTS: dict[str, type[BaseException]] = {
    "KeyboardInterrupt": KeyboardInterrupt,
    "SystemExit": SystemExit,
    "CancelledError": asyncio.CancelledError,
}


class CompensationBroke(Exception):
    """Raised by a compensation told to fail."""


class Flaky(Exception):
    """Raised by a retried step's first attempts."""


@dataclass(frozen=True)
class StepSpec:
    name: str
    kind: str  # plain_sync, plain_async, retry, timeout
    compensation: str  # one of COMPENSATIONS
    fault: str  # none, fail, fail_after, fail_compensation (plain steps only)
    yields: int  # how many times an async action yields to the loop
    flakes: int = 0  # retry: attempts that fail before one succeeds
    retries: int = 0  # retry: max_retries
    slow: bool = False  # timeout: the action outlives its timeout
    after_pivot: bool = False  # retriable: retried under its forward policy, never compensated


@dataclass(frozen=True)
class SagaSpec:
    stages: tuple[tuple[StepSpec, ...], ...]  # a tuple of one step is a plain stage
    continue_on_failure: bool
    observed: bool
    cancel_after: int | None  # loop iterations before the run is cancelled
    pivot: str | None = None  # the pivot step's name (a stage of its own)


@st.composite
def step_specs(draw: st.DrawFn, name: str) -> StepSpec:
    kind = draw(st.sampled_from(["plain_sync", "plain_async", "plain_async", "retry", "timeout"]))
    compensation = draw(st.sampled_from(COMPENSATIONS))
    fault = "none"
    if kind.startswith("plain"):
        faults = ["none"] * 6 + ["fail", "fail_after"] + (["fail_compensation"] if compensation == "ok" else [])
        fault = draw(st.sampled_from(faults))
    return StepSpec(
        name=name,
        kind=kind,
        compensation=compensation,
        fault=fault,
        yields=draw(st.integers(0, 2)),
        flakes=draw(st.integers(0, 3)) if kind == "retry" else 0,
        retries=draw(st.integers(0, 2)) if kind == "retry" else 0,
        slow=draw(st.integers(0, 4)) == 0 if kind == "timeout" else False,
    )


@st.composite
def saga_specs(draw: st.DrawFn) -> SagaSpec:
    counter = 0
    stages = []
    count = draw(st.integers(1, 8))
    pivot_at = draw(st.none() | st.none() | st.integers(0, count))
    pivot = None
    for position in range(count + (pivot_at is not None)):
        if position == pivot_at:
            counter += 1
            pivot = f"s{counter}"
            fault = draw(st.sampled_from(["none"] * 4 + ["fail"]))
            stages.append((StepSpec(pivot, "pivot", "none", fault, draw(st.integers(0, 2))),))
            continue
        members = []
        for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
            counter += 1
            member = draw(step_specs(f"s{counter}"))
            if pivot is not None:  # retriable: no compensation; its forward policy retries it
                fault = "none" if member.fault == "fail_compensation" else member.fault
                member = StepSpec(member.name, member.kind, "none", fault, member.yields, member.flakes,
                                  member.retries or draw(st.integers(0, 2)), member.slow, after_pivot=True)
            members.append(member)
        stages.append(tuple(members))
    return SagaSpec(
        stages=tuple(stages),
        continue_on_failure=draw(st.booleans()),
        observed=draw(st.booleans()),
        cancel_after=draw(st.none() | st.integers(1, 40)),  # 1: once the run has started
        pivot=pivot,
    )


@dataclass
class Seen:
    """What the step functions and the observer saw: the reference the run must agree with."""

    finished: list[str] = field(default_factory=list)  # actions that returned, in order
    inputs: dict[str, Any] = field(default_factory=dict)
    compensations: list[tuple[str, Any]] = field(default_factory=list)  # compensations called, in order
    events: list[sk.Event] = field(default_factory=list)
    interrupts: list[BaseException] = field(default_factory=list)  # raised by compensations


def build(spec: SagaSpec, seen: Seen) -> sk.Saga:
    def make(step: StepSpec) -> sk.Step:
        attempts = 0

        def finish(data: Any) -> Any:
            seen.inputs[step.name] = data
            seen.finished.append(step.name)
            return {**data, step.name: True}

        async def action(data: Any, context: sk.WorkflowContext) -> Any:
            nonlocal attempts
            attempts += 1
            for _ in range(step.yields):
                await asyncio.sleep(0)
            if step.kind == "retry" and attempts <= step.flakes:
                raise Flaky(f"{step.name} attempt {attempts}")
            if step.slow:
                await asyncio.sleep(10)
            return finish(data)

        def plain(data: Any, context: sk.WorkflowContext) -> Any:
            return finish(data)

        async def compensate(data: Any, context: sk.WorkflowContext) -> None:
            seen.compensations.append((step.name, data))
            if step.compensation == "error":
                raise CompensationBroke(step.name)
            if step.compensation in _INTERRUPTS:
                interrupt = _INTERRUPTS[step.compensation]()
                seen.interrupts.append(interrupt)
                raise interrupt

        undo = None if step.compensation == "none" else compensate
        if step.kind == "pivot":
            return sk.step(action, name=step.name, kind="pivot")
        if step.after_pivot:
            policy = sk.RetryPolicy(max_retries=step.retries, initial_delay=0, max_delay=0, jitter=0)
            function = plain if step.kind == "plain_sync" else action
            timeout = (0.005 if step.slow else 5.0) if step.kind == "timeout" else None
            return sk.step(function, name=step.name, retry=policy, timeout=timeout, kind="retriable")
        if step.kind == "plain_sync":
            return sk.step(plain, undo, name=step.name)
        if step.kind == "retry":
            policy = sk.RetryPolicy(max_retries=step.retries, initial_delay=0, max_delay=0, jitter=0)
            return sk.step(action, undo, name=step.name, retry=policy)
        if step.kind == "timeout":
            return sk.step(action, undo, name=step.name, timeout=0.005 if step.slow else 5.0)
        return sk.step(action, undo, name=step.name)

    stages: list[Any] = [make(stage[0]) if len(stage) == 1 else sk.parallel(*(make(s) for s in stage))
                         for stage in spec.stages]
    plan = {s.name: s.fault for stage in spec.stages for s in stage if s.fault != "none"}
    return sk.Saga("prop", stages, continue_on_compensation_failure=spec.continue_on_failure, faults=plan)


@dataclass
class Outcome:
    run: sk.Run
    seen: Seen
    raised: BaseException | None  # what saga.run() raised
    cancel_sent: bool  # the run was cancelled while it ran


async def scenario(spec: SagaSpec) -> Outcome:
    seen = Seen()
    saga = build(spec, seen)
    observers = [seen.events.append] if spec.observed else []

    async def run() -> BaseException | None:
        # KeyboardInterrupt and SystemExit are caught here: raised out of a task they would stop the loop.
        try:
            await saga.run({}, observers=observers)
        except (KeyboardInterrupt, SystemExit) as exc:
            return exc
        return None

    task = asyncio.create_task(run())
    cancel_sent = False
    if spec.cancel_after is not None:
        for _ in range(spec.cancel_after):
            if task.done():
                break
            await asyncio.sleep(0)
        if not task.done():
            task.cancel()
            cancel_sent = True
    try:
        raised = await task
    except asyncio.CancelledError as exc:
        raised = exc
    run = saga.history.last
    assert run is not None and len(saga.history) == 1
    return Outcome(run, seen, raised, cancel_sent)


def expected_rollback(spec: SagaSpec, completed: list[str]) -> tuple[list[str], list[str], list[str]]:
    """From the completed steps: the compensations called in order, the failed ones, and the pending ones."""
    steps = {s.name: s for stage in spec.stages for s in stage}
    undo = [name for name in reversed(completed) if steps[name].compensation != "none"]
    called: list[str] = []
    failures: list[str] = []
    for position, name in enumerate(undo):
        step = steps[name]
        if step.fault == "fail_compensation":  # injected before the compensation is called
            failures.append(name)
        else:
            called.append(name)
            if step.compensation == "ok":
                continue
            failures.append(name)
            if step.compensation != "error":
                continue  # an interruption never stops the rollback
        if not spec.continue_on_failure:
            return called, failures, undo[position + 1 :]
    return called, failures, []


@settings(settings.get_profile(PROFILE))
@given(spec=saga_specs())
def test_rollback_invariants(spec: SagaSpec) -> None:
    """Exactly the completed steps with a compensation are compensated, newest first, with their outputs;
    the status, error, pending list and what propagates follow the rules; observers see run.events."""
    outcome = asyncio.run(scenario(spec))
    run, seen, raised = outcome.run, outcome.seen, outcome.raised
    event(f"status={run.status}")
    event(f"raised={type(raised).__name__}")
    steps = {s.name: s for stage in spec.stages for s in stage}
    completed = [name for name in seen.finished if steps[name].fault != "fail_after"]
    event("pivot: " + ("none" if spec.pivot is None else "passed" if spec.pivot in completed else "not passed"))

    # The trace: what observers saw is run.events, plus the start events (told, not kept).
    assert run.events[0].kind is K.RUN_STARTED and run.events[-1].kind is K.RUN_FINISHED
    assert run.events[-1].status == run.status
    if spec.observed:
        kept = [e for e in seen.events if e.kind not in (K.STEP_STARTED, K.COMPENSATION_STARTED)]
        assert kept == run.events
    assert run.completed_steps == completed
    assert run.steps_completed == len(completed)

    if spec.pivot is not None and spec.pivot in completed:
        # Past the pivot: forward recovery only. Nothing is compensated, whatever happens.
        assert seen.compensations == []
        assert not any(e.phase == "compensate" for e in run.events)
        assert run.status in ("completed", "stuck")
        if outcome.cancel_sent:  # the rest ran to its end, shielded; then the cancellation propagates
            assert isinstance(raised, asyncio.CancelledError)
        else:
            assert raised is None
        if run.status == "completed":
            assert sorted(completed) == sorted(steps)
            assert run.result == dict.fromkeys(completed, True)
        else:
            assert isinstance(run.error, sk.SagaStuck)
            assert run.error.step == run.failed_step and run.failed_step not in completed
            assert steps[run.failed_step].after_pivot
            assert run.error.original is run.original_error
            assert run.result is None
        return

    # What propagates: a cancellation or a compensation's interruption, after the rollback.
    if outcome.cancel_sent or seen.interrupts:
        assert raised is not None
        assert isinstance(raised, asyncio.CancelledError) or raised is seen.interrupts[0]
    else:
        assert raised is None

    if run.status == "completed":
        assert not outcome.cancel_sent and not seen.compensations
        assert sorted(completed) == sorted(steps)
        assert run.result == dict.fromkeys(completed, True)
        assert run.error is None and run.original_error is None
        return

    # Rollback: reverse completion order, with each step's output, by the stopping rules.
    called, failures, pending = expected_rollback(spec, completed)
    assert [name for name, _ in seen.compensations] == called
    for name, data in seen.compensations:
        assert data == {**seen.inputs[name], name: True}
    assert run.compensated_steps == [name for name in called if steps[name].compensation == "ok"]
    frame = run.steps
    compensations = frame[frame.phase == "compensate"]
    cancelled_ones = [name for name in failures if steps[name].compensation == "CancelledError"]
    assert compensations[compensations.status == "cancelled"].step.tolist() == cancelled_ones
    assert compensations[compensations.status == "failed"].step.tolist() == [
        name for name in failures if name not in cancelled_ones
    ]

    original = run.original_error
    if original is not None:  # a step failed: an injected fault, a timeout, or retries exhausted
        assert run.failed_step in steps
        assert isinstance(original, sk.InjectedFault | sk.StepTimeout | Flaky)
    if failures:
        assert run.status == "compensation_failed"
        error = run.error
        assert isinstance(error, sk.CompensationError)
        assert [f.step for f in error.failures] == failures
        assert list(error.pending) == pending
        assert error.original is original
        for failure in error.failures:
            kind = steps[failure.step].compensation
            if steps[failure.step].fault == "fail_compensation":
                assert isinstance(failure.error, sk.InjectedFault)
            elif kind == "error":
                assert isinstance(failure.error, CompensationBroke)
            else:
                assert isinstance(failure.error, _INTERRUPTS[kind])
    elif original is not None:
        assert run.status == "compensated" and run.error is original
    else:
        assert run.status == "cancelled" and isinstance(run.error, asyncio.CancelledError)
        assert outcome.cancel_sent
