"""SqliteJournal as an observer: what it records, when it is durable, and how runs share commits."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import sagakit
from sagakit import Saga, WorkflowContext, step
from sagakit.journal import JournalError, PayloadError


def rows(path: Path, query: str, *parameters: Any) -> list[tuple[Any, ...]]:
    """Read the journal file through a connection of its own, as another process would."""
    connection = sqlite3.connect(path)
    try:
        return connection.execute(query, parameters).fetchall()
    finally:
        connection.close()


def kinds(path: Path, run_id: str) -> list[str]:
    return [kind for (kind,) in rows(path, "SELECT kind FROM events WHERE run_id = ? ORDER BY seq", run_id)]


async def reserve(data: dict[str, Any], context: WorkflowContext) -> dict[str, Any]:
    return {**data, "reservation": f"res-{context.run_id}"}


async def charge(data: dict[str, Any], context: WorkflowContext) -> dict[str, Any]:
    return {**data, "charge": "ch-1"}


async def release(data: dict[str, Any], context: WorkflowContext) -> None:
    pass


class TestRecording:
    async def test_a_run_is_recorded_from_start_to_end(self, journal_file: Path) -> None:
        """Every event lands in the file, and the run's row says how it ended."""
        saga = Saga("order", [step(reserve, compensate=release), step(charge)])
        with sagakit.SqliteJournal(journal_file) as journal:
            run = await saga.run({"order": 7}, WorkflowContext(correlation_id="c-7"), journal=journal)
        assert run.status == "completed"
        # Attempts are recorded when they end; their start holds nothing recovery needs.
        assert kinds(journal_file, run.run_id) == ["run_started", "step_succeeded", "step_succeeded", "run_finished"]
        [(saga_name, correlation, status, backend)] = rows(
            journal_file, "SELECT saga, correlation_id, status, backend FROM runs WHERE run_id = ?", run.run_id
        )
        assert (saga_name, correlation, status, backend) == ("order", "c-7", "completed", "local")
        payload = rows(journal_file, "SELECT payload FROM events WHERE run_id = ? AND kind = 'step_succeeded' "
                                     "AND step = 'reserve'", run.run_id)[0][0]
        assert payload == f'{{"order":7,"reservation":"res-{run.run_id}"}}'

    async def test_a_saga_built_with_a_journal_records_every_run(self, journal_file: Path) -> None:
        """Saga(..., journal=j) is the same as passing journal=j to each run."""
        with sagakit.SqliteJournal(journal_file) as journal:
            saga = Saga("order", [step(reserve), step(charge)], journal=journal)
            runs = [await saga.run({}), await saga.run({})]
        assert sorted(run_id for (run_id,) in rows(journal_file, "SELECT run_id FROM runs")) == sorted(
            run.run_id for run in runs
        )

    @pytest.mark.parametrize(("durability", "synchronous"), [("full", 2), ("normal", 1), ("off", 0)])
    async def test_durability_sets_how_commits_reach_the_disk(
        self, journal_file: Path, durability: Any, synchronous: int
    ) -> None:
        """durability= is SQLite's synchronous setting on the journal's writer; runs are recorded in every mode."""
        saga = Saga("order", [step(reserve)])
        with sagakit.SqliteJournal(journal_file, durability=durability) as journal:
            run = await saga.run({}, journal=journal)
            assert journal._call_sync(lambda connection: connection.execute("PRAGMA synchronous").fetchone()) == (
                synchronous,
            )
        assert rows(journal_file, "SELECT status FROM runs WHERE run_id = ?", run.run_id) == [("completed",)]

    async def test_the_file_is_readable_by_its_owner_only(self, journal_file: Path) -> None:
        """Payloads are business data: the journal (and its WAL) are created with mode 0600."""
        saga = Saga("order", [step(reserve)])
        with sagakit.SqliteJournal(journal_file) as journal:
            await saga.run({}, journal=journal)
            wal = Path(f"{journal_file}-wal")
            assert stat.S_IMODE(os.stat(wal).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(journal_file).st_mode) == 0o600

    async def test_a_steps_completion_is_on_disk_before_the_next_step_starts(self, journal_file: Path) -> None:
        """When a step starts, a separate connection already sees the previous step's completion."""
        seen: list[list[str]] = []

        async def check(data: dict[str, Any], context: WorkflowContext) -> None:
            done = rows(journal_file, "SELECT step FROM events WHERE run_id = ? AND kind = 'step_succeeded' "
                                      "ORDER BY seq", context.run_id)
            seen.append([name for (name,) in done])

        saga = Saga("order", [step(reserve), step(check), step(charge), step(check, name="check_again")])
        with sagakit.SqliteJournal(journal_file) as journal:
            runs = await asyncio.gather(*(saga.run({}, journal=journal) for _ in range(20)))
        assert all(run.ok for run in runs)
        assert sorted(seen) == sorted([["reserve"]] * 20 + [["reserve", "check", "charge"]] * 20)

    async def test_concurrent_runs_share_commits(self, journal_file: Path) -> None:
        """Two hundred concurrent runs commit in a handful of transactions, not one per event."""
        saga = Saga("order", [step(reserve, compensate=release), step(charge), step(release, name="notify")])
        with sagakit.SqliteJournal(journal_file) as journal:
            runs = await asyncio.gather(*(saga.run({}, journal=journal) for _ in range(200)))
            stats = journal.stats
        assert all(run.ok for run in runs)
        assert stats.events == 200 * 5
        assert stats.commits <= 60, stats

    async def test_a_cancelled_run_is_recorded_with_its_rollback(self, journal_file: Path) -> None:
        """Cancelling a run mid-step records the compensation and the end, as 'cancelled'."""
        started = asyncio.Event()

        async def wait(data: Any, context: WorkflowContext) -> None:
            started.set()
            await asyncio.sleep(60)

        saga = Saga("order", [step(reserve, compensate=release), step(wait)])
        with sagakit.SqliteJournal(journal_file) as journal:
            task = asyncio.ensure_future(saga.run({}, journal=journal))
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        [run] = saga.history
        assert rows(journal_file, "SELECT status FROM runs") == [("cancelled",)]
        assert "compensation_succeeded" in kinds(journal_file, run.run_id)

    async def test_a_journal_serves_runs_from_a_worker_threads_loop(self, journal_file: Path) -> None:
        """run_sync inside a running loop runs on another thread and loop; the journal records it too."""
        saga = Saga("order", [step(reserve), step(charge)])
        with sagakit.SqliteJournal(journal_file) as journal:
            run = await asyncio.to_thread(saga.run_sync, {}, journal=journal)
            other = await saga.run({}, journal=journal)
        assert run.ok and other.ok
        assert rows(journal_file, "SELECT count(*) FROM runs WHERE status = 'completed'") == [(2,)]


