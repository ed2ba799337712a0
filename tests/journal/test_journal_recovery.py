"""recover(): runs a crash left unfinished are rolled back, once, with the recorded data."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import journal_parts
import journal_service
import pytest
from journal_support import Children, damaged_journal

import sagakit
import sagakit.journal
from sagakit import Event, EventKind
from sagakit.journal import RunInterrupted

CRASHED = (17,)  # the exit code of os._exit in journal_service


def crash(children: Children, journal: Path, service: str, *, saga: str = "order", env: dict[str, str] | None = None,
          exit_on: str | None = None) -> None:
    """Run one saga in a child process that ends abruptly at the given point."""
    arguments: list[str | Path] = ["once", journal, service, "--saga", saga]
    if exit_on:
        arguments += ["--exit-on", exit_on]
    children.run(*arguments, env=env, expect=CRASHED)


def unfinished(journal: Path) -> list[str]:
    connection = sqlite3.connect(journal)
    try:
        return [row[0] for row in connection.execute("SELECT run_id FROM runs WHERE status IS NULL")]
    finally:
        connection.close()


def rows_of(journal: Path, query: str) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(journal)
    try:
        return connection.execute(query).fetchall()
    finally:
        connection.close()


class TestBackwardRecovery:
    async def test_completed_steps_are_compensated_in_reverse_with_their_recorded_data(
        self, journal_file: Path, service: str, children: Children
    ) -> None:
        """A crash inside 'ship' leaves reserve, charge and notify done; recovery undoes them, newest first."""
        crash(children, journal_file, service, env={journal_service.EXIT_AT: "ship:after"})
        [run_id] = unfinished(journal_file)
        assert {step for _, _, step in journal_service.items(service)} == {"reserve", "charge", "notify", "ship"}
        seen: list[Event] = []
        recovery = await sagakit.recover(journal_file, [journal_service.order_saga()], observers=[seen.append])
        [run] = recovery.runs
        assert run.run_id == run_id and run.status == "compensated"
        assert isinstance(run.error, RunInterrupted)
        assert journal_service.items(service) == []
        started = [event for event in seen if event.kind is EventKind.COMPENSATION_STARTED]
        order = [event.step for event in started]
        # 'ship' was in flight and says compensate_on_failure: it goes first, with its input.
        assert order[0] == "ship" and order[-1] == "reserve" and set(order[1:3]) == {"charge", "notify"}
        reserve = started[-1].data
        assert reserve == {"service": service, "reserve": f"{run_id}:reserve"}
        assert started[0].data["reserve"] == f"{run_id}:reserve" and "ship" not in started[0].data
        assert all(event.correlation_id == "crash-test" for event in seen)
        assert journal_service.calls(service) == {f"{run_id}:{step}:compensate": 1 for step in order}
        assert run.info["recovered"] is True and run.definition is not None

    async def test_recovering_twice_compensates_nothing_twice(
        self, journal_file: Path, service: str, children: Children
    ) -> None:
        """The second recovery finds nothing to do and calls no compensation."""
        crash(children, journal_file, service, env={journal_service.EXIT_AT: "charge:before"})
        first = await sagakit.recover(journal_file, [journal_service.order_saga()])
        assert len(first) == 1 and first.ok
        calls = journal_service.calls(service)
        second = await sagakit.recover(journal_file, [journal_service.order_saga()])
        assert len(second) == 0 and second.ok
        assert journal_service.calls(service) == calls

    async def test_a_crash_during_recovery_is_finished_by_the_next_recovery(
        self, journal_file: Path, service: str, children: Children
    ) -> None:
        """A recovery killed right after one compensation acted is taken over; that compensation acts once."""
        crash(children, journal_file, service, env={journal_service.EXIT_AT: "ship:after"})
        [run_id] = unfinished(journal_file)
        children.run("recover", journal_file, service, env={journal_service.EXIT_IN_COMPENSATION: "notify"},
                     expect=CRASHED)
        assert unfinished(journal_file) == [run_id]
        recovery = await sagakit.recover(journal_file, [journal_service.order_saga()])
        assert [run.status for run in recovery.runs] == ["compensated"]
        assert journal_service.items(service) == []
        calls = journal_service.calls(service)
        # ship (and whichever parallel branch came first) were recorded before the crash: not called again.
        assert calls[f"{run_id}:ship:compensate"] == 1
        assert calls[f"{run_id}:reserve:compensate"] == 1
        assert max(calls.values()) <= 2  # notify ran, then ran again with the same key; its effect happened once

    async def test_a_run_whose_every_step_completed_is_recorded_as_completed(
        self, journal_file: Path, service: str, children: Children
    ) -> None:
        """A crash between the last step and the run's end record undoes nothing."""
        crash(children, journal_file, service, saga="checkout", exit_on="run_finished")
        recovery = await sagakit.recover(journal_file, [journal_service.checkout_saga()])
        [run] = recovery.runs
        assert run.status == "completed" and run.compensations_run == 0
        assert run.result["ship"] == f"{run.run_id}:ship"
        assert len(journal_service.items(service)) == 3

    async def test_a_crash_during_rollback_finishes_the_rollback(
        self, journal_file: Path, service: str, children: Children
    ) -> None:
        """Killed while its own rollback ran, the run is rolled back to the end by recovery."""
        crash(children, journal_file, service, exit_on="compensation_succeeded")
        recovery = await sagakit.recover(journal_file, [journal_service.order_saga()])
        assert [run.status for run in recovery.runs] == ["compensated"]
        assert journal_service.items(service) == []

    async def test_compensations_receive_the_engines_idempotency_keys(
        self, journal_file: Path, service: str, children: Children
    ) -> None:
        """The keys recovery passes are the ones the engine passes in a rollback: run_id:step:compensate."""
        crash(children, journal_file, service, env={journal_service.EXIT_AT: "ship:before"})
        [run_id] = unfinished(journal_file)
        await sagakit.recover(journal_file, [journal_service.order_saga()])
        engine_run = await journal_service.order_saga().run({"service": service})
        expected = {f"{run_id}:{step}:compensate" for step in ("reserve", "charge", "notify", "ship")}
        expected |= {f"{engine_run.run_id}:{step}:compensate" for step in ("reserve", "charge", "notify", "ship")}
        assert set(journal_service.calls(service)) == expected


