"""The exceptions sagakit raises.

Every sagakit exception derives from :class:`SagaError`, and subclasses the standard
exception whose meaning it shares, so ``except TimeoutError`` and ``except ValueError``
keep working::

    SagaError(Exception)
    ├── SagaDefinitionError(SagaError, ValueError)   a saga or step that cannot be built
    │   └── UnknownStepError                         a fault or lookup names no step of the saga
    ├── FaultError(SagaError, ValueError)            an invalid fault (mode, delay, probability)
    ├── StepTimeout(SagaError, TimeoutError)         a step ran past its timeout
    ├── InjectedFault(SagaError)                     raised by failure injection, never by user code
    ├── CompensationError(SagaError)                 rollback could not undo everything
    ├── SagaStuck(SagaError)                         a step after the pivot ran out of retries
    ├── JournalError(SagaError)                      a journal file cannot be used or written
    ├── PayloadError(SagaError, TypeError)           a step's data cannot be stored in the journal
    ├── ResumeRefused(SagaError, ValueError)         a recorded run cannot be resumed (nothing changed)
    └── RunInterrupted(SagaError)                    a run's process stopped; recover() rolled it back

Type errors in a definition (a non-callable action, a tuple of the wrong size) are raised as
plain :class:`TypeError` with a message naming the position and what was expected.

The original step error is never wrapped: ``execute()`` re-raises the exact exception object
the step raised once rollback is clean. Only when a compensation fails does
:class:`CompensationError` take its place, keeping the original in ``original``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CompensationError",
    "CompensationFailure",
    "FaultError",
    "InjectedFault",
    "JournalError",
    "PayloadError",
    "ResumeRefused",
    "RunInterrupted",
    "SagaDefinitionError",
    "SagaError",
    "SagaStuck",
    "StepTimeout",
    "UnknownStepError",
]


# -- texts: how errors read in messages (pure: the Temporal workflow builds the same texts) --


def error_text(error: BaseException) -> str:
    """``str(error)``, raw, or a placeholder naming its type when its ``__str__`` raises.

    No exception, however broken, loses a run. What sagakit *shows* of an error (frames,
    diagrams, exports) goes through the run's redactor on top: see
    :func:`sagakit.runs.error_message`.
    """
    try:
        return str(error)
    except Exception:
        return f"<{type(error).__name__}: message unavailable>"


def error_line(kind: str, text: str) -> str:
    """``Kind: text``, or the bare type name for an error without a message."""
    return f"{kind}: {text}" if text else kind


def compensation_message(
    saga: str, failures: Sequence[tuple[str, str, str]], original: tuple[str, str] | None, pending: Sequence[str]
) -> str:
    """The message of a :class:`CompensationError`.

    Args:
        saga: the saga's name.
        failures: per failed compensation, its step, its error's type name and its error's text.
        original: the type name and text of the error that started the rollback, if any.
        pending: the steps left uncompensated.
    """
    parts = [f"{step!r} ({error_line(kind, text)})" for step, kind, text in failures]
    message = f"saga {saga!r}: compensation failed for " + ", ".join(parts)
    if original is not None:
        message += f"; rollback was started by {error_line(*original)}"
    if pending:
        message += "; left uncompensated: " + ", ".join(repr(name) for name in pending)
    return message


def stuck_message(saga: str, step: str | None, pivot: str | None, kind: str, text: str) -> str:
    """The message of a :class:`SagaStuck`: the pending step ``step`` last failed with an error
    of type ``kind`` reading ``text``."""
    past = f" after its pivot {pivot!r}" if pivot else ""
    return (f"saga {saga!r} is stuck at step {step!r}{past} ({error_line(kind, text)}); nothing was compensated. "
            "Fix the cause, then resume the run from its journal")


def unmergeable_branch_message(saga: str, step: str, type_name: str) -> str:
    """The ``TypeError`` message for a parallel branch whose output (of type ``type_name``)
    cannot be merged into the stage's output."""
    return (
        f"saga {saga!r}: parallel branch {step!r} returned {type_name}; parallel branches must return a dict "
        "(or None to pass their input through) so that their outputs can be merged"
    )


