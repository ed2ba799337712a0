"""Steps and stages: the pieces a saga is built from, validated when they are built."""

from __future__ import annotations

import inspect
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

from sagakit._checks import check_bool, check_seconds
from sagakit._checks import describe as _describe
from sagakit.errors import SagaDefinitionError
from sagakit.policies import (
    AnyStepFunction,
    Policy,
    RetryPolicy,
    RetryPrimitive,
    TimeoutPrimitive,
    callable_name,
)

__all__ = ["Parallel", "Stage", "StageLike", "Step", "check_name", "coerce_stages", "parallel", "step"]


def check_name(name: object, what: str) -> str:
    """``name`` if it can name a step, saga or stage everywhere it is shown; else raise.

    A name is a non-empty string without control characters (newline, tab, ESC ...),
    line or paragraph separators, surrogates, and without backslashes: graphviz reads a
    backslash as an escape (``\\N`` is the node's name, a trailing one breaks the file), and
    a control character ends up in SVG, where XML forbids it. Refused rather than escaped,
    so that the name in a diagram, a frame, a span and a journal is the same text.

    Raises:
        TypeError: ``name`` is not a string.
        SagaDefinitionError: it is empty or blank, or holds a character named above.
    """
    if not isinstance(name, str):
        raise TypeError(f"{what}: expected a non-empty string, got {_describe(name)}")
    if not name.strip():
        raise SagaDefinitionError(f"{what}: expected a non-empty string, got {name!r}")
    for position, char in enumerate(name):
        if char == "\\":
            raise SagaDefinitionError(
                f"{what} {name!r}: a backslash (at {position}) is not allowed in names; diagrams read it as "
                "an escape. Use another character, such as '/' or '_'"
            )
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            raise SagaDefinitionError(
                f"{what} {name!r}: the control character U+{ord(char):04X} (at {position}) is not allowed in "
                "names; they break diagrams and log lines. Use printable characters"
            )
    return name


#: Unicode categories refused in names: controls (Cc), surrogates (Cs), line (Zl) and
#: paragraph (Zp) separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def _check_callable(value: object, what: str) -> None:
    if inspect.iscoroutine(value):
        value.close()
        raise TypeError(
            f"{what}: expected a function, got a coroutine object; pass the function itself "
            "(reserve), not a call (reserve(...))"
        )
    if isinstance(value, str | bytes):
        raise TypeError(f"{what}: expected a callable (data, context) -> data, got a string {value!r}")
    if not callable(value):
        raise TypeError(f"{what}: expected a callable (data, context) -> data, got {_describe(value)}")


