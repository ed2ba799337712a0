"""The exception tree: CompensationError tells the whole rollback in its traceback."""

from __future__ import annotations

import pickle
import traceback
from typing import Any

import pytest

import sagakit as sk


async def reserve(data: Any, context: sk.WorkflowContext) -> Any:
    return data


async def release(data: Any, context: sk.WorkflowContext) -> None:
    raise RuntimeError("inventory service down")


async def charge(data: Any, context: sk.WorkflowContext) -> Any:
    return data


async def refund(data: Any, context: sk.WorkflowContext) -> None:
    raise ConnectionError("payments unreachable")


async def ship(data: Any, context: sk.WorkflowContext) -> Any:
    raise ValueError("no courier")


def order(keep_going: bool) -> sk.Saga:
    return sk.Saga(
        "order",
        [sk.step(reserve, release), sk.step(charge, refund), ship],
        continue_on_compensation_failure=keep_going,
    )


class TestCompensationError:
    async def test_one_failure(self) -> None:
        """One failed compensation: the original is the cause, the failure the context, and a note names it."""
        with pytest.raises(sk.CompensationError) as raised:
            await order(keep_going=False).execute({})
        error = raised.value
        assert isinstance(error.__cause__, ValueError) and error.__cause__ is error.original
        assert isinstance(error.__context__, ConnectionError)
        assert error.__context__ is error.failures[0].error
        assert error.pending == ("reserve",)
        assert error.__notes__ == ["compensation of 'charge' failed: ConnectionError: payments unreachable"]

    async def test_several_failures_form_an_exception_group(self) -> None:
        """With continue_on_compensation_failure=True the failures are an ExceptionGroup, in order."""
        with pytest.raises(sk.CompensationError) as raised:
            await order(keep_going=True).execute({})
        error = raised.value
        group = error.__context__
        assert isinstance(group, ExceptionGroup)
        assert [type(e) for e in group.exceptions] == [ConnectionError, RuntimeError]
        assert len(error.__notes__) == 2

    async def test_the_printed_traceback_shows_the_original_and_every_failure(self) -> None:
        """The printed traceback has the original error, the CompensationError and a line per failure."""
        with pytest.raises(sk.CompensationError) as raised:
            await order(keep_going=True).execute({})
        text = "".join(traceback.format_exception(raised.value))
        assert "ValueError: no courier" in text
        assert "The above exception was the direct cause of the following exception" in text
        assert "compensation of 'charge' failed: ConnectionError: payments unreachable" in text
        assert "compensation of 'reserve' failed: RuntimeError: inventory service down" in text
        assert text.index("ValueError: no courier") < text.index("CompensationError")

    def test_a_cancelled_rollback_has_no_cause(self) -> None:
        """Without an original error (a cancelled run) the cause is None and the failure shows as context."""
        failure = sk.CompensationFailure("charge", OSError("gone"))
        error = sk.CompensationError(saga="s", original=None, failures=[failure], pending=[])
        assert error.__cause__ is None and error.__context__ is failure.error
        assert not error.__suppress_context__

    def test_base_exceptions_among_failures(self) -> None:
        """A KeyboardInterrupt among the failures makes the group a BaseExceptionGroup."""
        failures = [sk.CompensationFailure("a", KeyboardInterrupt()), sk.CompensationFailure("b", OSError("x"))]
        error = sk.CompensationError(saga="s", original=ValueError("v"), failures=failures, pending=[])
        assert type(error.__context__) is BaseExceptionGroup
        assert error.__notes__[0] == "compensation of 'a' failed: KeyboardInterrupt"

    def test_an_unprintable_error_is_still_reported(self) -> None:
        """An error whose __str__ raises does not break building the CompensationError."""

        class Unprintable(Exception):
            def __str__(self) -> str:
                raise RuntimeError("no")

        error = sk.CompensationError(
            saga="s", original=Unprintable(), failures=[sk.CompensationFailure("a", Unprintable())], pending=[]
        )
        assert "Unprintable: <Unprintable: message unavailable>" in str(error)

    def test_pickles_with_its_fields(self) -> None:
        """A CompensationError survives pickling (runs pickle) with its fields and chain."""
        failure = sk.CompensationFailure("charge", OSError("gone"))
        error = sk.CompensationError(saga="s", original=ValueError("v"), failures=[failure], pending=["a"])
        copy = pickle.loads(pickle.dumps(error))
        assert (copy.saga, copy.pending, copy.step, str(copy)) == ("s", ("a",), "charge", str(error))
        assert isinstance(copy.__cause__, ValueError) and isinstance(copy.__context__, OSError)
