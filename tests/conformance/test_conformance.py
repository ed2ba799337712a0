"""One table of scenarios, run through every backend: each must give the same run.

**A row** (:class:`conformance.table.Row`) is a scenario written as data: a saga shape built
from a few named steps (plain ones, ``retry=``, ``timeout=``, ``compensate_on_failure``,
parallel stages, steps without a compensation, ``RetryPrimitive`` compensations, the seed's
tuple form, ``continue_on_compensation_failure``, and issue 22's step kinds: read-only, the
pivot, retriable steps and a parallel stage of them after it), what each step and
compensation does (fail, fail after acting, flake, raise ``SystemExit``/``KeyboardInterrupt``/
``CancelledError``, return a list, hang, wait for a sibling...), the input, the injected
faults, where a caller cancels the run or its timeout expires, where (and in which attempt)
the crash child is SIGKILLed, and what the local engine's run must be. The steps act on a
*world*: a ledger file every process appends to (:mod:`conformance.world`).

**The backends** (:mod:`conformance.drivers`), one cell each, with ids ``row-name[backend]``:

* ``local``: ``saga.run(...)`` on the local asyncio engine;
* ``crash``: a child process runs the row on a real SQLite journal and SIGKILLs itself at the
  row's crash point; the test process then calls ``sagakit.recover()`` and observes the
  recovered run (a row without a crash point: the run as the journal recorded it, and
  ``recover()`` must find nothing to do). The child for the next crash cell is started, and
  does its imports, while the current one runs;
* ``temporal`` and ``temporal-local``: the Temporal backend on the session's dev server, the
  steps as regular activities, and as local activities.

**The same run** means equal observations: status, failed step, error and original error (type
name, message, and where the class comes from: user classes survive Temporal), what the call
raised, the result, every step attempt and compensation in order with its attempt number,
status, error and ``injected`` flag, the completed and compensated steps, the run's counters,
the columns and dtypes of its frames, and the world: every call with the data it received,
every effect and undo, in order, and the effects left standing (so an action that ran twice
shows). The ``local`` cell checks the engine's run against the row's ``expect``; every other
cell must equal the engine's run of the row (made once per session). Branches of one parallel
stage run at once, so their lines are compared sorted within the stage.

**Explicit differences** (:func:`conformance.drivers.expected`). On Temporal: an interruption
raised by a step function on a worker (``KeyboardInterrupt``, ``SystemExit``, a cancellation it
raised itself) gives the same run, but is not raised in the caller, whose process was not
interrupted. On the crash backend, because a crash is not a cancellation: ``recover()`` raises
only what happens during the recovery; a crash before the rollback is on record ends
``compensated`` with ``RunInterrupted`` (where a cancelled engine run says ``cancelled``) and
leaves the attempt in flight without a record (its outcome is unknown), unless the record shows
what started the rollback (``cause_on_record``); a compensation cut short by the crash is
called once more; errors read back from the journal are ``RecordedError`` stand-ins of the same
name. Past the pivot (forward recovery): a crash there is carried forward by ``recover()`` to
the very run the engine made (a caller's cancellation or timeout there does not stop the
engine either), except that the call the crash cut short left no record and is made again
with the same attempt number: one more call in the world and, if it had acted, one more
effect (at least once). A row may give a backend its own expectation (``expect_on``) where the
backend cannot do what the engine does, and says why: on ``temporal-local``, a caller's
cancellation cannot reach a local activity in flight. Rows that run on some backends only say
why in the table.

Every issue 21 defect has rows here (``d1``...``d9``), and so do three defects the table found
besides (a rollback the engine did not journal before compensating, a worker's interruption
reported as a plain failure, a parallel branch's ``SystemExit`` stopping the event loop). A
cell that fails because of a known defect is marked ``xfail(strict=True)`` on exactly that
backend, with the reason, so that it flips once the defect is fixed. Three forward-recovery
defects are marked today (the reasons are in :mod:`conformance.table`): ``recover()`` runs
every branch of a parallel stage past the pivot again, those whose completion was recorded
too; it gives a retriable step's policy its whole budget again after a crash in its retries;
and a stuck run whose pending step raised ``CancelledError`` loses its original error when
rebuilt from its events (Temporal, the journal).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from conformance import drivers
from conformance.drivers import NOBODY, WRONG_KEY, caller_with_key, temporal_backend
from conformance.table import ROWS, TEMPORAL, Row

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _cells() -> list[Any]:
    cells = []
    for row in ROWS:
        for backend in row.backends:
            marks: list[Any] = []
            if backend in TEMPORAL:
                marks.append(pytest.mark.temporal)
            if backend in row.xfail:
                marks.append(pytest.mark.xfail(strict=True, reason=row.xfail[backend]))
            cells.append(pytest.param(row, backend, id=f"{row.name}[{backend}]", marks=marks))
    return cells


@pytest.fixture
def temporal(row: Row, backend: str, request: pytest.FixtureRequest) -> Any:
    """What a Temporal cell needs: the session's client, with the worker its row needs running."""
    if backend not in TEMPORAL:
        return None
    if row.temporal_queue == "wrong-key":
        request.getfixturevalue("wrong_key_worker")
    elif row.temporal_queue is None:
        request.getfixturevalue("table_worker")
    return request.getfixturevalue("client")


