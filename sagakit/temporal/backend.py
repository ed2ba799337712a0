"""The Temporal backend: run a saga as a workflow and bring its events back as a Run.

``await saga.run(data, backend=TemporalBackend(client, task_queue="sagas"))`` starts the
generic saga workflow on the cluster; workers started with :func:`sagakit.temporal.serve`
or ``python -m sagakit.temporal worker`` on that task queue run its activities. The caller
gets the same :class:`~sagakit.Run` as with the local engine (``backend == "temporal"``,
the workflow id in ``run.info``), and the run is added to ``saga.history``.

While the workflow runs, and only when the run has observers (the Lab, a journal,
telemetry), the backend polls the workflow's ``sagakit.events`` query every
``poll_interval`` seconds and passes new events on, in order; runs without observers cost
no queries. A workflow answers queries only between workflow tasks, and a run whose steps are
all local activities without retries is one workflow task from start to end: its observers
get its events when it ends, and it makes no queries (each would be answered only after the
run, by a replay of its whole history on a worker). ``run_started`` and ``run_finished`` come from the caller's side, so a run's
duration is what the caller waited. ``run.info["local_activities"]`` lists the steps that
ran as local activities (see ``local_activities``). As with the local engine, ``step_started`` and
``compensation_started`` go to the observers only; ``run.events`` keeps the rest.

The run's ``context.metadata`` dict is updated in place at the end with the notes the steps
left in it, as the local engine's steps would have left them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Collection, Iterable
from datetime import timedelta
from typing import Any, TypeAlias

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import QueryRejectCondition, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError

from sagakit._checks import check_observers, check_seconds
from sagakit._process import run_observers
from sagakit._recorder import deliver
from sagakit.context import WorkflowContext
from sagakit.engine import Resumption, RunRequest
from sagakit.events import Event, EventKind, Observer
from sagakit.faults import FaultPlan
from sagakit.runs import Run
from sagakit.saga import Saga
from sagakit.steps import Step
from sagakit.temporal._errors import RemoteStepError, describe_error, rebuild_error
from sagakit.temporal._json import json_problem
from sagakit.temporal._shape import draw_faults, rewind_faults, saga_shape
from sagakit.temporal._tracing import caller_context, traces_steps
from sagakit.temporal.workflow import EVENTS_QUERY, OUTCOME_QUERY, WORKFLOW_NAME

__all__ = ["LocalActivities", "TemporalBackend", "default_workflow_id"]

#: Which steps run as local activities: all (``True``), none (``False``), the steps named
#: (``"step"``, or ``"saga.step"`` for one saga's step), or those a predicate picks.
LocalActivities: TypeAlias = bool | Collection[str] | Callable[[Step], bool]

_KINDS = {kind.value: kind for kind in EventKind}
_LIVE_ONLY = (EventKind.STEP_STARTED, EventKind.COMPENSATION_STARTED)
_ENDS = (EventKind.STEP_SUCCEEDED, EventKind.STEP_FAILED, EventKind.STEP_CANCELLED, EventKind.COMPENSATION_SUCCEEDED,
         EventKind.COMPENSATION_FAILED, EventKind.COMPENSATION_CANCELLED)
_END_OF_RUN = {"completed", "compensated", "compensation_failed", "cancelled", "stuck"}
#: Temporal's default workflow task timeout (seconds), which local steps must stay well under.
WORKFLOW_TASK_TIMEOUT = 10.0


def _check_local(choice: Any) -> LocalActivities:
    if isinstance(choice, bool) or callable(choice):
        return choice  # type: ignore[no-any-return]
    if isinstance(choice, str) or not isinstance(choice, Collection) or not all(
            isinstance(item, str) and item for item in choice):
        raise TypeError("TemporalBackend local_activities: expected True, False, a collection of step names "
                        f"or a callable (Step) -> bool, got {choice!r}")
    return frozenset(choice)


def default_workflow_id(request: RunRequest) -> str:
    """``<saga>/<correlation id>/<run id>``, or ``<saga>/<run id>`` without a correlation id.

    The run id keeps concurrent runs for one correlation id apart; the correlation id in
    front lets Temporal's UI and ``temporal workflow list`` find a business request's runs
    by prefix. Pass ``workflow_id=`` to :class:`TemporalBackend` for another scheme (for
    example the bare correlation id, to have Temporal refuse a second concurrent run).
    """
    saga = request.saga.name
    if request.context.correlation_id:
        return f"{saga}/{request.context.correlation_id}/{request.run_id}"
    return f"{saga}/{request.run_id}"


class TemporalBackend:
    """Runs sagas as Temporal workflows.

    Args:
        client: a connected ``temporalio.client.Client``.
        task_queue: the task queue the saga workers poll.
        workflow_id: builds the workflow id from the run request (default:
            :func:`default_workflow_id`).
        activity_timeout: seconds an attempt of a step without its own ``timeout`` may take
            before Temporal gives up on it (and retries it, per the step's retry policy);
            it bounds a step that hangs while its worker stays alive.
        heartbeat_timeout: seconds without a heartbeat after which Temporal considers a
            step's worker dead (and retries the step, per its retry policy, or fails it with
            ``StepTimeout``). Running steps heartbeat every quarter of it, and a cancellation
            reaches a running step at its next heartbeat: within about this long.
        poll_interval: seconds between event queries while a run with observers is live.
        local_activities: which steps run as Temporal local activities (both their forward
            action and their compensation): ``True`` for all, ``False`` (default) for none,
            a collection of step names (``"reserve"``, or ``"order.reserve"`` to name one
            saga's step), or a callable ``(Step) -> bool``. A local activity runs in the
            worker that runs the workflow, without a round trip through the server: for
            short steps it is many times faster. The saga behaves the same either way.
        local_activity_timeout: seconds an attempt of a local step without its own
            ``timeout`` may take. Keep local steps well under Temporal's workflow task
            timeout (10 s): an attempt that runs longer than this limit is stopped and
            fails with ``StepTimeout``, then is retried per the step's retry policy, then
            the saga rolls back. Steps that may run long belong in regular activities.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: a timeout is not a positive number of seconds, or ``local_activity_timeout``
            is not shorter than the workflow task timeout.
    """

    name = "temporal"

    def __init__(
        self,
        client: Client,
        *,
        task_queue: str,
        workflow_id: Callable[[RunRequest], str] | None = None,
        activity_timeout: float = 60.0,
        heartbeat_timeout: float = 5.0,
        poll_interval: float = 0.1,
        local_activities: LocalActivities = False,
        local_activity_timeout: float = 5.0,
    ) -> None:
        if not isinstance(client, Client):
            raise TypeError(f"TemporalBackend client: expected a temporalio.client.Client, got {type(client).__name__}")
        if not isinstance(task_queue, str) or not task_queue:
            raise TypeError(f"TemporalBackend task_queue: expected a non-empty string, got {task_queue!r}")
        if workflow_id is not None and not callable(workflow_id):
            raise TypeError(f"TemporalBackend workflow_id: expected a callable (RunRequest) -> str, got {workflow_id!r}")
        self.client = client
        self.task_queue = task_queue
        self.workflow_id = workflow_id or default_workflow_id
        self.activity_timeout = check_seconds(activity_timeout, "TemporalBackend activity_timeout")
        self.heartbeat_timeout = check_seconds(heartbeat_timeout, "TemporalBackend heartbeat_timeout")
        self.poll_interval = check_seconds(poll_interval, "TemporalBackend poll_interval")
        self.local_activities = _check_local(local_activities)
        self.local_activity_timeout = check_seconds(local_activity_timeout, "TemporalBackend local_activity_timeout")
        if self.local_activity_timeout >= WORKFLOW_TASK_TIMEOUT:
            raise ValueError(f"TemporalBackend local_activity_timeout: expected fewer seconds than the workflow task "
                             f"timeout ({WORKFLOW_TASK_TIMEOUT:g}s), got {local_activity_timeout!r}; run longer steps "
                             "as regular activities")

    def __repr__(self) -> str:
        return f"TemporalBackend(task_queue={self.task_queue!r}, namespace={self.client.namespace!r})"

    def local_steps(self, saga: Saga) -> list[str]:
        """The names of ``saga``'s steps that run as local activities, in saga order.

        Raises:
            ValueError: ``local_activities`` names a step (without a saga prefix) that
                ``saga`` does not have.
        """
        choice = self.local_activities
        if isinstance(choice, bool):
            return [member.name for member in saga.steps] if choice else []
        if callable(choice):
            picked = []
            for member in saga.steps:
                verdict = choice(member)
                if not isinstance(verdict, bool):
                    raise TypeError(f"TemporalBackend local_activities: the callable returned "
                                    f"{type(verdict).__name__} for step {member.name!r}; expected a bool")
                if verdict:
                    picked.append(member.name)
            return picked
        names = {member.name for member in saga.steps}
        wanted = set()
        for item in choice:
            owner, dot, name = item.rpartition(".")
            if dot and owner != saga.name:
                continue
            if name not in names:
                raise ValueError(f"TemporalBackend local_activities: saga {saga.name!r} has no step {name!r} "
                                 f"(its steps: {', '.join(sorted(names))})")
            wanted.add(name)
        return [member.name for member in saga.steps if member.name in wanted]

    def _input(self, request: RunRequest) -> tuple[dict[str, Any], list[Any]]:
        saga = request.saga
        # Checked before the faults draw, so that a refused run leaves flaky faults as they were.
        for label, value in (("data", request.data), ("context.metadata", request.context.metadata)):
            problem = json_problem(value, f"saga {saga.name!r} {label}")
            if problem is not None:
                raise TypeError(problem)
        local = set(self.local_steps(saga))
        forward, compensate, saved = draw_faults(saga, request.faults)
        spec = saga_shape(saga, activity_timeout=self.activity_timeout, local=lambda member: member.name in local,
                          local_timeout=self.local_activity_timeout)
        spec.update(
            data=request.data,
            context={
                "correlation_id": request.context.correlation_id,
                "metadata": request.context.metadata,
                "run_id": request.run_id,
            },
            faults_forward=forward,
            faults_compensate=compensate,
            heartbeat_timeout=self.heartbeat_timeout,
        )
        if request.resume is not None:
            spec["resume"] = _resume_spec(request.resume)
        return spec, saved

    def _workflow_id(self, request: RunRequest) -> str:
        workflow_id: object = self.workflow_id(request)
        if not isinstance(workflow_id, str) or not workflow_id:
            raise TypeError(
                f"TemporalBackend workflow_id: the callable returned {type(workflow_id).__name__} {workflow_id!r} "
                f"for a run of saga {request.saga.name!r}; expected a non-empty str (the Temporal workflow id)"
            )
        return workflow_id

    async def resume(self, run: Run, saga: Saga | None = None, *, observers: Iterable[Observer] = ()) -> Run:
        """Finish a Temporal run that ended ``stuck`` or ``compensation_failed``, once its cause is fixed.

        The equivalent of :meth:`sagakit.SqliteJournal.resume` for runs of this backend: a new
        workflow (``<workflow id>/resume-<n>``) carries the run on from where its record stands,
        under the same driver: a stuck run retries its pending step and goes on forward, a
        ``compensation_failed`` run retries its failed compensations and goes on with the
        rollback. Nothing that already succeeded runs again. The returned run holds the whole
        record (``run_resumed``, then what the resumption did), counts the resumption in
        ``info["resumed"]``, and is added to the saga's history.

        Args:
            run: the finished run, as this backend returned it (or a later resumption of it).
            saga: its saga (default: ``run.definition``).
            observers: also send the resumed run's events to these observers.

        Raises:
            ResumeRefused: ``run`` did not run on Temporal, did not end stuck or
                ``compensation_failed``, or ``saga`` does not match its recorded steps.
        """
        from sagakit._resume import RESUMABLE, Record, mismatch, position
        from sagakit.errors import ResumeRefused

        if not isinstance(run, Run):
            raise TypeError(f"TemporalBackend.resume run: expected a sagakit.Run, got {type(run).__name__}")
        saga = run.definition if saga is None else saga
        if not isinstance(saga, Saga):
            raise TypeError(f"TemporalBackend.resume saga: expected the sagakit.Saga run {run.run_id} belongs to, "
                            f"got {type(saga).__name__}")
        if run.backend != self.name:
            raise ResumeRefused(run.run_id, f"it ran on the {run.backend!r} backend; resume it there (a journaled "
                                            "local run: SqliteJournal.resume)")
        if run.status not in RESUMABLE:
            raise ResumeRefused(run.run_id, f"it ended {run.status}: there is nothing left to do (resumable: "
                                            f"{' or '.join(RESUMABLE)})")
        extra = check_observers(observers, "TemporalBackend.resume observers")
        events = list(run.events)
        record = Record(run.run_id, run.status, dict(run.info), events, [True] * len(events))
        different = mismatch(events, saga)
        if saga.name != run.saga or different is not None:
            raise ResumeRefused(run.run_id, f"its recorded steps do not match saga {saga.name!r}: "
                                            f"{different or f'it is a run of saga {run.saga!r}'}")
        resumption = position(record, saga, retry_failed=True)
        context = WorkflowContext(run.correlation_id)._derive(run.run_id, saga.name)
        request = RunRequest(saga, None, context, FaultPlan(saga=saga.name),
                             run_observers(saga, (*saga.observers, *extra)), run.run_id, resume=resumption)
        return await self.run(request)

    async def run(self, request: RunRequest) -> Run:
        """Run ``request`` as a workflow; see the module docstring."""
        saga = request.saga
        workflow_id = self._workflow_id(request)  # before the faults draw: a refused run draws nothing
        spec, saved = self._input(request)
        resumption = request.resume
        if resumption is None:
            started = time.time()
        else:
            workflow_id = f"{resumption.info.get('workflow_id') or workflow_id}/resume-{resumption.number}"
            started = resumption.started_at
        info: dict[str, Any] = {"backend": self.name, "workflow_id": workflow_id, "workflow_run_id": None,
                                "task_queue": self.task_queue, "namespace": self.client.namespace,
                                "local_activities": [member["name"] for stage in spec["stages"]
                                                     for member in stage["steps"] if member["forward"]["local"]]}
        if traces_steps(self.client):
            info["step_spans"] = "workers"
        if saga._kinds:
            info["kinds"] = saga._kinds
        stream = _Stream(request, info)
        if resumption is not None:
            # The record so far opens the resumed run; the workflow tells run_resumed, then what it does.
            stream.events.extend(resumption.events)
            info["resumed"] = resumption.number
        else:
            # run_started comes first so that the run's root span (if traced) is the workflow's parent.
            stream.emit(Event(kind=EventKind.RUN_STARTED, run_id=request.run_id, saga=saga.name, at=started,
                              data=request.data, correlation_id=request.context.correlation_id, info=info))
        try:
            with caller_context(stream.observers, request.run_id):
                handle = await self.client.start_workflow(
                    WORKFLOW_NAME,
                    spec,
                    id=workflow_id,
                    task_queue=self.task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                    task_timeout=timedelta(seconds=WORKFLOW_TASK_TIMEOUT),
                    memo={"saga": saga.name, "correlation_id": request.context.correlation_id,
                          "run_id": request.run_id},
                )
        except BaseException as refused:  # nothing ran: end the run for the observers, and raise
            ended = time.time()
            stream.emit(Event(kind=EventKind.RUN_FINISHED, run_id=request.run_id, saga=saga.name, at=ended,
                              started_at=started, duration_ms=(ended - started) * 1000.0, error=refused,
                              status="cancelled", correlation_id=request.context.correlation_id))
            raise
        info["workflow_run_id"] = handle.result_run_id
        await stream.settle()
        interrupt: BaseException | None = None
        # The queries that follow the run belong to its trace too (not one new trace each).
        with caller_context(stream.observers, request.run_id):
            result_task = asyncio.ensure_future(_outcome(handle))
            try:
                await self._follow(handle, result_task, stream, live=_answers_queries(spec))
            except asyncio.CancelledError as exc:
                interrupt = exc
                # Cancel the workflow, which compensates, and wait for it through further
                # cancellations; a workflow no worker ever ran has nothing to undo: end it.
                wind_down = asyncio.ensure_future(_wind_down(handle, result_task, self.poll_interval))
                while not wind_down.done():
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.shield(wind_down)
        outcome = result_task.result()
        if isinstance(outcome.get("metadata"), dict):
            _update_in_place(request.context.metadata, outcome["metadata"])
        stream.extend(outcome.get("events") or [], 0, outcome.get("values"))
        await stream.settle()
        status = outcome.get("status")
        if status not in _END_OF_RUN:
            status = "cancelled"
        ended = time.time()
        error = stream.error(outcome.get("error"))
        if status == "cancelled" and error is None:
            error = interrupt if interrupt is not None else asyncio.CancelledError()
        if error is None and outcome.get("failure"):
            error = RemoteStepError(outcome["failure"])
        stream.emit(Event(kind=EventKind.RUN_FINISHED, run_id=request.run_id, saga=saga.name, at=ended,
                          started_at=started, duration_ms=(ended - started) * 1000.0, error=error,
                          injected=any(e.injected for e in stream.events), data=outcome.get("result"), status=status,
                          correlation_id=request.context.correlation_id))
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(stream.settle())
        run = Run.from_events(stream.events, definition=saga, backend=self.name, info=info)
        rewind_faults(saved, stream.attempts())
        saga.history.append(run)
        if interrupt is not None:
            raise interrupt
        return run

    async def _follow(self, handle: WorkflowHandle[Any, Any], result: asyncio.Future[dict[str, Any]],
                      stream: _Stream, *, live: bool) -> None:
        """Wait for the outcome; meanwhile, if anyone listens and the workflow can answer
        (``live``), pass events on as they come."""
        if not stream.observers or not live:
            await asyncio.shield(result)
            return
        while not result.done():
            await asyncio.wait([result], timeout=self.poll_interval)
            if result.done():
                break
            since = stream.received
            try:
                # A workflow that has ended would answer by replaying its history on a worker;
                # its outcome, coming anyway, carries every event.
                fresh = await handle.query(EVENTS_QUERY, since, reject_condition=QueryRejectCondition.NOT_OPEN)
            except Exception:  # not yet picked up by a worker, or the worker is busy: next time
                continue
            stream.extend(fresh, since)
            await stream.settle()


def _resume_spec(resumption: Resumption) -> dict[str, Any]:
    """Where a recorded run stands, as the workflow's JSON (see ``SagaWorkflow._resume``)."""
    return {
        "number": resumption.number,
        "status": resumption.status,
        "stage": resumption.stage,
        "data": resumption.data,
        "completed": [[step.name, data] for step, _, data in resumption.completed],
        "rolling_back": resumption.rolling_back,
        "rollback_recorded": resumption.rollback_recorded,
        "original": describe_error(resumption.original) if resumption.original is not None else None,
        "failed_step": resumption.failed_step,
        "undo_on_failure": [[step.name, data] for step, _, data in resumption.undo_on_failure],
        "failures": [{"step": failure.step, "error": describe_error(failure.error)} for failure in resumption.failures],
        "stopped": resumption.stopped,
        "attempts": [[name, phase, count] for (name, phase), count in resumption.attempts.items()],
        "branches": dict(resumption.branches),
    }


def _answers_queries(spec: dict[str, Any]) -> bool:
    """Whether the workflow of ``spec`` may end a workflow task before the run ends, and so
    answer queries meanwhile: it has a regular activity to wait for, or a local step whose
    retries wait on a timer. Local steps without retries run back to back in one task."""
    for stage in spec["stages"]:
        for member in stage["steps"]:
            for phase in (member["forward"], member.get("compensate")):
                if phase is not None and (not phase["local"] or phase["retry"]["maximum_attempts"] > 1):
                    return True
    return False


def _update_in_place(metadata: dict[str, Any], final: dict[str, Any]) -> None:
    """Make the caller's ``metadata`` dict equal ``final``, touching only the keys that changed."""
    for key in [key for key in metadata if key not in final]:
        del metadata[key]
    for key, value in final.items():
        if key not in metadata or metadata[key] != value or type(metadata[key]) is not type(value):
            metadata[key] = value


async def _cancel(handle: WorkflowHandle[Any, Any]) -> None:
    with contextlib.suppress(Exception):  # already finished: nothing to cancel
        await handle.cancel()


#: Seconds a cancelled workflow may take to show that a worker runs it before it is ended.
_UNSTARTED_GRACE = 2.0


async def _wind_down(handle: WorkflowHandle[Any, Any], result: asyncio.Future[dict[str, Any]],
                     poll_interval: float) -> None:
    """After the caller's cancellation: ask the workflow to cancel (it compensates), and wait for
    its outcome. A workflow that no worker ever ran (none polls its task queue, or each one fails
    its workflow task, such as a worker without the payload key) would keep the caller waiting
    forever with nothing to undo: once it has had a moment to start, it is terminated. A workflow
    whose task is in progress may be running local activities: it is waited for."""
    await _cancel(handle)
    deadline = time.monotonic() + _UNSTARTED_GRACE
    while not result.done():
        await asyncio.wait([result], timeout=max(poll_interval, 0.05))
        if result.done() or time.monotonic() < deadline:
            continue
        if not await _ever_ran(handle):
            with contextlib.suppress(Exception):  # it ended meanwhile: its outcome follows
                await handle.terminate(reason="sagakit: cancelled by its caller before any worker ran it")
            await asyncio.wait([result])
            return
        deadline = float("inf")  # a worker runs it: its rollback decides when it ends


async def _ever_ran(handle: WorkflowHandle[Any, Any]) -> bool:
    """Whether a worker may have acted for the workflow: it completed one of its tasks, or one is
    in progress (local activities run inside a task, before it completes) and none ever failed
    (a task that fails before any completed is a worker that cannot run the workflow at all)."""
    from temporalio.api.enums.v1 import EventType

    task_open = failed = False
    try:
        async for event in handle.fetch_history_events():
            kind = event.event_type
            if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                return True
            if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                task_open = True
            elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                task_open, failed = False, True  # its workers cannot run it (a payload key, a missing saga)
            elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
                task_open = False
    except Exception:
        return True  # cannot tell: keep waiting, as for a workflow that runs
    return task_open and not failed


async def _outcome(handle: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    """The workflow's outcome, whichever way it ended."""
    try:
        outcome: dict[str, Any] = await handle.result()
        return outcome
    except WorkflowFailureError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.details and isinstance(cause.details[0], dict):
            details: dict[str, Any] = cause.details[0]
            return details
        # Cancelled: the outcome stays in the workflow's state. Terminated or timed out: none.
        try:
            kept: dict[str, Any] | None = await handle.query(OUTCOME_QUERY)
        except Exception:
            kept = None
        if kept is not None:
            return kept
        return {"status": "cancelled", "events": None, "failure": f"workflow ended without an outcome: {cause}"}


class _Stream:
    """The run's events as they arrive, converted and passed to the observers in order."""

    def __init__(self, request: RunRequest, info: dict[str, Any]) -> None:
        self.run_id = request.run_id
        self.saga = request.saga.name
        self.correlation_id = request.context.correlation_id
        self.observers: list[Observer] = list(request.observers)
        self.settlers = [o for o in self.observers if callable(getattr(o, "settle", None))]
        self.events: list[Event] = []
        self.received = 0  # workflow events converted so far
        self.memo: dict[int, BaseException] = {}
        self.info = info

    def error(self, info: dict[str, Any] | None) -> BaseException | None:
        return rebuild_error(info, self.memo)

    def emit(self, event: Event) -> None:
        if event.kind not in _LIVE_ONLY:
            self.events.append(event)
        deliver(self.observers, event)

    def extend(self, raw: list[dict[str, Any]], offset: int, values: list[Any] | None = None) -> None:
        """Pass on workflow events ``raw`` (starting at position ``offset``) not yet received.

        With ``values``, an event's payload is ``values[event["ref"]]`` (see the workflow's outcome).
        """
        for item in raw[max(0, self.received - offset):]:
            self.received += 1
            if values is not None and "ref" in item:
                item["data"] = values[item["ref"]]
            self.emit(Event(
                kind=_KINDS[item["kind"]], run_id=self.run_id, saga=self.saga, at=item["at"], step=item.get("step"),
                index=item.get("index", -1), phase=item.get("phase"), attempt=item.get("attempt", 0),
                started_at=item.get("started_at"), duration_ms=item.get("duration_ms"),
                error=self.error(item.get("error")), injected=bool(item.get("injected", False)),
                data=item.get("data"), status=item.get("status"), correlation_id=self.correlation_id,
            ))

    def attempts(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for event in self.events:
            if event.kind in _ENDS:
                key = (event.step or "", event.phase or "")
                counts[key] = counts.get(key, 0) + 1
        return counts

    async def settle(self) -> None:
        for observer in self.settlers:
            await observer.settle()  # type: ignore[attr-defined]
