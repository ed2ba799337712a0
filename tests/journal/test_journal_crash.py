"""Crash recovery with real processes: SIGKILL at random moments, then recover()."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import time
from pathlib import Path

import journal_service
from journal_support import Children

import sagakit
from tests.conftest import IN_CI

KILLS = 50 if IN_CI and not os.environ.get("SAGAKIT_QUICK_TESTS") else 12


def journal_counts(path: Path) -> tuple[int, int, dict[str, int]]:
    connection = sqlite3.connect(path)
    try:
        events = connection.execute("SELECT count(*) FROM events").fetchone()[0]
        unfinished = connection.execute("SELECT count(*) FROM runs WHERE status IS NULL").fetchone()[0]
        statuses = dict(connection.execute("SELECT coalesce(status, 'unfinished'), count(*) FROM runs GROUP BY 1"))
    finally:
        connection.close()
    return events, unfinished, statuses


class TestKilledProcesses:
    async def test_every_run_killed_at_a_random_moment_is_rolled_back_once(
        self, journal_file: Path, service: str, children: Children
    ) -> None:
        """SIGKILL a process running concurrent sagas, recover, and find the service as it was."""
        rng = random.Random(20240606)
        sagas = [journal_service.order_saga()]
        finished_before: dict[str, str] = {}
        recovered_total = 0
        for kill in range(KILLS):
            child = children.start("forever", journal_file, service, "--seed", kill, "--concurrency", rng.randint(2, 12))
            children.wait_ready(child)
            time.sleep(rng.uniform(0.0, 0.25))
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
            if kill % 5 == 4:
                # Kill a recovery half-way too: the next recovery must finish its work.
                recovering = children.start("recover", journal_file, service,
                                            env={journal_service.SLOW: "0.003"})
                children.wait_ready(recovering)
                time.sleep(rng.uniform(0.0, 0.05))
                recovering.send_signal(signal.SIGKILL)
                recovering.wait(timeout=30)
            recovery = await sagakit.recover(journal_file, sagas)
            recovered_total += len(recovery)
            assert recovery.skipped == ()
            assert all(run.status == "compensated" for run in recovery.runs), recovery.runs
            assert journal_service.items(service) == [], f"kill {kill}: the service keeps effects of rolled back runs"
            events, unfinished, statuses = journal_counts(journal_file)
            assert unfinished == 0
            assert set(statuses) == {"compensated"}, statuses
            # Runs finished earlier keep their records.
            connection = sqlite3.connect(journal_file)
            now = dict(connection.execute("SELECT run_id, status FROM runs"))
            connection.close()
            assert all(now[run_id] == status for run_id, status in finished_before.items())
            finished_before = now
            # A second recovery changes nothing, in the journal or in the service.
            before = journal_service.snapshot(service)
            again = await sagakit.recover(journal_file, sagas)
            assert len(again) == 0 and again.skipped == ()
            assert journal_counts(journal_file)[0] == events
            assert journal_service.snapshot(service) == before
        assert recovered_total > 0, "no kill ever caught a run in flight"
        connection = sqlite3.connect(journal_file)
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        connection.close()
