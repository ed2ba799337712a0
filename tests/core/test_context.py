"""WorkflowContext: what the caller passes, and what each step learns about its run."""

from __future__ import annotations

from typing import Any

import pytest

import sagakit as sk

SEEN: list[dict[str, Any]] = []


def facts(context: sk.WorkflowContext) -> dict[str, Any]:
    return {name: getattr(context, name) for name in
            ("run_id", "saga", "correlation_id", "step", "phase", "attempt", "idempotency_key")}


async def remember(data: Any, context: sk.WorkflowContext) -> Any:
    SEEN.append(facts(context))
    context.metadata.setdefault("trail", []).append(context.step)
    return data


async def undo(data: Any, context: sk.WorkflowContext) -> None:
    SEEN.append(facts(context))


@pytest.fixture(autouse=True)
def fresh() -> None:
    SEEN.clear()


class TestCallerContext:
    def test_fields_outside_a_run(self) -> None:
        """A new context has the caller's fields and no run facts."""
        context = sk.WorkflowContext(correlation_id="signup-1", metadata={"tenant": "a"})
        assert (context.correlation_id, context.metadata, context.run_id, context.step) == (
            "signup-1", {"tenant": "a"}, None, None
        )
        assert context.idempotency_key is None
        assert repr(context) == "WorkflowContext(correlation_id='signup-1')"

    def test_correlation_id_is_text(self) -> None:
        """A number as correlation id is a TypeError saying how to pass it."""
        with pytest.raises(TypeError, match=r"correlation_id: expected a str or None, got int 42; pass str\(42\)"):
            sk.WorkflowContext(correlation_id=42)  # type: ignore[arg-type]
        context = sk.WorkflowContext()
        with pytest.raises(TypeError, match="correlation_id: expected a str or None"):
            context.correlation_id = 7  # type: ignore[assignment]

    def test_metadata_is_a_dict(self) -> None:
        """Metadata must be a dict, at construction and on assignment."""
        with pytest.raises(TypeError, match="metadata: expected a dict or None, got list"):
            sk.WorkflowContext(metadata=[("a", 1)])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="metadata: expected a dict or None, got str"):
            sk.WorkflowContext().metadata = "x"  # type: ignore[assignment]


class TestDuringARun:
    async def test_each_step_learns_its_run_step_phase_and_attempt(self) -> None:
        """Steps and compensations see the run id, saga, step, phase and attempt; metadata is shared."""
        saga = sk.Saga("order", [sk.step(remember, undo, name="a"), sk.step(remember, name="b")])
        caller = sk.WorkflowContext(correlation_id="o-1", metadata={})
        run = await saga.run({}, caller, faults={"b": "fail_after"})
        forward_a, forward_b, compensate_a = SEEN
        assert {c["run_id"] for c in SEEN} == {run.run_id}
        assert {c["correlation_id"] for c in SEEN} == {"o-1"}
        assert {c["saga"] for c in SEEN} == {"order"}
        assert [(c["step"], c["phase"], c["attempt"]) for c in SEEN] == [
            ("a", "forward", 1), ("b", "forward", 1), ("a", "compensate", 1)
        ]
        assert caller.metadata == {"trail": ["a", "b"]}
        assert compensate_a["idempotency_key"] == f"{run.run_id}:a:compensate"
        assert forward_b["idempotency_key"] == f"{run.run_id}:b"
        assert forward_a["idempotency_key"] == f"{run.run_id}:a"

    async def test_idempotency_key_is_stable_across_retries(self) -> None:
        """Every attempt of one step in one run gets the same key; another run gets another."""
        keys: list[str | None] = []

        async def flaky(data: Any, context: sk.WorkflowContext) -> Any:
            keys.append(context.idempotency_key)
            if context.attempt < 3:
                raise OSError("blip")
            return data

        saga = sk.Saga("s", [sk.step(flaky, retry=sk.RetryPolicy(max_retries=2, initial_delay=0, jitter=0))])
        first = await saga.run({})
        second = await saga.run({})
        assert keys[:3] == [f"{first.run_id}:flaky"] * 3
        assert keys[3:] == [f"{second.run_id}:flaky"] * 3

    async def test_a_context_can_be_reused_for_several_runs(self) -> None:
        """Passing one caller context to two runs keeps each run's facts apart."""
        saga = sk.Saga("s", [remember])
        caller = sk.WorkflowContext(correlation_id="c")
        one, two = await saga.run({}, caller), await saga.run({}, caller)
        assert [c["run_id"] for c in SEEN] == [one.run_id, two.run_id]
        assert caller.run_id is None
