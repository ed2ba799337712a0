"""How the recorded attempts of a step (or of a compensation) add up to the end of the whole.

The journal records one row per *attempt*: every call of the innermost function of a policy
(see :mod:`sagakit.policies`). A ``SequentialPrimitive`` of two functions records two
attempts, a retried function one per try, a fallback the primary's and the fallback's. So the
end of an attempt is not the end of the step: after a crash, :func:`sagakit.recover` must tell
"the step completed" from "its first part completed and the crash came before the rest".

:func:`whole_outcomes` replays a step function's policy tree over the outcomes of its
recorded attempts and returns every way the whole may have ended that is consistent with them:
``"succeeded"``, ``"failed"``, or ``"open"`` (it was still running: its next attempt had not
ended). The replay explores both branches where the records cannot say which was taken (was a
failure retried, or was it not retryable? was it caught by the fallback?) and keeps only the
interpretations that account for every recorded attempt.
"""

from __future__ import annotations

from collections.abc import Sequence

from sagakit.policies import (
    AnyStepFunction,
    FallbackPrimitive,
    Policy,
    RetryPrimitive,
    SequentialPrimitive,
    TimeoutPrimitive,
)

__all__ = ["FAILED", "OPEN", "SUCCEEDED", "whole_outcomes"]

SUCCEEDED = "succeeded"
FAILED = "failed"
OPEN = "open"

# (position after the attempts consumed, how the call ended)
_End = tuple[int, str]


class _Opaque(Exception):
    """A policy whose way of calling its functions is not known here (a user's own subclass)."""


def whole_outcomes(fn: AnyStepFunction, attempts: Sequence[bool]) -> frozenset[str] | None:
    """How a call of ``fn`` whose attempts ended as ``attempts`` (``True``: succeeded) may have ended.

    Returns:
        The possible ends of the whole call (a subset of ``{"succeeded", "failed", "open"}``),
        empty when the attempts cannot come from ``fn`` (its definition changed since), or
        ``None`` when ``fn`` holds a policy of a type this replay does not know.
    """
    memo: dict[tuple[int, int], frozenset[_End]] = {}
    try:
        ends = _ends(fn, attempts, 0, memo)
    except _Opaque:
        return None
    return frozenset(outcome for position, outcome in ends if position == len(attempts))


def _ends(fn: AnyStepFunction, attempts: Sequence[bool], position: int,
          memo: dict[tuple[int, int], frozenset[_End]]) -> frozenset[_End]:
    key = (id(fn), position)
    found = memo.get(key)
    if found is not None:
        return found
    ends: set[_End] = set()
    if not isinstance(fn, Policy):  # one attempt
        if position == len(attempts):
            ends.add((position, OPEN))
        else:
            ends.add((position + 1, SUCCEEDED if attempts[position] else FAILED))
    elif type(fn) is TimeoutPrimitive:
        # A timeout that expires during an attempt records that attempt as failed; one that
        # expires between attempts (a retry's backoff) records nothing and reads as "open".
        ends.update(_ends(fn.inner, attempts, position, memo))
    elif type(fn) is SequentialPrimitive:
        frontier = {position}
        for part in fn.parts:
            following: set[int] = set()
            for start in frontier:
                for end, outcome in _ends(part, attempts, start, memo):
                    if outcome == SUCCEEDED:
                        following.add(end)
                    else:
                        ends.add((end, outcome))
            frontier = following
        ends.update((end, SUCCEEDED) for end in frontier)
    elif type(fn) is RetryPrimitive:
        frontier = {position}
        for attempt in range(1, fn.policy.attempts + 1):
            following = set()
            for start in frontier:
                for end, outcome in _ends(fn.inner, attempts, start, memo):
                    ends.add((end, outcome))  # a failure may also end it: not retryable, or the last try
                    if outcome == FAILED and attempt < fn.policy.attempts:
                        following.add(end)
            frontier = following
            if not frontier:  # every try consumes a recorded attempt, so this ends
                break
    elif type(fn) is FallbackPrimitive:
        for end, outcome in _ends(fn.inner, attempts, position, memo):
            ends.add((end, outcome))  # a failure may also end it: not one the fallback catches
            if outcome == FAILED:
                ends.update(_ends(fn.fallback, attempts, end, memo))
    else:
        raise _Opaque(type(fn).__name__)
    result = memo[key] = frozenset(ends)
    return result
