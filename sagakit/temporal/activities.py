"""Activities built from a saga's steps and compensations.

Each step phase becomes one activity named ``<saga>.<step>.<phase>`` (so Temporal's UI shows
which step ran). One activity attempt calls the step function once, like one attempt of the
local engine: the planned fault acts inside it (delay, ``fail`` before the action,
``fail_after`` after it, ``fail_compensation`` on the compensation, seeded probability), the
step's own timeout raises ``StepTimeout``, and policies the workflow cannot map to Temporal
(fallbacks, sequences) run here with every call recorded as an attempt.

An activity returns ``{"result": ..., "attempts": [...], "metadata": changes}``, where
``changes`` says which top-level keys of ``context.metadata`` the step set or deleted (or is
``None``). A failure raises an ``ApplicationError`` whose details carry the error's
description, the attempts and the changes; it is non-retryable unless the step's retry policy
covers the error and attempts remain, in which case the activity first signals its attempts
to the workflow so the retried attempt is seen. A local activity (``"local": true`` in its
input) runs exactly one attempt, numbered by the workflow (``"attempt"``), and says in its
failure's details whether the workflow should retry it (``"retry"``).

While the step runs, the activity heartbeats (when the workflow set a heartbeat timeout), so
that a cancellation requested by the workflow reaches it: the step receives
``CancelledError``, and the activity signals the cancelled attempt and its metadata changes
before it acknowledges (a local activity, whose cancellation
reaches it directly, puts that attempt in its answer instead). A plain ``def`` step cannot be interrupted (locally it holds the
event loop until it returns): it runs to its end, and the workflow then compensates it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from sagakit.context import WorkflowContext
from sagakit.errors import InjectedFault, StepTimeout, error_text
from sagakit.policies import AnyStepFunction, Policy, TimeoutPrimitive, invoke, is_async_callable
from sagakit.saga import Saga
from sagakit.steps import Step
from sagakit.temporal._errors import describe_error
from sagakit.temporal._json import json_problem
from sagakit.temporal._shape import activity_name, peel
from sagakit.temporal._tracing import PHASE_ATTRIBUTE
from sagakit.temporal.workflow import SIGNAL_ATTEMPTS

__all__ = ["saga_activities"]


class _ActivityScope:
    """The :class:`~sagakit.policies.AttemptScope` of one activity attempt: plays the local
    engine's per-step scope.

    Policies call ``attempt()`` for every call of a plain function (see
    ``sagakit.policies.invoke``); each call is recorded with its own times, error and
    whether a fault was injected.
    """

    __slots__ = ("base", "deadlines", "fault", "n", "offset", "phase", "records", "step", "timeout_error")
    # base: the Temporal attempt number minus one; each record carries the Temporal attempt.

    def __init__(self, step: str, phase: str, fault: dict[str, Any] | None, base: int, offset: int = 0) -> None:
        self.step = step
        self.phase = phase
        self.fault = fault
        self.base = base
        self.offset = offset  # attempts a resumed run had already recorded: context.attempt goes on from them
        self.n = 0
        self.records: list[dict[str, Any]] = []
        self.deadlines: list[tuple[float, float]] = []
        self.timeout_error: StepTimeout | None = None

    def expired_timeout(self, now: float) -> float | None:
        expired = [timeout for deadline, timeout in self.deadlines if now >= deadline]
        return min(expired) if expired else None

    def _fires(self) -> bool:
        fault = self.fault
        assert fault is not None
        if fault["mode"] == "none":
            return False
        draws = fault.get("draws")
        if draws is None:
            return bool(fault["probability"] >= 1.0)
        position = self.base + self.n - 1
        if position < len(draws):
            return bool(draws[position])
        return random.random() < float(fault["probability"])

    async def attempt(self, fn: AnyStepFunction, data: Any, context: WorkflowContext) -> Any:
        self.n += 1
        context.attempt = self.offset + self.base + self.n
        loop = asyncio.get_running_loop()
        started = time.time()
        injected = False
        try:
            fires = False
            fault = self.fault
            if fault is not None:
                if fault["delay"]:
                    await asyncio.sleep(fault["delay"])
                fires = self._fires()
                if fires and fault["mode"] != "fail_after":
                    injected = True
                    raise InjectedFault(self.step, fault["mode"])
            if is_async_callable(fn):
                result = await fn(data, context)
            else:
                # A plain function runs on a thread so the worker stays responsive (and heartbeats)
                # meanwhile. It cannot be interrupted: on cancellation, let it finish (see above).
                thread = asyncio.ensure_future(asyncio.to_thread(fn, data, context))
                try:
                    result = await asyncio.shield(thread)
                except asyncio.CancelledError:
                    result = await thread
                if hasattr(result, "__await__"):
                    result = await result
            if fires:
                injected = True
                raise InjectedFault(self.step, "fail_after")
        except asyncio.CancelledError as exc:
            timeout = self.expired_timeout(loop.time()) if self.deadlines else None
            if timeout is None:
                # A cancellation the step raised itself is its error, as locally; the workflow's is not.
                self._add(started, "cancelled", None if _cancel_requested() else exc, injected)
                raise
            error = StepTimeout(self.step, timeout)
            self.timeout_error = error
            self._add(started, "failed", error, injected)
            raise
        except BaseException as exc:
            self._add(started, "failed", exc, injected)
            raise
        self._add(started, "succeeded", None, False)
        return result

    def _add(self, started: float, status: str, error: BaseException | None, injected: bool) -> None:
        self.records.append({
            "started_at": started,
            "ended_at": time.time(),
            "status": status,
            "error": describe_error(error) if error is not None else None,
            "injected": injected,
            "temporal_attempt": self.base + 1,
        })


def _phase_activity(saga: Saga, step: Step, phase: str, fn: AnyStepFunction) -> Callable[..., Any]:
    retry, timeout, rest = peel(fn)
    if timeout is not None:
        rest = TimeoutPrimitive(rest, timeout)
    name = activity_name(saga.name, step.name, phase)
    saga_name = saga.name
    step_name = step.name
    uses_policy = isinstance(rest, Policy)

    async def run_phase(call: dict[str, Any]) -> dict[str, Any]:
        info = activity.info()
        fault = call.get("fault")
        shared = call["context"]
        metadata = shared.get("metadata") or {}
        before = _json_copy(metadata) if metadata else {}
        context = WorkflowContext(shared.get("correlation_id"), metadata)._derive(
            shared.get("run_id") or "", saga_name
        )._for_step(step_name, phase)
        # A local activity runs once per attempt; the workflow numbers its attempts.
        local = bool(call.get("local"))
        number = int(call.get("attempt") or info.attempt) if local else info.attempt
        # Attempts before this Temporal attempt each recorded at least one call.
        recorder = _ActivityScope(step_name, phase, fault, base=number - 1, offset=int(call.get("offset") or 0))
        context._scope = recorder
        data = call.get("data")
        error: Exception
        interrupt: BaseException | None = None
        heartbeat = _heartbeat(info.heartbeat_timeout)
        try:
            result = await invoke(rest, data, context) if uses_policy else await recorder.attempt(rest, data, context)
        except asyncio.CancelledError as exc:
            if not _cancel_requested():
                interrupt = exc  # the step cancelled itself: an interruption, as locally
            else:
                changes = _portable(_changes(before, context.metadata))
                if local:
                    # The workflow waits for this answer: the cancelled attempt travels in it.
                    raise ApplicationError("cancelled", {"error": None, "attempts": recorder.records,
                                                         "metadata": changes, "cancelled": True},
                                           type="CancelledError", non_retryable=True,
                                           category=ApplicationErrorCategory.BENIGN) from None
                await _report(info, step_name, phase, recorder.records, changes, cancelled=True)
                raise
        except (KeyboardInterrupt, SystemExit) as exc:
            interrupt = exc
        except Exception as exc:
            error = exc
            retryable = retry is not None and isinstance(exc, retry.on) and number < retry.attempts and (
                local or retry.deadline is None or time.time() - info.scheduled_time.timestamp() < retry.deadline)
        else:
            changes = _changes(before, context.metadata)
            problem = _serialisation_problem(result, step_name, phase, changes)
            if problem is None:
                return {"result": result, "attempts": recorder.records, "metadata": changes}
            # The step did act, but its result cannot travel: that attempt failed, for good.
            recorder.records[-1].update(status="failed", error=describe_error(problem))
            error, retryable = problem, False
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
        if interrupt is not None:
            # Never retried, like an interruption in the local engine; the workflow's driver
            # treats it as one (a compensation's counts as failed and the rollback goes on).
            raise ApplicationError(
                error_text(interrupt) or type(interrupt).__name__,
                {"error": describe_error(interrupt), "attempts": recorder.records,
                 "metadata": _portable(_changes(before, context.metadata)), "interrupt": True},
                type=type(interrupt).__name__, non_retryable=True, category=ApplicationErrorCategory.BENIGN,
            ) from None
        changes = _portable(_changes(before, context.metadata))
        if retryable and not local:
            await _report(info, step_name, phase, recorder.records, changes)
        raise ApplicationError(
            error_text(error),
            {"error": describe_error(error), "attempts": recorder.records, "metadata": changes,
             "retry": retryable and local},
            type=type(error).__name__,
            non_retryable=local or not retryable,
            # A failed step is an outcome the saga handles (and records): no worker traceback.
            category=ApplicationErrorCategory.BENIGN,
        )

    run_phase.__name__ = run_phase.__qualname__ = name.replace(".", "_")
    setattr(run_phase, PHASE_ATTRIBUTE, (saga, step_name, phase))  # read by StepSpans (tracing)
    return activity.defn(name=name)(run_phase)


def _serialisation_problem(result: Any, step: str, phase: str, changes: dict[str, Any] | None) -> TypeError | None:
    what = "step" if phase == "forward" else "compensation of step"
    if changes is not None:
        problem = json_problem(changes["set"], "context.metadata")
        if problem is not None:
            return TypeError(f"{what} {step!r} left a value in context.metadata that cannot travel: {problem}")
    if result is None:
        return None
    problem = json_problem(result, "its result")
    if problem is None:
        return None
    return TypeError(f"{what} {step!r} returned a {type(result).__name__}: {problem}")


def _json_copy(value: Any) -> Any:
    """A deep copy of a JSON value (what the step received), to tell what it changed."""
    if isinstance(value, dict):
        return {key: _json_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_copy(item) for item in value]
    return value


def _changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any] | None:
    """The top-level keys of ``context.metadata`` a step set (to a new value) or deleted."""
    if not before and not after:
        return None
    changed = {
        key: value for key, value in after.items()
        if key not in before or type(before[key]) is not type(value) or before[key] != value
    }
    deleted = [key for key in before if key not in after]
    if not changed and not deleted:
        return None
    return {"set": changed, "deleted": deleted}


def _cancel_requested() -> bool:
    """Whether the workflow asked for this activity's cancellation (not a worker shutting down)."""
    details = getattr(activity, "cancellation_details", None)
    if details is None:  # temporalio before 1.11
        return activity.is_cancelled() and not activity.is_worker_shutdown()
    found = details()
    return found is not None and bool(found.cancel_requested)


