"""The failure lab: one panel to break a saga on purpose and watch it roll back.

``saga.lab()`` returns a :class:`Lab`. It shows the saga's diagram, one row of controls per
step (fault mode, delay, probability), Run and Run x N buttons with a progress bar, Reset,
a status line, the run history table and timing charts. Controls and ``saga.faults`` are
kept in sync both ways. Runs start as tasks on the kernel's event loop, so the kernel stays
responsive; an observer re-colours the diagram while a run is in flight, redrawing at most
once per ``throttle`` seconds and never running the layout program again.

The panel is one anywidget view (:class:`~sagakit.notebook.widget.LabView`, ``lab.widget``):
every front-end anywidget reaches draws the same controls (JupyterLab, Jupyter Notebook 7,
VS Code, Colab, and marimo, where ``lab`` shows as the view, as ``mo.ui.anywidget(lab.widget)``
does). The charts are Vega-Lite outputs the Jupyter front-ends draw below it.

Stable CSS classes for browsers and tests: ``sagakit-lab`` (the panel), ``sagakit-diagram``,
``sagakit-step-<step>`` (a step's row of controls), ``sagakit-fault-<step>``,
``sagakit-delay-<step>``, ``sagakit-probability-<step>`` (each wraps its ``select`` or
``input``), ``sagakit-run``, ``sagakit-run-n``, ``sagakit-n``, ``sagakit-progress``
(``sagakit-progress-label`` reads ``done/total``), ``sagakit-reset``, ``sagakit-status``,
``sagakit-history``, ``sagakit-charts`` and ``sagakit-backend``. In ``<step>``, characters
other than letters, digits, ``-`` and ``_`` become ``-``. The diagram fits the cell, pans and
zooms, has a Stop button (``sagakit-stop``), an inspector (``sagakit-inspector``) and a replay
slider (``sagakit-replay``); clicking a past run in the history draws it. While a run started
by the Lab is in flight, a kernel interrupt stops it like the Stop button: the run is
cancelled and its completed steps are compensated.
"""

from __future__ import annotations

import asyncio
import html
import re
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from sagakit._checks import check_positive_int, check_seconds
from sagakit.events import Event, EventKind
from sagakit.faults import FAULT_MODES, Fault, FaultPlan
from sagakit.notebook.diagram import (
    DiagramState,
    error_summary,
    error_text,
    fault_hints,
    layout,
    planned_notes,
    run_caption,
    saga_shape,
)
from sagakit.policies import is_async_callable
from sagakit.steps import Step

if TYPE_CHECKING:
    from sagakit.context import WorkflowContext
    from sagakit.engine import Backend
    from sagakit.runs import Run
    from sagakit.saga import Saga

