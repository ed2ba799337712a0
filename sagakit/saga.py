"""Saga (alias CompensationPrimitive): a saga's definition and its entry points."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sagakit._checks import check_bool, check_observer, check_observers, describe
from sagakit._process import run_observers
from sagakit._sync import run_sync
from sagakit.context import WorkflowContext
from sagakit.engine import Backend, LocalBackend, RunRequest, new_run_id
from sagakit.errors import UnknownStepError
from sagakit.events import Observer
from sagakit.faults import FaultLike, FaultPlan
from sagakit.redaction import RedactLike, as_redactor
from sagakit.runs import Run, RunHistory
from sagakit.steps import Parallel, Stage, StageLike, Step, check_name, coerce_stages

if TYPE_CHECKING:
    import datetime as dt
    from typing import Literal

    from sagakit.explore import Exploration, LatencyLike
    from sagakit.journal import SqliteJournal
    from sagakit.notebook.lab import Lab

__all__ = ["CompensationPrimitive", "Saga"]

_LOCAL = LocalBackend()


#: What defines a saga: read-only once built (``Saga.replace`` makes a changed copy).
_DEFINITION = frozenset(
    {"name", "stages", "steps", "step_names", "continue_on_compensation_failure", "log_compensations",
     "redactor", "journal", "pivot", "forward_from"}
)
#: What ``Saga.replace`` can change: the constructor's arguments.
_CHANGES = ("name", "stages", "continue_on_compensation_failure", "log_compensations", "observers", "faults",
            "journal", "redact")


class Saga:
    """A saga: stages run in order, each undone by its compensation if a later one fails.

    The definition (``name``, ``stages``, ``steps``, ``step_names``, ``pivot``,
    ``continue_on_compensation_failure``, ``log_compensations``, ``redactor``, ``journal``)
    is read-only once built, so nothing derived from it can go stale: :meth:`replace` returns
    a changed copy. What belongs to running it stays mutable: ``faults`` (the plan the Lab
    toggles), ``history``, and the observers (:meth:`observe`).

    Args:
        name: the saga's name, used in events, frames, spans and diagrams.
        stages: steps in order. Each is a :func:`~sagakit.step`, a
            :func:`~sagakit.parallel` stage, an ``(action, compensation)`` tuple (the
            compensation may be ``None``), or a bare callable (nothing to undo). At most one
            step is the pivot (``step(..., kind="pivot")``); the steps after it are retriable.
        continue_on_compensation_failure: when a compensation raises, go on compensating the
            remaining steps (``True``) or stop there (``False``, the default). Either way the
            run ends with :class:`~sagakit.CompensationError`; nothing is swallowed.
        log_compensations: emit the ``compensation_*`` log events (see ``sagakit.telemetry``).
        observers: called with every event of every run of this saga.
        faults: the initial fault plan (``saga.faults``).
        journal: a durable journal observer (see ``sagakit.SqliteJournal``) for every run. A
            path is refused here (the saga could not close the file); open the journal
            yourself, or pass the path to :meth:`run`, which opens and closes it.
        redact: what counts as a secret in this saga's payloads (``saga.redactor``): extra
            sensitive key names added to the defaults (password, token, card ...), or a
            :class:`~sagakit.redaction.Redactor`. Secrets are masked in logs, spans, frames,
            diagrams and exports.

    Raises:
        TypeError, ValueError: the definition is invalid; the message names the position or
            step and what was expected. Nothing runs.
    """

    name: str
    stages: tuple[Stage, ...]
    steps: tuple[Step, ...]
    step_names: tuple[str, ...]
    #: The pivot step's name (``step(..., kind="pivot")``), or ``None``.
    pivot: str | None
    #: The position in ``stages`` of the first stage after the pivot (``None`` without one):
    #: from there a failure is retried forward, never rolled back.
    forward_from: int | None
    continue_on_compensation_failure: bool
    log_compensations: bool
    redactor: Any
    journal: Observer | None

    def __init__(
        self,
        name: str,
        stages: Sequence[StageLike],
        *,
        continue_on_compensation_failure: bool = False,
        log_compensations: bool = True,
        observers: Iterable[Observer] = (),
        faults: Mapping[str, FaultLike] | None = None,
        journal: Observer | None = None,
        redact: RedactLike = None,
    ) -> None:
        check_name(name, "saga name")
        check_bool(continue_on_compensation_failure, f"saga {name!r} continue_on_compensation_failure")
        check_bool(log_compensations, f"saga {name!r} log_compensations")
        observers = check_observers(observers, f"saga {name!r} observers")
        if journal is not None:
            if isinstance(journal, str | bytes | os.PathLike):
                raise TypeError(
                    f"saga {name!r} journal: expected a journal object such as sagakit.SqliteJournal(path), got "
                    f"the path {journal!r}; a saga cannot know when to close a file it opened. Open it yourself "
                    "(journal = sagakit.SqliteJournal(path)), or pass the path to run(..., journal=...), which "
                    "opens and closes it around that run"
                )
            check_observer(journal, f"saga {name!r} journal")
        redactor = as_redactor(redact, saga=name)
        stage_tuple = coerce_stages(stages, name)
        steps = tuple(
            member for stage in stage_tuple for member in (stage.steps if isinstance(stage, Parallel) else (stage,))
        )
        define = object.__setattr__
        define(self, "name", name)
        define(self, "redactor", redactor)
        define(self, "stages", stage_tuple)
        define(self, "steps", steps)
        define(self, "step_names", tuple(s.name for s in steps))
        pivot = next((number for number, stage in enumerate(stage_tuple)
                      if isinstance(stage, Step) and stage.kind == "pivot"), None)
        define(self, "pivot", None if pivot is None else stage_tuple[pivot].name)
        # The position of the first stage after the pivot: from there the run recovers forward.
        define(self, "forward_from", None if pivot is None else pivot + 1)
        # The steps that are not compensatable, recorded with each run (its info) so that a
        # run read back without its saga still knows them.
        self._kinds: dict[str, str] = {s.name: s.kind for s in steps if s.kind != "compensatable"}
        define(self, "continue_on_compensation_failure", continue_on_compensation_failure)
        define(self, "log_compensations", log_compensations)
        define(self, "journal", journal)
        self._observers: list[Observer] = list(observers)
        if journal is not None:
            self._observers.append(journal)
            _bind_journal(journal, self)
        # Compensation faults on these could never fire: the fault plan refuses them.
        self._uncompensated = tuple(member.name for member in steps if member.compensate is None)
        self.faults = FaultPlan(faults, steps=self.step_names, saga=name, uncompensated=self._uncompensated)
        self._history = RunHistory()
        # The local engine's per-stage plan, built on the first run (see sagakit._recorder.stage_plan).
        self._plan: tuple[Any, ...] | None = None
        # Whether a compensation may give the loop control: the local engine's rollback then
        # starts in a task of its own (see LocalBackend.run).
        self._compensations_suspend = any(member.compensation_suspends for member in steps)

    # -- definition -------------------------------------------------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _DEFINITION:
            raise AttributeError(_read_only(self, name))
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if name in _DEFINITION:
            raise AttributeError(_read_only(self, name))
        object.__delattr__(self, name)

    def replace(self, **changes: Any) -> Saga:
        """A new saga like this one with ``changes`` applied, as ``dataclasses.replace`` does.

        Args:
            **changes: any of the constructor's arguments: ``name``, ``stages``,
                ``continue_on_compensation_failure``, ``log_compensations``, ``observers``,
                ``faults``, ``journal``, ``redact``. What is not given is carried over:
                the same observers and journal, the same redactor, and the faults of the
                steps the new saga still has.

        Returns:
            A saga of the same class, validated as any new one is, with an empty history.
            It is built by :class:`Saga`'s constructor: attributes a subclass adds of its
            own are not copied.

        Raises:
            TypeError: a change names no constructor argument (the message lists them), or
                a changed value is invalid, as for a new saga.
        """
        unknown = [key for key in changes if key not in _CHANGES]
        if unknown:
            raise TypeError(
                f"{type(self).__name__}.replace: unknown change {unknown[0]!r}; expected any of "
                + ", ".join(_CHANGES)
            )
        journal = changes.get("journal", self.journal)
        kept_observers = [observer for observer in self._observers if observer is not self.journal]
        explicit_faults = "faults" in changes
        new = object.__new__(type(self))
        Saga.__init__(
            new,
            changes.get("name", self.name),
            changes.get("stages", self.stages),
            continue_on_compensation_failure=changes.get(
                "continue_on_compensation_failure", self.continue_on_compensation_failure
            ),
            log_compensations=changes.get("log_compensations", self.log_compensations),
            observers=changes.get("observers", kept_observers),
            faults=changes["faults"] if explicit_faults else None,
            journal=journal,
            redact=changes.get("redact", self.redactor),
        )
        if not explicit_faults:
            new.faults = {step: fault for step, fault in self._faults.items() if step in new.step_names}
        return new

    @property
    def faults(self) -> FaultPlan:
        """The fault plan every run uses unless ``run(..., faults=...)`` gives another."""
        return self._faults

    @faults.setter
    def faults(self, plan: Mapping[str, FaultLike] | None) -> None:
        checked = FaultPlan(plan, steps=self.step_names, saga=self.name, uncompensated=self._uncompensated)
        current = getattr(self, "_faults", None)
        if current is None:
            self._faults = checked
        else:  # keep the same object so that watchers (the Lab) see the change
            current.replace(checked)

    @property
    def history(self) -> RunHistory:
        """Every run of this saga object, newest last (see :class:`~sagakit.RunHistory`)."""
        return self._history

    @history.setter
    def history(self, history: RunHistory) -> None:
        if not isinstance(history, RunHistory):
            raise TypeError(f"saga {self.name!r} history: expected a sagakit.RunHistory, got {describe(history)}")
        self._history = history

    @property
    def observers(self) -> list[Observer]:
        """The observers of every run: those given, those added by :meth:`observe`, and the journal."""
        return self._observers

    @observers.setter
    def observers(self, observers: Iterable[Observer]) -> None:
        self._observers = list(check_observers(observers, f"saga {self.name!r} observers"))

    def get_step(self, name: str) -> Step:
        """The step called ``name``.

        Raises:
            UnknownStepError: the saga has no such step (the message lists its steps).
        """
        for member in self.steps:
            if member.name == name:
                return member
        raise UnknownStepError(name, self.step_names, saga=self.name)

    def step(self, name: str) -> Step:
        """Deprecated alias of :meth:`get_step` (``sagakit.step(fn)`` is what builds a step)."""
        warnings.warn(
            "Saga.step(name) is deprecated; use Saga.get_step(name) (sagakit.step(fn) builds a step)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.get_step(name)

    def index_of(self, name: str) -> int:
        """The position of step ``name`` among the saga's steps (parallel branches count)."""
        return self.step_names.index(self.get_step(name).name)

    def observe(self, observer: Observer) -> Callable[[], None]:
        """Send every event of every run of this saga to ``observer``; returns an undo."""
        check_observer(observer, f"saga {self.name!r} observer")
        self._observers.append(observer)

        def unobserve() -> None:
            if observer in self._observers:
                self._observers.remove(observer)

        return unobserve

    # -- running ----------------------------------------------------------------------

    def _request(
        self,
        data: Any,
        context: WorkflowContext | None,
        faults: Mapping[str, FaultLike] | None,
        observers: Iterable[Observer],
        journal: Observer | None,
    ) -> RunRequest:
        run_id = new_run_id()
        if context is None:
            context = WorkflowContext._for_run(run_id, self.name)
        elif not isinstance(context, WorkflowContext):
            raise TypeError(f"saga {self.name!r} context: expected a WorkflowContext or None, got {describe(context)}")
        plan = self._faults if faults is None else FaultPlan(
            faults, steps=self.step_names, saga=self.name, uncompensated=self._uncompensated
        )
        if not observers and journal is None and observers is not None:
            return RunRequest(self, data, context, plan, run_observers(self, self._observers), run_id)
        extra = check_observers(observers, f"saga {self.name!r} observers")
        if journal is not None:
            check_observer(journal, f"saga {self.name!r} journal")
            extra += (journal,)
            _bind_journal(journal, self)
        return RunRequest(self, data, context, plan, run_observers(self, (*self._observers, *extra)), run_id)

    async def run(
        self,
        data: Any = None,
        context: WorkflowContext | None = None,
        *,
        faults: Mapping[str, FaultLike] | None = None,
        observers: Iterable[Observer] = (),
        journal: Observer | str | os.PathLike[str] | None = None,
        backend: Backend | None = None,
    ) -> Run:
        """Run the saga once and return the :class:`~sagakit.Run`; step failures don't raise.

        Args:
            data: the first stage's input.
            context: the caller's context (a fresh one when omitted).
            faults: a fault plan for this run only, instead of ``saga.faults``.
            observers: extra observers for this run only.
            journal: a durable journal for this run only: a journal object, or the path of a
                journal file, which is opened as ``sagakit.SqliteJournal(path)`` for this run
                and closed (its records committed) when the run ends.
            backend: where to run (default: this process's event loop).

        Raises:
            TypeError, ValueError: an argument is invalid (the message names it); nothing ran.
            JournalError: the journal file cannot be used; nothing ran.
            asyncio.CancelledError: the caller cancelled the run; the completed steps were
                compensated first, and the run is in ``saga.history`` as ``cancelled``.
        """
        if backend is None:
            backend = _LOCAL
        elif not callable(getattr(backend, "run", None)):
            raise TypeError(
                f"saga {self.name!r} backend: expected a sagakit.Backend (an object with an async "
                f"run(request) method) or None, got {describe(backend)}"
            )
        if not isinstance(journal, str | bytes | os.PathLike):
            return await backend.run(self._request(data, context, faults, observers, journal))
        if isinstance(journal, bytes):
            raise TypeError(f"saga {self.name!r} journal: expected a journal, a str or os.PathLike path, got bytes")
        request = self._request(data, context, faults, observers, None)  # checked before the file is opened
        from sagakit.journal import SqliteJournal

        opened = SqliteJournal(journal)
        try:
            _bind_journal(opened, self)
            request.observers += (opened,)
            return await backend.run(request)
        finally:
            opened.close()

    async def execute(
        self,
        data: Any = None,
        context: WorkflowContext | None = None,
        *,
        faults: Mapping[str, FaultLike] | None = None,
        observers: Iterable[Observer] = (),
        journal: Observer | str | os.PathLike[str] | None = None,
        backend: Backend | None = None,
    ) -> Any:
        """Run the saga and return its result; the arguments are :meth:`run`'s.

        Raises:
            Exception: the failed step's original exception, unchanged, after a clean rollback.
            CompensationError: a compensation failed during rollback.
            asyncio.CancelledError: the run was cancelled (after rollback).
        """
        run = await self.run(data, context, faults=faults, observers=observers, journal=journal, backend=backend)
        return run.raise_for_status()

    def run_sync(
        self,
        data: Any = None,
        context: WorkflowContext | None = None,
        *,
        faults: Mapping[str, FaultLike] | None = None,
        observers: Iterable[Observer] = (),
        journal: Observer | str | os.PathLike[str] | None = None,
        backend: Backend | None = None,
    ) -> Run:
        """:meth:`run` from synchronous code, also inside a running loop (a notebook cell)."""
        return run_sync(lambda: self.run(data, context, faults=faults, observers=observers, journal=journal,
                                         backend=backend))

    def execute_sync(
        self,
        data: Any = None,
        context: WorkflowContext | None = None,
        *,
        faults: Mapping[str, FaultLike] | None = None,
        observers: Iterable[Observer] = (),
        journal: Observer | str | os.PathLike[str] | None = None,
        backend: Backend | None = None,
    ) -> Any:
        """:meth:`execute` from synchronous code, also inside a running loop."""
        return run_sync(lambda: self.execute(data, context, faults=faults, observers=observers, journal=journal,
                                             backend=backend))

    # -- notebooks and analysis (implemented in their own modules, imported lazily) ------

    def lab(
        self,
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
    ) -> Lab:
        """The interactive failure lab for this saga (needs ``sagakit[notebook]``).

        See :class:`sagakit.notebook.lab.Lab` for the options; ``journal`` (a
        ``SqliteJournal`` or its path) shows the runs recorded there by earlier kernels and
        other processes.
        """
        from sagakit.notebook.lab import Lab

        return Lab(self, backends=backends, data=data, context=context, runs=runs, history_rows=history_rows,
                   throttle=throttle, charts=charts, pace=pace, journal=journal)

    async def explore(
        self,
        data: Any = None,
        *,
        world: Callable[[], Any] | None = None,
        invariant: Callable[[Any, Run], Any] | None = None,
        modes: Sequence[str] | str | None = None,
        pairs: bool = False,
        search: Literal["exhaustive", "random"] = "exhaustive",
        budget: int = 200,
        seed: int | None = None,
        max_faults: int = 4,
        max_delay: float = 0.0,
        flaky: float = 0.2,
        shrink: bool = True,
        concurrency: int = 8,
        progress: bool | Callable[[int, int], Any] | None = None,
        observers: Iterable[Observer] = (),
        record_history: bool = False,
        clock: Literal["virtual", "real"] = "virtual",
    ) -> Exploration:
        """Run the saga under every fault scenario and check an invariant.

        See :func:`sagakit.explore.explore` for the arguments.
        """
        from sagakit.explore import explore

        return await explore(
            self, data, world=world, invariant=invariant, modes=modes, pairs=pairs, search=search, budget=budget,
            seed=seed, max_faults=max_faults, max_delay=max_delay, flaky=flaky, shrink=shrink,
            concurrency=concurrency, progress=progress, observers=observers, record_history=record_history,
            clock=clock,
        )

    def explore_sync(
        self,
        data: Any = None,
        *,
        world: Callable[[], Any] | None = None,
        invariant: Callable[[Any, Run], Any] | None = None,
        modes: Sequence[str] | str | None = None,
        pairs: bool = False,
        search: Literal["exhaustive", "random"] = "exhaustive",
        budget: int = 200,
        seed: int | None = None,
        max_faults: int = 4,
        max_delay: float = 0.0,
        flaky: float = 0.2,
        shrink: bool = True,
        concurrency: int = 8,
        progress: bool | Callable[[int, int], Any] | None = None,
        observers: Iterable[Observer] = (),
        record_history: bool = False,
        clock: Literal["virtual", "real"] = "virtual",
    ) -> Exploration:
        """:meth:`explore` from synchronous code, also inside a running loop (a notebook cell).

        Every asynchronous entry point has such a twin (``run``/``run_sync``,
        ``execute``/``execute_sync``); :meth:`simulate` is synchronous only, because it runs
        on a clock of its own instead of the caller's loop.
        """
        from sagakit.explore import explore_sync

        return explore_sync(
            self, data, world=world, invariant=invariant, modes=modes, pairs=pairs, search=search, budget=budget,
            seed=seed, max_faults=max_faults, max_delay=max_delay, flaky=flaky, shrink=shrink,
            concurrency=concurrency, progress=progress, observers=observers, record_history=record_history,
            clock=clock,
        )

    def simulate(
        self,
        n: int,
        data: Any = None,
        *,
        faults: Mapping[str, FaultLike] | None = None,
        latency: LatencyLike | Mapping[str, LatencyLike] | None = None,
        compensation_latency: LatencyLike | Mapping[str, LatencyLike] | None = None,
        seed: int | None = 0,
        concurrency: int = 100,
        world: Callable[[], Any] | None = None,
        start: dt.datetime | float | None = None,
        clock: Literal["virtual", "real"] = "virtual",
        observers: Iterable[Observer] = (),
        progress: bool | Callable[[int, int], Any] | None = None,
    ) -> RunHistory:
        """Run the saga ``n`` times on a virtual clock; see :func:`sagakit.explore.simulate`."""
        from sagakit.explore import simulate

        return simulate(
            self, n, data, faults=faults, latency=latency, compensation_latency=compensation_latency, seed=seed,
            concurrency=concurrency, world=world, start=start, clock=clock, observers=observers, progress=progress,
        )

    # -- display ----------------------------------------------------------------------

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        try:
            from sagakit.notebook.diagram import saga_mimebundle
        except ImportError:
            return {"text/plain": repr(self)}
        return saga_mimebundle(self)

    def __repr__(self) -> str:
        parts = []
        for stage in self.stages:
            if isinstance(stage, Parallel):
                parts.append("[" + " | ".join(s.name for s in stage.steps) + "]")
            else:
                parts.append(stage.name)
        return f"<Saga {self.name!r}: {' -> '.join(parts)}>"


