"""Run history from a journal (across processes) and through Parquet: the same frames."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import journal_service
import pandas as pd
import pytest
from journal_support import Children, damaged_journal

import sagakit
import sagakit.journal
from sagakit import Fault, Saga, WorkflowContext, parallel, step
from sagakit.journal import RecordedError


async def reserve(data: Any, context: WorkflowContext) -> dict[str, Any]:
    return {**data, "reservation": "r-1"}


async def charge(data: Any, context: WorkflowContext) -> dict[str, Any]:
    if data.get("declined"):
        raise ValueError(f"card declined for {data['customer']}")
    return {**data, "charge": "c-1"}


async def notify(data: Any, context: WorkflowContext) -> dict[str, Any]:
    return {**data, "notified": True}


async def audit(data: Any, context: WorkflowContext) -> dict[str, Any]:
    return {**data, "audited": True}


async def undo(data: Any, context: WorkflowContext) -> None:
    await asyncio.sleep(0)


async def broken_undo(data: Any, context: WorkflowContext) -> None:
    raise RuntimeError("refund service down")


def sagas() -> tuple[Saga, Saga]:
    order = Saga("order", [
        step(reserve, compensate=undo),
        parallel(step(notify, compensate=undo), step(audit)),
        step(charge, compensate=undo, retry=1),
    ])
    fragile = Saga("fragile", [step(reserve, compensate=broken_undo), step(charge)],
                   continue_on_compensation_failure=True)
    return order, fragile


async def run_mix(journal: sagakit.SqliteJournal) -> sagakit.RunHistory:
    """Completed, compensated (after a retry), injected and compensation_failed runs, some concurrent."""
    order, fragile = sagas()
    runs = await asyncio.gather(
        *(order.run({"customer": f"c{i}", "declined": i % 3 == 0}, WorkflowContext(correlation_id=f"o-{i}"),
                    journal=journal) for i in range(12))
    )
    runs.append(await order.run({"customer": "x"}, journal=journal, faults={"notify": Fault("fail")}))
    runs.append(await fragile.run({"customer": "y", "declined": True}, journal=journal))
    assert {run.status for run in runs} == {"completed", "compensated", "compensation_failed"}
    return sagakit.RunHistory(runs)


def by_run(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows grouped by run (runs finishing together may be recorded in either order)."""
    return frame.sort_values("run_id", kind="stable").reset_index(drop=True)


