"""The hand-written Temporal saga that ``bench_temporal.py`` measures sagakit against.

What a competent user writes by hand: a workflow that runs ten activities in order and, when
one fails, runs the compensations of the completed ones in reverse. It sits in a module of its
own that imports only temporalio and the standard library, because Temporal's sandbox imports
a workflow's module again for every workflow run; its activities live elsewhere
(``bench_temporal.py``), as Temporal's guides advise.

It ends as sagakit's saga workflow ends: a completed saga returns its result; a saga that
rolled back fails the workflow with a non-retryable ``ApplicationError``, so that Temporal
shows the run as failed (``ending="fail"``, the default). ``ending="return"`` returns a
status instead, the other choice a user might make; the benchmark reports it for reference.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

__all__ = ["NAMES", "HandLocalSaga", "HandSaga"]

#: The saga's steps; activity ``hand.<name>`` runs one, ``hand.undo_<name>`` undoes it.
NAMES = tuple(f"step{i}" for i in range(1, 11))

_ONCE = RetryPolicy(maximum_attempts=1)


async def _saga(data: dict[str, Any], *, local: bool, ending: str) -> dict[str, Any]:
    if local:
        run, limit = workflow.execute_local_activity, timedelta(seconds=5)
    else:
        run, limit = workflow.execute_activity, timedelta(seconds=60)
    done: list[tuple[str, dict[str, Any]]] = []
    try:
        for name in NAMES:
            data = await run(f"hand.{name}", data, retry_policy=_ONCE, start_to_close_timeout=limit)
            done.append((name, data))
    except (ActivityError, ApplicationError) as failed:  # a local activity's failure comes bare
        cause = failed.cause if isinstance(failed, ActivityError) else failed
        for name, output in reversed(done):
            await run(f"hand.undo_{name}", output, retry_policy=_ONCE, start_to_close_timeout=limit)
        if ending == "fail":
            raise ApplicationError(f"saga compensated: {cause}", type="SagaCompensated", non_retryable=True) from None
        return {"status": "compensated", "error": str(cause)}
    return {"status": "completed", "result": data}


@workflow.defn(name="hand.saga")
class HandSaga:
    """The saga with every step a regular activity."""

    @workflow.run
    async def run(self, data: dict[str, Any], ending: str = "fail") -> dict[str, Any]:
        return await _saga(data, local=False, ending=ending)


@workflow.defn(name="hand.saga.local")
class HandLocalSaga:
    """The saga with every step a local activity."""

    @workflow.run
    async def run(self, data: dict[str, Any], ending: str = "fail") -> dict[str, Any]:
        return await _saga(data, local=True, ending=ending)
