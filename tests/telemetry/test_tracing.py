"""OtelTracing: exact span trees for every way a run can go, through a real SDK pipeline."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from telemetry_support import blocking, failing, flaky, noop_step, span_tree

import sagakit
from sagakit.telemetry import OtelTracing, instrument


def traced(saga: sagakit.Saga, tracer_provider: Any, **options: Any) -> OtelTracing:
    tracing = OtelTracing(tracer_provider, **options)
    tracing.attach(saga)
    return tracing


class TestSpanTrees:
    """One root span per run, one child per attempt, with the outcome of each."""

    async def test_success_is_a_root_with_one_forward_span_per_step(self, tracer_provider: Any, span_exporter: Any) -> None:
        """A completed run: order.execute over a, b, c forward spans, all UNSET, outcome completed."""
        saga = sagakit.Saga("order", [noop_step("a"), noop_step("b"), noop_step("c")])
        tracing = traced(saga, tracer_provider)
        await saga.run({"x": 1})
        assert span_tree(span_exporter.get_finished_spans()) == [
            "order.execute completed UNSET",
            "  a.forward #1 succeeded UNSET",
            "  b.forward #1 succeeded UNSET",
            "  c.forward #1 succeeded UNSET",
        ]
        assert tracing.open_runs == 0

    async def test_failure_rolls_back_in_reverse_under_the_same_root(self, tracer_provider: Any, span_exporter: Any) -> None:
        """The seed's tree: forward spans, the failed one ERROR, then compensations in reverse."""
        saga = sagakit.Saga(
            "order",
            [noop_step("a"), noop_step("b"), sagakit.step(failing(ValueError("no stock")), name="c"), noop_step("d")],
        )
        traced(saga, tracer_provider)
        run = await saga.run({})
        assert run.status == "compensated"
        assert span_tree(span_exporter.get_finished_spans()) == [
            "order.execute compensated ERROR",
            "  a.forward #1 succeeded UNSET",
            "  b.forward #1 succeeded UNSET",
            "  c.forward #1 failed ERROR",
            "  b.compensate #1 succeeded UNSET",
            "  a.compensate #1 succeeded UNSET",
        ]

    async def test_failed_span_records_the_exception_the_otel_way(self, tracer_provider: Any, span_exporter: Any) -> None:
        """status ERROR with the message, error.type, and an 'exception' event with type, message, stack."""
        saga = sagakit.Saga("order", [noop_step("a"), sagakit.step(failing(ValueError("no stock")), name="c")])
        traced(saga, tracer_provider)
        await saga.run({})
        spans = {span.name: span for span in span_exporter.get_finished_spans()}
        failed = spans["c.forward"]
        assert failed.status.description == "no stock"
        assert failed.attributes is not None and failed.attributes["error.type"] == "ValueError"
        (exception,) = [event for event in failed.events if event.name == "exception"]
        assert exception.attributes is not None
        assert exception.attributes["exception.type"] == "ValueError"
        assert exception.attributes["exception.message"] == "no stock"
        assert "Traceback" in str(exception.attributes["exception.stacktrace"])
        root = spans["order.execute"]
        assert [event.name for event in root.events] == ["rollback_started", "exception"]
        assert root.events[0].attributes == {"sagakit.step": "c", "error.type": "ValueError"}

    async def test_each_retry_is_its_own_span(self, tracer_provider: Any, span_exporter: Any) -> None:
        """A step that fails twice then succeeds shows three forward spans, attempts 1 to 3."""
        retry = sagakit.RetryPolicy(max_retries=3, initial_delay=0.0, jitter=0.0)
        saga = sagakit.Saga("pay", [noop_step("reserve"), sagakit.step(flaky(2), name="charge", retry=retry)])
        traced(saga, tracer_provider)
        run = await saga.run({})
        assert run.ok
        assert span_tree(span_exporter.get_finished_spans()) == [
            "pay.execute completed UNSET",
            "  reserve.forward #1 succeeded UNSET",
            "  charge.forward #1 failed ERROR",
            "  charge.forward #2 failed ERROR",
            "  charge.forward #3 succeeded UNSET",
        ]

    @pytest.mark.parametrize(
        ("keep_going", "expected"),
        [
            (
                False,
                [
                    "order.execute compensation_failed ERROR",
                    "  a.forward #1 succeeded UNSET",
                    "  b.forward #1 succeeded UNSET",
                    "  c.forward #1 failed ERROR",
                    "  b.compensate #1 failed ERROR",
                ],
            ),
            (
                True,
                [
                    "order.execute compensation_failed ERROR",
                    "  a.forward #1 succeeded UNSET",
                    "  b.forward #1 succeeded UNSET",
                    "  c.forward #1 failed ERROR",
                    "  b.compensate #1 failed ERROR",
                    "  a.compensate #1 succeeded UNSET",
                ],
            ),
        ],
        ids=["stop", "continue"],
    )
    async def test_failing_compensation_under_both_policies(
        self, keep_going: bool, expected: list[str], tracer_provider: Any, span_exporter: Any
    ) -> None:
        """Rollback stops at the failed compensation, or goes on to a; the root ends with CompensationError."""
        saga = sagakit.Saga(
            "order",
            [
                noop_step("a"),
                sagakit.step(lambda data, context: None, failing(RuntimeError("refund refused")), name="b"),
                sagakit.step(failing(ValueError("no stock")), name="c"),
            ],
            continue_on_compensation_failure=keep_going,
        )
        traced(saga, tracer_provider)
        run = await saga.run({})
        assert run.status == "compensation_failed"
        assert span_tree(span_exporter.get_finished_spans()) == expected
        root = next(span for span in span_exporter.get_finished_spans() if span.name == "order.execute")
        assert root.attributes is not None
        assert root.attributes["error.type"] == "sagakit.errors.CompensationError"

    async def test_parallel_branches_are_siblings_and_completed_ones_roll_back(
        self, tracer_provider: Any, span_exporter: Any
    ) -> None:
        """A failing branch: its sibling that finished is compensated, then the earlier stage."""
        saga = sagakit.Saga(
            "fanout",
            [
                noop_step("prepare"),
                sagakit.parallel(noop_step("left"), sagakit.step(failing(OSError("down")), name="right")),
            ],
        )
        traced(saga, tracer_provider)
        await saga.run({})
        assert span_tree(span_exporter.get_finished_spans()) == [
            "fanout.execute compensated ERROR",
            "  prepare.forward #1 succeeded UNSET",
            "  left.forward #1 succeeded UNSET",
            "  right.forward #1 failed ERROR",
            "  left.compensate #1 succeeded UNSET",
            "  prepare.compensate #1 succeeded UNSET",
        ]
        spans = {span.name: span for span in span_exporter.get_finished_spans()}
        assert spans["right.forward"].attributes is not None
        assert spans["right.forward"].attributes["sagakit.index"] == 2

    async def test_cancelled_run_ends_every_span(self, tracer_provider: Any, span_exporter: Any) -> None:
        """task.cancel() mid-step: the step span ends cancelled, rollback is traced, the root ends."""
        started = asyncio.Event()
        saga = sagakit.Saga("slow", [noop_step("a"), sagakit.step(blocking(started), name="wait")])
        tracing = traced(saga, tracer_provider)
        task = asyncio.create_task(saga.run({}))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert span_tree(span_exporter.get_finished_spans()) == [
            "slow.execute cancelled ERROR",
            "  a.forward #1 succeeded UNSET",
            "  wait.forward #1 cancelled UNSET",
            "  a.compensate #1 succeeded UNSET",
        ]
        assert tracing.open_runs == 0

    async def test_injected_faults_are_marked(self, tracer_provider: Any, span_exporter: Any) -> None:
        """A failure from the fault plan sets sagakit.injected on its span and on the root."""
        saga = sagakit.Saga("order", [noop_step("a"), noop_step("b")])
        traced(saga, tracer_provider)
        await saga.run({}, faults={"b": "fail_after"})
        spans = {span.name: span for span in span_exporter.get_finished_spans()}
        assert spans["b.forward"].attributes is not None and spans["b.forward"].attributes["sagakit.injected"] is True
        assert spans["order.execute"].attributes is not None
        assert spans["order.execute"].attributes["sagakit.injected"] is True
        assert "sagakit.injected" not in (spans["a.forward"].attributes or {})

    async def test_skipped_compensation_is_an_event_on_the_root(self, tracer_provider: Any, span_exporter: Any) -> None:
        """A step without a compensation adds no span, only a compensation_skipped event."""
        saga = sagakit.Saga("order", [noop_step("a", compensate=False), sagakit.step(failing(ValueError()), name="b")])
        traced(saga, tracer_provider)
        await saga.run({})
        root = next(span for span in span_exporter.get_finished_spans() if span.name == "order.execute")
        assert [event.name for event in root.events] == ["rollback_started", "compensation_skipped", "exception"]
        assert "a.compensate" not in {span.name for span in span_exporter.get_finished_spans()}


