"""OtelMetrics: the seed's series, read in memory and through the Prometheus exposition text."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from telemetry_support import failing, module_available, noop_step
from testsupport import require

import sagakit
from sagakit.telemetry import OtelMetrics


def order_saga(*, keep_going: bool = False) -> sagakit.Saga:
    """The seed's order saga shape: reserve, charge, ship; all compensable."""
    return sagakit.Saga(
        "OrderWorkflow",
        [noop_step("reserve_inventory"), noop_step("charge_payment"), noop_step("ship_order")],
        continue_on_compensation_failure=keep_going,
    )


def points(reader: Any) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    """metric name -> [(attributes, value or histogram count)] from an in-memory reader."""
    found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "sagakit"
            for metric in scope.metrics:
                found[metric.name] = [
                    (dict(point.attributes), point.value if hasattr(point, "value") else point.count)
                    for point in metric.data.data_points
                ]
    return found


class TestInMemory:
    """What the SDK's in-memory reader sees."""

    async def test_rollback_counts_compensations_by_saga_and_times_them_by_step(
        self, meter_provider: Any, metric_reader: Any
    ) -> None:
        """ship_order fails: two compensations for the saga, none failed, one duration per step."""
        saga = order_saga()
        OtelMetrics(meter_provider).attach(saga)
        await saga.run({}, faults={"ship_order": "fail"})
        found = points(metric_reader)
        assert found["compensation"] == [({"primitive": "OrderWorkflow"}, 2)]
        assert found["compensation_failures"] == [({"primitive": "OrderWorkflow"}, 0)]
        assert sorted((attrs["step"], count) for attrs, count in found["compensation_duration"]) == [
            ("charge_payment", 1),
            ("reserve_inventory", 1),
        ]
        assert found["sagakit.runs"] == [({"saga": "OrderWorkflow", "status": "compensated"}, 1)]
        assert found["sagakit.run.duration"] == [({"saga": "OrderWorkflow", "status": "compensated"}, 1)]
        assert sorted(
            (attrs["step"], attrs["phase"], attrs["status"], count) for attrs, count in found["sagakit.step.duration"]
        ) == [
            ("charge_payment", "compensate", "succeeded", 1),
            ("charge_payment", "forward", "succeeded", 1),
            ("reserve_inventory", "compensate", "succeeded", 1),
            ("reserve_inventory", "forward", "succeeded", 1),
            ("ship_order", "forward", "failed", 1),
        ]

    async def test_failed_compensations_are_counted(self, meter_provider: Any, metric_reader: Any) -> None:
        """A compensation that raises counts in compensation_failures, under both policies."""
        for keep_going in (False, True):
            saga = order_saga(keep_going=keep_going)
            OtelMetrics(meter_provider).attach(saga)
            await saga.run({}, faults={"charge_payment": "fail_compensation", "ship_order": "fail"})
        found = points(metric_reader)
        # stop: charge's compensation only; continue: charge's and reserve's.
        assert found["compensation"] == [({"primitive": "OrderWorkflow"}, 3)]
        assert found["compensation_failures"] == [({"primitive": "OrderWorkflow"}, 2)]
        assert found["sagakit.runs"] == [({"saga": "OrderWorkflow", "status": "compensation_failed"}, 2)]

    async def test_runs_are_counted_by_outcome_and_never_by_run_id(self, meter_provider: Any, metric_reader: Any) -> None:
        """Three runs, two outcomes: two series; no attribute names a run or a correlation id."""
        saga = order_saga()
        OtelMetrics(meter_provider).attach(saga)
        await saga.run({}, sagakit.WorkflowContext(correlation_id="c-1"))
        await saga.run({}, sagakit.WorkflowContext(correlation_id="c-2"))
        await saga.run({}, faults={"reserve_inventory": "fail"})
        found = points(metric_reader)
        assert sorted((attrs["status"], count) for attrs, count in found["sagakit.runs"]) == [
            ("compensated", 1),
            ("completed", 2),
        ]
        keys = {key for series in found.values() for attrs, _ in series for key in attrs}
        assert keys == {"step", "saga", "status", "phase"}

    async def test_cached_attributes_stay_right_across_sagas_steps_and_outcomes(
        self, meter_provider: Any, metric_reader: Any
    ) -> None:
        """One sink, two sagas sharing step names, runs with different outcomes: every series exact."""
        sink = OtelMetrics(meter_provider)
        first = sagakit.Saga("first", [noop_step("a"), noop_step("b")])
        second = sagakit.Saga("second", [noop_step("b"), noop_step("a")])
        sink.attach(first)
        sink.attach(second)
        for _ in range(2):  # the second round is served from the cache
            await first.run({})
            await first.run({}, faults={"b": "fail"})
            await second.run({}, faults={"a": "fail", "b": "fail_compensation"})
        found = points(metric_reader)
        assert sorted((attrs["primitive"], count) for attrs, count in found["compensation"]) == [
            ("first", 2),
            ("second", 2),
        ]
        assert sorted((attrs["primitive"], count) for attrs, count in found["compensation_failures"]) == [
            ("first", 0),
            ("second", 2),
        ]
        assert sorted((attrs["step"], count) for attrs, count in found["compensation_duration"]) == [
            ("a", 2),
            ("b", 2),
        ]
        assert sorted(
            (attrs["saga"], attrs["step"], attrs["phase"], attrs["status"], count)
            for attrs, count in found["sagakit.step.duration"]
        ) == [
            ("first", "a", "compensate", "succeeded", 2),
            ("first", "a", "forward", "succeeded", 4),
            ("first", "b", "forward", "failed", 2),
            ("first", "b", "forward", "succeeded", 2),
            ("second", "a", "forward", "failed", 2),
            ("second", "b", "compensate", "failed", 2),
            ("second", "b", "forward", "succeeded", 2),
        ]
        assert sorted((attrs["saga"], attrs["status"], count) for attrs, count in found["sagakit.runs"]) == [
            ("first", "compensated", 2),
            ("first", "completed", 2),
            ("second", "compensation_failed", 2),
        ]

    def test_one_set_of_instruments_per_meter(self, meter_provider: Any) -> None:
        """Two sinks on one provider share instruments (the SDK warns about duplicates)."""
        assert OtelMetrics(meter_provider).instruments is OtelMetrics(meter_provider).instruments

    def test_rejects_bad_buckets_and_providers(self) -> None:
        """Bucket bounds must increase; the provider must be a MeterProvider."""
        with pytest.raises(ValueError, match="buckets"):
            OtelMetrics(buckets=[1.0, 0.5])
        with pytest.raises(TypeError, match="meter_provider"):
            OtelMetrics("nope")  # type: ignore[arg-type]


