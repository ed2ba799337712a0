"""Forward recovery and resume from a journal: real processes SIGKILLed past the pivot, stuck runs
an operator finishes, and every refusal.

The service records one row per forward step (its idempotency key is the row's primary key, so
a completed step that ran again would fail the run) and one per undone step.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import journal_service
import pytest
from journal_support import HERE, Children

import sagakit
from sagakit.events import EventKind


def steps_done(service: str) -> list[str]:
    """The forward steps whose effect is in the service, in name order."""
    return sorted(step for _, _, step in journal_service.items(service))


def journal_rows(path: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    connection = sqlite3.connect(path)
    try:
        return (connection.execute("SELECT * FROM runs ORDER BY rowid").fetchall(),
                connection.execute("SELECT * FROM events ORDER BY seq").fetchall())
    finally:
        connection.close()


def only_run(path: Path) -> str:
    rows, _ = journal_rows(path)
    assert len(rows) == 1
    return str(rows[0][0])


ALL_STEPS = ["capture", "label", "notify", "reserve", "ship"]


def _completed_in_record(path: Path) -> set[str]:
    """The steps whose completion the journal recorded."""
    connection = sqlite3.connect(path)
    try:
        return {row[0] for row in connection.execute("SELECT step FROM events WHERE kind = 'step_succeeded'")}
    finally:
        connection.close()


class TestCrashPastThePivot:
    """A run killed after its pivot is carried forward by recover(), never rolled back."""

    @pytest.mark.parametrize("kill_at", ["label:before", "ship:after", "notify:after"])
    async def test_a_run_killed_after_its_pivot_completes_forward_with_each_action_once(
        self, journal_file: Path, service: str, children: Children, kill_at: str
    ) -> None:
        """SIGKILL at several points past the pivot; recover(); every step's effect exactly once."""
        child = children.start("once", journal_file, service, "--saga", "shipment",
                               env={journal_service.KILL_AT: kill_at})
        child.communicate(timeout=60)
        assert child.returncode == -9  # a real SIGKILL
        done_before = _completed_in_record(journal_file)
        recovery = await sagakit.recover(journal_file, [journal_service.pivot_saga()])
        [run] = recovery.runs
        assert run.status == "completed", run
        assert steps_done(service) == ALL_STEPS
        acted = journal_service.forward_calls(service)
        assert all(acted[step] == 1 for step in done_before)  # what the record had completed never ran again
        step, _, moment = kill_at.partition(":")
        assert acted[step] == (2 if moment == "after" else 1)  # acted, unrecorded: run again (idempotent)
        assert journal_service.calls(service) == {}  # nothing compensated
        kinds = [event.kind for event in run.events]
        assert EventKind.ROLLBACK_STARTED not in kinds and kinds.count(EventKind.RUN_RESUMED) == 1
        assert run.info["recovered"] is True and run.info["resumed"] == 1
        assert (await sagakit.recover(journal_file, [journal_service.pivot_saga()])).runs == ()

    async def test_a_run_killed_during_forward_retries_goes_on_from_the_attempts_recorded(
        self, journal_file: Path, service: str, children: Children
    ) -> None:
        """SIGKILL while ship is being retried: recover() retries it on, attempts numbered on."""
        child = children.start("once", journal_file, service, "--saga", "shipment",
                               env={journal_service.FLAKY: "ship:2", journal_service.KILL_AT: "ship:before"})
        child.communicate(timeout=60)
        assert child.returncode == -9
        recovery = await sagakit.recover(journal_file, [journal_service.pivot_saga()])
        [run] = recovery.runs
        assert run.status == "completed"
        ship = run.steps[(run.steps.step == "ship") & (run.steps.phase == "forward")]
        assert ship.attempt.tolist() == [1]  # the killed attempt never recorded its end
        assert steps_done(service) == ALL_STEPS

    async def test_a_run_killed_before_its_pivot_still_rolls_back(
        self, journal_file: Path, service: str, children: Children
    ) -> None:
        """A crash in the pivot is a failure at the pivot: what came before is compensated."""
        child = children.start("once", journal_file, service, "--saga", "shipment",
                               env={journal_service.KILL_AT: "capture:before"})
        child.communicate(timeout=60)
        recovery = await sagakit.recover(journal_file, [journal_service.pivot_saga()])
        [run] = recovery.runs
        assert run.status == "compensated" and run.failed_step == "capture"
        assert isinstance(run.original_error, sagakit.RunInterrupted)
        assert steps_done(service) == []


