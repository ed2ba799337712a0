"""The semantics contract (DESIGN.md §3) on the local asyncio backend."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib.util
from typing import Any

import pytest
from testsupport import require

import sagakit as sk
from sagakit import EventKind as K


class Recorder:
    """Builds steps that record what they saw, and can fail or wait on demand."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.contexts: dict[str, sk.WorkflowContext] = {}

    def action(self, name: str, *, fail: BaseException | None = None, wait: float = 0.0, sync: bool = False,
               returns: Any = "merge") -> Any:
        def body(data: Any, context: sk.WorkflowContext) -> Any:
            self.calls.append((name, data))
            self.contexts[name] = context
            if fail is not None:
                raise fail
            if returns == "merge":
                return {**data, name: True}
            return returns

        if sync:
            body.__name__ = name
            return body

        async def run(data: Any, context: sk.WorkflowContext) -> Any:
            if wait:
                await asyncio.sleep(wait)
            return body(data, context)

        run.__name__ = name
        return run

    def undo(self, name: str, *, fail: BaseException | None = None, wait: float = 0.0) -> Any:
        async def run(data: Any, context: sk.WorkflowContext) -> None:
            self.calls.append(("undo_" + name, data))
            self.contexts["undo_" + name] = context
            if wait:
                await asyncio.sleep(wait)
            if fail is not None:
                raise fail

        run.__name__ = "undo_" + name
        return run

    @property
    def undone(self) -> list[str]:
        return [name[5:] for name, _ in self.calls if name.startswith("undo_")]

    def saga(self, *names: str, fail_at: str | None = None, **options: Any) -> sk.Saga:
        stages = [
            sk.step(self.action(n, fail=ValueError(n) if n == fail_at else None), self.undo(n)) for n in names
        ]
        return sk.Saga("s", stages, **options)


class TestDataFlow:
    async def test_each_stage_receives_the_previous_output(self) -> None:
        """Stage 1 gets the input, each next stage the previous output; the last output is the result."""
        rec = Recorder()
        saga = rec.saga("a", "b", "c")
        result = await saga.execute({"x": 1})
        assert [data for _, data in rec.calls] == [{"x": 1}, {"x": 1, "a": True}, {"x": 1, "a": True, "b": True}]
        assert result == {"x": 1, "a": True, "b": True, "c": True}

    async def test_returning_none_passes_the_input_through(self) -> None:
        """A step that returns None hands its own input to the next stage."""
        rec = Recorder()
        saga = sk.Saga("s", [rec.action("a"), rec.action("b", returns=None), rec.action("c")])
        assert await saga.execute({}) == {"a": True, "c": True}
        assert rec.calls[2] == ("c", {"a": True})

    async def test_sync_and_async_steps_mix(self) -> None:
        """Plain def steps and async def steps run in one saga, in order."""
        rec = Recorder()
        saga = sk.Saga("s", [rec.action("a", sync=True), rec.action("b"), rec.action("c", sync=True)])
        assert await saga.execute({}) == {"a": True, "b": True, "c": True}

    async def test_partial_and_callable_objects_are_steps(self) -> None:
        """functools.partial and objects with async __call__ work, named after what they wrap."""

        async def add(amount: int, data: dict[str, int], context: sk.WorkflowContext) -> dict[str, int]:
            return {"n": data["n"] + amount}

        class Double:
            async def __call__(self, data: dict[str, int], context: sk.WorkflowContext) -> dict[str, int]:
                return {"n": data["n"] * 2}

        saga = sk.Saga("s", [functools.partial(add, 3), Double()])
        assert saga.step_names == ("add", "Double")
        assert await saga.execute({"n": 1}) == {"n": 8}


