"""Policies: retry, timeout, fallback and sequencing around step functions, and what they refuse."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import sagakit as sk
from sagakit.policies import callable_name


async def double(data: Any, context: sk.WorkflowContext) -> Any:
    return {"n": data["n"] * 2}


async def increment(data: Any, context: sk.WorkflowContext) -> Any:
    return {"n": data["n"] + 1}


def slow_sync(data: Any, context: sk.WorkflowContext) -> Any:
    time.sleep(0.3)
    return {**data, "thread": threading.current_thread().name}


def fast_sync(data: Any, context: sk.WorkflowContext) -> Any:
    return {**data, "thread": threading.current_thread().name}


class Flaky:
    """Fails ``times`` times with ``error`` and then succeeds."""

    def __init__(self, times: int, error: BaseException) -> None:
        self.times = times
        self.error = error
        self.calls = 0

    async def __call__(self, data: Any, context: sk.WorkflowContext) -> Any:
        self.calls += 1
        if self.calls <= self.times:
            raise self.error
        return data


class TestRetry:
    async def test_retries_until_success_and_records_every_attempt(self) -> None:
        """Each attempt is an event; the step succeeds on the third."""
        flaky = Flaky(2, OSError("blip"))
        saga = sk.Saga("s", [sk.step(flaky, name="call", retry=sk.RetryPolicy(max_retries=3, initial_delay=0,
                                                                              jitter=0))])
        run = await saga.run({})
        assert run.status == "completed"
        assert run.steps["status"].tolist() == ["failed", "failed", "succeeded"]

    async def test_only_the_listed_errors_are_retried(self) -> None:
        """on=(OSError,) leaves a ValueError to fail the step at once."""
        flaky = Flaky(1, ValueError("bad input"))
        retry = sk.RetryPrimitive(flaky, max_retries=3, initial_delay=0, jitter=0, on=OSError)
        with pytest.raises(ValueError, match="bad input"):
            await retry({}, None)
        assert flaky.calls == 1

    @pytest.mark.parametrize("kind", [BaseException, KeyboardInterrupt, SystemExit, asyncio.CancelledError])
    def test_cancellations_and_interrupts_cannot_be_retried(self, kind: type[BaseException]) -> None:
        """RetryPolicy(on=BaseException) and its kin are refused at definition, saying why."""
        with pytest.raises(TypeError, match=rf"on: expected subclasses of Exception, got {kind.__name__}; "
                                            "cancellations and interrupts"):
            sk.RetryPolicy(on=kind)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="never retried"):
            sk.RetryPrimitive(double, on=(OSError, kind))  # type: ignore[arg-type]

    async def test_a_cancellation_is_never_retried(self) -> None:
        """A cancelled attempt ends the retry loop at once: the cancellation reaches the caller."""
        started = asyncio.Event()
        calls = 0

        async def hang(data: Any, context: sk.WorkflowContext) -> Any:
            nonlocal calls
            calls += 1
            started.set()
            await asyncio.sleep(3600)

        task = asyncio.ensure_future(sk.RetryPrimitive(hang, max_retries=5, initial_delay=0, jitter=0)({}, None))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert calls == 1

    @pytest.mark.parametrize("field", ["initial_delay", "max_delay", "jitter"])
    def test_delays_too_large_for_a_float(self, field: str) -> None:
        """10**400 seconds is a ValueError naming the field, not an OverflowError."""
        with pytest.raises(ValueError, match=f"{field}: expected a finite number of seconds >= 0, got an int too"):
            sk.RetryPolicy(**{field: 10**400})

    def test_the_wait_after_each_attempt(self) -> None:
        """Doubling from ``initial_delay``, capped at ``max_delay``, plus a jitter within its
        bound that repeats under the same ``RETRY_RANDOM`` seed; nothing without delays."""
        import random

        from sagakit.policies import RETRY_RANDOM

        plain = sk.RetryPolicy(max_retries=9, initial_delay=0.5, max_delay=3.0, jitter=0)
        assert [plain.delay_after(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
        assert sk.RetryPolicy(initial_delay=0, jitter=0).delay_after(4) == 0.0
        jittered = sk.RetryPolicy(max_retries=9, initial_delay=0.5, max_delay=3.0, jitter=0.25)
        token = RETRY_RANDOM.set(random.Random(7))
        try:
            first = [jittered.delay_after(n) for n in range(1, 6)]
            RETRY_RANDOM.set(random.Random(7))
            assert [jittered.delay_after(n) for n in range(1, 6)] == first
        finally:
            RETRY_RANDOM.reset(token)
        assert all(0 <= wait - base <= 0.25 for wait, base in zip(first, [0.5, 1.0, 2.0, 3.0, 3.0], strict=True))
        with pytest.raises(ValueError, match=r"RetryPolicy.delay_after attempt: expected an int >= 1, got 0"):
            plain.delay_after(0)
        with pytest.raises(TypeError, match=r"RetryPolicy.delay_after attempt: expected an int >= 1, got str '2'"):
            plain.delay_after("2")  # type: ignore[arg-type]

    def test_on_must_hold_exception_types(self) -> None:
        """A string where an exception type belongs is named."""
        with pytest.raises(TypeError, match="on: expected an exception type or a tuple of them, got str 'OSError'"):
            sk.RetryPolicy(on="OSError")  # type: ignore[arg-type]


class TestTimeout:
    async def test_async_function_times_out(self) -> None:
        """An async function past its limit raises StepTimeout, a TimeoutError."""

        async def hang(data: Any, context: sk.WorkflowContext) -> Any:
            await asyncio.sleep(3600)

        with pytest.raises(TimeoutError, match=r"timed out after 0\.05s"):
            await sk.TimeoutPrimitive(hang, timeout=0.05)({}, None)

    async def test_plain_def_step_timeout_is_enforced(self) -> None:
        """A plain def step that outlives timeout=0.05 (it blocks until the test lets it go)
        fails with StepTimeout and rolls back."""
        undone: list[str] = []
        release = threading.Event()

        def first(data: Any, context: sk.WorkflowContext) -> Any:
            return data

        def blocked(data: Any, context: sk.WorkflowContext) -> Any:
            release.wait(60)
            return data

        saga = sk.Saga("s", [sk.step(first, compensate=lambda d, c: undone.append("first")),
                             sk.step(blocked, timeout=0.05)])
        try:
            run = await saga.run({})
        finally:
            release.set()  # the thread cannot be interrupted: let it end
        assert run.status == "compensated"
        assert isinstance(run.error, sk.StepTimeout) and run.error.step == "blocked"
        assert undone == ["first"]

    async def test_plain_def_runs_on_a_worker_thread_under_a_timeout(self) -> None:
        """Under a timeout a plain def runs off the event loop's thread (so the loop can stop waiting)."""
        result = await sk.TimeoutPrimitive(fast_sync, timeout=5)({}, None)
        assert result["thread"] != threading.current_thread().name

    def test_plain_def_runs_in_place_on_a_virtual_clock(self) -> None:
        """In a simulation real time does not count: a synchronous step runs in place and never times out."""
        saga = sk.Saga("s", [sk.step(slow_sync, timeout=0.05)])
        history = saga.simulate(1, {})
        assert history.runs["status"].tolist() == ["completed"]
        assert history.runs["duration_ms"].tolist() == [0.0]

    def test_nested_policies_are_rebuilt_not_changed(self) -> None:
        """A timeout around a retry of a plain def moves that def to a thread in a copy; the retry is kept."""
        retry = sk.RetryPrimitive(fast_sync, max_retries=1)
        timed = sk.TimeoutPrimitive(retry, timeout=1)
        assert retry.inner is fast_sync
        assert isinstance(timed.inner, sk.RetryPrimitive) and timed.inner is not retry
        assert timed.inner.policy is retry.policy
        assert callable_name(timed) == "fast_sync"

    def test_async_inner_is_kept_as_given(self) -> None:
        """Nothing to move: an async function or policy stays the same object."""
        retry = sk.RetryPrimitive(double)
        assert sk.TimeoutPrimitive(retry, timeout=1).inner is retry

    def test_timeout_too_large_for_a_float(self) -> None:
        """timeout=10**400 is a ValueError naming the argument."""
        with pytest.raises(ValueError, match="timeout: expected a finite number of seconds > 0, got an int too large"):
            sk.TimeoutPrimitive(double, timeout=10**400)


