"""One trace across Temporal: the caller's span, the workflow and each step, across two workers.

Three parties, each with its own client and its own SDK tracer provider (as three processes
would have): the caller, a worker that runs only the saga workflow, and a worker that runs
only the saga's activities, so the trace has to cross from one worker to the other.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from testsupport import require

import sagakit as sk

pytestmark = [pytest.mark.temporal, pytest.mark.asyncio(loop_scope="session")]


async def reserve(data: Any, context: Any) -> Any:
    return {**data, "reservation": "r-1"}


async def release(data: Any, context: Any) -> Any:
    return None


async def charge(data: Any, context: Any) -> Any:
    raise ValueError(f"card {data['card']} declined")


def traced_saga() -> sk.Saga:
    return sk.Saga(f"traced_{uuid.uuid4().hex[:8]}", [sk.step(reserve, compensate=release), sk.step(charge)])


def pipeline(service: str) -> tuple[Any, Any]:
    """An SDK tracer provider of one party, exporting to memory; (provider, exporter)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


class TestOneTrace:
    async def test_caller_workflow_and_steps_share_one_trace_across_two_workers(self, temporal_address: str) -> None:
        """order.execute (caller) > StartWorkflow > RunWorkflow, StartActivity (workflow worker) >
        RunActivity > <step>.forward|compensate (activity worker), one trace, local span names,
        failures recorded with the redacted message, and no step span made twice."""
        try:
            from opentelemetry.sdk.trace import TracerProvider  # noqa: F401
        except ImportError:
            require(False, "opentelemetry-sdk (pip install 'sagakit[otel]')")
        from temporalio.client import Client
        from temporalio.worker import Worker

        from sagakit.telemetry import instrument
        from sagakit.temporal import SagaWorkflow, TemporalBackend, tracing_interceptors
        from sagakit.temporal.activities import saga_activities
        from sagakit.temporal.worker import sandbox_runner

        saga = traced_saga()
        queue = f"tracing-{uuid.uuid4().hex[:8]}"
        parties = {name: pipeline(name) for name in ("caller", "workflow-worker", "activity-worker")}

        async def connect(party: str) -> Client:
            return await Client.connect(temporal_address, interceptors=tracing_interceptors(parties[party][0]))

        caller, flows, steps = await connect("caller"), await connect("workflow-worker"), await connect("activity-worker")
        telemetry = instrument(saga, tracer_provider=parties["caller"][0], metrics=False, logs=False)
        try:
            async with (
                Worker(flows, task_queue=queue, workflows=[SagaWorkflow], workflow_runner=sandbox_runner()),
                Worker(steps, task_queue=queue, activities=saga_activities([saga])),
            ):
                # Polling often makes sure the caller queries the running workflow: those queries
                # belong to the run's trace as well.
                backend = TemporalBackend(caller, task_queue=queue, poll_interval=0.001)
                run = await saga.run({"card": "4111111111111111"}, backend=backend)
        finally:
            telemetry.detach()
        assert run.status == "compensated"
        assert run.info["step_spans"] == "workers"

        spans = [(party, span) for party, (provider, exporter) in parties.items()
                 for span in (provider.force_flush() and exporter.get_finished_spans())]
        traces: dict[int, list[str]] = {}
        for party, span in spans:
            traces.setdefault(span.context.trace_id, []).append(f"{party}:{span.name}")
        assert len(traces) == 1, traces
        by_id = {span.context.span_id: span for _, span in spans}
        queries = [span for party, span in spans if party == "caller" and span.name == "QueryWorkflow:sagakit.events"]
        assert queries, "the caller never queried the running workflow"

        def parent(span: Any) -> str | None:
            found = by_id.get(span.parent.span_id) if span.parent is not None else None
            return found.name if found is not None else None

        where: Callable[[str], set[str]] = lambda name: {party for party, span in spans if span.name == name}  # noqa: E731
        activity = f"{saga.name}.reserve.forward"
        assert where(f"{saga.name}.execute") == {"caller"}
        assert where("reserve.forward") == where("charge.forward") == where("reserve.compensate") == {"activity-worker"}
        assert "workflow-worker" in where("RunWorkflow:sagakit.saga")
        assert parent(next(s for _, s in spans if s.name == "StartWorkflow:sagakit.saga")) == f"{saga.name}.execute"
        assert {parent(query) for query in queries} == {f"{saga.name}.execute"}
        assert parent(next(s for _, s in spans if s.name == "RunWorkflow:sagakit.saga")) == "StartWorkflow:sagakit.saga"
        # temporalio's interceptor parents the workflow's own spans to the context it received.
        assert parent(next(s for _, s in spans if s.name == f"StartActivity:{activity}")) == "StartWorkflow:sagakit.saga"
        assert parent(next(s for _, s in spans if s.name == f"RunActivity:{activity}")) == f"StartActivity:{activity}"
        step_spans = [s for _, s in spans if ":" not in s.name and s.name.endswith((".forward", ".compensate"))]
        assert sorted(s.name for s in step_spans) == ["charge.forward", "reserve.compensate", "reserve.forward"]
        for span in step_spans:
            assert parent(span) == f"RunActivity:{saga.name}.{span.name}"
            assert span.attributes["sagakit.run_id"] == run.run_id
        failed = next(s for s in step_spans if s.name == "charge.forward")
        assert failed.status.status_code.name == "ERROR"
        assert failed.attributes["error.type"] == "ValueError"
        assert "4111111111111111" not in (failed.status.description or "")
        assert "declined" in (failed.status.description or "")