def _read_only(saga: Saga, name: str) -> str:
    change = "stages" if name in ("steps", "step_names") else "redact" if name == "redactor" else name
    return (
        f"saga {saga.name!r}: {name!r} is part of the definition, read-only once built; "
        f"saga.replace({change}=...) returns a saga with it changed"
    )


def _bind_journal(journal: Observer, saga: Saga) -> None:
    """Tell a journal which saga its runs come from (so it masks with the saga's redactor)."""
    bind = getattr(journal, "bind", None)
    if callable(bind):
        bind(saga)


class CompensationPrimitive(Saga):
    """The seed-compatible form of :class:`Saga`, built from ``(action, compensation)`` tuples.

    Example::

        workflow = CompensationPrimitive(
            primitives=[(create_user, delete_user), (send_email, None)],
            continue_on_compensation_failure=False,
            log_compensations=True,
        )
        result = await workflow.execute({"email": "a@b.c"}, WorkflowContext(correlation_id="x"))
    """

    def __init__(
        self,
        primitives: Sequence[StageLike],
        continue_on_compensation_failure: bool = False,
        log_compensations: bool = True,
        *,
        name: str = "compensation_workflow",
        observers: Iterable[Observer] = (),
        faults: Mapping[str, FaultLike] | None = None,
        journal: Observer | None = None,
        redact: RedactLike = None,
    ) -> None:
        super().__init__(
            name,
            primitives,
            continue_on_compensation_failure=continue_on_compensation_failure,
            log_compensations=log_compensations,
            observers=observers,
            faults=faults,
            journal=journal,
            redact=redact,
        )

    def replace(self, **changes: Any) -> Saga:
        """A new saga like this one with ``changes`` applied; see :meth:`Saga.replace`.

        ``primitives`` is accepted as the seed's name for ``stages``.
        """
        if "primitives" in changes:
            if "stages" in changes:
                raise TypeError("CompensationPrimitive.replace: give primitives or stages, not both")
            changes["stages"] = changes.pop("primitives")
        return super().replace(**changes)
