"""Policies: retry, timeout, fallback and sequencing around a step function.

A policy is a callable with the step signature ``(data, context) -> data``, so policies
nest (``TimeoutPrimitive(RetryPrimitive(fn), timeout=5)``) and stand wherever a step
function does. Inside a saga run every call of the innermost function is one attempt in the
event stream, and failure injection acts on each attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dis
import functools
import inspect
import random
import threading
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from tenacity import RetryCallState, wait_exponential
from tenacity.wait import wait_base

from sagakit._checks import check_positive_int, check_seconds, describe
from sagakit.context import WorkflowContext
from sagakit.errors import SagaDefinitionError, StepTimeout

__all__ = [
    "FallbackPrimitive",
    "Policy",
    "RetryPolicy",
    "RetryPrimitive",
    "SequentialPrimitive",
    "StepFunction",
    "TimeoutPrimitive",
    "callable_name",
    "may_suspend",
    "task_free",
]


class StepFunction(Protocol):
    """A step action or compensation: ``fn(data, context) -> data``, sync or async."""

    def __call__(self, data: Any, context: WorkflowContext, /) -> Any: ...


AnyStepFunction: TypeAlias = Callable[[Any, WorkflowContext], Any]


def callable_name(fn: object) -> str:
    """The name a step takes from its action, seen through policies and partials."""
    while True:
        if isinstance(fn, Policy):
            fn = fn.inner
        elif isinstance(fn, functools.partial):
            fn = fn.func
        elif isinstance(fn, _OffLoop):
            fn = fn.function
        else:
            break
    name = getattr(fn, "__name__", None)
    if isinstance(name, str):
        return name
    return type(fn).__name__


@functools.lru_cache(maxsize=4096)
def _is_async_callable(fn: Callable[..., Any]) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    return inspect.iscoroutinefunction(type(fn).__call__)


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` returns an awaitable (cached per function)."""
    try:
        return _is_async_callable(fn)
    except TypeError:  # unhashable callable
        return _is_async_callable.__wrapped__(fn)


async def call_step_function(fn: AnyStepFunction, data: Any, context: WorkflowContext | None) -> Any:
    """Call a sync or async step function and return its result."""
    result = fn(data, context)  # type: ignore[arg-type]
    if inspect.isawaitable(result):
        result = await result
    return result


class AttemptScope(Protocol):
    """What a policy reports each attempt to while a backend runs a step phase.

    A backend sets one on the step's context (``context._scope``) for a phase run through a
    policy: the local engine's ``_StepScope``, a Temporal activity's ``_ActivityScope``.
    Policies call :meth:`attempt` for every call of a plain function, so that each call is one
    recorded attempt; a :class:`TimeoutPrimitive` registers its deadline in ``deadlines`` so that
    a cancellation at that deadline is recorded as a :class:`~sagakit.StepTimeout`
    (``timeout_error``) rather than a cancellation.
    """

    deadlines: list[tuple[float, float]]
    timeout_error: StepTimeout | None

    async def attempt(self, fn: AnyStepFunction, data: Any, context: WorkflowContext, /) -> Any: ...


async def invoke(fn: AnyStepFunction, data: Any, context: WorkflowContext | None) -> Any:
    """Call ``fn``: policies directly, plain functions as one recorded attempt when in a run."""
    if isinstance(fn, Policy):
        return await fn(data, context)
    scope: AttemptScope | None = context._scope if context is not None else None
    if scope is None:
        return await call_step_function(fn, data, context)
    return await scope.attempt(fn, data, context)  # type: ignore[arg-type]  # a scope is set in a run


@functools.lru_cache(maxsize=4096)
@functools.lru_cache(maxsize=1024)
def code_may_suspend(code: types.CodeType) -> bool:
    """Whether a function with this code may suspend: it awaits (or iterates or enters
    asynchronously) somewhere in its body."""
    return any(instruction.opname in _SUSPENDING for instruction in dis.get_instructions(code))


_SUSPENDING = frozenset({"GET_AWAITABLE", "SEND", "YIELD_VALUE", "YIELD_FROM", "BEFORE_ASYNC_WITH", "GET_AITER"})


