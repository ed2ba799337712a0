"""What the pytest plugin tells the assertions: the session's budget and seed, and what ran.

Kept apart from the plugin so that :mod:`sagakit.testing` works without pytest, and the
plugin (loaded by every pytest session of an environment with sagakit) stays light.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_BUDGET", "Record", "Session", "session"]

#: Drawn schedules per random search when neither the call nor ``--sagakit-budget`` says.
DEFAULT_BUDGET = 200


@dataclass(frozen=True, slots=True)
class Record:
    """One exploration an assertion ran: the test, the outcome, and the exploration itself
    when its coverage (or, for concurrent runs, its anomalies) is to be printed. For a
    concurrent exploration ``saga`` lists the runs, ``scenarios`` counts interleavings and
    ``search`` starts with ``concurrent``; ``stuck`` counts the scenarios (interleavings) in
    which a run ended stuck."""

    test: str | None
    saga: str
    scenarios: int
    violations: int
    seed: int
    search: str
    exploration: Any = None
    stuck: int = 0


@dataclass(slots=True)
class Session:
    """The plugin's settings for this pytest session (``None``: not under the plugin)."""

    budget: int | None = None
    seed: int | None = None
    keep_explorations: bool = False
    test: str | None = None
    records: list[Record] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)


session = Session()
