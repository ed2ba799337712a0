"""Telemetry overhead: automatic telemetry with nobody listening, and every sink on, next to a
hand-written saga making the same spans, measurements and log lines on the same back ends.

W1: a 10-step saga of no-op async steps that succeeds.
W2: the same with step 10 failing and steps 1-9 compensated.

"no telemetry" turns automatic telemetry off (``sagakit.telemetry.automatic(False)``);
"automatic, nobody listening" is the default with only the OpenTelemetry API's no-op
providers and structlog unconfigured (this process installs no global provider).
Target: at most 1.1 times "no telemetry".

"full telemetry" is ``sagakit.telemetry.instrument`` with an SDK ``TracerProvider`` exporting
to memory through a ``SimpleSpanProcessor`` (each span handed over as it ends) or a
``BatchSpanProcessor`` (spans queued and exported by the SDK's thread), an SDK
``MeterProvider`` read by an ``InMemoryMetricReader``, and a structlog logger of its own
(timestamp, level, JSON rendering) writing to a sink that drops the text: the whole cost of
producing each log line, without terminal I/O. "hand-written, same telemetry" is a
try/except saga that makes the same spans (names, attributes, exception events, status),
the same measurements and the same log lines directly on pipelines built the same way: the
SDK's and structlog's own cost. Target: full telemetry at most 1.25 times that. Rounds
interleave the variants so that machine noise hits them alike; medians are reported.

Where the time goes: the "sagakit alone" variants run the same sinks against back ends that
do nothing (a tracer whose spans record nothing, the API's no-op meter, a logger whose
methods return at once), counting the calls. Their cost over "no telemetry" is sagakit's own
share; the rest of each real variant is the OpenTelemetry SDK's or structlog's, printed per
span, per measurement and per log line. The hand-written saga is split the same way (its own
code against the same do-nothing back ends), so that each full run reads as own work plus
back ends, side by side. "hand-written + sagakit's sink work" has sagakit's three sinks (on
do-nothing back ends) handle one step event before each of the hand-written saga's log lines,
with no sagakit engine: how much that alone slows the same back-end calls.

Every timed variant starts from a collected heap: the garbage of the variant before it (its
spans, its runs) is not collected on its successor's clock.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import os
import time
import traceback
from typing import Any

import structlog
from _common import fail, hand_w2, hand_written, median, noop, per_call_us, report
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

import sagakit as sk
from sagakit._recorder import deliver
from sagakit.events import Event, EventKind
from sagakit.telemetry import DURATION_BUCKETS, Telemetry, automatic, instrument

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


class Interleaved:
    """A logger that, before each log line, has sagakit's three sinks (on do-nothing back ends)
    handle one step event: the hand-written saga then runs sagakit's per-event work between its
    own telemetry calls, with none of the engine, to show what that alone does to the calls."""

    def __init__(self, inner: Any, sinks: tuple[Any, ...] | None = None) -> None:
        self.inner = inner
        if sinks is None:
            sinks = Telemetry(tracer_provider=NullTracerProvider(), meter_provider=NullMeterProvider(),
                              logger=NullLogger()).sinks
            deliver(list(sinks), _event(EventKind.RUN_STARTED, data={}, info={"backend": "local"}))
        self.sinks = sinks
        data: dict[str, Any] = {}
        fields = {"step": "s1", "index": 1, "phase": "forward", "attempt": 1, "data": data}
        self.events = itertools.cycle([
            _event(EventKind.STEP_STARTED, **fields),
            _event(EventKind.STEP_SUCCEEDED, **fields, duration_ms=0.01, status="succeeded", started_at=1.0),
        ])

    def bind(self, **fields: Any) -> Interleaved:
        return Interleaved(self.inner.bind(**fields), self.sinks)

    def _log(self, level: str, event: str, **fields: Any) -> Any:
        step_event = next(self.events)
        for sink in self.sinks:
            sink(step_event)
        return getattr(self.inner, level)(event, **fields)

    def debug(self, event: str, **fields: Any) -> Any:
        return self._log("debug", event, **fields)

    def info(self, event: str, **fields: Any) -> Any:
        return self._log("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> Any:
        return self._log("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> Any:
        return self._log("error", event, **fields)


def _event(kind: EventKind, **fields: Any) -> Event:
    values: dict[str, Any] = {"run_id": "interleaved", "saga": "interleaved", "at": 1.0, "step": None, "index": -1,
                              "phase": None, "attempt": 0, "started_at": None, "duration_ms": None, "error": None,
                              "injected": False, "data": None, "status": None, "correlation_id": None, "info": None}
    values.update(fields)
    return Event(kind=kind, **values)


class Pipelines:
    """SDK pipelines of the benchmark's own (nothing global), cleared between rounds."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.providers: list[Any] = []

    def tracer_provider(self, sampler: Any = None, batch: bool = False) -> TracerProvider:
        provider = TracerProvider(sampler=sampler) if sampler is not None else TracerProvider()
        # A queue that never overflows: dropped spans would be cheaper than exported ones.
        processor = (BatchSpanProcessor(self.exporter, max_queue_size=1_000_000, max_export_batch_size=512)
                     if batch else SimpleSpanProcessor(self.exporter))
        provider.add_span_processor(processor)
        self.providers.append(provider)
        return provider

    def flush(self) -> None:
        for provider in self.providers:
            if isinstance(provider, TracerProvider):
                provider.force_flush()
        self.exporter.clear()

    def meter_provider(self) -> MeterProvider:
        provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        self.providers.append(provider)
        return provider

    def shutdown(self) -> None:
        for provider in self.providers:
            provider.shutdown()



