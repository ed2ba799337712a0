"""Telemetry overhead: every sink on, next to sagakit without telemetry and a hand-written saga.

W1: a 10-step saga of no-op async steps that succeeds.
W2: the same with step 10 failing and steps 1-9 compensated.

"full telemetry" is ``sagakit.telemetry.instrument`` with an SDK ``TracerProvider`` exporting
to memory through a ``SimpleSpanProcessor`` (each span handed over as it ends), an SDK
``MeterProvider`` read by an ``InMemoryMetricReader``, and a structlog logger of its own
(timestamp, level, JSON rendering) writing to a sink that drops the text: the whole cost of
producing each log line, without terminal I/O. Nothing global is configured. Rounds
interleave the variants so that machine noise hits them alike; medians are reported.
Target: full telemetry at most 4 times sagakit without it.

Where the time goes: the "sagakit alone" variants run the same sinks against back ends that
do nothing (a tracer whose spans record nothing, the API's no-op meter, a logger whose
methods return at once), counting the calls. Their cost over "no telemetry" is sagakit's own
share; the rest of each real variant is the OpenTelemetry SDK's or structlog's, printed per
span, per measurement and per log line.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import structlog
from _common import fail, hand_w2, hand_written, median, noop, per_call_us, report
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

import sagakit as sk
from sagakit.telemetry import instrument

ROUNDS = 7
PER_ROUND = 300
STEPS = 10


def saga_pair(prefix: str) -> tuple[sk.Saga, sk.Saga]:
    w1 = sk.Saga(f"{prefix}_w1", [sk.step(noop, noop, name=f"s{i}") for i in range(STEPS)])
    w2 = sk.Saga(
        f"{prefix}_w2", [sk.step(noop, noop, name=f"s{i}") for i in range(STEPS - 1)] + [sk.step(fail, name="s9")]
    )
    return w1, w2


def null_logger(level: int = logging.DEBUG) -> Any:
    """A structlog logger that does all the work of a JSON log line, then drops the text."""
    return structlog.wrap_logger(
        structlog.ReturnLogger(),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
    ).bind()


class Calls:
    """How many calls the do-nothing back ends received (per kind), to price each SDK call."""

    spans = 0
    measurements = 0
    log_lines = 0


class NullSpan(trace.NonRecordingSpan):
    """A span that claims to record (so that the sink builds its whole tree) and keeps nothing."""

    def is_recording(self) -> bool:
        return True


_NULL_SPAN = NullSpan(trace.INVALID_SPAN_CONTEXT)


class NullTracer(trace.NoOpTracer):
    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        Calls.spans += 1
        return _NULL_SPAN


class NullTracerProvider(trace.NoOpTracerProvider):
    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return NullTracer()


class NullInstrument:
    def add(self, *args: Any, **kwargs: Any) -> None:
        Calls.measurements += 1

    record = add


class NullMeter(metrics.NoOpMeter):
    def create_counter(self, *args: Any, **kwargs: Any) -> Any:
        return NullInstrument()

    create_histogram = create_counter


class NullMeterProvider(metrics.NoOpMeterProvider):
    def get_meter(self, *args: Any, **kwargs: Any) -> metrics.Meter:
        return NullMeter("null")


class NullLogger:
    """A logger that takes every call and does nothing: what is left is sagakit's own work."""

    def bind(self, **fields: Any) -> NullLogger:
        return self

    def debug(self, event: str, **fields: Any) -> None:
        Calls.log_lines += 1

    info = warning = error = debug


