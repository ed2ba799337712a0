"""Property-based tests of the engine's invariants over random sagas, faults and cancellations."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import sagakit as sk

EXAMPLES = 500 if os.environ.get("CI", "").lower() in {"1", "true", "yes"} else 150


@dataclass(frozen=True)
class StepSpec:
    name: str
    is_async: bool
    has_compensation: bool
    fault: str  # none, fail, fail_after, fail_compensation
    yields: int  # how many times an async action yields to the loop


@dataclass(frozen=True)
class SagaSpec:
    stages: tuple[tuple[StepSpec, ...], ...]  # a tuple of one step is a plain stage
    continue_on_failure: bool
    cancel_at: str | None  # a step that blocks until the test cancels the run


@st.composite
def saga_specs(draw: st.DrawFn) -> SagaSpec:
    counter = 0
    stages = []
    for _ in range(draw(st.integers(1, 12))):
        width = draw(st.sampled_from([1, 1, 1, 2, 3]))
        members = []
        for _ in range(width):
            counter += 1
            members.append(
                StepSpec(
                    name=f"s{counter}",
                    is_async=draw(st.booleans()),
                    has_compensation=draw(st.integers(0, 4)) > 0,
                    fault=draw(st.sampled_from(["none"] * 6 + ["fail", "fail_after", "fail_compensation"])),
                    yields=draw(st.integers(0, 2)),
                )
            )
        stages.append(tuple(members))
    names = [s.name for stage in stages for s in stage if s.is_async and s.fault == "none"]
    cancel_at = draw(st.none() | st.sampled_from(names)) if names else None
    return SagaSpec(tuple(stages), draw(st.booleans()), cancel_at)


@dataclass
class Observed:
    finished_actions: list[str] = field(default_factory=list)  # actions that ran to their end
    compensations: list[tuple[str, Any]] = field(default_factory=list)
    seen_input: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)


def build(spec: SagaSpec, seen: Observed, blocked: asyncio.Event) -> sk.Saga:
    def make(step: StepSpec) -> sk.Step:
        def finish(data: Any, context: sk.WorkflowContext) -> Any:
            seen.seen_input[step.name] = data
            seen.finished_actions.append(step.name)
            return {**data, step.name: True}

        if step.is_async:

            async def action(data: Any, context: sk.WorkflowContext) -> Any:
                for _ in range(step.yields):
                    await asyncio.sleep(0)
                if spec.cancel_at == step.name:
                    blocked.set()
                    await asyncio.sleep(3600)
                return finish(data, context)

        else:

            def action(data: Any, context: sk.WorkflowContext) -> Any:  # type: ignore[misc]
                return finish(data, context)

        async def compensate(data: Any, context: sk.WorkflowContext) -> None:
            seen.compensations.append((step.name, data))

        return sk.step(action, compensate if step.has_compensation else None, name=step.name)

    stages: list[Any] = []
    for stage in spec.stages:
        if len(stage) == 1:
            stages.append(make(stage[0]))
        else:
            stages.append(sk.parallel(*(make(s) for s in stage)))
    plan = {s.name: s.fault for stage in spec.stages for s in stage if s.fault != "none"}
    return sk.Saga("prop", stages, continue_on_compensation_failure=spec.continue_on_failure, faults=plan)


async def scenario(spec: SagaSpec) -> tuple[sk.Run, Observed, bool]:
    seen = Observed()
    blocked = asyncio.Event()
    saga = build(spec, seen, blocked)
    task = asyncio.create_task(saga.run({}))
    cancelled = False
    if spec.cancel_at is not None:
        waiter = asyncio.create_task(blocked.wait())
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()
        waiter.cancel()
    try:
        await task
    except asyncio.CancelledError:
        cancelled = True
    run = saga.history.last
    assert run is not None
    return run, seen, cancelled


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=saga_specs())
def test_rollback_invariants(spec: SagaSpec) -> None:
    """Exactly the completed steps with a compensation are compensated, once each, newest first,
    and the run's status, error and frames agree with what the step functions saw."""
    run, seen, cancelled = asyncio.run(scenario(spec))
    event(f"status={run.status}")
    event(f"parallel={any(len(stage) > 1 for stage in spec.stages)}")
    steps = {s.name: s for stage in spec.stages for s in stage}
    failed_after = {n for n in seen.finished_actions if steps[n].fault == "fail_after"}
    completed = [n for n in seen.finished_actions if n not in failed_after]

    # Every stage completed: nothing is compensated and the result merges every output.
    if run.status == "completed":
        assert not cancelled and not seen.compensations
        assert sorted(completed) == sorted(s.name for stage in spec.stages for s in stage)
        assert run.result == {name: True for name in completed}
        return

    # Rollback: reverse completion order, skipping steps without compensation, injected
    # compensation failures stopping the rollback unless the saga continues.
    expected: list[str] = []
    failures: list[str] = []
    for name in reversed(completed):
        if not steps[name].has_compensation:
            continue
        if steps[name].fault == "fail_compensation":
            failures.append(name)
            if not spec.continue_on_failure:
                break
            continue
        expected.append(name)
    assert [name for name, _ in seen.compensations] == expected
    assert len(set(expected)) == len(expected)
    assert set(expected) <= set(completed)
    for name, data in seen.compensations:  # each compensation received its step's output
        assert data == {**seen.seen_input[name], name: True}

    if failures:
        assert run.status == "compensation_failed"
        assert isinstance(run.error, sk.CompensationError)
        assert [f.step for f in run.error.failures] == failures
    elif cancelled:
        assert run.status == "cancelled"
        assert isinstance(run.error, asyncio.CancelledError)
    else:
        assert run.status == "compensated"
        assert isinstance(run.error, sk.InjectedFault)
        assert run.error.step == run.failed_step
        assert steps[run.failed_step].fault in {"fail", "fail_after"}

    # The steps frame agrees with what the functions saw.
    frame = run.steps
    forward_ok = frame[(frame.phase == "forward") & (frame.status == "succeeded")].step.tolist()
    assert forward_ok == completed
    compensated = frame[(frame.phase == "compensate") & (frame.status == "succeeded")].step.tolist()
    assert compensated == expected
    failed_compensations = frame[(frame.phase == "compensate") & (frame.status == "failed")].step.tolist()
    assert failed_compensations == failures
    assert run.steps_completed == len(completed)
