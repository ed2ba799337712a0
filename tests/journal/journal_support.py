"""Helpers of the journal tests: child processes running :mod:`journal_child`."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHILD = HERE / "journal_child.py"


class Children:
    """Starts child processes running :mod:`journal_child`, and makes sure none outlives the test."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(self, *arguments: str | os.PathLike[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join([str(HERE), environment.get("PYTHONPATH", "")])
        environment.update(env or {})
        process = subprocess.Popen(
            [sys.executable, str(CHILD), *map(str, arguments)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        self.started.append(process)
        return process

    @staticmethod
    def wait_ready(process: subprocess.Popen[str]) -> None:
        """Block until the child says it has started its work (or fail with its stderr)."""
        assert process.stdout is not None
        line = process.stdout.readline()
        if line.strip() != "ready":
            process.wait(timeout=30)
            assert process.stderr is not None
            raise AssertionError(f"child did not start: {line!r}\n{process.stderr.read()}")

    def run(self, *arguments: str | os.PathLike[str], env: dict[str, str] | None = None,
            expect: Sequence[int] = (0,)) -> subprocess.Popen[str]:
        """Run a child to its end and check its exit code."""
        process = self.start(*arguments, env=env)
        _, stderr = process.communicate(timeout=120)
        assert process.returncode in expect, f"child exited {process.returncode}:\n{stderr}"
        return process

    def close(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=30)


def damaged_journal(children: Children, journal: Path, service: str, *, finished: bool = False) -> tuple[str, ...]:
    """Three runs of ``journal_service.order`` in a journal, the second one's records damaged on disk.

    Each run is killed in ``charge`` (or, with ``finished``, rolls back to its end); the second
    one's input is large, so its payloads fill overflow pages of their own, and one of those
    pages gets a broken page pointer, as a torn write or a bad sector would leave it.

    Returns:
        The run ids, in order (the second is the damaged one).
    """
    import journal_service

    env = {} if finished else {journal_service.EXIT_AT: "charge:before"}
    for pad in (0, 3000, 0):
        children.run("once", journal, service, "--pad", str(pad), env=env, expect=(0,) if finished else (17,))
    connection = sqlite3.connect(journal)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the records into the file itself
        run_ids = tuple(row[0] for row in connection.execute("SELECT run_id FROM runs ORDER BY rowid"))
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    finally:
        connection.close()
    raw = bytearray(journal.read_bytes())
    padding = set(b"PADDING-")
    for start in range(page_size, len(raw), page_size):
        if set(raw[start + 4 : start + page_size]) <= padding:  # an overflow page full of the second run's input
            raw[start : start + 4] = b"\xff\xff\xff\xff"  # its pointer to the next page: nowhere
            break
    else:  # pragma: no cover - the layout of a SQLite file is stable
        raise AssertionError("no overflow page found to damage")
    journal.write_bytes(bytes(raw))
    return run_ids