class HandTelemetry:
    """A hand-written saga with sagakit's spans, measurements and log lines, made directly.

    The same names, attributes, span events, statuses, instruments, attribute sets, log
    events and fields as sagakit's sinks, with none of sagakit's machinery: no events, no
    observers, no redaction, no trace.
    """

    def __init__(self, name: str, tracer_provider: Any, meter_provider: Any, logger: Any = None) -> None:
        self.name = name
        self.tracer = tracer_provider.get_tracer("hand")
        meter = meter_provider.get_meter("hand")
        advisory = list(DURATION_BUCKETS)
        self.compensations = meter.create_counter("compensation", unit="{compensation}")
        self.compensation_duration = meter.create_histogram(
            "compensation_duration", unit="s", explicit_bucket_boundaries_advisory=advisory)
        self.runs = meter.create_counter("sagakit.runs", unit="{run}")
        self.run_duration = meter.create_histogram("sagakit.run.duration", unit="s",
                                                   explicit_bucket_boundaries_advisory=advisory)
        self.step_duration = meter.create_histogram("sagakit.step.duration", unit="s",
                                                    explicit_bucket_boundaries_advisory=advisory)
        self.logger = null_logger() if logger is None else logger

    def _fail(self, span: Any, error: BaseException) -> None:
        kind = type(error).__qualname__
        message = str(error)
        lines = ["Traceback (most recent call last):"]
        for frame, lineno in traceback.walk_tb(error.__traceback__):
            lines.append(f'  File "{frame.f_code.co_filename}", line {lineno}, in {frame.f_code.co_name}')
        lines.append(f"{kind}: {message}")
        span.add_event("exception", {"exception.type": kind, "exception.message": message,
                                     "exception.stacktrace": "\n".join(lines)})
        span.set_attribute("error.type", kind)
        span.set_status(trace.Status(trace.StatusCode.ERROR, message))

    async def run(self, steps: list[tuple[Any, Any]], data: Any = None, context: Any = None) -> None:
        name = self.name
        run_id = os.urandom(16).hex()
        log = self.logger.bind(saga=name, primitive=name, run_id=run_id, correlation_id=None)
        tracer = self.tracer
        begun = time.perf_counter()
        root = tracer.start_span(f"{name}.execute", attributes={
            "sagakit.saga": name, "sagakit.run_id": run_id, "sagakit.backend": "local"})
        parent = trace.set_span_in_context(root)
        log.debug("saga_started")
        done: list[tuple[int, str, Any, Any]] = []
        status = "completed"
        error: BaseException | None = None
        for index, (action, compensate) in enumerate(steps):
            step = f"s{index}"
            span = tracer.start_span(f"{step}.forward", context=parent, attributes={
                "sagakit.step": step, "sagakit.index": index, "sagakit.phase": "forward", "sagakit.attempt": 1})
            log.debug("step_started", step=step, index=index, phase="forward", attempt=1)
            started = time.perf_counter()
            try:
                data = await action(data, context)
            except Exception as exc:
                seconds = time.perf_counter() - started
                self._fail(span, exc)
                span.set_attribute("sagakit.outcome", "failed")
                span.end()
                self.step_duration.record(seconds, {"saga": name, "step": step, "phase": "forward", "status": "failed"})
                log.warning("step_failed", step=step, index=index, phase="forward", attempt=1,
                            duration_ms=round(seconds * 1000, 3), error_type=type(exc).__name__, error=str(exc))
                error, status = exc, "compensated"
                break
            seconds = time.perf_counter() - started
            span.set_attribute("sagakit.outcome", "succeeded")
            span.end()
            self.step_duration.record(seconds, {"saga": name, "step": step, "phase": "forward", "status": "succeeded"})
            log.debug("step_succeeded", step=step, index=index, phase="forward", attempt=1,
                      duration_ms=round(seconds * 1000, 3))
            done.append((index, step, compensate, data))
        if error is not None:
            failed = f"s{len(done)}"
            reason = f"{failed}_failed"
            root.add_event("rollback_started", {"sagakit.step": failed, "error.type": type(error).__qualname__})
            log.warning("rollback_started", failed_step=failed, compensation_reason=reason,
                        error_type=type(error).__name__, error=str(error))
            for index, step, compensate, output in reversed(done):
                span = tracer.start_span(f"{step}.compensate", context=parent, attributes={
                    "sagakit.step": step, "sagakit.index": index, "sagakit.phase": "compensate", "sagakit.attempt": 1})
                log.info("compensation_started", step=step, index=index, phase="compensate", attempt=1,
                         compensation_reason=reason)
                started = time.perf_counter()
                await compensate(output, context)
                seconds = time.perf_counter() - started
                span.set_attribute("sagakit.outcome", "succeeded")
                span.end()
                self.step_duration.record(seconds, {"saga": name, "step": step, "phase": "compensate",
                                                    "status": "succeeded"})
                self.compensations.add(1, {"primitive": name})
                self.compensation_duration.record(seconds, {"step": step})
                log.info("compensation_completed", step=step, index=index, phase="compensate", attempt=1,
                         compensation_reason=reason, duration_ms=round(seconds * 1000, 3))
        seconds = time.perf_counter() - begun
        self.runs.add(1, {"saga": name, "status": status})
        self.run_duration.record(seconds, {"saga": name, "status": status})
        if error is not None:
            self._fail(root, error)
            log.warning("saga_finished", status=status, duration_ms=round(seconds * 1000, 3),
                        error_type=type(error).__name__, error=str(error))
        else:
            log.info("saga_finished", status=status, duration_ms=round(seconds * 1000, 3))
        root.set_attribute("sagakit.outcome", status)
        root.end()


