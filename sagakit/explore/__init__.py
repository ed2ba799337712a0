"""Exploration and simulation: a saga's failure space, checked and sampled.

:func:`explore` runs a saga once per fault scenario (every step under every fault mode,
optionally every pair, then with ``search="random"`` schedules of any size drawn from a
seed) against a fresh *world* and checks the caller's invariant after each run; the result
is an :class:`Exploration`, which shrinks each violation to a minimal
:class:`Counterexample`, replays any :class:`Scenario` exactly, and reports its
:class:`Coverage` of the saga's failure points. With a pivot, a fault after it is recovered
forward: a plain fault there leaves the run ``stuck``, a :func:`transient` one is retried to
completion (:func:`recovery_of` tells the two apart from a rollback). :func:`simulate` runs a saga many times on a
virtual clock (:class:`VirtualClockLoop`) with per-step :class:`Latency` and flaky faults
drawn from a seed. Both leave the saga untouched: their runs use a copy of it. Both run on the
virtual clock, so that the same seed gives the same events in any process.

:func:`explore_concurrent` runs several sagas against one shared :class:`World` (a mapping that
records who read and wrote what), interleaving their steps and compensations on a deterministic
scheduler, exhaustively (with partial-order reduction) or at random from a seed, with faults;
each violation is named (:data:`ANOMALIES`: lost update, dirty read, fuzzy read), shrunk to a
:class:`ConcurrentCounterexample`, and kept as an :class:`Interleaving` (plain data) that
:func:`replay_interleaving` reproduces exactly. Every coroutine here has a ``_sync`` twin.
"""

from __future__ import annotations

from sagakit.explore._anomaly import ANOMALIES, Anomaly
from sagakit.explore._clock import VirtualClockLoop, run_on_virtual_clock
from sagakit.explore._concurrent import (
    CHECKS,
    ConcurrentCounterexample,
    ConcurrentExploration,
    Interleaving,
    InterleavingResult,
    explore_concurrent,
    explore_concurrent_sync,
    replay_interleaving,
    replay_interleaving_sync,
)
from sagakit.explore._coverage import COVERAGE_STATUSES, Coverage
from sagakit.explore._exploration import (
    OUTCOMES,
    Exploration,
    explore,
    explore_sync,
    replay,
    replay_sync,
)
from sagakit.explore._interleave import Performed
from sagakit.explore._planning import EXPLORE_MODES, MAX_BUDGET
from sagakit.explore._report import Timeline
from sagakit.explore._scenario import (
    MODE_ORDER,
    RECOVERIES,
    TRANSIENT_MODES,
    Counterexample,
    Scenario,
    ScenarioResult,
    recovery_of,
    transient,
)
from sagakit.explore._simulation import DEFAULT_START, Latency, LatencyLike, simulate
from sagakit.explore._world import ABSENT, KEYS, Access, World

__all__ = [
    "ABSENT",
    "ANOMALIES",
    "CHECKS",
    "COVERAGE_STATUSES",
    "DEFAULT_START",
    "EXPLORE_MODES",
    "KEYS",
    "MAX_BUDGET",
    "MODE_ORDER",
    "OUTCOMES",
    "RECOVERIES",
    "TRANSIENT_MODES",
    "Access",
    "Anomaly",
    "ConcurrentCounterexample",
    "ConcurrentExploration",
    "Counterexample",
    "Coverage",
    "Exploration",
    "Interleaving",
    "InterleavingResult",
    "Latency",
    "LatencyLike",
    "Performed",
    "Scenario",
    "ScenarioResult",
    "Timeline",
    "VirtualClockLoop",
    "World",
    "explore",
    "explore_concurrent",
    "explore_concurrent_sync",
    "explore_sync",
    "recovery_of",
    "replay",
    "replay_interleaving",
    "replay_interleaving_sync",
    "replay_sync",
    "run_on_virtual_clock",
    "simulate",
    "transient",
]
