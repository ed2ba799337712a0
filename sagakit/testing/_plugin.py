"""The pytest plugin (entry point ``pytest11``: ``sagakit``): options, fixtures, reporting.

It stays light (pytest loads it in every session of an environment with sagakit): the
exploration machinery is imported only when an assertion runs.
"""

from __future__ import annotations

import random
from collections.abc import Generator
from typing import Any

import pytest

from sagakit.testing._settings import DEFAULT_BUDGET, session

__all__ = [
    "pytest_addoption",
    "pytest_configure",
    "pytest_report_header",
    "pytest_runtest_call",
    "pytest_runtest_makereport",
    "pytest_terminal_summary",
    "pytest_unconfigure",
    "sagakit_budget",
    "sagakit_seed",
]


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sagakit", "sagakit failure exploration")
    group.addoption(
        "--sagakit-budget",
        type=_positive,
        default=None,
        metavar="N",
        help=f"fault schedules each random search draws (default {DEFAULT_BUDGET})",
    )
    group.addoption(
        "--sagakit-seed",
        type=_non_negative,
        default=None,
        metavar="SEED",
        help="the seed of every random search in this session, to repeat one (default: a fresh one, printed)",
    )
    group.addoption(
        "--sagakit-coverage",
        action="store_true",
        default=False,
        help="print each exploration's coverage of the saga's failure points after the run",
    )


def pytest_configure(config: pytest.Config) -> None:
    seed = config.getoption("sagakit_seed", None)
    session.seed = seed if seed is not None else random.SystemRandom().randrange(2**32)
    session.budget = config.getoption("sagakit_budget", None)
    session.keep_explorations = bool(config.getoption("sagakit_coverage", False))
    session.records.clear()
    session.failed.clear()


def pytest_unconfigure(config: pytest.Config) -> None:
    session.seed = session.budget = session.test = None
    session.keep_explorations = False
    session.records.clear()
    session.failed.clear()


def pytest_report_header(config: pytest.Config) -> str:
    budget = session.budget if session.budget is not None else DEFAULT_BUDGET
    return f"sagakit: exploration seed {session.seed}, budget {budget} (repeat with --sagakit-seed={session.seed})"


@pytest.fixture
def sagakit_seed() -> int | None:
    """The seed random searches use in this session (``--sagakit-seed``, or the drawn one)."""
    return session.seed


@pytest.fixture
def sagakit_budget() -> int:
    """The fault schedules a random search draws in this session (``--sagakit-budget``)."""
    return session.budget if session.budget is not None else DEFAULT_BUDGET


# Old-style wrappers: they work with every pytest the plugin may meet.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, None]:
    session.test = item.nodeid
    try:
        yield
    finally:
        session.test = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        session.failed.add(item.nodeid)
        seeds = sorted({record.seed for record in session.records if record.test == item.nodeid})
        if seeds:
            listed = ", ".join(str(seed) for seed in seeds)
            report.sections.append(
                ("sagakit", f"exploration seed {listed}: repeat with --sagakit-seed={seeds[0]}")
            )


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    records = session.records
    if not records:
        return
    show = [
        record
        for record in records
        if session.keep_explorations or (record.violations and (record.test is None or record.test in session.failed))
    ]
    terminalreporter.section("sagakit exploration")
    failed = sum(1 for record in records if record.violations)
    terminalreporter.write_line(
        f"{len(records)} exploration{'s' if len(records) != 1 else ''}, {failed} with violations; "
        f"seed {session.seed} (repeat with --sagakit-seed={session.seed})"
    )
    for record in show:
        terminalreporter.write_line("")
        where = record.test or "(outside a test)"
        if record.search.startswith("concurrent"):
            stuck = f", {record.stuck} leave a run stuck" if record.stuck else ""
            terminalreporter.write_line(
                f"{where}: {record.saga}, {record.scenarios} interleavings ({record.search}, seed {record.seed}), "
                f"{record.violations} violate the invariant{stuck}"
            )
        else:
            stuck = f", {record.stuck} end stuck" if record.stuck else ""
            terminalreporter.write_line(
                f"{where}: saga {record.saga!r}, {record.scenarios} scenarios "
                f"({record.search}, seed {record.seed}), {record.violations} violate the invariant{stuck}"
            )
        coverage = getattr(record.exploration, "coverage", None)
        if coverage is not None:
            terminalreporter.write_line(coverage.to_text())
        elif record.exploration is not None:  # a concurrent exploration: its anomalies
            terminalreporter.write_line(record.exploration.to_text())
