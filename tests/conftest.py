"""Shared test set-up: where tests write their artefacts. Helpers live in ``testsupport``."""

from __future__ import annotations

from pathlib import Path

import pytest
from testsupport import IN_CI, ROOT, require, stop_process

__all__ = ["IN_CI", "ROOT", "output_dir", "require", "stop_process"]

# ``pytester`` drives the sagakit pytest plugin in tests/testing.
pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def output_dir() -> Path:
    """``test-output/`` at the repository root: screenshots and other artefacts."""
    path = ROOT / "test-output"
    path.mkdir(exist_ok=True)
    return path