class TestCompensationFailure:
    async def test_a_failing_compensation_marks_the_run_for_attention(
        self, journal_file: Path, service: str, children: Children, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The rollback stops at the failure (the saga's policy), the run is kept and listed for attention."""
        crash(children, journal_file, service, env={journal_service.EXIT_AT: "ship:before"})
        monkeypatch.setenv(journal_service.BROKEN, "charge")
        recovery = await sagakit.recover(journal_file, [journal_service.order_saga()])
        [run] = recovery.needs_attention
        assert not recovery.ok and run.status == "compensation_failed"
        assert isinstance(run.error, sagakit.CompensationError)
        assert run.error.step == "charge" and "reserve" in run.error.pending
        assert isinstance(run.error.original, RunInterrupted)
        # Not lost: the journal lists it, with the reason.
        with sagakit.SqliteJournal(journal_file) as journal:
            [listed] = journal.runs(attention=True)
        assert listed.run_id == run.run_id and "charge" in (listed.attention or "")
        assert "reserve" in {step for _, _, step in journal_service.items(service)}
        # A plain recovery leaves it alone; once the service is back, retry_failed finishes it.
        assert len(await sagakit.recover(journal_file, [journal_service.order_saga()])) == 0
        monkeypatch.delenv(journal_service.BROKEN)
        retried = await sagakit.recover(journal_file, [journal_service.order_saga()], retry_failed=True)
        assert [r.status for r in retried.runs] == ["compensated"]
        assert journal_service.items(service) == []
        calls = journal_service.calls(service)
        assert calls[f"{run.run_id}:notify:compensate"] == 1  # succeeded the first time: not run again

    async def test_continue_on_compensation_failure_compensates_the_rest(
        self, journal_file: Path, service: str, children: Children, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With continue_on_compensation_failure=True, every other compensation still runs."""
        crash(children, journal_file, service, env={journal_service.EXIT_AT: "ship:before"})
        monkeypatch.setenv(journal_service.BROKEN, "charge")
        saga = journal_service.order_saga().replace(continue_on_compensation_failure=True)
        [run] = (await sagakit.recover(journal_file, [saga])).runs
        assert run.status == "compensation_failed"
        assert run.error.pending == ()  # type: ignore[union-attr]
        assert [step for _, _, step in journal_service.items(service)] == ["charge"]


class TestWhatRecoveryLeavesAlone:
    async def test_runs_of_sagas_not_given_are_skipped_and_stay_unfinished(
        self, journal_file: Path, service: str, children: Children
    ) -> None:
        """Without the saga's definition nothing can be compensated: the run is reported, not touched."""
        crash(children, journal_file, service, env={journal_service.EXIT_AT: "ship:before"})
        recovery = await sagakit.recover(journal_file, [journal_service.checkout_saga()])
        [skipped] = recovery.skipped
        assert skipped.saga == "order" and "no saga named 'order'" in skipped.reason
        assert len(unfinished(journal_file)) == 1

    async def test_runs_of_a_live_process_are_left_to_it(
        self, journal_file: Path, service: str, children: Children
    ) -> None:
        """recover() never compensates a run whose process is still running it."""
        child = children.start("forever", journal_file, service, "--concurrency", 4)
        children.wait_ready(child)
        skipped: list[sagakit.journal.SkippedRun] = []
        deadline = time.monotonic() + 30
        while not skipped:  # until a recovery looks while some of the child's runs are in flight
            assert time.monotonic() < deadline, "never saw a run of the live child in flight"
            recovery = await sagakit.recover(journal_file, [journal_service.order_saga()])
            assert recovery.runs == (), "a run of a live process was recovered"
            skipped = list(recovery.skipped)
        assert all(f"still running in process {child.pid}" in entry.reason for entry in skipped)
        with sagakit.SqliteJournal(journal_file) as journal:
            assert all(run.live for run in journal.runs(unfinished=True))
        child.kill()
        child.wait()
        after = await sagakit.recover(journal_file, [journal_service.order_saga()])
        assert len(after) >= 1 and after.skipped == () and unfinished(journal_file) == []
        assert journal_service.items(service) == []

    async def test_bad_arguments_are_named(self, journal_file: Path) -> None:
        """recover() says which argument is wrong."""
        with pytest.raises(TypeError, match="recover sagas: expected Saga objects"):
            await sagakit.recover(journal_file, ["order"])  # type: ignore[list-item]
        with pytest.raises(ValueError, match="two different sagas are named 'order'"):
            await sagakit.recover(journal_file, [journal_service.order_saga(), journal_service.order_saga()])
        with pytest.raises(ValueError, match="recover concurrency: expected an int >= 1, got 0"):
            await sagakit.recover(journal_file, [], concurrency=0)
        saga = journal_service.order_saga()
        cases: list[tuple[dict[str, Any], str]] = [
            ({"sagas": 5}, "recover sagas: expected a list of Saga objects .* got int 5"),
            ({"sagas": None}, "recover sagas: expected a list of Saga objects"),
            ({"sagas": "order"}, "recover sagas: expected a list of Saga objects"),
            ({"sagas": {1: saga}}, "recover sagas: expected saga names"),
            ({"sagas": [saga], "observers": None}, "recover observers: expected an iterable of callables"),
            ({"sagas": [saga], "observers": [5]}, "recover observers: expected a callable taking an Event, got int 5"),
            ({"sagas": [saga], "observers": print}, "put a single observer in a list"),
            ({"sagas": [saga], "force": "yes"}, "recover force: expected True or False"),
            ({"sagas": [saga], "retry_failed": 1}, "recover retry_failed: expected True or False"),
            ({"sagas": [saga], "concurrency": 2.5}, "recover concurrency: expected an int >= 1"),
        ]
        for arguments, message in cases:
            with pytest.raises(TypeError, match=message):
                await sagakit.recover(journal_file, **arguments)
        with pytest.raises(TypeError, match="recover journal: expected a SqliteJournal or a file path, got int"):
            await sagakit.recover(5, [saga])  # type: ignore[arg-type]
        assert not journal_file.exists()  # refused before the journal was opened


class TestConcurrentRecoveries:
    async def test_two_recoveries_at_once_recover_each_run_once(
        self, journal_file: Path, service: str, children: Children
    ) -> None:
        """Two recover() calls racing over the same journal: every run is claimed by exactly one."""
        child = children.start("forever", journal_file, service, "--concurrency", 10)
        children.wait_ready(child)
        # Kill once runs are in flight (recorded started, not finished): on a busy machine that
        # can take longer than any fixed pause.
        deadline = time.monotonic() + 30
        while not unfinished(journal_file) and time.monotonic() < deadline:
            time.sleep(0.02)
        child.kill()
        child.wait()
        pending = set(unfinished(journal_file))
        first, second = await asyncio.gather(
            sagakit.recover(journal_file, [journal_service.order_saga()]),
            sagakit.recover(journal_file, [journal_service.order_saga()]),
        )
        recovered = [run.run_id for run in (*first.runs, *second.runs)]
        assert sorted(recovered) == sorted(pending) and len(pending) >= 1
        assert unfinished(journal_file) == [] and journal_service.items(service) == []
        connection = sqlite3.connect(journal_file)
        ends = dict(connection.execute("SELECT run_id, count(*) FROM events WHERE kind = 'run_finished' GROUP BY 1"))
        connection.close()
        assert all(ends[run_id] == 1 for run_id in pending)


class TestStepsOfSeveralAttempts:
    """A policy records one event per attempt; recovery counts only the end of a whole step or compensation."""

    @pytest.fixture
    def parts_service(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
        path = tmp_path / "parts.db"
        journal_parts.create_service(path)
        monkeypatch.setenv(journal_parts.SERVICE, str(path))  # recovery's compensations record their calls too
        monkeypatch.delenv(journal_parts.KILL_IN, raising=False)
        return str(path)

    @staticmethod
    def kill(journal: Path, service: str, saga: str, kill_in: str) -> list[str]:
        """Run ``saga`` in a child that SIGKILLs itself in ``kill_in``; the functions it called."""
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join([str(Path(journal_parts.__file__).parent),
                                                     environment.get("PYTHONPATH", "")])
        child = subprocess.run([sys.executable, journal_parts.__file__, saga, str(journal), service, kill_in],
                               capture_output=True, text=True, timeout=120, env=environment)
        assert child.returncode == -signal.SIGKILL, child.stderr
        return [name for name, _ in journal_parts.calls(service)]

    async def test_a_sequential_step_killed_after_its_first_part_is_not_compensated_as_complete(
        self, journal_file: Path, parts_service: str
    ) -> None:
        """pick >> box killed in box: the step was in flight, so its compensation does not run with pick's output."""
        assert self.kill(journal_file, parts_service, "pack", "box") == ["reserve", "pick", "box"]
        recovery = await sagakit.recover(journal_file, [journal_parts.build("pack")])
        assert [run.status for run in recovery.runs] == ["compensated"]
        assert journal_parts.calls(parts_service)[3:] == [("release", {"order": 7, "reserve": True})]

    async def test_an_ambiguous_sequential_step_in_flight_is_compensated_with_its_input(
        self, journal_file: Path, parts_service: str
    ) -> None:
        """With compensate_on_failure, the in-flight step's compensation receives the step's input, not a part's output."""
        self.kill(journal_file, parts_service, "pack_ambiguous", "box")
        await sagakit.recover(journal_file, [journal_parts.build("pack_ambiguous")])
        assert journal_parts.calls(parts_service)[3:] == [
            ("unpack", {"order": 7, "reserve": True}), ("release", {"order": 7, "reserve": True}),
        ]

    async def test_a_sequential_step_whose_every_part_ended_is_compensated_with_its_output(
        self, journal_file: Path, parts_service: str
    ) -> None:
        """Killed in the next step, before it recorded anything: pick >> box had completed, and is undone."""
        assert self.kill(journal_file, parts_service, "pack", "ship") == ["reserve", "pick", "box", "ship"]
        await sagakit.recover(journal_file, [journal_parts.build("pack")])
        assert journal_parts.calls(parts_service)[4:] == [
            ("unpack", {"order": 7, "reserve": True, "pick": True, "box": True}),
            ("release", {"order": 7, "reserve": True}),
        ]

    async def test_a_step_that_succeeded_on_a_retry_is_compensated(
        self, journal_file: Path, parts_service: str
    ) -> None:
        """A failed try then a successful one: the step completed, whatever comes after its records."""
        assert self.kill(journal_file, parts_service, "flaky", "ship") == ["reserve", "charge", "charge", "ship"]
        await sagakit.recover(journal_file, [journal_parts.build("flaky")])
        assert [name for name, _ in journal_parts.calls(parts_service)[4:]] == ["uncharge", "release"]

    async def test_a_retried_compensation_killed_in_its_second_try_runs_again(
        self, journal_file: Path, parts_service: str
    ) -> None:
        """A failed first try is not the end of the compensation: recovery runs it (and its retries) again."""
        assert self.kill(journal_file, parts_service, "retried", "release#2") == ["reserve", "release", "release"]
        recovery = await sagakit.recover(journal_file, [journal_parts.build("retried")])
        assert [run.status for run in recovery.runs] == ["compensated"]
        assert [name for name, _ in journal_parts.calls(parts_service)[3:]] == ["release", "release"]

    async def test_a_sequential_compensation_killed_after_its_first_part_runs_again_whole(
        self, journal_file: Path, parts_service: str
    ) -> None:
        """refund >> notify killed in notify: recovery runs the whole compensation, then the earlier ones."""
        called = self.kill(journal_file, parts_service, "refund", "notify")
        assert called == ["reserve", "pay", "refund", "notify"]
        recovery = await sagakit.recover(journal_file, [journal_parts.build("refund")])
        [run] = recovery.runs
        assert run.status == "compensated"
        assert [name for name, _ in journal_parts.calls(parts_service)[4:]] == ["refund", "notify", "release"]
        again = await sagakit.recover(journal_file, [journal_parts.build("refund")])
        assert len(again) == 0 and len(journal_parts.calls(parts_service)) == 7


class TestDamagedJournals:
    async def test_damaged_pages_cost_only_their_run_and_are_named(
        self, journal_file: Path, service: str, children: Children
    ) -> None:
        """The other runs are rolled back; then a JournalError names the file and the damaged run."""
        first, broken, last = damaged_journal(children, journal_file, service)
        with pytest.raises(sagakit.journal.JournalError) as raised:
            await sagakit.recover(journal_file, [journal_service.order_saga()])
        message = str(raised.value)
        assert str(journal_file) in message and f"run {broken} is damaged" in message
        assert "2 other run(s) were recovered" in message and ".recover" in message
        assert {run_id for _, run_id, _ in journal_service.items(service)} == {broken}
        statuses = dict(rows_of(journal_file, "SELECT run_id, status FROM runs"))
        assert statuses == {first: "compensated", broken: None, last: "compensated"}

    async def test_a_damaged_info_cell_names_its_run(
        self, journal_file: Path, service: str, children: Children
    ) -> None:
        """An info cell that is no longer JSON: a JournalError naming the run, not a bare JSONDecodeError."""
        for _ in range(2):
            crash(children, journal_file, service, env={journal_service.EXIT_AT: "charge:before"})
        good, bad = unfinished(journal_file)
        connection = sqlite3.connect(journal_file)
        with connection:
            connection.execute("UPDATE runs SET info = '{\"backend\": \"lo' WHERE run_id = ?", (bad,))
        connection.close()
        with pytest.raises(sagakit.journal.JournalError, match=f"run {bad} is damaged: its info cell"):
            await sagakit.recover(journal_file, [journal_service.order_saga()])
        assert unfinished(journal_file) == [bad]
        assert {run_id for _, run_id, _ in journal_service.items(service)} == {bad}  # good was rolled back
        assert good not in unfinished(journal_file)


class _BrokenText(Exception):
    """An exception whose ``__str__`` and ``__repr__`` raise."""

    def __str__(self) -> str:
        raise KeyError("no text")

    def __repr__(self) -> str:
        raise KeyError("no repr")


class TestRecoveryThroughTheRecorder:
    """recover() delivers and decides as the engine does: a broken observer or error never aborts it."""

    async def test_an_observer_that_raises_is_dropped_and_the_rest_still_see_every_event(
        self, journal_file: Path, service: str, children: Children
    ) -> None:
        """The raising observer is reported and ignored; recovery finishes; later observers see it all."""
        crash(children, journal_file, service, env={journal_service.EXIT_AT: "ship:before"})
        calls: list[Event] = []

        def broken(event: Event) -> None:
            calls.append(event)
            raise RuntimeError("sink down")

        seen: list[Event] = []
        with pytest.warns(RuntimeWarning, match="sink down"):
            recovery = await sagakit.recover(journal_file, [journal_service.order_saga()],
                                             observers=[broken, seen.append])
        [run] = recovery.runs
        assert run.status == "compensated" and journal_service.items(service) == []
        assert len(calls) == 1  # dropped after its first failure
        assert [event.kind for event in seen[:2]] == [EventKind.RUN_RESUMED, EventKind.ROLLBACK_STARTED]
        assert seen[-1].kind is EventKind.RUN_FINISHED
        assert unfinished(journal_file) == []

    async def test_a_compensation_raising_an_error_without_text_is_recorded_with_a_placeholder(
        self, journal_file: Path, service: str, children: Children
    ) -> None:
        """Recovery does not abort: the run ends compensation_failed, the message holds a placeholder."""
        crash(children, journal_file, service, env={journal_service.EXIT_AT: "ship:before"})
        template = journal_service.order_saga()

        async def compensate(data: Any, context: sagakit.WorkflowContext) -> None:
            raise _BrokenText()

        saga = sagakit.Saga("order", [sagakit.step(s.action, compensate, name=s.name) for s in template.steps])
        recovery = await sagakit.recover(journal_file, [saga])
        [run] = recovery.needs_attention
        assert isinstance(run.error, sagakit.CompensationError)
        assert "<_BrokenText: message unavailable>" in str(run.error)
        assert unfinished(journal_file) == []