class TestRollback:
    @pytest.mark.parametrize("fail_at", ["a", "b", "c", "d"])
    async def test_completed_steps_are_compensated_in_reverse(self, fail_at: str) -> None:
        """Every completed step is compensated once, newest first; the failed one is not."""
        rec = Recorder()
        names = ["a", "b", "c", "d"]
        run = await rec.saga(*names, fail_at=fail_at).run({})
        done = names[: names.index(fail_at)]
        assert rec.undone == list(reversed(done))
        assert run.status == "compensated"
        assert run.failed_step == fail_at

    async def test_compensation_receives_its_steps_output_and_context(self) -> None:
        """A compensation sees what its step returned, and the same correlation id and metadata."""
        rec = Recorder()
        saga = rec.saga("a", "b", "c", fail_at="c")
        context = sk.WorkflowContext(correlation_id="corr", metadata={"tenant": "t1"})
        await saga.run({"x": 0}, context)
        received = dict(rec.calls)
        assert received["undo_b"] == {"x": 0, "a": True, "b": True}
        assert received["undo_a"] == {"x": 0, "a": True}
        undo_context = rec.contexts["undo_a"]
        assert undo_context.correlation_id == "corr"
        assert undo_context.metadata is context.metadata
        assert undo_context.phase == "compensate"
        assert undo_context.step == "a"

    async def test_steps_without_compensation_are_recorded_as_skipped(self) -> None:
        """A None compensation is skipped, and the skip is an event and a frame row."""
        rec = Recorder()
        saga = sk.CompensationPrimitive(
            [(rec.action("a"), rec.undo("a")), (rec.action("b"), None), (rec.action("c", fail=ValueError()), None)]
        )
        run = await saga.run({})
        assert rec.undone == ["a"]
        skipped = [e for e in run.events if e.kind is K.COMPENSATION_SKIPPED]
        assert [e.step for e in skipped] == ["b"]
        rows = run.steps
        assert rows[(rows.phase == "compensate") & (rows.step == "b")].status.tolist() == ["skipped"]

    async def test_original_exception_object_is_re_raised(self) -> None:
        """execute() raises the very exception the step raised, after a clean rollback."""
        error = KeyError("missing")
        rec = Recorder()
        saga = sk.Saga("s", [sk.step(rec.action("a"), rec.undo("a")), rec.action("b", fail=error)])
        with pytest.raises(KeyError) as raised:
            await saga.execute({})
        assert raised.value is error
        assert rec.undone == ["a"]

    async def test_compensate_on_failure_runs_first_with_the_input(self) -> None:
        """An ambiguous step's own compensation runs first and receives the step's input."""
        rec = Recorder()
        saga = sk.Saga(
            "s",
            [
                sk.step(rec.action("a"), rec.undo("a")),
                sk.step(rec.action("b", fail=TimeoutError()), rec.undo("b"), compensate_on_failure=True),
            ],
        )
        run = await saga.run({"x": 0})
        assert rec.undone == ["b", "a"]
        assert dict(rec.calls)["undo_b"] == {"x": 0, "a": True}
        assert run.status == "compensated"

    async def test_compensation_failure_stops_by_default(self) -> None:
        """The default policy stops at the failed compensation and lists what is left."""
        rec = Recorder()
        boom = RuntimeError("undo b broke")
        saga = sk.Saga(
            "s",
            [
                sk.step(rec.action("a"), rec.undo("a")),
                sk.step(rec.action("b"), rec.undo("b", fail=boom)),
                sk.step(rec.action("c"), rec.undo("c")),
                rec.action("d", fail=ValueError("d")),
            ],
        )
        with pytest.raises(sk.CompensationError) as raised:
            await saga.execute({})
        error = raised.value
        assert rec.undone == ["c", "b"]
        assert error.step == "b"
        assert error.failures[0].error is boom
        assert isinstance(error.original, ValueError)
        assert error.pending == ("a",)
        assert "'b'" in str(error) and "'a'" in str(error)
        assert saga.history.last is not None and saga.history.last.status == "compensation_failed"

    async def test_compensation_failure_can_continue(self) -> None:
        """continue_on_compensation_failure runs the rest, then reports every failure."""
        rec = Recorder()
        saga = sk.Saga(
            "s",
            [
                sk.step(rec.action("a"), rec.undo("a", fail=RuntimeError("a"))),
                sk.step(rec.action("b"), rec.undo("b")),
                sk.step(rec.action("c"), rec.undo("c", fail=RuntimeError("c"))),
                rec.action("d", fail=ValueError("d")),
            ],
            continue_on_compensation_failure=True,
        )
        with pytest.raises(sk.CompensationError) as raised:
            await saga.execute({})
        assert rec.undone == ["c", "b", "a"]
        assert [f.step for f in raised.value.failures] == ["c", "a"]
        assert raised.value.pending == ()


