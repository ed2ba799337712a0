"""OpenTelemetry spans from the event stream: one root span per run, one child per step attempt.

The tree mirrors the seed's::

    order.execute
      ├─ reserve_inventory.forward
      ├─ charge_payment.forward          (attempt 1, failed)
      ├─ charge_payment.forward          (attempt 2: a retry is its own span)
      ├─ ship_order.forward              (ERROR)
      ├─ charge_payment.compensate
      └─ reserve_inventory.compensate

Span start and end times are the events' times, so spans line up with ``run.steps``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from sagakit._version import __version__
from sagakit.events import Event, EventKind
from sagakit.telemetry._common import (
    DEFAULT_PAYLOAD_CHARS,
    RunPayloads,
    Sink,
    check_limit,
    error_type,
    payload_text,
    record_error,
)

if TYPE_CHECKING:
    from opentelemetry.context import Context

    from sagakit.context import WorkflowContext
    from sagakit.redaction import Redactor

__all__ = ["OtelTracing"]

_K = EventKind
_INTERNAL = SpanKind.INTERNAL
_UNSET_ATTRIBUTE = "sagakit.outcome"


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class _RunSpans:
    """The open spans of one run."""

    __slots__ = ("context", "open", "payloads", "remote", "root")

    def __init__(self, root: Span, context: Context, payloads: RunPayloads, remote: bool) -> None:
        self.root = root
        self.context = context
        self.payloads = payloads
        # The steps run elsewhere and make their own spans there (a Temporal run whose
        # workers trace): this root only covers the caller's side.
        self.remote = remote
        # (step, phase, attempt) -> its span, while the attempt runs.
        self.open: dict[tuple[str | None, str | None, int], Span] = {}


class OtelTracing(Sink):
    """An observer that turns each run into an OpenTelemetry trace, through the API only.

    * ``<saga>.execute``: the root span of a run, a child of the caller's current span
      when there is one. Attributes ``sagakit.saga``, ``sagakit.run_id``,
      ``sagakit.correlation_id``, ``sagakit.backend``, and at the end ``sagakit.outcome``
      (the run's status). Span events ``rollback_started`` and ``compensation_skipped``.
    * ``<step>.forward`` and ``<step>.compensate``: one span per attempt, so retries show
      as siblings. Attributes ``sagakit.step``, ``sagakit.index``, ``sagakit.phase``,
      ``sagakit.attempt``, ``sagakit.outcome`` (``succeeded``, ``failed``, ``cancelled``) and
      ``sagakit.injected`` for injected faults; the run's identity is on the root.

    A failure sets the span's status to ERROR, ``error.type`` to the exception's class, and
    adds the ``exception`` span event (``exception.type``, ``exception.message``,
    ``exception.stacktrace``), the event ``Span.record_exception`` writes, built here so that
    the message is redacted first and the stack trace lists frames without source lines. Successful spans keep the UNSET status,
    as OpenTelemetry asks of instrumentation libraries. A cancelled run's spans end too.

    Payloads stay out of spans unless ``capture_payloads=True``; then ``sagakit.input``
    and ``sagakit.output`` (and the root's ``sagakit.result``) hold redacted JSON text,
    cut to ``max_payload_chars``.

    Args:
        tracer_provider: where spans go; the global provider when ``None`` (resolved when
            spans are made, so a provider installed later is used). sagakit never installs one.
        redactor: the redactor for sagas the sink is not attached to (see ``Sink``).
        capture_payloads: record redacted payloads as span attributes.
        max_payload_chars: the longest payload text kept.
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        *,
        redactor: Redactor | None = None,
        capture_payloads: bool = False,
        max_payload_chars: int = DEFAULT_PAYLOAD_CHARS,
    ) -> None:
        super().__init__(redactor=redactor)
        if tracer_provider is not None and not isinstance(tracer_provider, trace.TracerProvider):
            raise TypeError(
                f"OtelTracing tracer_provider: expected an opentelemetry TracerProvider or None, got {tracer_provider!r}"
            )
        self.tracer = trace.get_tracer("sagakit", __version__, tracer_provider=tracer_provider)
        self.capture_payloads = bool(capture_payloads)
        self.max_payload_chars = check_limit(max_payload_chars, "OtelTracing")
        self._runs: dict[str, _RunSpans] = {}
        self._handlers: dict[EventKind, Callable[[Event, _RunSpans], None]] = {
            _K.STEP_STARTED: self._attempt_started,
            _K.COMPENSATION_STARTED: self._attempt_started,
            _K.STEP_SUCCEEDED: self._attempt_ended,
            _K.STEP_FAILED: self._attempt_ended,
            _K.STEP_CANCELLED: self._attempt_ended,
            _K.COMPENSATION_SUCCEEDED: self._attempt_ended,
            _K.COMPENSATION_FAILED: self._attempt_ended,
            _K.COMPENSATION_CANCELLED: self._attempt_ended,
            _K.ROLLBACK_STARTED: self._rollback_started,
            _K.COMPENSATION_SKIPPED: self._compensation_skipped,
            _K.RUN_FINISHED: self._run_finished,
        }

    def __call__(self, event: Event, /) -> None:
        try:
            if event.kind is _K.RUN_STARTED:
                self._run_started(event)
                return
            state = self._runs.get(event.run_id)
            if state is None:  # a run this sink did not see start (or an unsampled one)
                return
            handler = self._handlers.get(event.kind)
            if handler is not None:
                handler(event, state)
        except Exception:
            # The engine drops an observer that raises for the rest of the run: end what is
            # open so that no span and no per-run state outlives it.
            self._abandon(event.run_id, event.at)
            raise

    @property
    def open_runs(self) -> int:
        """How many runs have spans still open (0 between runs)."""
        return len(self._runs)

    def span_for(self, context: WorkflowContext) -> Span:
        """The span of the attempt a step is running, for parenting your own spans under it.

        Call it from a step with the context the step received::

            parent = trace.set_span_in_context(tracing.span_for(context))
            with tracer.start_as_current_span("charge", context=parent): ...

        Returns ``INVALID_SPAN`` outside a run this sink traces.
        """
        state = self._runs.get(context.run_id or "")
        if state is None:
            return trace.INVALID_SPAN
        if context.step is None:
            return state.root
        return state.open.get((context.step, context.phase, context.attempt), state.root)

    def trace_context(self, run_id: str) -> Context | None:
        """The OpenTelemetry context holding the root span of run ``run_id`` while it runs
        (``None`` for a run this sink does not trace): what a backend makes current while it
        hands the run to another process, so that the trace continues there."""
        state = self._runs.get(run_id)
        return state.context if state is not None else None

    # -- handlers -------------------------------------------------------------------------

    def _run_started(self, event: Event) -> None:
        attributes: dict[str, Any] = {"sagakit.saga": event.saga, "sagakit.run_id": event.run_id}
        if event.correlation_id is not None:
            attributes["sagakit.correlation_id"] = event.correlation_id
        info = event.info
        backend = info.get("backend") if info else None
        if isinstance(backend, str):
            attributes["sagakit.backend"] = backend
        redactor = self.redactor_for(event.saga)
        if self.capture_payloads:
            attributes["sagakit.input"] = payload_text(redactor, event.data, self.max_payload_chars)
        # No context given: the caller's current span (if any) becomes the parent.
        root = self.tracer.start_span(
            f"{event.saga}.execute", kind=_INTERNAL, attributes=attributes, start_time=_ns(event.at)
        )
        if not root.is_recording():  # no provider, or sampled out: children would not record either
            return
        payloads = RunPayloads(redactor)
        payloads.add(event.data)
        remote = bool(info and info.get("step_spans") == "workers")
        self._runs[event.run_id] = _RunSpans(root, trace.set_span_in_context(root), payloads, remote)

    def _attempt_started(self, event: Event, state: _RunSpans) -> None:
        if state.remote:
            return
        # The run's identity (saga, run id) is on the root: children inherit it through the
        # trace, and every attribute costs time on every attempt.
        step, phase, attempt, data = event.step, event.phase, event.attempt, event.data
        attributes: dict[str, Any] = {
            "sagakit.step": step,
            "sagakit.index": event.index,
            "sagakit.phase": phase,
            "sagakit.attempt": attempt,
        }
        payloads = state.payloads
        payloads.add(data)
        if self.capture_payloads:
            attributes["sagakit.input"] = payload_text(payloads.redactor, data, self.max_payload_chars)
        state.open[(step, phase, attempt)] = self.tracer.start_span(
            f"{step}.{phase}", context=state.context, kind=_INTERNAL, attributes=attributes, start_time=_ns(event.at)
        )

    def _attempt_ended(self, event: Event, state: _RunSpans) -> None:
        span = state.open.pop((event.step, event.phase, event.attempt), None)
        if span is None:
            return
        if event.injected:
            span.set_attribute("sagakit.injected", True)
        if event.error is not None:
            self._record_error(span, event.error, state, event.at)
        elif (data := event.data) is not None:
            payloads = state.payloads
            payloads.add(data)
            if self.capture_payloads:
                span.set_attribute("sagakit.output", payload_text(payloads.redactor, data, self.max_payload_chars))
        span.set_attribute(_UNSET_ATTRIBUTE, event.status or "unknown")
        span.end(end_time=_ns(event.at))

    def _rollback_started(self, event: Event, state: _RunSpans) -> None:
        attributes: dict[str, Any] = {}
        if event.step is not None:
            attributes["sagakit.step"] = event.step
        if event.error is not None:
            attributes["error.type"] = error_type(event.error)
        state.root.add_event("rollback_started", attributes, timestamp=_ns(event.at))

    def _compensation_skipped(self, event: Event, state: _RunSpans) -> None:
        state.root.add_event(
            "compensation_skipped",
            {"sagakit.step": event.step or "", "sagakit.index": event.index},
            timestamp=_ns(event.at),
        )

    def _run_finished(self, event: Event, state: _RunSpans) -> None:
        del self._runs[event.run_id]
        end = _ns(event.at)
        for span in state.open.values():  # an attempt that never reported its end
            span.set_attribute(_UNSET_ATTRIBUTE, "abandoned")
            span.end(end_time=end)
        state.open.clear()
        root = state.root
        if event.injected:
            root.set_attribute("sagakit.injected", True)
        if event.error is not None:
            self._record_error(root, event.error, state, event.at)
        elif self.capture_payloads:
            root.set_attribute("sagakit.result", payload_text(state.payloads.redactor, event.data, self.max_payload_chars))
        root.set_attribute(_UNSET_ATTRIBUTE, event.status or "unknown")
        root.end(end_time=end)

    # -- helpers --------------------------------------------------------------------------

    def _record_error(self, span: Span, error: BaseException, state: _RunSpans, at: float) -> None:
        record_error(span, error, error_type(error), state.payloads.message(error) or "", _ns(at))

    def _abandon(self, run_id: str, at: float) -> None:
        state = self._runs.pop(run_id, None)
        if state is None:
            return
        end = _ns(at)
        for span in state.open.values():
            span.end(end_time=end)
        state.root.set_attribute(_UNSET_ATTRIBUTE, "abandoned")
        state.root.end(end_time=end)
