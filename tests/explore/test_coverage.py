"""Coverage of failure points: the DataFrame, the terminal table and the diagram overlay."""

from __future__ import annotations

import importlib.util
import re
from typing import Any

from explore_shop import ORDER, Shop, Trail, no_money_without_an_order, order_saga, trail_saga
from pivot_shop import checkout_saga
from testsupport import require

from sagakit.explore import COVERAGE_STATUSES, Coverage, explore
from sagakit.notebook.diagram import find_renderer


async def order_coverage() -> Coverage:
    exploration = await explore(
        order_saga(), ORDER, world=Shop, invariant=no_money_without_an_order,
        modes=("fail", "fail_after", "fail_compensation", "cancel"), progress=False,
    )
    return exploration.coverage


class TestFrame:
    async def test_one_row_per_failure_point_with_counts_and_status(self) -> None:
        """Forward modes on every step, compensation modes only where a compensation exists;
        the lost charge response is the violated point."""
        coverage = await order_coverage()
        frame = coverage.frame
        assert list(frame.columns) == ["step", "kind", "phase", "mode", "scheduled", "fired", "violations", "stuck",
                                       "completed", "status"]
        points = set(zip(frame["step"], frame["mode"], strict=True))
        assert ("ship_order", "fail_compensation") not in points  # no compensation to fail
        assert len(frame) == 3 * 3 + 2
        assert coverage.status("charge_payment", "fail_after") == "violated"
        assert coverage.status("charge_payment", "cancel") == "violated"
        assert coverage.status("reserve_inventory", "fail") == "explored"
        assert coverage.status("ship_order", "fail_compensation") == "n/a"
        assert set(frame["status"]) <= set(COVERAGE_STATUSES)
        row = frame[(frame["step"] == "charge_payment") & (frame["mode"] == "fail_after")].iloc[0]
        assert (row["scheduled"], row["fired"], row["violations"]) == (1, 1, 1)

    async def test_never_reached_and_not_explored_points(self) -> None:
        """A fault planned behind an earlier failure never fires; a compensation of the last
        stage has no exhaustive scenario at all."""
        saga = trail_saga("abc")
        exploration = await explore(saga, {}, world=Trail, modes=("fail", "fail_compensation"), progress=False)
        assert exploration.coverage.status("c", "fail_compensation") == "not explored"
        behind = await exploration.replay({"a": "fail", "b": "fail_compensation"})
        coverage = Coverage(saga, exploration.modes, [*exploration.results, behind])
        assert coverage.status("b", "fail_compensation") == "explored"  # its own single fired
        lonely = Coverage(saga, exploration.modes, [behind])
        assert lonely.status("b", "fail_compensation") == "never reached"
        assert lonely.status("a", "fail") == "explored"
        assert lonely.counts() == {"violated": 0, "stuck": 0, "explored": 1, "never reached": 1, "not explored": 4}

    async def test_extra_faults_of_a_violating_schedule_are_not_blamed(self) -> None:
        """A point that only rode along with the real cause in a violating schedule stays
        ``explored``: the smaller violating schedule explains the violation."""
        saga = order_saga()
        exploration = await explore(
            saga, ORDER, world=Shop, invariant=no_money_without_an_order, modes=("fail_after", "cancel_compensation"),
            progress=False,
        )
        both = await exploration.replay({"reserve_inventory": "cancel_compensation", "charge_payment": "fail_after"})
        assert both.violated
        coverage = Coverage(saga, exploration.modes, [*exploration.results, both])
        assert coverage.status("reserve_inventory", "cancel_compensation") == "explored"


