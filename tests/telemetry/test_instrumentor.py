"""SagakitInstrumentor: zero-code instrumentation through the opentelemetry_instrumentor entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from telemetry_support import module_available, noop_step, require_sdk
from testsupport import require

import sagakit

_APP = """
    import sagakit as sk

    async def reserve(data, context):
        return data

    async def release(data, context):
        return None

    async def ship(data, context):
        raise ValueError("no truck")

    order = sk.Saga("order", [sk.step(reserve, compensate=release), sk.step(ship)])
    print("status:", order.run_sync({}).status, flush=True)
"""


def console_spans(text: str) -> list[dict[str, Any]]:
    """The JSON span documents the console exporter printed, in order."""
    decoder = json.JSONDecoder()
    spans, position = [], text.find("{")
    while position != -1:
        span, end = decoder.raw_decode(text, position)
        spans.append(span)
        position = text.find("{", end)
    return spans


class TestZeroCode:
    """`opentelemetry-instrument python app.py` traces an app that never mentions telemetry."""

    def test_console_exporter_prints_the_saga_span_tree(self, tmp_path: Path) -> None:
        """A real run under opentelemetry-instrument: one trace, order.execute over its steps."""
        require_sdk()
        require(module_available("opentelemetry.instrumentation"), "opentelemetry-instrumentation (sagakit[otel])")
        command = Path(sys.executable).parent / "opentelemetry-instrument"
        require(command.exists(), "the opentelemetry-instrument command (opentelemetry-distro)")
        app = tmp_path / "app.py"
        app.write_text(textwrap.dedent(_APP))
        env = dict(os.environ, OTEL_TRACES_EXPORTER="console", OTEL_METRICS_EXPORTER="none",
                   OTEL_LOGS_EXPORTER="none", OTEL_SERVICE_NAME="shop")
        result = subprocess.run([str(command), sys.executable, str(app)], capture_output=True, text=True,
                                timeout=120, env=env, check=False)
        assert result.returncode == 0, result.stderr
        head, _, exported = result.stdout.partition("status: compensated\n")
        assert head == ""  # structlog is not configured by the app: no log lines either
        spans = console_spans(exported)
        names = {span["context"]["span_id"]: span["name"] for span in spans}
        tree = sorted(
            (span["start_time"], span["name"], names.get(span["parent_id"]), span["status"]["status_code"])
            for span in spans
        )
        assert [row[1:] for row in tree] == [
            ("order.execute", None, "ERROR"),
            ("reserve.forward", "order.execute", "UNSET"),
            ("ship.forward", "order.execute", "ERROR"),
            ("reserve.compensate", "order.execute", "UNSET"),
        ]
        assert len({span["context"]["trace_id"] for span in spans}) == 1
        assert {span["resource"]["attributes"]["service.name"] for span in spans} == {"shop"}


class TestInCode:
    """The instrumentor used by hand, with providers of the test's own."""

    async def test_instrument_and_uninstrument(self, tracer_provider: Any, span_exporter: Any) -> None:
        """instrument() traces every saga, twice is once, uninstrument() stops it."""
        require(module_available("opentelemetry.instrumentation"), "opentelemetry-instrumentation (sagakit[otel])")
        from sagakit.telemetry import SagakitInstrumentor

        saga = sagakit.Saga("order", [noop_step("a")])
        instrumentor = SagakitInstrumentor()
        instrumentor.instrument(tracer_provider=tracer_provider, metrics=False)
        try:
            instrumentor.instrument(tracer_provider=tracer_provider)  # already instrumented: nothing more
            assert instrumentor.telemetry is not None and instrumentor.telemetry.logs is None
            await saga.run({})
        finally:
            instrumentor.uninstrument()
        assert instrumentor.telemetry is None
        await saga.run({})
        assert [span.name for span in span_exporter.get_finished_spans()] == ["a.forward", "order.execute"]
