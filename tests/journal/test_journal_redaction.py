"""Which keys the journal masks: the run's saga's redactor unless redact= was given, and the serializer's output."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

import sagakit
from sagakit import Saga, WorkflowContext, step
from sagakit.journal import JsonSerializer


def payloads(path: Path, run_id: str) -> list[str]:
    """The stored payloads of a run, in order, read through a connection of its own."""
    connection = sqlite3.connect(path)
    try:
        found = connection.execute(
            "SELECT payload FROM events WHERE run_id = ? AND payload IS NOT NULL ORDER BY seq", (run_id,)
        ).fetchall()
    finally:
        connection.close()
    return [payload for (payload,) in found]


async def book(data: dict[str, Any], context: WorkflowContext) -> dict[str, Any]:
    return {**data, "booking": "b-1"}


async def cancel(data: dict[str, Any], context: WorkflowContext) -> None:
    pass


def booking_saga(**options: Any) -> Saga:
    """A saga whose own redactor also treats ``passport`` as sensitive."""
    return Saga("booking", [step(book)], redact=["passport"], **options)


INPUT = {"passport": "X1234567", "password": "hunter2-secret", "guest": "ada"}


class TestSagaRedactor:
    async def test_an_attached_saga_masks_its_own_keys_as_well_as_the_defaults(self, journal_file: Path) -> None:
        """attach(): the saga's extra key is masked, the default keys still are, other data is kept."""
        saga = booking_saga()
        with sagakit.SqliteJournal(journal_file) as journal:
            detach = journal.attach(saga)
            run = await saga.run(INPUT)
            detach()
            unrecorded = await saga.run(INPUT)
        stored = payloads(journal_file, run.run_id)
        assert stored and all("X1234567" not in text and "hunter2-secret" not in text for text in stored)
        assert stored[0] == '{"passport":"[REDACTED]","password":"[REDACTED]","guest":"ada"}'
        assert payloads(journal_file, unrecorded.run_id) == []  # detached: no longer observed

    async def test_a_bound_saga_run_with_journal_uses_its_redactor(self, journal_file: Path) -> None:
        """bind() + run(journal=...): the run's payloads and error messages follow the saga's keys."""

        async def refuse(data: dict[str, Any], context: WorkflowContext) -> None:
            raise ValueError(f"passport {data['passport']} refused")

        saga = Saga("booking", [step(book, compensate=cancel), step(refuse)], redact=["passport"])
        with sagakit.SqliteJournal(journal_file) as journal:
            journal.bind(saga)
            run = await saga.run(INPUT, journal=journal)
        assert run.status == "compensated"
        raw = b"".join(path.read_bytes() for path in journal_file.parent.glob("journal.db*"))
        assert b"X1234567" not in raw and b"hunter2-secret" not in raw and b"ada" in raw

    async def test_an_explicit_redact_wins_over_the_saga(self, journal_file: Path) -> None:
        """redact=True means the default keys for every saga: the saga's extra key is stored."""
        saga = booking_saga()
        with sagakit.SqliteJournal(journal_file, redact=True) as journal:
            journal.attach(saga)
            run = await saga.run(INPUT)
        assert payloads(journal_file, run.run_id)[0] == '{"passport":"X1234567","password":"[REDACTED]","guest":"ada"}'

    async def test_an_unknown_saga_gets_the_default_keys(self, journal_file: Path) -> None:
        """A journal that is a plain observer of the run, never bound, masks the default keys."""
        saga = booking_saga()
        with sagakit.SqliteJournal(journal_file) as journal:
            run = await saga.run(INPUT, observers=[journal])
        assert payloads(journal_file, run.run_id)[0] == '{"passport":"X1234567","password":"[REDACTED]","guest":"ada"}'

    async def test_binding_does_not_keep_the_saga_alive(self, journal_file: Path) -> None:
        """The journal holds sagas weakly: a dropped saga (and its run history) is freed."""
        import gc
        import weakref

        saga = booking_saga()
        with sagakit.SqliteJournal(journal_file) as journal:
            journal.bind(saga)
            await saga.run(INPUT, journal=journal)
            gone = weakref.ref(saga)
            del saga
            gc.collect()
            assert gone() is None

    def test_bind_rejects_what_is_not_a_saga(self, journal_file: Path) -> None:
        """A clear TypeError names the method and what it got."""
        with sagakit.SqliteJournal(journal_file) as journal:
            with pytest.raises(TypeError, match=r"SqliteJournal.bind: expected a sagakit.Saga, got 'booking'"):
                journal.bind("booking")  # type: ignore[arg-type]
            with pytest.raises(TypeError, match=r"SqliteJournal.attach: expected a sagakit.Saga"):
                journal.attach(object())  # type: ignore[arg-type]


class TestJsonSerializer:
    @pytest.mark.parametrize(
        "value",
        [{"n": 1}, [1, 2.5, None, True], "text é", 3, 1e300, float("nan"), {"a": {"b": [(1, 2)]}}, {1: "key"}],
    )
    def test_it_writes_what_json_writes(self, value: Any) -> None:
        """The prebuilt encoder gives the text of json.dumps with the journal's separators, for any JSON value."""
        import json

        expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        serializer = JsonSerializer()
        assert serializer.dumps(value) == expected
        assert serializer.dumps(value) == expected  # and again: nothing is left over from the first call

    def test_a_failure_leaves_it_usable_and_raises_what_json_raises(self) -> None:
        """A circular value gives json's own error; the next payload is encoded normally."""
        circular: dict[str, Any] = {"n": 1}
        circular["self"] = circular
        serializer = JsonSerializer()
        with pytest.raises(ValueError, match="Circular reference detected"):
            serializer.dumps(circular)
        with pytest.raises(TypeError, match="Object of type set is not JSON serializable"):
            serializer.dumps({"tags": {"a"}})
        assert serializer.dumps({"n": [1, {"m": 2}]}) == '{"n":[1,{"m":2}]}'

    def test_default_encodes_other_types(self) -> None:
        """default= is used by the prebuilt encoder too."""
        serializer = JsonSerializer(default=lambda value: sorted(value) if isinstance(value, set) else str(value))
        assert serializer.dumps({"tags": {"b", "a"}}) == '{"tags":["a","b"]}'


async def test_a_journal_given_to_the_saga_masks_with_the_sagas_own_keys(tmp_path: Path) -> None:
    """Saga(journal=...) and run(journal=...) tell the journal whose runs it records."""
    import sagakit as sk

    async def book(data: dict[str, Any], context: sk.WorkflowContext) -> dict[str, Any]:
        return {**data, "booking": "b-1"}

    for how in ("definition", "run"):
        path = tmp_path / f"{how}.sqlite"
        journal = sk.SqliteJournal(path)
        saga = sk.Saga("trip", [book], redact=["passport"], journal=journal if how == "definition" else None)
        await saga.run({"passport": "X1234567"}, journal=journal if how == "run" else None)
        journal.close()
        assert b"X1234567" not in path.read_bytes(), how