class TestCancellation:
    async def test_cancelled_task_compensates_then_propagates(self) -> None:
        """task.cancel() mid-step compensates the completed steps, then the task ends cancelled."""
        rec = Recorder()
        started = asyncio.Event()

        async def slow(data: Any, context: sk.WorkflowContext) -> Any:
            started.set()
            await asyncio.sleep(30)

        saga = sk.Saga("s", [sk.step(rec.action("a"), rec.undo("a")), sk.step(slow, rec.undo("slow"))])
        task = asyncio.create_task(saga.execute({}))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert rec.undone == ["a"]
        run = saga.history.last
        assert run is not None and run.status == "cancelled"
        kinds = [e.kind for e in run.events if e.step == "slow" and e.phase == "forward"]
        assert kinds == [K.STEP_CANCELLED]

    async def test_timeout_around_the_saga_still_rolls_back(self) -> None:
        """asyncio.timeout() around execute() does not skip rollback; TimeoutError comes out."""
        rec = Recorder()
        saga = sk.Saga("s", [sk.step(rec.action("a"), rec.undo("a")), sk.step(rec.action("b", wait=30), rec.undo("b"))])
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await saga.execute({})
        assert rec.undone == ["a"]

    async def test_wait_for_around_the_saga_still_rolls_back(self) -> None:
        """asyncio.wait_for() cancels the inner task: rollback happens before it returns."""
        rec = Recorder()
        saga = sk.Saga("s", [sk.step(rec.action("a"), rec.undo("a")), sk.step(rec.action("b", wait=30), rec.undo("b"))])
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(saga.execute({}), 0.05)
        assert rec.undone == ["a"]

    async def test_rollback_is_shielded_from_further_cancellation(self) -> None:
        """Cancelling again while compensations run does not interrupt them."""
        rec = Recorder()
        in_undo = asyncio.Event()
        finished: list[str] = []

        async def undo_a(data: Any, context: sk.WorkflowContext) -> None:
            in_undo.set()
            await asyncio.sleep(0.05)
            finished.append("a")

        started = asyncio.Event()

        async def slow(data: Any, context: sk.WorkflowContext) -> None:
            started.set()
            await asyncio.sleep(30)

        saga = sk.Saga("s", [sk.step(rec.action("a"), undo_a), slow])
        task = asyncio.create_task(saga.execute({}))
        await started.wait()
        task.cancel()
        await in_undo.wait()
        task.cancel()  # a second, impatient cancellation
        with pytest.raises(asyncio.CancelledError):
            await task
        assert finished == ["a"]

    async def test_cancellation_during_a_failure_rollback_still_finishes_it(self) -> None:
        """A timeout that fires while compensations run lets them finish, then propagates."""
        finished: list[str] = []

        async def undo_a(data: Any, context: sk.WorkflowContext) -> None:
            await asyncio.sleep(0.1)
            finished.append("a")

        async def a(data: Any, context: sk.WorkflowContext) -> Any:
            return data

        async def b(data: Any, context: sk.WorkflowContext) -> Any:
            raise ValueError("b")

        saga = sk.Saga("s", [sk.step(a, undo_a), b])
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.02):
                await saga.execute({})
        assert finished == ["a"]

    async def test_keyboard_interrupt_in_a_step_rolls_back_and_propagates(self) -> None:
        """An interrupted kernel (KeyboardInterrupt inside a step) rolls back like a cancellation."""
        rec = Recorder()
        saga = sk.Saga("s", [sk.step(rec.action("a"), rec.undo("a")), rec.action("b", fail=KeyboardInterrupt())])
        with pytest.raises(KeyboardInterrupt):
            await saga.run({})
        assert rec.undone == ["a"]
        assert saga.history.last is not None and saga.history.last.status == "cancelled"


