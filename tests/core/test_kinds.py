"""Step kinds and forward recovery: the pivot, retriable steps after it, and stuck runs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import sagakit as sk

FAST = sk.RetryPolicy(max_retries=2, initial_delay=0, max_delay=0, jitter=0)


class Services:
    """Records what each step and compensation did; steps fail as told."""

    def __init__(self, failures: dict[str, int] | None = None) -> None:
        self.calls: list[str] = []
        self.failures = dict(failures or {})

    def action(self, name: str) -> Any:
        async def act(data: Any, context: sk.WorkflowContext) -> Any:
            self.calls.append(f"{name}#{context.attempt}")
            if self.failures.get(name, 0) > 0:
                self.failures[name] -= 1
                raise ConnectionError(f"{name} unavailable")
            return {**data, name: True}

        act.__name__ = name
        return act

    def undo(self, name: str) -> Any:
        async def compensate(data: Any, context: sk.WorkflowContext) -> None:
            self.calls.append(f"undo {name}")

        return compensate

    def saga(self, *, retry: sk.RetryPolicy | int | None = FAST) -> sk.Saga:
        return sk.Saga("order", [
            sk.step(self.action("reserve"), self.undo("reserve")),
            sk.step(self.action("charge"), kind="pivot"),
            sk.step(self.action("ship"), retry=retry),
            sk.step(self.action("email"), retry=retry),
        ])


def noop(data: Any, context: sk.WorkflowContext) -> None:
    return None


def undo(data: Any, context: sk.WorkflowContext) -> None:
    return None


class TestDefinition:
    """Kinds are checked when the saga is built; each error names the step."""

    def test_steps_after_the_pivot_become_retriable_with_the_default_forward_policy(self) -> None:
        """Only the steps after the pivot change; without retry= they get FORWARD_RETRY."""
        saga = sk.Saga("s", [sk.step(noop, undo, name="a"), sk.step(noop, name="p", kind="pivot"),
                             sk.step(noop, name="b"), sk.parallel(sk.step(noop, name="c"), sk.step(noop, name="d"))])
        assert [s.kind for s in saga.steps] == ["compensatable", "pivot", "retriable", "retriable", "retriable"]
        assert saga.pivot == "p" and saga.forward_from == 2
        forward = saga.get_step("b").forward
        assert isinstance(forward, sk.RetryPrimitive) and forward.policy is sk.FORWARD_RETRY
        assert sk.FORWARD_RETRY.deadline is not None and sk.FORWARD_RETRY.max_retries > 0

    def test_a_saga_without_pivot_is_unchanged(self) -> None:
        """No pivot: every step keeps its kind and its forward function."""
        step = sk.step(noop, undo, name="a")
        saga = sk.Saga("s", [step, sk.step(noop, name="b", kind="readonly")])
        assert saga.steps[0] is step and saga.pivot is None and saga.forward_from is None
        assert saga.steps[1].kind == "readonly"

    @pytest.mark.parametrize(
        ("stages", "message"),
        [
            (lambda: [sk.step(noop, name="p", kind="pivot"), sk.step(noop, name="q", kind="pivot")],
             "stage 1: step 'q' is a second pivot (the first is 'p')"),
            (lambda: [sk.step(noop, name="p", kind="pivot"), sk.step(noop, undo, name="ship")],
             "step 'ship' comes after the pivot 'p' and has a compensation"),
            (lambda: [sk.step(noop, name="ship", kind="retriable")],
             "step 'ship' is retriable but comes before any pivot"),
            (lambda: [sk.parallel(sk.step(noop, name="p", kind="pivot"), sk.step(noop, name="x"))],
             "step 'p' is a pivot in a parallel stage"),
            (lambda: [sk.step(noop, name="p", kind="pivot"),
                      sk.parallel(sk.step(noop, name="x"), sk.step(noop, undo, name="y"))],
             "step 'y' comes after the pivot 'p' and has a compensation"),
        ],
    )
    def test_bad_kinds_in_a_saga_are_refused_naming_the_step(self, stages: Any, message: str) -> None:
        """A SagaDefinitionError (a ValueError) that names the stage and the step; nothing runs."""
        with pytest.raises(sk.SagaDefinitionError, match=message.replace("(", r"\(").replace(")", r"\)")):
            sk.Saga("s", stages())

    @pytest.mark.parametrize("kind", ["pivot", "retriable", "readonly"])
    def test_a_step_of_a_kind_without_undo_refuses_a_compensation(self, kind: str) -> None:
        """The message says why that kind has no compensation."""
        with pytest.raises(sk.SagaDefinitionError, match=f"step 'noop' is '{kind}' and has a compensation"):
            sk.step(noop, undo, kind=kind)  # type: ignore[arg-type]

    def test_an_unknown_kind_names_the_kinds(self) -> None:
        """An unknown kind lists the four kinds."""
        with pytest.raises(sk.SagaDefinitionError, match="'compensatable', 'pivot', 'retriable', 'readonly'"):
            sk.step(noop, kind="final")  # type: ignore[arg-type]

    def test_replace_keeps_and_changes_the_kind(self) -> None:
        """Step.replace carries the kind over, and can change it."""
        step = sk.step(noop, name="p", kind="pivot")
        assert step.replace(name="q").kind == "pivot"
        assert step.replace(kind="readonly").kind == "readonly"
        assert "kind='pivot'" in repr(step)

    def test_a_retry_deadline_must_be_positive_seconds(self) -> None:
        """RetryPolicy(deadline=...) is checked like every number of seconds."""
        with pytest.raises(sk.SagaDefinitionError, match="deadline"):
            sk.RetryPolicy(deadline=-1)


class TestForwardRecovery:
    """Before the pivot a failure rolls back; after it, steps are retried and never undone."""

    async def test_a_flaky_step_after_the_pivot_completes_forward(self) -> None:
        """Its attempts show in the trace; nothing is compensated."""
        services = Services({"email": 2})
        run = await services.saga().run({})
        assert run.status == "completed" and run.result == {"reserve": True, "charge": True, "ship": True,
                                                            "email": True}
        assert services.calls == ["reserve#1", "charge#1", "ship#1", "email#1", "email#2", "email#3"]
        email = run.steps[run.steps.step == "email"]
        assert email.attempt.tolist() == [1, 2, 3] and email.status.tolist() == ["failed", "failed", "succeeded"]
        assert set(run.steps.kind) == {"compensatable", "pivot", "retriable"}

    async def test_a_step_that_runs_out_of_retries_leaves_the_run_stuck(self) -> None:
        """Nothing compensated; SagaStuck names the pending step, keeps its last error; execute() raises it."""
        services = Services({"ship": 99})
        saga = services.saga()
        run = await saga.run({})
        assert run.status == "stuck" and run.failed_step == "ship"
        assert services.calls == ["reserve#1", "charge#1", "ship#1", "ship#2", "ship#3"]
        assert isinstance(run.error, sk.SagaStuck) and isinstance(run.error, sk.SagaError)
        assert run.error.step == "ship" and run.error.pivot == "charge"
        assert isinstance(run.original_error, ConnectionError) and run.error.original is run.original_error
        assert run.error.__cause__ is run.original_error
        assert "stuck at step 'ship' after its pivot 'charge' (ConnectionError: ship unavailable)" in str(run.error)
        assert run.result is None and run.compensations_run == 0
        assert saga.history.runs.status.tolist() == ["stuck"]
        with pytest.raises(sk.SagaStuck) as caught:
            await saga.execute({})
        assert caught.value.step == "ship"

    async def test_a_failing_pivot_rolls_back_like_any_step(self) -> None:
        """A failure at the pivot compensates what came before it."""
        services = Services({"charge": 1})
        run = await services.saga().run({})
        assert run.status == "compensated" and run.failed_step == "charge"
        assert services.calls == ["reserve#1", "charge#1", "undo reserve"]

    async def test_a_cancellation_after_the_pivot_lets_the_rest_finish_then_propagates(self) -> None:
        """The forward steps run to their end, shielded; then the caller's cancellation propagates."""
        calls: list[str] = []
        started = asyncio.Event()

        async def slow(data: Any, context: sk.WorkflowContext) -> None:
            started.set()
            await asyncio.sleep(0.05)
            calls.append("slow done")

        async def last(data: Any, context: sk.WorkflowContext) -> None:
            calls.append("last done")

        saga = sk.Saga("s", [sk.step(noop, undo, name="a"), sk.step(noop, name="p", kind="pivot"),
                             sk.step(slow, name="slow"), sk.step(last, name="last")])
        task = asyncio.ensure_future(saga.run({}))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert calls == ["slow done", "last done"]
        assert saga.history.last is not None and saga.history.last.status == "completed"

    async def test_a_cancellation_during_a_retry_wait_after_the_pivot_is_held_until_the_end(self) -> None:
        """A step that never awaits starts inline; its retry's wait still runs shielded: the
        retry happens, the saga completes, then the cancellation propagates."""
        services = Services({"ship": 1})
        policy = sk.RetryPolicy(max_retries=2, initial_delay=0.05, max_delay=0.05, jitter=0)
        saga = services.saga(retry=policy)
        task = asyncio.ensure_future(saga.run({}))
        while "ship#1" not in services.calls:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert services.calls[-2:] == ["ship#2", "email#1"]
        assert saga.history.last is not None and saga.history.last.status == "completed"

    async def test_a_retriable_step_entering_its_own_timeout_times_itself_out(self) -> None:
        """A step after the pivot that binds asyncio.timeout to its task starts in the task that
        goes on running it: the timeout fails that attempt, never the run."""
        attempts: list[int] = []

        async def bounded(data: Any, context: sk.WorkflowContext) -> None:
            attempts.append(context.attempt)
            async with asyncio.timeout(0.01):
                await asyncio.sleep(5)

        saga = sk.Saga("s", [sk.step(noop, name="p", kind="pivot"), sk.step(bounded, name="x", retry=FAST)])
        run = await saga.run({})  # no CancelledError: the run was never cancelled
        assert run.status == "stuck" and isinstance(run.original_error, TimeoutError)
        assert attempts == [1, 2, 3]

    async def test_a_hard_interruption_after_the_pivot_leaves_the_run_stuck_and_propagates(self) -> None:
        """KeyboardInterrupt in a retriable step: stuck (resumable), never retried, then raised."""
        calls: list[int] = []

        async def interrupted(data: Any, context: sk.WorkflowContext) -> None:
            calls.append(context.attempt)
            raise KeyboardInterrupt

        saga = sk.Saga("s", [sk.step(noop, name="p", kind="pivot"), sk.step(interrupted, name="x", retry=FAST)])

        async def go() -> BaseException | None:
            try:
                await saga.run({})
            except KeyboardInterrupt as exc:
                return exc
            return None

        raised = await asyncio.ensure_future(go())
        assert isinstance(raised, KeyboardInterrupt) and calls == [1]
        run = saga.history.last
        assert run is not None and run.status == "stuck" and run.failed_step == "x"

    async def test_a_timeout_in_a_retriable_step_times_the_step_out_not_the_run(self) -> None:
        """Past the pivot steps run in a task of their own: a step's timeout fails that attempt."""
        async def hangs(data: Any, context: sk.WorkflowContext) -> None:
            await asyncio.sleep(5)

        saga = sk.Saga("s", [sk.step(noop, name="p", kind="pivot"),
                             sk.step(hangs, name="x", timeout=0.01, retry=FAST)])
        run = await saga.run({})
        assert run.status == "stuck" and isinstance(run.original_error, sk.StepTimeout)
        assert run.steps[run.steps.step == "x"].attempt.tolist() == [1, 2, 3]

    async def test_the_default_forward_policy_stops_at_its_deadline_on_the_loop_clock(self) -> None:
        """FORWARD_RETRY's deadline is read on the loop's clock: a simulated run's virtual time counts."""
        from sagakit.explore import simulate

        attempts: list[int] = []

        async def down(data: Any, context: sk.WorkflowContext) -> None:
            attempts.append(context.attempt)
            await asyncio.sleep(30)  # virtual seconds
            raise ConnectionError("down")

        saga = sk.Saga("s", [sk.step(noop, name="p", kind="pivot"), sk.step(down, name="ship")])
        history = simulate(saga, 1)
        run = history.last
        assert run is not None and run.status == "stuck"
        # 30 s per attempt: the third would start past the 60 s deadline.
        assert attempts == [1, 2]