class Step:
    """One step of a saga: an action, the compensation that undoes it, and its options.

    Build steps with :func:`step`. Attributes are read-only after construction.

    Attributes:
        action: the forward function ``(data, context) -> data``.
        compensate: the function undoing it, or ``None`` when there is nothing to undo.
        name: unique within the saga.
        retry: the retry policy, or ``None``.
        timeout: seconds per attempt, or ``None``.
        compensate_on_failure: run the compensation (with the step's input) even when the
            step itself failed, for outcomes that may have happened anyway (a timeout).
    """

    __slots__ = (
        "action",
        "compensate",
        "compensate_on_failure",
        "forward",
        "name",
        "plain",
        "retry",
        "timeout",
    )

    action: AnyStepFunction
    compensate: AnyStepFunction | None
    compensate_on_failure: bool
    forward: AnyStepFunction
    name: str
    plain: bool
    retry: RetryPolicy | None
    timeout: float | None

    def __init__(
        self,
        action: AnyStepFunction,
        compensate: AnyStepFunction | None = None,
        *,
        name: str | None = None,
        retry: int | RetryPolicy | None = None,
        timeout: float | None = None,
        compensate_on_failure: bool = False,
    ) -> None:
        label = f"step {name!r}" if isinstance(name, str) else "step"
        _check_callable(action, f"{label} action")
        if name is None:
            name = check_name(callable_name(action), "step name (taken from the action's __name__; pass name=...)")
        else:
            name = check_name(name, "step name")
        label = f"step {name!r}"
        if compensate is not None:
            _check_callable(compensate, f"{label} compensate")
        if retry is not None and not isinstance(retry, RetryPolicy):
            if isinstance(retry, bool) or not isinstance(retry, int):
                raise TypeError(f"{label} retry: expected an int >= 0 or a RetryPolicy, got {_describe(retry)}")
            if retry < 0:
                raise SagaDefinitionError(f"{label} retry: expected an int >= 0, got {retry}")
            retry = RetryPolicy(max_retries=retry)
        if timeout is not None:
            timeout = check_seconds(timeout, f"{label} timeout", error=SagaDefinitionError)
        check_bool(compensate_on_failure, f"{label} compensate_on_failure")
        forward: AnyStepFunction = action
        if timeout is not None:
            forward = TimeoutPrimitive(forward, timeout)
        if retry is not None and retry.max_retries > 0:
            forward = RetryPrimitive.from_policy(forward, retry)
        set_ = object.__setattr__
        set_(self, "action", action)
        set_(self, "compensate", compensate)
        set_(self, "name", name)
        set_(self, "retry", retry)
        set_(self, "timeout", timeout)
        set_(self, "compensate_on_failure", compensate_on_failure)
        set_(self, "forward", forward)
        # The engine calls a plain action directly as the step's one attempt; policies record
        # their own attempts.
        set_(self, "plain", not isinstance(forward, Policy))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Step is immutable; step.replace({name}=...) returns a changed copy")

    def replace(self, **changes: Any) -> Step:
        """A new step like this one with ``changes`` applied (any of :func:`step`'s arguments).

        Raises:
            TypeError: a change names no argument of :func:`step`, or a value is invalid.
        """
        fields = ("action", "compensate", "name", "retry", "timeout", "compensate_on_failure")
        unknown = [key for key in changes if key not in fields]
        if unknown:
            raise TypeError(f"Step.replace: unknown change {unknown[0]!r}; expected any of " + ", ".join(fields))
        values = {field: changes.get(field, getattr(self, field)) for field in fields}
        if "action" in changes and "name" not in changes and self.name == callable_name(self.action):
            values["name"] = None  # the name followed the action: let it follow the new one
        return Step(
            values["action"],
            values["compensate"],
            name=values["name"],
            retry=values["retry"],
            timeout=values["timeout"],
            compensate_on_failure=values["compensate_on_failure"],
        )

    def __repr__(self) -> str:
        parts = [callable_name(self.action)]
        parts.append(f"compensate={callable_name(self.compensate) if self.compensate else None}")
        if self.name != callable_name(self.action):
            parts.append(f"name={self.name!r}")
        if self.retry is not None:
            parts.append(f"retry={self.retry.max_retries}")
        if self.timeout is not None:
            parts.append(f"timeout={self.timeout:g}")
        if self.compensate_on_failure:
            parts.append("compensate_on_failure=True")
        return f"step({', '.join(parts)})"


def step(
    action: AnyStepFunction,
    compensate: AnyStepFunction | None = None,
    *,
    name: str | None = None,
    retry: int | RetryPolicy | None = None,
    timeout: float | None = None,
    compensate_on_failure: bool = False,
) -> Step:
    """Build a saga step.

    Args:
        action: ``fn(data, context) -> data``, ``async def`` or plain ``def``; returning
            ``None`` passes the input through.
        compensate: undoes the action; receives what the action returned.
        name: the step's name (default: the action's ``__name__``).
        retry: retries after the first attempt (an int), or a :class:`RetryPolicy`.
        timeout: seconds each attempt may take before it fails with ``StepTimeout``.
        compensate_on_failure: also compensate when this step itself fails (with its input).
    """
    return Step(
        action,
        compensate,
        name=name,
        retry=retry,
        timeout=timeout,
        compensate_on_failure=compensate_on_failure,
    )


