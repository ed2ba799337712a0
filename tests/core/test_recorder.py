"""The run recorder: event delivery (the rules of rollback are tested in test_driver)."""

from __future__ import annotations

import pytest

import sagakit as sk
from sagakit import _recorder as recorder


class _Unprintable(Exception):
    """An exception whose ``__str__`` raises."""

    def __str__(self) -> str:
        raise RuntimeError("no text")


class TestDeliver:
    """One delivery path: an observer that raises is dropped from the run's list, with a warning."""

    def test_a_raising_observer_is_dropped_and_the_others_still_receive_the_event(self) -> None:
        """The broken observer is removed and warned about; those after it still get the event."""
        seen: list[sk.Event] = []

        def broken(event: sk.Event) -> None:
            raise _Unprintable()

        observers: list[sk.Observer] = [broken, seen.append]
        event = sk.Event(sk.EventKind.RUN_STARTED, "run", "saga", 0.0)
        with pytest.warns(RuntimeWarning, match="message unavailable"):
            recorder.deliver(observers, event)
        assert observers == [seen.append] and seen == [event]
        recorder.deliver(observers, event)
        assert seen == [event, event]


class TestFinish:
    """The recorder builds a Run field by field: every field the Run has, no more."""

    async def test_a_finished_run_has_every_slot_of_run_set(self) -> None:
        """A field added to Run and forgotten by the recorder fails here, for a traced and an observed run."""

        async def step(data: object, context: sk.WorkflowContext) -> None:
            return None

        saga = sk.Saga("finish", [sk.step(step)])
        for observers in ([], [lambda event: None]):
            run = await saga.run({}, observers=observers)
            missing = [name for name in sk.Run.__slots__ if not hasattr(run, name)]
            assert missing == []
            fresh = sk.Run.from_events(run.events, definition=saga)
            assert {name: type(getattr(fresh, name)) for name in ("status", "steps_completed", "injected")} == {
                name: type(getattr(run, name)) for name in ("status", "steps_completed", "injected")}