class TestParallel:
    async def test_branches_get_the_same_input_and_outputs_merge(self) -> None:
        """Parallel branches see one input; their dict outputs merge in the order given."""
        rec = Recorder()
        saga = sk.Saga("s", [rec.action("a"), sk.parallel(rec.action("x"), rec.action("y")), rec.action("z")])
        result = await saga.execute({})
        assert result == {"a": True, "x": True, "y": True, "z": True}
        seen = dict(rec.calls)
        assert seen["x"] == seen["y"] == {"a": True}

    async def test_branches_run_concurrently(self) -> None:
        """Two branches that each wait for the other can only finish if they run at once."""
        first, second = asyncio.Event(), asyncio.Event()

        async def left(data: Any, context: sk.WorkflowContext) -> Any:
            first.set()
            await second.wait()
            return {"left": 1}

        async def right(data: Any, context: sk.WorkflowContext) -> Any:
            second.set()
            await first.wait()
            return {"right": 1}

        saga = sk.Saga("s", [sk.parallel(left, right)])
        assert await asyncio.wait_for(saga.execute({}), 5) == {"left": 1, "right": 1}

    async def test_failing_branch_cancels_siblings_and_compensates_completed(self) -> None:
        """One branch fails: running siblings are cancelled, finished ones compensated, then earlier stages."""
        rec = Recorder()
        saga = sk.Saga(
            "s",
            [
                sk.step(rec.action("a"), rec.undo("a")),
                sk.parallel(
                    sk.step(rec.action("x"), rec.undo("x")),
                    sk.step(rec.action("y", fail=ValueError("y"), wait=0.01), rec.undo("y")),
                    sk.step(rec.action("z", wait=30), rec.undo("z")),
                ),
            ],
        )
        run = await saga.run({})
        assert rec.undone == ["x", "a"]
        assert run.failed_step == "y"
        statuses = {(r.step, r.phase): r.status for r in run.steps.itertuples()}
        assert statuses[("z", "forward")] == "cancelled"
        assert statuses[("y", "forward")] == "failed"

    async def test_non_dict_branch_output_is_a_clear_error(self) -> None:
        """A branch returning a non-dict fails the saga with a message naming the branch."""

        async def number(data: Any, context: sk.WorkflowContext) -> int:
            return 3

        rec = Recorder()
        saga = sk.Saga("s", [sk.step(rec.action("a"), rec.undo("a")), sk.parallel(rec.action("x"), number)])
        with pytest.raises(TypeError, match="parallel branch 'number' returned int"):
            await saga.execute({})
        assert rec.undone == ["a"]