class TestSpanDetails:
    """Attributes, times, parents and payload capture."""

    async def test_attributes_name_the_run_and_the_step(self, tracer_provider: Any, span_exporter: Any) -> None:
        """The root names the run (saga, run id, correlation id, backend); children the attempt."""
        saga = sagakit.Saga("order", [noop_step("a"), noop_step("b")])
        traced(saga, tracer_provider)
        run = await saga.run({}, sagakit.WorkflowContext(correlation_id="signup-123"))
        spans = {span.name: span for span in span_exporter.get_finished_spans()}
        assert dict(spans["order.execute"].attributes or {}) == {
            "sagakit.saga": "order",
            "sagakit.run_id": run.run_id,
            "sagakit.correlation_id": "signup-123",
            "sagakit.backend": "local",
            "sagakit.outcome": "completed",
        }
        assert dict(spans["b.forward"].attributes or {}) == {
            "sagakit.step": "b",
            "sagakit.index": 1,
            "sagakit.phase": "forward",
            "sagakit.attempt": 1,
            "sagakit.outcome": "succeeded",
        }

    async def test_span_times_are_the_events_times(self, tracer_provider: Any, span_exporter: Any) -> None:
        """Start and end of every span are the run's event times, in nanoseconds."""
        saga = sagakit.Saga("order", [noop_step("a"), sagakit.step(failing(ValueError()), name="b")])
        traced(saga, tracer_provider)
        run = await saga.run({})
        spans = span_exporter.get_finished_spans()
        root = next(span for span in spans if span.name == "order.execute")
        assert run.events[0].kind == "run_started"
        assert root.start_time == int(run.events[0].at * 1e9)
        assert root.end_time == int(run.events[-1].at * 1e9)
        ends = [e for e in run.events if e.started_at is not None and e.step is not None and e.status != "skipped"]
        assert [(e.step, e.phase) for e in ends] == [("a", "forward"), ("b", "forward"), ("a", "compensate")]
        for event in ends:
            (span,) = [s for s in spans if s.name == f"{event.step}.{event.phase}"]
            assert span.start_time == int(event.started_at * 1e9)  # type: ignore[operator]
            assert span.end_time == int(event.at * 1e9)

    async def test_root_is_a_child_of_the_callers_current_span(self, tracer_provider: Any, span_exporter: Any) -> None:
        """A run inside the caller's span joins that trace."""
        saga = sagakit.Saga("order", [noop_step("a")])
        traced(saga, tracer_provider)
        tracer = tracer_provider.get_tracer("caller")
        with tracer.start_as_current_span("handle_request") as request:
            await saga.run({})
        root = next(span for span in span_exporter.get_finished_spans() if span.name == "order.execute")
        assert root.parent is not None
        assert root.parent.span_id == request.get_span_context().span_id
        assert root.context.trace_id == request.get_span_context().trace_id

    async def test_span_for_parents_a_steps_own_spans(self, tracer_provider: Any, span_exporter: Any) -> None:
        """A step can put its own spans under its attempt span with tracing.span_for(context)."""
        from opentelemetry import trace

        tracer = tracer_provider.get_tracer("app")
        tracing = OtelTracing(tracer_provider)

        async def charge(data: Any, context: sagakit.WorkflowContext) -> Any:
            with tracer.start_as_current_span("http POST /charges", context=trace.set_span_in_context(tracing.span_for(context))):
                return None

        saga = sagakit.Saga("order", [sagakit.step(charge)])
        tracing.attach(saga)
        await saga.run({})
        assert span_tree(span_exporter.get_finished_spans()) == [
            "order.execute completed UNSET",
            "  charge.forward #1 succeeded UNSET",
            "    http POST /charges None UNSET",
        ]

    async def test_payloads_stay_out_unless_asked(self, tracer_provider: Any, span_exporter: Any) -> None:
        """Without capture_payloads no span carries input or output."""
        saga = sagakit.Saga("order", [noop_step("a")])
        traced(saga, tracer_provider)
        await saga.run({"item": "widget"})
        for span in span_exporter.get_finished_spans():
            assert not {"sagakit.input", "sagakit.output", "sagakit.result"} & set(span.attributes or {})

    async def test_captured_payloads_are_redacted_and_capped(self, tracer_provider: Any, span_exporter: Any) -> None:
        """capture_payloads=True: JSON text with sensitive values masked, cut to max_payload_chars."""

        async def sign_up(data: Any, context: sagakit.WorkflowContext) -> Any:
            return {**data, "auth_id": "auth-1", "notes": "x" * 500}

        saga = sagakit.Saga("signup", [sagakit.step(sign_up)])
        traced(saga, tracer_provider, capture_payloads=True, max_payload_chars=120)
        await saga.run({"email": "ada@example.com", "password": "hunter2"})
        spans = {span.name: span for span in span_exporter.get_finished_spans()}
        step_attributes = spans["sign_up.forward"].attributes or {}
        assert step_attributes["sagakit.input"] == '{"email": "ada@example.com", "password": "[REDACTED]"}'
        output = str(step_attributes["sagakit.output"])
        assert len(output) == 120 and output.endswith("…")
        assert output.startswith('{"email": "ada@example.com", "password": "[REDACTED]", "auth_id": "auth-1"')
        assert "hunter2" not in str(spans["signup.execute"].attributes)

    async def test_sampled_out_runs_keep_no_state(self, span_exporter: Any) -> None:
        """With a sampler that drops everything, nothing is exported and no run state is kept."""
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

        provider = TracerProvider(sampler=ALWAYS_OFF)
        provider.add_span_processor(SimpleSpanProcessor(span_exporter))
        saga = sagakit.Saga("order", [noop_step("a")])
        tracing = traced(saga, provider)
        await saga.run({})
        assert span_exporter.get_finished_spans() == ()
        assert tracing.open_runs == 0

    async def test_many_runs_leave_no_state_behind(self, tracer_provider: Any, span_exporter: Any) -> None:
        """Per-run state is dropped at run_finished, whatever the outcome."""
        saga = sagakit.Saga("order", [noop_step("a"), noop_step("b")])
        tracing = traced(saga, tracer_provider)
        for faults in ({}, {"b": "fail"}, {"a": "fail_compensation", "b": "fail"}):
            await saga.run({}, faults=faults)
        assert tracing.open_runs == 0
        assert len(span_exporter.get_finished_spans()) == 3 + 4 + 4

    async def test_detach_stops_tracing(self, tracer_provider: Any, span_exporter: Any) -> None:
        """The function attach() returns removes the sink from the saga."""
        saga = sagakit.Saga("order", [noop_step("a")])
        detach = OtelTracing(tracer_provider).attach(saga)
        detach()
        await saga.run({})
        assert span_exporter.get_finished_spans() == ()
        assert saga.observers == []


