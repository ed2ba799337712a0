"""Saga: a read-only definition, replace(), the runtime state that stays mutable, and the
arguments of its entry points."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

import sagakit as sk

CALLS: list[str] = []


async def reserve(data: Any, context: sk.WorkflowContext) -> Any:
    CALLS.append("reserve")
    return {**data, "reserved": True}


async def release(data: Any, context: sk.WorkflowContext) -> None:
    CALLS.append("release")


async def charge(data: Any, context: sk.WorkflowContext) -> Any:
    CALLS.append("charge")
    return data


async def ship(data: Any, context: sk.WorkflowContext) -> Any:
    CALLS.append("ship")
    return data


@pytest.fixture(autouse=True)
def fresh_calls() -> None:
    CALLS.clear()


def order() -> sk.Saga:
    return sk.Saga("order", [sk.step(reserve, release), charge])


class TestReadOnlyDefinition:
    @pytest.mark.parametrize(
        ("attribute", "value", "hint"),
        [
            ("stages", (), "saga.replace(stages=...)"),
            ("steps", (), "saga.replace(stages=...)"),
            ("step_names", ("x",), "saga.replace(stages=...)"),
            ("name", "other", "saga.replace(name=...)"),
            ("continue_on_compensation_failure", True, "saga.replace(continue_on_compensation_failure=...)"),
            ("log_compensations", False, "saga.replace(log_compensations=...)"),
            ("redactor", None, "saga.replace(redact=...)"),
            ("journal", None, "saga.replace(journal=...)"),
        ],
    )
    def test_definition_attributes_refuse_assignment(self, attribute: str, value: object, hint: str) -> None:
        """Assigning a definition attribute raises, naming the replace() call that does it."""
        saga = order()
        before = getattr(saga, attribute)
        with pytest.raises(AttributeError, match=f"'{attribute}' is part of the definition") as raised:
            setattr(saga, attribute, value)
        assert hint in str(raised.value)
        assert getattr(saga, attribute) == before

    def test_definition_attributes_refuse_deletion(self) -> None:
        """Deleting a definition attribute raises too."""
        saga = order()
        with pytest.raises(AttributeError, match="read-only"):
            del saga.stages

    def test_seed_form_is_read_only_too(self) -> None:
        """CompensationPrimitive's definition is read-only like any saga's."""
        workflow = sk.CompensationPrimitive([(reserve, release), (charge, None)])
        with pytest.raises(AttributeError, match="replace"):
            workflow.continue_on_compensation_failure = True  # type: ignore[misc]

    def test_faults_history_and_observers_stay_mutable(self) -> None:
        """Runtime state is assignable: the fault plan (same object), the history and the observers."""
        saga = order()
        plan = saga.faults
        saga.faults = {"charge": "fail"}
        assert saga.faults is plan and plan["charge"].mode == "fail"
        history = sk.RunHistory(maxlen=5)
        saga.history = history
        assert saga.history is history
        seen: list[sk.Event] = []
        saga.observers = [seen.append]
        saga.run_sync({})
        assert seen and seen[-1].kind == sk.EventKind.RUN_FINISHED
        assert len(history) == 1

    def test_runtime_state_is_still_checked(self) -> None:
        """A history that is not a RunHistory, or observers that are not callables, are refused."""
        saga = order()
        with pytest.raises(TypeError, match=r"history: expected a sagakit\.RunHistory, got list"):
            saga.history = []  # type: ignore[assignment]
        with pytest.raises(TypeError, match="observers: expected an iterable of callables"):
            saga.observers = None  # type: ignore[assignment]


class TestReplace:
    def test_new_stages_bring_their_names_and_faults(self) -> None:
        """replace(stages=...) recomputes steps and step_names; a fault on a new step is accepted."""
        saga = order()
        bigger = saga.replace(stages=[*saga.stages, ship])
        assert bigger.step_names == ("reserve", "charge", "ship")
        bigger.faults["ship"] = "fail"
        run = bigger.run_sync({})
        assert run.status == "compensated"
        assert CALLS == ["reserve", "charge", "release"]
        assert saga.step_names == ("reserve", "charge")

    def test_faults_of_remaining_steps_are_carried(self) -> None:
        """Faults on steps the new saga still has are kept; those on dropped steps are left behind."""
        saga = order()
        saga.faults = {"reserve": "fail_after", "charge": "fail"}
        smaller = saga.replace(stages=[sk.step(reserve, release)])
        assert dict(smaller.faults) == {"reserve": sk.Fault("fail_after")}

    def test_explicit_faults_replace_the_plan(self) -> None:
        """faults= in replace() is the new plan, checked against the new steps."""
        saga = order()
        saga.faults = {"reserve": "fail"}
        assert dict(saga.replace(faults=None).faults) == {}
        with pytest.raises(sk.UnknownStepError, match="no step named 'ship'"):
            saga.replace(faults={"ship": "fail"})

    def test_settings_observers_and_journal_are_carried(self, tmp_path: Path) -> None:
        """What is not changed is the original's: flags, redactor, observers, journal."""
        seen: list[sk.Event] = []
        with sk.SqliteJournal(tmp_path / "j.db", durability="off") as journal:
            saga = sk.Saga("order", [reserve], continue_on_compensation_failure=True, log_compensations=False,
                           observers=[seen.append], journal=journal, redact=["iban"])
            renamed = saga.replace(name="order-v2")
            assert renamed.name == "order-v2"
            assert renamed.continue_on_compensation_failure is True
            assert renamed.log_compensations is False
            assert renamed.redactor is saga.redactor
            assert renamed.journal is journal
            assert renamed.observers == [seen.append, journal]
            renamed.run_sync({})
            assert len(journal.runs()) == 1
        assert len(renamed.history) == 1 and len(saga.history) == 0

    def test_returns_the_same_class_and_leaves_the_original(self) -> None:
        """A CompensationPrimitive replaces into a CompensationPrimitive; primitives= is the seed's name."""
        workflow = sk.CompensationPrimitive([(reserve, release)])
        changed = workflow.replace(primitives=[(reserve, release), (charge, None)])
        assert type(changed) is sk.CompensationPrimitive
        assert changed.name == "compensation_workflow"
        assert changed.step_names == ("reserve", "charge")
        assert workflow.step_names == ("reserve",)

    def test_unknown_change_names_the_choices(self) -> None:
        """A misspelt change is a TypeError listing what can change."""
        with pytest.raises(TypeError, match=r"Saga.replace: unknown change 'stage'; expected any of name, stages"):
            order().replace(stage=[reserve])
        with pytest.raises(TypeError, match="primitives or stages, not both"):
            sk.CompensationPrimitive([reserve]).replace(primitives=[reserve], stages=[charge])

    def test_changed_values_are_validated(self) -> None:
        """A replaced value goes through the constructor's checks."""
        with pytest.raises(TypeError, match="continue_on_compensation_failure: expected True or False"):
            order().replace(continue_on_compensation_failure="yes")
        with pytest.raises(ValueError, match="expected at least one step"):
            order().replace(stages=[])


