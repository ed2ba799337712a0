"""The one driver of what a saga run does once a step has failed: sans-IO, shared by every backend.

The local engine, :func:`sagakit.recover` (which runs on the engine) and the Temporal workflow
all roll back through this module, so that a saga rolls back the same way wherever it runs. It
is pure, in the manner of h11: it never calls a step, never reads a clock and never waits. It
says what to do next and is told what happened; each backend keeps only how it runs one action,
how it records a skip, and how it waits. Its one asynchronous helper, :func:`parallel_stage`,
waits only through the ``wait`` function it is given (``asyncio.wait`` locally,
``workflow.wait`` in Temporal's sandbox, which imports this module).

The rules, all here:

- **What a rollback undoes, in order** (:func:`undo_order`): the failed steps that ask to be
  compensated (``compensate_on_failure``) first, then the completed steps, newest first.
- **Skip or compensate, stop or go on** (:class:`Rollback`): a step without a compensation is
  skipped (and recorded as such); a compensation that fails stops the rollback unless the saga
  continues on compensation failure, and the steps left behind are ``pending``; a compensation
  interrupted by ``KeyboardInterrupt``, ``SystemExit`` or its own cancellation counts as failed,
  but the rollback goes on regardless and the interruption propagates once the run is recorded.
- **How the run ends** (:func:`rollback_outcome`): a failed compensation makes the run
  ``compensation_failed``; else a rollback started by an error is ``compensated`` (even if a
  cancellation came while it ran); else (a cancellation) ``cancelled``.
- **Forward recovery** (:func:`forward_outcome`): once the pivot has succeeded, the stages after
  it run to their end, each step retried under its forward policy, shielded from cancellation
  (which propagates after). A step that runs out of its policy, or is interrupted, leaves the
  run ``stuck``: nothing is compensated, the pending step and its last error are kept. A
  failure before the pivot, or at it, rolls back.
- **Which step is blamed** (:func:`blamed_step`): the step in flight when the run stopped, else
  the step the run was about to start.
- **A parallel stage** (:func:`parallel_stage`, :func:`merge_outputs`): branches run
  concurrently; when one fails the others are cancelled and the stage waits until every branch
  has stopped, through any cancellation of its own (which then propagates after the rollback);
  the first failure is the stage's; the outputs merge in branch order, and a branch output that
  is not a mapping fails the stage with a ``TypeError``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, Generic, Literal, Protocol, TypeVar

__all__ = [
    "COMPENSATE",
    "SKIP",
    "Rollback",
    "StageFailed",
    "blamed_step",
    "forward_outcome",
    "merge_outputs",
    "parallel_stage",
    "rollback_outcome",
    "undo_order",
    "wait_through_cancellation",
]

E = TypeVar("E")  # an entry of a rollback: whatever its backend needs to compensate one step
F = TypeVar("F")  # how its backend describes one failed compensation
_S = TypeVar("_S")

#: What a rollback does with an entry: run its compensation, or record that it has none.
SKIP: Literal["skip"] = "skip"
COMPENSATE: Literal["compensate"] = "compensate"
Action = Literal["skip", "compensate"]
#: A run's status once its rollback has ended.
Outcome = Literal["compensated", "compensation_failed", "cancelled"]
#: A run's status once its forward recovery has ended.
ForwardOutcome = Literal["completed", "stuck"]
_INTERRUPTS = (KeyboardInterrupt, SystemExit, asyncio.CancelledError)


def undo_order(undo_on_failure: Sequence[E], completed: Sequence[E]) -> list[E]:
    """What a rollback compensates, in order: the failed steps that ask to be compensated
    (``compensate_on_failure``) first, then the completed steps, newest first."""
    undo = list(undo_on_failure)
    undo.extend(reversed(completed))
    return undo


def blamed_step(in_flight: str | None, next_step: str | None) -> str | None:
    """The step a stopped run names as failed: the one in flight, else the one it was about to
    start (a cancellation or crash between two stages), else none."""
    return in_flight if in_flight is not None else next_step


class Rollback(Generic[E, F]):
    """Backward recovery of one run: which compensation comes next, and when to stop.

    Iterate over it to get ``(action, entry)`` pairs in undo order: :data:`SKIP` for an entry
    without a compensation (record it as skipped), :data:`COMPENSATE` for one to run. Tell it
    about each compensation that did not succeed with :meth:`failed` or :meth:`interrupted`;
    success needs no word. The iteration ends when the undo list is done or the rollback
    stopped. Then :attr:`failures`, :attr:`pending` and :attr:`interrupt` say what happened.

    The local engine's fast path walks :attr:`undo` itself (in order, skipping the entries
    without a compensation: this class's rule, inlined) and tells :meth:`failed` the position;
    a property test holds it to the iteration here.

    Args:
        undo: the entries to undo, in order (see :func:`undo_order`).
        compensates: whether an entry has a compensation to run.
        stop: whether a failed compensation stops the rollback (the saga's
            ``continue_on_compensation_failure`` is ``False``).
        failures: failures from an earlier part of this rollback (a rollback resumed after a
            crash carries on with them).
        stopped: the rollback had already stopped at a failure (a resumed record): nothing
            more runs, and every entry with a compensation is :attr:`pending`.

    Attributes:
        undo: the entries, in undo order.
        failures: each compensation that failed or was interrupted, in the order they ran.
        pending: the entries with a compensation that a stopped rollback left behind.
        interrupt: the first interruption of a compensation, to propagate once the run is
            recorded (``None`` if there was none).
        stopped: whether a failure stopped the rollback before its end.
    """

    __slots__ = ("_compensates", "_stop", "failures", "interrupt", "pending", "position", "stopped", "undo")

    def __init__(self, undo: Sequence[E], compensates: Callable[[E], bool], *, stop: bool,
                 failures: Sequence[F] = (), stopped: bool = False) -> None:
        self.undo = undo
        self._compensates = compensates
        self._stop = stop
        self.failures: list[F] = list(failures)
        self.pending: list[E] = [entry for entry in undo if compensates(entry)] if stopped else []
        self.interrupt: Any = None
        self.position = -1
        self.stopped = stopped

    def __iter__(self) -> Iterator[tuple[Action, E]]:
        compensates = self._compensates
        for position, entry in enumerate(self.undo):
            if self.stopped:
                return
            self.position = position
            yield (COMPENSATE if compensates(entry) else SKIP), entry

    def failed(self, failure: F, position: int | None = None) -> bool:
        """The compensation just handed out (or the one at ``position`` of :attr:`undo`) raised
        an error: record it, and stop the rollback (listing what is left as :attr:`pending`)
        unless the saga goes on after failures. Returns whether the rollback stopped."""
        self.failures.append(failure)
        if self._stop:
            if position is None:
                position = self.position
            self.stopped = True
            compensates = self._compensates
            self.pending = [entry for entry in self.undo[position + 1 :] if compensates(entry)]
        return self.stopped

    def interrupted(self, failure: F, interrupt: Any) -> None:
        """The compensation just handed out was interrupted (``KeyboardInterrupt``,
        ``SystemExit``, its own cancellation): it counts as failed, the rollback goes on, and
        the first such ``interrupt`` propagates once the run is recorded."""
        self.failures.append(failure)
        if self.interrupt is None:
            self.interrupt = interrupt


def rollback_outcome(compensation_failure: _S | None, original: _S | None, interrupt: _S | None) -> tuple[Outcome, _S | None]:
    """A rolled-back run's status and error, from what the rollback produced.

    A failed compensation wins (``compensation_failed``, the compensation error); else a rollback
    started by an error is ``compensated`` with that error, even if a cancellation came while it
    ran; else the run was ``cancelled``, with the interruption as its error.
    """
    if compensation_failure is not None:
        return "compensation_failed", compensation_failure
    if original is not None:
        return "compensated", original
    return "cancelled", interrupt


def forward_outcome(failure: _S | None, stuck: Callable[[Any], Any], interrupted: Callable[[Any], bool] | None = None,
                    ) -> tuple[ForwardOutcome, Any, _S | None, _S | None]:
    """A run's status, error, original error and interruption once its forward recovery ended.

    No failure: ``completed``. A failure (the pending step's last error, after its forward
    policy ran out): ``stuck``, with ``stuck(failure)`` as the run's error and the failure as
    its original error; an interruption among them (``KeyboardInterrupt``, ``SystemExit``, a
    cancellation the step raised itself; ``interrupted`` tells them apart where errors are
    descriptions) still leaves the run stuck, and also propagates once it is recorded.
    """
    if failure is None:
        return "completed", None, None, None
    is_interrupt = isinstance(failure, _INTERRUPTS) if interrupted is None else interrupted(failure)
    return "stuck", stuck(failure), failure, failure if is_interrupt else None


# -- parallel stages ------------------------------------------------------------------------


class _Wait(Protocol):
    """``asyncio.wait``, or Temporal's deterministic ``workflow.wait``."""

    def __call__(self, fs: Sequence[asyncio.Future[Any]], *, return_when: str = ...) -> Awaitable[Any]: ...


