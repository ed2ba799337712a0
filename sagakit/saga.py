"""Saga (alias CompensationPrimitive): a saga's definition and its entry points."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sagakit._process import run_observers
from sagakit._sync import run_sync
from sagakit.context import WorkflowContext
from sagakit.engine import Backend, LocalBackend, RunRequest, new_run_id
from sagakit.errors import UnknownStepError
from sagakit.events import Observer
from sagakit.faults import FaultLike, FaultPlan
from sagakit.redaction import RedactLike, as_redactor
from sagakit.runs import Run, RunHistory
from sagakit.steps import Parallel, Stage, StageLike, Step, coerce_stages

__all__ = ["CompensationPrimitive", "Saga"]

_LOCAL = LocalBackend()


class Saga:
    """A saga: stages run in order, each undone by its compensation if a later one fails.

    Args:
        name: the saga's name, used in events, frames, spans and diagrams.
        stages: steps in order. Each is a :func:`~sagakit.step`, a
            :func:`~sagakit.parallel` stage, an ``(action, compensation)`` tuple (the
            compensation may be ``None``), or a bare callable (nothing to undo).
        continue_on_compensation_failure: when a compensation raises, go on compensating the
            remaining steps (``True``) or stop there (``False``, the default). Either way the
            run ends with :class:`~sagakit.CompensationError`; nothing is swallowed.
        log_compensations: emit the ``compensation_*`` log events (see ``sagakit.telemetry``).
        observers: called with every event of every run of this saga.
        faults: the initial fault plan (``saga.faults``).
        journal: a durable journal observer (see ``sagakit.SqliteJournal``) for every run.
        redact: what counts as a secret in this saga's payloads (``saga.redactor``): extra
            sensitive key names added to the defaults (password, token, card ...), or a
            :class:`~sagakit.redaction.Redactor`. Secrets are masked in logs, spans, frames,
            diagrams and exports.

    Raises:
        TypeError, ValueError: the definition is invalid; the message names the position or
            step and what was expected. Nothing runs.
    """

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
        if not isinstance(name, str) or not name.strip():
            raise TypeError(f"saga name: expected a non-empty string, got {type(name).__name__} {name!r}")
        if not isinstance(continue_on_compensation_failure, bool):
            raise TypeError(
                f"saga {name!r} continue_on_compensation_failure: expected a bool, "
                f"got {continue_on_compensation_failure!r}"
            )
        if not isinstance(log_compensations, bool):
            raise TypeError(f"saga {name!r} log_compensations: expected a bool, got {log_compensations!r}")
        self.name = name
        self.redactor = as_redactor(redact, saga=name)
        self.stages: tuple[Stage, ...] = coerce_stages(stages, name)
        self.steps: tuple[Step, ...] = tuple(
            member for stage in self.stages for member in (stage.steps if isinstance(stage, Parallel) else (stage,))
        )
        self.step_names: tuple[str, ...] = tuple(s.name for s in self.steps)
        self.continue_on_compensation_failure = continue_on_compensation_failure
        self.log_compensations = log_compensations
        self.observers: list[Observer] = []
        for observer in observers:
            self.observe(observer)
        if journal is not None:
            self.observe(journal)
            _bind_journal(journal, self)
        self.faults = FaultPlan(faults, steps=self.step_names, saga=name)
        self.history = RunHistory()
        # The local engine's per-stage plan, built on the first run (see engine._stage_plan).
        self._plan: tuple[Any, ...] | None = None

    # -- definition -------------------------------------------------------------------

    @property
    def faults(self) -> FaultPlan:
        """The fault plan every run uses unless ``run(..., faults=...)`` gives another."""
        return self._faults

    @faults.setter
    def faults(self, plan: Mapping[str, FaultLike] | None) -> None:
        checked = FaultPlan(plan, steps=self.step_names, saga=self.name)
        current = getattr(self, "_faults", None)
        if current is None:
            self._faults = checked
        else:  # keep the same object so that watchers (the Lab) see the change
            current.replace(checked)

    def step(self, name: str) -> Step:
        """The step called ``name``."""
        for member in self.steps:
            if member.name == name:
                return member
        raise UnknownStepError(name, self.step_names, saga=self.name)

    def index_of(self, name: str) -> int:
        """The position of step ``name`` among the saga's steps (parallel branches count)."""
        return self.step_names.index(self.step(name).name)

    def observe(self, observer: Observer) -> Callable[[], None]:
        """Send every event of every run of this saga to ``observer``; returns an undo."""
        if not callable(observer):
            raise TypeError(f"saga {self.name!r} observer: expected a callable taking an Event, got {observer!r}")
        self.observers.append(observer)

        def unobserve() -> None:
            if observer in self.observers:
                self.observers.remove(observer)

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
            raise TypeError(f"saga {self.name!r} context: expected a WorkflowContext or None, got {context!r}")
        plan = self._faults if faults is None else FaultPlan(faults, steps=self.step_names, saga=self.name)
        if not observers and journal is None:
            return RunRequest(self, data, context, plan, run_observers(self, self.observers), run_id)
        extra = tuple(observers)
        for observer in extra:
            if not callable(observer):
                raise TypeError(f"saga {self.name!r} observers: expected callables taking an Event, got {observer!r}")
        if journal is not None:
            extra += (journal,)
            _bind_journal(journal, self)
        return RunRequest(self, data, context, plan, run_observers(self, (*self.observers, *extra)), run_id)

    async def run(
        self,
        data: Any = None,
        context: WorkflowContext | None = None,
        *,
        faults: Mapping[str, FaultLike] | None = None,
        observers: Iterable[Observer] = (),
        journal: Observer | None = None,
        backend: Backend | None = None,
    ) -> Run:
        """Run the saga once and return the :class:`~sagakit.Run`; step failures don't raise.

        Args:
            data: the first stage's input.
            context: the caller's context (a fresh one when omitted).
            faults: a fault plan for this run only, instead of ``saga.faults``.
            observers: extra observers for this run only.
            journal: a durable journal for this run only.
            backend: where to run (default: this process's event loop).

        Raises:
            asyncio.CancelledError: the caller cancelled the run; the completed steps were
                compensated first, and the run is in ``saga.history`` as ``cancelled``.
        """
        request = self._request(data, context, faults, observers, journal)
        return await (backend or _LOCAL).run(request)

    async def execute(
        self,
        data: Any = None,
        context: WorkflowContext | None = None,
        *,
        faults: Mapping[str, FaultLike] | None = None,
        observers: Iterable[Observer] = (),
        journal: Observer | None = None,
        backend: Backend | None = None,
    ) -> Any:
        """Run the saga and return its result.

        Raises:
            Exception: the failed step's original exception, unchanged, after a clean rollback.
            CompensationError: a compensation failed during rollback.
            asyncio.CancelledError: the run was cancelled (after rollback).
        """
        run = await self.run(data, context, faults=faults, observers=observers, journal=journal, backend=backend)
        return run.raise_for_status()

    def run_sync(self, data: Any = None, context: WorkflowContext | None = None, **options: Any) -> Run:
        """:meth:`run` from synchronous code, also inside a running loop (a notebook cell)."""
        return run_sync(lambda: self.run(data, context, **options))

    def execute_sync(self, data: Any = None, context: WorkflowContext | None = None, **options: Any) -> Any:
        """:meth:`execute` from synchronous code, also inside a running loop."""
        return run_sync(lambda: self.execute(data, context, **options))

    # -- notebooks and analysis (implemented in their own modules, imported lazily) ------

    def lab(self, **options: Any) -> Any:
        """The interactive failure lab for this saga (needs ``sagakit[notebook]``).

        See :class:`sagakit.notebook.lab.Lab` for the options.
        """
        from sagakit.notebook.lab import Lab

        return Lab(self, **options)

    async def explore(self, data: Any = None, **options: Any) -> Any:
        """Run the saga under every fault scenario and check an invariant.

        See :func:`sagakit.explore.explore` for the options.
        """
        from sagakit.explore import explore

        return await explore(self, data, **options)

    def simulate(self, n: int, data: Any = None, **options: Any) -> RunHistory:
        """Run the saga ``n`` times on a virtual clock; see :func:`sagakit.explore.simulate`."""
        from sagakit.explore import simulate

        return simulate(self, n, data, **options)

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