class SagaError(Exception):
    """Root of every exception sagakit raises."""


class SagaDefinitionError(SagaError, ValueError):
    """A saga, step or policy was defined with a value it cannot accept.

    Raised when the saga is built, before anything runs.
    """


class UnknownStepError(SagaDefinitionError):
    """A name (in a fault plan, a lookup) matches no step of the saga.

    Attributes:
        step: the name that was asked for.
        known: the saga's step names, in order.
    """

    def __init__(self, step: str, known: Sequence[str], *, saga: str | None = None) -> None:
        self.step = step
        self.known = tuple(known)
        self.saga = saga
        where = f"saga {saga!r}" if saga else "the saga"
        super().__init__(
            f"{where} has no step named {step!r}; its steps are: "
            + ", ".join(repr(name) for name in self.known)
        )


class FaultError(SagaError, ValueError):
    """A fault was described with an invalid mode, delay or probability."""


class StepTimeout(SagaError, TimeoutError):
    """A step (or a :class:`~sagakit.TimeoutPrimitive`) ran past its timeout.

    Attributes:
        step: the step's name, when known.
        timeout: the limit that was exceeded, in seconds.
    """

    def __init__(self, step: str | None, timeout: float) -> None:
        self.step = step
        self.timeout = timeout
        name = f"step {step!r}" if step else "operation"
        super().__init__(f"{name} timed out after {timeout:g}s")


class InjectedFault(SagaError):
    """The error failure injection raises in place of (or after) a step or compensation.

    Attributes:
        step: the step the fault was planned for.
        mode: ``fail``, ``fail_after`` or ``fail_compensation``.
    """

    def __init__(self, step: str, mode: str) -> None:
        self.step = step
        self.mode = mode
        super().__init__(f"injected fault {mode!r} on step {step!r}")


@dataclass(frozen=True, slots=True)
class CompensationFailure:
    """One compensation that raised during rollback.

    Attributes:
        step: the step whose compensation failed.
        error: the exception the compensation raised.
    """

    step: str
    error: BaseException


class CompensationError(SagaError):
    """Rollback did not complete: at least one compensation raised.

    Attributes:
        step: the step whose compensation failed first.
        original: the error that started the rollback (``None`` for a cancelled run).
        failures: every compensation that failed, in the order they ran.
        pending: steps left uncompensated because rollback stopped
            (empty when ``continue_on_compensation_failure=True``).
        saga: the saga's name.

    The traceback shows the whole rollback: ``__cause__`` is ``original`` (printed first,
    as the direct cause), ``__context__`` is the failed compensation's error, or an
    :class:`ExceptionGroup` of them when several failed, and a note names each failure.
    """

    def __init__(
        self,
        *,
        saga: str,
        original: BaseException | None,
        failures: Sequence[CompensationFailure],
        pending: Sequence[str],
    ) -> None:
        self.saga = saga
        self.original = original
        self.failures = tuple(failures)
        self.pending = tuple(pending)
        self.step = self.failures[0].step if self.failures else None
        message = compensation_message(
            saga,
            [(failure.step, type(failure.error).__name__, error_text(failure.error)) for failure in self.failures],
            None if original is None else (type(original).__name__, error_text(original)),
            self.pending,
        )
        super().__init__(message)
        # The traceback tells the whole story wherever this is built: the original error as
        # the direct cause, the failures (one, or a group of several, as anyio and trio
        # report concurrent errors) as what happened while handling it, and one note per
        # failure, because a traceback prints only the cause of a chain.
        self.__cause__ = original
        self.__context__ = _failures_as_exception(self.failures)
        self.__suppress_context__ = False
        for failure in self.failures:
            line = error_line(type(failure.error).__name__, error_text(failure.error))
            self.add_note(f"compensation of {failure.step!r} failed: {line}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_compensation_error, (self.saga, self.original, self.failures, self.pending))


def _rebuild_compensation_error(
    saga: str, original: BaseException | None, failures: Sequence[CompensationFailure], pending: Sequence[str]
) -> CompensationError:
    return CompensationError(saga=saga, original=original, failures=failures, pending=pending)


def _failures_as_exception(failures: Sequence[CompensationFailure]) -> BaseException | None:
    """The one failure's error, or an ExceptionGroup of several (BaseExceptionGroup when one
    of them is not an Exception, such as a KeyboardInterrupt)."""
    errors = [failure.error for failure in failures]
    if not errors:
        return None
    if len(errors) == 1:
        return errors[0]
    text = f"{len(errors)} compensations failed"
    if all(isinstance(error, Exception) for error in errors):
        return ExceptionGroup(text, errors)  # type: ignore[type-var]
    return BaseExceptionGroup(text, errors)


class SagaStuck(SagaError):
    """A step after the pivot failed for good: the run can neither complete nor roll back.

    Once the pivot has succeeded the saga must complete, so nothing was compensated. The run
    ends ``stuck``; fix the cause, then resume it from its journal
    (``await journal.resume(run_id, saga)``, or ``python -m sagakit resume``).

    Attributes:
        saga: the saga's name.
        step: the pending step: the one that ran out of its forward policy.
        original: its last error (or the interruption that stopped it).
        pivot: the pivot the run had passed.
    """

    def __init__(self, *, saga: str, step: str | None, original: BaseException, pivot: str | None) -> None:
        self.saga = saga
        self.step = step
        self.original = original
        self.pivot = pivot
        super().__init__(stuck_message(saga, step, pivot, type(original).__name__, error_text(original)))
        self.__cause__ = original

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_saga_stuck, (self.saga, self.step, self.original, self.pivot))