def _portable(changes: dict[str, Any] | None) -> dict[str, Any] | None:
    """``changes``, or ``None`` if they cannot travel (the step's failure is what gets reported)."""
    if changes is not None and json_problem(changes["set"], "context.metadata") is not None:
        return None
    return changes


def _heartbeat(timeout: timedelta | None) -> asyncio.Task[None] | None:
    """Heartbeat in the background while the step runs, so cancellations reach it.

    Temporal delivers an activity's cancellation in the answer to a heartbeat, and a worker
    that stops heartbeating is known dead after ``timeout``. Steps shorter than a quarter of
    the timeout never heartbeat at all.
    """
    if not timeout:
        return None
    interval = timeout.total_seconds() / 4

    async def beat() -> None:
        while True:
            await asyncio.sleep(interval)
            activity.heartbeat()

    return asyncio.create_task(beat())


async def _report(info: activity.Info, step: str, phase: str, attempts: list[dict[str, Any]],
                  changes: dict[str, Any] | None, *, cancelled: bool = False) -> None:
    """Signal an attempt that ends without a result (retried, or cancelled) to the workflow."""
    report = {"step": step, "phase": phase, "attempts": attempts, "metadata": changes, "cancelled": cancelled}
    try:
        handle = activity.client().get_workflow_handle(info.workflow_id or "", run_id=info.workflow_run_id)
        await handle.signal(SIGNAL_ATTEMPTS, report, rpc_timeout=timedelta(seconds=10))
    except Exception as exc:  # the retry (or the cancellation) must happen even if its record is lost
        activity.logger.warning("sagakit: could not report attempt %s of %s.%s: %s", info.attempt, step, phase, exc)


def saga_activities(sagas: Iterable[Saga]) -> list[Callable[..., Any]]:
    """The activities a worker registers to run ``sagas``: one per step phase.

    Raises:
        TypeError: an item is not a :class:`~sagakit.Saga`.
        ValueError: two sagas share a name.
    """
    activities: list[Callable[..., Any]] = []
    seen: set[str] = set()
    for position, saga in enumerate(sagas):
        if not isinstance(saga, Saga):
            raise TypeError(f"sagas[{position}]: expected a sagakit.Saga, got {type(saga).__name__} {saga!r}")
        if saga.name in seen:
            raise ValueError(f"sagas[{position}]: two sagas are named {saga.name!r}; a worker needs unique names")
        seen.add(saga.name)
        for member in saga.steps:
            activities.append(_phase_activity(saga, member, "forward", member.forward))
            if member.compensate is not None:
                activities.append(_phase_activity(saga, member, "compensate", member.compensate))
    return activities
