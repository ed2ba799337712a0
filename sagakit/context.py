"""The context every step and compensation receives."""

from __future__ import annotations

from typing import Any

__all__ = ["WorkflowContext"]


class WorkflowContext:
    """Who is running, and on whose behalf.

    Create one per saga execution with a ``correlation_id`` (your request or business id)
    and optional ``metadata``. During a run each step receives a copy that also says which
    run, saga, step, phase and attempt it is in; ``metadata`` is shared (the same dict) by
    every copy, so steps can leave notes for later steps.

    Attributes:
        correlation_id: the caller's id for this piece of work.
        metadata: free-form values for steps; shared by all copies in a run.
        run_id: the run's id (``None`` outside a run).
        saga: the saga's name.
        step: the step's name.
        phase: ``"forward"`` or ``"compensate"``.
        attempt: 1 for the first attempt, 2 for the first retry, and so on.
        world: the object an exploration or test built for this run (see
            ``Saga.explore``); ``None`` otherwise.
    """

    __slots__ = (
        "_scope",
        "attempt",
        "correlation_id",
        "metadata",
        "phase",
        "run_id",
        "saga",
        "step",
        "world",
    )

    def __init__(
        self,
        correlation_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        world: Any = None,
    ) -> None:
        self.correlation_id = correlation_id
        self.metadata: dict[str, Any] = {} if metadata is None else metadata
        self.world = world
        self.run_id: str | None = None
        self.saga: str | None = None
        self.step: str | None = None
        self.phase: str | None = None
        self.attempt = 0
        # The engine's per-step scope while a step runs; policies record attempts through it.
        self._scope: Any = None

    @property
    def idempotency_key(self) -> str | None:
        """A key stable for this run, step and phase, the same on every retry.

        Pass it to the service a step calls so that a retried (or recovered) call acts once.
        ``None`` outside a run.
        """
        if self.run_id is None or self.step is None:
            return None
        if self.phase == "compensate":
            return f"{self.run_id}:{self.step}:compensate"
        return f"{self.run_id}:{self.step}"

    def _derive(self, run_id: str, saga: str) -> WorkflowContext:
        derived = WorkflowContext.__new__(WorkflowContext)
        derived.correlation_id = self.correlation_id
        derived.metadata = self.metadata
        derived.world = self.world
        derived.run_id = run_id
        derived.saga = saga
        derived.step = None
        derived.phase = None
        derived.attempt = 0
        derived._scope = None
        return derived

    def _for_step(self, step: str, phase: str) -> WorkflowContext:
        derived = self._derive(self.run_id or "", self.saga or "")
        derived.step = step
        derived.phase = phase
        return derived

    def __repr__(self) -> str:
        fields = [f"correlation_id={self.correlation_id!r}"]
        if self.run_id is not None:
            fields += [f"run_id={self.run_id!r}", f"step={self.step!r}", f"phase={self.phase!r}",
                       f"attempt={self.attempt}"]
        return f"WorkflowContext({', '.join(fields)})"