def _rebuild_saga_stuck(saga: str, step: str | None, original: BaseException, pivot: str | None) -> SagaStuck:
    return SagaStuck(saga=saga, step=step, original=original, pivot=pivot)


class JournalError(SagaError):
    """A journal file cannot be used, or could not record a run's progress.

    The message names the file and says what to do. Nothing in the file is changed when
    this is raised while opening it.

    Attributes:
        path: the journal file.
        reason: what went wrong and what to do (the message without the path).
    """

    def __init__(self, path: object, message: str) -> None:
        self.path = str(path)
        self.reason = message
        super().__init__(f"journal {self.path}: {message}")


class PayloadError(SagaError, TypeError):
    """A step's data (or the run's input) cannot be stored by the journal's serializer.

    The run fails before the next step starts and the completed steps are compensated.

    Attributes:
        step: the step whose output could not be stored (``None`` for the run's input).
        value_type: the name of the type that could not be serialised.
        path: the journal file.
    """

    def __init__(self, *, path: str, step: str | None, value_type: str, reason: str) -> None:
        self.step = step
        self.value_type = value_type
        self.path = path
        what = f"step {step!r} returned" if step is not None else "the run's input is"
        super().__init__(
            f"journal {path}: {what} a {value_type} that cannot be stored ({reason}); the journal "
            "needs it to compensate after a crash. Return JSON-compatible data (dict, list, str, int, "
            "float, bool, None), or give SqliteJournal(..., serializer=...) one that handles it"
        )


class ResumeRefused(SagaError, ValueError):
    """A recorded run cannot be resumed: it is unknown, finished, still running elsewhere, or
    the saga given does not match it. Nothing was changed.

    Attributes:
        run_id: the run.
        reason: why (the message without the run id).
    """

    def __init__(self, run_id: str, reason: str) -> None:
        self.run_id = run_id
        self.reason = reason
        super().__init__(f"cannot resume run {run_id}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (ResumeRefused, (self.run_id, self.reason))


class RunInterrupted(SagaError):
    """The process running a saga stopped (crash, kill, kernel restart) before the run finished.

    :func:`sagakit.recover` records this as the error of a run it rolled back.

    Attributes:
        run_id: the interrupted run.
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"run {run_id} was interrupted before it finished; recover() rolled it back")

    def __reduce__(self) -> tuple[Any, ...]:
        return (RunInterrupted, (self.run_id,))
