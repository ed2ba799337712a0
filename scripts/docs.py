"""Build or serve the documentation site (``make docs``, ``make docs-serve``).

The site renders the example notebooks with their outputs. Executing them is the slowest part
of a build, and the test suite already executes every notebook once
(``tests/notebook/test_notebooks.py`` saves the executed copies in ``build/executed-notebooks``):
a build takes those copies when they are newer than their source, and executes the others
itself. Then ``mkdocs build --strict`` fails on any broken link or reference.

Usage: ``python scripts/docs.py build`` or ``python scripts/docs.py serve [mkdocs serve options]``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
EXECUTED = ROOT / "build" / "executed-notebooks"
TARGET = ROOT / "docs" / "notebooks"


def executed_notebooks() -> None:
    """Put an executed copy of every example notebook in ``docs/notebooks``."""
    import nbformat
    from nbclient import NotebookClient

    TARGET.mkdir(parents=True, exist_ok=True)
    sources = sorted(NOTEBOOKS.glob("*.ipynb"))
    for stale in TARGET.glob("*.ipynb"):
        if not (NOTEBOOKS / stale.name).exists():
            stale.unlink()
    for source in sources:
        target = TARGET / source.name
        if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
            continue
        ready = EXECUTED / source.name
        if ready.exists() and ready.stat().st_mtime >= source.stat().st_mtime:
            shutil.copyfile(ready, target)
            print(f"docs: {source.name}: executed by the test suite")
            continue
        started = time.perf_counter()
        book = nbformat.read(source, as_version=4)
        workdir = ROOT / "build" / "notebook-workdir"
        workdir.mkdir(parents=True, exist_ok=True)
        NotebookClient(book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute()
        nbformat.write(book, target)
        print(f"docs: {source.name}: executed in {time.perf_counter() - started:.1f} s")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"build", "serve"}:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    executed_notebooks()
    mkdocs = [sys.executable, "-m", "mkdocs"]
    if argv[0] == "build":
        return subprocess.call([*mkdocs, "build", "--strict", *argv[1:]], cwd=ROOT)
    return subprocess.call([*mkdocs, "serve", *argv[1:]], cwd=ROOT)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
