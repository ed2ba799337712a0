"""Comparing two runs: the first divergence and the side-by-side frame."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

import sagakit
from sagakit.compare import COMPARE_COLUMNS, compare_runs


def _step(name: str, key: str | None = None) -> Any:
    async def action(data: Any, context: sagakit.WorkflowContext) -> Any:
        return {**data, key: context.attempt} if key else data

    action.__name__ = name
    return action


@pytest.fixture
def saga() -> sagakit.Saga:
    return sagakit.Saga("order", [
        sagakit.step(_step("reserve", "reservation"), compensate=_step("release")),
        sagakit.step(_step("charge", "charge"), compensate=_step("refund"),
                     retry=sagakit.RetryPolicy(max_retries=2, initial_delay=0.0, jitter=0.0)),
        sagakit.step(_step("ship", "shipped")),
    ])


class TestRunComparison:
    async def test_a_passing_and_a_failing_run_diverge_where_the_failure_was(self, saga: sagakit.Saga) -> None:
        """The first divergence is the first step whose outcome differs, in the saga's order; the
        frame holds both runs' statuses, attempts, durations, redacted outputs and errors."""
        good = await saga.run({"card": "4111 1111 1111 1111"})
        bad = await saga.run({"card": "4111 1111 1111 1111"}, faults={"ship": "fail"})
        comparison = good.compare(bad)
        divergence = comparison.first_divergence
        assert divergence is not None and (divergence.step, divergence.phase, divergence.what) == ("ship", "forward",
                                                                                                    "status")
        assert (divergence.a, divergence.b) == ("succeeded", "failed")
        assert str(divergence) == "first divergence at ship: status succeeded in run a, failed in run b"
        frame = comparison.frame
        assert tuple(frame.columns) == COMPARE_COLUMNS
        assert list(zip(frame["step"], frame["phase"], strict=True)) == [
            ("reserve", "forward"), ("charge", "forward"), ("ship", "forward"),
            ("charge", "compensate"), ("reserve", "compensate")]
        reserve = frame.iloc[0]
        assert reserve["output_a"] == reserve["output_b"] == "{'card': '[REDACTED]', 'reservation': 1}"
        assert not reserve["differs"] and reserve["duration_ms_a"] >= 0
        assert frame.iloc[2]["error_b"] == "InjectedFault: injected fault 'fail' on step 'ship'"
        assert pd.isna(frame.iloc[3]["status_a"]) and frame.iloc[3]["status_b"] == "succeeded"
        assert "4111" not in frame.to_csv() and "4111" not in repr(comparison)

    async def test_retries_count_as_a_divergence(self, saga: sagakit.Saga) -> None:
        """Two runs that both complete but where a step needed more attempts diverge on ``attempts``."""
        once = await saga.run({})
        flaky = await saga.run({}, faults={"charge": sagakit.Fault("fail", probability=0.5, seed=1)})
        comparison = compare_runs(once, flaky)
        divergence = comparison.first_divergence
        assert flaky.status == "completed"
        assert divergence is not None and divergence.step == "charge" and divergence.what in ("attempts", "output")
        assert comparison.frame.loc[1, "attempts_b"] >= comparison.frame.loc[1, "attempts_a"]

    async def test_runs_that_did_the_same_only_differ_in_durations(self, saga: sagakit.Saga) -> None:
        """Two runs on the same path with the same outputs are the same: no divergence."""
        comparison = (await saga.run({"order": 1})).compare(await saga.run({"order": 1}))
        assert comparison.same and comparison.first_divergence is None
        assert not comparison.frame["differs"].any()
        assert "the same path" in repr(comparison)

    async def test_an_output_only_counts_when_nothing_else_differs(self, saga: sagakit.Saga) -> None:
        """Different inputs, same path: the first output that differs is the divergence."""
        comparison = (await saga.run({"order": 1})).compare(await saga.run({"order": 2}))
        divergence = comparison.first_divergence
        assert divergence is not None and (divergence.step, divergence.what) == ("reserve", "output")
        assert "'order': 1" in (divergence.a or "") and "'order': 2" in (divergence.b or "")

    def test_anything_but_runs_is_refused(self) -> None:
        """Comparing something that is not a Run names the argument and what was expected."""
        with pytest.raises(TypeError, match=r"compare_runs b: expected a sagakit\.Run, got str"):
            compare_runs(sagakit.Run.from_events([
                sagakit.Event(sagakit.EventKind.RUN_STARTED, "r", "s", 1.0),
                sagakit.Event(sagakit.EventKind.RUN_FINISHED, "r", "s", 2.0, status="completed", duration_ms=1.0),
            ]), "run")  # type: ignore[arg-type]
