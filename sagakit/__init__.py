"""sagakit: sagas you can see, break on purpose, and analyse.

A saga is a sequence of steps, each with a compensation; when a step fails, the completed
steps are undone in reverse order. Everything public is importable from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sagakit._version import __version__
from sagakit.compare import RunComparison
from sagakit.context import WorkflowContext
from sagakit.engine import Backend, LocalBackend, RunRequest
from sagakit.errors import (
    CompensationError,
    CompensationFailure,
    FaultError,
    InjectedFault,
    JournalError,
    PayloadError,
    ResumeRefused,
    RunInterrupted,
    SagaDefinitionError,
    SagaError,
    SagaStuck,
    StepTimeout,
    UnknownStepError,
)
from sagakit.events import Event, EventKind, Observer, SettlingObserver
from sagakit.faults import FAULT_MODES, Fault, FaultPlan
from sagakit.policies import (
    FallbackPrimitive,
    RetryPolicy,
    RetryPrimitive,
    SequentialPrimitive,
    TimeoutPrimitive,
)
from sagakit.redaction import Redactor
from sagakit.runs import RUN_COLUMNS, STEP_COLUMNS, Run, RunHistory
from sagakit.saga import CompensationPrimitive, Saga
from sagakit.steps import FORWARD_RETRY, Parallel, Step, StepKind, parallel, step

if TYPE_CHECKING:  # what the lazy names below resolve to, for type checkers and editors
    from sagakit.explore import Exploration, Latency
    from sagakit.journal import RecordedError, SqliteJournal, recover, recover_sync
    from sagakit.temporal import RemoteStepError

# Optional parts, imported on first use so that `import sagakit` stays light.
_LAZY = {
    "Exploration": "sagakit.explore",
    "Latency": "sagakit.explore",
    "RecordedError": "sagakit.journal",
    "RemoteStepError": "sagakit.temporal",
    "SqliteJournal": "sagakit.journal",
    "recover": "sagakit.journal",
    "recover_sync": "sagakit.journal",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sagakit' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    # The lazily imported names too, so that tab completion offers them before first use.
    return sorted({*globals(), *_LAZY})


__all__ = [
    "Backend",
    "CompensationError",
    "CompensationFailure",
    "CompensationPrimitive",
    "Event",
    "EventKind",
    "Exploration",
    "FAULT_MODES",
    "FORWARD_RETRY",
    "FallbackPrimitive",
    "Fault",
    "FaultError",
    "FaultPlan",
    "InjectedFault",
    "JournalError",
    "Latency",
    "LocalBackend",
    "Observer",
    "Parallel",
    "PayloadError",
    "RUN_COLUMNS",
    "RecordedError",
    "Redactor",
    "RemoteStepError",
    "ResumeRefused",
    "RetryPolicy",
    "RetryPrimitive",
    "Run",
    "RunComparison",
    "RunHistory",
    "RunInterrupted",
    "RunRequest",
    "STEP_COLUMNS",
    "Saga",
    "SagaDefinitionError",
    "SagaError",
    "SagaStuck",
    "SequentialPrimitive",
    "SettlingObserver",
    "SqliteJournal",
    "Step",
    "StepKind",
    "StepTimeout",
    "TimeoutPrimitive",
    "UnknownStepError",
    "WorkflowContext",
    "__version__",
    "parallel",
    "recover",
    "recover_sync",
    "step",
]