class _BranchFailed(Exception):
    """What a failed branch's task ends with; the failure itself is in the stage's list."""


class StageFailed(Exception):
    """A branch of a parallel stage failed; the stage has wound down.

    Attributes:
        position: the failed branch's position in the stage (the first to fail).
        error: what it raised.
        cancelled: whether a cancellation of the stage arrived while its branches wound down
            (it propagates once the run is rolled back).
    """

    def __init__(self, position: int, error: BaseException, cancelled: bool) -> None:
        super().__init__(position, error, cancelled)
        self.position = position
        self.error = error
        self.cancelled = cancelled


async def wait_through_cancellation(tasks: Sequence[asyncio.Future[Any]], wait: _Wait) -> bool:
    """Wait until every task is done, even if the waiting task is cancelled meanwhile.

    Returns whether a cancellation arrived while waiting (the caller propagates it later).
    """
    cancelled = False
    pending = [task for task in tasks if not task.done()]
    while pending:
        try:
            await wait(pending)
        except asyncio.CancelledError:
            cancelled = True
        pending = [task for task in pending if not task.done()]
    for task in tasks:
        if not task.cancelled():
            task.exception()  # mark retrieved: the error is reported through the run
    return cancelled


async def parallel_stage(branches: Sequence[Awaitable[Any]], wait: _Wait) -> list[Any]:
    """Run a parallel stage's branches concurrently and return their outputs, in branch order.

    If a branch raises anything but a cancellation, the other branches are cancelled and
    the stage waits until all of them have stopped (through cancellations of its own), then
    raises :class:`StageFailed` for the first failure. If the stage itself is cancelled, the
    branches are cancelled and waited for, and the cancellation propagates. A branch that
    cancelled itself surfaces as a ``CancelledError`` once the others are done.
    """
    failures: list[tuple[int, BaseException]] = []

    async def branch(position: int, work: Awaitable[Any]) -> Any:
        try:
            return await work
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            failures.append((position, exc))
            # Not the error itself: a KeyboardInterrupt or SystemExit raised out of a task stops the
            # event loop. The stage raises it where the run can roll back first.
            raise _BranchFailed() from None

    tasks = [asyncio.ensure_future(branch(position, work)) for position, work in enumerate(branches)]
    try:
        await wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        await wait_through_cancellation(tasks, wait)
        raise
    if failures:
        for task in tasks:
            task.cancel()
        cancelled = await wait_through_cancellation(tasks, wait)
        position, error = failures[0]
        raise StageFailed(position, error, cancelled)
    return [task.result() for task in tasks]


def merge_outputs(outputs: Sequence[Any]) -> tuple[dict[str, Any], int | None]:
    """A parallel stage's output: its branches' outputs (mappings) merged in branch order.

    Returns the merged dict and ``None``; or, when a branch's output is not a mapping, what was
    merged so far and that branch's position: its ``TypeError`` fails the stage (message:
    :func:`sagakit.errors.unmergeable_branch_message`).
    """
    merged: dict[str, Any] = {}
    for position, output in enumerate(outputs):
        if not isinstance(output, Mapping):
            return merged, position
        merged.update(output)
    return merged, None
