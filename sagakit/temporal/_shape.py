"""A saga's shape as JSON: what the generic workflow needs to drive a saga it cannot import.

The workflow never sees the saga's functions (they live on the workers, and the workflow
sandbox must not import user modules). It receives the stage list, the step names, which
steps have compensations, and each phase's retry and timeout options, all derived here from
the same :class:`~sagakit.Saga` object the workers register.

Policies map as follows. A step's ``retry=`` (or an outermost ``RetryPrimitive``) becomes
Temporal's retry policy: ``maximum_attempts = max_retries + 1``, ``initial_interval =
initial_delay``, ``backoff_coefficient = 2``, ``maximum_interval = max_delay`` (Temporal has
no jitter option; its own scheduling adds some); a ``deadline`` stops retries started after it,
measured from the first attempt (the activity refuses to be retried past it; a local phase's
retries, driven by the workflow, stop likewise). The saga's pivot travels as ``pivot`` and
``forward_from`` (the first stage after it). A step's ``timeout=`` (or a
``TimeoutPrimitive`` right under that retry) is enforced per attempt inside the activity,
raising ``StepTimeout`` exactly as locally; the activity's ``start_to_close_timeout`` is that
timeout plus a grace period, a backstop for an attempt that never reports (a worker that dies
mid-attempt is noticed sooner, by its missing heartbeats). Any other policy
(fallbacks, sequences, nested retries) runs inside the activity, its attempts recorded one by
one.

Activity kind. Each phase runs as a regular activity (dispatched through the server's task
queue) or as a local activity (run by the worker that runs the workflow, recorded in the
history as a marker when it ends): ``"local": true`` in the phase. A local phase without
its own timeout gets ``local_timeout`` as its per-attempt limit; an attempt that runs longer
is stopped and fails with ``StepTimeout`` (then retried per the step's policy, then rolled
back), like any step timeout.
"""


from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sagakit.errors import FaultError
from sagakit.faults import Fault
from sagakit.policies import (
    AnyStepFunction,
    FallbackPrimitive,
    Policy,
    RetryPolicy,
    RetryPrimitive,
    SequentialPrimitive,
    TimeoutPrimitive,
)
from sagakit.saga import Saga
from sagakit.steps import Parallel, Step

__all__ = ["activity_name", "attempt_bound", "peel", "saga_shape"]

#: Seconds added to a step's own timeout for the activity's start-to-close backstop.
TIMEOUT_GRACE = 2.0
#: The most attempts whose fault draws are made in advance for one step phase.
_MAX_DRAWS = 256


def activity_name(saga: str, step: str, phase: str) -> str:
    """The activity type of one saga step phase, as Temporal's UI shows it."""
    return f"{saga}.{step}.{phase}"


def peel(fn: AnyStepFunction) -> tuple[RetryPolicy | None, float | None, AnyStepFunction]:
    """Split ``fn`` into the retry policy and per-attempt timeout Temporal takes over.

    Returns ``(retry, timeout, rest)``: ``rest`` is what one activity attempt runs (the
    timeout is applied around it inside the activity).
    """
    retry: RetryPolicy | None = None
    timeout: float | None = None
    if isinstance(fn, RetryPrimitive):
        retry = fn.policy
        fn = fn.inner
    if isinstance(fn, TimeoutPrimitive):
        timeout = fn.timeout
        fn = fn.inner
    return retry, timeout, fn


def attempt_bound(fn: AnyStepFunction) -> int:
    """The most attempts one call of ``fn`` can record (capped)."""
    if isinstance(fn, RetryPrimitive):
        bound = fn.policy.attempts * attempt_bound(fn.inner)
    elif isinstance(fn, FallbackPrimitive):
        bound = attempt_bound(fn.inner) + attempt_bound(fn.fallback)
    elif isinstance(fn, SequentialPrimitive):
        bound = sum(attempt_bound(part) for part in fn.parts)
    elif isinstance(fn, Policy):
        bound = attempt_bound(fn.inner)
    else:
        bound = 1
    return min(bound, _MAX_DRAWS)


