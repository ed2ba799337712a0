"""Fixtures for the telemetry tests: real OpenTelemetry SDK pipelines, never the global ones."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from telemetry_support import require_sdk


@pytest.fixture
def span_exporter() -> Iterator[object]:
    """An in-memory span exporter fed by :func:`tracer_provider`."""
    require_sdk()
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    yield exporter
    exporter.shutdown()


@pytest.fixture
def tracer_provider(span_exporter: object) -> Iterator[object]:
    """An SDK tracer provider of the test's own, exporting synchronously to memory."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))  # type: ignore[arg-type]
    yield provider
    provider.shutdown()


@pytest.fixture
def metric_reader() -> Iterator[object]:
    """An in-memory metric reader."""
    require_sdk()
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    yield InMemoryMetricReader()


@pytest.fixture
def meter_provider(metric_reader: object) -> Iterator[object]:
    """An SDK meter provider of the test's own, read by :func:`metric_reader`."""
    from opentelemetry.sdk.metrics import MeterProvider

    provider = MeterProvider(metric_readers=[metric_reader])  # type: ignore[list-item]
    yield provider
    provider.shutdown()