class Pipelines:
    """SDK pipelines of the benchmark's own (nothing global), cleared between rounds."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.providers: list[Any] = []

    def tracer_provider(self, sampler: Any = None) -> TracerProvider:
        provider = TracerProvider(sampler=sampler) if sampler is not None else TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.providers.append(provider)
        return provider

    def meter_provider(self) -> MeterProvider:
        provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        self.providers.append(provider)
        return provider

    def shutdown(self) -> None:
        for provider in self.providers:
            provider.shutdown()


def variants(pipes: Pipelines) -> dict[str, tuple[sk.Saga, sk.Saga]]:
    """Name -> (W1, W2) sagas, each pair instrumented its own way."""
    found: dict[str, tuple[sk.Saga, sk.Saga]] = {}

    def add(name: str, **options: Any) -> None:
        pair = saga_pair(f"v{len(found)}")
        if options:
            instrument(*pair, **options)
        found[name] = pair

    add("no telemetry")
    # The engine's part of observing: with any observer it also builds start-of-attempt events.
    add("a do-nothing observer")
    for saga in found["a do-nothing observer"]:
        saga.observe(lambda event: None)
    add("+ spans", tracer_provider=pipes.tracer_provider(), metrics=False, logs=False)
    add("+ metrics", traces=False, meter_provider=pipes.meter_provider(), logs=False)
    add("+ structlog, every level", traces=False, metrics=False, logger=null_logger())
    add("full telemetry", tracer_provider=pipes.tracer_provider(), meter_provider=pipes.meter_provider(),
        logger=null_logger())
    add("spans, sagakit alone", tracer_provider=NullTracerProvider(), metrics=False, logs=False)
    add("metrics, sagakit alone", traces=False, meter_provider=NullMeterProvider(), logs=False)
    add("structlog, sagakit alone", traces=False, metrics=False, logger=NullLogger())
    add("full, sagakit alone", tracer_provider=NullTracerProvider(), meter_provider=NullMeterProvider(),
        logger=NullLogger())
    add("full, logs >= INFO, spans sampled 1/10",
        tracer_provider=pipes.tracer_provider(ParentBased(TraceIdRatioBased(0.1))),
        meter_provider=pipes.meter_provider(), logger=null_logger(logging.INFO))
    return found


async def timings() -> None:
    pipes = Pipelines()
    sagas = variants(pipes)
    hand1 = [(noop, noop)] * STEPS
    hand2 = [(noop, noop)] * (STEPS - 1) + [(fail, None)]

    # A sanity run: the full pipeline traces every step and rollback.
    await sagas["full telemetry"][1].run({})
    assert len(pipes.exporter.get_finished_spans()) == 1 + STEPS + (STEPS - 1)

    # How many spans, measurements and log lines one run of each workload makes.
    counts: dict[str, tuple[int, int, int]] = {}
    for index, workload in enumerate(("W1", "W2")):
        Calls.spans = Calls.measurements = Calls.log_lines = 0
        await sagas["full, sagakit alone"][index].run({})
        counts[workload] = (Calls.spans, Calls.measurements, Calls.log_lines)

    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(ROUNDS):
        for index, workload in enumerate(("W1", "W2")):
            pipes.exporter.clear()
            gc.collect()
            hand = (lambda: hand_written({}, hand1, None)) if workload == "W1" else (lambda: hand_w2(hand2))
            results.setdefault((workload, "hand-written"), []).append(await per_call_us(hand, PER_ROUND))
            for name, pair in sagas.items():
                # Earlier variants' spans and runs would only make the collector's passes longer.
                pipes.exporter.clear()
                for w1, w2 in sagas.values():
                    w1.history.clear()
                    w2.history.clear()
                run = pair[index].run
                results.setdefault((workload, name), []).append(await per_call_us(lambda r=run: r({}), PER_ROUND))
    for workload in ("W1", "W2"):
        base = median(results[(workload, "no telemetry")])
        rows = []
        for name in ("hand-written", *sagas):
            value = median(results[(workload, name)])
            rows.append((name if name != "no telemetry" else "no telemetry (baseline)", value,
                         None if name == "no telemetry" else value / base))
        report(f"{workload} per saga ({STEPS} steps, {ROUNDS} rounds x {PER_ROUND} runs): ratio to sagakit without"
               " telemetry", rows)
        full = median(results[(workload, "full telemetry")]) / base
        print(f"  full telemetry / no telemetry = {full:.2f}x ({'within' if full <= 4.0 else 'OVER'} the 4x target)")
        engine = median(results[(workload, "a do-nothing observer")]) - base
        print(f"  where the time goes ({workload}, µs/saga over no telemetry; the engine's part of any observer"
              f" is {engine:.1f}):")
        for (real, alone, what), calls in zip(
            (
                ("+ spans", "spans, sagakit alone", "span"),
                ("+ metrics", "metrics, sagakit alone", "measurement"),
                ("+ structlog, every level", "structlog, sagakit alone", "log line"),
            ),
            counts[workload],
            strict=True,
        ):
            own = median(results[(workload, alone)]) - base
            backend = median(results[(workload, real)]) - median(results[(workload, alone)])
            print(f"    {real:<26} sagakit {own:7.1f}   SDK/structlog {backend:7.1f}"
                  f" = {calls} x {backend / calls:5.1f} µs per {what}")
    pipes.shutdown()


if __name__ == "__main__":
    asyncio.run(timings())
