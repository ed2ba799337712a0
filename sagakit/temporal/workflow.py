"""The generic saga workflow: one deterministic workflow that runs any saga's shape.

The workflow receives a JSON description of the saga (see ``sagakit.temporal._shape``), the
input, the faults and the context, and drives one activity per step phase
(``<saga>.<step>.forward`` and ``<saga>.<step>.compensate``) registered by the workers. It
never imports the saga's module, so sagas defined in a notebook or a script work. Besides
the standard library and ``temporalio`` it imports only the pure, deterministic rules of
rollback from ``sagakit._recorder`` (undo order, pending steps, final status,
``CompensationError``'s message), passed through the sandbox: the same rules as the local
engine and ``recover()``, safe in Temporal's sandbox and under replay.

Metadata. ``context.metadata`` is one dict for the whole run, as locally: the workflow keeps
it, hands each activity the current value, and each activity hands back what its step
changed (top-level keys set or deleted), merged in completion order. The branches of a
parallel stage all start from the metadata as of the stage's start.

Cancellation. Activities heartbeat while their step runs, and the workflow waits for a
cancelled activity to acknowledge (``WAIT_CANCELLATION_COMPLETED``): a cancelled workflow's
running step receives ``CancelledError`` like a local step, and its rollback starts once the
step has stopped. A step that completes before it learns of the cancellation counts as
completed, and is compensated. A dead worker stops heartbeating, so Temporal notices it
after the heartbeat timeout.

Local activities. A phase marked ``local`` runs as a local activity: in the worker that runs
the workflow, without a round trip through the server, recorded in the history when it
ends. Such a phase has no heartbeat (its cancellation reaches the step directly), and the
workflow itself retries it (one local activity per attempt, a durable timer for the
backoff), so every attempt is recorded in order. A local attempt whose worker dies leaves
no trace: the workflow task times out, and the worker that takes the workflow over runs
that attempt again.

Events. The workflow keeps the run's events (the same kinds and fields as the local engine,
as JSON) in its state. Workflow-side events take their time from ``workflow.now()``; each
attempt's end carries the activity's own start and end times. An activity reports its
attempts in its result (or in its failure's details); an attempt that failed and will be
retried by Temporal signals ``sagakit.attempts`` to the workflow before it fails, so every
attempt shows up. The caller reads the events live with the ``sagakit.events`` query and
gets them all at the end in the outcome.

Outcome. A completed saga returns the outcome. A saga that rolled back fails the workflow
with an ``ApplicationError`` (type ``SagaCompensated``, ``SagaCompensationFailed``, or
``SagaCancelled`` when a step was interrupted on its worker) whose details carry the outcome,
so Temporal shows it as failed; a saga stuck past its pivot fails it likewise (``SagaStuck``).
A cancelled workflow compensates its completed steps, shielded from the cancellation (or, past
the pivot, runs its remaining steps to their end), then ends as cancelled; its outcome is kept
for the ``sagakit.outcome`` query.

The driver. What happens after a failure is decided by :mod:`sagakit._driver`, the same as the
local engine and ``recover()`` follow: the rollback's order, skips, stop-or-go-on, pending steps
and outcome; the parallel stages' wind-down; forward recovery past the pivot.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    FailureError,
    TimeoutError,
    TimeoutType,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    # The one driver of every backend, and the texts of errors: pure, no clock, no randomness, no I/O.
    from sagakit._driver import (
        SKIP,
        Rollback,
        StageFailed,
        blamed_step,
        forward_outcome,
        merge_outputs,
        parallel_stage,
        rollback_outcome,
        undo_order,
        wait_through_cancellation,
    )
    from sagakit.errors import compensation_message, stuck_message, unmergeable_branch_message

__all__ = ["EVENTS_QUERY", "OUTCOME_QUERY", "SIGNAL_ATTEMPTS", "WORKFLOW_NAME", "SagaWorkflow"]

WORKFLOW_NAME = "sagakit.saga"
EVENTS_QUERY = "sagakit.events"
OUTCOME_QUERY = "sagakit.outcome"
SIGNAL_ATTEMPTS = "sagakit.attempts"
#: The longest history a workflow's first task can see: its start, the task's scheduling, a
#: cancellation request, the task's start. More means an earlier task of this run did not
#: complete (the server refused it, or its worker died), and local activities it ran are lost.
_FRESH_START = 4


class _StepFailed(Exception):
    """A step phase failed for good; ``error`` is its JSON description.

    ``interrupt``: the step function was interrupted on its worker (``KeyboardInterrupt``,
    ``SystemExit``, or a cancellation it raised itself), which the driver treats as the local
    engine treats an interruption: never retried; a compensation's counts as failed and the
    rollback goes on.
    """

    def __init__(self, error: dict[str, Any], interrupt: bool = False) -> None:
        super().__init__(error.get("message", ""))
        self.error = error
        self.interrupt = interrupt


class _CompletedThenCancelled(asyncio.CancelledError):
    """The task was cancelled while its step ran, and the step completed anyway with ``result``."""

    def __init__(self, result: Any) -> None:
        super().__init__()
        self.result = result


class _Attempts:
    """Attempt numbering of one step phase, and whether its latest start is still open."""

    __slots__ = ("heartbeat", "index", "input", "n", "open_at", "start_to_close", "temporal_attempt")

    def __init__(self, index: int, data: Any, start_to_close: float, heartbeat: float | None) -> None:
        self.index = index
        self.input = data
        self.n = 0
        self.open_at: float | None = None
        self.start_to_close = start_to_close
        self.heartbeat = heartbeat
        self.temporal_attempt = 1  # the Temporal attempt the open event stands for


@workflow.defn(name=WORKFLOW_NAME)
class SagaWorkflow:
    """Runs a saga's shape: forward stages, then compensations in reverse completion order."""

    def __init__(self) -> None:
        self._events: list[dict[str, Any]] = []
        self._phases: dict[tuple[str, str], _Attempts] = {}
        self._errors = 0
        self._outcome: dict[str, Any] | None = None
        self._spec: dict[str, Any] = {}
        self._failed_step: str | None = None
        self._metadata: dict[str, Any] = {}
        self._cancelled = False  # a cancellation came while the workflow could not stop
        # Per (step, phase): attempts a resumed run's record already holds.
        self._bases: dict[tuple[str, str], int] = {}

    # -- the event record ---------------------------------------------------------------

    def _now(self) -> float:
        return workflow.now().timestamp()

    def _event(self, kind: str, **fields: Any) -> None:
        fields["kind"] = kind
        fields.setdefault("at", self._now())
        self._events.append(fields)

    def _compact(self) -> dict[str, Any]:
        """The events with each distinct payload stored once (``data`` becomes ``ref``).

        A step's output is also the next step's input and its compensation's input: the
        same object, mentioned by up to three events. Sharing it keeps the outcome, which
        Temporal stores in the workflow's history, small.
        """
        values: list[Any] = []
        positions: dict[int, int] = {}
        events = []
        for event in self._events:
            data = event.get("data")
            if data is None:
                events.append(event)
                continue
            position = positions.get(id(data))
            if position is None:
                position = positions[id(data)] = len(values)
                values.append(data)
            compact = dict(event)
            del compact["data"]
            compact["ref"] = position
            events.append(compact)
        return {"events": events, "values": values}

    def _error(self, error: dict[str, Any]) -> dict[str, Any]:
        # Number each error once, so that the caller rebuilds one object for all its mentions.
        if "id" not in error:
            self._errors += 1
            error["id"] = self._errors
        return error

    def _merge(self, changes: dict[str, Any] | None) -> None:
        """Apply what one activity changed in ``context.metadata`` (see the module docstring)."""
        if not changes:
            return
        self._metadata.update(changes.get("set") or {})
        for key in changes.get("deleted") or ():
            self._metadata.pop(key, None)

    def _begin(self, name: str, phase: str) -> None:
        state = self._phases[(name, phase)]
        state.n += 1
        state.open_at = self._now()
        kind = "step_started" if phase == "forward" else "compensation_started"
        self._event(kind, step=name, index=state.index, phase=phase, attempt=state.n, data=state.input,
                    at=state.open_at)

    def _record(self, name: str, phase: str, attempts: list[dict[str, Any]], output: Any = None) -> None:
        state = self._phases[(name, phase)]
        prefix = "step_" if phase == "forward" else "compensation_"
        last_success = max((i for i, a in enumerate(attempts) if a["status"] == "succeeded"), default=-1)
        for position, attempt in enumerate(attempts):
            temporal_attempt = attempt.get("temporal_attempt", state.temporal_attempt)
            if state.open_at is not None and temporal_attempt > state.temporal_attempt:
                # Temporal retried an attempt that never reported: its worker died (no heartbeat
                # for the heartbeat timeout) or hung past the start-to-close backstop.
                limit = state.start_to_close
                if state.heartbeat is not None and attempt["started_at"] - state.open_at < state.start_to_close:
                    limit = state.heartbeat
                self._close(name, phase, "failed", {
                    "type": "StepTimeout", "module": "sagakit.errors", "args": None,
                    "message": f"step {name!r} timed out after {limit:g}s", "fields": {"step": name, "timeout": limit},
                })
            state.temporal_attempt = temporal_attempt
            if state.open_at is None:
                state.n += 1
                self._event(prefix + "started", step=name, index=state.index, phase=phase, attempt=state.n,
                            data=state.input, at=attempt["started_at"])
            state.open_at = None
            status = attempt["status"]
            error = attempt.get("error")
            self._event(
                prefix + status,
                step=name,
                index=state.index,
                phase=phase,
                attempt=state.n,
                at=attempt["ended_at"],
                started_at=attempt["started_at"],
                duration_ms=(attempt["ended_at"] - attempt["started_at"]) * 1000.0,
                error=self._error(error) if error is not None else None,
                injected=bool(attempt.get("injected")),
                data=output if position == last_success else None,
                status=status,
            )

    def _close(self, name: str, phase: str, status: str, error: dict[str, Any] | None) -> None:
        """End the open attempt of a phase that ended without an activity report."""
        state = self._phases[(name, phase)]
        if state.open_at is None:
            return
        now = self._now()
        prefix = "step_" if phase == "forward" else "compensation_"
        self._event(prefix + status, step=name, index=state.index, phase=phase, attempt=state.n, at=now,
                    started_at=state.open_at, duration_ms=(now - state.open_at) * 1000.0,
                    error=self._error(error) if error is not None else None, injected=False, data=None,
                    status=status)
        state.open_at = None

    @workflow.signal(name=SIGNAL_ATTEMPTS)
    def attempts_signal(self, report: dict[str, Any]) -> None:
        """An activity attempt ended without a result of its own: record it and its metadata changes.

        Either it failed and Temporal will retry it (the next attempt opens), or it was
        cancelled (``"cancelled": true``; the activity's cancellation follows).
        """
        key = (report["step"], report["phase"])
        if key not in self._phases:
            return
        self._merge(report.get("metadata"))
        self._record(report["step"], report["phase"], report["attempts"])
        if report.get("cancelled"):
            return
        self._begin(report["step"], report["phase"])
        self._phases[key].temporal_attempt += 1

    @workflow.query(name=EVENTS_QUERY)
    def events_query(self, since: int) -> list[dict[str, Any]]:
        """The events recorded so far, from position ``since``."""
        return self._events[since:]

    @workflow.query(name=OUTCOME_QUERY)
    def outcome_query(self) -> dict[str, Any] | None:
        """The outcome once the saga has finished (``None`` before)."""
        return self._outcome

    # -- running one step phase ---------------------------------------------------------

    async def _call(self, step: dict[str, Any], phase: str, data: Any, metadata: dict[str, Any] | None = None) -> Any:
        """Run one step phase; ``metadata`` is what it sees (default: the run's, as of now)."""
        name = step["name"]
        options = step[phase]
        spec = self._spec
        local = bool(options.get("local"))
        heartbeat = None if local else spec.get("heartbeat_timeout")
        if heartbeat is not None:
            heartbeat = min(heartbeat, options["start_to_close"])
        state = self._phases[(name, phase)] = _Attempts(step["index"], data, options["start_to_close"], heartbeat)
        # A resumed run numbers attempts on from those its record holds.
        offset = state.n = self._bases.get((name, phase), 0)
        self._begin(name, phase)
        faults = spec["faults_" + phase]
        retry = options["retry"]
        context = dict(spec["context"])
        context["metadata"] = self._metadata if metadata is None else metadata
        call = {"data": data, "context": context, "fault": faults.get(name), "offset": offset}
        attempt = 1
        first = self._now()  # a retry deadline counts from here
        while True:
            if local:
                call.update(local=True, attempt=attempt)
            handle = _start(options, call, heartbeat)
            interrupted = await _settle(handle)
            if handle.cancelled():  # cancelled before it started
                self._close(name, phase, "cancelled", None)
                raise asyncio.CancelledError()
            try:
                report = handle.result()
            except FailureError as exc:
                # A regular activity's failure comes wrapped in an ActivityError, a local one's bare.
                cause = exc.cause if isinstance(exc, ActivityError) else exc
                if is_cancelled_exception(exc) or isinstance(cause, CancelledError):
                    self._close(name, phase, "cancelled", None)
                    raise asyncio.CancelledError() from None
                details = cause.details if isinstance(cause, ApplicationError) else ()
                if details and isinstance(details[0], dict) and "attempts" in details[0]:
                    self._merge(details[0].get("metadata"))
                    self._record(name, phase, details[0]["attempts"])
                    if interrupted or details[0].get("cancelled"):
                        raise asyncio.CancelledError() from None
                    if details[0].get("retry") and _before_deadline(retry, first, self._now()):
                        attempt = await self._again(name, phase, retry, attempt)
                        continue
                    raise _StepFailed(self._error(details[0]["error"]), bool(details[0].get("interrupt"))) from None
                if isinstance(cause, TimeoutError):
                    # The worker died (no heartbeat) or hung past the backstop: report a StepTimeout.
                    if cause.type == TimeoutType.HEARTBEAT and heartbeat is not None:
                        limit = heartbeat
                    elif options["timeout"] is not None:
                        limit = options["timeout"]
                    else:
                        limit = options["start_to_close"]
                    error = {"type": "StepTimeout", "module": "sagakit.errors",
                             "message": f"step {name!r} timed out after {limit:g}s", "args": None,
                             "fields": {"step": name, "timeout": limit}}
                else:
                    error = {"type": type(cause or exc).__name__, "module": "temporalio.exceptions",
                             "message": str(cause or exc), "args": None}
                self._close(name, phase, "failed", error)
                if interrupted:
                    raise asyncio.CancelledError() from None
                if (local and isinstance(cause, TimeoutError) and attempt < retry["maximum_attempts"]
                        and _before_deadline(retry, first, self._now())):
                    # Temporal retries a timed-out regular activity; a local one is retried here alike.
                    attempt = await self._again(name, phase, retry, attempt)
                    continue
                raise _StepFailed(self._error(error)) from None
            self._merge(report.get("metadata"))
            self._record(name, phase, report["attempts"], report["result"] if report["result"] is not None else data)
            if interrupted:
                raise _CompletedThenCancelled(report["result"])
            return report["result"]

    async def _again(self, name: str, phase: str, retry: dict[str, Any], attempt: int) -> int:
        """Open the next attempt of a local phase after its backoff; return its number.

        Local phases are retried by the workflow, not by the worker: each attempt is then
        one marker in the history, seen in order, with the same backoff as Temporal's.
        """
        self._begin(name, phase)
        self._phases[(name, phase)].temporal_attempt += 1
        delay = min(retry["initial_interval"] * 2.0 ** (attempt - 1), retry["maximum_interval"])
        try:
            await workflow.sleep(delay)
        except asyncio.CancelledError:
            self._close(name, phase, "cancelled", None)
            raise
        return attempt + 1

    async def _parallel(self, stage: dict[str, Any], data: Any, completed: list[tuple[dict[str, Any], Any]],
                        undo_failed: list[tuple[dict[str, Any], Any]], done: dict[str, Any] | None = None) -> Any:
        """Run a parallel stage the one way (:func:`sagakit._driver.parallel_stage`); its output.
        ``done``: outputs of branches that already completed (a resumed run): they do not run again."""
        running = [step for step in stage["steps"] if not done or step["name"] not in done]
        # Every branch starts from the metadata as of the stage's start; their changes merge as they end.
        metadata = dict(self._metadata)

        async def branch(step: dict[str, Any]) -> Any:
            try:
                result = await self._call(step, "forward", data, metadata)
            except _CompletedThenCancelled as exc:
                completed.append((step, data if exc.result is None else exc.result))
                raise asyncio.CancelledError() from None
            except (_StepFailed, asyncio.CancelledError):
                if step["compensate_on_failure"] and step["compensate"] is not None:
                    undo_failed.append((step, data))
                raise
            output = data if result is None else result
            completed.append((step, output))
            return output

        failure: StageFailed | None = None
        try:
            ran = await parallel_stage([branch(step) for step in running], workflow.wait)
        except StageFailed as failed:
            failure = failed
        if failure is not None:
            if failure.cancelled:
                self._cancelled = True  # propagates once the run is rolled back
            self._failed_step = running[failure.position]["name"]
            raise failure.error
        steps = stage["steps"]
        fresh = iter(ran)
        outputs = [done[step["name"]] if done and step["name"] in done else next(fresh) for step in steps]
        merged, unmergeable = merge_outputs(outputs)
        if unmergeable is not None:
            name = self._failed_step = steps[unmergeable]["name"]
            raise _StepFailed({
                "type": "TypeError", "module": "builtins", "args": None,
                "message": unmergeable_branch_message(self._spec["saga"], name, type(outputs[unmergeable]).__name__),
            })
        return merged

    # -- the saga -----------------------------------------------------------------------

    @workflow.run
    async def run(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Run the saga described by ``spec``; see the module docstring for the outcome."""
        self._spec = spec
        self._metadata = dict(spec["context"].get("metadata") or {})
        data = spec["data"]
        completed: list[tuple[dict[str, Any], Any]] = []
        undo_failed: list[tuple[dict[str, Any], Any]] = []
        original: dict[str, Any] | None = None
        interrupt: dict[str, Any] | None = None  # a step interrupted on its worker
        cancelled = False
        steps = [step for stage in spec["stages"] for step in stage["steps"]]
        forward_from = spec.get("forward_from")
        resume = spec.get("resume")
        if resume is not None:
            return await self._resume(resume, {step["name"]: step for step in steps})
        stages = spec["stages"] if forward_from is None else spec["stages"][:forward_from]
        try:
            if self._lost_local_work(spec):
                data = await self._rerun(stages, data, completed, undo_failed)
            else:
                for stage in stages:
                    data = await self._stage(stage, data, completed, undo_failed)
        except _StepFailed as exc:
            if exc.interrupt:
                interrupt = exc.error
            else:
                original = exc.error
        except asyncio.CancelledError:
            cancelled = True
        else:
            if forward_from is not None:
                return await self._recover_forward(spec["stages"][forward_from:], data, completed)
            self._outcome = {"status": "completed", "result": data, "error": None, "metadata": self._metadata,
                             **self._compact()}
            return self._outcome
        if self._failed_step is None:
            self._failed_step = blamed_step(None, steps[len(completed)]["name"] if len(completed) < len(steps) else None)
        rollback: Rollback[tuple[dict[str, Any], Any], dict[str, Any]] = Rollback(
            undo_order(undo_failed, completed), _compensates, stop=not spec["continue_on_compensation_failure"])
        return await self._roll_back(rollback, original, interrupt, cancelled, announce=True)

    async def _roll_back(self, rollback: Rollback[tuple[dict[str, Any], Any], dict[str, Any]],
                         original: dict[str, Any] | None, interrupt: dict[str, Any] | None, cancelled: bool,
                         announce: bool) -> dict[str, Any]:
        """Carry ``rollback`` out, shielded from cancellation, and end the workflow with its outcome."""
        task = asyncio.create_task(self._rollback(rollback, original, announce))
        if await wait_through_cancellation([task], workflow.wait) or self._cancelled:
            cancelled = True
        status, error = rollback_outcome(task.result(), original, interrupt)
        self._outcome = {"status": status, "result": None, "error": error, "metadata": self._metadata,
                         **self._compact()}
        if cancelled:
            # After its rollback, a cancellation always propagates; the outcome stays queryable.
            raise asyncio.CancelledError()
        kind = {"compensated": "SagaCompensated", "cancelled": "SagaCancelled"}.get(status, "SagaCompensationFailed")
        message = error["message"] if error is not None else status
        raise ApplicationError(f"saga {self._spec['saga']!r} {status}: {message}", self._outcome, type=kind,
                               non_retryable=True)

    async def _resume(self, resume: dict[str, Any], steps: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Carry on a run that ended stuck or ``compensation_failed`` from where its record stands
        (see ``TemporalBackend.resume``): forward past the pivot, or on with the rollback."""
        self._event("run_resumed", attempt=resume["number"], status=resume["status"])
        self._bases = {(name, phase): count for name, phase, count in resume["attempts"]}
        completed = [(steps[name], data) for name, data in resume["completed"]]
        if not resume["rolling_back"]:
            stages = self._spec["stages"][resume["stage"]:]
            return await self._recover_forward(stages, resume["data"], completed, resume.get("branches") or None)
        self._failed_step = resume["failed_step"]
        undo_failed = [(steps[name], data) for name, data in resume["undo_on_failure"]]
        rollback: Rollback[tuple[dict[str, Any], Any], dict[str, Any]] = Rollback(
            undo_order(undo_failed, completed), _compensates, stop=not self._spec["continue_on_compensation_failure"],
            failures=[self._error_in(failure) for failure in resume["failures"]], stopped=resume["stopped"])
        original = resume["original"]
        return await self._roll_back(rollback, self._error(original) if original is not None else None, None, False,
                                     announce=not resume["rollback_recorded"])

    def _error_in(self, failure: dict[str, Any]) -> dict[str, Any]:
        return {"step": failure["step"], "error": self._error(failure["error"])}

    async def _stage(self, stage: dict[str, Any], data: Any, completed: list[tuple[dict[str, Any], Any]],
                     undo_failed: list[tuple[dict[str, Any], Any]], done: dict[str, Any] | None = None) -> Any:
        """Run one stage forward; its output (``done``: branches already completed, see ``_parallel``)."""
        if stage["parallel"]:
            return await self._parallel(stage, data, completed, undo_failed, done)
        step = stage["steps"][0]
        try:
            result = await self._call(step, "forward", data)
        except _CompletedThenCancelled as exc:
            if exc.result is not None:
                data = exc.result
            completed.append((step, data))
            self._failed_step = step["name"]
            raise asyncio.CancelledError() from None
        except BaseException:
            self._failed_step = step["name"]
            if step["compensate_on_failure"] and step["compensate"] is not None:
                undo_failed.append((step, data))
            raise
        if result is not None:
            data = result
        completed.append((step, data))
        return data

    async def _recover_forward(self, stages: list[dict[str, Any]], data: Any,
                               completed: list[tuple[dict[str, Any], Any]],
                               done: dict[str, Any] | None = None) -> dict[str, Any]:
        """Past the pivot: run the remaining stages to their end, shielded from cancellation (the
        driver's forward recovery), and end ``completed`` or ``stuck``. ``done``: the outputs of
        the branches of the first stage that a resumed run had completed (they do not run again)."""

        async def rest() -> tuple[Any, _StepFailed | None]:
            output = data
            branches = done
            try:
                for stage in stages:
                    output = await self._stage(stage, output, completed, [], branches)
                    branches = None
            except _StepFailed as exc:
                return output, exc
            return output, None

        task = asyncio.create_task(rest())
        cancelled = await wait_through_cancellation([task], workflow.wait)  # past the pivot it only propagates
        output, failure = task.result()
        status, error, _, _ = forward_outcome(failure, self._stuck_error, lambda exc: bool(exc.interrupt))
        self._outcome = {"status": status, "result": output if status == "completed" else None, "error": error,
                         "metadata": self._metadata, **self._compact()}
        if cancelled:
            raise asyncio.CancelledError()
        if status == "completed":
            return self._outcome
        message = error["message"] if error is not None else status
        raise ApplicationError(f"saga {self._spec['saga']!r} stuck: {message}", self._outcome, type="SagaStuck",
                               non_retryable=True)

    def _stuck_error(self, failure: _StepFailed) -> dict[str, Any]:
        """The description of the run's :class:`~sagakit.SagaStuck` after ``failure``."""
        original = failure.error
        saga, pivot = self._spec["saga"], self._spec.get("pivot")
        return self._error({
            "type": "SagaStuck", "module": "sagakit.errors", "args": None,
            "message": stuck_message(saga, self._failed_step, pivot, _type_name(original), original["message"]),
            "fields": {"saga": saga, "step": self._failed_step, "pivot": pivot, "original": original},
        })

    def _lost_local_work(self, spec: dict[str, Any]) -> bool:
        """Whether an earlier workflow task of this run may have run local activities whose
        records were lost: it did not complete (the server refused it because a cancellation
        arrived while it ran, or its worker died), and the saga has local steps."""
        if workflow.info().get_current_history_length() <= _FRESH_START:
            return False
        return any(member["forward"]["local"] for stage in spec["stages"] for member in stage["steps"])

    async def _rerun(self, stages: list[dict[str, Any]], data: Any, completed: list[tuple[dict[str, Any], Any]],
                     undo_failed: list[tuple[dict[str, Any], Any]]) -> Any:
        """Run the stages forward shielded from cancellation, then let a cancellation that came
        meanwhile roll the run back.

        Local activities are recorded with the workflow task that ran them. When the server
        refuses a task that was ending the workflow (a cancellation arrived while it ran), the
        workflow starts over without those records, though the local steps' effects happened,
        and the cancellation now comes first. Acting on it at once would cancel the first step
        and leave the others' effects behind. Instead the steps run again (as Temporal runs a
        lost task's local activities again: idempotent steps act once) up to where the lost task
        had taken them, and the cancellation then rolls everything back.
        """

        async def forward() -> Any:
            output = data
            for stage in stages:
                output = await self._stage(stage, output, completed, undo_failed)
            return output

        task = asyncio.create_task(forward())
        if await wait_through_cancellation([task], workflow.wait):
            self._cancelled = True  # propagates once the run is rolled back
        output = task.result()  # a step's failure: the rollback follows
        if self._cancelled:
            raise asyncio.CancelledError()
        return output

    async def _rollback(self, rollback: Rollback[tuple[dict[str, Any], Any], dict[str, Any]],
                        original: dict[str, Any] | None, announce: bool = True) -> dict[str, Any] | None:
        """Carry out ``rollback`` (the driver says what comes next); the compensation error, if any."""
        if announce:
            self._event("rollback_started", step=self._failed_step, error=original, status="rolling_back")
        for action, (step, data) in rollback:
            if action is SKIP:
                now = self._now()
                self._event("compensation_skipped", step=step["name"], index=step["index"], phase="compensate",
                            attempt=0, at=now, started_at=now, duration_ms=0.0, data=data, status="skipped")
                continue
            try:
                await self._call(step, "compensate", data)
            except _StepFailed as exc:
                failure = {"step": step["name"], "error": exc.error}
                if exc.interrupt:
                    rollback.interrupted(failure, exc.error)
                else:
                    rollback.failed(failure)
        if not rollback.failures:
            return None
        saga = self._spec["saga"]
        pending = [entry[0]["name"] for entry in rollback.pending]
        message = compensation_message(
            saga,
            [(f["step"], _type_name(f["error"]), f["error"]["message"]) for f in rollback.failures],
            None if original is None else (_type_name(original), original["message"]),
            pending,
        )
        return self._error({
            "type": "CompensationError", "module": "sagakit.errors", "message": message, "args": None,
            "fields": {"saga": saga, "original": original, "failures": rollback.failures, "pending": pending},
        })


def _start(options: dict[str, Any], call: dict[str, Any], heartbeat: float | None) -> workflow.ActivityHandle[Any]:
    """Start one step phase as the activity kind its options name."""
    retry = options["retry"]
    timeout = timedelta(seconds=options["start_to_close"])
    # Wait until the step has stopped before anything else (the rollback) runs.
    waits = workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
    if options.get("local"):
        return workflow.start_local_activity(
            options["activity"], call, start_to_close_timeout=timeout, cancellation_type=waits,
            retry_policy=RetryPolicy(maximum_attempts=1),  # the workflow retries (see SagaWorkflow._again)
        )
    return workflow.start_activity(
        options["activity"],
        call,
        start_to_close_timeout=timeout,
        heartbeat_timeout=timedelta(seconds=heartbeat) if heartbeat is not None else None,
        cancellation_type=waits,
        retry_policy=RetryPolicy(
            initial_interval=timedelta(seconds=retry["initial_interval"]),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=retry["maximum_interval"]),
            maximum_attempts=retry["maximum_attempts"],
        ),
    )


async def _settle(handle: workflow.ActivityHandle[Any]) -> bool:
    """Wait until the activity has ended; return whether a cancellation came meanwhile.

    A cancellation of the waiting task is passed on to the activity, and the wait goes on
    until the activity acknowledges it (or ends anyway): the caller then decides what the
    outcome means. Awaiting the handle directly would let Temporal's SDK swallow the
    cancellation when the activity completes anyway.
    """
    interrupted = False
    while not handle.done():
        try:
            await workflow.wait([handle])
        except asyncio.CancelledError:
            interrupted = True
            handle.cancel()
    return interrupted


def _before_deadline(retry: dict[str, Any], first: float, now: float) -> bool:
    """Whether a retry may still start: the phase's retry deadline (if any) has not passed."""
    deadline = retry.get("deadline")
    return deadline is None or now - first < deadline


def _compensates(entry: tuple[dict[str, Any], Any]) -> bool:
    return entry[0]["compensate"] is not None


def _type_name(error: dict[str, Any]) -> str:
    """The unqualified type name of an error's JSON description."""
    return str(error["type"]).rsplit(".", 1)[-1]