class TestDisplay:
    async def test_the_terminal_table_marks_violations(self) -> None:
        """The text form has a summary line and one row per step, ``VIOLATED`` in capitals."""
        text = (await order_coverage()).to_text()
        lines = text.splitlines()
        assert lines[0] == (
            "Coverage of saga 'order': 11 of 11 failure points exercised (2 violated), 0 never reached, 0 not explored"
        )
        assert re.match(r"charge_payment +explored +VIOLATED +explored +VIOLATED$", lines[4])
        assert re.match(r"ship_order +explored +explored +- +explored$", lines[5])

    async def test_the_overlay_colours_the_saga_diagram(self) -> None:
        """The saga's own SVG, its step nodes and compensation edges classed by coverage, with
        per-mode details on hover and a legend in the HTML."""
        require(find_renderer() is not None, "a Graphviz renderer (dot or graphviz-pure)")
        coverage = await order_coverage()
        svg = coverage.to_svg()
        assert svg is not None
        assert re.search(r'<g id="step(?:-|&#45;)charge_payment" class="[^"]*\bcoverage-violated"><title>', svg)
        assert re.search(r'<g id="step(?:-|&#45;)reserve_inventory" class="[^"]*\bcoverage-explored">', svg)
        assert re.search(r'<g id="undo(?:-|&#45;)charge_payment" class="[^"]*\bcoverage-explored">', svg)
        assert "fail_after: violated (1 of 1 scenarios fired, 1 violated)" in svg
        bundle = coverage._repr_mimebundle_()
        assert bundle["text/plain"] == coverage.to_text()
        assert 'class="sagakit-coverage"' in bundle["text/html"] and "never reached" in bundle["text/html"]


    async def test_the_overlay_fills_the_step_boxes_the_diagram_draws(self) -> None:
        """The overlay's rules select the shapes the diagram really emits: each step's box (a
        rounded path) takes its coverage fill, its text the dark ink that reads on it, and a
        compensation edge its coverage colour; a pivot's second outline stays unfilled."""
        require(find_renderer() is not None, "a Graphviz renderer (dot or graphviz-pure)")
        require(importlib.util.find_spec("bs4") is not None and importlib.util.find_spec("tinycss2") is not None,
                "beautifulsoup4 and tinycss2 (pip install sagakit[lab])")
        svg = (await order_coverage()).to_svg()
        assert svg is not None
        painted = _overlay_paint(svg)
        box = _first_shape(svg, "step-charge_payment")
        assert box.name == "path"  # graphviz draws a rounded box as a path
        assert painted.get(id(box)) == {"fill": "#fecaca", "stroke": "#b91c1c"}
        assert painted.get(id(_first_shape(svg, "step-reserve_inventory")), {}).get("fill") == "#dcfce7"
        for text in _node(svg, "step-charge_payment").find_all("text"):
            assert painted.get(id(text)) == {"fill": "#1f2933"}
        edge = _first_shape(svg, "undo-charge_payment")
        assert painted.get(id(edge)) == {"stroke": "#15803d"}
        pivot = Coverage(checkout_saga(), ("fail",), []).to_svg()
        assert pivot is not None
        painted = _overlay_paint(pivot)
        outline, second = _node(pivot, "step-capture").find_all("path", recursive=False)
        assert painted.get(id(outline), {}).get("fill") == "#f3f4f6"
        assert id(second) not in painted


def _soup(svg: str) -> Any:
    from bs4 import BeautifulSoup

    cached = _SOUPS.get(svg)
    if cached is None:
        cached = _SOUPS[svg] = BeautifulSoup(svg, "html.parser")
    return cached


_SOUPS: dict[str, Any] = {}


def _node(svg: str, element_id: str) -> Any:
    return _soup(svg).find("g", id=element_id)


def _first_shape(svg: str, element_id: str) -> Any:
    return _node(svg, element_id).find(["path", "polygon", "ellipse"], recursive=False)


def _overlay_paint(svg: str) -> dict[int, dict[str, str]]:
    """What the overlay's own style sheet (the first in the SVG) sets on each element it
    selects, matched by a real CSS selector engine."""
    import tinycss2

    soup = _soup(svg)
    painted: dict[int, dict[str, str]] = {}
    for rule in tinycss2.parse_stylesheet(soup.find("style").string, skip_whitespace=True, skip_comments=True):
        selector = tinycss2.serialize(rule.prelude).strip()
        declarations = tinycss2.parse_declaration_list(rule.content, skip_whitespace=True, skip_comments=True)
        values = {d.name: tinycss2.serialize(d.value).strip() for d in declarations if d.type == "declaration"}
        for element in soup.select(selector):
            painted.setdefault(id(element), {}).update(values)
    return painted


def undo_of_b_failed(world: Trail, run: object) -> None:
    """Violated whenever b's compensation failed."""
    events = getattr(run, "events", ())
    failed = {e.step for e in events if e.kind.value == "compensation_failed"}
    assert "b" not in failed, "b's compensation failed"


class TestViolationCounts:
    async def test_scenarios_a_smaller_violating_schedule_explains_are_not_counted(self) -> None:
        """``violations`` counts what the docs say: violating scenarios where the point fired and no smaller
        violating schedule explains the violation. A larger schedule that contains the cause counts for
        nothing, for the cause's point as for its extra faults."""
        saga = trail_saga("abc", continue_on_compensation_failure=True)
        exploration = await explore(saga, {}, world=Trail, invariant=undo_of_b_failed,
                                    modes=("fail", "fail_compensation"), progress=False)
        cause = await exploration.replay({"b": "fail_compensation", "c": "fail"})
        larger = await exploration.replay({"a": "fail_compensation", "b": "fail_compensation", "c": "fail"})
        assert cause.violated and larger.violated
        assert {e.step for e in larger.run.events if e.injected} - {None} == {"a", "b", "c"}  # every fault fired
        coverage = Coverage(saga, exploration.modes, [*exploration.results, larger])
        frame = coverage.frame.set_index(["step", "mode"])
        assert frame.loc[("b", "fail_compensation"), "violations"] == 1  # the single scenario, not the larger one
        assert frame.loc[("b", "fail_compensation"), "fired"] == 2
        assert frame.loc[("a", "fail_compensation"), "violations"] == 0
        assert coverage.status("a", "fail_compensation") == "explored"
        assert coverage.status("b", "fail_compensation") == "violated"