@pytest.fixture
def prometheus() -> Iterator[tuple[Any, Any, Any]]:
    """A Prometheus reader on a registry of the test's own: (registry, meter provider, reader factory)."""
    require(module_available("opentelemetry.exporter.prometheus"), "opentelemetry-exporter-prometheus (sagakit[otel])")
    require(module_available("prometheus_client"), "prometheus-client (sagakit[otel])")
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry, disable_target_info=True, scope_info_enabled=False)
    provider = MeterProvider(metric_readers=[reader])
    yield registry, provider, reader
    provider.shutdown()


def exposition(registry: Any) -> str:
    from prometheus_client import generate_latest

    return str(generate_latest(registry).decode())


def family(text: str, name: str) -> list[str]:
    """The lines of one metric family (HELP, TYPE and samples) in an exposition text."""
    return [line for line in text.splitlines() if re.match(rf"(# (HELP|TYPE) )?{name}(_[a-z]+)?[ {{]", line)]


class TestPrometheusExposition:
    """The seed's PromQL works on what the Prometheus exporter serves."""

    async def test_counters_are_exposed_exactly_as_the_seed_names_them(self, prometheus: Any) -> None:
        """compensation_total and compensation_failures_total, labelled primitive=<saga>."""
        registry, provider, _ = prometheus
        saga = order_saga()
        OtelMetrics(provider).attach(saga)
        await saga.run({}, faults={"ship_order": "fail"})
        await saga.run({}, faults={"charge_payment": "fail_compensation", "ship_order": "fail"})
        text = exposition(registry)
        assert family(text, "compensation_total") == [
            "# HELP compensation_total Compensation attempts run, by saga (primitive).",
            "# TYPE compensation_total counter",
            'compensation_total{primitive="OrderWorkflow"} 3.0',
        ]
        assert family(text, "compensation_failures_total") == [
            "# HELP compensation_failures_total Compensation attempts that raised, by saga (primitive).",
            "# TYPE compensation_failures_total counter",
            'compensation_failures_total{primitive="OrderWorkflow"} 1.0',
        ]
        assert family(text, "sagakit_runs_total") == [
            "# HELP sagakit_runs_total Finished saga runs, by outcome.",
            "# TYPE sagakit_runs_total counter",
            'sagakit_runs_total{saga="OrderWorkflow",status="compensated"} 1.0',
            'sagakit_runs_total{saga="OrderWorkflow",status="compensation_failed"} 1.0',
        ]

    async def test_compensation_duration_is_a_seconds_histogram_by_step(self, prometheus: Any) -> None:
        """compensation_duration_seconds{step=...}: buckets in seconds, a count and a sum per step."""
        registry, provider, _ = prometheus
        saga = order_saga()
        OtelMetrics(provider).attach(saga)
        await saga.run({}, faults={"ship_order": "fail"})
        lines = family(exposition(registry), "compensation_duration_seconds")
        assert lines[:2] == [
            "# HELP compensation_duration_seconds How long compensation attempts took, by step.",
            "# TYPE compensation_duration_seconds histogram",
        ]
        samples = [re.sub(r" \S+$", "", line) for line in lines[2:]]
        bounds = [*(repr(float(b)) for b in sagakit.telemetry.DURATION_BUCKETS), "+Inf"]
        expected = []
        for step in ("charge_payment", "reserve_inventory"):
            expected += [f'compensation_duration_seconds_bucket{{le="{b}",step="{step}"}}' for b in bounds]
            expected += [
                f'compensation_duration_seconds_count{{step="{step}"}}',
                f'compensation_duration_seconds_sum{{step="{step}"}}',
            ]
        assert sorted(samples) == sorted(expected)
        assert 'compensation_duration_seconds_count{step="charge_payment"} 1.0' in lines
        assert 'compensation_duration_seconds_bucket{le="+Inf",step="reserve_inventory"} 1.0' in lines

    async def test_step_and_run_histograms_are_in_seconds(self, prometheus: Any) -> None:
        """sagakit_step_duration_seconds and sagakit_run_duration_seconds, low-cardinality labels."""
        registry, provider, _ = prometheus
        saga = order_saga()
        OtelMetrics(provider).attach(saga)
        await saga.run({})
        text = exposition(registry)
        assert (
            'sagakit_step_duration_seconds_count{phase="forward",saga="OrderWorkflow",status="succeeded",'
            'step="ship_order"} 1.0' in text.splitlines()
        )
        assert 'sagakit_run_duration_seconds_count{saga="OrderWorkflow",status="completed"} 1.0' in text.splitlines()

    async def test_default_reader_adds_only_scope_labels(self) -> None:
        """With the exporter's defaults the series keep their names; scope labels are added."""
        require(module_available("opentelemetry.exporter.prometheus"), "opentelemetry-exporter-prometheus")
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry()
        provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)])
        try:
            saga = order_saga()
            OtelMetrics(provider).attach(saga)
            await saga.run({}, faults={"charge_payment": "fail"})
            assert family(exposition(registry), "compensation_total")[2] == (
                'compensation_total{otel_scope_name="sagakit",otel_scope_schema_url="",'
                f'otel_scope_version="{sagakit.__version__}",primitive="OrderWorkflow"}} 1.0'
            )
        finally:
            provider.shutdown()

    async def test_failing_step_leaves_compensation_failures_at_zero(self, prometheus: Any) -> None:
        """The failure series exists (at 0) as soon as a saga has compensated once."""
        registry, provider, _ = prometheus
        saga = order_saga()
        OtelMetrics(provider).attach(saga)
        await saga.run({}, faults={"charge_payment": "fail"})
        assert 'compensation_failures_total{primitive="OrderWorkflow"} 0.0' in exposition(registry).splitlines()

    async def test_unused_failing_step_saga_has_no_compensation_series(self, prometheus: Any) -> None:
        """A saga that never compensated exports no compensation series at all."""
        registry, provider, _ = prometheus
        saga = sagakit.Saga("quiet", [noop_step("a"), sagakit.step(failing(ValueError()), name="b")])
        OtelMetrics(provider).attach(saga)
        await saga.run({}, faults={"a": "fail"})
        assert family(exposition(registry), "compensation_total") == []
