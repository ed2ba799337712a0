"""Analysis over the RunHistory frames: compensation timings, timelines, distribution plots."""

from __future__ import annotations

import pandas as pd
import pytest

import sagakit
from sagakit.analysis import (
    TIMING_COLUMNS,
    chart_mimebundle,
    compensation_distribution,
    compensation_timings,
    timeline,
    timeline_frame,
)

from .conftest import linear_saga


@pytest.fixture
async def history() -> sagakit.RunHistory:
    saga = linear_saga(4, name="timed")
    saga.faults["s3"] = sagakit.Fault("fail", probability=0.5, seed=11)
    for _ in range(40):
        await saga.run({})
    return saga.history


async def test_compensation_timings_per_step_in_saga_order(history: sagakit.RunHistory) -> None:
    """One row per compensated step, in saga order, with count, mean, p50, p95 and max."""
    timings = history.compensation_timings()
    assert tuple(timings.columns) == TIMING_COLUMNS
    assert list(timings.index) == ["s0", "s1", "s2"]
    failed_runs = int((history.runs["status"] == "compensated").sum())
    assert 0 < failed_runs < 40
    assert (timings["count"] == failed_runs).all()
    steps = history.steps
    expected = steps[(steps["step"] == "s1") & (steps["phase"] == "compensate")]["duration_ms"]
    assert timings.loc["s1", "max"] == pytest.approx(expected.max())
    assert timings.loc["s1", "p95"] == pytest.approx(expected.quantile(0.95))
    assert (timings["p50"] <= timings["p95"]).all() and (timings["p95"] <= timings["max"]).all()


async def test_no_compensations_gives_an_empty_frame() -> None:
    """A history without rollbacks yields an empty frame with the same columns."""
    saga = linear_saga(2, name="calm")
    await saga.run({})
    timings = compensation_timings(saga.history)
    assert timings.empty and tuple(timings.columns) == TIMING_COLUMNS


def test_bad_phase_is_refused() -> None:
    """The phase must be forward or compensate."""
    with pytest.raises(ValueError, match="expected 'forward' or 'compensate'"):
        compensation_timings(sagakit.RunHistory(), phase="backward")


async def test_timeline_has_forward_and_compensation_bars() -> None:
    """A rolled-back run's timeline has forward bars, then compensation bars in reverse order."""
    saga = linear_saga(3, name="gantt")
    run = await saga.run({}, faults={"s2": "fail"})
    frame = timeline_frame(run)
    compensations = frame[frame["phase"] == "compensate"]
    assert list(compensations["step"]) == ["s1", "s0"]
    assert (frame["start_ms"] >= 0).all() and (frame["end_ms"] >= frame["start_ms"]).all()
    spec = run.timeline().to_dict()
    assert spec["mark"]["type"] == "bar" and spec["encoding"]["x2"]["field"] == "end_shown"


async def test_distribution_chart_renders_to_a_static_svg(history: sagakit.RunHistory) -> None:
    """The compensation distribution renders as Vega-Lite and as a static SVG."""
    bundle = chart_mimebundle(compensation_distribution(history))
    assert "<svg" in bundle["image/svg+xml"]
    assert any(key.startswith("application/vnd.vegalite") for key in bundle)


async def test_charts_are_vega_lite_5_which_notebook_front_ends_draw(history: sagakit.RunHistory) -> None:
    """The interactive part of a chart bundle is labelled Vega-Lite 5, with its tooltips kept."""
    bundle = chart_mimebundle(compensation_distribution(history))
    spec = bundle["application/vnd.vegalite.v5+json"]
    assert spec["$schema"].endswith("/vega-lite/v5.json")
    assert not any(key.startswith("application/vnd.vegalite.v6") for key in bundle)
    assert "tooltip" in str(spec)


async def test_a_zero_length_attempt_stays_visible_on_the_timeline() -> None:
    """A fault that fails a step at once still draws a bar (its tooltip keeps the true duration)."""
    saga = linear_saga(3, name="instant")
    run = await saga.run({}, faults={"s1": "fail"})
    spec = run.timeline().to_dict()
    rows = next(iter(spec["datasets"].values()))
    failed = next(row for row in rows if row["step"] == "s1" and row["phase"] == "forward")
    assert failed["end_shown"] > failed["start_ms"]
    assert failed["duration_ms"] == pytest.approx(failed["end_ms"] - failed["start_ms"], abs=1e-3)


def test_timeline_of_a_frame_is_refused() -> None:
    """Passing a frame without the step columns names the missing ones."""
    with pytest.raises(ValueError, match="missing columns"):
        compensation_timings(pd.DataFrame({"x": [1]}))
    assert callable(timeline)
