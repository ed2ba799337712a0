"""The run recorder: the rules of rollback every backend shares, and event delivery."""

from __future__ import annotations

import pytest

import sagakit as sk
from sagakit import _recorder as recorder


class _Unprintable(Exception):
    """An exception whose ``__str__`` raises."""

    def __str__(self) -> str:
        raise RuntimeError("no text")


class TestRollbackRules:
    """Pure functions of their arguments: the local engine, recover() and the workflow agree through them."""

    def test_undo_order_puts_failed_steps_first_then_completed_newest_first(self) -> None:
        """compensate_on_failure entries lead; completed steps follow in reverse order of completion."""
        assert recorder.undo_order(["failed"], ["a", "b", "c"]) == ["failed", "c", "b", "a"]
        assert recorder.undo_order((), []) == []

    def test_pending_lists_the_later_entries_that_have_a_compensation(self) -> None:
        """A rollback stopping at a position leaves the later compensated steps pending, skipping the rest."""
        undo = [("c", True), ("b", False), ("a", True)]
        assert recorder.pending_after(undo, 0, lambda entry: entry[1]) == [("a", True)]
        assert recorder.pending_after(undo, 2, lambda entry: entry[1]) == []

    def test_outcome_prefers_a_compensation_failure_then_the_original_error(self) -> None:
        """compensation_failed beats compensated, which beats cancelled (with the interruption as error)."""
        failure, original, interrupt = object(), object(), object()
        assert recorder.rollback_outcome(failure, original, interrupt) == ("compensation_failed", failure)
        assert recorder.rollback_outcome(None, original, interrupt) == ("compensated", original)
        assert recorder.rollback_outcome(None, None, interrupt) == ("cancelled", interrupt)
        assert recorder.rollback_outcome(None, None, None) == ("cancelled", None)


class TestTexts:
    """Error texts never raise: a broken exception reads as a placeholder."""

    def test_an_exception_whose_str_raises_reads_as_a_placeholder(self) -> None:
        """error_text names the type instead of failing."""
        assert recorder.error_text(ValueError("plain")) == "plain"
        assert recorder.error_text(_Unprintable()) == "<_Unprintable: message unavailable>"

    def test_compensation_error_message_names_failures_original_and_pending(self) -> None:
        """The one message builder, used by CompensationError and by the Temporal workflow."""
        error = recorder.compensation_error(
            "order", _Unprintable(), [sk.CompensationFailure("charge", KeyError("card"))], ["reserve"]
        )
        assert str(error) == (
            "saga 'order': compensation failed for 'charge' (KeyError: 'card'); rollback was started by "
            "_Unprintable: <_Unprintable: message unavailable>; left uncompensated: 'reserve'"
        )
        assert error.pending == ("reserve",) and error.step == "charge"


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