class TestPolicies:
    async def test_retry_records_every_attempt(self) -> None:
        """Each attempt of a retried step is its own pair of events; attempts count up."""
        calls = []

        async def flaky(data: Any, context: sk.WorkflowContext) -> Any:
            calls.append(context.attempt)
            if len(calls) < 3:
                raise ConnectionError("try again")
            return {"ok": True}

        saga = sk.Saga("s", [sk.step(flaky, retry=sk.RetryPolicy(max_retries=3, initial_delay=0, jitter=0))])
        run = await saga.run({})
        assert run.status == "completed"
        assert calls == [1, 2, 3]
        assert run.steps.status.tolist() == ["failed", "failed", "succeeded"]
        assert run.steps.attempt.tolist() == [1, 2, 3]

    async def test_retry_gives_up_after_max_retries(self) -> None:
        """max_retries=2 means three attempts, then the rollback starts."""
        seed = sk.RetryPrimitive(self._always_fails, max_retries=2, initial_delay=0, jitter=0)
        run = await sk.CompensationPrimitive([(seed, None)]).run({})
        assert run.status == "compensated"
        assert len(run.steps) == 3
        assert isinstance(run.error, ConnectionError)

    @staticmethod
    async def _always_fails(data: Any, context: sk.WorkflowContext) -> Any:
        raise ConnectionError("down")

    async def test_retry_only_retries_listed_errors(self) -> None:
        """Errors outside `on` fail at once."""
        calls = []

        async def broken(data: Any, context: sk.WorkflowContext) -> Any:
            calls.append(1)
            raise ValueError("bug")

        policy = sk.RetryPrimitive(broken, max_retries=5, initial_delay=0, jitter=0, on=ConnectionError)
        with pytest.raises(ValueError):
            await sk.Saga("s", [policy]).execute({})
        assert calls == [1]

    async def test_idempotency_key_is_stable_across_retries(self) -> None:
        """Every attempt of a step sees the same idempotency key; compensation has its own."""
        keys = []

        async def flaky(data: Any, context: sk.WorkflowContext) -> Any:
            keys.append(context.idempotency_key)
            if len(keys) < 2:
                raise ConnectionError()

        saga = sk.Saga("s", [sk.step(flaky, retry=sk.RetryPolicy(max_retries=1, initial_delay=0, jitter=0))])
        run = await saga.run({})
        assert keys == [f"{run.run_id}:flaky", f"{run.run_id}:flaky"]

    async def test_timeout_fails_the_step_with_step_timeout(self) -> None:
        """A step past its timeout fails with StepTimeout, which is a TimeoutError."""
        rec = Recorder()
        saga = sk.Saga("s", [sk.step(rec.action("a"), rec.undo("a")), sk.step(rec.action("b", wait=30), timeout=0.02)])
        with pytest.raises(sk.StepTimeout) as raised:
            await saga.execute({})
        assert isinstance(raised.value, TimeoutError)
        assert raised.value.step == "b" and raised.value.timeout == 0.02
        assert rec.undone == ["a"]
        run = saga.history.last
        assert run is not None
        assert run.steps.iloc[1].status == "failed" and run.steps.iloc[1].error_type == "StepTimeout"

    async def test_timeout_primitive_alone(self) -> None:
        """TimeoutPrimitive works outside a saga too."""
        rec = Recorder()
        with pytest.raises(sk.StepTimeout):
            await sk.TimeoutPrimitive(rec.action("slow", wait=30), timeout=0.01)({}, sk.WorkflowContext())

    async def test_user_timeout_error_is_not_mistaken_for_ours(self) -> None:
        """A TimeoutError raised by the step itself passes through unchanged."""
        error = TimeoutError("remote said so")
        rec = Recorder()
        with pytest.raises(TimeoutError) as raised:
            await sk.TimeoutPrimitive(rec.action("a", fail=error), timeout=5)({}, sk.WorkflowContext())
        assert raised.value is error

    async def test_fallback_and_sequence(self) -> None:
        """FallbackPrimitive swaps in the fallback; >> chains step functions."""
        rec = Recorder()
        fallback = sk.FallbackPrimitive(rec.action("primary", fail=ConnectionError()), rec.action("backup"))
        chained = rec.action("one") >> sk.SequentialPrimitive([rec.action("two"), rec.action("three")])
        saga = sk.Saga("s", [sk.step(fallback, name="pay"), sk.step(chained, name="chain")])
        result = await saga.execute({})
        assert result == {"backup": True, "one": True, "two": True, "three": True}
        run = saga.history.last
        assert run is not None
        assert run.steps.status.tolist() == ["failed", "succeeded", "succeeded", "succeeded", "succeeded"]
        assert run.completed_steps == ["pay", "chain"]

    def test_rshift_needs_a_policy_on_one_side(self) -> None:
        """a >> b works when either side is a policy, and flattens sequences."""
        rec = Recorder()
        sequence = sk.SequentialPrimitive([rec.action("a")]) >> rec.action("b") >> rec.action("c")
        assert [p.__name__ for p in sequence.parts] == ["a", "b", "c"]


