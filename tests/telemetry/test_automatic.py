"""Process-wide telemetry: automatic through the global providers, and instrument() for every saga.

OpenTelemetry's global providers can be set once per process, so the automatic cases run in
a child Python; the instrument() cases use providers of the test's own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from typing import Any

import pytest
from telemetry_support import failing, noop_step, require_sdk, span_tree

import sagakit
from sagakit.telemetry import OtelTracing, SpanCapture, Telemetry, automatic, instrument


def run_child(script: str) -> list[Any]:
    """Run ``script`` in a fresh Python; returns the JSON values it printed, one per line."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


_SEED_SCRIPT = """
    import asyncio, json, logging
    import structlog
    from structlog.testing import LogCapture
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from sagakit import CompensationPrimitive, Saga, WorkflowContext, step
    import sagakit
    import sagakit.telemetry

    async def reserve_inventory(data, context):
        return {**data, "reservation": "r-1"}

    async def release_inventory(data, context):
        return None

    async def charge_payment(data, context):
        raise ValueError("card declined")

    def workflow(log_compensations=True):
        return CompensationPrimitive(
            primitives=[(reserve_inventory, release_inventory), (charge_payment, None)],
            log_compensations=log_compensations, name="OrderWorkflow",
        )

    class Watching:  # a backend that keeps each request (the observers a run gets) and runs it here
        name = "local"

        def __init__(self):
            self.requests = []

        async def run(self, request):
            self.requests.append(request)
            return await sagakit.LocalBackend().run(request)

    # Defined before any provider exists: automatic telemetry is read when a run starts.
    early = workflow()
    watching = Watching()
    asyncio.run(early.run({}, backend=watching))
    print(json.dumps({"observers before set-up": len(watching.requests[0].observers)}))

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    logs = LogCapture()
    structlog.configure(processors=[logs])

    def spans():
        found = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time)
        ids = {s.context.span_id: s.name for s in found}
        exporter.clear()
        return [[s.name, ids.get(s.parent.span_id) if s.parent else None, s.status.status_code.name]
                for s in found]

    def log_events():
        found = [(e["event"], e.get("saga")) for e in logs.entries if e["event"].startswith(("compensation", "rollback"))]
        logs.entries.clear()
        return found

    async def main():
        for name, saga in (("seed", early), ("native", Saga("native", [step(reserve_inventory, compensate=release_inventory), step(charge_payment)]))):
            try:
                await saga.execute({"order": 1}, WorkflowContext(correlation_id="c-1"))
            except ValueError:
                pass
            print(json.dumps({name: {"spans": spans(), "logs": log_events()}}))
        quiet = workflow(log_compensations=False)
        await quiet.run({})
        print(json.dumps({"log_compensations=False": {"spans": len(spans()), "logs": log_events()}}))
        data = reader.get_metrics_data()
        names = sorted({m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics})
        print(json.dumps({"metrics": names}))
        sagakit.telemetry.automatic(False)
        await early.run({})
        print(json.dumps({"turned off": {"spans": len(spans()), "logs": log_events()}}))
        sagakit.telemetry.automatic(True)
        own = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(own))
        sagakit.telemetry.instrument(early, tracer_provider=provider, metrics=False, logs=False)
        await early.run({})
        print(json.dumps({"instrumented on its own": {"global": len(spans()), "own": len(own.get_finished_spans())}}))

    asyncio.run(main())
"""


class TestAutomatic:
    """The seed's promise: spans, metrics and compensation logs with no call at all."""

    def test_no_sdk_and_no_structlog_configuration_means_no_observer(self) -> None:
        """With only the API's defaults (this test process), a run is given no observer at all."""
        from opentelemetry import metrics, trace

        assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
        assert type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider"
        saga = sagakit.CompensationPrimitive(primitives=[noop_step("a").action])
        requests: list[sagakit.RunRequest] = []

        class Watching:
            name = "local"

            async def run(self, request: sagakit.RunRequest) -> sagakit.Run:
                requests.append(request)
                return await sagakit.LocalBackend().run(request)

        run = saga.run_sync({}, backend=Watching())
        assert run.status == "completed" and len(requests) == 1
        assert requests[0].observers == ()

    def test_compensation_primitive_and_saga_emit_through_global_providers(self) -> None:
        """After the app installs SDK providers and configures structlog, both saga forms trace,
        measure and log compensations; log_compensations=False, automatic(False) and an own
        instrument() each change exactly what they promise."""
        require_sdk()
        out = {key: value for line in run_child(_SEED_SCRIPT) for key, value in line.items()}
        assert out["observers before set-up"] == 0
        assert out["seed"]["spans"] == [
            ["OrderWorkflow.execute", None, "ERROR"],
            ["reserve_inventory.forward", "OrderWorkflow.execute", "UNSET"],
            ["charge_payment.forward", "OrderWorkflow.execute", "ERROR"],
            ["reserve_inventory.compensate", "OrderWorkflow.execute", "UNSET"],
        ]
        assert out["seed"]["logs"] == [
            ["rollback_started", "OrderWorkflow"],
            ["compensation_started", "OrderWorkflow"],
            ["compensation_completed", "OrderWorkflow"],
        ]
        assert [name for name, _, _ in out["native"]["spans"]] == [
            "native.execute", "reserve_inventory.forward", "charge_payment.forward", "reserve_inventory.compensate",
        ]
        assert out["native"]["logs"] == [
            ["rollback_started", "native"], ["compensation_started", "native"], ["compensation_completed", "native"],
        ]
        assert out["log_compensations=False"] == {"spans": 4, "logs": []}
        assert {"compensation", "compensation_failures", "compensation_duration", "sagakit.runs"} <= set(out["metrics"])
        assert out["turned off"] == {"spans": 0, "logs": []}
        assert out["instrumented on its own"] == {"global": 0, "own": 4}

    def test_automatic_takes_and_returns_a_bool(self) -> None:
        """automatic() reports the setting; anything but a bool is a TypeError naming it."""
        assert automatic() is True
        with pytest.raises(TypeError, match=r"telemetry\.automatic enabled: expected True, False or None, got str"):
            automatic("off")  # type: ignore[arg-type]


