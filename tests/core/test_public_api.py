"""The public face: what `import sagakit` exports, and that it stays light."""

from __future__ import annotations

import builtins
import re
import subprocess
import sys
from pathlib import Path

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
    "RetryPolicy",
    "ResumeRefused",
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


class TestPublicApi:
    def test_all_is_pinned(self) -> None:
        """The exported names are exactly the documented ones."""
        assert sorted(sagakit.__all__, key=str.lower) == sorted(EXPECTED, key=str.lower)

    def test_all_is_sorted(self) -> None:
        """__all__ is kept sorted so that additions are reviewed in place."""
        assert list(sagakit.__all__) == sorted(sagakit.__all__)

    def test_every_name_resolves(self) -> None:
        """Every name in __all__, eager or lazily imported, resolves (every extra is installed here)."""
        for name in sagakit.__all__:
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

    def test_lazy_names_show_in_dir(self) -> None:
        """Tab completion (dir) offers every exported name, the lazily imported ones included."""
        listed = dir(sagakit)
        assert set(sagakit.__all__) <= set(listed)
        assert listed == sorted(listed)

    def test_lazy_names_resolve(self) -> None:
        """Each lazily imported name resolves to the object of its module."""
        from sagakit.journal import RecordedError, SqliteJournal
        from sagakit.temporal import RemoteStepError

        assert (sagakit.SqliteJournal, sagakit.RecordedError) == (SqliteJournal, RecordedError)
        assert sagakit.RemoteStepError is RemoteStepError

    def test_every_exception_the_docs_name_is_exported(self) -> None:
        """Each sagakit exception named in the README or the guides is importable from sagakit."""
        root = Path(__file__).parents[2]
        docs = "\n".join(page.read_text() for page in [root / "README.md", *sorted((root / "docs" / "guides").glob("*.md"))])
        named = set(re.findall(r"\b([A-Z][A-Za-z]+(?:Error|Fault|Interrupted|Timeout))\b", docs))
        builtin = {name for name in named if hasattr(builtins, name)}
        for name in sorted(named - builtin - {"CancelledError"}):
            exported = getattr(sagakit, name)
            assert isinstance(exported, type) and issubclass(exported, Exception), name
        assert {"JournalError", "PayloadError", "RunInterrupted", "StepTimeout"} <= named

    def test_exceptions_are_exported(self) -> None:
        """Every exception of sagakit.errors is exported, and derives from SagaError."""
        import sagakit.errors

        for name in sagakit.errors.__all__:
            assert getattr(sagakit, name) is getattr(sagakit.errors, name)
            if name != "CompensationFailure":
                assert issubclass(getattr(sagakit, name), sagakit.SagaError), name

    def test_seed_names_are_aliases(self) -> None:
        """The seed's CompensationPrimitive is a Saga."""
        assert issubclass(sagakit.CompensationPrimitive, sagakit.Saga)