class TestPayloads:
    async def test_an_unstorable_payload_fails_the_run_before_the_next_step(self, journal_file: Path) -> None:
        """A step returning what JSON cannot hold: clear error naming the step and type, clean rollback."""
        released: list[Any] = []
        started_next: list[str] = []

        class Ticket:
            pass

        async def book(data: Any, context: WorkflowContext) -> dict[str, Any]:
            return {"ticket": Ticket()}

        async def unbook(data: Any, context: WorkflowContext) -> None:
            released.append(data["ticket"])

        async def pay(data: Any, context: WorkflowContext) -> None:
            started_next.append("pay")

        saga = Saga("trip", [step(reserve, compensate=release), step(book, compensate=unbook), step(pay)])
        with sagakit.SqliteJournal(journal_file) as journal:
            run = await saga.run({}, journal=journal)
        assert run.status == "compensated"
        assert isinstance(run.error, PayloadError) and isinstance(run.error, TypeError)
        assert run.error.step == "book" and run.error.value_type == "Ticket"
        assert "step 'book' returned a Ticket" in str(run.error) and str(journal_file) in str(run.error)
        assert started_next == [] and len(released) == 1 and isinstance(released[0], Ticket)
        assert run.compensated_steps == ["book", "reserve"]
        assert rows(journal_file, "SELECT status FROM runs") == [("compensated",)]

    async def test_other_runs_sharing_the_batch_are_not_failed(self, journal_file: Path) -> None:
        """Only the run whose payload cannot be stored fails; its neighbours in the same commit go on."""

        async def maybe_bad(data: Any, context: WorkflowContext) -> Any:
            return {"bad": {1, 2}} if data["i"] == 3 else data

        saga = Saga("mixed", [step(maybe_bad, compensate=release), step(charge)])
        with sagakit.SqliteJournal(journal_file) as journal:
            runs = await asyncio.gather(*(saga.run({"i": i}, journal=journal) for i in range(8)))
        assert [run.status for run in runs] == ["completed"] * 3 + ["compensated"] + ["completed"] * 4
        assert isinstance(runs[3].error, PayloadError) and runs[3].error.value_type == "set"

    async def test_a_custom_serializer_stores_what_json_cannot(self, journal_file: Path) -> None:
        """serializer= is pluggable: here a JSON one that encodes sets."""

        def encode(value: Any) -> Any:
            if isinstance(value, set):
                return {"__set__": sorted(value)}
            raise TypeError(f"cannot encode {type(value).__name__}")

        serializer = sagakit.journal.JsonSerializer(
            default=encode, object_hook=lambda d: set(d["__set__"]) if "__set__" in d else d
        )

        async def tags(data: Any, context: WorkflowContext) -> Any:
            return {"tags": {"a", "b"}}

        saga = Saga("tags", [step(tags)])
        with sagakit.SqliteJournal(journal_file, serializer=serializer) as journal:
            run = await saga.run({}, journal=journal)
        assert run.ok
        history = sagakit.RunHistory.from_journal(journal_file, serializer=serializer)
        assert history[0].result == {"tags": {"a", "b"}}