class TestStepLookup:
    def test_get_step(self) -> None:
        """get_step(name) returns the step; an unknown name lists the saga's steps."""
        saga = order()
        assert saga.get_step("charge").name == "charge"
        assert saga.index_of("charge") == 1
        with pytest.raises(sk.UnknownStepError, match="its steps are: 'reserve', 'charge'"):
            saga.get_step("ship")

    def test_step_lookup_is_deprecated(self) -> None:
        """saga.step(name) still works, with a DeprecationWarning naming get_step."""
        with pytest.warns(DeprecationWarning, match=r"use Saga.get_step\(name\)"):
            assert order().step("reserve").name == "reserve"


class TestEntryPointArguments:
    async def test_backend_must_be_a_backend(self) -> None:
        """backend=5 is a TypeError naming the argument; nothing runs."""
        with pytest.raises(TypeError, match=r"backend: expected a sagakit.Backend .* got int 5"):
            await order().run({}, backend=5)  # type: ignore[arg-type]
        assert CALLS == []

    async def test_observers_none_is_named(self) -> None:
        """observers=None says what was expected, at definition and per run."""
        with pytest.raises(TypeError, match=r"saga 'order' observers: expected an iterable of callables .* NoneType"):
            sk.Saga("order", [reserve], observers=None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"observers: expected an iterable of callables"):
            await order().run({}, observers=None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"observers: expected a callable taking an Event, got int 3"):
            await order().run({}, observers=[3])  # type: ignore[list-item]
        assert CALLS == []

    async def test_context_must_be_a_workflow_context(self) -> None:
        """A dict passed as the context is named."""
        with pytest.raises(TypeError, match="context: expected a WorkflowContext or None, got dict"):
            await order().run({}, {"correlation_id": "x"})  # type: ignore[arg-type]


