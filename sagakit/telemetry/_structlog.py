"""structlog events from the event stream, on the ``sagakit`` logger.

========================== ======== ===========================================================
event                      level    extra fields
========================== ======== ===========================================================
``saga_started``           debug
``step_started``           debug    ``step``, ``index``, ``phase``, ``attempt``
``step_succeeded``         debug    ... ``duration_ms``
``step_failed``            warning  ... ``duration_ms``, ``error_type``, ``error``
``step_cancelled``         warning  ... ``duration_ms``
``rollback_started``       warning  ``failed_step``, ``compensation_reason``, ``error_type``
``compensation_started``   info     ``step`` ..., ``compensation_reason``
``compensation_completed`` info     ... ``duration_ms``
``compensation_failed``    error    ... ``duration_ms``, ``error_type``, ``error``
``compensation_cancelled`` warning  ... ``duration_ms``
``compensation_skipped``   info     ... (the step has no compensation)
``saga_finished``          info*    ``status``, ``duration_ms`` (*warning when rolled back or
                                    cancelled, error when a compensation failed)
========================== ======== ===========================================================

Every event carries ``saga``, ``primitive`` (the saga's name, as the seed logs it),
``run_id`` and ``correlation_id``; ``injected=True`` marks injected faults. ``error`` is the
redacted error text. The library never configures structlog: the events go wherever the
application's structlog configuration sends them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from sagakit.events import Event, EventKind
from sagakit.telemetry._common import (
    DEFAULT_PAYLOAD_CHARS,
    RunPayloads,
    Sink,
    check_limit,
    error_type,
    payload_text,
)

if TYPE_CHECKING:
    from sagakit.redaction import Redactor

__all__ = ["StructlogEvents"]

_K = EventKind

# event kind -> (log event name, level, is a compensation event)
_NAMES: dict[EventKind, tuple[str, str, bool]] = {
    _K.STEP_STARTED: ("step_started", "debug", False),
    _K.STEP_SUCCEEDED: ("step_succeeded", "debug", False),
    _K.STEP_FAILED: ("step_failed", "warning", False),
    _K.STEP_CANCELLED: ("step_cancelled", "warning", False),
    _K.COMPENSATION_STARTED: ("compensation_started", "info", True),
    _K.COMPENSATION_SUCCEEDED: ("compensation_completed", "info", True),
    _K.COMPENSATION_FAILED: ("compensation_failed", "error", True),
    _K.COMPENSATION_CANCELLED: ("compensation_cancelled", "warning", True),
    _K.COMPENSATION_SKIPPED: ("compensation_skipped", "info", True),
}
_LEVEL_NUMBERS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_RUN_LEVELS = {"completed": "info", "compensated": "warning", "cancelled": "warning", "compensation_failed": "error"}


class _RunLog:
    """What one run's log events share: a logger bound to the run's identity, once per run,
    and per event kind the name and bound method it is written with.

    Binding once means each event passes only its own fields: the identity fields are not
    copied into a fresh dict per event. Resolving each kind's method once per run (its
    level, whether that level is enabled, whether the kind is written at all) leaves one
    lookup per event.
    """

    __slots__ = ("log", "log_compensations", "methods", "payloads", "reason")

    def __init__(self, log: Any, methods: dict[EventKind, tuple[str, Any]], payloads: RunPayloads,
                 log_compensations: bool) -> None:
        self.log = log
        self.methods = methods
        self.payloads = payloads
        self.log_compensations = log_compensations
        self.reason: str | None = None


class _Unbindable:
    """A logger without ``bind``: passes the run's identity fields on every call instead."""

    __slots__ = ("fields", "logger")

    def __init__(self, logger: Any, fields: dict[str, Any]) -> None:
        self.logger = logger
        self.fields = fields

    def __getattr__(self, level: str) -> Any:
        method = getattr(self.logger, level)
        fields = self.fields

        def call(event: str, **kw: Any) -> Any:
            return method(event, **fields, **kw)

        return call


