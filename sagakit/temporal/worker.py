"""Workers: run the generic saga workflow and the sagas' activities.

``async with serve(client, [saga], task_queue="sagas"):`` runs a worker inside the current
event loop (a notebook kernel, a test, an application) until the block exits. For separate
worker processes, see ``python -m sagakit.temporal worker --help``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from sagakit.saga import Saga
from sagakit.temporal.activities import saga_activities
from sagakit.temporal.workflow import SagaWorkflow

__all__ = ["build_worker", "sandbox_runner", "serve"]


def build_worker(client: Client, sagas: Iterable[Saga], *, task_queue: str, **options: Any) -> Worker:
    """A Temporal worker for ``sagas`` (not yet running; ``async with`` it or ``await run()``).

    Args:
        client: a connected client.
        sagas: the sagas whose activities this worker runs; names must be unique.
        task_queue: the queue to poll (the backend's ``task_queue``).
        **options: passed on to ``temporalio.worker.Worker`` (concurrency limits, identity...).

    Raises:
        TypeError: an item of ``sagas`` is not a Saga, or ``task_queue`` is not a string.
        ValueError: two sagas share a name.
    """
    if not isinstance(task_queue, str) or not task_queue:
        raise TypeError(f"task_queue: expected a non-empty string, got {task_queue!r}")
    if isinstance(sagas, Saga):
        sagas = [sagas]
    activities = saga_activities(sagas)
    options.setdefault("workflow_runner", sandbox_runner())
    return Worker(client, task_queue=task_queue, workflows=[SagaWorkflow], activities=activities, **options)


def sandbox_runner() -> SandboxedWorkflowRunner:
    """Temporal's workflow sandbox, with sagakit passed through.

    The saga workflow imports only the standard library and temporalio, but importing it
    imports the ``sagakit`` package, whose engine the sandbox need not re-import for every
    workflow run. Pass this as ``workflow_runner=`` when you build your own ``Worker``
    with :class:`~sagakit.temporal.SagaWorkflow`.
    """
    # opentelemetry: the tracing interceptor's workflow side uses it, and its global state
    # (the context, the provider) must be the process's, not a per-run copy.
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("sagakit", "opentelemetry")
    )


@asynccontextmanager
async def serve(client: Client, sagas: Iterable[Saga], *, task_queue: str, **options: Any) -> AsyncIterator[Worker]:
    """Run a worker for ``sagas`` in this event loop until the block exits.

    Example::

        async with sagakit.temporal.serve(client, [order], task_queue="orders"):
            run = await order.run(data, backend=TemporalBackend(client, task_queue="orders"))
    """
    worker = build_worker(client, sagas, task_queue=task_queue, **options)
    async with worker:
        yield worker