class TestContext:
    async def test_context_describes_the_run(self) -> None:
        """During a run the context names the run, saga, step, phase and attempt."""
        rec = Recorder()
        saga = rec.saga("a", "b")
        run = await saga.run({}, sk.WorkflowContext(correlation_id="c-9"))
        context = rec.contexts["b"]
        assert (context.run_id, context.saga, context.step, context.phase, context.attempt) == (
            run.run_id,
            "s",
            "b",
            "forward",
            1,
        )
        assert context.correlation_id == "c-9"
        assert context.idempotency_key == f"{run.run_id}:b"

    async def test_outside_a_run_the_key_is_none(self) -> None:
        """A bare context has no run, so no idempotency key."""
        assert sk.WorkflowContext().idempotency_key is None

    async def test_context_variables_reach_the_steps(self) -> None:
        """Steps see the caller's context variables, also in parallel branches."""
        tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant")
        tenant.set("acme")
        seen = []

        async def read(data: Any, context: sk.WorkflowContext) -> Any:
            seen.append(tenant.get())
            return {context.step: 1}

        saga = sk.Saga("s", [sk.step(read, name="one"), sk.parallel(sk.step(read, name="two"), sk.step(read, name="three"))])
        await saga.execute({})
        assert seen == ["acme", "acme", "acme"]


class TestObservers:
    async def test_observer_sees_every_event_in_order(self) -> None:
        """An observer gets the run's events as they happen, bracketed by run_started/run_finished."""
        rec = Recorder()
        seen: list[sk.Event] = []
        saga = rec.saga("a", "b", fail_at="b", observers=[seen.append])
        run = await saga.run({})
        starts = {K.STEP_STARTED, K.COMPENSATION_STARTED}
        assert [e for e in seen if e.kind not in starts] == run.events  # the trace keeps all but starts
        assert [e.kind for e in seen] == [
            K.RUN_STARTED,
            K.STEP_STARTED,
            K.STEP_SUCCEEDED,
            K.STEP_STARTED,
            K.STEP_FAILED,
            K.ROLLBACK_STARTED,
            K.COMPENSATION_STARTED,
            K.COMPENSATION_SUCCEEDED,
            K.RUN_FINISHED,
        ]

    async def test_a_broken_observer_never_breaks_the_saga(self) -> None:
        """An observer that raises is warned about and dropped; the run goes on."""
        rec = Recorder()

        def broken(event: sk.Event) -> None:
            raise RuntimeError("sink down")

        saga = rec.saga("a", "b", observers=[broken])
        with pytest.warns(RuntimeWarning, match="sink down"):
            run = await saga.run({})
        assert run.status == "completed"

    async def test_settling_observer_is_awaited_between_stages(self) -> None:
        """settle() runs after each stage completes and before the next starts."""
        order: list[str] = []

        class Durable:
            def __call__(self, event: sk.Event) -> None:
                if event.kind is K.STEP_SUCCEEDED:
                    order.append(f"recorded {event.step}")

            async def settle(self) -> None:
                order.append("settled")

        async def a(data: Any, context: sk.WorkflowContext) -> Any:
            order.append("run a")

        async def b(data: Any, context: sk.WorkflowContext) -> Any:
            order.append("run b")

        await sk.Saga("s", [a, b], journal=Durable()).execute({})
        assert order == ["settled", "run a", "recorded a", "settled", "run b", "recorded b", "settled", "settled"]

    async def test_settle_failure_rolls_back_the_completed_step(self) -> None:
        """A settling observer that cannot record fails the run at that point, cleanly."""
        rec = Recorder()

        class Full:
            def __call__(self, event: sk.Event) -> None:
                pass

            async def settle(self) -> None:
                if rec.calls:
                    raise OSError("disk full")

        saga = sk.Saga("s", [sk.step(rec.action("a"), rec.undo("a")), sk.step(rec.action("b"), rec.undo("b"))])
        with pytest.warns(RuntimeWarning, match="recording the end"):
            run = await saga.run({}, journal=Full())
        assert isinstance(run.error, OSError)
        assert rec.undone == ["a"]
        assert [name for name, _ in rec.calls if not name.startswith("undo")] == ["a"]