def variants(pipes: Pipelines) -> dict[str, tuple[sk.Saga, sk.Saga]]:
    """Name -> (W1, W2) sagas, each pair instrumented its own way."""
    found: dict[str, tuple[sk.Saga, sk.Saga]] = {}

    def add(name: str, **options: Any) -> None:
        pair = saga_pair(f"v{len(found)}")
        if options:
            instrument(*pair, **options)
        found[name] = pair

    add("no telemetry")
    add("automatic, nobody listening")
    # The engine's part of observing: with any observer it also builds start-of-attempt events.
    add("a do-nothing observer")
    for saga in found["a do-nothing observer"]:
        saga.observe(lambda event: None)
    add("+ spans", tracer_provider=pipes.tracer_provider(), metrics=False, logs=False)
    add("+ metrics", traces=False, meter_provider=pipes.meter_provider(), logs=False)
    add("+ structlog, every level", traces=False, metrics=False, logger=null_logger())
    add("full telemetry, simple", tracer_provider=pipes.tracer_provider(), meter_provider=pipes.meter_provider(),
        logger=null_logger())
    add("full telemetry, batch", tracer_provider=pipes.tracer_provider(batch=True),
        meter_provider=pipes.meter_provider(), logger=null_logger())
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
    telemetry_hands = {
        "hand-written, same telemetry, simple": HandTelemetry("hand", pipes.tracer_provider(), pipes.meter_provider()),
        "hand-written, same telemetry, batch": HandTelemetry(
            "hand", pipes.tracer_provider(batch=True), pipes.meter_provider()),
        "hand-written, do-nothing back ends": HandTelemetry("hand", NullTracerProvider(), NullMeterProvider(),
                                                            NullLogger()),
        "hand-written + sagakit's sink work, simple": HandTelemetry(
            "hand", pipes.tracer_provider(), pipes.meter_provider(), Interleaved(null_logger())),
        "hand-written + sagakit's sink work, do-nothing": HandTelemetry(
            "hand", NullTracerProvider(), NullMeterProvider(), Interleaved(NullLogger())),
    }

    # Sanity runs: the full pipeline and the hand-written one trace every step and rollback alike.
    automatic(False)
    await sagas["full telemetry, simple"][1].run({})
    sagakit_spans = sorted(s.name.split("_w2.")[-1] for s in pipes.exporter.get_finished_spans())
    pipes.exporter.clear()
    await telemetry_hands["hand-written, same telemetry, simple"].run(hand2, {})
    hand_spans = sorted(s.name.replace("hand.", "") for s in pipes.exporter.get_finished_spans())
    assert len(sagakit_spans) == 1 + STEPS + (STEPS - 1) and sagakit_spans == hand_spans, (sagakit_spans, hand_spans)
    automatic(True)
    assert sagas["automatic, nobody listening"][0]._request({}, None, None, (), None).observers == ()

    # How many spans, measurements and log lines one run of each workload makes.
    counts: dict[str, tuple[int, int, int]] = {}
    for index, workload in enumerate(("W1", "W2")):
        Calls.spans = Calls.measurements = Calls.log_lines = 0
        await sagas["full, sagakit alone"][index].run({})
        counts[workload] = (Calls.spans, Calls.measurements, Calls.log_lines)

    async def hand_instrumented(hand: HandTelemetry, steps: list[tuple[Any, Any]]) -> None:
        try:  # noqa: SIM105 - the baseline stays the plainest code
            await hand.run(steps, {})
        except ValueError:
            pass

    twins = {
        "full telemetry, simple": "hand-written, same telemetry, simple",
        "full telemetry, batch": "hand-written, same telemetry, batch",
        "full, sagakit alone": "hand-written, do-nothing back ends",
        "spans, sagakit alone": "hand-written + sagakit's sink work, simple",
        "metrics, sagakit alone": "hand-written + sagakit's sink work, do-nothing",
    }
    timed_order = [timed for name in sagas for timed in (name, twins.get(name)) if timed is not None]
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(ROUNDS):
        for index, workload in enumerate(("W1", "W2")):
            gc.collect()
            automatic(False)
            hand = (lambda: hand_written({}, hand1, None)) if workload == "W1" else (lambda: hand_w2(hand2))
            results.setdefault((workload, "hand-written"), []).append(await per_call_us(hand, PER_ROUND))
            steps = hand1 if workload == "W1" else hand2
            # Each hand-written twin runs right after the sagakit variant it is compared with,
            # so that a burst of load on the shared machine hits both of a pair alike.
            for name in timed_order:
                # Earlier variants' spans and runs would only make the collector's passes longer,
                # and their garbage is collected here, not during the next variant's timing.
                pipes.flush()
                for w1, w2 in sagas.values():
                    w1.history.clear()
                    w2.history.clear()
                gc.collect()
                automatic(name == "automatic, nobody listening")
                if name in telemetry_hands:
                    timed = await per_call_us(
                        lambda h=telemetry_hands[name], s=steps: hand_instrumented(h, s), PER_ROUND)
                else:
                    run = sagas[name][index].run
                    timed = await per_call_us(lambda r=run: r({}), PER_ROUND)
                results.setdefault((workload, name), []).append(timed)
            automatic(True)
    for workload in ("W1", "W2"):
        base = median(results[(workload, "no telemetry")])
        rows = []
        for name in ("hand-written", *telemetry_hands, *sagas):
            value = median(results[(workload, name)])
            rows.append((name if name != "no telemetry" else "no telemetry (baseline)", value,
                         None if name == "no telemetry" else value / base))
        report(f"{workload} per saga ({STEPS} steps, {ROUNDS} rounds x {PER_ROUND} runs): ratio to sagakit without"
               " telemetry", rows)
        idle = median(results[(workload, "automatic, nobody listening")]) / base
        print(f"  automatic, nobody listening / no telemetry = {idle:.3f}x"
              f" ({'within' if idle <= 1.1 else 'OVER'} the 1.1x target)")
        for flavour in ("simple", "batch"):
            full = median(results[(workload, f"full telemetry, {flavour}")])
            same = median(results[(workload, f"hand-written, same telemetry, {flavour}")])
            rounds = [f / h for f, h in zip(results[(workload, f"full telemetry, {flavour}")],
                                            results[(workload, f"hand-written, same telemetry, {flavour}")],
                                            strict=True)]
            print(f"  full telemetry / hand-written with the same telemetry, {flavour} span processor ="
                  f" {full:.1f} / {same:.1f} = {full / same:.2f}x ({'within' if full / same <= 1.25 else 'OVER'}"
                  f" the 1.25x target); per round {' '.join(f'{r:.2f}' for r in rounds)},"
                  f" median {median(rounds):.2f}x")
        # The same split for both: each side's own work (measured against do-nothing back ends)
        # and what the real back ends add to it. If the back ends cost sagakit what they cost
        # the hand-written saga, the ratio would be the "back ends alike" one.
        own = median(results[(workload, "full, sagakit alone")])
        hand_own = median(results[(workload, "hand-written, do-nothing back ends")])
        for flavour in ("simple", "batch"):
            full = median(results[(workload, f"full telemetry, {flavour}")])
            same = median(results[(workload, f"hand-written, same telemetry, {flavour}")])
            print(f"  per run, {flavour}: sagakit's own work {own:.1f} + back ends {full - own:.1f};"
                  f" hand-written's own work {hand_own:.1f} + back ends {same - hand_own:.1f};"
                  f" back ends alike: {(same - hand_own + own) / same:.2f}x")
        alone = median(results[(workload, "hand-written, same telemetry, simple")]) - hand_own
        busy = (median(results[(workload, "hand-written + sagakit's sink work, simple")])
                - median(results[(workload, "hand-written + sagakit's sink work, do-nothing")]))
        print(f"  back ends of the hand-written saga (simple): {alone:.1f} alone, {busy:.1f} with sagakit's sink work"
              f" run between its calls ({(busy / alone - 1) * 100:+.0f} %; sagakit's own runs cost them"
              f" {((median(results[(workload, 'full telemetry, simple')]) - own) / alone - 1) * 100:+.0f} %)")
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