def _retry_options(retry: RetryPolicy | None) -> dict[str, Any]:
    if retry is None:
        return {"maximum_attempts": 1, "initial_interval": 1.0, "maximum_interval": 1.0, "deadline": None}
    # Temporal needs a positive interval no longer than the maximum.
    initial = max(retry.initial_delay, 0.001)
    return {
        "maximum_attempts": retry.attempts,
        "initial_interval": initial,
        "maximum_interval": max(retry.max_delay, initial),
        "deadline": retry.deadline,
    }


def _phase(saga: Saga, step: Step, phase: str, fn: AnyStepFunction, activity_timeout: float,
           local_timeout: float | None) -> dict[str, Any]:
    retry, timeout, _ = peel(fn)
    default = activity_timeout if local_timeout is None else local_timeout
    return {
        "activity": activity_name(saga.name, step.name, phase),
        "retry": _retry_options(retry),
        "timeout": timeout,
        "start_to_close": timeout + TIMEOUT_GRACE if timeout is not None else default,
        "local": local_timeout is not None,
    }


def saga_shape(saga: Saga, *, activity_timeout: float, local: Callable[[Step], bool] | None = None,
               local_timeout: float = 5.0) -> dict[str, Any]:
    """The JSON description of ``saga`` that the generic workflow executes.

    Args:
        saga: the saga.
        activity_timeout: per-attempt limit of a regular activity without its own timeout.
        local: which steps run as local activities (both phases); none when ``None``.
        local_timeout: per-attempt limit of a local activity without its own timeout.
    """
    stages: list[dict[str, Any]] = []
    index = 0
    for stage in saga.stages:
        members = stage.steps if isinstance(stage, Parallel) else (stage,)
        steps = []
        for member in members:
            kind = local_timeout if local is not None and local(member) else None
            steps.append(
                {
                    "name": member.name,
                    "index": index,
                    "forward": _phase(saga, member, "forward", member.forward, activity_timeout, kind),
                    "compensate": (
                        _phase(saga, member, "compensate", member.compensate, activity_timeout, kind)
                        if member.compensate is not None
                        else None
                    ),
                    "compensate_on_failure": member.compensate_on_failure,
                }
            )
            index += 1
        stages.append({"parallel": isinstance(stage, Parallel), "steps": steps})
    return {
        "saga": saga.name,
        "continue_on_compensation_failure": saga.continue_on_compensation_failure,
        "stages": stages,
        "pivot": saga.pivot,
        "forward_from": saga.forward_from,
    }


def draw_faults(saga: Saga, faults: Mapping[str, Fault]) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    """The run's faults, split by phase, with their random draws made now.

    A fault with ``0 < probability < 1`` draws once per attempt from its own random
    generator, locally. Here the caller draws, in advance, as many outcomes as the phase can
    have attempts, so that a seeded plan gives the same outcomes on Temporal as locally;
    :func:`rewind_faults` then puts each generator back to just after the draws the run used.

    Returns ``(forward, compensate, saved)``: the faults each phase's activities receive, and
    the generator states to rewind.
    """
    forward: dict[str, Any] = {}
    compensate: dict[str, Any] = {}
    saved: list[Any] = []
    for name, fault in faults.items():
        if fault.mode.startswith("cancel"):
            raise FaultError(f"step {name!r}: {fault.mode!r} faults cancel a local run; the Temporal backend does not inject them")
        member = saga.get_step(name)
        phase = fault.phase
        fn = member.compensate if phase == "compensate" else member.forward
        if fn is None:
            continue
        draws: list[bool] | None = None
        if fault.mode != "none" and 0.0 < fault.probability < 1.0:
            rng = fault._rng
            state = rng.getstate()
            draws = [fault.fires() for _ in range(attempt_bound(fn))]
            saved.append((fault, name, phase, state))
        target = compensate if phase == "compensate" else forward
        target[name] = {"mode": fault.mode, "delay": fault.delay, "probability": fault.probability, "draws": draws}
    return forward, compensate, saved


def rewind_faults(saved: list[Any], attempts: Mapping[tuple[str, str], int]) -> None:
    """Leave each fault's generator as if only the attempts the run made had drawn."""
    for fault, name, phase, state in saved:
        fault._rng.setstate(state)
        for _ in range(attempts.get((name, phase), 0)):
            fault.fires()