class TestFallback:
    async def test_falls_back_on_the_listed_errors_only(self) -> None:
        """The fallback runs with the same input for a listed error; others propagate."""

        async def broken(data: Any, context: sk.WorkflowContext) -> Any:
            raise KeyError(data["n"])

        assert await sk.FallbackPrimitive(broken, double, on=KeyError)({"n": 2}, None) == {"n": 4}
        with pytest.raises(KeyError):
            await sk.FallbackPrimitive(broken, double, on=OSError)({"n": 2}, None)

    def test_on_must_be_exception_types(self) -> None:
        """FallbackPrimitive(on="ValueError") is a TypeError naming the argument."""
        with pytest.raises(TypeError, match="FallbackPrimitive on: expected an exception type or a tuple of them"):
            sk.FallbackPrimitive(double, increment, on="ValueError")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="FallbackPrimitive on: expected subclasses of Exception"):
            sk.FallbackPrimitive(double, increment, on=BaseException)  # type: ignore[arg-type]


class TestSequential:
    async def test_parts_run_in_order_and_flatten(self) -> None:
        """a >> b >> c is one flat SequentialPrimitive feeding each output to the next part."""
        chain = sk.RetryPrimitive(double) >> increment >> double
        assert isinstance(chain, sk.SequentialPrimitive) and len(chain.parts) == 3
        assert await chain({"n": 1}, None) == {"n": 6}

    def test_empty_and_non_sequences_are_refused(self) -> None:
        """No parts, or a string of them, is named."""
        with pytest.raises(ValueError, match="at least one step function"):
            sk.SequentialPrimitive([])
        with pytest.raises(TypeError, match="expected a list of step functions, got str"):
            sk.SequentialPrimitive("ab")  # type: ignore[arg-type]

    def test_names_are_seen_through_policies(self) -> None:
        """A step built from a policy takes the innermost function's name."""
        assert sk.step(sk.TimeoutPrimitive(sk.RetryPrimitive(double), timeout=1)).name == "double"


