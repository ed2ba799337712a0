"""``Telemetry`` (the three sinks together), ``instrument()`` and ``automatic()``.

The public names live in :mod:`sagakit.telemetry`; this module holds them so that the
package's facade is only a list of names, and so that no module of the package needs the
facade.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sagakit import _process
from sagakit._checks import describe
from sagakit.events import Event
from sagakit.redaction import Redactor
from sagakit.telemetry._automatic import make_sinks, process_observers
from sagakit.telemetry._common import DEFAULT_PAYLOAD_CHARS, Sink, SinkGroup

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from sagakit.saga import Saga

__all__ = ["Telemetry", "automatic", "instrument"]


class Telemetry(SinkGroup):
    """Spans, metrics and log events together: the sinks :func:`instrument` attaches.

    A ``Telemetry`` is itself an observer (``saga.run(observers=[telemetry])`` for one run),
    and :meth:`attach` adds its sinks to a saga one by one, so that the engine isolates them:
    a failing sink never silences the others. Use it as a context manager to detach at the end.

    Args:
        tracer_provider: for spans; the global provider when ``None``.
        meter_provider: for metrics; the global provider when ``None``.
        logger: a structlog logger; ``structlog.get_logger("sagakit")`` when ``None``.
        traces: make spans.
        metrics: record metrics.
        logs: write log events.
        capture_payloads: add redacted payloads, cut to ``max_payload_chars``, to spans and
            log events (off by default: payloads are the user's data).
        max_payload_chars: the longest payload text kept.
        redactor: the redactor for runs of sagas not attached (an attached saga's own
            ``redactor`` applies to its runs).

    Attributes:
        tracing: the :class:`OtelTracing` sink, or ``None``.
        metrics: the :class:`OtelMetrics` sink, or ``None``.
        logs: the :class:`StructlogEvents` sink, or ``None``.
        sinks: the sinks in use, in that order.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        logger: Any = None,
        traces: bool = True,
        metrics: bool = True,
        logs: bool = True,
        capture_payloads: bool = False,
        max_payload_chars: int = DEFAULT_PAYLOAD_CHARS,
        redactor: Redactor | None = None,
    ) -> None:
        self.tracing, self.metrics, self.logs = make_sinks(
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            logger=logger,
            traces=traces,
            metrics=metrics,
            logs=logs,
            capture_payloads=capture_payloads,
            max_payload_chars=max_payload_chars,
            redactor=redactor,
        )
        self.sinks: tuple[Sink, ...] = tuple(s for s in (self.tracing, self.metrics, self.logs) if s is not None)
        self._detach: list[Callable[[], None]] = []

    def __call__(self, event: Event, /) -> None:
        for sink in self.sinks:
            sink(event)

    def attach(self, saga: Saga) -> Callable[[], None]:
        """Observe every run of ``saga`` with every sink; returns a function that detaches them."""
        undos = [sink.attach(saga) for sink in self.sinks]

        def detach() -> None:
            for undo in undos:
                undo()

        self._detach.append(detach)
        return detach

    def attach_process(self) -> Callable[[], None]:
        """Observe every run of every saga in the process, existing and future, until the
        returned function (or :meth:`detach`) is called. Automatic telemetry steps aside
        meanwhile; a run that has sagakit sinks of its own is left to them."""
        undo = _process.add_factory(process_observers(self.sinks))
        self._detach.append(undo)
        return undo

    def trace_context(self, run_id: str) -> Any:
        """The OpenTelemetry context of the run's root span while it runs, or ``None``."""
        return self.tracing.trace_context(run_id) if self.tracing is not None else None

    def detach(self) -> None:
        """Detach from every saga this telemetry was attached to, and from the process."""
        for detach in self._detach:
            detach()
        self._detach.clear()

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.detach()

    def __repr__(self) -> str:
        names = ", ".join(type(sink).__name__ for sink in self.sinks) or "no sinks"
        return f"<Telemetry {names}>"


def instrument(*sagas: Saga, **options: Any) -> Telemetry:
    """Attach spans, metrics and log events to ``sagas``; returns the :class:`Telemetry`.

    With no sagas, every saga of the process is instrumented, existing and future (see
    :meth:`Telemetry.attach_process`), until ``telemetry.detach()``. The options are :class:`Telemetry`'s (``tracer_provider``, ``meter_provider``,
    ``logger``, ``traces``, ``metrics``, ``logs``, ``capture_payloads``,
    ``max_payload_chars``, ``redactor``). ``telemetry.detach()`` (or leaving a ``with``
    block) undoes it.

    Raises:
        TypeError: something in ``sagas`` is not a saga, or an option is unknown.
    """
    from sagakit.saga import Saga

    for position, saga in enumerate(sagas):
        if not isinstance(saga, Saga):
            raise TypeError(f"instrument sagas[{position}]: expected a sagakit.Saga, got {describe(saga)}")
    telemetry = Telemetry(**options)
    if not sagas:
        telemetry.attach_process()
        return telemetry
    try:
        for saga in sagas:
            telemetry.attach(saga)
    except BaseException:
        telemetry.detach()
        raise
    return telemetry


def automatic(enabled: bool | None = None) -> bool:
    """Whether automatic telemetry is on; ``automatic(False)`` turns it off for the process.

    Automatic telemetry (on unless turned off) shows every run of every saga to spans and
    metrics through the global OpenTelemetry providers, once SDK providers are installed,
    and to structlog events, once ``structlog.configure`` was called; each saga's
    ``redactor`` and ``log_compensations`` apply. Returns the setting before the call.

    Raises:
        TypeError: ``enabled`` is not a bool or ``None``.
    """
    if enabled is None:
        return _process.automatic_enabled()
    return _process.set_automatic(enabled)
