"""mkdocs hooks: the API reference pages, generated from the packages' ``__all__``.

Each public module gets a page listing every name its ``__all__`` exports, rendered by
mkdocstrings from the docstrings where the name is defined. A name exported by several modules
(``sagakit.JournalError`` and ``sagakit.journal.JournalError``) is rendered once, on the first
page, and linked from the others, so every anchor is unique and ``--strict`` stays meaningful.
Generating the pages means a new public name can never be missing from the reference.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from mkdocs.structure.files import File, Files

#: (page, modules, title, introduction); a name is rendered on the first page that exports it.
#: A page may gather several modules (space-separated), each with a section of its own.
PAGES: tuple[tuple[str, str, str, str], ...] = (
    ("reference/errors.md", "sagakit.errors", "Exceptions",
     "One root, `SagaError`; the tree is drawn below. Errors subclass the standard exceptions "
     "where the meaning matches and carry structured fields."),
    ("reference/index.md", "sagakit", "sagakit",
     "Everything public is importable from the top-level package."),
    ("reference/journal.md", "sagakit.journal", "sagakit.journal",
     "The durable SQLite journal, crash recovery and history that survives a restart."),
    ("reference/explore.md", "sagakit.explore", "sagakit.explore",
     "Failure-space exploration and simulation on a virtual clock."),
    ("reference/telemetry.md", "sagakit.telemetry", "sagakit.telemetry",
     "OpenTelemetry spans and metrics and structlog events, from the event stream."),
    ("reference/temporal.md", "sagakit.temporal", "sagakit.temporal",
     "The same saga on a Temporal cluster."),
    ("reference/notebook.md", "sagakit.notebook.diagram sagakit.notebook.widget sagakit.notebook.lab",
     "sagakit.notebook", "Diagrams, the interactive diagram view, and the Lab."),
    ("reference/testing.md", "sagakit.testing", "sagakit.testing",
     "Failure exploration in a test suite: the pytest plugin and its assertion."),
)


def _identity(module_name: str, name: str) -> str:
    """Where ``name`` (exported by ``module_name``) is defined, as a dotted path."""
    module = importlib.import_module(module_name)
    obj: Any = getattr(module, name)
    if (inspect.isclass(obj) or inspect.isfunction(obj)) and getattr(obj, "__module__", "").startswith("sagakit"):
        return f"{obj.__module__}.{obj.__qualname__}"
    return f"{module_name}.{name}"


def reference_pages() -> dict[str, str]:
    """The Markdown of every reference page, by path."""
    seen: dict[str, str] = {}
    pages: dict[str, str] = {}
    for page, module_names, title, introduction in PAGES:
        modules = module_names.split()
        lines = [f"# {title}", "", introduction, ""]
        for module_name in modules:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            if len(modules) > 1:
                lines += [f"## `{module_name}`", ""]
            names = list(getattr(module, "__all__", ()))
            if module_name == "sagakit.errors":
                lines += [f"::: {module_name}", "    options:", "      show_root_heading: false",
                          "      members: false", ""]
            for name in names:
                if name.startswith("__"):
                    continue
                identity = _identity(module_name, name)
                if identity in seen:
                    lines.append(f"- `{name}`: see [{name}][{identity}] in {seen[identity]}.")
                    continue
                seen[identity] = f"[{title}]({page.rsplit('/', 1)[-1]})"
                level = 3 if len(modules) > 1 else 2
                lines += [f"::: {identity}", "    options:", f"      heading_level: {level}", ""]
        pages[page] = "\n".join(lines) + "\n"
    return pages


def on_files(files: Files, config: Any) -> Files:
    """Add the generated reference pages to the site."""
    for page, content in reference_pages().items():
        existing = files.get_file_from_path(page)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, page, content=content))
    return files