class TestBrokenObservers:
    async def test_observers_after_a_broken_one_still_get_every_event(self) -> None:
        """Dropping a broken observer never makes the next one miss an event."""
        rec = Recorder()
        seen: list[sk.Event] = []

        def broken(event: sk.Event) -> None:
            raise RuntimeError("sink down")

        saga = rec.saga("a", "b", observers=[broken, seen.append])
        with pytest.warns(RuntimeWarning, match="sink down"):
            run = await saga.run({})
        starts = {K.STEP_STARTED, K.COMPENSATION_STARTED}
        assert [e for e in seen if e.kind not in starts] == run.events


class TestTracebacks:
    async def test_step_tracebacks_lead_to_the_step_without_engine_frames(self) -> None:
        """A failed step's traceback shows the caller and the step, not the engine's frames
        (which would keep every failed run's state alive)."""
        import traceback

        import sagakit.engine

        async def charge(data: Any, context: sk.WorkflowContext) -> Any:
            raise ValueError("card declined")

        saga = sk.Saga("s", [charge])
        with pytest.raises(ValueError) as raised:
            await saga.execute({})
        frames = traceback.extract_tb(raised.value.__traceback__)
        assert frames[-1].name == "charge" and "card declined" in frames[-1].line
        assert all(frame.filename != sagakit.engine.__file__ for frame in frames)
        run = saga.history.last
        assert run is not None and run.error is raised.value


class _BrokenText(Exception):
    """An exception that cannot say what it is: its ``__str__`` and ``__repr__`` raise."""

    def __str__(self) -> str:
        raise KeyError("no text")

    def __repr__(self) -> str:
        raise KeyError("no repr")


def _undo(name: str, undone: list[str], *, raises: BaseException | None = None) -> Any:
    async def compensate(data: Any, context: sk.WorkflowContext) -> None:
        undone.append(name)
        if raises is not None:
            raise raises

    return compensate


async def _ok(data: Any, context: sk.WorkflowContext) -> Any:
    return data


def _failing(error: BaseException) -> Any:
    async def fail(data: Any, context: sk.WorkflowContext) -> Any:
        raise error

    return fail


class TestInterruptedCompensation:
    """A compensation raising KeyboardInterrupt, SystemExit or CancelledError does not abort the rollback."""

    @pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit, asyncio.CancelledError])
    async def test_the_rest_is_compensated_the_run_recorded_then_the_interrupt_raised(
        self, interrupt: type[BaseException]
    ) -> None:
        """c fails; b's compensation is interrupted; a is still compensated; the run is kept; then it propagates."""
        undone: list[str] = []
        saga = sk.Saga("interrupted", [
            sk.step(_ok, _undo("a", undone), name="a"),
            sk.step(_ok, _undo("b", undone, raises=interrupt()), name="b"),
            sk.step(_failing(ValueError("boom")), name="c"),
        ])
        with pytest.raises(interrupt):
            await saga.run({})
        assert undone == ["b", "a"]
        run = saga.history.last
        assert run is not None and run.status == "compensation_failed"
        assert isinstance(run.error, sk.CompensationError)
        assert [f.step for f in run.error.failures] == ["b"] and isinstance(run.error.failures[0].error, interrupt)
        assert isinstance(run.original_error, ValueError) and run.error.pending == ()
        assert run.events[-1].kind is K.RUN_FINISHED and run.compensated_steps == ["a"]

    async def test_interrupted_runs_leave_no_state_in_the_journal_tracer_or_log_sink(self, tmp_path: Any) -> None:
        """100 interrupted rollbacks: every run ends in the journal, and no sink keeps a run open."""
        require(importlib.util.find_spec("opentelemetry.sdk") is not None and
                importlib.util.find_spec("structlog") is not None,
                "opentelemetry-sdk (pip install 'sagakit[otel]')")
        from opentelemetry.sdk.trace import TracerProvider
        from structlog.testing import capture_logs

        from sagakit import telemetry
        from sagakit.journal._file import ACTIVE_RUNS

        undone: list[str] = []
        saga = sk.Saga("leaky", [
            sk.step(_ok, _undo("a", undone), name="a"),
            sk.step(_ok, _undo("b", undone, raises=KeyboardInterrupt()), name="b"),
            sk.step(_failing(ValueError("boom")), name="c"),
        ])
        path = tmp_path / "journal.db"
        with capture_logs(), telemetry.instrument(saga, tracer_provider=TracerProvider()) as instruments:
            with sk.SqliteJournal(path) as journal:
                for _ in range(100):
                    with pytest.raises(KeyboardInterrupt):
                        await saga.run({}, journal=journal)
            assert instruments.tracing.open_runs == 0
            assert instruments.logs.open_runs == 0
        assert not ACTIVE_RUNS & {run.run_id for run in saga.history}
        assert len(saga.history) == 100 and undone == ["b", "a"] * 100
        with sk.SqliteJournal(path) as journal:
            statuses = [run.status for run in journal.runs()]
        assert statuses == ["compensation_failed"] * 100


