"""Helpers of the journal tests: child processes running :mod:`journal_child`."""

from __future__ import annotations

import os
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