def may_suspend(fn: object) -> bool:
    """Whether calling ``fn`` may suspend: a policy, or an ``async def`` whose body awaits.

    A plain ``def`` (which may still return an awaitable, checked when it does) and an
    ``async def`` that never awaits run to their end without giving the loop control.
    """
    if isinstance(fn, Policy):
        return True
    if not callable(fn) or not is_async_callable(fn):
        return False
    while isinstance(fn, functools.partial):
        fn = fn.func
    code = getattr(fn, "__code__", None) or getattr(type(fn).__call__, "__code__", None)
    return not isinstance(code, types.CodeType) or code_may_suspend(code)


def task_free(fn: object) -> bool:
    """Whether calling ``fn`` surely binds nothing to the task that starts it, so that the
    rest of the call may move to another task when it first waits: an ``async def`` whose body
    never awaits, or a :class:`RetryPrimitive` around one (its waits between attempts are plain
    sleeps, and the attempts after them run wherever the call then is).

    A plain ``def`` may return an awaitable, an ``async def`` that awaits may enter an
    ``asyncio.timeout`` or a task group, and so does a :class:`TimeoutPrimitive`: none counts.
    """
    while isinstance(fn, RetryPrimitive):
        fn = fn.inner
    if isinstance(fn, Policy) or not callable(fn) or not is_async_callable(fn):
        return False
    while isinstance(fn, functools.partial):
        fn = fn.func
    code = getattr(fn, "__code__", None) or getattr(type(fn).__call__, "__code__", None)
    return isinstance(code, types.CodeType) and not code_may_suspend(code)


def _check_function(fn: object, what: str) -> None:
    if inspect.iscoroutine(fn):
        fn.close()
        raise TypeError(
            f"{what}: expected a function, got a coroutine object; pass the function itself "
            "(reserve), not a call (reserve(...))"
        )
    if not callable(fn):
        raise TypeError(f"{what}: expected a callable (data, context) -> data, got {type(fn).__name__} {fn!r}")


def exception_types(value: object, what: str) -> tuple[type[Exception], ...]:
    """``value`` (an exception type or a tuple of them) as a tuple of ``Exception`` subclasses.

    Types outside ``Exception`` (``BaseException``, ``KeyboardInterrupt``, ``SystemExit``,
    ``asyncio.CancelledError``) are refused: retrying or falling back on them would swallow a
    cancellation or an interrupt, which must always reach the caller after rollback.
    """
    kinds = value if isinstance(value, tuple) else (value,)
    if not kinds:
        raise TypeError(f"{what}: expected an exception type or a tuple of them, got an empty tuple")
    for kind in kinds:
        if not isinstance(kind, type) or not issubclass(kind, BaseException):
            raise TypeError(f"{what}: expected an exception type or a tuple of them, got {describe(kind)}")
        if not issubclass(kind, Exception):
            raise TypeError(
                f"{what}: expected subclasses of Exception, got {kind.__name__}; cancellations and "
                "interrupts (BaseException, KeyboardInterrupt, SystemExit, CancelledError) always propagate "
                "after rollback and are never retried or replaced by a fallback"
            )
    return kinds  # type: ignore[return-value]


#: The random generator retry jitter draws from. It is sagakit's own (never the global
#: ``random``), and a simulation sets one per run so that retried runs replay exactly.
RETRY_RANDOM: contextvars.ContextVar[random.Random] = contextvars.ContextVar(
    "sagakit_retry_random", default=random.Random()  # noqa: B039 - one module-wide generator by design
)


class _Jitter(wait_base):  # type: ignore[misc]
    """Up to ``limit`` random seconds, drawn from :data:`RETRY_RANDOM`."""

    def __init__(self, limit: float) -> None:
        self.limit = limit

    def __call__(self, retry_state: RetryCallState | None) -> float:
        return RETRY_RANDOM.get().uniform(0, self.limit) if self.limit else 0.0


