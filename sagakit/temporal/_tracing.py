"""One trace across Temporal: the caller's span, the workflow, and each step where it ran.

Connect the caller's and the workers' clients with :func:`tracing_interceptors`::

    client = await Client.connect(address, interceptors=sagakit.temporal.tracing_interceptors())

temporalio's ``TracingInterceptor`` carries the trace context in Temporal's headers
(``StartWorkflow:sagakit.saga``, ``RunWorkflow:sagakit.saga``, ``StartActivity:...``,
``RunActivity:...``), and :class:`StepSpans` opens, on the worker that runs an attempt, the
span sagakit makes locally for it (``<step>.forward``, ``<step>.compensate``, a retry its own
span), so that a step's own spans nest under it. On the caller's side the run's root span
(``<saga>.execute``, made by sagakit's telemetry) is current while the workflow starts, and
the caller makes no step spans of its own (the run's ``info`` says ``step_spans="workers"``).
A trace then reads::

    order.execute                                  (caller)
      StartWorkflow:sagakit.saga
        RunWorkflow:sagakit.saga                   (a worker)
          StartActivity:order.reserve.forward
            RunActivity:order.reserve.forward      (the worker that ran the step)
              reserve.forward
          ...
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from temporalio import activity
from temporalio import client as temporal_client
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from sagakit._version import __version__
from sagakit.events import Observer

__all__ = ["PHASE_ATTRIBUTE", "StepSpans", "caller_context", "traces_steps", "tracing_interceptors"]

#: The attribute of a sagakit activity function naming its ``(saga, step, phase)``.
PHASE_ATTRIBUTE = "__sagakit_phase__"


def tracing_interceptors(tracer_provider: trace.TracerProvider | None = None) -> list[Interceptor]:
    """temporalio's ``TracingInterceptor`` and sagakit's :class:`StepSpans`, in that order.

    Pass them to ``Client.connect(..., interceptors=...)`` on the caller and on every worker
    (a worker built from a client uses its interceptors). Needs ``opentelemetry-sdk`` only
    where spans are exported; the global tracer provider is used unless one is given.
    """
    from temporalio.contrib.opentelemetry import TracingInterceptor

    tracer = trace.get_tracer("temporalio", tracer_provider=tracer_provider) if tracer_provider else None
    return [TracingInterceptor(tracer), StepSpans(tracer_provider)]


def traces_steps(client: Client) -> bool:
    """Whether ``client`` carries :class:`StepSpans`: its workers make the step spans."""
    return any(isinstance(interceptor, StepSpans) for interceptor in client.config().get("interceptors") or ())


@contextmanager
def caller_context(observers: Iterable[Observer], run_id: str) -> Iterator[None]:
    """Make the run's root span current (if an observer traces the run) for the block."""
    for observer in observers:
        find = getattr(observer, "trace_context", None)
        found = find(run_id) if callable(find) else None
        if found is not None:
            token = otel_context.attach(found)
            try:
                yield
            finally:
                otel_context.detach(token)
            return
    yield


class StepSpans(temporal_client.Interceptor, Interceptor):
    """A worker interceptor: one ``<step>.<phase>`` span per attempt of a sagakit activity.

    Attributes as locally (``sagakit.saga``, ``sagakit.run_id``, ``sagakit.step``,
    ``sagakit.phase``, ``sagakit.attempt`` (Temporal's attempt), ``sagakit.outcome``), and
    a failure recorded the OpenTelemetry way with the message redacted by the saga's
    redactor. Other activities pass through untouched. Given to a client, it reaches the
    workers built from that client, as temporalio's interceptors do.

    Args:
        tracer_provider: where spans go; the global provider when ``None``.
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer("sagakit", __version__, tracer_provider=tracer_provider)

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _StepSpansInbound(next, self.tracer)


class _StepSpansInbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, tracer: trace.Tracer) -> None:
        super().__init__(next)
        self.tracer = tracer

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        phase = getattr(input.fn, PHASE_ATTRIBUTE, None)
        if phase is None:
            return await super().execute_activity(input)
        saga, step, which = phase
        call = input.args[0] if input.args and isinstance(input.args[0], dict) else {}
        shared = call.get("context") or {}
        attributes: dict[str, Any] = {
            "sagakit.saga": saga.name,
            "sagakit.step": step,
            "sagakit.phase": which,
            "sagakit.attempt": activity.info().attempt,
            "sagakit.backend": "temporal",
        }
        if shared.get("run_id"):
            attributes["sagakit.run_id"] = shared["run_id"]
        if shared.get("correlation_id"):
            attributes["sagakit.correlation_id"] = shared["correlation_id"]
        with self.tracer.start_as_current_span(
            f"{step}.{which}", attributes=attributes, record_exception=False, set_status_on_exception=False
        ) as span:
            try:
                result = await super().execute_activity(input)
            except asyncio.CancelledError:
                span.set_attribute("sagakit.outcome", "cancelled")
                raise
            except Exception as error:
                if span.is_recording():
                    _record(span, error, saga, call.get("data"))
                raise
            span.set_attribute("sagakit.outcome", "succeeded")
            return result


def _record(span: trace.Span, error: Exception, saga: Any, data: Any) -> None:
    from sagakit.telemetry._common import error_type, record_error

    kind = error.type if isinstance(error, ApplicationError) and error.type else error_type(error)
    redactor = saga.redactor
    message = redactor.message(error, redactor.secrets(data)) or ""
    span.set_attribute("sagakit.outcome", "failed")
    record_error(span, error, kind, message)
