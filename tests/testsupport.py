"""Helpers shared by every test folder (import them as ``from testsupport import ...``).

Every ``conftest.py`` is imported under the module name ``conftest``, so helpers live here, in a
module with a name of its own, rather than in the root conftest.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition: bool, reason: str) -> None:
    """Skip locally with a loud reason when a dependency is missing; fail in CI."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"missing test dependency in CI: {reason}")
    pytest.skip(f"MISSING DEPENDENCY (would fail in CI): {reason}")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """Terminate a server the tests started; kill it if it does not stop within ``timeout``."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
