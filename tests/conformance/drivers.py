"""The table's backends: each driver runs a row and returns one normalized observation per run.

An observation (:func:`observe`) is what a user can see of a run, without times and ids:
status, failed step, error and original error (type name and message, and the module of
their classes), what the call raised, the result, every step attempt and compensation in
order (step, index, phase, attempt, status, error type and message, injected), the completed
and compensated steps, the run's counters (steps completed, compensations run, injected), the
columns and dtypes of its steps and runs frames, and the world: the ledger's lines for the run in order (with the
data each call received) and the effects left standing.

:func:`expected` turns the local engine's observation into what another backend must give:
the same, except for the differences listed (and explained) there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import sagakit as sk
from conformance import world
from conformance.table import SAGAS, Row, fresh_faults
from conformance.world import Point

__all__ = ["expected", "run_crash", "run_local", "run_temporal"]

HERE = Path(__file__).resolve().parent
STEP_FIELDS = ["step", "index", "phase", "attempt", "status", "error_type", "error_message", "injected"]
INTERRUPTS = ("KeyboardInterrupt", "SystemExit", "CancelledError")
#: The table's task queue, served by the test process's worker.
QUEUE = "sagakit-conformance"
#: A task queue no worker ever polls.
NOBODY = "sagakit-conformance-nobody"
#: A task queue polled by a worker whose payload key is not the caller's.
WRONG_KEY = "sagakit-conformance-wrong-key"
#: Where an error read back from a journal comes from: its type name and text are kept, not its class.
READ_BACK = "sagakit.journal._history"
#: The longest any one call of a driver may take: a hang must fail the cell, not stall the table.
GUARD = 60.0

Observation = dict[str, Any]


def _error(error: BaseException | None) -> tuple[str, str] | None:
    if error is None:
        return None
    return type(error).__name__, str(error)


def _module(error: BaseException | None) -> str | None:
    return type(error).__module__ if error is not None else None


def _rows(run: sk.Run) -> list[tuple[Any, ...]]:
    frame = run.steps[STEP_FIELDS].astype(object)
    return [tuple(row) for row in frame.where(frame.notna(), None).itertuples(index=False)]


def _standing(ledger: list[tuple[Any, ...]]) -> list[str]:
    effects: Counter[str] = Counter()
    for step, _phase, _attempt, event, _data in ledger:
        if event == "did":
            effects[step] += 1
        elif event == "undid":
            effects[step] -= 1
    return sorted(step for step, count in effects.items() for _ in range(count))


def observe(run: sk.Run | None, correlation_id: str, raised: BaseException | None, row: Row,
            status: str | None = None) -> Observation:
    """What a user sees of ``run`` (``None``: only the journal's status is known) and of the world."""
    ledger = world.entries(correlation_id)
    observation: Observation = {
        "run_id": run.run_id if run is not None else None,  # not compared: names RunInterrupted's run
        "status": run.status if run is not None else status,
        "failed_step": run.failed_step if run is not None else None,
        "error": _error(run.error) if run is not None else None,
        "original": _error(run.original_error) if run is not None else None,
        "raised": type(raised).__name__ if raised is not None else None,
        "result": run.result if run is not None else None,
        "steps": _rows(run) if run is not None else [],
        "completed": run.completed_steps if run is not None else [],
        "compensated": run.compensated_steps if run is not None else [],
        # Where the error classes come from: the user's own (rebuilt across Temporal), or stand-ins.
        "classes": (_module(run.error), _module(run.original_error)) if run is not None else (None, None),
        "counts": (run.steps_completed, run.compensations_run, run.injected) if run is not None else None,
        "frame": [(column, str(dtype)) for column, dtype in run.steps.dtypes.items()] if run is not None else [],
        "runs_frame": [(column, str(dtype)) for column, dtype in sk.RunHistory([run]).runs.dtypes.items()]
        if run is not None else [],
        "world": ledger,
        "standing": _standing(ledger),
    }
    return _scheduler_order(observation, row)


def _scheduler_order(observation: Observation, row: Row) -> Observation:
    """Sort, within each stretch of one parallel stage's lines, the lines of its branches.

    The branches of a parallel stage run at once: which branch's attempt or ledger line comes
    first is up to the scheduler, on every backend; what happened to each branch is not.
    """
    stage_of = row.parallel_steps()
    if not stage_of:
        return observation

    def stretches(items: list[Any], step: Callable[[Any], str], phase: Callable[[Any], str]) -> list[Any]:
        ordered: list[Any] = []
        stretch: list[Any] = []
        key: tuple[int, str] | None = None
        for item in items:
            stage = stage_of.get(step(item))
            here = (stage, phase(item)) if stage is not None else None
            if here is None or here != key:
                ordered.extend(sorted(stretch, key=repr))
                stretch = []
            if here is None:
                ordered.append(item)
            else:
                stretch.append(item)
            key = here
        ordered.extend(sorted(stretch, key=repr))
        return ordered

    observation["steps"] = stretches(observation["steps"], lambda r: r[0], lambda r: r[2])
    observation["world"] = stretches(observation["world"], lambda e: e[0], lambda e: e[1])
    observation["compensated"] = stretches(observation["compensated"], lambda s: s, lambda s: "")
    observation["completed"] = stretches(observation["completed"], lambda s: s, lambda s: "")
    return observation


def cell_id(row: Row, backend: str) -> str:
    """A correlation id base unique to one cell of the table (runs add ``#n``)."""
    return f"{row.name}[{backend}]{uuid.uuid4().hex[:8]}"


def _last_run(saga: sk.Saga, correlation_id: str) -> sk.Run | None:
    for run in reversed(list(saga.history)):
        if run.correlation_id == correlation_id:
            return run
    return None


@contextlib.contextmanager
def _armed(correlation_ids: list[str]) -> Iterator[None]:
    try:
        yield
    finally:
        for correlation_id in correlation_ids:
            world.disarm(correlation_id)


async def _drive(row: Row, base: str, backend: Any = None) -> list[Observation]:
    """Start the row's runs at once on ``backend`` (``None``: the local engine); observe each."""
    saga = SAGAS[row.name]
    loop = asyncio.get_running_loop()

    async def one(number: int) -> Observation:
        correlation_id = f"{base}#{number}"
        task = asyncio.current_task()
        assert task is not None
        raised: BaseException | None = None
        async with asyncio.timeout(None) as deadline:
            if row.cancel_at is not None and row.cancel_at.step in row.past_pivot():
                world.arm(correlation_id, row.cancel_at, _cancel_past_pivot(task, loop, backend))
            elif row.cancel_at is not None:
                world.arm(correlation_id, row.cancel_at, _cancel(task, loop))
            for point in row.timeout_at:
                world.arm(correlation_id, point, _expire(deadline, loop))
            try:
                await saga.run(dict(row.input), sk.WorkflowContext(correlation_id), faults=fresh_faults(row),
                               backend=backend)
            # saga.run re-raises a cancellation or an interruption once the run is rolled back:
            # kept as what the call raised (a KeyboardInterrupt must not reach the event loop).
            except BaseException as exc:
                raised = exc
        if deadline.expired() and isinstance(raised, asyncio.CancelledError):
            raised = TimeoutError()  # what ``async with asyncio.timeout(...)`` raises to its caller
        return observe(_last_run(saga, correlation_id), correlation_id, raised, row)

    with _armed([f"{base}#{n}" for n in range(row.runs)]):
        return list(await asyncio.gather(*(one(n) for n in range(row.runs))))


def _cancel(task: asyncio.Task[Any], loop: asyncio.AbstractEventLoop) -> Callable[[], bool]:
    """A hook that cancels the caller's task, as ``task.cancel()`` would; the call then waits for it."""

    def hook() -> bool:
        loop.call_soon_threadsafe(task.cancel)
        return True

    return hook


def _cancel_past_pivot(task: asyncio.Task[Any], loop: asyncio.AbstractEventLoop,
                       backend: Any) -> Callable[[], Awaitable[bool]]:
    """A hook that cancels the caller's task past the pivot, where the call in flight is shielded
    and goes on. On Temporal it goes on once the workflow's history holds the cancellation
    request: the workflow then learns of it before the step ends, while it runs forward."""

    async def hook() -> bool:
        loop.call_soon_threadsafe(task.cancel)
        if backend is not None:
            from temporalio import activity

            handle = backend.client.get_workflow_handle(activity.info().workflow_id)
            async for event in handle.fetch_history_events(wait_new_event=True):
                if event.HasField("workflow_execution_cancel_requested_event_attributes"):
                    break
        return False

    return hook


def _expire(deadline: asyncio.Timeout, loop: asyncio.AbstractEventLoop) -> Callable[[], bool]:
    """A hook that makes the caller's timeout expire now (once), then lets the call carry on."""

    def hook() -> bool:
        if deadline.when() is None:
            loop.call_soon_threadsafe(deadline.reschedule, loop.time())
        return False

    return hook


def _in_own_loop(coroutine_function: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    """Run a coroutine in a fresh event loop of its own (called on a worker thread).

    Returns its result, or what escaped the loop: a ``KeyboardInterrupt`` or ``SystemExit``
    that ends a task stops the event loop itself, past any ``except`` in the coroutine.
    """
    try:
        return asyncio.run(coroutine_function()), None
    except BaseException as escaped:
        return None, escaped


async def run_local(row: Row, base: str) -> list[Observation]:
    """The local engine: ``saga.run(...)`` in an event loop of its own, on a worker thread.

    Its own loop keeps the test's loop (and the Temporal worker on it) out of reach of a
    ``KeyboardInterrupt`` or ``SystemExit`` a row raises.
    """
    observations, escaped = await asyncio.to_thread(_in_own_loop, lambda: _drive(row, base))
    assert escaped is None, f"{escaped!r} escaped the local engine's event loop"
    return observations  # type: ignore[no-any-return]


async def run_temporal(row: Row, base: str, backend: Any) -> list[Observation]:
    """Temporal: ``saga.run(..., backend=TemporalBackend(...))`` with the session's worker."""
    return await asyncio.wait_for(_drive(row, base, backend), GUARD)


class _Started:
    """An observer whose ``settle()`` the Temporal backend first awaits once the workflow has started."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __call__(self, event: sk.Event) -> None:
        pass

    async def settle(self) -> None:
        self.event.set()


async def run_unreachable(row: Row, base: str, backend: Any) -> list[Observation]:
    """Temporal, a run no worker can execute: start it, then cancel it twice, as a caller would.

    The observation adds ``blocked``: whether the caller was still waiting after both
    cancellations (the workflow is then terminated by hand, so that the table goes on).
    """
    saga = SAGAS[row.name]
    correlation_id = f"{base}#0"
    started = _Started()
    task = asyncio.ensure_future(saga.run(dict(row.input), sk.WorkflowContext(correlation_id), backend=backend,
                                          observers=[started]))
    # Cancel once the caller holds the started workflow: the backend settles its observers right
    # after start_workflow returns (a cancellation during the start itself is another story).
    waiter = asyncio.ensure_future(started.event.wait())
    await asyncio.wait([task, waiter], timeout=GUARD, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    assert started.event.is_set(), f"the workflow never started: {task}"
    handle = backend.client.get_workflow_handle(f"{row.name}/{correlation_id}")
    blocked = False
    for grace in (1.0, 3.0):
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=grace)
        if done:
            break
    else:
        blocked = True
        await handle.terminate(reason="the conformance table: the caller could not cancel this run")
        await asyncio.wait([task], timeout=GUARD)
    raised = asyncio.CancelledError() if task.cancelled() else task.exception()
    observation = observe(_last_run(saga, correlation_id), correlation_id, raised, row)
    observation["blocked"] = blocked
    return [observation]


# -- Temporal backends ----------------------------------------------------------------------


def temporal_backend(client: Any, *, local: bool, regular: tuple[str, ...] = (), queue: str = QUEUE) -> Any:
    """The table's Temporal backend: regular activities, or local ones except the steps in ``regular``."""
    from sagakit.temporal import TemporalBackend

    local_activities: Any = (lambda member: member.name not in regular) if local and regular else local
    # A short heartbeat timeout: a cancellation reaches a running (regular) step within about a second.
    return TemporalBackend(client, task_queue=queue, poll_interval=0.05, heartbeat_timeout=1.0,
                           local_activities=local_activities, workflow_id=_workflow_id if queue != QUEUE else None)


def _workflow_id(request: Any) -> str:
    # Known in advance (no run id in it), so that the caller can find the workflow it cancels.
    return f"{request.saga.name}/{request.context.correlation_id}"


async def caller_with_key(temporal_address: str) -> Any:
    """A client that encrypts with a key of its own (not the wrong-key worker's)."""
    from temporalio.client import Client

    from sagakit.temporal import encrypted_data_converter

    return await Client.connect(temporal_address, namespace="default",
                                data_converter=encrypted_data_converter({"caller-key": os.urandom(32)}))


# -- the crash backend ----------------------------------------------------------------------


def child_environment() -> dict[str, str]:
    """The crash child's environment: the table importable as ``conformance``."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), environment.get("PYTHONPATH")]))
    return environment


_spare: subprocess.Popen[str] | None = None


def _start_child() -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "conformance.child"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_environment())


def _take_child() -> subprocess.Popen[str]:
    """A crash child that has done its imports (started for the previous crash cell), and a
    spare started for the next one: each crash cell then waits for no interpreter start."""
    global _spare
    child = _spare if _spare is not None and _spare.poll() is None else _start_child()
    _spare = _start_child()
    return child


def stop_spare_child() -> None:
    """End the spare crash child (at the end of the session)."""
    global _spare
    if _spare is not None:
        _spare.kill()
        _spare.communicate()
        _spare = None


async def run_crash(row: Row, base: str, directory: Path) -> list[Observation]:
    """Crash + recover: a child runs the row on a real journal and is SIGKILLed at the row's
    crash point; then ``sagakit.recover()`` finishes the runs, and each recovered run is observed.

    A row without a crash point runs to its end in the child: the observation is then the run
    as the journal recorded it, and ``recover()`` must find nothing to do.
    """
    journal = directory / f"{row.name}.db"
    child = _take_child()
    try:
        _, stderr = await asyncio.to_thread(child.communicate, json.dumps([row.name, str(journal), base]) + "\n",
                                            timeout=GUARD)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    crashed = row.crash_point is not None
    if crashed:
        assert child.returncode == -signal.SIGKILL, f"the child was not killed at {row.crash_point}:\n{stderr}"
    else:
        assert child.returncode == 0, f"the child failed:\n{stderr}"
    return await asyncio.to_thread(_observe_recovery, row, base, journal, crashed)


async def _recover(row: Row, correlation_ids: list[str], journal: Path) -> tuple[Any, BaseException | None]:
    """``recover()``, under the caller's timeout if the row sets one; returns it, or what it raised."""
    saga = SAGAS[row.name]
    loop = asyncio.get_running_loop()
    raised: BaseException | None = None
    recovery = None
    async with asyncio.timeout(None) as deadline:
        for correlation_id in correlation_ids:
            for point in row.timeout_at:
                world.arm(correlation_id, point, _expire(deadline, loop))
        try:
            recovery = await sk.recover(journal, [saga])
        except BaseException as exc:
            raised = exc
    if deadline.expired() and isinstance(raised, asyncio.CancelledError):
        raised = TimeoutError()
    return recovery, raised


def _observe_recovery(row: Row, base: str, journal: Path, crashed: bool) -> list[Observation]:
    """Recover the journal in an event loop of its own, then observe each run (on a worker thread)."""
    saga = SAGAS[row.name]
    correlation_ids = [f"{base}#{n}" for n in range(row.runs)]
    with _armed(correlation_ids):
        outcome, escaped = _in_own_loop(lambda: _recover(row, correlation_ids, journal))
    recovery, raised = outcome if outcome is not None else (None, escaped)
    if not crashed:
        assert recovery is not None and len(recovery) == 0, f"recover() found work in a finished journal: {recovery}"
        history = sk.RunHistory.from_journal(journal, sagas=[saga])
        return [observe(_last_run_in(history, cid), cid, None, row) for cid in correlation_ids]
    if recovery is not None:
        recovered = {run.correlation_id: run for run in recovery.runs}
    else:
        # recover() raised (an interruption, after every run was recorded): the runs it finished
        # are in the saga's history, as the engine left them; any other is in the journal.
        recovered = {run.correlation_id: run for run in sk.RunHistory.from_journal(journal, sagas=[saga])}
        recovered.update((run.correlation_id, run) for run in saga.history if run.correlation_id in correlation_ids)
    return [observe(recovered.get(cid), cid, raised, row, status="unfinished") for cid in correlation_ids]


def _last_run_in(history: sk.RunHistory, correlation_id: str) -> sk.Run | None:
    return next((run for run in history if run.correlation_id == correlation_id), None)


def wait_recorded(journal: Path, steps: tuple[str, ...], runs: int) -> None:
    """Block until the journal file holds the completions of ``steps`` (for every run)."""
    wanted = len(steps) * runs
    marks = ", ".join("?" for _ in steps)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        connection = sqlite3.connect(journal, timeout=5)
        try:
            count = connection.execute(
                f"SELECT count(DISTINCT run_id || '/' || step) FROM events WHERE kind = 'step_succeeded' "
                f"AND step IN ({marks})", steps).fetchone()[0]
        finally:
            connection.close()
        if count >= wanted:
            return
        time.sleep(0.005)  # the writer thread commits on its own: nothing to await here
    raise AssertionError(f"the journal never recorded {steps}")


# -- the explicit differences ---------------------------------------------------------------


def expected(backend: str, row: Row, references: list[Observation], observed: list[Observation]) -> list[Observation]:
    """What ``backend`` must observe of each run, given the local engine's observations of them.

    Temporal (regular and local activities) must give the very same run, but for one thing:
    an interruption raised by a step function on a worker (``KeyboardInterrupt``, ``SystemExit``,
    a cancellation it raised itself) is recorded exactly as locally (the run rolls back, the
    run's status and errors are the same), but it is not raised in the caller: the caller's
    process was not interrupted (the Backend protocol propagates the caller's own cancellation
    only). A cancellation by the caller propagates after the rollback, as locally.

    The crash backend differs in these ways, each because a crash is not a cancellation:

    * The journal records a run's progress, not its exceptions: ``recover()`` raises nothing
      for what happened before the crash; it raises the caller's timeout, or an interruption of
      a compensation it ran itself (as ``saga.run`` re-raises one after the rollback). It is
      one call for all the runs it recovers, so each run's observation shows what it raised.
    * A crash *before the rollback is on record* (in a step, or at the rollback's start) leaves
      the run without an error: recovery rolls it back as ``compensated`` (or
      ``compensation_failed``) with ``RunInterrupted`` as error and original error, where the
      engine, interrupted by a cancellation, says ``cancelled``; and the attempts in flight
      (the stage the crash caught, except completions the row waited for) have no record: the
      step's outcome is unknown. In the world, the call in flight got no ``cancelled``: it died.
    * A crash *during a compensation* (before it acted) leaves the rollback on record: the run
      must be exactly the engine's; the world shows one more call of that compensation, the
      one the crash cut short before recovery called it again.
    * With no crash point the child runs to its end: the observation is the run as the journal
      recorded it (the exception ``saga.run`` raised in the child is not the parent's).
    * Unless the record shows what started the rollback (``cause_on_record``: a parallel stage
      whose outputs cannot merge): then ``recover()`` fails the run as the engine did, with the
      same error, and the run is the engine's.
    * The journal keeps an error's type name and message, not its class: errors read back are
      ``RecordedError`` subclasses of the same name; the errors ``recover()`` makes itself
      (``RunInterrupted``, ``CompensationError``) are sagakit's own.

    And past the pivot (forward recovery, see :func:`_carried_forward`), because there a crash
    interrupts nothing that the engine would have stopped for:

    * A crash in a step after the pivot (right after it, in a retry, in a branch of a parallel
      stage) is carried forward by ``recover()``: the run must be the engine's, to the same
      end (``completed`` or ``stuck``), with the same attempts and data, never rolled back.
      The engine's run it is compared with went on uninterrupted, or through the caller's
      cancellation or timeout at that point, which does not stop a run past its pivot.
    * ``recover()`` raises only the caller's timeout (when the row sets one, it expires in the
      recovery too): what the engine's call raised is not the recovering process's.
    * The call the crash cut short left no record, so the recovered run makes it again, with
      the same attempt number: the world shows one more call of that step, and if the call had
      already acted (a crash ``after`` its effect, before its completion was recorded), one
      more effect that stands. This is the at-least-once of recovery; every action whose
      completion was recorded runs exactly once.
    * The step the crash caught gets its forward policy anew: its attempts are numbered on from
      the record, but the ones made before the crash do not count against it (a recovery may
      come long after, and ``RetryPolicy(deadline=...)`` counts from the call). Where the
      engine's run ended ``stuck`` at that step, the recovered run makes the policy's whole
      budget of attempts after the recorded ones.
    """
    targets = [_expected_run(backend, row, reference, seen) for reference, seen in zip(references, observed,
                                                                                     strict=True)]
    if backend == "crash" and row.crash_point is not None:
        raised = [target["raised"] for target in targets if target["raised"] is not None]
        for target in targets:
            target["raised"] = raised[0] if raised else None
    return targets


def _expected_run(backend: str, row: Row, reference: Observation, observed: Observation) -> Observation:
    target = dict(reference)
    target["run_id"] = observed["run_id"]
    if backend != "crash":
        if target["raised"] is not None and not (row.cancel_at or row.timeout_at):
            target["raised"] = None  # a worker's interruption is the run's, not the caller's
        return target
    point = row.crash_point
    if point is None:
        target["raised"] = None
        target["classes"] = tuple(READ_BACK if module is not None else None for module in reference["classes"])
        return target
    if isinstance(point, Point) and point.step in row.past_pivot():
        return _carried_forward(row, point, target)
    mid_rollback = isinstance(point, Point) and point.phase == "compensate"
    # What recover() itself raises: the caller's timeout, or an interrupted compensation it ran.
    rerun = _compensations_after(reference, point) if mid_rollback else [
        line for line in reference["steps"] if line[2] == "compensate"]
    interrupts = ["CancelledError" if line[4] == "cancelled" else line[5] for line in rerun
                  if line[4] == "cancelled" or line[5] in INTERRUPTS]
    target["raised"] = "TimeoutError" if row.timeout_at else (interrupts[0] if interrupts else None)
    if mid_rollback:
        assert isinstance(point, Point)
        # recover() raises a CompensationError of its own; the original error is read back.
        error_type = reference["error"][0] if reference["error"] else None
        target["classes"] = ("sagakit.errors" if error_type == "CompensationError" else READ_BACK,
                             READ_BACK if reference["original"] is not None else None)
        position = reference["world"].index((point.step, "compensate", 1, "call", _call_data(reference, point)))
        target["world"] = [*reference["world"][:position + 1], *reference["world"][position:]]
        return target
    if row.cause_on_record:
        return target  # recover() finds the engine's own reason in the record: the very same run
    in_flight = _in_flight(row, point)
    run_id_error = ("RunInterrupted", str(sk.RunInterrupted(observed["run_id"]))) if observed.get("run_id") else None
    target["original"] = run_id_error
    target["classes"] = ("sagakit.errors", "sagakit.errors")  # both made by recover() itself
    if reference["status"] == "compensation_failed":
        target["error"] = ("CompensationError", _with_original(reference["error"][1], run_id_error))
    else:
        target["status"] = "compensated"
        target["error"] = run_id_error
    target["steps"] = [line for line in reference["steps"]
                       if not (line[2] == "forward" and line[0] in in_flight and not (
                           line[4] == "succeeded" and line[0] in row.kill_once_recorded))]
    target["world"] = [e for e in reference["world"] if not (e[0] in in_flight and e[3] == "cancelled")]
    return target


def _carried_forward(row: Row, point: Point, target: Observation) -> Observation:
    """The crash backend's run after a crash past the pivot: the engine's run, carried forward.

    ``recover()`` raises only the caller's timeout; the errors it records are made by the
    recovering engine, so they are the engine's own. The call the crash cut short left no
    record, and the recovered run calls that step again with the same attempt number: the
    world shows one more call, and if the call had acted (``after``), one more effect.
    """
    target["raised"] = "TimeoutError" if row.timeout_at else None
    world_lines = target["world"]
    calls = [number for number, (step, phase, attempt, event, _) in enumerate(world_lines)
             if (step, phase, event) == (point.step, "forward", "call") and point.attempt in (None, attempt)]
    assert calls, f"the reference run never reached {point}"
    cut_short = world_lines[calls[0]]
    lines = [cut_short] + ([(point.step, "forward", cut_short[2], "did", None)] if point.moment == "after" else [])
    target["world"] = [*world_lines[:calls[0]], *lines, *world_lines[calls[0]:]]
    if target["status"] == "stuck" and target["failed_step"] == point.step:
        target = _fresh_budget(row, point, target)
    target = _scheduler_order(target, row)
    target["standing"] = _standing(target["world"])
    return target


def _fresh_budget(row: Row, point: Point, target: Observation) -> Observation:
    """A step stuck in the engine's run, caught by the crash in one of its attempts: after the
    recorded attempts, the recovered run makes the forward policy's whole budget again."""
    policy = SAGAS[row.name].get_step(point.step).forward.policy  # type: ignore[attr-defined]
    recorded = (point.attempt or 1) - 1
    total = recorded + policy.attempts
    steps = target["steps"]
    mine = [n for n, line in enumerate(steps) if line[0] == point.step and line[2] == "forward"]
    template = steps[mine[-1]]
    extra = [(*template[:3], attempt, *template[4:]) for attempt in range(len(mine) + 1, total + 1)]
    target["steps"] = [*steps[:mine[-1] + 1], *extra, *steps[mine[-1] + 1:]]
    world_lines = target["world"]
    calls = [n for n, line in enumerate(world_lines) if line[0] == point.step and line[1] == "forward"
             and line[3] == "call"]
    last = world_lines[calls[-1]]
    more = [(last[0], last[1], attempt, "call", last[4]) for attempt in range(last[2] + 1, total + 1)]
    target["world"] = [*world_lines[:calls[-1] + 1], *more, *world_lines[calls[-1] + 1:]]
    return target


def _call_data(reference: Observation, point: Point) -> Any:
    for step, phase, _attempt, event, data in reference["world"]:
        if (step, phase, event) == (point.step, "compensate", "call"):
            return data
    raise AssertionError(f"the reference run never called the compensation of {point.step}")


def _compensations_after(reference: Observation, point: Point) -> list[tuple[Any, ...]]:
    lines = [line for line in reference["steps"] if line[2] == "compensate"]
    start = next(i for i, line in enumerate(lines) if line[0] == point.step)
    return lines[start:]


def _in_flight(row: Row, point: Point | str) -> set[str]:
    """The steps of the stage a crash before the rollback caught (their attempts have no record)."""
    if isinstance(point, Point):
        stage = row.stage_of()[point.step]
    else:  # an event: the stage that was running when the rollback began
        stage = max(row.stage_of()[name] for name in row.kill_once_recorded) if row.kill_once_recorded else -1
    return {name for name, number in row.stage_of().items() if number == stage}


def _with_original(message: str, original: tuple[str, str] | None) -> str:
    """A CompensationError message as it reads when ``original`` started the rollback."""
    if original is None:
        return message
    started = f"; rollback was started by {original[0]}: {original[1]}"
    head, marker, pending = message.partition("; left uncompensated: ")
    return head + started + (marker + pending if marker else "")