class TestConfiguration:
    """Bad options fail with clear errors; nothing global is touched."""

    def test_rejects_a_non_provider(self) -> None:
        """tracer_provider must be a TracerProvider; the message names the option."""
        with pytest.raises(TypeError, match="OtelTracing tracer_provider"):
            OtelTracing("not a provider")  # type: ignore[arg-type]

    def test_rejects_a_bad_payload_limit(self) -> None:
        """max_payload_chars must be a positive int."""
        with pytest.raises(ValueError, match="OtelTracing max_payload_chars: expected an int >= 1, got 0"):
            OtelTracing(max_payload_chars=0)
        with pytest.raises(TypeError, match="OtelTracing max_payload_chars: expected an int >= 1, got str"):
            OtelTracing(max_payload_chars="80")  # type: ignore[arg-type]

    def test_attach_wants_a_saga(self) -> None:
        """attach() names what it expected."""
        with pytest.raises(TypeError, match=r"expected a sagakit\.Saga"):
            OtelTracing().attach(object())  # type: ignore[arg-type]

    def test_instrument_rejects_unknown_options(self) -> None:
        """A typo in an option is an error, not a silent no-op."""
        with pytest.raises(TypeError):
            instrument(tracer_providr=None)

    def test_no_global_provider_is_installed_and_a_later_one_is_used(self) -> None:
        """Importing and instrumenting installs nothing; a global provider set later receives spans."""
        script = textwrap.dedent(
            """
            import structlog
            import sagakit, sagakit.telemetry
            from opentelemetry import metrics, trace

            async def a(data, context):
                return None

            saga = sagakit.Saga("order", [sagakit.step(a)])
            telemetry = sagakit.telemetry.instrument(saga)
            saga.run_sync({})
            assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
            assert type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider"
            assert not structlog.is_configured()
            assert telemetry.tracing.open_runs == 0

            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
            exporter = InMemorySpanExporter()
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            trace.set_tracer_provider(provider)
            saga.run_sync({})
            print(sorted(span.name for span in exporter.get_finished_spans()))
            """
        )
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().splitlines()[-1] == "['a.forward', 'order.execute']"