class TestCompensationsThatBindTheirTask:
    """A compensation using asyncio.timeout (which binds the current task) times itself out, not the run."""

    async def test_a_compensation_timeout_fires_in_the_compensation(self) -> None:
        """The first compensation of a rollback starts in the rollback's own task."""
        async def slow_release(data: Any, context: sk.WorkflowContext) -> None:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(5)

        async def fail(data: Any, context: sk.WorkflowContext) -> None:
            raise ValueError("declined")

        saga = sk.Saga("s", [sk.step(noop, slow_release, name="a"), sk.step(fail, name="b")])
        run = await saga.run({})  # no CancelledError: the run was never cancelled
        assert run.status == "compensation_failed"
        assert isinstance(run.error, sk.CompensationError)
        assert [type(f.error) for f in run.error.failures] == [TimeoutError]

    async def test_a_plain_def_returning_a_coroutine_that_binds_its_task_is_moved_first(self) -> None:
        """A compensation written as a lambda around an async function gets the same care."""
        async def release(data: Any) -> None:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(5)

        async def fail(data: Any, context: sk.WorkflowContext) -> None:
            raise ValueError("declined")

        saga = sk.Saga("s", [sk.step(noop, lambda data, context: release(data), name="a"), sk.step(fail, name="b")])
        run = await saga.run({})
        assert run.status == "compensation_failed"
        assert [type(f.error) for f in run.error.failures] == [TimeoutError]  # type: ignore[union-attr]
