"""Timing summaries and plots over the ``RunHistory`` frames.

The summaries are plain pandas. The plots are Altair charts: declarative, built straight
from DataFrames, rendered natively by JupyterLab, VS Code and Colab (Vega-Lite), and
exportable to SVG/PNG without a browser through ``vl-convert`` (``chart.save("t.svg")``).
Altair is imported on first use; it comes with ``pip install sagakit[notebook]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from sagakit.runs import Run, RunHistory

__all__ = [
    "TIMING_COLUMNS",
    "chart_mimebundle",
    "compensation_distribution",
    "compensation_timings",
    "duration_distribution",
    "timeline",
    "timeline_frame",
    "use_altair_renderer",
]

#: The columns of :func:`compensation_timings`, in order (durations in milliseconds).
TIMING_COLUMNS: tuple[str, ...] = ("count", "failed", "mean", "p50", "p95", "max")

_PHASES = ("forward", "compensate")


def _altair() -> Any:
    try:
        import altair as alt
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError("sagakit plots need Altair: pip install sagakit[notebook]") from exc
    return alt


def chart_mimebundle(chart: Any) -> dict[str, Any]:
    """A chart as a display bundle that renders everywhere.

    The bundle carries the Vega-Lite spec as Vega-Lite 5 (the version JupyterLab 4, Jupyter
    Notebook 7, VS Code and nteract render natively, with hover tooltips; Altair 6 writes
    Vega-Lite 6, which they do not draw), a static SVG drawn by ``vl-convert`` when it is
    installed (static exports, GitHub, nbconvert), and ``text/plain``. Each front end shows
    the richest part it supports.
    """
    alt = _altair()
    spec = chart.to_dict() if not isinstance(chart, dict) else chart
    return _bundle(spec, alt)


_VEGA_LITE_5 = "https://vega.github.io/schema/vega-lite/v5.json"


def _bundle(spec: dict[str, Any], alt: Any) -> dict[str, Any]:
    major = int(alt.SCHEMA_VERSION.split(".")[0].lstrip("v"))
    shown = spec
    if major > 5:
        # The charts here use nothing Vega-Lite 6 added: labelled 5, every notebook front-end draws them.
        shown = {**spec, "$schema": _VEGA_LITE_5}
    bundle: dict[str, Any] = {"application/vnd.vegalite.v5+json": shown}  # altair >= 5 is required
    try:
        import vl_convert
    except ImportError:
        pass
    else:
        bundle["image/svg+xml"] = vl_convert.vegalite_to_svg(spec)
    title = spec.get("title")
    bundle["text/plain"] = f"<Vega-Lite chart{': ' + title if isinstance(title, str) else ''}>"
    return bundle


def use_altair_renderer() -> None:
    """Make Altair display charts with :func:`chart_mimebundle` (interactive + static SVG).

    Altair's default renderer loads its JavaScript from a CDN, which fails offline and in
    static exports; this one needs neither. It registers and enables the Altair renderer
    named ``"sagakit"``; ``alt.renderers.enable("default")`` switches back.
    """
    alt = _altair()

    def render(spec: dict[str, Any], **_metadata: Any) -> dict[str, Any]:
        return _bundle(spec, alt)

    alt.renderers.register("sagakit", render)
    alt.renderers.enable("sagakit")


def _steps(source: RunHistory | Run | pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        missing = {"step", "index", "phase", "status", "duration_ms"} - set(source.columns)
        if missing:
            raise ValueError(f"expected a RunHistory.steps frame; missing columns: {', '.join(sorted(missing))}")
        return source
    steps = getattr(source, "steps", None)
    if not isinstance(steps, pd.DataFrame):
        raise TypeError(f"expected a RunHistory, a Run or a steps DataFrame, got {type(source).__name__}")
    return steps


def compensation_timings(
    history: RunHistory | pd.DataFrame, *, phase: str = "compensate", percentiles: Sequence[float] = (0.5, 0.95)
) -> pd.DataFrame:
    """Compensation durations per step: count, failed, mean, p50, p95 and max (ms).

    Every compensation attempt that ran counts (succeeded or failed); skipped steps (no
    compensation) and cancelled attempts do not. Rows are the steps in saga order.

    Args:
        history: a :class:`~sagakit.RunHistory` or its ``steps`` frame.
        phase: ``"compensate"`` (the default) or ``"forward"`` for the same summary of
            the forward attempts.
        percentiles: the two quantiles reported as ``p50`` and ``p95``.

    Raises:
        ValueError: ``phase`` is neither ``forward`` nor ``compensate``.
    """
    import pandas as pd

    if phase not in _PHASES:
        raise ValueError(f"compensation_timings phase: expected 'forward' or 'compensate', got {phase!r}")
    if len(percentiles) != 2:
        raise ValueError(f"compensation_timings percentiles: expected two quantiles, got {percentiles!r}")
    steps = _steps(history)
    ran = steps[(steps["phase"] == phase) & steps["status"].isin(["succeeded", "failed"])]
    if ran.empty:
        empty = pd.DataFrame({column: pd.Series(dtype="float64") for column in TIMING_COLUMNS})
        empty["count"] = empty["count"].astype("int64")
        empty["failed"] = empty["failed"].astype("int64")
        empty.index = pd.Index([], name="step", dtype="string")
        return empty
    low, high = percentiles
    grouped = ran.assign(is_failed=ran["status"] == "failed").groupby("step", sort=False, observed=True)
    durations = grouped["duration_ms"]
    frame = pd.DataFrame(
        {
            "count": durations.size().astype("int64"),
            "failed": grouped["is_failed"].sum().astype("int64"),
            "mean": durations.mean(),
            "p50": durations.quantile(low),
            "p95": durations.quantile(high),
            "max": durations.max(),
        }
    )
    order = grouped["index"].min().sort_values(kind="stable")
    frame = frame.loc[order.index]
    frame.index = frame.index.astype("string")
    frame.index.name = "step"
    return frame


def timeline_frame(run: Run) -> pd.DataFrame:
    """One bar per step attempt and phase of ``run``: start and end in ms since it started."""
    from sagakit.events import EventKind

    steps = run.steps
    started = _epoch_seconds(steps["started_at"])
    ended = _epoch_seconds(steps["ended_at"])
    # Time zero is the run_started event (the clock every event of the run was read from).
    origin = run.events[0].at if run.events and run.events[0].kind is EventKind.RUN_STARTED else run.started_at
    return steps.assign(
        start_ms=(started - origin) * 1000.0,
        end_ms=(ended - origin) * 1000.0,
        bar=steps["phase"].where(steps["status"] == "succeeded", steps["phase"] + " " + steps["status"]),
    )[["step", "index", "phase", "attempt", "status", "start_ms", "end_ms", "duration_ms", "error_type", "injected",
       "bar"]]


def _epoch_seconds(column: pd.Series) -> pd.Series:
    import pandas as pd

    return (column - pd.Timestamp(0, tz="UTC")).dt.total_seconds()


_BAR_COLOURS = {
    "forward": "#2e7d32",
    "forward failed": "#c62828",
    "forward cancelled": "#757575",
    "compensate": "#1f5fbf",
    "compensate failed": "#8e1b1b",
    "compensate cancelled": "#9e9e9e",
    "compensate skipped": "#bdbdbd",
}


def timeline(run: Run, *, width: int = 520, height: int | None = None) -> Any:
    """A Gantt-style Altair chart of a run: forward and compensation bars per step.

    Time runs left to right in milliseconds since the run started; steps are rows in saga
    order; bars are coloured by phase and outcome.
    """
    alt = _altair()
    frame = timeline_frame(run)
    frame = frame.assign(end_ms=frame[["end_ms", "start_ms"]].max(axis=1))
    # A zero-length attempt (a fault injected before any work) still gets a visible sliver;
    # the tooltip keeps its true duration.
    span = max(float(frame["end_ms"].max()) if len(frame) else 0.0, 1e-3)
    frame = frame.assign(end_shown=frame["end_ms"].clip(lower=frame["start_ms"] + span * 0.006))
    order = list(dict.fromkeys(frame.sort_values("index", kind="stable")["step"].tolist()))
    present = [bar for bar in _BAR_COLOURS if bar in set(frame["bar"].tolist())]
    chart = (
        alt.Chart(frame, title=f"{run.saga} · {run.status} in {run.duration_ms:.1f} ms")
        .mark_bar(cornerRadius=2, minBandSize=2)
        .encode(
            x=alt.X("start_ms:Q", title="ms since start", scale=alt.Scale(domainMin=0)),
            x2="end_shown:Q",
            y=alt.Y("step:N", sort=order, title=None),
            color=alt.Color("bar:N", title="phase", scale=alt.Scale(domain=present,
                                                                   range=[_BAR_COLOURS[b] for b in present])),
            tooltip=["step:N", "phase:N", "attempt:Q", "status:N", alt.Tooltip("duration_ms:Q", format=".2f"),
                     "error_type:N"],
        )
        .properties(width=width, height=height if height is not None else max(60, 22 * len(order)))
    )
    return chart


def compensation_distribution(history: RunHistory | pd.DataFrame, *, width: int = 420) -> Any:
    """An Altair box plot of compensation durations by step across runs (ms)."""
    return duration_distribution(history, phase="compensate", width=width)


def duration_distribution(history: RunHistory | pd.DataFrame, *, phase: str = "forward", width: int = 420) -> Any:
    """An Altair box plot of one phase's durations by step across runs (ms).

    Raises:
        ValueError: ``phase`` is neither ``forward`` nor ``compensate``.
    """
    alt = _altair()
    if phase not in _PHASES:
        raise ValueError(f"duration_distribution phase: expected 'forward' or 'compensate', got {phase!r}")
    steps = _steps(history)
    ran = steps[(steps["phase"] == phase) & steps["status"].isin(["succeeded", "failed"])]
    ran = ran[["step", "index", "status", "duration_ms"]].astype({"step": object, "status": object})
    order = list(dict.fromkeys(ran.sort_values("index", kind="stable")["step"].tolist()))
    title = "compensation durations by step" if phase == "compensate" else "forward durations by step"
    base = alt.Chart(ran, title=title).encode(
        y=alt.Y("step:N", sort=order, title=None),
        color=alt.Color("step:N", sort=order, legend=None),
    )
    # Each run as a tick, under the box: a handful of runs stays readable, a thousand shows the spread.
    ticks = base.mark_tick(opacity=0.35, thickness=1.5).encode(
        x=alt.X("duration_ms:Q", title="ms"),
        tooltip=["step:N", "status:N", alt.Tooltip("duration_ms:Q", format=".2f")],
    )
    boxes = base.mark_boxplot(extent="min-max", size=14, opacity=0.6).encode(x=alt.X("duration_ms:Q", title="ms"))
    return (ticks + boxes).properties(width=width, height=max(60, 24 * max(len(order), 1)))