class _Deadline:
    """No retry starts once ``seconds`` have passed since the call began, on the loop's clock
    (tenacity's ``stop_after_delay`` reads the wall clock, which a simulated loop does not move)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        self.loop = loop
        self.until = loop.time() + seconds

    def passed(self) -> bool:
        return bool(self.loop.time() >= self.until)


class Policy:
    """Base of the policies: a step function wrapping another one.

    ``a >> b`` builds ``SequentialPrimitive([a, b])``.
    """

    inner: AnyStepFunction

    @property
    def __name__(self) -> str:
        return callable_name(self)

    async def __call__(self, data: Any, context: WorkflowContext | None = None) -> Any:
        raise NotImplementedError

    def __rshift__(self, other: AnyStepFunction) -> SequentialPrimitive:
        return SequentialPrimitive([self, other])

    def __rrshift__(self, other: AnyStepFunction) -> SequentialPrimitive:
        return SequentialPrimitive([other, self])


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a step is retried: the options behind ``step(retry=...)`` and ``RetryPrimitive``.

    Backoff is exponential with jitter (tenacity's ``wait_exponential`` plus a jitter drawn
    from :data:`RETRY_RANDOM`): the n-th retry waits ``min(initial_delay * 2**(n-1), max_delay)``
    seconds plus a random ``0..jitter`` seconds.

    Attributes:
        max_retries: retries after the first attempt (so ``max_retries + 1`` attempts).
        initial_delay: seconds before the first retry.
        max_delay: the longest wait between attempts.
        jitter: the most random seconds added to each wait.
        on: the exception types that are retried; others fail the step at once. Only
            subclasses of ``Exception``: a cancellation or an interrupt is never retried.
        deadline: seconds after the first attempt started past which no retry starts
            (``None``: attempts alone bound it). Measured on the event loop's clock, so a
            simulated run's virtual time counts.
    """

    max_retries: int = 3
    initial_delay: float = 0.1
    max_delay: float = 10.0
    jitter: float = 0.1
    on: tuple[type[Exception], ...] = (Exception,)
    deadline: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise TypeError(f"max_retries: expected an int >= 0, got {self.max_retries!r}")
        if self.max_retries < 0:
            raise SagaDefinitionError(f"max_retries: expected an int >= 0, got {self.max_retries}")
        for field_name in ("initial_delay", "max_delay", "jitter"):
            seconds = check_seconds(getattr(self, field_name), field_name, allow_zero=True, error=SagaDefinitionError)
            object.__setattr__(self, field_name, seconds)
        object.__setattr__(self, "on", exception_types(self.on, "on"))
        if self.deadline is not None:
            object.__setattr__(self, "deadline", check_seconds(self.deadline, "deadline", error=SagaDefinitionError))

    @property
    def attempts(self) -> int:
        """The most attempts a step makes: ``max_retries + 1``."""
        return self.max_retries + 1

    def delay_after(self, attempt: int) -> float:
        """The wait in seconds after attempt number ``attempt`` failed: tenacity's exponential
        backoff capped at ``max_delay``, plus a jitter drawn from :data:`RETRY_RANDOM`.

        Raises:
            TypeError, ValueError: ``attempt`` is not an int >= 1.
        """
        check_positive_int(attempt, "RetryPolicy.delay_after attempt")
        if not (self.initial_delay or self.jitter):
            return 0.0
        state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]  # only waits read it
        state.attempt_number = attempt
        return float(_backoff(self.initial_delay, self.max_delay, self.jitter)(state))


@functools.lru_cache(maxsize=64)
def _backoff(initial_delay: float, max_delay: float, jitter: float) -> wait_base:
    """tenacity's wait for a policy's numbers (stateless, so shared between calls)."""
    return wait_exponential(multiplier=initial_delay, max=max_delay) + _Jitter(jitter)