class TestTimeoutConcurrency:
    async def test_concurrent_plain_def_steps_do_not_wait_for_each_other(self) -> None:
        """Twenty timed sync steps all run at once: none waits in a pool's queue (where its
        waiting would count against its timeout)."""
        everyone = threading.Barrier(20, timeout=10)

        def meet(data: Any, context: sk.WorkflowContext) -> Any:
            everyone.wait()  # breaks (and the step fails) unless all twenty run at the same time
            return data

        saga = sk.Saga("s", [sk.step(meet, timeout=30)])
        runs = await asyncio.gather(*(saga.run({}) for _ in range(20)))
        assert [run.status for run in runs] == ["completed"] * 20


class TestWhatMayRunInline:
    """``task_free``: what the engine may start in the run's task and move when it first waits."""

    def test_only_calls_that_bind_nothing_to_their_task_count(self) -> None:
        import functools

        from sagakit.policies import task_free

        async def quick(data: Any, context: sk.WorkflowContext) -> Any:
            return data

        async def waits(data: Any, context: sk.WorkflowContext) -> Any:
            async with asyncio.timeout(1):
                await asyncio.sleep(0)

        class Callable:
            async def __call__(self, data: Any, context: Any) -> Any:
                return data

        patient = sk.RetryPolicy(max_retries=2, initial_delay=1.0, max_delay=1.0, jitter=0.5)
        assert task_free(quick) and task_free(Callable()) and task_free(functools.partial(quick))
        assert task_free(sk.RetryPrimitive.from_policy(quick, patient))  # its waits are plain sleeps
        assert not task_free(waits) and not task_free(sk.RetryPrimitive(waits))
        assert not task_free(fast_sync)  # a plain def may return an awaitable
        assert not task_free(sk.TimeoutPrimitive(quick, 1.0))  # binds asyncio.timeout to its task
        assert not task_free(sk.RetryPrimitive(sk.TimeoutPrimitive(quick, 1.0)))
