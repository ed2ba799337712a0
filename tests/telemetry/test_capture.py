"""SpanCapture and spans_frame: spans as a DataFrame, and the Telemetry facade."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pandas as pd
import pytest
from structlog.testing import capture_logs
from telemetry_support import failing, noop_step

import sagakit
from sagakit.telemetry import SPAN_COLUMNS, SpanCapture, Telemetry, instrument


class TestSpanCapture:
    """An SDK pipeline of its own, read as a DataFrame."""

    async def test_frame_has_the_documented_columns_and_tree(self) -> None:
        """name, parent, start, end, duration_ms, status, attributes (then events and ids), by start."""
        saga = sagakit.Saga("order", [noop_step("a"), sagakit.step(failing(ValueError("x")), name="b")])
        with SpanCapture(saga) as capture:
            run = await saga.run({})
        frame = capture.frame()
        assert list(frame.columns) == list(SPAN_COLUMNS)
        assert list(frame.columns[:7]) == ["name", "parent", "start", "end", "duration_ms", "status", "attributes"]
        assert frame["name"].tolist() == ["order.execute", "a.forward", "b.forward", "a.compensate"]
        assert frame["parent"].tolist()[1:] == ["order.execute"] * 3
        assert pd.isna(frame["parent"].iloc[0])
        assert frame["status"].tolist() == ["ERROR", "UNSET", "ERROR", "UNSET"]
        assert str(frame["start"].dtype) == "datetime64[ns, UTC]"
        assert (frame["end"] >= frame["start"]).all()
        assert frame["duration_ms"].iloc[0] == pytest.approx((frame["end"].iloc[0] - frame["start"].iloc[0]).total_seconds() * 1000)
        assert frame["attributes"].iloc[0]["sagakit.run_id"] == run.run_id
        assert frame["events"].iloc[2] == ["exception"]
        assert frame["parent_id"].iloc[1] == frame["span_id"].iloc[0]

    async def test_close_detaches_but_keeps_the_spans(self) -> None:
        """After the with block new runs are not captured; the captured ones stay readable."""
        saga = sagakit.Saga("order", [noop_step("a")])
        with SpanCapture(saga) as capture:
            await saga.run({})
        await saga.run({})
        assert len(capture.frame()) == 2
        assert saga.observers == []

    async def test_frame_of_one_run(self) -> None:
        """frame(run) keeps that run's spans only; clear() forgets everything."""
        saga = sagakit.Saga("order", [noop_step("a")])
        capture = SpanCapture(saga)
        first = await saga.run({})
        await saga.run({})
        assert len(capture.frame()) == 4
        assert len(capture.frame(first)) == 2
        assert len(capture.frame(first.run_id)) == 2
        capture.clear()
        assert capture.frame().empty and list(capture.frame().columns) == list(SPAN_COLUMNS)
        capture.close()

    async def test_as_a_per_run_observer(self) -> None:
        """A capture is an observer: pass it for one run."""
        saga = sagakit.Saga("order", [noop_step("a")])
        capture = SpanCapture()
        await saga.run({}, observers=[capture])
        assert capture.frame()["name"].tolist() == ["order.execute", "a.forward"]
        assert repr(capture) == "<SpanCapture 2 spans>"

    def test_set_global_installs_only_when_asked_and_only_once(self) -> None:
        """set_global=True makes it the global provider; a second one is refused with a clear error."""
        script = textwrap.dedent(
            """
            from opentelemetry import trace
            from sagakit.telemetry import SpanCapture
            SpanCapture()
            assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
            capture = SpanCapture(set_global=True)
            assert trace.get_tracer_provider() is capture.provider
            try:
                SpanCapture(set_global=True)
            except RuntimeError as exc:
                print("refused:", "already installed" in str(exc))
            """
        )
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "refused: True"


class TestTelemetry:
    """instrument() and Telemetry put the three sinks together."""

    async def test_instrument_attaches_every_sink_and_detaches(
        self, tracer_provider: Any, span_exporter: Any, meter_provider: Any, metric_reader: Any
    ) -> None:
        """One call: spans, metrics and logs; detach() removes all three."""
        saga = sagakit.Saga("order", [noop_step("a")])
        telemetry = instrument(saga, tracer_provider=tracer_provider, meter_provider=meter_provider)
        assert len(saga.observers) == 3
        with capture_logs() as logs:
            await saga.run({})
        assert [span.name for span in span_exporter.get_finished_spans()] == ["a.forward", "order.execute"]
        assert metric_reader.get_metrics_data() is not None
        assert logs[0]["event"] == "saga_started"
        telemetry.detach()
        assert saga.observers == []

    async def test_sinks_can_be_switched_off(self, tracer_provider: Any, span_exporter: Any) -> None:
        """traces/metrics/logs=False leave that sink out; with-block detaches."""
        saga = sagakit.Saga("order", [noop_step("a")])
        with instrument(saga, tracer_provider=tracer_provider, metrics=False, logs=False) as telemetry:
            assert telemetry.metrics is None and telemetry.logs is None
            assert saga.observers == [telemetry.tracing]
            with capture_logs() as logs:
                await saga.run({})
        assert logs == []
        assert len(span_exporter.get_finished_spans()) == 2
        assert saga.observers == []

    async def test_telemetry_as_a_per_run_observer(self, tracer_provider: Any, span_exporter: Any) -> None:
        """A Telemetry passed to run(observers=...) feeds every sink for that run."""
        saga = sagakit.Saga("order", [noop_step("a")])
        telemetry = Telemetry(tracer_provider=tracer_provider, metrics=False)
        with capture_logs() as logs:
            await saga.run({}, observers=[telemetry])
        assert len(span_exporter.get_finished_spans()) == 2
        assert logs[-1]["event"] == "saga_finished"
        assert repr(telemetry) == "<Telemetry OtelTracing, StructlogEvents>"

    async def test_a_broken_sink_does_not_silence_the_others(self, tracer_provider: Any, span_exporter: Any) -> None:
        """Sinks are attached separately: when one raises, the engine drops it alone."""
        saga = sagakit.Saga("order", [noop_step("a"), noop_step("b")])

        class Broken:
            def info(self, *args: Any, **kwargs: Any) -> None:
                raise OSError("disk full")

            debug = warning = error = info

        telemetry = instrument(saga, tracer_provider=tracer_provider, metrics=False, logger=Broken())
        with pytest.warns(RuntimeWarning, match="disk full"):
            await saga.run({})
        assert len(span_exporter.get_finished_spans()) == 3
        assert telemetry.logs is not None and telemetry.logs.open_runs == 0
