"""The public face: what `import sagakit` exports, and that it stays light."""

from __future__ import annotations

import subprocess
import sys

import sagakit

EXPECTED = [
    "Backend",
    "CompensationError",
    "CompensationFailure",
    "CompensationPrimitive",
    "Event",
    "EventKind",
    "Exploration",
    "FAULT_MODES",
    "FallbackPrimitive",
    "Fault",
    "FaultError",
    "FaultPlan",
    "InjectedFault",
    "Latency",
    "LocalBackend",
    "Observer",
    "Parallel",
    "RUN_COLUMNS",
    "Redactor",
    "RetryPolicy",
    "RetryPrimitive",
    "Run",
    "RunHistory",
    "RunRequest",
    "STEP_COLUMNS",
    "Saga",
    "SagaDefinitionError",
    "SagaError",
    "SequentialPrimitive",
    "SettlingObserver",
    "SqliteJournal",
    "Step",
    "StepTimeout",
    "TimeoutPrimitive",
    "UnknownStepError",
    "WorkflowContext",
    "__version__",
    "parallel",
    "recover",
    "step",
]


class TestPublicApi:
    def test_all_is_pinned(self) -> None:
        """The exported names are exactly the documented ones."""
        assert sorted(sagakit.__all__, key=str.lower) == sorted(EXPECTED, key=str.lower)

    def test_all_is_sorted(self) -> None:
        """__all__ is kept sorted so that additions are reviewed in place."""
        assert list(sagakit.__all__) == sorted(sagakit.__all__)

    def test_every_eager_name_resolves(self) -> None:
        """Every name in __all__ that is not an optional part is importable at once."""
        for name in sagakit.__all__:
            if name in sagakit._LAZY:
                continue
            assert getattr(sagakit, name) is not None, name

    def test_unknown_attribute_is_an_attribute_error(self) -> None:
        """A typo gets an AttributeError naming it, not an import error."""
        try:
            sagakit.NoSuchThing  # noqa: B018
        except AttributeError as exc:
            assert "NoSuchThing" in str(exc)
        else:  # pragma: no cover
            raise AssertionError("expected AttributeError")

    def test_import_does_not_pull_optional_integrations(self) -> None:
        """`import sagakit` imports no notebook, Temporal, SDK or pandas machinery."""
        code = (
            "import sys, sagakit; "
            "heavy = [m for m in ('pandas', 'temporalio', 'ipywidgets', 'IPython', 'opentelemetry.sdk', "
            "'sqlite3', 'graphviz', 'altair') if m in sys.modules]; print(heavy)"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "[]"

    def test_seed_names_are_aliases(self) -> None:
        """The seed's CompensationPrimitive is a Saga."""
        assert issubclass(sagakit.CompensationPrimitive, sagakit.Saga)