__all__ = ["Lab", "css_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

def css_name(step: str) -> str:
    """The form of a step name used in CSS classes (``sagakit-fault-<step>``)."""
    return _UNSAFE.sub("-", step)


def _widgets() -> Any:
    try:
        import ipywidgets
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError("the sagakit Lab needs ipywidgets: pip install sagakit[notebook]") from exc
    return ipywidgets


def _fault(step: str, entry: Any, previous: Fault | None) -> Fault | None:
    """The fault a row of controls describes (``None``: no fault), keeping a previous seed.

    Raises:
        TypeError: ``entry`` is not ``[mode, delay, probability]``.
    """
    if entry is None:
        return None
    if not isinstance(entry, list | tuple) or len(entry) != 3:
        raise TypeError(f"Lab faults[{step!r}]: expected [mode, delay, probability], got {entry!r}")
    mode, delay, probability = entry
    if mode == "none" and not delay:
        return None
    seed = previous.seed if previous is not None else None
    return Fault(mode, delay=float(delay), probability=float(probability), seed=seed)


class Lab:
    """The interactive failure lab of a saga. Display it in a notebook cell.

    Args:
        saga: the saga to experiment with. The Lab edits ``saga.faults`` and shows
            ``saga.history``.
        backends: optional mapping from a label to a :class:`~sagakit.Backend` (``None``
            for the local engine); when given, a drop-down chooses where runs go.
        data: each run's input, or a function of no arguments making a fresh input per run.
        context: a function of no arguments making each run's
            :class:`~sagakit.WorkflowContext` (default: a fresh context per run).
        runs: the initial N of Run x N.
        history_rows: how many of the newest runs the history table shows.
        throttle: the least time between two redraws of a live diagram, in seconds.
        charts: draw the timeline and compensation charts (Altair) after runs.

    Raises:
        TypeError, ValueError: an argument is of the wrong type or out of range.
    """

    def __init__(
        self,
        saga: Saga,
        *,
        backends: Mapping[str, Backend | None] | None = None,
        data: Any = None,
        context: Callable[[], WorkflowContext] | None = None,
        runs: int = 20,
        history_rows: int = 50,
        throttle: float = 0.05,
        charts: bool = True,
    ) -> None:
        from sagakit.saga import Saga

        if not isinstance(saga, Saga):
            raise TypeError(f"Lab: expected a sagakit.Saga, got {type(saga).__name__}")
        if backends is not None:
            if not isinstance(backends, Mapping) or not backends:
                raise TypeError(f"Lab backends: expected a non-empty mapping of label -> Backend or None, got {backends!r}")
            for label, backend in backends.items():
                if backend is not None and not callable(getattr(backend, "run", None)):
                    raise TypeError(f"Lab backends[{label!r}]: expected a sagakit.Backend or None, got {backend!r}")
        if context is not None and not callable(context):
            raise TypeError(f"Lab context: expected a function returning a WorkflowContext, got {context!r}")
        check_positive_int(runs, "Lab runs")
        check_positive_int(history_rows, "Lab history_rows")
        check_seconds(throttle, "Lab throttle", allow_zero=True)
        widgets = _widgets()
        self.saga = saga
        self.backends = dict(backends) if backends is not None else None
        self.data = data
        self.context = context
        self.history_rows = history_rows
        self.throttle = float(throttle)
        self.show_charts = charts
        self.task: asyncio.Task[Any] | None = None
        self._template = layout(saga_shape(saga), name=saga.name)
        self._names = set(saga.step_names)
        self._state = DiagramState(self._template.steps, planned_notes(saga.faults))
        self._hints: dict[str, str] = {}
        self._previous_sigint: Any = None
        self._sigint_installed = False
        self._sigint_handler: Callable[[int, Any], None] | None = None
        try:  # the kernel's own loop (a Lab is made in a cell): SIGINT handling happens there
            self._main_loop: asyncio.AbstractEventLoop | None = (
                asyncio.get_running_loop() if threading.current_thread() is threading.main_thread() else None)
        except RuntimeError:
            self._main_loop = None
        self._redraw: asyncio.TimerHandle | None = None
        self._chart_redraw: asyncio.TimerHandle | None = None
        self._history_dirty = True
        self._syncing = False
        self._last_progress = 0.0
        self._events: list[Event] = []
        self._drawn_later: Run | None = None  # a run not observed live, drawn at the next redraw
        self._inline: bool | None = None  # whether the saga's runs never give the loop control
        self._suspends: bool | None = None  # whether the last run gave the loop control (None: no run yet)
        self._busy = False
        self._last_run: Run | None = None
        self._reported: Run | None = None

        from sagakit.notebook.widget import LabView

        #: The panel: one anywidget view (marimo: ``mo.ui.anywidget(lab.widget)``).
        self.widget = LabView(self._template, self._state, title=saga.name, steps=saga.step_names,
                              modes=FAULT_MODES, runs=runs, backends=list(self.backends or ()))
        #: The diagram and the history are parts of the panel (the same view).
        self.diagram = self.history = self.widget
        self.widget.on_stop = self.stop
        self.widget.on_live = self._show_live
        self.widget.on_run = self._on_run
        self.widget.on_run_n = self._on_run_n
        self.widget.on_reset = self.reset
        self.widget.on_select = self.show_run
        self.widget.observe(self._on_controls, names="faults")
        self.charts = widgets.Output()
        self.charts.add_class("sagakit-charts")
        self._panel: Any = widgets.VBox([self.widget, self.charts]) if charts else self.widget
        self._unwatch_faults = saga.faults.watch(self._on_faults)
        self._unwatch_history = saga.history.watch(self._on_history)
        self._on_faults(saga.faults)
        self.flush()
        if len(saga.history) and charts:
            self._draw_charts()

    # -- display --------------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self._panel._repr_mimebundle_(**kwargs)

    def _display_(self) -> Any:
        # marimo's display protocol: marimo draws the anywidget view itself (the charts are
        # Jupyter outputs, which it does not draw).
        return self.widget

    def __repr__(self) -> str:
        return f"<Lab {self.saga.name!r}: {len(self.saga.step_names)} steps, {len(self.saga.history)} runs>"

    @property
    def svg(self) -> str:
        """The diagram as last sent to the front-end (SVG, or HTML for the text fallback)."""
        return self._template.render(self._state)

    @property
    def states(self) -> dict[str, str]:
        """Each step's current state (``pending``, ``running``, ``failed``...)."""
        return {name: self._state.states.get(name, "pending") for name in self.saga.step_names}

    def close(self) -> None:
        """Stop following the saga and close the widgets."""
        self._unwatch_faults()
        self._unwatch_history()
        for handle in (self._redraw, self._chart_redraw):
            if handle is not None:
                handle.cancel()
        for widget in (self._panel, self.charts, self.widget):
            widget.close()

    # -- running --------------------------------------------------------------------------

    def _input(self) -> Any:
        return self.data() if callable(self.data) else self.data

    def _backend(self) -> Backend | None:
        if self.backends is None:
            return None
        return self.backends[self.widget.backend]

    async def run(self) -> Run:
        """Run the saga once with live colouring; returns the :class:`~sagakit.Run`.

        The diagram, status and history follow within ``throttle`` seconds (redraws are
        deferred so that runs in quick succession cost almost nothing extra); call
        :meth:`flush` to draw at once.
        """
        self._busy = True
        try:
            run = await self._run_one()
        finally:
            self._busy = False
            self._schedule_draw()
        if self.show_charts:
            self._schedule_charts()
        return run

    async def _run_one(self) -> Run:
        context = self.context() if self.context is not None else None
        self._schedule_draw()  # live colouring: redraws keep coming while the run is in flight
        # The engine calls list.append for every event: the cheapest observer there is. The
        # events are turned into colours at the next redraw, for the newest run only, so an
        # earlier run's events not drawn yet are dropped now rather than kept until then.
        self._events.clear()
        self._drawn_later = None
        live = self._draws_live()
        # A callback the loop runs only if the run gives it control: whether a redraw could
        # have shown this run in flight, and so whether the next one is worth observing.
        suspended: list[bool] = []
        probe = asyncio.get_running_loop().call_soon(suspended.append, True)
        try:
            run = await self.saga.run(self._input(), context, observers=(self._events.append,) if live else (),
                                      backend=self._backend())
        finally:
            probe.cancel()
            self._suspends = bool(suspended)
        if not live:
            self._drawn_later = run
        self._last_run = run
        return run

    def _draws_live(self) -> bool:
        """Whether to observe the next run event by event, to colour it while in flight.

        Only a run that gives the event loop control before it ends can be shown in flight.
        A run of plain synchronous steps and compensations (no retry, timeout or parallel
        stage), without fault delays or settling observers, on this process's loop, never
        does; nor, in practice, does one whose previous run did not (async steps that never
        wait, such as no-ops and in-memory fakes). Observing those events one by one would
        cost as much again as the run and show nothing, so their colours are drawn from the
        finished run. A run on another backend, with a fault delay or after a run that gave
        the loop control is observed live; so is the first run and the first after the
        fault plan changes.
        """
        if self._backend() is not None or any(fault.delay for fault in self.saga.faults.values()):
            return True
        if any(callable(getattr(obs, "settle", None)) for obs in self.saga.observers):
            return True
        if self._inline is None:
            self._inline = all(
                isinstance(stage, Step)
                and stage.plain
                and not is_async_callable(stage.action)
                and (stage.compensate is None or not is_async_callable(stage.compensate))
                for stage in self.saga.stages
            )
        return not self._inline and self._suspends is not False

    async def run_n(self, n: int | None = None) -> list[Run]:
        """Run the saga ``n`` times (default: the N control) in sequence, with progress."""
        count = check_positive_int(self.widget.n if n is None else n, "Lab.run_n n")
        self._set_progress(0, count)
        runs: list[Run] = []
        self._busy = True
        try:
            for number in range(1, count + 1):
                runs.append(await self._run_one())
                now = time.monotonic()
                if now - self._last_progress >= self.throttle:
                    self._last_progress = now
                    self._set_progress(number, count)
        finally:
            self._busy = False
            self._set_progress(len(runs), count)
            self.flush()
        if runs and self.show_charts:
            self._schedule_charts()
        return runs

    async def _run_and_flush(self) -> Run:
        run = await self.run()
        self.flush()
        return run

    def start(self, work: Awaitable[Any]) -> asyncio.Task[Any]:
        """Start ``work`` as a task on the running loop (the kernel's); ``lab.task`` is it."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = asyncio.get_event_loop_policy().get_event_loop()
        task = loop.create_task(_as_coroutine(work))
        task.add_done_callback(self._task_done)
        self.task = task
        self.widget.busy = True
        self._catch_interrupts(loop)
        return task

    def stop(self) -> bool:
        """Cancel the run started by the last click, if it is in flight (the Stop button).

        The engine compensates the steps the run completed, shielded from the cancellation;
        the diagram shows the rollback. Safe from any thread. Returns whether there was a run
        to stop.
        """
        task = self.task
        if task is None or task.done():
            return False
        loop = task.get_loop()
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            task.cancel()
        else:  # a click handled on another thread (a kernel subshell): cancel on the task's loop
            loop.call_soon_threadsafe(task.cancel)
        return True

    # A kernel interrupt is SIGINT, which ipykernel ignores while no cell runs: while a Lab run
    # is in flight, it stops that run instead. Signal handlers belong to the main thread, and a
    # click may be handled on another one (a kernel subshell), so the handler is installed,
    # kept and removed from the main thread's loop.

    def _on_main_thread(self, callback: Callable[[], None]) -> None:
        if threading.current_thread() is threading.main_thread():
            callback()
        elif self._main_loop is not None and not self._main_loop.is_closed():
            self._main_loop.call_soon_threadsafe(callback)

    def _catch_interrupts(self, loop: asyncio.AbstractEventLoop) -> None:
        def interrupted(_signum: int, _frame: Any) -> None:
            loop.call_soon_threadsafe(self.stop)

        self._sigint_handler = interrupted
        self._on_main_thread(self._install_interrupt_handler)

    def _install_interrupt_handler(self) -> None:
        if self._sigint_installed or self._sigint_handler is None or self.task is None or self.task.done():
            return
        handler = self._sigint_handler
        kernel = _kernel()
        current = signal.getsignal(signal.SIGINT)
        if kernel is not None and current is signal.default_int_handler and hasattr(kernel, "saved_sigint_handler"):
            # Inside a kernel message handler: the kernel restores its saved handler when the
            # handler returns, so that is the one to replace.
            self._previous_sigint = kernel.saved_sigint_handler
            kernel.saved_sigint_handler = handler
        else:
            self._previous_sigint = current
            signal.signal(signal.SIGINT, handler)
        self._sigint_installed = True

    def _keep_catching_interrupts(self) -> None:
        # Kernel message handlers save and restore the SIGINT handler around themselves; when
        # they overlap, ours can be lost. Between handlers, put it back.
        if not self._sigint_installed or self.task is None or self.task.done():
            return
        current = signal.getsignal(signal.SIGINT)
        if current is not self._sigint_handler and current is not signal.default_int_handler:
            self._previous_sigint = current
            signal.signal(signal.SIGINT, self._sigint_handler)

    def _release_interrupts(self) -> None:
        if not self._sigint_installed:
            return
        self._sigint_installed = False
        kernel = _kernel()
        if kernel is not None and getattr(kernel, "saved_sigint_handler", None) is self._sigint_handler:
            kernel.saved_sigint_handler = self._previous_sigint
        if signal.getsignal(signal.SIGINT) is self._sigint_handler:
            signal.signal(signal.SIGINT, self._previous_sigint)

    async def wait(self) -> Any:
        """Wait for the run started by the last click (if any) and return its outcome."""
        if self.task is None:
            return None
        return await self.task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.widget.busy = False
        self._on_main_thread(self._release_interrupts)
        if task.cancelled():
            self._busy = False
            last = self.saga.history.last
            if last is not None and last.status == "cancelled":
                self._last_run = last
                if not self._events:
                    self._drawn_later = last
            self.flush()
            self.widget.status = '<span style="color:#757575">stopped: ' + html.escape(
                run_caption(last) if last is not None and last.status == "cancelled" else "cancelled") + "</span>"
            return
        error = task.exception()
        if error is not None:
            self.widget.status = (
                f'<span style="color:#c62828">✖ the Lab could not run the saga: {html.escape(type(error).__name__)}: '
                f"{html.escape(error_text(error) or '')}</span>"
            )

    def _on_run(self) -> None:
        if self.task is None or self.task.done():
            self.start(self._run_and_flush())

    def _on_run_n(self) -> None:
        if self.task is None or self.task.done():
            self.start(self.run_n())

    def reset(self) -> None:
        """Remove every fault, clear the colouring and the progress (the history stays)."""
        self.saga.faults.clear()
        self._events.clear()
        self._drawn_later = None
        self._last_run = None
        self._state.reset()
        self.diagram.show_run(None)
        self.diagram.replay = {}
        self.diagram.inspector = ""
        self.history.selected = 0
        self._set_progress(0, self.widget.progress[1])
        self.widget.status = "ready"
        self.flush()

    def _set_progress(self, done: int, total: int) -> None:
        self.widget.progress = [done, total]

    # -- drawing --------------------------------------------------------------------------

    def _schedule_draw(self) -> None:
        if self._redraw is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a change from another thread or outside a loop: draw now
            self.flush()
            return
        self._redraw = loop.call_later(self.throttle, self._tick)

    def _tick(self) -> None:
        self._redraw = None
        self.flush()
        if self._busy:  # keep colouring while a run is in flight
            if self._sigint_handler is not None:
                self._on_main_thread(self._keep_catching_interrupts)
            self._schedule_draw()

    def flush(self) -> None:
        """Draw the diagram, status and history now, from every event received so far."""
        if self._redraw is not None:
            self._redraw.cancel()
            self._redraw = None
        events = self._events
        if self._drawn_later is not None:
            events.extend(self._drawn_later.events)
            self._drawn_later = None
        if events:
            start = 0
            for position in range(len(events) - 1, -1, -1):
                if events[position].kind is EventKind.RUN_STARTED:
                    start = position
                    break
            state = self._state
            for event in events[start:]:
                state(event)
            events.clear()
        diagram = self.diagram
        diagram.push(full=not self._busy)
        if self._busy:
            running = [name for name, state in self._state.states.items() if state in ("running", "compensating")]
            self.widget.status = "running… " + ", ".join(
                f"<code>{html.escape(name)}</code> {self._state.states[name]}" for name in running
            )
        elif self._last_run is not None and self._last_run is not self._reported:
            self._reported = self._last_run
            diagram.show_run(self._last_run)
            self.history.selected = 0
            self.widget.status = _status_html(self._last_run) + self._hints_html()
        if self._history_dirty:
            self._history_dirty = False
            self._draw_history()

    def _draw_history(self) -> None:
        from sagakit.notebook.widget import history_rows

        history = self.saga.history
        total = len(history)
        first = max(0, total - self.history_rows)
        runs = [history[i] for i in range(first, total)]
        with self.history.hold_sync():
            self.history.rows = history_rows(runs, first + 1)
            self.history.total = total

    def show_run(self, number: int) -> None:
        """Draw run ``number`` of the history (1 is the oldest kept): a click on its row."""
        history = self.saga.history
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= len(history):
            raise ValueError(f"Lab.show_run number: expected 1..{len(history)}, got {number!r}")
        if self._busy:
            return  # a run in flight keeps the diagram
        run = history[number - 1]
        self._events.clear()
        self._drawn_later = None
        state = self._state
        state.reset()
        for event in run.events:
            state(event)
        state.caption = f"run {number}: {run_caption(run)}"
        state.version += 1
        self.diagram.show_run(run)
        self.diagram.replay = {}
        self.history.selected = number
        self.flush()

    def _show_live(self) -> None:
        # Back from a replay: the diagram shows the state the kernel holds.
        self.diagram.push(full=True)

    def _hints_html(self) -> str:
        if not self._hints:
            return ""
        return "".join(f'<div class="sagakit-hint" style="color:#8a5a00">hint: {html.escape(hint)}</div>'
                       for hint in self._hints.values())

    def _on_history(self, _run: Run) -> None:
        self._history_dirty = True
        self._schedule_draw()

    def _schedule_charts(self) -> None:
        # Charts cost tens of milliseconds: draw them once things settle, not per run.
        if self._chart_redraw is not None:
            self._chart_redraw.cancel()
        self._chart_redraw = asyncio.get_running_loop().call_later(max(self.throttle, 0.2), self._draw_charts_safely)

    def _draw_charts_safely(self) -> None:
        try:
            self._draw_charts()
        except Exception as exc:  # a chart must never take the Lab down: say what went wrong instead
            self.charts.outputs = (
                {"output_type": "stream", "name": "stderr", "text": f"charts failed: {type(exc).__name__}: {exc}\n"},
            )

    def _draw_charts(self) -> None:
        """Redraw the timeline of the latest run and the compensation durations by step."""
        from sagakit.analysis import chart_mimebundle, compensation_distribution, timeline

        self._chart_redraw = None
        last = self.saga.history.last
        if last is None:
            self.charts.outputs = ()
            return
        import altair as alt

        chart: Any = timeline(last, width=420)
        steps = self.saga.history.steps
        if ((steps["phase"] == "compensate") & steps["status"].isin(["succeeded", "failed"])).any():
            chart = alt.hconcat(chart, compensation_distribution(steps, width=320))
        self.charts.outputs = ({"output_type": "display_data", "data": chart_mimebundle(chart), "metadata": {}},)

    # -- faults ---------------------------------------------------------------------------

    def _on_controls(self, change: Mapping[str, Any]) -> None:
        if self._syncing:
            return
        plan = self.saga.faults
        wanted: Mapping[str, Any] = change["new"]
        try:
            for step in self.saga.step_names:
                fault = _fault(step, wanted.get(step), plan.get(step))
                if fault is None:
                    if step in plan:
                        del plan[step]
                elif plan.get(step) != fault:
                    plan[step] = fault
        except (TypeError, ValueError) as exc:  # a value the plan refuses: show why, keep the plan
            self.widget.status = f'<span style="color:#c62828">✖ {html.escape(str(exc))}</span>'
            self._on_faults(plan)

    def _on_faults(self, plan: FaultPlan) -> None:
        self._syncing = True
        try:
            self.widget.faults = {name: [fault.mode, fault.delay, fault.probability]
                                  for name, fault in plan.items() if name in self._names}
        finally:
            self._syncing = False
        self._suspends = None  # other faults may make runs wait: observe the next one
        self._state.plan(planned_notes(plan))
        self._hints = fault_hints(plan, self.saga.step_names)
        self._state.hints = self._hints
        if not self._busy and (self.task is None or self.task.done()):
            if self._hints:
                self.widget.status = self._hints_html()
            elif "sagakit-hint" in self.widget.status:
                self.widget.status = "ready"
        self._schedule_draw()


async def _as_coroutine(work: Awaitable[Any]) -> Any:
    return await work


def _kernel() -> Any:
    import sys

    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    shell = ipython.get_ipython()
    return getattr(shell, "kernel", None)


def _status_html(run: Run) -> str:
    if run.status == "completed":
        return f'<span style="color:#2e7d32">✔ completed in {run.duration_ms:.1f} ms</span>'
    error = run.original_error if run.original_error is not None else run.error
    parts = [f"✖ {html.escape(run.status)}"]
    if run.failed_step is not None:
        parts.append(f": step <code>{html.escape(run.failed_step)}</code> failed")
    if error is not None:
        parts.append(f" — {html.escape(error_summary(error, run))}")
    if run.status == "compensation_failed" and run.error is not None and run.error is not error:
        parts.append(f"; then {html.escape(error_summary(run.error, run))}")
    if run.compensations_run:
        count = run.compensations_run
        parts.append(f" · {count} compensation{'' if count == 1 else 's'}")
    parts.append(f" · {run.duration_ms:.1f} ms")
    return '<span style="color:#c62828">' + "".join(parts) + "</span>"