class Parallel:
    """A stage whose branches run concurrently on the same input; dict outputs are merged.

    Build it with :func:`parallel`. Attributes are read-only after construction.

    Attributes:
        steps: the branches, in the order their outputs are merged.
        name: the stage's name in diagrams, or ``None``.
    """

    __slots__ = ("name", "steps")

    steps: tuple[Step, ...]
    name: str | None

    def __init__(self, steps: Sequence[Step], name: str | None = None) -> None:
        branches = tuple(steps)
        for position, branch in enumerate(branches):
            if not isinstance(branch, Step):
                raise TypeError(f"parallel branch {position}: expected a Step, got {_describe(branch)}")
        if name is not None:
            name = check_name(name, "parallel name")
        object.__setattr__(self, "steps", branches)
        object.__setattr__(self, "name", name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"parallel stages are immutable; build a new one with parallel(...) to change {name!r}")

    def __repr__(self) -> str:
        return "parallel(" + ", ".join(repr(s) for s in self.steps) + ")"


StageLike: TypeAlias = Step | Parallel | tuple[Any, ...] | Callable[..., Any]
Stage: TypeAlias = Step | Parallel


def _coerce_step(value: object, where: str) -> Step:
    if isinstance(value, Step):
        return value
    if isinstance(value, Parallel):
        raise TypeError(f"{where}: parallel stages cannot be nested in parallel(...)")
    if isinstance(value, tuple):
        if len(value) != 2:
            raise TypeError(
                f"{where}: expected an (action, compensation) tuple of 2 items, got {len(value)} items"
            )
        action, compensate = value
        _check_callable(action, f"{where} action")
        if compensate is not None:
            _check_callable(compensate, f"{where} compensation (use None when there is nothing to undo)")
        return Step(action, compensate)
    if inspect.iscoroutine(value):
        _check_callable(value, where)
    if isinstance(value, str | bytes) or not callable(value):
        got = f"a string {value!r}" if isinstance(value, str | bytes) else _describe(value)
        raise TypeError(
            f"{where}: expected a step(...), parallel(...), an (action, compensation) tuple or a callable "
            f"(data, context) -> data, got {got}"
        )
    return Step(value)


def parallel(*branches: Step | tuple[Any, ...] | Callable[..., Any], name: str | None = None) -> Parallel:
    """A stage whose branches run concurrently.

    Every branch receives the same input; when all succeed their dict outputs are merged in
    the order given. If one fails, the others are cancelled, the completed ones compensated,
    then the earlier stages.
    """
    if not branches:
        raise SagaDefinitionError("parallel(): expected at least one branch, got none")
    if len(branches) == 1 and isinstance(branches[0], list | tuple) and not _is_pair(branches[0]):
        branches = tuple(branches[0])
    steps = tuple(_coerce_step(branch, f"parallel branch {i}") for i, branch in enumerate(branches))
    return Parallel(steps, name=name)


def _is_pair(value: object) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and callable(value[0]) and (
        value[1] is None or callable(value[1])
    )


def coerce_stages(stages: object, saga: str) -> tuple[Stage, ...]:
    """Validate and normalise a saga's stages; raise naming the offending position."""
    if isinstance(stages, str | bytes) or not isinstance(stages, Sequence):
        got = f"a string {stages!r}" if isinstance(stages, str | bytes) else _describe(stages)
        raise TypeError(f"saga {saga!r}: expected a list of steps, got {got}")
    if len(stages) == 0:
        raise SagaDefinitionError(f"saga {saga!r}: expected at least one step, got an empty list")
    result: list[Stage] = []
    for position, stage in enumerate(stages):
        where = f"saga {saga!r} stage {position}"
        if isinstance(stage, Parallel):
            result.append(stage)
        else:
            result.append(_coerce_step(stage, where))
    names: dict[str, int] = {}
    for position, stage in enumerate(result):
        for member in stage.steps if isinstance(stage, Parallel) else (stage,):
            if member.name in names:
                raise SagaDefinitionError(
                    f"saga {saga!r}: duplicate step name {member.name!r} at stages {names[member.name]} "
                    f"and {position}; give one of them step(..., name=...)"
                )
            names[member.name] = position
    return tuple(result)
