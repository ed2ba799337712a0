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
listens is decided from the OpenTelemetry modules already imported (an application that
installed a provider has imported them) and read again only when a global provider or
structlog's configuration changed, so a run where nobody listens pays for a few attribute
reads and identity checks, and gets no observer.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

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

    __slots__ = ("build", "enabled", "key", "observers", "structlog")

    def __init__(self) -> None:
        self.enabled = True
        # (tracer provider, meter provider, structlog configured) when last checked.
        self.key: tuple[Any, Any, bool] = (None, None, False)
        # What listens for that key: None when nobody does.
        self.observers: Callable[[Saga, tuple[Observer, ...]], tuple[Observer, ...]] | None = None
        self.build: Callable[[Any, Any, bool], Any] | None = None  # sagakit.telemetry's, once imported
        self.structlog: Any = None


_AUTO = _Automatic()
_NOTHING: tuple[Any, ...] = ()


def set_automatic(enabled: bool) -> bool:
    """Turn automatic telemetry on or off for the process; returns the previous setting."""
    if not isinstance(enabled, bool):
        raise TypeError(f"automatic telemetry: expected a bool, got {enabled!r}")
    previous, _AUTO.enabled = _AUTO.enabled, enabled
    return previous


def automatic_enabled() -> bool:
    """Whether automatic telemetry is on (it is unless :func:`set_automatic` turned it off)."""
    return _AUTO.enabled


def _providers() -> tuple[Any, Any, bool]:
    """The global tracer and meter providers as installed (``None`` when none is), and whether
    structlog is configured; read from the modules without importing any."""
    modules = sys.modules
    trace = modules.get("opentelemetry.trace")
    tracer_provider = getattr(trace, "_TRACER_PROVIDER", None) if trace is not None else None
    internal = modules.get("opentelemetry.metrics._internal")
    meter_provider = getattr(internal, "_METER_PROVIDER", None) if internal is not None else None
    structlog = _AUTO.structlog
    if structlog is None:
        structlog = _AUTO.structlog = modules.get("structlog")
    configured = structlog is not None and structlog.is_configured()
    return tracer_provider, meter_provider, configured


def _automatic(saga: Saga, observers: tuple[Observer, ...]) -> tuple[Observer, ...]:
    key = _providers()
    cached = _AUTO.key
    if key[0] is not cached[0] or key[1] is not cached[1] or key[2] is not cached[2]:
        _AUTO.key = key
        _AUTO.observers = None
        if key != (None, None, False):
            if _AUTO.build is None:
                from sagakit.telemetry._automatic import build

                _AUTO.build = build
            _AUTO.observers = _AUTO.build(*key)
    make = _AUTO.observers
    return _NOTHING if make is None else make(saga, observers)


def run_observers(saga: Saga, observers: Iterable[Observer]) -> tuple[Observer, ...]:
    """A run's observers: ``observers`` (the saga's and the run's own), then the process's."""
    given = tuple(observers)
    if _factories:
        extra: tuple[Observer, ...] = ()
        for factory in tuple(_factories):
            extra += factory(saga, given)
        return given + extra if extra else given
    if _AUTO.enabled:
        extra = _automatic(saga, given)
        if extra:
            return given + extra
    return given
