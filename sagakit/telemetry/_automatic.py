"""Telemetry for every saga of the process: automatic, or asked for with ``instrument()``.

``sagakit._process`` consults this module when a run starts (see there for when). A
process-wide :class:`~sagakit.telemetry.Telemetry` is shown each run through a
:class:`RunTelemetry`, which tells the sinks which saga the run belongs to (its
``redactor``, its ``log_compensations``) and isolates them from each other as the engine
isolates observers. A run that already has a sagakit sink (the saga was instrumented on its
own, or a sink was passed for the run) is left to it: no span is made twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace

from sagakit._recorder import deliver
from sagakit.events import Event, EventKind, Observer
from sagakit.redaction import Redactor
from sagakit.telemetry._capture import SpanCapture
from sagakit.telemetry._common import DEFAULT_PAYLOAD_CHARS, RUN_SAGA, Sink, SinkGroup
from sagakit.telemetry._metrics import OtelMetrics
from sagakit.telemetry._structlog import StructlogEvents
from sagakit.telemetry._tracing import OtelTracing

if TYPE_CHECKING:
    from sagakit.saga import Saga

__all__ = ["RunTelemetry", "build", "is_sagakit_telemetry", "make_sinks", "process_observers"]

_RUN_STARTED = EventKind.RUN_STARTED
_NO_TRACES = (trace.NoOpTracerProvider, trace.ProxyTracerProvider)
_NO_METRICS = (metrics.NoOpMeterProvider, metrics._internal._ProxyMeterProvider)


def make_sinks(
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    logger: Any = None,
    traces: bool = True,
    metrics: bool = True,
    logs: bool = True,
    capture_payloads: bool = False,
    max_payload_chars: int,
    redactor: Redactor | None = None,
) -> tuple[OtelTracing | None, OtelMetrics | None, StructlogEvents | None]:
    """The tracing, metrics and log sinks asked for (``None`` for one not asked for), as
    :class:`~sagakit.telemetry.Telemetry` documents its arguments."""
    tracing = (
        OtelTracing(
            tracer_provider, redactor=redactor, capture_payloads=capture_payloads, max_payload_chars=max_payload_chars
        )
        if traces
        else None
    )
    measures = OtelMetrics(meter_provider) if metrics else None
    events = (
        StructlogEvents(
            logger, redactor=redactor, capture_payloads=capture_payloads, max_payload_chars=max_payload_chars
        )
        if logs
        else None
    )
    return tracing, measures, events


class RunTelemetry(SinkGroup):
    """One run's view of a process-wide telemetry: its sinks, isolated, and its saga."""

    __slots__ = ("saga", "sinks")

    def __init__(self, sinks: tuple[Sink, ...], saga: Saga) -> None:
        self.sinks: list[Observer] = list(sinks)
        self.saga = saga

    def __call__(self, event: Event, /) -> None:
        if event.kind is _RUN_STARTED:
            token = RUN_SAGA.set(self.saga)
            try:
                deliver(self.sinks, event)
            finally:
                RUN_SAGA.reset(token)
        else:
            deliver(self.sinks, event)

    def trace_context(self, run_id: str) -> Any:
        """The OpenTelemetry context of the run's root span, or ``None`` (see ``OtelTracing``)."""
        for sink in self.sinks:
            find = getattr(sink, "trace_context", None)
            if find is not None:
                found = find(run_id)
                if found is not None:
                    return found
        return None

    def __repr__(self) -> str:
        return f"<RunTelemetry {self.saga.name!r}: {', '.join(type(s).__name__ for s in self.sinks)}>"


def is_sagakit_telemetry(observer: object) -> bool:
    """Whether ``observer`` makes sagakit's own spans, metrics or log events."""
    return isinstance(observer, Sink | SinkGroup | SpanCapture)


def process_observers(sinks: tuple[Sink, ...]) -> Callable[[Saga, tuple[Observer, ...]], tuple[Observer, ...]]:
    """The ``sagakit._process`` factory that shows every run to ``sinks``."""

    def observers(saga: Saga, given: tuple[Observer, ...]) -> tuple[Observer, ...]:
        for observer in given:
            if is_sagakit_telemetry(observer):
                return ()
        return (RunTelemetry(sinks, saga),)

    return observers


def build(
    tracer_provider: Any, meter_provider: Any, structlog_configured: bool
) -> Callable[[Saga, tuple[Observer, ...]], tuple[Observer, ...]] | None:
    """Automatic telemetry for these global back ends, or ``None`` when none listens.

    Spans go to an installed tracer provider, metrics to an installed meter provider (the
    API's no-op and proxy defaults do not count), log events to structlog once the
    application configured it (unconfigured, structlog prints every event to standard
    output: sagakit does not decide that for an application).
    """
    traces = tracer_provider is not None and not isinstance(tracer_provider, _NO_TRACES)
    measures = meter_provider is not None and not isinstance(meter_provider, _NO_METRICS)
    if not (traces or measures or structlog_configured):
        return None
    sinks = make_sinks(
        tracer_provider=tracer_provider if traces else None,
        meter_provider=meter_provider if measures else None,
        traces=traces,
        metrics=measures,
        logs=structlog_configured,
        max_payload_chars=DEFAULT_PAYLOAD_CHARS,
    )
    return process_observers(tuple(sink for sink in sinks if sink is not None))