class TestInstrumentEverySaga:
    """instrument() with no sagas: every saga of the process, existing and future, until detached."""

    async def test_something_else_than_a_saga_is_named(self, tracer_provider: Any, span_exporter: Any) -> None:
        """instrument(5) names the argument and its position, and instruments nothing."""
        saga = sagakit.Saga("kept", [noop_step("a")])
        with pytest.raises(TypeError, match=r"instrument sagas\[1\]: expected a sagakit\.Saga, got int 5"):
            instrument(saga, 5, tracer_provider=tracer_provider)  # type: ignore[arg-type]
        await saga.run({})
        assert span_exporter.get_finished_spans() == ()

    async def test_existing_and_future_sagas_until_detached(self, tracer_provider: Any, span_exporter: Any) -> None:
        """A saga made before and one made after instrument() are traced; detach() stops both."""
        before = sagakit.Saga("before", [noop_step("a")])
        telemetry = instrument(tracer_provider=tracer_provider, metrics=False, logs=False)
        try:
            after = sagakit.Saga("after", [noop_step("b"), failing(ValueError("no"))])
            await before.run({})
            await after.run({})
            assert span_tree(span_exporter.get_finished_spans()) == [
                "before.execute completed UNSET",
                "  a.forward #1 succeeded UNSET",
                "after.execute compensated ERROR",
                "  b.forward #1 succeeded UNSET",
                "  fail.forward #1 failed ERROR",
                "  b.compensate #1 succeeded UNSET",
            ]
        finally:
            telemetry.detach()
        span_exporter.clear()
        await before.run({})
        assert span_exporter.get_finished_spans() == ()

    async def test_a_saga_with_its_own_sinks_is_not_traced_twice(self, tracer_provider: Any, span_exporter: Any) -> None:
        """A run already observed by a sagakit sink or a SpanCapture gets nothing more."""
        saga = sagakit.Saga("order", [noop_step("a")])
        own = OtelTracing(tracer_provider)
        leave = own.attach(saga)
        everywhere = instrument(tracer_provider=tracer_provider, metrics=False, logs=False)
        try:
            await saga.run({})
            assert [span.name for span in span_exporter.get_finished_spans()] == ["a.forward", "order.execute"]
            leave()  # the saga's own sink gone, a SpanCapture given for one run is the run's only sink
            span_exporter.clear()
            with SpanCapture() as capture:
                await saga.run({}, observers=[capture])
            assert list(capture.frame()["name"]) == ["order.execute", "a.forward"]
            assert span_exporter.get_finished_spans() == ()
        finally:
            everywhere.detach()

    async def test_each_saga_keeps_its_own_redactor_and_log_settings(self) -> None:
        """Process-wide sinks honour the running saga's redact= keys and log_compensations."""
        from structlog.testing import capture_logs

        async def leak(data: Any, context: Any) -> Any:
            raise ValueError(f"iban {data['iban']} refused")

        loud = sagakit.Saga("loud", [noop_step("a"), sagakit.step(leak, name="b")], redact=["iban"])
        quiet = sagakit.Saga("quiet", [noop_step("a"), sagakit.step(leak, name="b")], log_compensations=False)
        telemetry = instrument(traces=False, metrics=False)
        try:
            with capture_logs() as logs:
                await loud.run({"iban": "DE89370400440532013000"})
                await quiet.run({"iban": "DE89370400440532013000"})
        finally:
            telemetry.detach()
        by_saga = {(entry["saga"], entry["event"]) for entry in logs}
        assert ("loud", "compensation_completed") in by_saga
        assert ("quiet", "compensation_completed") not in by_saga
        assert ("quiet", "saga_finished") in by_saga
        loud_text = " ".join(str(entry.get("error")) for entry in logs if entry["saga"] == "loud")
        assert "DE89370400440532013000" not in loud_text and "refused" in loud_text

    async def test_a_raising_sink_does_not_silence_the_others(self, tracer_provider: Any, span_exporter: Any) -> None:
        """As with per-saga observers: the broken sink is dropped with a warning, spans still end."""

        class Broken:
            def __call__(self, event: Any) -> None:
                raise RuntimeError("broken sink")

        telemetry = instrument(tracer_provider=tracer_provider, metrics=False, logs=False)
        telemetry.sinks = (Broken(), *telemetry.sinks)  # type: ignore[assignment]
        telemetry.detach()
        telemetry.attach_process()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                run = await sagakit.Saga("order", [noop_step("a")]).run({})
        finally:
            telemetry.detach()
        assert run.status == "completed"
        assert any("broken sink" in str(w.message) for w in caught)
        assert [span.name for span in span_exporter.get_finished_spans()] == ["a.forward", "order.execute"]

    async def test_telemetry_detach_also_leaves_the_process(self, tracer_provider: Any, span_exporter: Any) -> None:
        """A Telemetry attached to the process is gone from it after detach()."""
        telemetry = Telemetry(tracer_provider=tracer_provider, metrics=False, logs=False)
        telemetry.attach_process()
        saga = sagakit.Saga("order", [noop_step("a")])
        await saga.run({})
        assert [span.name for span in span_exporter.get_finished_spans()] == ["a.forward", "order.execute"]
        telemetry.detach()
        span_exporter.clear()
        await saga.run({})
        assert span_exporter.get_finished_spans() == ()

