"""OpenTelemetry metrics from the event stream, named as the seed's Prometheus series.

With the ``opentelemetry-exporter-prometheus`` reader the instruments are exposed as:

==================================================  =========================================
series                                              what
==================================================  =========================================
``compensation_total{primitive}``                   compensation attempts run (a counter)
``compensation_failures_total{primitive}``          compensation attempts that raised
``compensation_duration_seconds{step}``             compensation time (a histogram)
``sagakit_runs_total{saga,status}``                 finished runs by outcome
``sagakit_run_duration_seconds{saga,status}``       run time (a histogram)
``sagakit_step_duration_seconds{saga,step,phase,status}``  every attempt's time (a histogram)
==================================================  =========================================

``primitive`` is the saga's name, as in the seed. Attributes are low-cardinality by design:
never a run id or a correlation id. The exporter adds ``otel_scope_name`` and
``otel_scope_version`` labels unless it is built with ``scope_info_enabled=False``.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics

from sagakit._version import __version__
from sagakit.events import Event, EventKind
from sagakit.telemetry._common import Sink

__all__ = ["DURATION_BUCKETS", "OtelMetrics"]

_K = EventKind

#: Histogram bucket bounds in seconds: from a local call (1 ms) to a slow remote one (1 min).
DURATION_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)

_ATTRIBUTE_CACHE_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class _Instruments:
    compensations: metrics.Counter
    compensation_failures: metrics.Counter
    compensation_duration: metrics.Histogram
    runs: metrics.Counter
    run_duration: metrics.Histogram
    step_duration: metrics.Histogram


# One set of instruments per meter: the SDK warns when an instrument is created twice.
_BY_METER: weakref.WeakKeyDictionary[Any, dict[tuple[float, ...], _Instruments]] = weakref.WeakKeyDictionary()


def _instruments(meter: metrics.Meter, buckets: tuple[float, ...]) -> _Instruments:
    try:
        per_meter = _BY_METER.setdefault(meter, {})
    except TypeError:  # a meter that cannot be weakly referenced: build afresh
        per_meter = {}
    found = per_meter.get(buckets)
    if found is not None:
        return found
    advisory = list(buckets)
    created = _Instruments(
        compensations=meter.create_counter(
            "compensation", unit="{compensation}", description="Compensation attempts run, by saga (primitive)."
        ),
        compensation_failures=meter.create_counter(
            "compensation_failures",
            unit="{compensation}",
            description="Compensation attempts that raised, by saga (primitive).",
        ),
        compensation_duration=meter.create_histogram(
            "compensation_duration",
            unit="s",
            description="How long compensation attempts took, by step.",
            explicit_bucket_boundaries_advisory=advisory,
        ),
        runs=meter.create_counter("sagakit.runs", unit="{run}", description="Finished saga runs, by outcome."),
        run_duration=meter.create_histogram(
            "sagakit.run.duration",
            unit="s",
            description="How long saga runs took, rollback included, by outcome.",
            explicit_bucket_boundaries_advisory=advisory,
        ),
        step_duration=meter.create_histogram(
            "sagakit.step.duration",
            unit="s",
            description="How long each step attempt and compensation attempt took.",
            explicit_bucket_boundaries_advisory=advisory,
        ),
    )
    per_meter[buckets] = created
    return created


class OtelMetrics(Sink):
    """An observer that records saga metrics through the OpenTelemetry metrics API.

    See the module docstring for the instruments and their Prometheus names. Durations come
    from the events (the event loop's clock), recorded in seconds.

    Args:
        meter_provider: where measurements go; the global provider when ``None``.
            sagakit never installs one.
        buckets: histogram bucket bounds in seconds (an advisory the SDK honours unless a
            view overrides it); default :data:`DURATION_BUCKETS`.
    """

    def __init__(
        self,
        meter_provider: metrics.MeterProvider | None = None,
        *,
        buckets: Sequence[float] = DURATION_BUCKETS,
    ) -> None:
        super().__init__()
        if meter_provider is not None and not isinstance(meter_provider, metrics.MeterProvider):
            raise TypeError(
                f"OtelMetrics meter_provider: expected an opentelemetry MeterProvider or None, got {meter_provider!r}"
            )
        bounds = tuple(buckets)
        if not bounds or any(isinstance(b, bool) or not isinstance(b, int | float) for b in bounds) or list(
            bounds
        ) != sorted(set(bounds)):
            raise ValueError(f"OtelMetrics buckets: expected increasing numbers of seconds, got {buckets!r}")
        self.meter = metrics.get_meter("sagakit", __version__, meter_provider=meter_provider)
        self.instruments = _instruments(self.meter, tuple(float(b) for b in bounds))
        # Attribute dicts by (saga, step, phase, status), built on first use: an event then costs
        # one lookup before the SDK calls. (The SDK copies and hashes attributes on every
        # record whatever is passed, so the dicts are shared safely.)
        self._plans: dict[tuple[str, str, str, str], _Plan] = {}
        self._run_attributes: dict[tuple[str, str], dict[str, str]] = {}
        self._primitives: dict[str, dict[str, str]] = {}

    def __call__(self, event: Event, /) -> None:
        kind = event.kind
        if kind not in _RECORDED:
            return
        instruments = self.instruments
        status = event.status or ""
        seconds = (event.duration_ms or 0.0) / 1000.0
        if kind is _K.RUN_FINISHED:
            key = (event.saga, status)
            attributes = self._run_attributes.get(key)
            if attributes is None:
                attributes = {"saga": event.saga, "status": status}
                if len(self._run_attributes) < _ATTRIBUTE_CACHE_LIMIT:
                    self._run_attributes[key] = attributes
            instruments.runs.add(1, attributes)
            instruments.run_duration.record(seconds, attributes)
            return
        plan = self._plans.get((event.saga, event.step or "", event.phase or "", status))
        if plan is None:
            plan = self._plan(event.saga, event.step or "", event.phase or "", status)
        instruments.step_duration.record(seconds, plan.step)
        primitive = plan.primitive
        if primitive is None:
            return
        instruments.compensations.add(1, primitive)
        if kind is _K.COMPENSATION_FAILED:
            instruments.compensation_failures.add(1, primitive)
        if kind is not _K.COMPENSATION_CANCELLED:
            instruments.compensation_duration.record(seconds, plan.by_step)

    def _plan(self, saga: str, step: str, phase: str, status: str) -> _Plan:
        primitive: dict[str, str] | None = None
        if phase == "compensate":
            primitive = self._primitives.get(saga)
            if primitive is None:
                primitive = {"primitive": saga}
                # Start the failure series at 0 so that rate() and alerts see it before a failure.
                self.instruments.compensation_failures.add(0, primitive)
                if len(self._primitives) < _ATTRIBUTE_CACHE_LIMIT:
                    self._primitives[saga] = primitive
        plan = _Plan({"saga": saga, "step": step, "phase": phase, "status": status}, primitive, {"step": step})
        if len(self._plans) < _ATTRIBUTE_CACHE_LIMIT:
            self._plans[(saga, step, phase, status)] = plan
        return plan


@dataclass(frozen=True, slots=True)
class _Plan:
    """The attribute dicts one kind of attempt end records with."""

    step: dict[str, str]
    primitive: dict[str, str] | None  # None unless a compensation
    by_step: dict[str, str]


_RECORDED = frozenset(
    {
        _K.STEP_SUCCEEDED,
        _K.STEP_FAILED,
        _K.STEP_CANCELLED,
        _K.COMPENSATION_SUCCEEDED,
        _K.COMPENSATION_FAILED,
        _K.COMPENSATION_CANCELLED,
        _K.RUN_FINISHED,
    }
)