class RetryPrimitive(Policy):
    """Retry a step function with exponential backoff.

    Args:
        fn: the step function (or policy) to retry.
        max_retries: retries after the first attempt.
        initial_delay: seconds before the first retry (see :class:`RetryPolicy`).
        max_delay: the longest wait between attempts (see :class:`RetryPolicy`).
        jitter: the most random seconds added to each wait (see :class:`RetryPolicy`).
        on: the exception types that are retried (see :class:`RetryPolicy`).
        deadline: seconds after the first attempt past which no retry starts (see
            :class:`RetryPolicy`).
    """

    __slots__ = ("inner", "policy")

    def __init__(
        self,
        fn: AnyStepFunction,
        max_retries: int = 3,
        *,
        initial_delay: float = 0.1,
        max_delay: float = 10.0,
        jitter: float = 0.1,
        on: type[Exception] | tuple[type[Exception], ...] = (Exception,),
        deadline: float | None = None,
    ) -> None:
        _check_function(fn, "RetryPrimitive")
        self.inner = fn
        self.policy = RetryPolicy(
            max_retries=max_retries,
            initial_delay=initial_delay,
            max_delay=max_delay,
            jitter=jitter,
            on=on if isinstance(on, tuple) else (on,),
            deadline=deadline,
        )

    @classmethod
    def from_policy(cls, fn: AnyStepFunction, policy: RetryPolicy) -> RetryPrimitive:
        """Wrap ``fn`` with an existing :class:`RetryPolicy`."""
        primitive = cls(fn)
        primitive.policy = policy
        return primitive

    async def __call__(self, data: Any, context: WorkflowContext | None = None) -> Any:
        policy = self.policy
        deadline = _Deadline(asyncio.get_running_loop(), policy.deadline) if policy.deadline is not None else None
        number = 1
        while True:
            try:
                return await invoke(self.inner, data, context)
            except policy.on:
                if number >= policy.attempts or (deadline is not None and deadline.passed()):
                    raise
            delay = policy.delay_after(number)
            if delay:
                await asyncio.sleep(delay)
            number += 1

    def __repr__(self) -> str:
        return f"RetryPrimitive({callable_name(self.inner)}, max_retries={self.policy.max_retries})"


class TimeoutPrimitive(Policy):
    """Fail a step function that runs longer than ``timeout`` seconds.

    Raises :class:`~sagakit.StepTimeout` (a :class:`TimeoutError`). The timed-out call is
    cancelled, and inside a saga the attempt is recorded as failed with that error.

    A plain ``def`` function cannot be interrupted on the event loop, so under a timeout it
    runs on a thread of its own (with the caller's context variables): the step fails at
    the deadline, while the abandoned call finishes in the background (Python cannot stop a
    thread; the interpreter waits for it at exit). That is the
    ambiguous outcome ``step(..., compensate_on_failure=True)`` exists for. On a virtual
    clock (``simulate``) a synchronous call takes no time, so it runs in place.
    """

    __slots__ = ("inner", "timeout")

    def __init__(self, fn: AnyStepFunction, timeout: float = 10.0) -> None:
        _check_function(fn, "TimeoutPrimitive")
        self.timeout = check_seconds(timeout, "timeout", error=SagaDefinitionError)
        self.inner = off_loop(fn)

    async def __call__(self, data: Any, context: WorkflowContext | None = None) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        scope = context._scope if context is not None else None
        if scope is not None:
            scope.deadlines.append((deadline, self.timeout))
        try:
            async with asyncio.timeout_at(deadline) as window:
                return await invoke(self.inner, data, context)
        except TimeoutError:
            if not window.expired():
                raise
            if scope is not None and scope.timeout_error is not None:
                error = scope.timeout_error
                scope.timeout_error = None
                raise error from None
            step = context.step if context is not None else None
            raise StepTimeout(step, self.timeout) from None
        finally:
            if scope is not None:
                scope.deadlines.remove((deadline, self.timeout))

    def __repr__(self) -> str:
        return f"TimeoutPrimitive({callable_name(self.inner)}, timeout={self.timeout:g})"


class FallbackPrimitive(Policy):
    """Run ``primary``; if it raises, run ``fallback`` with the same input instead.

    Args:
        primary: the step function tried first.
        fallback: the step function run when ``primary`` raises one of ``on``.
        on: the exception types (subclasses of ``Exception``) that switch to the fallback.
    """

    __slots__ = ("fallback", "inner", "on")

    def __init__(
        self,
        primary: AnyStepFunction,
        fallback: AnyStepFunction,
        *,
        on: type[Exception] | tuple[type[Exception], ...] = Exception,
    ) -> None:
        _check_function(primary, "FallbackPrimitive primary")
        _check_function(fallback, "FallbackPrimitive fallback")
        self.inner = primary
        self.fallback = fallback
        self.on = exception_types(on, "FallbackPrimitive on")

    async def __call__(self, data: Any, context: WorkflowContext | None = None) -> Any:
        try:
            return await invoke(self.inner, data, context)
        except self.on:
            return await invoke(self.fallback, data, context)

    def __repr__(self) -> str:
        return f"FallbackPrimitive({callable_name(self.inner)}, {callable_name(self.fallback)})"


