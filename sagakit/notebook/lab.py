"""The failure lab: one panel to break a saga on purpose and watch it roll back.

``saga.lab()`` returns a :class:`Lab`. It shows the saga's diagram, one row of controls per
step (fault mode, delay, probability), Run and Run x N buttons with a progress bar, Reset,
a status line, the run history table and two charts (the timeline of the run shown and the
compensation durations across runs). Controls and ``saga.faults`` are kept in sync both ways.
Runs start as tasks on the kernel's event loop, so the kernel stays responsive; an observer
re-colours the diagram while a run is in flight, redrawing at most once per ``throttle``
seconds and never running the layout program again. A run too fast to watch can be played
back at a chosen pace once it ends (``pace``). Picking two runs of the history compares them
(:meth:`Lab.compare`); given a journal, the history holds the runs recorded there by earlier
kernels and other processes too, and a run that needs an operator (``stuck`` after its pivot,
or ``compensation_failed``) has a Resume button (:meth:`Lab.resume`) that carries it on from the
journal once its cause is fixed, drawn live like a run.

The panel is one anywidget view (:class:`~sagakit.notebook.widget.LabView`, ``lab.widget``),
charts included: every front-end anywidget reaches draws the same panel (JupyterLab, Jupyter
Notebook 7, VS Code, Colab, and marimo, where ``lab`` shows as the view, as
``mo.ui.anywidget(lab.widget)`` does). In a Jupyter kernel the Lab displays as two outputs:
a static fallback (the last drawn diagram and the status line, kept up to date) and the view,
which hides the fallback while it lives.

Stable CSS classes for browsers and tests: ``sagakit-lab`` (the panel), ``sagakit-diagram``,
``sagakit-step-<step>`` (a step's row of controls), ``sagakit-fault-<step>``,
``sagakit-delay-<step>``, ``sagakit-probability-<step>`` (each wraps its ``select`` or
``input``), ``sagakit-run``, ``sagakit-run-n``, ``sagakit-n``, ``sagakit-progress``
(``sagakit-progress-label`` reads ``done/total``), ``sagakit-reset``, ``sagakit-pace``,
``sagakit-status``, ``sagakit-history``, ``sagakit-charts``, ``sagakit-compare`` (the
comparison), ``sagakit-reload`` (journal-backed Labs), ``sagakit-resume`` (the Resume buttons: one in each
history row that can be resumed, with ``data-run``, and ``sagakit-resume-shown`` in the status
line for the run shown), ``sagakit-kind`` (a step's kind next to its name, with ``kind-<kind>``)
and ``sagakit-backend``. ``<step>`` is
the step's name when it holds only letters, digits, ``-`` and ``_``; otherwise those other
characters become ``-`` and a short hash of the name follows, so distinct steps keep distinct
classes. The diagram fits the cell, pans and zooms, has a Stop button (``sagakit-stop``), an
inspector (``sagakit-inspector``) and a replay slider (``sagakit-replay``); clicking a past run
in the history draws it. While a run started by the Lab is in flight, a kernel interrupt stops
it like the Stop button: the run is cancelled and its completed steps are compensated.
"""

from __future__ import annotations

import asyncio
import os
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from sagakit._checks import check_positive_int, check_seconds
from sagakit._sync import run_sync as _run_sync
from sagakit.events import Event
from sagakit.faults import FAULT_MODES, Fault, FaultPlan
from sagakit.notebook._inspect import IN_FLIGHT, replay_frames, wire_state
from sagakit.notebook._interrupts import InterruptStop
from sagakit.notebook._layout import layout, saga_shape
from sagakit.notebook._names import css_name
from sagakit.notebook._panels import (
    batch_status,
    chart_data,
    compare_data,
    history_rows,
    message_status,
    run_status,
)
from sagakit.notebook._runs import LabRuns
from sagakit.notebook.diagram_state import (
    DiagramState,
    error_summary,
    fault_hints,
    planned_notes,
    run_caption,
)
from sagakit.notebook.widget import LabView, publish
from sagakit.policies import is_async_callable
from sagakit.steps import Parallel, Step

