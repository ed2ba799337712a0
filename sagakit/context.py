"""The context every step and compensation receives."""

from __future__ import annotations

from typing import Any

__all__ = ["WorkflowContext"]


class _RunFacts:
    """What every context of one run shares."""

    __slots__ = ("correlation_id", "metadata", "run_id", "saga", "world")

    def __init__(
        self, correlation_id: str | None, metadata: dict[str, Any], world: Any, run_id: str | None, saga: str | None
    ) -> None:
        self.correlation_id = correlation_id
        self.metadata = metadata
        self.world = world
        self.run_id = run_id
        self.saga = saga


class WorkflowContext:
    """Who is running, and on whose behalf.

    Create one per saga execution with a ``correlation_id`` (your request or business id)
    and optional ``metadata``. During a run each step receives its own context that also
    says which run, saga, step, phase and attempt it is in. The run-wide facts
    (``correlation_id``, ``metadata``, ``world``, ``run_id``, ``saga``) are shared by every
    context of the run: ``metadata`` is one dict, so steps can leave notes for later steps.

    Attributes:
        correlation_id: the caller's id for this piece of work.
        metadata: free-form values for steps; shared by all contexts of a run.
        world: the object an exploration or a test built for this run (see
            ``Saga.explore``); ``None`` otherwise.
        run_id: the run's id (``None`` outside a run).
        saga: the saga's name (``None`` outside a run).
        step: the step's name.
        phase: ``"forward"`` or ``"compensate"``.
        attempt: 1 for the first attempt, 2 for the first retry, and so on.
    """

    __slots__ = ("_run", "_scope", "attempt", "phase", "step")

    def __init__(
        self,
        correlation_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        world: Any = None,
    ) -> None:
        _check_correlation_id(correlation_id)
        _check_metadata(metadata)
        self._run = _RunFacts(correlation_id, {} if metadata is None else metadata, world, None, None)
        self.step: str | None = None
        self.phase: str | None = None
        self.attempt = 0
        # The engine's per-step scope while a policy runs a step; policies record attempts
        # through it.
        self._scope: Any = None

    @property
    def correlation_id(self) -> str | None:
        return self._run.correlation_id

    @correlation_id.setter
    def correlation_id(self, value: str | None) -> None:
        self._run.correlation_id = _check_correlation_id(value)

    @property
    def metadata(self) -> dict[str, Any]:
        return self._run.metadata

    @metadata.setter
    def metadata(self, value: dict[str, Any]) -> None:
        _check_metadata(value)
        self._run.metadata = value

    @property
    def world(self) -> Any:
        return self._run.world

    @world.setter
    def world(self, value: Any) -> None:
        self._run.world = value

    @property
    def run_id(self) -> str | None:
        return self._run.run_id

    @run_id.setter
    def run_id(self, value: str | None) -> None:
        self._run.run_id = value

    @property
    def saga(self) -> str | None:
        return self._run.saga

    @saga.setter
    def saga(self, value: str | None) -> None:
        self._run.saga = value

    @property
    def idempotency_key(self) -> str | None:
        """A key stable for this run, step and phase, the same on every retry.

        Pass it to the service a step calls so that a retried (or recovered) call acts once.
        ``None`` outside a run.
        """
        run_id = self._run.run_id
        if run_id is None or self.step is None:
            return None
        if self.phase == "compensate":
            return f"{run_id}:{self.step}:compensate"
        return f"{run_id}:{self.step}"

    @classmethod
    def _for_run(cls, run_id: str, saga: str) -> WorkflowContext:
        """A fresh context already bound to a run (``_derive`` returns it as is)."""
        context = _new(cls)
        context._run = _RunFacts(None, {}, None, run_id, saga)
        context.step = None
        context.phase = None
        context.attempt = 0
        context._scope = None
        return context

    def _derive(self, run_id: str, saga: str) -> WorkflowContext:
        """A context for a new run, sharing this one's correlation id, metadata and world.

        A context made for this very run (``_for_run``) is returned as is.
        """
        facts = self._run
        if facts.run_id == run_id and self.step is None:
            return self
        derived = _new(WorkflowContext)
        derived._run = _RunFacts(facts.correlation_id, facts.metadata, facts.world, run_id, saga)
        derived.step = None
        derived.phase = None
        derived.attempt = 0
        derived._scope = None
        return derived

    def _for_step(self, step: str, phase: str = "forward") -> WorkflowContext:
        """A context for one step of this context's run."""
        derived = _new(WorkflowContext)
        derived._run = self._run
        derived.step = step
        derived.phase = phase
        derived.attempt = 0
        derived._scope = None
        return derived

    def __repr__(self) -> str:
        fields = [f"correlation_id={self.correlation_id!r}"]
        if self.run_id is not None:
            fields += [
                f"run_id={self.run_id!r}",
                f"step={self.step!r}",
                f"phase={self.phase!r}",
                f"attempt={self.attempt}",
            ]
        return f"WorkflowContext({', '.join(fields)})"


_new = object.__new__


def _check_correlation_id(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(
            f"WorkflowContext correlation_id: expected a str or None, got {type(value).__name__} {value!r}; "
            f"pass str({value!r}) for a number"
        )
    return value


def _check_metadata(value: object) -> None:
    if value is not None and not isinstance(value, dict):
        raise TypeError(f"WorkflowContext metadata: expected a dict or None, got {type(value).__name__}")