class TestSecrets:
    async def test_secrets_never_reach_the_file(self, journal_file: Path) -> None:
        """Values under sensitive keys are masked, and error messages are scrubbed of them."""

        async def sign_in(data: Any, context: WorkflowContext) -> Any:
            return {**data, "api_key": "sk-live-0123456789"}

        async def fail(data: Any, context: WorkflowContext) -> None:
            raise ValueError(f"login refused for password {data['password']}")

        saga = Saga("login", [step(sign_in, compensate=release), step(fail)])
        with sagakit.SqliteJournal(journal_file) as journal:
            run = await saga.run({"user": "ada", "password": "hunter2-secret"}, journal=journal)
        assert run.status == "compensated"
        raw = b"".join(path.read_bytes() for path in journal_file.parent.glob("journal.db*"))
        assert b"hunter2-secret" not in raw and b"sk-live-0123456789" not in raw
        assert b"[REDACTED]" in raw and b"ada" in raw
        [(message,)] = rows(journal_file, "SELECT error_message FROM events WHERE kind = 'step_failed'")
        assert message == "login refused for password [REDACTED]"

    async def test_redact_false_stores_payloads_as_given(self, journal_file: Path) -> None:
        """For compensations that need every field, redact=False keeps them (the file stays 0600)."""
        saga = Saga("login", [step(reserve)])
        with sagakit.SqliteJournal(journal_file, redact=False) as journal:
            await saga.run({"token": "t-123"}, journal=journal)
        [(payload,)] = rows(journal_file, "SELECT payload FROM events WHERE kind = 'run_started'")
        assert payload == '{"token":"t-123"}'


