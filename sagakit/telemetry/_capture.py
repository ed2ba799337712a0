"""Spans as a DataFrame, for notebooks: an in-memory OpenTelemetry SDK pipeline of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sagakit.events import Event
from sagakit.telemetry._common import DEFAULT_PAYLOAD_CHARS
from sagakit.telemetry._tracing import OtelTracing

if TYPE_CHECKING:
    import pandas as pd
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from sagakit.redaction import Redactor
    from sagakit.runs import Run
    from sagakit.saga import Saga

__all__ = ["SPAN_COLUMNS", "SpanCapture", "spans_frame"]

#: The columns of :func:`spans_frame`, in order.
SPAN_COLUMNS: tuple[str, ...] = (
    "name",
    "parent",
    "start",
    "end",
    "duration_ms",
    "status",
    "attributes",
    "events",
    "trace_id",
    "span_id",
    "parent_id",
)


def _sdk() -> tuple[Any, Any, Any]:
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError as exc:
        raise ImportError(
            "capturing spans needs the OpenTelemetry SDK: pip install 'sagakit[otel]'"
        ) from exc
    return TracerProvider, SimpleSpanProcessor, InMemorySpanExporter


def spans_frame(spans: Iterable[ReadableSpan]) -> pd.DataFrame:
    """Finished OpenTelemetry SDK spans as a DataFrame, one row per span, ordered by start.

    Columns (:data:`SPAN_COLUMNS`): ``name``; ``parent`` (the parent span's name when the
    parent is among ``spans``, else ``None``); ``start`` and ``end`` (UTC timestamps);
    ``duration_ms``; ``status`` (``UNSET``, ``OK`` or ``ERROR``); ``attributes`` (a dict);
    ``events`` (the span events' names, such as ``exception``); ``trace_id``, ``span_id``
    and ``parent_id`` as hex strings, to tell apart spans with the same name.
    """
    import pandas as pd

    rows = sorted(spans, key=lambda span: (span.start_time or 0, span.end_time or 0))
    names = {span.context.span_id: span.name for span in rows if span.context is not None}
    parent_ids = [span.parent.span_id if span.parent is not None else None for span in rows]
    starts = [span.start_time for span in rows]
    ends = [span.end_time for span in rows]
    return pd.DataFrame(
        {
            "name": pd.array([span.name for span in rows], dtype="string"),
            "parent": pd.array([names.get(pid) if pid is not None else None for pid in parent_ids], dtype="string"),
            "start": pd.to_datetime(pd.array(starts, dtype="Int64"), unit="ns", utc=True),
            "end": pd.to_datetime(pd.array(ends, dtype="Int64"), unit="ns", utc=True),
            "duration_ms": pd.array(
                [(end - start) / 1e6 if start is not None and end is not None else None for start, end in zip(
                    starts, ends, strict=True
                )],
                dtype="Float64",
            ),
            "status": pd.array([span.status.status_code.name for span in rows], dtype="string"),
            "attributes": [dict(span.attributes or {}) for span in rows],
            "events": [[event.name for event in span.events] for span in rows],
            "trace_id": pd.array(
                [f"{span.context.trace_id:032x}" if span.context is not None else None for span in rows],
                dtype="string",
            ),
            "span_id": pd.array(
                [f"{span.context.span_id:016x}" if span.context is not None else None for span in rows],
                dtype="string",
            ),
            "parent_id": pd.array([f"{pid:016x}" if pid is not None else None for pid in parent_ids], dtype="string"),
        },
        columns=list(SPAN_COLUMNS),
    )


class SpanCapture:
    """Capture sagakit's spans in memory and read them as a DataFrame (needs ``sagakit[otel]``).

    The capture builds its own SDK ``TracerProvider`` with an in-memory exporter; the global
    provider is left alone unless ``set_global=True``. It is an observer, so use it for one
    run or attach it to sagas::

        capture = SpanCapture(saga)                  # every run of saga, until close()
        await saga.run(order)
        capture.frame()                              # name, parent, start, end, ...

        with SpanCapture() as capture:               # one run
            await saga.run(order, observers=[capture])
        capture.frame()

    Args:
        sagas: sagas to attach to (their ``redactor`` applies).
        set_global: also install the capture's provider as OpenTelemetry's global tracer
            provider, so that your own spans inside steps are captured too. OpenTelemetry
            allows this once per process.
        capture_payloads: record redacted payloads as span attributes (see ``OtelTracing``).
        max_payload_chars: the longest payload text kept.
        redactor: the redactor for runs of sagas not attached.

    Raises:
        ImportError: the OpenTelemetry SDK is missing (names the ``otel`` extra).
        RuntimeError: ``set_global=True`` but another global tracer provider is installed.
    """

    def __init__(
        self,
        *sagas: Saga,
        set_global: bool = False,
        capture_payloads: bool = False,
        max_payload_chars: int = DEFAULT_PAYLOAD_CHARS,
        redactor: Redactor | None = None,
    ) -> None:
        tracer_provider, simple_processor, in_memory_exporter = _sdk()
        self.exporter: InMemorySpanExporter = in_memory_exporter()
        self.provider: TracerProvider = tracer_provider()
        self.provider.add_span_processor(simple_processor(self.exporter))
        self.tracing = OtelTracing(
            self.provider, redactor=redactor, capture_payloads=capture_payloads, max_payload_chars=max_payload_chars
        )
        self._detach: list[Callable[[], None]] = []
        for saga in sagas:
            self.attach(saga)
        if set_global:
            _install_global(self.provider)

    def __call__(self, event: Event, /) -> None:
        self.tracing(event)

    def attach(self, saga: Saga) -> Callable[[], None]:
        """Capture every run of ``saga`` from now on; returns a function that stops it."""
        detach = self.tracing.attach(saga)
        self._detach.append(detach)
        return detach

    @property
    def spans(self) -> tuple[ReadableSpan, ...]:
        """The finished spans captured so far, in the order they ended."""
        return tuple(self.exporter.get_finished_spans())

    def frame(self, run: Run | str | None = None) -> pd.DataFrame:
        """The captured spans as a DataFrame (see :func:`spans_frame`), of one run if given."""
        spans: Iterable[ReadableSpan] = self.spans
        if run is not None:
            spans = _of_run(self.spans, run if isinstance(run, str) else run.run_id)
        return spans_frame(spans)

    def clear(self) -> None:
        """Forget the spans captured so far."""
        self.exporter.clear()

    def close(self) -> None:
        """Detach from every saga. The spans captured so far stay readable."""
        for detach in self._detach:
            detach()
        self._detach.clear()

    def __enter__(self) -> SpanCapture:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SpanCapture {len(self.exporter.get_finished_spans())} spans>"


def _of_run(spans: tuple[ReadableSpan, ...], run_id: str) -> list[ReadableSpan]:
    """The run's root span (it carries ``sagakit.run_id``) and everything under it."""
    kept = {
        span.context.span_id
        for span in spans
        if span.context is not None and (span.attributes or {}).get("sagakit.run_id") == run_id
    }
    grew = True
    while grew:
        grew = False
        for span in spans:
            context, parent = span.context, span.parent
            if context is not None and context.span_id not in kept and parent is not None and parent.span_id in kept:
                kept.add(context.span_id)
                grew = True
    return [span for span in spans if span.context is not None and span.context.span_id in kept]


def _install_global(provider: TracerProvider) -> None:
    from opentelemetry import trace

    current = trace.get_tracer_provider()
    if current is provider:
        return
    if not isinstance(current, trace.ProxyTracerProvider):
        raise RuntimeError(
            f"a global tracer provider is already installed ({type(current).__name__}); OpenTelemetry allows "
            "one per process, so SpanCapture(set_global=True) cannot replace it. Use SpanCapture() without "
            "set_global, or add an in-memory exporter to your provider and pass it to OtelTracing."
        )
    trace.set_tracer_provider(provider)
