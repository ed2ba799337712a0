"""Process-wide observers: what every run of every saga in the process is also shown.

:meth:`Saga._request <sagakit.saga.Saga._request>` asks :func:`run_observers` for them when a
run starts. Two sources feed it, both owned by ``sagakit.telemetry``:

* factories added with :func:`add_factory` (``sagakit.telemetry.instrument()`` with no
  sagas, the ``SagakitInstrumentor``): while one is registered, automatic telemetry steps
  aside;
* automatic telemetry: spans and metrics through OpenTelemetry's global providers, log
  events through structlog, each only while the application has set that back end up (an
  SDK provider installed, ``structlog.configure`` called).

This module stays light: ``import sagakit`` must not import OpenTelemetry. Whether anyone
listens is read at every run from the OpenTelemetry modules already imported (an application
that installed a provider has imported them): OpenTelemetry's ``_TRACER_PROVIDER`` and
``_METER_PROVIDER`` globals and structlog's configuration flag, read directly, since the
public getters cost more than the rest of this check. The telemetry behind them is rebuilt
only when one of them changed, so a run where nobody listens pays for a few attribute reads
and identity checks, and gets no observer.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from sagakit._checks import describe

if TYPE_CHECKING:
    from sagakit.events import Observer
    from sagakit.saga import Saga

__all__ = ["Factory", "add_factory", "automatic_enabled", "run_observers", "set_automatic"]

#: Builds a run's process-wide observers: ``factory(saga, observers)`` with the observers the
#: run already has; returns the ones to add (an empty tuple when it has nothing to add).
Factory = Callable[["Saga", tuple["Observer", ...]], tuple["Observer", ...]]

_factories: list[Factory] = []


def add_factory(factory: Factory) -> Callable[[], None]:
    """Show every run of every saga to what ``factory`` builds; returns the undo."""
    _factories.append(factory)

    def remove() -> None:
        if factory in _factories:
            _factories.remove(factory)

    return remove


class _Automatic:
    """Automatic telemetry's state: on or off, and the back ends seen at the last check."""

    __slots__ = ("build", "configured", "enabled", "meter_provider", "metrics", "observers", "structlog", "trace",
                 "tracer_provider")

    def __init__(self) -> None:
        self.enabled = True
        # The modules holding the global providers and structlog's configuration, once imported.
        self.trace: Any = None
        self.metrics: Any = None
        self.structlog: Any = None
        # The back ends seen at the last check, and what listens to them (None: nobody).
        self.tracer_provider: Any = None
        self.meter_provider: Any = None
        self.configured = False
        self.observers: Factory | None = None
        self.build: Callable[[Any, Any, bool], Factory | None] | None = None


_AUTO = _Automatic()
_NOTHING: tuple[Any, ...] = ()
_modules = sys.modules


def set_automatic(enabled: bool) -> bool:
    """Turn automatic telemetry on or off for the process; returns the previous setting."""
    if not isinstance(enabled, bool):
        raise TypeError(f"telemetry.automatic enabled: expected True, False or None, got {describe(enabled)}")
    previous, _AUTO.enabled = _AUTO.enabled, enabled
    return previous


def automatic_enabled() -> bool:
    """Whether automatic telemetry is on (it is unless :func:`set_automatic` turned it off)."""
    return _AUTO.enabled


def _rebuild(state: _Automatic, tracer_provider: Any, meter_provider: Any, configured: bool) -> None:
    state.tracer_provider, state.meter_provider, state.configured = tracer_provider, meter_provider, configured
    state.observers = None
    if tracer_provider is None and meter_provider is None and not configured:
        return
    if state.build is None:
        from sagakit.telemetry._automatic import build

        state.build = build
    state.observers = state.build(tracer_provider, meter_provider, configured)


def run_observers(saga: Saga, observers: Iterable[Observer]) -> tuple[Observer, ...]:
    """A run's observers: ``observers`` (the saga's and the run's own), then the process's."""
    given = tuple(observers) if observers else _NOTHING
    if _factories:
        extra: tuple[Observer, ...] = ()
        for factory in tuple(_factories):
            extra += factory(saga, given)
        return given + extra if extra else given
    state = _AUTO
    if not state.enabled:
        return given
    # Every run reads the installed providers afresh (a few attribute reads, no call, no
    # import: this is the cost of a run nobody listens to), and rebuilds only on a change.
    trace = state.trace
    if trace is None:
        trace = state.trace = _modules.get("opentelemetry.trace")
    metrics = state.metrics
    if metrics is None:
        metrics = state.metrics = _modules.get("opentelemetry.metrics._internal")
    config = state.structlog
    if config is None:
        module = _modules.get("structlog._config")
        config = state.structlog = getattr(module, "_CONFIG", None)
    tracer_provider = trace._TRACER_PROVIDER if trace is not None else None
    meter_provider = metrics._METER_PROVIDER if metrics is not None else None
    configured = config is not None and config.is_configured
    if (
        tracer_provider is not state.tracer_provider
        or meter_provider is not state.meter_provider
        or configured is not state.configured
    ):
        _rebuild(state, tracer_provider, meter_provider, configured)
    make = state.observers
    if make is None:
        return given
    extra = make(saga, given)
    return given + extra if extra else given
