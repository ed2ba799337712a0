"""Reading a step's recorded attempts as the end of the whole step (what recovery relies on)."""

from __future__ import annotations

from typing import Any

import pytest

from sagakit import FallbackPrimitive, RetryPrimitive, SequentialPrimitive, TimeoutPrimitive
from sagakit._attempts import FAILED, OPEN, SUCCEEDED, whole_outcomes
from sagakit.policies import Policy


def a(data: Any, context: Any) -> Any:
    return data


def b(data: Any, context: Any) -> Any:
    return data


class TestWholeOutcomes:
    @pytest.mark.parametrize(
        ("attempts", "expected"),
        [([], {OPEN}), ([True], {OPEN}), ([True, True], {SUCCEEDED}), ([False], {FAILED}), ([True, False], {FAILED})],
    )
    def test_a_sequence_succeeds_only_once_every_part_has(self, attempts: list[bool], expected: set[str]) -> None:
        """a >> b: the end of a's attempt leaves the whole open until b's ends."""
        assert whole_outcomes(SequentialPrimitive([a, b]), attempts) == expected

    def test_a_retry_ends_with_its_successful_try_or_may_still_be_waiting(self) -> None:
        """A failed try may be retried (open) or final (failed); a success after it ends the step."""
        retried = RetryPrimitive(a, max_retries=2)
        assert whole_outcomes(retried, [False, True]) == {SUCCEEDED}
        assert whole_outcomes(retried, [False]) == {FAILED, OPEN}
        assert whole_outcomes(retried, [False, False, False]) == {FAILED}
        assert whole_outcomes(retried, [False, False, False, True]) == frozenset()  # more tries than it makes

    def test_nested_policies_are_followed(self) -> None:
        """A timeout around a retried sequence with a fallback: every recorded attempt is accounted for."""
        fn = TimeoutPrimitive(RetryPrimitive(SequentialPrimitive([a, FallbackPrimitive(a, b)]), max_retries=1), 5)
        assert whole_outcomes(fn, [True, False]) == {FAILED, OPEN}
        assert whole_outcomes(fn, [True, False, True]) == {SUCCEEDED, OPEN}  # caught by b, or a's retry in flight
        assert whole_outcomes(fn, [True, True]) == {SUCCEEDED}

    def test_a_policy_of_unknown_kind_cannot_be_read(self) -> None:
        """A user's own Policy subclass calls its functions in ways the replay cannot know."""

        class Twice(Policy):
            inner = staticmethod(a)

        assert whole_outcomes(Twice(), [True]) is None
