"""Notebook layer speed: diagram rendering, live updates in the Lab, Lab runs versus headless runs.

Run with the project's virtual environment: ``python benchmarks/bench_notebook.py``.

* Rendering: the first layout of a 50- and a 200-step saga (one ``dot`` call, wrapped onto rows
  as a static diagram is) next to the hand-written floor, ``dot -Tsvg`` run directly on the same
  DOT source; then a re-render of the cached layout (what every later display and every live
  update costs).
* Live update: inside a real IPython kernel (so widget messages really are serialised and
  sent), the kernel-side cost and the message size of one event for a 50-step saga in the
  Lab, redrawn on every event (no throttling, the worst case), next to the baseline: the whole
  re-coloured SVG set on an ipywidgets ``HTML`` for every event (how the Lab drew before its
  diagram became an anywidget view that receives only the steps that changed); and the number
  of layout runs after the first (must be 0).
* Lab run versus headless: a 50-step no-op saga run from the Lab (diagram, status and history
  redraws) against the same saga run headless (the baseline), in the kernel: with plain
  functions and with async functions that never wait (a run that never gives the loop control
  is drawn from the finished run; the async saga's first run is observed, which shows it), and
  with async functions that each wait once (``await asyncio.sleep(0)``: observed live, event by
  event, the cost of live colouring).
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sagakit
from sagakit.notebook import _layout, diagram


def chain(count: int, name: str) -> sagakit.Saga:
    def make(label: str) -> Any:
        def function(data: Any, context: Any) -> Any:
            return data

        function.__name__ = label
        return function

    return sagakit.Saga(name, [sagakit.step(make(f"step_{i}"), compensate=make(f"undo_{i}")) for i in range(count)])


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000.0


def bench_rendering() -> None:
    print("rendering (ms, median)")
    renderer = diagram.find_renderer()
    print(f"  renderer: {renderer.kind if renderer else 'text'} ({renderer.path if renderer else '-'})")
    for count, repeats in ((50, 5), (200, 3)):
        saga = chain(count, f"render{count}")
        # The same DOT source sagakit lays out: wrapped onto rows as a static diagram is.
        shape = diagram.saga_shape(saga)
        source = diagram.saga_dot(shape, rows=_layout.wrap_rows(shape, diagram.STATIC_WIDTH))
        floor = []
        for _ in range(repeats):
            started = time.perf_counter()
            if renderer is not None:
                subprocess.run([renderer.path, "-Tsvg"], input=source.encode(), capture_output=True, check=True)
            floor.append(time.perf_counter() - started)
        first = []
        for attempt in range(repeats):
            # A distinct saga name is the same shape: clear the cache to time a real layout.
            _layout._templates.clear()
            started = time.perf_counter()
            diagram.saga_svg(chain(count, f"render{count}-{attempt}"))
            first.append(time.perf_counter() - started)
        cached = []
        for _ in range(50):
            started = time.perf_counter()
            saga._repr_mimebundle_()
            cached.append(time.perf_counter() - started)
        print(
            f"  {count:>3} steps: dot -Tsvg by hand {median_ms(floor):8.1f}   sagakit first render {median_ms(first):8.1f}"
            f"   ratio {median_ms(first) / median_ms(floor):5.2f}x   cached re-render {median_ms(cached):6.3f}"
        )


KERNEL_CODE = textwrap.dedent(
    """
    import asyncio, json, statistics, time
    import sagakit
    from sagakit.notebook import diagram

    def make(label):
        def function(data, context):
            return data
        function.__name__ = label
        return function

    def chain(count, name):
        return sagakit.Saga(name, [sagakit.step(make(f"step_{i}"), compensate=make(f"undo_{i}")) for i in range(count)])

    saga = chain(50, "live")
    lab = saga.lab(charts=False, throttle=0.0)
    layouts = diagram.layout_count()
    saga.faults["step_25"] = "fail"
    events = (await saga.run({})).events
    saga.history.clear()
    import ipywidgets
    from sagakit.notebook.diagram import DiagramState
    per_event, observe_only, full_svg = [], [], []
    lab._events = []  # the list the engine appends a run's events to
    template = lab._template
    baseline_view = ipywidgets.HTML()
    baseline_state = DiagramState(template.steps)
    for _ in range(20):
        for event in events:  # the baseline: re-render and send the whole SVG per event
            started = time.perf_counter()
            baseline_state(event)
            baseline_view.value = template.render(baseline_state)
            full_svg.append(time.perf_counter() - started)
        lab._busy = True  # as during a run: each redraw sends the changed steps and the status line
        for event in events:
            started = time.perf_counter()
            lab._events.append(event)  # what the engine calls
            lab.flush()  # re-colour and send the changes, unthrottled: the worst case
            per_event.append(time.perf_counter() - started)
        lab._busy = False
        lab.flush()
    sizes = []
    send = lab.widget.send
    def measured(message):
        sizes.append(len(json.dumps(message).encode()))
        send(message)
    lab.widget.send = measured
    lab._busy = True
    for event in events:
        lab._events.append(event)
        lab.flush()
    lab._busy = False
    lab.widget.send = send
    full_svg_bytes = len(template.render(baseline_state).encode())
    for _ in range(20):
        for event in events:
            started = time.perf_counter()
            lab._events.append(event)
            observe_only.append(time.perf_counter() - started)
    lab.flush()
    lab.throttle = 0.05  # the default: at most 20 redraws a second
    del saga.faults["step_25"]

    def make_async(label):
        async def function(data, context):
            return data
        function.__name__ = label
        return function

    async def compare(lab, headless_saga):
        headless, in_lab = [], []
        for _ in range(5):
            await headless_saga.run({})
            await lab.run()
        lab.flush()
        # Two separate loops, so that the Lab's deferred redraws are never billed to the headless runs.
        started_all = time.perf_counter()
        for _ in range(200):
            started = time.perf_counter()
            await headless_saga.run({})
            headless.append(time.perf_counter() - started)
            await asyncio.sleep(0)  # the kernel's loop gets control between runs
        headless_total = time.perf_counter() - started_all
        started_all = time.perf_counter()
        for _ in range(200):
            started = time.perf_counter()
            await lab.run()
            in_lab.append(time.perf_counter() - started)
            await asyncio.sleep(0)  # due redraws run here
        lab_total = time.perf_counter() - started_all
        started = time.perf_counter()
        lab.flush()  # the last redraw, so that every redraw is counted
        lab_total += time.perf_counter() - started
        return statistics.median(headless) * 1000, statistics.median(in_lab) * 1000, headless_total * 1000, lab_total * 1000

    headless, in_lab, headless_total, lab_total = await compare(lab, chain(50, "headless"))
    async_saga = sagakit.Saga("live_async", [sagakit.step(make_async(f"step_{i}"), compensate=make_async(f"undo_{i}"))
                                             for i in range(50)])
    async_lab = async_saga.lab(charts=False)
    async_headless = sagakit.Saga("headless_async", [sagakit.step(make_async(f"step_{i}"),
                                                                  compensate=make_async(f"undo_{i}")) for i in range(50)])
    a_headless, a_in_lab, a_headless_total, a_lab_total = await compare(async_lab, async_headless)

    def make_waiting(label):
        async def function(data, context):
            await asyncio.sleep(0)
            return data
        function.__name__ = label
        return function

    def waiting(name):
        return sagakit.Saga(name, [sagakit.step(make_waiting(f"step_{i}"), compensate=make_waiting(f"undo_{i}"))
                                   for i in range(50)])

    waiting_lab = waiting("live_waiting").lab(charts=False)
    w_headless, w_in_lab, w_headless_total, w_lab_total = await compare(waiting_lab, waiting("headless_waiting"))
    observed = waiting_lab.live, async_lab.live
    print(json.dumps({
        "events": len(events),
        "per_event": statistics.median(per_event) * 1000,
        "per_event_p95": statistics.quantiles(per_event, n=20)[-1] * 1000,
        "full_svg": statistics.median(full_svg) * 1000,
        "full_svg_p95": statistics.quantiles(full_svg, n=20)[-1] * 1000,
        "full_svg_bytes": full_svg_bytes,
        "message_bytes_median": statistics.median(sizes),
        "message_bytes_max": max(sizes),
        "messages": len(sizes),
        "observe_only": statistics.median(observe_only) * 1000,
        "layouts_after_first": diagram.layout_count() - layouts,
        "headless": headless,
        "in_lab": in_lab,
        "headless_total": headless_total,
        "lab_total": lab_total,
        "async_headless": a_headless,
        "async_in_lab": a_in_lab,
        "async_headless_total": a_headless_total,
        "async_lab_total": a_lab_total,
        "waiting_headless": w_headless,
        "waiting_in_lab": w_in_lab,
        "waiting_headless_total": w_headless_total,
        "waiting_lab_total": w_lab_total,
        "observed": observed,
    }))
    """
)


def bench_in_kernel() -> None:
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3")
    lines: list[str] = []
    try:
        client.execute_interactive(
            KERNEL_CODE,
            timeout=300,
            output_hook=lambda message: lines.append(message["content"].get("text", ""))
            if message["msg_type"] == "stream"
            else None,
        )
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    results = json.loads("".join(lines).strip().splitlines()[-1])
    print(f"live updates in the Lab, 50 steps, {results['events']} events, inside a kernel (ms, median)")
    print(
        f"  baseline, whole SVG re-rendered and sent per event ({results['full_svg_bytes'] / 1024:.1f} KiB each):"
        f" {results['full_svg']:.3f} (p95 {results['full_svg_p95']:.3f})"
    )
    print(
        f"  sagakit, only the changed steps sent ({results['messages']} messages, median {results['message_bytes_median']:.0f} B,"
        f" max {results['message_bytes_max']} B; target <= 1 KiB): {results['per_event']:.3f}"
        f" (p95 {results['per_event_p95']:.3f}; target <= 0.1 ms)   ratio {results['per_event'] / results['full_svg']:.2f}x"
    )
    print(f"  one event, recorded with the redraw throttled (the engine's call): {results['observe_only']:.4f}")
    print(f"  layout runs after the first layout: {results['layouts_after_first']} (target 0)")
    for label, key, note in (
        ("plain functions: colours drawn from the finished run, which never lets a redraw in", "", ""),
        ("async functions that never wait: drawn from the finished run after the first", "async_",
         "" if not results["observed"][1] else " [observed live: unexpected]"),
        ("async functions that wait once each: observed live, every event", "waiting_",
         "" if results["observed"][0] else " [not observed: unexpected]"),
    ):
        ratio = results[f"{key}in_lab"] / results[f"{key}headless"]
        print(f"50-step no-op saga of {label} (ms, median of 200){note}")
        print(
            f"  headless saga.run (baseline) {results[f'{key}headless']:.3f}   from the Lab "
            f"{results[f'{key}in_lab']:.3f}   ratio {ratio:.2f}x (target <= 1.5x)"
        )
        total_ratio = results[f"{key}lab_total"] / results[f"{key}headless_total"]
        print(
            f"  200 runs in a row, every redraw included: headless {results[f'{key}headless_total']:.1f}   "
            f"Lab {results[f'{key}lab_total']:.1f}   ratio {total_ratio:.2f}x"
        )


def main() -> None:
    if shutil.which("dot") is None and diagram.find_renderer() is None:
        print("no Graphviz renderer: rendering figures are for the text fallback")
    bench_rendering()
    bench_in_kernel()


if __name__ == "__main__":
    main()
