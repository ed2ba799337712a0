"""What the sinks share: attaching to sagas, per-run payload memory, error text, payload text."""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import Span, Status, StatusCode

from sagakit._checks import check_positive_int
from sagakit.redaction import Redactor, default_redactor

if TYPE_CHECKING:
    from sagakit.events import Event
    from sagakit.saga import Saga

__all__ = ["DEFAULT_PAYLOAD_CHARS", "RUN_SAGA", "RunPayloads", "Sink", "SinkGroup", "error_type", "payload_text", "record_error"]

#: The saga whose ``run_started`` is being delivered by process-wide telemetry, which is not
#: attached to sagas: sinks read its ``redactor`` and ``log_compensations`` from here then.
RUN_SAGA: ContextVar[Saga | None] = ContextVar("sagakit_run_saga", default=None)

#: How many characters of a payload are kept when payload capture is on.
DEFAULT_PAYLOAD_CHARS = 1024


class SinkGroup:
    """Base of the observers that pass events on to sagakit's own sinks (``Telemetry``,
    one run's view of the process-wide telemetry): a run that has one is already observed."""

    __slots__ = ()


class Sink:
    """Base of the telemetry sinks: an observer that knows the sagas it was attached to.

    A sink is a plain :class:`~sagakit.events.Observer`: pass it to ``saga.observe`` or
    ``saga.run(observers=[...])``. Attaching it with :meth:`attach` instead also lets it
    honour that saga's ``redactor`` and ``log_compensations`` settings, read at the start of
    every run, so one sink can serve many sagas.

    Args:
        redactor: used for runs of sagas the sink was not attached to (the default
            redactor when ``None``).
    """

    def __init__(self, *, redactor: Redactor | None = None) -> None:
        if redactor is not None and not isinstance(redactor, Redactor):
            raise TypeError(
                f"{type(self).__name__} redactor: expected a sagakit.redaction.Redactor or None, got {redactor!r}"
            )
        self.redactor = redactor
        self._sagas: dict[str, Saga] = {}

    def __call__(self, event: Event, /) -> None:
        raise NotImplementedError

    def attach(self, saga: Saga) -> Callable[[], None]:
        """Observe every run of ``saga`` with its settings; returns a function that detaches."""
        observe = getattr(saga, "observe", None)
        name = getattr(saga, "name", None)
        if not callable(observe) or not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}.attach: expected a sagakit.Saga, got {saga!r}")
        self._sagas[name] = saga
        unobserve = observe(self)

        def detach() -> None:
            unobserve()
            if self._sagas.get(name) is saga:
                del self._sagas[name]

        return detach

    def saga_named(self, saga: str) -> Saga | None:
        """The saga named ``saga`` this sink serves: the one whose run is starting under
        process-wide telemetry, else the one attached under that name, else ``None``."""
        starting = RUN_SAGA.get()
        if starting is not None and starting.name == saga:
            return starting
        return self._sagas.get(saga)

    def redactor_for(self, saga: str) -> Redactor:
        """The redactor for a run of the saga named ``saga``."""
        attached = self.saga_named(saga)
        if attached is not None:
            redactor = getattr(attached, "redactor", None)
            if isinstance(redactor, Redactor):
                return redactor
        return self.redactor if self.redactor is not None else default_redactor()

    def logs_compensations(self, saga: str) -> bool:
        """Whether the saga named ``saga`` wants its compensations logged (``log_compensations``)."""
        attached = self.saga_named(saga)
        return attached is None or bool(getattr(attached, "log_compensations", True))


class RunPayloads:
    """The payloads one run has carried so far, walked for secret values only when needed.

    Error text is scrubbed of the secrets a run carried (a card number in an exception
    message). Walking every payload on every event would tax the success path, so the
    payloads are only remembered (by reference) and walked when an error is written.
    """

    __slots__ = ("_error", "_message", "_secrets", "items", "last", "redactor")

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self.items: list[Any] = []
        self.last: Any = None
        self._secrets: frozenset[str] | None = None
        # The last error scrubbed and its text: a failure is reported by several events
        # (the attempt's end, rollback_started, run_finished), scrubbed once.
        self._error: BaseException | None = None
        self._message: str | None = None

    def add(self, data: Any) -> None:
        """Remember a payload (the same object twice in a row is remembered once)."""
        if data is not None and data is not self.last:
            self.items.append(data)
            self.last = data
            self._secrets = None
            self._error = None

    def secrets(self) -> frozenset[str]:
        """The secret values in the payloads so far."""
        if self._secrets is None:
            self._secrets = self.redactor.secrets(*self.items)
        return self._secrets

    def message(self, error: BaseException | None) -> str | None:
        """The scrubbed text of ``error``."""
        if error is None:
            return None
        if error is not self._error:
            self._message = self.redactor.message(error, self.secrets())
            self._error = error
        return self._message


def error_type(error: BaseException) -> str:
    """The ``error.type`` of an exception: its class, qualified by module unless builtin."""
    cls = type(error)
    module = cls.__module__
    return cls.__qualname__ if module in ("builtins", None) else f"{module}.{cls.__qualname__}"


def payload_text(redactor: Redactor, data: Any, limit: int) -> str:
    """A payload as redacted JSON (or repr) text, at most ``limit`` characters."""
    redacted = redactor.redact(data)
    try:
        text = json.dumps(redacted, ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # keys JSON cannot hold (tuples): fall back to repr
        text = repr(redacted)
    if len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…"
    return text


def check_limit(value: object, owner: str) -> int:
    """Validate a ``max_payload_chars`` option."""
    return check_positive_int(value, f"{owner} max_payload_chars")


def stacktrace(error: BaseException, kind: str, message: str) -> str:
    """The error's frames (file, line, function) and its redacted message, Python's layout.

    Source lines are left out: reading and parsing them costs far more than the rest of a
    span, and a line of source can hold a literal secret. The message is the redacted one.
    """
    lines = ["Traceback (most recent call last):"]
    for frame, lineno in traceback.walk_tb(error.__traceback__):
        code = frame.f_code
        lines.append(f'  File "{code.co_filename}", line {lineno}, in {code.co_name}')
    lines.append(f"{kind}: {message}" if message else kind)
    return "\n".join(lines)


def record_error(span: Span, error: BaseException, kind: str, message: str, at: int | None = None) -> None:
    """Mark ``span`` failed by ``error`` the OpenTelemetry way, with the redacted ``message``.

    Adds the ``exception`` span event ``Span.record_exception`` writes (``exception.type``,
    ``exception.message``, ``exception.stacktrace``), built here so that the message is the
    redacted one, sets ``error.type`` to ``kind`` and the status to ERROR.
    """
    span.add_event(
        "exception",
        {"exception.type": kind, "exception.message": message, "exception.stacktrace": stacktrace(error, kind, message)},
        timestamp=at,
    )
    span.set_attribute("error.type", kind)
    span.set_status(Status(StatusCode.ERROR, message or kind))