#: The local engine's run of each row, by row name: made once (by the row's ``local`` cell, or
#: by the first cell that needs it) and compared with every other backend's.
_ENGINE_RUNS: dict[str, list[Any]] = {}


async def _engine_runs(row: Row) -> list[Any]:
    if row.name not in _ENGINE_RUNS:
        _ENGINE_RUNS[row.name] = await drivers.run_local(row, drivers.cell_id(row, "reference"))
    return copy.deepcopy(_ENGINE_RUNS[row.name])


async def _observe(row: Row, backend: str, temporal: Any, tmp_path: Path) -> list[Any]:
    base = drivers.cell_id(row, backend)
    if backend == "local":
        observations = await drivers.run_local(row, base)
        _ENGINE_RUNS[row.name] = copy.deepcopy(observations)
        return observations
    if backend == "crash":
        return await drivers.run_crash(row, base, tmp_path)
    if row.temporal_queue == "nobody":
        return await drivers.run_unreachable(row, base, temporal_backend(temporal, local=False, queue=NOBODY))
    if row.temporal_queue == "wrong-key":
        caller = await caller_with_key(temporal.service_client.config.target_host)
        return await drivers.run_unreachable(row, base, temporal_backend(caller, local=False, queue=WRONG_KEY))
    local = backend == "temporal-local"
    return await drivers.run_temporal(row, base, temporal_backend(temporal, local=local, regular=row.regular))


def _check_expect(row: Row, observations: list[Any], backend: str = "local") -> None:
    for number, seen in enumerate(observations):
        want = row.expected(number, backend)  # type: ignore[arg-type]
        error_type = seen["error"][0] if seen["error"] else None
        assert (seen["status"], seen["failed_step"], error_type, tuple(seen["compensated"]),
                tuple(seen["standing"]), seen["raised"]) == (
            want.status, want.failed_step, want.error, want.compensated, want.standing, want.raised), (
            f"run {number}")
        if want.message_has is not None:
            assert want.message_has in seen["error"][1]


@pytest.mark.parametrize(("row", "backend"), _cells())
async def test_every_backend_gives_the_same_run(row: Row, backend: str, temporal: Any, tmp_path: Path) -> None:
    """The row's run on this backend is the local engine's run (up to the documented differences)."""
    observations = await _observe(row, backend, temporal, tmp_path)
    assert len(observations) == row.runs
    if row.temporal_queue is not None:
        assert not observations[0]["blocked"], "the caller stayed blocked through two task.cancel()s"
        assert observations[0]["world"] == [] and observations[0]["steps"] == []
    if backend == "local" or row.temporal_queue is not None or "local" in row.xfail or backend in row.expect_on:
        # No local run to compare with: the engine's own cell, a run only Temporal can have, a
        # row on which the engine is known wrong (then the row's expect stands in for its run),
        # or a backend that cannot do what the engine does (its own expect, explained on the row).
        _check_expect(row, observations, backend)
        return
    references = await _engine_runs(row)
    for number, (seen, want) in enumerate(zip(observations, drivers.expected(backend, row, references, observations),
                                               strict=True)):
        assert seen == want, f"run {number}"
