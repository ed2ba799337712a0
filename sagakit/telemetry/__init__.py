"""Observability: OpenTelemetry spans and metrics and structlog events, from the event stream.

Each sink is an observer in its own module, behind the one observer protocol:

* :class:`OtelTracing`: a ``<saga>.execute`` span per run, ``<step>.forward`` and
  ``<step>.compensate`` spans per attempt;
* :class:`OtelMetrics`: ``compensation_total``, ``compensation_failures_total``,
  ``compensation_duration_seconds`` (the seed's Prometheus names) and run and step metrics;
* :class:`StructlogEvents`: ``compensation_started``, ``compensation_completed``,
  ``compensation_failed`` and step and run events on the ``sagakit`` logger.

:func:`instrument` attaches all three to sagas in one call, or with no sagas to every saga
of the process, existing and future::

    telemetry = sagakit.telemetry.instrument(saga, tracer_provider=tp, meter_provider=mp)
    ...
    telemetry.detach()

Without any call, telemetry is automatic: every saga's runs make spans and metrics through
OpenTelemetry's global providers once an SDK provider is installed, and log events through
structlog once the application configured it; while nothing is set up, runs get no observer
at all. :func:`automatic` turns that off. :class:`SagakitInstrumentor` (the
``opentelemetry_instrumentor`` entry point) is the zero-code instrumentation's way in.

sagakit uses the OpenTelemetry API with the providers you pass, or the global ones; it never
installs a provider and never configures structlog. Every value that leaves through these
sinks goes through the saga's :class:`~sagakit.redaction.Redactor` first. For notebooks,
:class:`SpanCapture` keeps spans in memory and returns them as a DataFrame.
"""

from __future__ import annotations

from typing import Any

from sagakit.redaction import Redactor
from sagakit.telemetry._capture import SPAN_COLUMNS, SpanCapture, spans_frame
from sagakit.telemetry._common import DEFAULT_PAYLOAD_CHARS, Sink
from sagakit.telemetry._metrics import DURATION_BUCKETS, OtelMetrics
from sagakit.telemetry._structlog import StructlogEvents
from sagakit.telemetry._telemetry import Telemetry, automatic, instrument
from sagakit.telemetry._tracing import OtelTracing

__all__ = [
    "DEFAULT_PAYLOAD_CHARS",
    "DURATION_BUCKETS",
    "SPAN_COLUMNS",
    "OtelMetrics",
    "OtelTracing",
    "Redactor",
    "SagakitInstrumentor",
    "Sink",
    "SpanCapture",
    "StructlogEvents",
    "Telemetry",
    "automatic",
    "instrument",
    "spans_frame",
]


def __getattr__(name: str) -> Any:
    # The instrumentor needs opentelemetry-instrumentation (the otel extra): imported on use.
    if name == "SagakitInstrumentor":
        from sagakit.telemetry._instrumentor import SagakitInstrumentor

        return SagakitInstrumentor
    raise AttributeError(f"module 'sagakit.telemetry' has no attribute {name!r}")