class SequentialPrimitive(Policy):
    """Run step functions one after another, each receiving the previous one's output.

    A function returning ``None`` passes its input through, as a saga step does.
    """

    __slots__ = ("inner", "parts")

    def __init__(self, parts: Sequence[AnyStepFunction]) -> None:
        if isinstance(parts, str | bytes) or not isinstance(parts, Sequence):
            raise TypeError(f"SequentialPrimitive: expected a list of step functions, got {type(parts).__name__}")
        if not parts:
            raise SagaDefinitionError("SequentialPrimitive: expected at least one step function, got none")
        flat: list[AnyStepFunction] = []
        for position, part in enumerate(parts):
            _check_function(part, f"SequentialPrimitive part {position}")
            flat.extend(part.parts if isinstance(part, SequentialPrimitive) else [part])
        self.parts: tuple[AnyStepFunction, ...] = tuple(flat)
        self.inner = self.parts[0]

    async def __call__(self, data: Any, context: WorkflowContext | None = None) -> Any:
        for part in self.parts:
            result = await invoke(part, data, context)
            if result is not None:
                data = result
        return data

    def __repr__(self) -> str:
        return "SequentialPrimitive([" + ", ".join(callable_name(p) for p in self.parts) + "])"


class _OffLoop:
    """A plain ``def`` step function run on a worker thread, so that a timeout can end the wait.

    Not a :class:`Policy`: inside a run the engine still records each call as one attempt
    and injects faults around it.
    """

    __slots__ = ("__name__", "function")

    def __init__(self, function: AnyStepFunction) -> None:
        self.function = function
        self.__name__ = callable_name(function)

    async def __call__(self, data: Any, context: WorkflowContext | None = None) -> Any:
        loop = asyncio.get_running_loop()
        if getattr(loop, "virtual_clock", False):
            return await call_step_function(self.function, data, context)
        # A thread of its own rather than the loop's default executor: a pool of a few
        # workers would queue concurrent steps, and the time spent waiting for a worker
        # would count against their timeouts. Not a daemon: an abandoned call still
        # finishes before the interpreter exits instead of being cut off mid-effect.
        outcome = loop.create_future()
        function, variables = self.function, contextvars.copy_context()

        def work() -> None:
            try:
                result = variables.run(function, data, context)  # type: ignore[arg-type]
            except BaseException as exc:  # handed to the loop, as the call's outcome
                _hand_over(loop, outcome, None, exc)
            else:
                _hand_over(loop, outcome, result, None)

        threading.Thread(target=work, name=f"sagakit-step-{self.__name__}").start()
        result = await outcome
        if inspect.isawaitable(result):
            result = await result
        return result

    def __repr__(self) -> str:
        return f"<{callable_name(self.function)} on a worker thread>"


def _hand_over(
    loop: asyncio.AbstractEventLoop, outcome: asyncio.Future[Any], result: Any, error: BaseException | None
) -> None:
    """Settle ``outcome`` on its loop from a worker thread; nothing if the wait was abandoned."""

    def settle() -> None:
        if outcome.done():  # the step timed out or was cancelled meanwhile
            return
        if error is None:
            outcome.set_result(result)
        else:
            outcome.set_exception(error)

    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits for the outcome
        loop.call_soon_threadsafe(settle)


def off_loop(fn: AnyStepFunction) -> AnyStepFunction:
    """``fn`` with every plain ``def`` step function in it moved to a worker thread.

    Policies are rebuilt around their moved parts (the given objects are left as they are);
    asynchronous functions and policies of other kinds are kept.
    """
    if isinstance(fn, RetryPrimitive):
        inner = off_loop(fn.inner)
        return fn if inner is fn.inner else RetryPrimitive.from_policy(inner, fn.policy)
    if isinstance(fn, FallbackPrimitive):
        primary, fallback = off_loop(fn.inner), off_loop(fn.fallback)
        if primary is fn.inner and fallback is fn.fallback:
            return fn
        return FallbackPrimitive(primary, fallback, on=fn.on)
    if isinstance(fn, SequentialPrimitive):
        parts = [off_loop(part) for part in fn.parts]
        return fn if all(a is b for a, b in zip(parts, fn.parts, strict=True)) else SequentialPrimitive(parts)
    if isinstance(fn, Policy | _OffLoop) or is_async_callable(fn):
        return fn
    return _OffLoop(fn)