class _Deferred:
    """A level method the logger lacks, looked up again when an event of that level comes
    (so that a logger without ``warning`` fails only if a warning is written)."""

    __slots__ = ("level", "logger")

    def __init__(self, logger: Any, level: str) -> None:
        self.logger = logger
        self.level = level

    def __call__(self, event: str, **fields: Any) -> Any:
        return getattr(self.logger, self.level)(event, **fields)


class StructlogEvents(Sink):
    """An observer that writes a run's story as structlog events (see the module docstring).

    Args:
        logger: a structlog logger; ``structlog.get_logger("sagakit")`` when ``None``
            (a lazy proxy, so the application's configuration, and
            ``structlog.testing.capture_logs``, apply from the next run on). It is bound
            to each run's identity once, when the run starts; any object with ``debug``,
            ``info``, ``warning`` and ``error`` methods also works (without ``bind``, the
            identity fields are passed with every call).
        redactor: the redactor for sagas the sink is not attached to (see ``Sink``).
        log_compensations: write the ``rollback_started`` and ``compensation_*`` events for
            sagas the sink is not attached to; an attached saga's own
            ``log_compensations`` decides for its runs.
        step_events: write the ``step_*`` events (``False`` keeps runs and compensations only).
        capture_payloads: add the redacted payload (``data``, JSON text cut to
            ``max_payload_chars``) to ``saga_started``, ``step_succeeded`` and
            ``compensation_started``.
        max_payload_chars: the longest payload text kept.
    """

    def __init__(
        self,
        logger: Any = None,
        *,
        redactor: Redactor | None = None,
        log_compensations: bool = True,
        step_events: bool = True,
        capture_payloads: bool = False,
        max_payload_chars: int = DEFAULT_PAYLOAD_CHARS,
    ) -> None:
        super().__init__(redactor=redactor)
        if logger is not None and not callable(getattr(logger, "info", None)):
            raise TypeError(f"StructlogEvents logger: expected a structlog logger or None, got {logger!r}")
        self.logger: Any = logger if logger is not None else structlog.get_logger("sagakit")
        self.log_compensations = bool(log_compensations)
        self.step_events = bool(step_events)
        self.capture_payloads = bool(capture_payloads)
        self.max_payload_chars = check_limit(max_payload_chars, "StructlogEvents")
        self._runs: dict[str, _RunLog] = {}

    @property
    def open_runs(self) -> int:
        """How many runs are in flight (0 between runs)."""
        return len(self._runs)

    def logs_compensations(self, saga: str) -> bool:
        """Whether compensation events are written for runs of the saga named ``saga``."""
        return super().logs_compensations(saga) if self.saga_named(saga) is not None else self.log_compensations

    def __call__(self, event: Event, /) -> None:
        kind = event.kind
        try:
            if kind is _K.RUN_STARTED:
                self._run_started(event)
                return
            state = self._runs.get(event.run_id)
            if state is None:
                return
            if kind is _K.RUN_FINISHED:
                self._run_finished(event, state)
            elif kind is _K.ROLLBACK_STARTED:
                self._rollback_started(event, state)
            else:
                self._step_event(event, state)
        except Exception:
            self._runs.pop(event.run_id, None)  # the engine drops a raising observer: forget the run
            raise

    def _run_started(self, event: Event) -> None:
        fields: dict[str, Any] = {
            "saga": event.saga,
            "primitive": event.saga,
            "run_id": event.run_id,
            "correlation_id": event.correlation_id,
        }
        # Bound once per run (a lazy proxy resolves the structlog configuration here, so a
        # configuration change applies from the next run on).
        log = self.logger.bind(**fields) if callable(getattr(self.logger, "bind", None)) else None
        if log is None:
            log = _Unbindable(self.logger, fields)
        # A filtering logger says which levels it drops: skip building their events.
        enabled = log.is_enabled_for if callable(getattr(type(log), "is_enabled_for", None)) else None
        payloads = RunPayloads(self.redactor_for(event.saga))
        payloads.add(event.data)
        log_compensations = self.logs_compensations(event.saga)
        self._runs[event.run_id] = _RunLog(log, self._methods(log, enabled, log_compensations), payloads,
                                           log_compensations)
        if enabled is None or enabled(10):
            if self.capture_payloads:
                log.debug("saga_started", data=payload_text(payloads.redactor, event.data, self.max_payload_chars))
            else:
                log.debug("saga_started")

    def _methods(self, log: Any, enabled: Any, log_compensations: bool) -> dict[EventKind, tuple[str, Any]]:
        """Per event kind written for a run: its name and the bound method that writes it."""
        by_level = {
            level: getattr(log, level, None) or _Deferred(log, level)
            for level, number in _LEVEL_NUMBERS.items()
            if enabled is None or enabled(number)
        }
        step_events = self.step_events
        return {
            kind: (name, by_level[level])
            for kind, (name, level, compensation) in _NAMES.items()
            if level in by_level and (log_compensations if compensation else step_events)
        }

    def _step_event(self, event: Event, state: _RunLog) -> None:
        data = event.data
        state.payloads.add(data)
        kind = event.kind
        written = state.methods.get(kind)
        if written is None:  # not written for this run (its level is off, or its kind is)
            return
        name, method = written
        duration = event.duration_ms
        if kind is _K.STEP_STARTED or (
            kind is _K.STEP_SUCCEEDED and not event.injected and (data is None or not self.capture_payloads)
        ):
            # The common events, called with their fields directly: no intermediate dict.
            if duration is None:
                method(name, step=event.step, index=event.index, phase=event.phase, attempt=event.attempt)
            else:
                method(
                    name,
                    step=event.step,
                    index=event.index,
                    phase=event.phase,
                    attempt=event.attempt,
                    duration_ms=round(duration, 3),
                )
            return
        compensation = _NAMES[kind][2]
        fields: dict[str, Any] = {
            "step": event.step,
            "index": event.index,
            "phase": event.phase,
            "attempt": event.attempt,
        }
        if compensation:
            fields["compensation_reason"] = state.reason
        if duration is not None and kind is not _K.COMPENSATION_SKIPPED:
            fields["duration_ms"] = round(duration, 3)
        if event.error is not None:
            fields["error_type"] = type(event.error).__name__
            fields["error"] = state.payloads.message(event.error)
        if event.injected:
            fields["injected"] = True
        if self.capture_payloads and data is not None and (kind is _K.STEP_SUCCEEDED or kind is _K.COMPENSATION_STARTED):
            fields["data"] = payload_text(state.payloads.redactor, data, self.max_payload_chars)
        method(name, **fields)

    def _rollback_started(self, event: Event, state: _RunLog) -> None:
        original = event.error
        state.reason = f"{event.step}_failed" if original is not None and event.step else "cancelled"
        if not state.log_compensations:
            return
        if original is None:
            state.log.warning("rollback_started", failed_step=event.step, compensation_reason=state.reason)
        else:
            state.log.warning(
                "rollback_started",
                failed_step=event.step,
                compensation_reason=state.reason,
                error_type=type(original).__name__,
                error=state.payloads.message(original),
            )

    def _run_finished(self, event: Event, state: _RunLog) -> None:
        del self._runs[event.run_id]
        status = event.status or "unknown"
        fields: dict[str, Any] = {"status": status}
        if event.duration_ms is not None:
            fields["duration_ms"] = round(event.duration_ms, 3)
        if event.error is not None:
            fields["error_type"] = error_type(event.error).rsplit(".", 1)[-1]
            fields["error"] = state.payloads.message(event.error)
        if event.injected:
            fields["injected"] = True
        getattr(state.log, _RUN_LEVELS.get(status, "info"))("saga_finished", **fields)
