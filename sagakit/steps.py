"""Steps and stages: the pieces a saga is built from, validated when they are built."""

from __future__ import annotations

import inspect
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeAlias, get_args

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
    is_async_callable,
    may_suspend,
    task_free,
)

__all__ = [
    "FORWARD_RETRY",
    "Parallel",
    "Stage",
    "StageLike",
    "Step",
    "StepKind",
    "check_name",
    "coerce_stages",
    "parallel",
    "step",
]

#: What a step is in the saga's recovery (see :func:`step`).
StepKind = Literal["compensatable", "pivot", "retriable", "readonly"]
_KINDS: tuple[str, ...] = get_args(StepKind)

#: The forward policy of a retriable step that gives none (``retry=``): up to 5 retries with
#: exponential backoff from 0.2 s (at most 5 s apart, plus up to 0.1 s of jitter), and none
#: started once 60 s have passed since the first attempt. When it runs out, the run is ``stuck``.
FORWARD_RETRY = RetryPolicy(max_retries=5, initial_delay=0.2, max_delay=5.0, jitter=0.1, deadline=60.0)


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
        kind: ``"compensatable"``, ``"pivot"``, ``"retriable"`` or ``"readonly"`` (see :func:`step`).
    """

    __slots__ = (
        "action",
        "compensate",
        "compensate_on_failure",
        "compensation_suspends",
        "forward",
        "forward_task_free",
        "kind",
        "name",
        "plain",
        "retry",
        "timeout",
    )

    action: AnyStepFunction
    compensate: AnyStepFunction | None
    compensate_on_failure: bool
    compensation_suspends: bool | None
    forward: AnyStepFunction
    forward_task_free: bool
    kind: StepKind
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
        kind: StepKind = "compensatable",
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
        _check_kind(kind, label, compensate)
        forward: AnyStepFunction = action
        if timeout is not None:
            forward = TimeoutPrimitive(forward, timeout)
        policy = FORWARD_RETRY if retry is None and kind == "retriable" else retry
        if policy is not None and policy.max_retries > 0:
            forward = RetryPrimitive.from_policy(forward, policy)
        set_ = object.__setattr__
        set_(self, "action", action)
        set_(self, "compensate", compensate)
        set_(self, "name", name)
        set_(self, "retry", retry)
        set_(self, "timeout", timeout)
        set_(self, "compensate_on_failure", compensate_on_failure)
        set_(self, "kind", kind)
        set_(self, "forward", forward)
        # Whether the compensation may give the loop control: a rollback starts such a one in a
        # task of its own (see the engine's rollback). ``None``: a plain function, which may
        # still return an awaitable (checked when it does).
        set_(self, "compensation_suspends", None if compensate is not None and not is_async_callable(compensate)
             and not isinstance(compensate, Policy) else compensate is not None and may_suspend(compensate))
        # The engine calls a plain action directly as the step's one attempt; policies record
        # their own attempts.
        set_(self, "plain", not isinstance(forward, Policy))
        # Whether the forward call binds nothing to its task (see policies.task_free): forward
        # recovery may then start it inline in the run's task.
        set_(self, "forward_task_free", task_free(forward))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Step is immutable; step.replace({name}=...) returns a changed copy")

    def replace(self, **changes: Any) -> Step:
        """A new step like this one with ``changes`` applied (any of :func:`step`'s arguments).

        Raises:
            TypeError: a change names no argument of :func:`step`, or a value is invalid.
        """
        fields = ("action", "compensate", "name", "retry", "timeout", "compensate_on_failure", "kind")
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
            kind=values["kind"],
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
        if self.kind != "compensatable":
            parts.append(f"kind={self.kind!r}")
        return f"step({', '.join(parts)})"


def step(
    action: AnyStepFunction,
    compensate: AnyStepFunction | None = None,
    *,
    name: str | None = None,
    retry: int | RetryPolicy | None = None,
    timeout: float | None = None,
    compensate_on_failure: bool = False,
    kind: StepKind = "compensatable",
) -> Step:
    """Build a saga step.

    The kinds of steps (Garcia-Molina and Salem's backward and forward recovery, in the terms
    of Richardson's *Microservices Patterns*):

    ==================  ===========================================================================
    ``compensatable``   the default: undone by its compensation when a later step fails.
    ``pivot``           the go/no-go point, at most one per saga, never compensated. A failure
                        before it or at it rolls back; once it has succeeded the saga must
                        complete.
    ``retriable``       every step after the pivot (sagakit makes them so): retried under its
                        forward policy (``retry=``, else :data:`FORWARD_RETRY`), never compensated.
                        When the policy runs out the run ends ``stuck``, resumable from a journal.
    ``readonly``        changes nothing, so there is nothing to undo: no compensation needed
                        (and none flagged as missing).
    ==================  ===========================================================================

    Args:
        action: ``fn(data, context) -> data``, ``async def`` or plain ``def``; returning
            ``None`` passes the input through.
        compensate: undoes the action; receives what the action returned.
        name: the step's name (default: the action's ``__name__``).
        retry: retries after the first attempt (an int), or a :class:`RetryPolicy`.
        timeout: seconds each attempt may take before it fails with ``StepTimeout``.
        compensate_on_failure: also compensate when this step itself fails (with its input).
        kind: the step's kind (above); only ``compensatable`` steps have a compensation.

    Raises:
        SagaDefinitionError: the kind is unknown, or a pivot, retriable or read-only step has a
            compensation (the message names the step).
    """
    return Step(
        action,
        compensate,
        name=name,
        retry=retry,
        timeout=timeout,
        compensate_on_failure=compensate_on_failure,
        kind=kind,
    )


_NO_COMPENSATION = {
    "pivot": "the pivot is the point of no return: once it succeeds the saga completes, so nothing undoes it",
    "retriable": "a retriable step is retried until it succeeds and never undone",
    "readonly": "a read-only step changes nothing, so there is nothing to undo",
}


def _check_kind(kind: object, label: str, compensate: object) -> None:
    if not isinstance(kind, str) or kind not in _KINDS:
        raise SagaDefinitionError(f"{label} kind: expected one of {', '.join(map(repr, _KINDS))}, got {kind!r}")
    if compensate is not None and kind != "compensatable":
        raise SagaDefinitionError(
            f"{label} is {kind!r} and has a compensation: {_NO_COMPENSATION[kind]}. Remove compensate=..., "
            "or make it a compensatable step"
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
    return _with_kinds(tuple(result), saga)


def _with_kinds(stages: tuple[Stage, ...], saga: str) -> tuple[Stage, ...]:
    """Check the saga's step kinds and make every step after the pivot retriable.

    Raises:
        SagaDefinitionError: naming the step: a second pivot, a pivot in a parallel stage, a
            retriable step before the pivot (or in a saga without one), a compensation after
            the pivot.
    """
    pivot: str | None = None
    result: list[Stage] = []
    for position, stage in enumerate(stages):
        members = stage.steps if isinstance(stage, Parallel) else (stage,)
        for member in members:
            where = f"saga {saga!r} stage {position}: step {member.name!r}"
            if member.kind == "pivot":
                if pivot is not None:
                    raise SagaDefinitionError(
                        f"{where} is a second pivot (the first is {pivot!r}); a saga has at most one pivot, "
                        "its go/no-go point"
                    )
                if isinstance(stage, Parallel):
                    raise SagaDefinitionError(
                        f"{where} is a pivot in a parallel stage; the pivot must be a stage of its own, so "
                        "that the saga knows when it has passed it"
                    )
            elif member.kind == "retriable" and pivot is None:
                raise SagaDefinitionError(
                    f"{where} is retriable but comes before any pivot; retriable steps follow the pivot "
                    "(step(..., kind='pivot')). Before it, steps are compensatable or read-only"
                )
            elif pivot is not None and member.compensate is not None:
                raise SagaDefinitionError(
                    f"{where} comes after the pivot {pivot!r} and has a compensation; steps after the pivot are "
                    "retriable: retried until they succeed, never undone. Remove compensate=..., or move the step "
                    "before the pivot"
                )
        if pivot is not None:
            stage = _retriable(stage)
        result.append(stage)
        if isinstance(stage, Step) and stage.kind == "pivot":
            pivot = stage.name
    return tuple(result)


def _retriable(stage: Stage) -> Stage:
    if isinstance(stage, Parallel):
        return Parallel([_retriable(member) for member in stage.steps], name=stage.name)  # type: ignore[misc]
    return stage if stage.kind == "retriable" else stage.replace(kind="retriable")
