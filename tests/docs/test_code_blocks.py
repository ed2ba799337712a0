"""Every Python code block in the README and the guides runs, so the docs cannot drift from the code.

The blocks of one page run in order, in one namespace and on one event loop, as the cells of a
notebook would: a page may define a saga in one block and run it in the next, and top-level
``await`` works. Each page runs in a process of its own, in a fresh temporary directory, as a
reader's program would: a page may install OpenTelemetry's global providers or configure
structlog, which a process does once, without changing what the other tests see. A block whose first line is
``# not run: <reason>`` is skipped, and only for a reason the page itself gives (for example a
block that shows a call to a cluster the reader has and the test does not).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import linecache
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
_FENCE = re.compile(r"^(?P<indent>[ ]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ ]*$", re.M | re.S)
_NOT_RUN = re.compile(r"^# not run: \S")


def python_blocks(page: Path) -> list[tuple[int, str]]:
    """The ``python`` fenced blocks of a page, with the line each starts on."""
    text = page.read_text(encoding="utf-8")
    blocks = []
    for match in _FENCE.finditer(text):
        language = match.group("info").strip().split(" ")[0].lower()
        if language not in {"python", "py", "pycon"}:
            continue
        body = textwrap.dedent(match.group("body"))
        line = text.count("\n", 0, match.start()) + 2
        blocks.append((line, body))
    return blocks


def test_the_pages_have_code() -> None:
    """The extractor finds the README's blocks (an extractor that finds nothing tests nothing)."""
    assert len(python_blocks(ROOT / "README.md")) >= 2


def test_skipped_blocks_say_why() -> None:
    """A block that is not run names its reason, and no page skips most of its blocks."""
    for page in PAGES:
        blocks = python_blocks(page)
        skipped = [line for line, body in blocks if body.startswith("# not run")]
        for line, body in blocks:
            if body.startswith("# not run"):
                assert _NOT_RUN.match(body), f"{page.name}:{line}: '# not run:' needs a reason"
        assert len(skipped) <= max(1, len(blocks) // 4), f"{page.name}: too many blocks not run: {skipped}"


async def _run_page(page: Path, blocks: list[tuple[int, str]]) -> None:
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for line, body in blocks:
        if _NOT_RUN.match(body):
            continue
        where = f"{page.relative_to(ROOT)}:{line}"
        # Tracebacks then show the page's own lines.
        linecache.cache[where] = (len(body), None, body.splitlines(keepends=True), where)
        try:
            code = compile(body, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        except SyntaxError as exc:
            raise AssertionError(f"{page.relative_to(ROOT)} block at line {line} does not parse: {exc}") from exc
        outcome = eval(code, namespace)
        if inspect.isawaitable(outcome):
            await outcome


def _page_ids(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=_page_ids)
def test_page_code_runs(page: Path, tmp_path: Path) -> None:
    """The page's Python blocks run top to bottom, in a process of their own, without an error."""
    process = subprocess.Popen(
        # A deprecated call on a page is an error, as it is in the rest of the suite.
        [sys.executable, "-W", "error::DeprecationWarning:__docs__", __file__, str(page)], cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=600)
    finally:
        # A page may start servers (Temporal's dev server); none outlives it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == 0, f"{_page_ids(page)} failed:\n{output[-6000:]}"


if __name__ == "__main__":
    page = Path(sys.argv[1]).resolve()
    asyncio.run(_run_page(page, python_blocks(page)))
    # The page ran. End here, without interpreter finalization: a page that used Temporal leaves
    # the SDK's core runtime threads behind, which now and then abort a finalizing interpreter
    # (PyGILState_Release), failing a page whose code all ran.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