if TYPE_CHECKING:
    from sagakit.compare import RunComparison
    from sagakit.context import WorkflowContext
    from sagakit.engine import Backend
    from sagakit.journal import SqliteJournal
    from sagakit.runs import Run
    from sagakit.saga import Saga

__all__ = ["Lab", "css_name"]


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


def _weakly(method: Callable[..., None]) -> Callable[..., None]:
    """``method`` of an object, called only while the object lives (a watcher that does not keep
    its Lab alive)."""
    reference = weakref.WeakMethod(method)

    def call(*args: Any) -> None:
        bound = reference()
        if bound is not None:
            bound(*args)

    return call


def _status_text(status: Mapping[str, Any]) -> str:
    return "".join(text for _, text in status.get("text", ()))


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
        charts: draw the timeline and the compensation durations in the panel.
        pace: seconds per event at which a run too fast to watch is played back once it ends
            (``None``: off; the panel has a control to change it).
        journal: a journal whose runs the history shows (from earlier kernels and other
            processes) and where the Lab's own runs are recorded: a
            :class:`~sagakit.SqliteJournal`, or the path of one (opened by the Lab, closed by
            :meth:`close`).

    Raises:
        TypeError, ValueError: an argument is of the wrong type or out of range.
        JournalError: the journal cannot be read.
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
        pace: float | None = None,
        journal: SqliteJournal | str | os.PathLike[str] | None = None,
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
        if not isinstance(charts, bool):
            raise TypeError(f"Lab charts: expected True or False, got {charts!r}")
        if pace is not None:
            check_seconds(pace, "Lab pace", allow_zero=True)
            if pace > 5:
                raise ValueError(f"Lab pace: expected seconds per event from 0 (off) to 5, got {pace!r}")
        self.saga = saga
        self.backends = dict(backends) if backends is not None else None
        self.data = data
        self.context = context
        self.history_rows = history_rows
        self.throttle = float(throttle)
        self.show_charts = charts
        self.task: asyncio.Task[Any] | None = None
        self._runs = LabRuns(saga, journal)
        self._template = layout(saga_shape(saga), name=saga.name)
        self._names = set(saga.step_names)
        self._order = list(saga.step_names)
        self._state = DiagramState(self._template.steps, planned_notes(saga.faults))
        self._kinds = {member.name: member.kind for member in self._template.steps}
        self._hints: dict[str, str] = {}
        self._interrupts = InterruptStop(self.stop, lambda: self.task is not None and not self.task.done())
        self._redraw: asyncio.TimerHandle | None = None
        self._settle_timer: asyncio.TimerHandle | None = None
        self._settle_at = 0.0
        self._history_dirty = True
        self._syncing = False
        self._last_progress = 0.0
        self._events: list[Event] = []  # the engine appends the observed run's events here
        self._applied = 0  # how many of them the diagram shows
        self._drawn_later: Run | None = None  # a run not observed live, drawn at the next redraw
        self._inline: bool | None = None  # whether the saga's runs never give the loop control
        self._suspends: bool | None = None  # whether the last run gave the loop control (None: no run yet)
        self._busy = False
        self._last_run: Run | None = None
        self._last_events: list[Event] | None = None  # the last run's events, observed live
        self._reported: Run | None = None
        self._batch: list[Run] | None = None  # the runs of the last Run x N
        self._shown: Run | None = None  # the run the diagram, inspector and charts show
        self._shown_label = ""
        self._invalid: dict[str, Any] | None = None  # the status a refused control value replaced
        self._display_id: str | None = None
        self._static_drawn: tuple[int, str] | None = None
        self._played: Run | None = None  # the last run played back at the chosen pace
        self._watching = False
        self._unwatch: list[Callable[[], None]] = []

        steps = []
        for stage in saga.stages:
            for member in stage.steps if isinstance(stage, Parallel) else (stage,):
                steps.append((member.name, member.compensate is not None, member.kind))
        #: The panel: one anywidget view (marimo: ``mo.ui.anywidget(lab.widget)``).
        self.widget = LabView(self._template, self._state, title=saga.name, steps=steps, modes=FAULT_MODES,
                              runs=runs, backends=list(self.backends or ()), pace=float(pace or 0.0),
                              journal=self._runs.label, charts=charts)
        #: The diagram and the history are parts of the panel (the same view).
        self.diagram = self.history = self.widget
        widget = self.widget
        widget.on_stop = self.stop
        widget.on_live = self._show_live
        widget.on_run = self._on_run
        widget.on_run_n = self._on_run_n
        widget.on_reset = self.reset
        widget.on_select = self.show_run
        widget.on_compare = self._on_compare
        widget.on_reload = self.refresh
        widget.on_resume = self._on_resume
        widget.on_views = self._on_views
        widget.observe(self._on_controls, names="faults")
        self._watch()
        self._on_faults(saga.faults)
        self.flush()
        if self.show_charts:
            self._draw_charts()

    # -- the runs listed ------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the journal again: runs other processes recorded since appear in the history."""
        if self._runs.journal is None:
            return
        self._runs.refresh()
        self._history_dirty = True
        self.flush()

    @property
    def all_runs(self) -> list[Run]:
        """The runs the history table numbers, oldest first: those read from the journal (not
        made by this kernel), then ``saga.history``."""
        return self._runs.all()

    # -- watching the saga ------------------------------------------------------------------

    @property
    def watching(self) -> bool:
        """Whether the Lab follows the saga's faults and history now.

        A Lab stops when every view of it is gone (its cell was re-run or cleared) and starts
        again when it is displayed anew; :meth:`close` stops it for good.
        """
        return self._watching

    def _watch(self) -> None:
        if self._watching:
            return
        self._watching = True
        self._unwatch = [self.saga.faults.watch(_weakly(self._on_faults)),
                         self.saga.history.watch(_weakly(self._on_history))]

    def _sleep(self) -> None:
        self._watching = False
        for unwatch in self._unwatch:
            unwatch()
        self._unwatch = []

    def _on_views(self, count: int) -> None:
        if count == 0:
            self._sleep()
        elif not self._watching:
            self._watch()
            self._history_dirty = True
            self._on_faults(self.saga.faults)
            self.flush()

    # -- display --------------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def _ipython_display_(self) -> None:
        # Two outputs: the static fallback (kept up to date, by its display id) for front-ends
        # that cannot draw the view, then the view, which hides the fallback while it lives.
        if not self._busy:
            self.flush()  # a run awaited in this cell is drawn (and its status told) in the fallback too
        bundle = self.widget.static_bundle(self._static_status())
        self._display_id = publish(bundle, display_id=self._display_id or True)
        self._static_drawn = (self._state.version, self._static_status())
        publish(self.widget)

    def _display_(self) -> Any:
        # marimo's display protocol: marimo draws the anywidget view itself.
        return self.widget

    def __repr__(self) -> str:
        return f"<Lab {self.saga.name!r}: {len(self.saga.step_names)} steps, {len(self.all_runs)} runs>"

    @property
    def svg(self) -> str:
        """The diagram as last sent to the front-end (SVG, or HTML for the text fallback)."""
        return self._template.render(self._state)

    @property
    def states(self) -> dict[str, str]:
        """Each step's current state (``pending``, ``running``, ``failed``...)."""
        return {name: self._state.states.get(name, "pending") for name in self.saga.step_names}

    def close(self) -> None:
        """Stop following the saga, close the widget, and close a journal the Lab opened."""
        self._sleep()
        for handle in (self._redraw, self._settle_timer):
            if handle is not None:
                handle.cancel()
        self.widget.close()
        self._runs.close()

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
        self._batch = None
        self._busy = True
        self._leave_replay()
        try:
            run = await self._run_one()
        finally:
            self._busy = False
            self._schedule_draw()
        self._schedule_settle()
        return run

    def run_sync(self) -> Run:
        """:meth:`run` from synchronous code, also inside a running loop (a notebook cell); the
        panel is drawn when it returns."""
        run = _run_sync(self.run)
        self._after_sync()
        return run

    def _after_sync(self) -> None:
        # The run's redraw timers belonged to the loop that ran it, which is gone now.
        for handle in (self._redraw, self._settle_timer):
            if handle is not None:
                handle.cancel()
        self._redraw = self._settle_timer = None
        self.flush()
        self._settle()

    async def _run_one(self) -> Run:
        context = self.context() if self.context is not None else None
        self._schedule_draw()  # live colouring: redraws keep coming while the run is in flight
        # The engine calls list.append for every event: the cheapest observer there is. A new
        # list per run: an earlier run's events not drawn yet are dropped, not kept.
        events: list[Event] = []
        self._events = events
        self._applied = 0
        self._drawn_later = None
        live = self._draws_live()
        # Kept before the run ends: a stopped run never returns here, and is drawn from these.
        self._last_events = events if live else None
        # A callback the loop runs only if the run gives it control: whether a redraw could
        # have shown this run in flight, and so whether the next one is worth observing.
        suspended: list[bool] = []
        probe = asyncio.get_running_loop().call_soon(suspended.append, True)
        journal = self._runs.record_to
        try:
            run = await self.saga.run(self._input(), context, observers=(events.append,) if live else (),
                                      backend=self._backend(), journal=journal)
        finally:
            probe.cancel()
            self._suspends = bool(suspended)
        if not live:
            self._drawn_later = run
        self._last_run = run
        self._runs.recorded(run)
        return run

    # -- resuming ------------------------------------------------------------------------------

    def _resumable(self, number: int) -> Run:
        journal = self._runs.journal
        if journal is None:
            raise ValueError("Lab.resume: this Lab has no journal to resume runs from; give it the journal the runs "
                             "are recorded in: saga.lab(journal=...)")
        runs = self.all_runs
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= len(runs):
            raise ValueError(f"Lab.resume number: expected a run number 1..{len(runs)}, got {number!r}")
        return runs[number - 1]

    async def resume(self, number: int) -> Run:
        """Resume run ``number`` of the history (a Resume button) from the Lab's journal, drawing it
        live; returns the run as it ends.

        A ``stuck`` run retries its pending step and goes on forward; a ``compensation_failed``
        run retries its failed compensation and goes on with the rollback. Nothing that already
        succeeded runs again, and the run keeps its place (and number) in the history. Fix the
        cause first.

        Raises:
            ValueError: the Lab has no journal, or ``number`` names no run of the history.
            ResumeRefused: the journal refuses (the run is not resumable, runs elsewhere, or its
                steps do not match the saga); nothing changed, the status line says why.
        """
        run = self._resumable(number)
        self._batch = None
        self._busy = True
        self._leave_replay()
        try:
            finished = await self._resume_one(run)
        finally:
            self._busy = False
            self._schedule_draw()
        self._schedule_settle()
        return finished

    def resume_sync(self, number: int) -> Run:
        """:meth:`resume` from synchronous code, also inside a running loop (a notebook cell)."""
        run = _run_sync(lambda: self.resume(number))
        self._after_sync()
        return run

    async def _resume_one(self, run: Run) -> Run:
        journal = self._runs.journal
        assert journal is not None  # checked by _resumable
        # The run is drawn as it stopped, then each event of its resumption as it comes.
        events = list(run.events)
        self._events = events
        self._applied = 0
        self._drawn_later = None
        self._last_events = events
        self._schedule_draw()
        try:
            finished: Run = await journal.resume(run.run_id, self.saga, observers=(events.append,))
        except BaseException:
            latest = self.saga.history.last
            if latest is not None and latest.run_id == run.run_id and latest is not run:
                # Stopped: past the pivot the run went on to its end, shielded; it is drawn.
                self._last_run = latest
            else:
                self._last_events = None
            raise
        self._last_run = finished
        self._runs.recorded(finished)
        return finished

    async def _resume_and_flush(self, number: int) -> Run | None:
        from sagakit.errors import JournalError, ResumeRefused

        try:
            run = await self.resume(number)
        except (ResumeRefused, JournalError, ValueError) as exc:
            # Refused: nothing changed. The line says why; the diagram shows the run as it was.
            self.flush()
            self.widget.status = message_status("error", f"✖ {exc}", self._hints.values())
            return None
        self.flush()
        return run

    def _on_resume(self, number: int) -> None:
        if self.task is None or self.task.done():
            self.start(self._resume_and_flush(number))

    @property
    def live(self) -> bool:
        """Whether the next run will be observed event by event, to colour it while in flight.

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
        return self._draws_live()

    def _draws_live(self) -> bool:
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
        """Run the saga ``n`` times (default: the N control) in sequence, with progress; the
        status line gives the totals."""
        count = check_positive_int(self.widget.n if n is None else n, "Lab.run_n n")
        self._set_progress(0, count)
        runs: list[Run] = []
        self._busy = True
        self._leave_replay()
        try:
            for number in range(1, count + 1):
                runs.append(await self._run_one())
                now = time.monotonic()
                if now - self._last_progress >= self.throttle:
                    self._last_progress = now
                    self._set_progress(number, count)
        finally:
            self._busy = False
            self._batch = runs
            self._set_progress(len(runs), count)
            self.flush()
        if runs:
            self._schedule_settle()
        return runs

    def run_n_sync(self, n: int | None = None) -> list[Run]:
        """:meth:`run_n` from synchronous code, also inside a running loop (a notebook cell)."""
        runs = _run_sync(lambda: self.run_n(n))
        self._after_sync()
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
        self._interrupts.catch(loop)
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

    async def wait(self) -> Any:
        """Wait for the run started by the last click (if any) and return its outcome."""
        if self.task is None:
            return None
        return await self.task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.widget.busy = False
        self._interrupts.release()
        if task.cancelled():
            self._busy = False
            last = self.saga.history.last
            if last is not None and last.status == "cancelled":
                self._last_run = last
                if not self._events:
                    self._drawn_later = last
            self.flush()
            if (last is None or last.status != "cancelled") and last is not self._last_run:
                self.widget.status = message_status("stopped", "■ stopped before the run started")
            self._schedule_settle()
            return
        error = task.exception()
        if error is not None:
            self.widget.status = message_status(
                "error", f"✖ the Lab could not run the saga: {error_summary(error)}")

    def _run_status(self, run: Run) -> dict[str, Any]:
        # A run that needs an operator and is in the journal offers Resume in the status line.
        number = 0
        if self._runs.resumable(run):
            number = next((position for position, listed in enumerate(self.all_runs, start=1)
                           if listed.run_id == run.run_id), 0)
        return run_status(run, self._hints.values(), resume=number, journal=self._runs.journal is not None)

    def _on_run(self) -> None:
        if self.task is None or self.task.done():
            self.start(self._run_and_flush())

    def _on_run_n(self) -> None:
        if self.task is None or self.task.done():
            self.start(self.run_n())

    def reset(self) -> None:
        """Remove every fault, clear the colouring and the progress (the history stays)."""
        self.saga.faults.clear()
        self._events = []
        self._applied = 0
        self._drawn_later = None
        self._last_run = None
        self._shown = None
        self._batch = None
        self._state.reset()
        self.widget.show_run(None)
        self._leave_replay()
        with self.widget.hold_sync():
            self.widget.comparison = {}
            self.widget.selected = 0
            self._set_progress(0, self.widget.progress[1])
            self.widget.status = self._idle_status()
        self.flush()
        self._schedule_settle()

    def _set_progress(self, done: int, total: int) -> None:
        self.widget.progress = [done, total]

    # -- drawing --------------------------------------------------------------------------

    def _leave_replay(self) -> None:
        # A run (or a reset) shows live: a replay or a playback left open would freeze the
        # diagram on an old frame.
        widget = self.widget
        if widget.replaying:
            widget.replaying = False
            with widget.hold_sync():
                widget.replay = {}
                widget.playback = {}
                widget.state = wire_state(self._template.steps, self._state)

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
            self._interrupts.keep()
            self._schedule_draw()

    def flush(self) -> None:
        """Draw the diagram, status and history now, from every event received so far."""
        if self._redraw is not None:
            self._redraw.cancel()
            self._redraw = None
        state = self._state
        if self._drawn_later is not None:
            for event in self._drawn_later.events:
                state(event)
            self._drawn_later = None
        events = self._events
        if self._applied < len(events):
            for event in events[self._applied:]:
                state(event)
            self._applied = len(events)
        widget = self.widget
        if self._busy:
            # While a run is in flight the status line travels with the diagram's changes: one
            # message per redraw.
            running = [name for name, value in state.states.items() if value in ("running", "compensating", "retrying")]
            text: list[list[str]] = [["", "running… "]]
            for number, name in enumerate(running):
                text += [["", ", " if number else ""], ["code", name], ["", f" {state.states[name]}"]]
            widget.push(status={"level": "running", "text": text, "hints": []})
            if widget.inspected is not None and widget.inspector.get("message") != IN_FLIGHT:
                widget.refresh_inspector(in_flight=True)
        else:
            widget.push(full=True)
            self._report()
        if self._history_dirty:
            self._history_dirty = False
            self._draw_history()

    def _report(self) -> None:
        # A run that ended since the last redraw: the inspector, replay and status follow it.
        widget = self.widget
        if self._last_run is not None and self._last_run is not self._reported:
            self._reported = run = self._last_run
            self._shown = run
            self._shown_label = "latest run"
            self._invalid = None
            with widget.hold_sync():
                widget.show_run(run, self._last_events)
                widget.selected = 0
                if self._batch is not None and len(self._batch) > 1:
                    widget.status = batch_status(self._batch, self._hints.values())
                else:
                    widget.status = self._run_status(run)

    def _draw_history(self) -> None:
        runs = self.all_runs
        total = len(runs)
        first = max(0, total - self.history_rows)
        journal_ids = self._runs.from_journal()
        with self.widget.hold_sync():
            self.widget.rows = history_rows(runs[first:], first + 1, journal_ids, self._runs.resumable)
            self.widget.total = total

    def show_run(self, number: int) -> None:
        """Draw run ``number`` of the history (1 is the oldest kept): a click on its row."""
        runs = self.all_runs
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= len(runs):
            raise ValueError(f"Lab.show_run number: expected 1..{len(runs)}, got {number!r}")
        if self._busy:
            return  # a run in flight keeps the diagram
        run = runs[number - 1]
        self._events = []
        self._applied = 0
        self._drawn_later = None
        state = self._state
        state.reset()
        for event in run.events:
            state(event)
        state.caption = f"run {number}: {run_caption(run)}"
        state.version += 1
        self._shown = run
        self._shown_label = f"run {number}"
        self._leave_replay()
        with self.widget.hold_sync():
            self.widget.show_run(run)
            self.widget.selected = number
            self.widget.status = self._run_status(run)
        self.flush()
        self._schedule_settle()

    def inspect(self, step: str, phase: str = "forward") -> dict[str, Any]:
        """Open the inspector on ``step`` (``phase="compensate"``: its compensation), as a click
        does; returns what it shows (see :func:`sagakit.notebook._inspect.inspector_data`).

        Raises:
            ValueError: the saga has no step ``step``, or ``phase`` is neither ``forward`` nor
                ``compensate``.
        """
        if step not in self._names:
            raise ValueError(f"Lab.inspect step: expected one of {', '.join(self._order)}, got {step!r}")
        if phase not in ("forward", "compensate"):
            raise ValueError(f"Lab.inspect phase: expected 'forward' or 'compensate', got {phase!r}")
        self.flush()  # the run that just ended is the one to inspect
        self.widget.inspect(step, phase, in_flight=self._busy)
        return dict(self.widget.inspector)

    def compare(self, a: int, b: int) -> RunComparison:
        """Compare runs ``a`` and ``b`` of the history (numbers as in its table), as picking two
        rows does: both diagrams side by side, the first divergence marked, and the table.

        Raises:
            ValueError: a number names no run of the history.
        """
        from sagakit.compare import compare_runs

        runs = self.all_runs
        for name, number in (("a", a), ("b", b)):
            if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= len(runs):
                raise ValueError(f"Lab.compare {name}: expected a run number 1..{len(runs)}, got {number!r}")
        first, second = runs[a - 1], runs[b - 1]
        comparison = compare_runs(first, second)
        states = []
        for run in (first, second):
            template = self._template
            state = DiagramState(template.steps)
            for event in run.events:
                state(event)
            state.caption = run_caption(run)
            divergence = comparison.first_divergence
            if divergence is not None and divergence.step in state.classes:
                state.classes[divergence.step] += " diverges"
            states.append(wire_state(template.steps, state))
        self.widget.comparison = compare_data(comparison, (a, b), (states[0], states[1]))
        return comparison

    def _on_compare(self, a: int, b: int) -> None:
        try:
            self.compare(a, b)
        except ValueError as exc:
            self.widget.status = message_status("invalid", f"✖ {exc}")

    def _show_live(self) -> None:
        # Back from a replay: the diagram shows the state the kernel holds.
        self.widget.push(full=True)

    def _idle_status(self) -> dict[str, Any]:
        hints = list(self._hints.values())
        return message_status("ready", "ready", hints)

    def _on_history(self, _run: Run) -> None:
        self._history_dirty = True
        self._schedule_draw()

    # -- after a run settles: charts, playback, the static fallback ------------------------------

    def _schedule_settle(self) -> None:
        # Charts and the static fallback cost a millisecond or more: draw them once things
        # settle (no run for a moment), not per run. One timer, pushed back by each run.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._settle()
            return
        self._settle_at = loop.time() + max(self.throttle, 0.1)
        if self._settle_timer is None:
            self._settle_timer = loop.call_at(self._settle_at, self._settle)

    def _settle(self) -> None:
        self._settle_timer = None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None and loop.time() < self._settle_at:  # a run came since: later
            self._settle_timer = loop.call_at(self._settle_at, self._settle)
            return
        if self._busy:
            return
        self.flush()
        try:
            self._play_back()
            if self.show_charts:
                self._draw_charts()
        except Exception as exc:  # a chart must never take the Lab down: say what went wrong instead
            self.widget.charts = {"error": f"charts failed: {type(exc).__name__}: {exc}"}
        self._update_static()

    def _play_back(self) -> None:
        # A run faster than the chosen pace could show is played back at that pace.
        pace = self.widget.pace
        run = self._shown
        if not pace or run is None or run is not self._last_run or self._batch is not None:
            return
        if self._played is run:
            return
        self._played = run
        frames = replay_frames(run, self._template, self._last_events)
        if run.duration_ms >= pace * 1000.0 * len(frames["frames"]):
            return
        frames["pace"] = pace
        frames["run"] = run.run_id
        self.widget.playback = frames
        self.widget.replaying = True

    def _draw_charts(self) -> None:
        """Redraw the timeline of the run shown and the compensation durations by step."""
        runs = self.all_runs
        label = self._shown_label or "latest run"
        if self._shown is not None:
            label = f"{label}: {run_caption(self._shown)}"
        self.widget.charts = chart_data(self._shown, runs, self._order, label)

    def _static_status(self) -> str:
        return _status_text(self.widget.status) if self.widget.status else ""

    def _update_static(self) -> None:
        if self._display_id is None:
            return
        status = self._static_status()
        if self._static_drawn == (self._state.version, status):
            return
        publish(self.widget.static_bundle(status), display_id=self._display_id, update=True)
        self._static_drawn = (self._state.version, status)

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
            if self._invalid is None:
                self._invalid = dict(self.widget.status)
            self.widget.status = message_status("invalid", f"✖ {exc}")
            self._on_faults(plan)
            return
        if self._invalid is not None:  # the value is fixed: the error goes
            self.widget.status = self._invalid
            self._invalid = None

    def _on_faults(self, plan: FaultPlan) -> None:
        self._syncing = True
        try:
            self.widget.faults = {name: [fault.mode, fault.delay, fault.probability]
                                  for name, fault in plan.items() if name in self._names}
        finally:
            self._syncing = False
        self._suspends = None  # other faults may make runs wait: observe the next one
        self._state.plan(planned_notes(plan))
        self._hints = fault_hints(plan, self._order, self._kinds)
        self._state.hints = self._hints
        if not self._busy and (self.task is None or self.task.done()) and self._invalid is None:
            status = dict(self.widget.status or self._idle_status())
            status["hints"] = list(self._hints.values())
            self.widget.status = status
        self._schedule_draw()


async def _as_coroutine(work: Awaitable[Any]) -> Any:
    return await work

