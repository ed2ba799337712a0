"""``SagakitInstrumentor``: sagakit under OpenTelemetry's zero-code instrumentation.

Registered under the ``opentelemetry_instrumentor`` entry point, so that
``opentelemetry-instrument python app.py`` instruments every saga of ``app.py``. In code::

    SagakitInstrumentor().instrument(tracer_provider=tp, meter_provider=mp)
    ...
    SagakitInstrumentor().uninstrument()

Needs ``opentelemetry-instrumentation`` (``pip install 'sagakit[otel]'``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import structlog
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from sagakit.telemetry._telemetry import Telemetry, instrument

__all__ = ["SagakitInstrumentor"]

_OPTIONS = ("tracer_provider", "meter_provider", "logger", "traces", "metrics", "logs", "capture_payloads",
            "max_payload_chars", "redactor")


class SagakitInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Instruments every saga of the process (``instrument()`` with no sagas) until undone.

    ``instrument(**options)`` takes :class:`~sagakit.telemetry.Telemetry`'s options
    (``tracer_provider``, ``meter_provider``, ``logger``, ``capture_payloads`` ...) and
    ignores others, as OpenTelemetry's distro passes its own. Log events are written when
    ``logs=True`` is passed or the application configured structlog (unconfigured,
    structlog would print every event to standard output). Like every instrumentor it is
    one object per process, and instrumenting twice does nothing.
    """

    _telemetry: Telemetry | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        """sagakit instruments itself: nothing else has to be installed."""
        return ()

    def _instrument(self, **options: Any) -> None:
        chosen = {key: value for key, value in options.items() if key in _OPTIONS}
        chosen.setdefault("logs", structlog.is_configured())
        self._telemetry = instrument(**chosen)

    def _uninstrument(self, **options: Any) -> None:
        if self._telemetry is not None:
            self._telemetry.detach()
            self._telemetry = None

    @property
    def telemetry(self) -> Telemetry | None:
        """The process-wide :class:`~sagakit.telemetry.Telemetry` while instrumented."""
        return self._telemetry