class TestBrokenExceptions:
    """An exception whose __str__ and __repr__ raise is recorded with a placeholder text."""

    async def test_a_step_and_a_compensation_raising_one_still_give_a_run(self) -> None:
        """The step's and the compensation's errors are kept; messages and repr use a placeholder."""
        saga = sk.Saga("broken", [
            sk.step(_ok, _undo("a", [], raises=_BrokenText()), name="a"),
            sk.step(_failing(_BrokenText()), name="b"),
        ])
        run = await saga.run({})
        assert run.status == "compensation_failed"
        assert isinstance(run.error, sk.CompensationError) and isinstance(run.original_error, _BrokenText)
        placeholder = "<_BrokenText: message unavailable>"
        assert str(run.error) == (
            f"saga 'broken': compensation failed for 'a' (_BrokenText: {placeholder}); "
            f"rollback was started by _BrokenText: {placeholder}"
        )
        assert placeholder in repr(run)
        assert run.steps.error_message.dropna().tolist() == [placeholder, placeholder]


class TestCancellationAfterRollback:
    """A cancellation that arrives while the engine must not leave propagates once the run is rolled back."""

    async def test_a_timeout_during_a_parallel_stages_wind_down_fires(self) -> None:
        """A branch fails; its sibling takes a while to stop; asyncio.timeout() fires meanwhile and is raised."""
        undone: list[str] = []
        deadline: asyncio.Timeout | None = None

        async def slow_to_stop(data: Any, context: sk.WorkflowContext) -> Any:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                assert deadline is not None
                deadline.reschedule(asyncio.get_running_loop().time())  # the caller's timeout expires now
                await asyncio.sleep(0.3)  # cleaning up, as a real client does
                raise
            return data

        async def fail_soon(data: Any, context: sk.WorkflowContext) -> Any:
            await asyncio.sleep(0)
            raise ValueError("no stock")

        saga = sk.Saga("winding", [
            sk.step(_ok, _undo("a", undone), name="a"),
            sk.parallel(sk.step(fail_soon, name="fails"), sk.step(slow_to_stop, name="slow")),
        ])
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(None) as deadline:
                await saga.run({})
        run = saga.history.last
        assert run is not None and run.status == "compensated" and isinstance(run.error, ValueError)
        assert undone == ["a"]

    async def test_a_timeout_during_the_journals_final_write_fires(self) -> None:
        """A settling observer slow to record the end: the timeout still fires, and the run is kept."""

        class SlowToSettle:
            def __init__(self) -> None:
                self.finished = False

            def __call__(self, event: sk.Event) -> None:
                self.finished = self.finished or event.kind is K.RUN_FINISHED

            async def settle(self) -> None:
                if self.finished:
                    assert deadline is not None
                    deadline.reschedule(asyncio.get_running_loop().time())  # the caller's timeout expires now
                    await asyncio.sleep(0.3)

        saga = sk.Saga("settling", [sk.step(_ok, name="a")])
        slow = SlowToSettle()
        deadline: asyncio.Timeout | None = None
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(None) as deadline:
                await saga.run({}, observers=[slow])
        run = saga.history.last
        assert run is not None and run.status == "completed" and slow.finished