async def run_while_locked(saga: Saga, journal: sagakit.SqliteJournal, journal_file: Path) -> sagakit.Run:
    """Run ``saga`` while another connection holds the journal's write lock past its busy_timeout.

    Recording the run's end fails too while the lock is held: the engine warns, which this checks.
    """
    blocker = sqlite3.connect(journal_file, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.warns(RuntimeWarning, match="recording the end of run"):
            return await saga.run({}, journal=journal)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


class TestWriteFailures:
    async def test_a_commit_that_fails_fails_the_run_cleanly_and_loses_no_record(self, journal_file: Path) -> None:
        """Another process holding the write lock past busy_timeout: the run rolls back; records land later."""
        saga = Saga("order", [step(reserve, compensate=release), step(charge)])
        journal = sagakit.SqliteJournal(journal_file, busy_timeout=0.2)
        run = await run_while_locked(saga, journal, journal_file)
        assert run.status == "compensated" and isinstance(run.error, JournalError)
        assert "database is locked" in str(run.error) and str(journal_file) in str(run.error)
        assert run.completed_steps == []
        later = await saga.run({}, journal=journal)
        journal.close()
        assert later.ok
        assert journal.stats.failures >= 1
        statuses = dict(rows(journal_file, "SELECT run_id, status FROM runs"))
        assert statuses == {run.run_id: "compensated", later.run_id: "completed"}
        assert kinds(journal_file, run.run_id)[0] == "run_started" and kinds(journal_file, run.run_id)[-1] == \
            "run_finished"

    async def test_records_of_a_failed_commit_are_committed_at_close(self, journal_file: Path) -> None:
        """No later run makes the retry: close() does, so the rolled-back run is not left looking unfinished."""
        saga = Saga("order", [step(reserve, compensate=release), step(charge)])
        journal = sagakit.SqliteJournal(journal_file, busy_timeout=0.2)
        run = await run_while_locked(saga, journal, journal_file)
        assert run.status == "compensated" and journal.stats.failures >= 1
        journal.close()
        assert rows(journal_file, "SELECT run_id, status FROM runs") == [(run.run_id, "compensated")]
        assert kinds(journal_file, run.run_id)[-1] == "run_finished"
        assert len(await sagakit.recover(journal_file, [saga])) == 0  # nothing is rolled back a second time
        assert rows(journal_file, "SELECT count(*) FROM events WHERE kind = 'rollback_started'") == [(1,)]

    async def test_close_fails_loudly_when_the_records_still_cannot_be_committed(self, journal_file: Path) -> None:
        """The file stays locked through close(): close raises a JournalError naming the run instead of dropping it."""
        saga = Saga("order", [step(reserve, compensate=release)])
        journal = sagakit.SqliteJournal(journal_file, busy_timeout=0.1)
        blocker = sqlite3.connect(journal_file, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.warns(RuntimeWarning, match="recording the end of run"):
                run = await saga.run({}, journal=journal)
            with pytest.raises(JournalError, match="could not record") as raised:
                journal.close()
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert run.run_id in str(raised.value) and str(journal_file) in str(raised.value)
        journal.close()  # closed is closed: nothing more to say

    def test_a_process_that_exits_without_closing_commits_what_failed_before(self, journal_file: Path) -> None:
        """At interpreter exit the journal makes the commit that failed earlier; the run is recorded finished."""
        script = (
            "import asyncio, sqlite3, sys, warnings\n"
            "import sagakit\n"
            "warnings.simplefilter('ignore')\n"
            "async def reserve(data, context): return data\n"
            "journal = sagakit.SqliteJournal(sys.argv[1], busy_timeout=0.2)\n"
            "blocker = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "blocker.execute('BEGIN IMMEDIATE')\n"
            "run = asyncio.run(sagakit.Saga('order', [reserve]).run({}, journal=journal))\n"
            "blocker.execute('ROLLBACK')\n"
            "print(run.run_id, journal.stats.failures)\n"
        )
        child = subprocess.run([sys.executable, "-c", script, str(journal_file)], capture_output=True, text=True,
                               timeout=120)
        assert child.returncode == 0, child.stderr
        run_id, failures = child.stdout.split()
        assert int(failures) >= 1
        assert rows(journal_file, "SELECT run_id, status FROM runs") == [(run_id, "compensated")]

    async def test_a_closed_journal_fails_new_runs_cleanly(self, journal_file: Path) -> None:
        """After close(), a run using the journal fails at its first step boundary; nothing is half-recorded."""
        saga = Saga("order", [step(reserve, compensate=release)])
        journal = sagakit.SqliteJournal(journal_file)
        journal.close()
        with pytest.warns(RuntimeWarning, match="is closed"):
            run = await saga.run({}, journal=journal)
        assert run.status == "compensated" and isinstance(run.error, JournalError)
        assert "is closed" in str(run.error)
        assert rows(journal_file, "SELECT count(*) FROM runs") == [(0,)]