class TestJournalPath:
    async def test_a_path_journals_the_run_and_closes_the_file(self, tmp_path: Path) -> None:
        """run(journal=path) really journals the run, then closes the journal (no writer left)."""
        path = tmp_path / "sagas.db"
        before = {t.ident for t in threading.enumerate() if t.name == "sagakit-journal"}
        run = await order().run({}, journal=str(path))
        assert run.status == "completed"
        after = {t.ident for t in threading.enumerate() if t.name == "sagakit-journal"}
        assert after <= before
        history = sk.RunHistory.from_journal(path)
        assert [r.run_id for r in history] == [run.run_id]
        assert history.runs["status"].tolist() == ["completed"]

    async def test_a_path_journals_a_failed_run(self, tmp_path: Path) -> None:
        """A rolled-back run is on file too, and execute() raises the original error."""
        saga = order()
        path = tmp_path / "sagas.db"
        with pytest.raises(sk.InjectedFault):
            await saga.execute({}, journal=path, faults={"charge": "fail"})
        assert sk.RunHistory.from_journal(path).runs["status"].tolist() == ["compensated"]

    async def test_bad_arguments_are_refused_before_the_file_is_made(self, tmp_path: Path) -> None:
        """A bad argument next to a journal path fails first: no file is created, nothing runs."""
        path = tmp_path / "sagas.db"
        with pytest.raises(TypeError, match="observers"):
            await order().run({}, journal=path, observers=None)  # type: ignore[arg-type]
        assert not path.exists() and CALLS == []

    def test_a_saga_refuses_a_path(self, tmp_path: Path) -> None:
        """Saga(journal=path) is a TypeError that says how to pass a journal."""
        with pytest.raises(TypeError, match=r"journal: expected a journal object such as sagakit.SqliteJournal"):
            sk.Saga("order", [reserve], journal=str(tmp_path / "x.db"))  # type: ignore[arg-type]
        assert not (tmp_path / "x.db").exists()

    async def test_a_non_journal_is_refused(self) -> None:
        """A journal that is neither a path nor a callable observer is named."""
        with pytest.raises(TypeError, match="journal: expected a callable taking an Event, got int 7"):
            await order().run({}, journal=7)  # type: ignore[arg-type]


class TestSynchronousForms:
    def test_explore_sync_outside_a_loop(self) -> None:
        """explore_sync gives the same Exploration as await explore()."""
        saga = order()
        exploration = saga.explore_sync({})
        assert isinstance(exploration, sk.Exploration)
        assert exploration.ok
        assert exploration.outcome("charge", "fail") == "compensated"
        assert len(saga.history) == 0  # its runs used a copy of the saga

    async def test_explore_sync_inside_a_running_loop(self) -> None:
        """Inside a running loop (a notebook cell) explore_sync works too, blocking until done."""
        loop = asyncio.get_running_loop()
        exploration = order().explore_sync({})
        assert asyncio.get_running_loop() is loop
        assert exploration.outcome("reserve", "fail_after") == "compensated"