class TestFromJournal:
    async def test_the_journal_gives_back_the_frames_of_the_runs(self, journal_file: Path) -> None:
        """runs and steps frames read from the file equal those of the runs in memory."""
        with sagakit.SqliteJournal(journal_file) as journal:
            live = await run_mix(journal)
        loaded = sagakit.RunHistory.from_journal(journal_file)
        assert len(loaded) == len(live)
        pd.testing.assert_frame_equal(by_run(loaded.runs), by_run(live.runs))
        pd.testing.assert_frame_equal(by_run(loaded.steps), by_run(live.steps))

    async def test_errors_come_back_by_name_and_payloads_as_stored(self, journal_file: Path) -> None:
        order, _ = sagas()
        with sagakit.SqliteJournal(journal_file) as journal:
            run = await order.run({"customer": "c9", "declined": True}, journal=journal)
            done = await order.run({"customer": "c8"}, journal=journal)
        loaded = {r.run_id: r for r in sagakit.RunHistory.from_journal(journal_file, sagas=[order])}
        error = loaded[run.run_id].error
        assert isinstance(error, RecordedError) and type(error).__name__ == "ValueError"
        assert str(error) == "card declined for c9"
        assert loaded[done.run_id].result == done.result and loaded[done.run_id].definition is order
        assert loaded[run.run_id].failed_step == "charge"

    async def test_a_saga_filter_and_unfinished_runs(self, journal_file: Path, service: str,
                                                     children: Children) -> None:
        """saga= keeps one saga's runs; a run a crash left unfinished is not in the history."""
        order, fragile = sagas()
        with sagakit.SqliteJournal(journal_file) as journal:
            await order.run({"customer": "a"}, journal=journal)
            await fragile.run({"customer": "b"}, journal=journal)
        children.run("once", journal_file, service, env={journal_service.EXIT_AT: "ship:before"}, expect=(17,))
        assert [r.saga for r in sagakit.RunHistory.from_journal(journal_file)] == ["order", "fragile"]
        assert [r.saga for r in sagakit.RunHistory.from_journal(journal_file, saga="fragile")] == ["fragile"]
        with sagakit.SqliteJournal(journal_file) as journal:
            assert [r.saga for r in journal.runs(unfinished=True)] == ["order"]

    async def test_the_history_survives_the_process_that_ran_it(
        self, journal_file: Path, service: str, children: Children, tmp_path: Path
    ) -> None:
        """A child process runs sagas and exits; a new process reads the same frames from the journal."""
        saved = tmp_path / "child.parquet"
        children.run("write", journal_file, service, "--runs", 30, "--parquet", saved)
        from_journal = sagakit.RunHistory.from_journal(journal_file)
        from_child = sagakit.RunHistory.from_parquet(saved)
        assert len(from_journal) == 30
        pd.testing.assert_frame_equal(by_run(from_journal.runs), by_run(from_child.runs))
        pd.testing.assert_frame_equal(by_run(from_journal.steps), by_run(from_child.steps))

    async def test_two_processes_share_one_journal(self, journal_file: Path, service: str,
                                                   children: Children) -> None:
        """Two writers at once (WAL + busy timeout): every run of both is complete and the file is sound."""
        sagakit.SqliteJournal(journal_file).close()
        writers = [children.start("write", journal_file, service, "--runs", 60) for _ in range(2)]
        for writer in writers:
            _, stderr = writer.communicate(timeout=120)
            assert writer.returncode == 0, stderr
        connection = sqlite3.connect(journal_file)
        try:
            assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            per_run = connection.execute(
                "SELECT r.status, count(*) FROM runs r JOIN events e USING (run_id) GROUP BY r.run_id"
            ).fetchall()
        finally:
            connection.close()
        assert len(per_run) == 120 and set(per_run) == {("completed", 5)}
        history = sagakit.RunHistory.from_journal(journal_file)
        assert len(history) == 120 and set(history.runs["status"]) == {"completed"}


    def test_a_damaged_journal_names_the_damaged_run(self, journal_file: Path, service: str,
                                                      children: Children) -> None:
        """Damaged pages or cells: a JournalError naming the file and the run, never a raw sqlite3 or JSON error."""
        _, broken, last = damaged_journal(children, journal_file, service, finished=True)
        with pytest.raises(sagakit.journal.JournalError, match=f"run {broken} is damaged") as raised:
            sagakit.RunHistory.from_journal(journal_file)
        assert str(journal_file) in str(raised.value) and "2 other run(s) are readable" in str(raised.value)
        connection = sqlite3.connect(journal_file)
        with connection:
            connection.execute("UPDATE runs SET info = '[' WHERE run_id = ?", (last,))
        connection.close()
        with pytest.raises(sagakit.journal.JournalError, match="1 other run") as raised:
            sagakit.RunHistory.from_journal(journal_file, payloads=False)
        assert broken in str(raised.value) and last in str(raised.value)  # both damaged runs are named


    async def test_bad_arguments_are_named(self, journal_file: Path, tmp_path: Path) -> None:
        """load_history, to_parquet and from_parquet say which argument is wrong and what they expected."""
        saga = Saga("order", [step(reserve)])
        with sagakit.SqliteJournal(journal_file) as journal:
            await saga.run({}, journal=journal)
        with pytest.raises(TypeError, match="load_history payloads: expected True or False"):
            sagakit.RunHistory.from_journal(journal_file, payloads="no")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="load_history serializer: expected an object with dumps"):
            sagakit.RunHistory.from_journal(journal_file, serializer=object())  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="load_history sagas: expected a list of Saga objects"):
            sagakit.RunHistory.from_journal(journal_file, sagas=5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="load_history saga: expected a saga name or a Saga"):
            sagakit.RunHistory.from_journal(journal_file, saga=5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="to_parquet redact: expected True, False or a Redactor"):
            saga.history.to_parquet(tmp_path / "h.parquet", redact="yes")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="to_parquet history: expected a RunHistory, got list"):
            sagakit.journal.history_to_parquet([], tmp_path / "h.parquet")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="from_parquet sagas: expected a list of Saga objects"):
            sagakit.RunHistory.from_parquet(tmp_path / "h.parquet", sagas=5)  # type: ignore[arg-type]
        assert not (tmp_path / "h.parquet").exists()


class TestParquet:
    async def test_a_history_round_trips_through_parquet(self, journal_file: Path, tmp_path: Path) -> None:
        """to_parquet then from_parquet gives the same frames, and leaves payloads out of the file."""
        with sagakit.SqliteJournal(journal_file) as journal:
            live = await run_mix(journal)
        path = tmp_path / "history.parquet"
        live.to_parquet(path)
        loaded = sagakit.RunHistory.from_parquet(path)
        pd.testing.assert_frame_equal(loaded.runs, live.runs)
        pd.testing.assert_frame_equal(loaded.steps, live.steps)
        assert b"r-1" not in path.read_bytes()  # a payload value

    async def test_error_messages_are_scrubbed_of_the_runs_secrets(self, tmp_path: Path) -> None:
        async def login(data: Any, context: WorkflowContext) -> None:
            raise PermissionError(f"bad password {data['password']}")

        saga = Saga("login", [step(login)])
        await saga.run({"password": "hunter2-secret"})
        path = tmp_path / "history.parquet"
        saga.history.to_parquet(path)
        assert b"hunter2-secret" not in path.read_bytes()
        [message] = sagakit.RunHistory.from_parquet(path).runs["error_message"]
        assert message == "bad password [REDACTED]"

    def test_a_parquet_file_that_is_not_a_history_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "other.parquet"
        pd.DataFrame({"a": [1, 2]}).to_parquet(path)
        with pytest.raises(ValueError, match="not a sagakit run history"):
            sagakit.RunHistory.from_parquet(path)
        with pytest.raises(FileNotFoundError, match="no such file"):
            sagakit.RunHistory.from_parquet(tmp_path / "missing.parquet")