class TestResume:
    """Stuck and compensation_failed runs finished by an operator, in-process and from the CLI."""

    async def test_a_stuck_run_is_resumed_forward_after_the_cause_is_fixed(
        self, journal_file: Path, service: str, children: Children
    ) -> None:
        """ship fails past its retries: stuck; the cause is fixed; resume() completes it, once each."""
        children.run("once", journal_file, service, "--saga", "shipment", env={journal_service.FLAKY: "ship:9"})
        run_id = only_run(journal_file)
        with sagakit.SqliteJournal(journal_file) as journal:
            [stuck] = journal.runs(attention=True)
            assert stuck.status == "stuck" and "stuck at step 'ship'" in (stuck.attention or "")
            frame = journal.history(status=("stuck", "compensation_failed")).runs
            assert frame.run_id.tolist() == [run_id] and frame.status.tolist() == ["stuck"]
            saga = journal_service.pivot_saga()
            run = await journal.resume(run_id, saga)
        assert run.status == "completed" and saga.history.last is run
        assert steps_done(service) == ALL_STEPS and journal_service.calls(service) == {}
        ship = run.steps[run.steps.step == "ship"]
        assert ship.attempt.tolist() == [1, 2, 3, 4] and ship.status.tolist()[-1] == "succeeded"
        assert run.info["resumed"] == 1
        with sagakit.SqliteJournal(journal_file) as journal:
            assert journal.history().runs.resumed.tolist() == [1]
            assert journal.runs(attention=True) == []

    async def test_a_resume_killed_midway_is_finished_by_recover(
        self, journal_file: Path, service: str, children: Children
    ) -> None:
        """SIGKILL during a resume: the run is unfinished again and recover() carries it on."""
        children.run("once", journal_file, service, "--saga", "shipment", env={journal_service.FLAKY: "notify:9"})
        run_id = only_run(journal_file)
        child = children.start("resume", journal_file, service, "--run-id", run_id,
                               env={journal_service.KILL_AT: "ship:before"})
        child.communicate(timeout=60)
        assert child.returncode == -9
        with sagakit.SqliteJournal(journal_file) as journal:
            assert [entry.status for entry in journal.runs()] == [None]
        recovery = await sagakit.recover(journal_file, [journal_service.pivot_saga()])
        [run] = recovery.runs
        assert run.status == "completed" and run.info["resumed"] == 2
        assert steps_done(service) == ALL_STEPS

    async def test_a_compensation_failed_run_retries_its_failed_compensations(
        self, journal_file: Path, service: str, children: Children
    ) -> None:
        """The broken compensation is retried, the rollback goes on; each compensation acts once."""
        children.run("once", journal_file, service, env={journal_service.BROKEN: "charge"})
        run_id = only_run(journal_file)
        with sagakit.SqliteJournal(journal_file) as journal:
            assert [entry.status for entry in journal.runs()] == ["compensation_failed"]
            run = await journal.resume(run_id, journal_service.order_saga())
        assert run.status == "compensated"
        assert steps_done(service) == []
        assert all(count == 1 for count in journal_service.calls(service).values())

    @pytest.mark.parametrize(
        ("setup", "run_id", "saga", "reason"),
        [
            ("checkout", None, "checkout", "it ended completed: there is nothing left to do"),
            ("order", None, "order", "it ended compensated: there is nothing left to do"),
            ("order", "0123456789abcdef", "order", "has no run '0123456789abcdef'"),
            ("stuck", None, "order", "it is a run of saga 'shipment', not of 'order'"),
            ("stuck", None, "renamed", "its recorded steps do not match saga 'shipment'"),
        ],
    )
    async def test_what_cannot_be_resumed_is_refused_and_changes_nothing(
        self, journal_file: Path, service: str, children: Children, setup: str, run_id: str | None, saga: str,
        reason: str,
    ) -> None:
        """ResumeRefused (a ValueError) names the run and the reason; the journal file is unchanged."""
        if setup == "stuck":
            children.run("once", journal_file, service, "--saga", "shipment", env={journal_service.FLAKY: "ship:9"})
        else:
            children.run("once", journal_file, service, "--saga", setup)
        run_id = run_id or only_run(journal_file)
        definition = {
            "order": journal_service.order_saga(),
            "checkout": journal_service.checkout_saga(),
            "renamed": sagakit.Saga("shipment", [journal_service.pivot_saga().steps[0].replace(name="hold")]),
        }[saga]
        before = journal_rows(journal_file)
        with sagakit.SqliteJournal(journal_file) as journal, pytest.raises(sagakit.ResumeRefused, match=reason) as error:
            await journal.resume(run_id, definition)
        assert error.value.run_id == run_id and isinstance(error.value, ValueError)
        assert journal_rows(journal_file) == before

    async def test_a_run_still_running_elsewhere_is_refused(
        self, journal_file: Path, service: str, children: Children
    ) -> None:
        """An unfinished run whose process is alive is not taken from it."""
        child = children.start("once", journal_file, service, "--saga", "shipment",
                               env={journal_service.HOLD: "capture"})
        children.wait_ready(child)
        for _ in range(600):  # until its start is committed
            if journal_file.exists() and journal_rows(journal_file)[0]:
                break
            await asyncio.sleep(0.05)
        run_id = only_run(journal_file)
        owner = journal_rows(journal_file)[0][0][-3:]
        with sagakit.SqliteJournal(journal_file) as journal, pytest.raises(sagakit.ResumeRefused,
                                                                          match="still running in process"):
            await journal.resume(run_id, journal_service.pivot_saga())
        rows, events = journal_rows(journal_file)  # the child goes on recording; nothing of ours is there
        assert rows[0][-3:] == owner and not any(event[2] == "run_resumed" for event in events)

    def test_the_command_line_lists_and_resumes_a_stuck_run(
        self, journal_file: Path, service: str, children: Children, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`sagakit runs` lists it (exit 0), `sagakit resume` fails while the cause remains (exit 1),
        then finishes it (exit 0); a second resume is refused (exit 2)."""
        children.run("once", journal_file, service, "--saga", "shipment", env={journal_service.FLAKY: "ship:9"})
        run_id = only_run(journal_file)

        def sagakit_command(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
            import os

            environment = {**os.environ, "PYTHONPATH": str(HERE), **(env or {})}
            return subprocess.run([sys.executable, "-m", "sagakit", *arguments], capture_output=True, text=True,
                                  env=environment, timeout=120, check=False)

        listed = sagakit_command("runs", "--journal", str(journal_file))
        assert listed.returncode == 0 and f"{run_id}  shipment  stuck" in listed.stdout
        assert "1 run(s)" in listed.stdout
        still = sagakit_command("resume", run_id, "--journal", str(journal_file), "--saga", "journal_service:shipment",
                                env={journal_service.FLAKY: "ship:9"})
        assert still.returncode == 1 and "stuck  NEEDS ATTENTION" in still.stdout
        done = sagakit_command("resume", run_id, "--journal", str(journal_file), "--saga", "journal_service:shipment")
        assert done.returncode == 0 and f"{run_id}  shipment  completed" in done.stdout
        again = sagakit_command("resume", run_id, "--journal", str(journal_file), "--saga", "journal_service:shipment")
        assert again.returncode == 2 and "it ended completed" in again.stderr
        bad = sagakit_command("runs", "--journal", str(journal_file), "--status", "stuck,weird")
        assert bad.returncode == 2 and "--status" in bad.stderr
        assert steps_done(service) == ALL_STEPS
