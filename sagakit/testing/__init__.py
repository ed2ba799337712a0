"""Failure exploration in tests: an assertion, a replay helper, and a pytest plugin.

:func:`assert_invariant` explores a saga (every single fault, pairs, then random fault
schedules drawn from a seed) and fails with each violation shrunk to its minimal fault
schedule, the one line that replays it, and what ran. :func:`replay` is that line.
:func:`assert_isolated` explores the interleavings of concurrent runs against a shared world
and fails with each anomaly (lost update, dirty read, fuzzy read), its minimal interleaving and
the line that replays it, :func:`replay_interleaving`.

Under pytest the plugin (registered as ``sagakit``, installed with the package) adds the
options ``--sagakit-budget`` (schedules drawn per random search), ``--sagakit-seed`` (the
seed every search of the session uses; printed in the header and on failure) and
``--sagakit-coverage`` (print each exploration's coverage of failure points after the run),
and the fixtures ``sagakit_seed`` and ``sagakit_budget``. Nothing here needs a notebook.
"""

from __future__ import annotations

from sagakit.testing._assertions import (
    InvariantViolated,
    assert_invariant,
    assert_invariant_sync,
    replay,
    replay_line,
    replay_sync,
)
from sagakit.testing._isolation import (
    assert_isolated,
    assert_isolated_sync,
    interleaving_replay_line,
    replay_interleaving,
    replay_interleaving_sync,
)

__all__ = [
    "InvariantViolated",
    "assert_invariant",
    "assert_invariant_sync",
    "assert_isolated",
    "assert_isolated_sync",
    "interleaving_replay_line",
    "replay",
    "replay_interleaving",
    "replay_interleaving_sync",
    "replay_line",
    "replay_sync",
]
