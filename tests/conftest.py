"""Shared test set-up: where tests write their artefacts, and the CI rule on dependencies."""

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


@pytest.fixture(scope="session")
def output_dir() -> Path:
    """``test-output/`` at the repository root: screenshots and other artefacts."""
    path = ROOT / "test-output"
    path.mkdir(exist_ok=True)
    return path


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """Terminate a server the tests started; kill it if it does not stop within ``timeout``."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
