"""Shared test set-up: where tests write their artefacts. Helpers live in ``testsupport``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from testsupport import IN_CI, ROOT, require, stop_process

__all__ = ["IN_CI", "ROOT", "output_dir", "require", "stop_process"]

# ``pytester`` drives the sagakit pytest plugin in tests/testing; ``temporal_server`` is the
# session's Temporal dev server, shared by tests/temporal and tests/conformance.
pytest_plugins = ["pytester", "temporal_server"]


@pytest.fixture(scope="session")
def output_dir() -> Path:
    """``test-output/`` at the repository root: screenshots and other artefacts."""
    path = ROOT / "test-output"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(autouse=True)
def _structlog_left_unconfigured() -> Iterator[None]:
    """``structlog.testing.capture_logs`` leaves structlog marked configured, which turns
    sagakit's automatic log events on for every later saga of the session: put structlog
    back as the test found it."""
    configured = structlog.is_configured()
    yield
    if not configured and structlog.is_configured():
        structlog.reset_defaults()
