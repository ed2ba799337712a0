"""Bad definitions fail fast, with a message naming the position or step; nothing runs."""

from __future__ import annotations

import re
from typing import Any

import pytest

import sagakit as sk


async def reserve(data: Any, context: sk.WorkflowContext) -> Any:
    RAN.append("reserve")
    return data


async def release(data: Any, context: sk.WorkflowContext) -> None:
    RAN.append("release")


RAN: list[str] = []


@pytest.fixture(autouse=True)
def nothing_ran() -> Any:
    RAN.clear()
    yield
    assert RAN == [], "a failed validation must run nothing"


class TestSagaDefinition:
    def test_empty_saga(self) -> None:
        """A saga needs at least one step."""
        with pytest.raises(ValueError, match="saga 'order': expected at least one step, got an empty list"):
            sk.Saga("order", [])
        with pytest.raises(ValueError, match="expected at least one step"):
            sk.CompensationPrimitive(primitives=[])

    def test_bare_string_instead_of_a_list(self) -> None:
        """Passing a string where the list of steps goes is named as such."""
        with pytest.raises(TypeError, match="expected a list of steps, got a string 'reserve'"):
            sk.Saga("order", "reserve")  # type: ignore[arg-type]

    def test_bare_string_as_a_stage(self) -> None:
        """A string in the list names its position."""
        with pytest.raises(TypeError, match=r"stage 1: expected a step\(\.\.\.\), parallel.*got a string 'charge'"):
            sk.Saga("order", [reserve, "charge"])  # type: ignore[list-item]

    def test_non_callable_action(self) -> None:
        """A non-callable action names the stage and what was expected."""
        with pytest.raises(TypeError, match=r"stage 0 action: expected a callable \(data, context\) -> data, got int 42"):
            sk.CompensationPrimitive([(42, None)])

    def test_non_callable_compensation(self) -> None:
        """A non-callable compensation says None is the way to say nothing to undo."""
        with pytest.raises(TypeError, match=r"stage 0 compensation \(use None when there is nothing to undo\)"):
            sk.CompensationPrimitive([(reserve, "release")])

    @pytest.mark.parametrize("size", [1, 3])
    def test_tuple_of_the_wrong_size(self, size: int) -> None:
        """Tuples are (action, compensation) pairs."""
        value = (reserve, release, release)[:size]
        with pytest.raises(TypeError, match=f"stage 0: expected an \\(action, compensation\\) tuple of 2 items, got {size}"):
            sk.CompensationPrimitive([value])

    def test_coroutine_object_instead_of_a_function(self) -> None:
        """Calling the function by mistake is caught, and the coroutine is closed (no warning)."""
        with pytest.raises(TypeError, match=r"stage 0 action: expected a function, got a coroutine object"):
            sk.CompensationPrimitive([(reserve({}, sk.WorkflowContext()), release)])

    def test_coroutine_object_as_compensation(self) -> None:
        """The same for a compensation."""
        with pytest.raises(TypeError, match=r"compensation .*got a coroutine object"):
            sk.CompensationPrimitive([(reserve, release({}, sk.WorkflowContext()))])

    def test_duplicate_step_names(self) -> None:
        """Two steps with one name are refused, with both positions and the fix."""
        with pytest.raises(ValueError, match=r"duplicate step name 'reserve' at stages 0 and 2; give one of them step\(\.\.\., name=\.\.\.\)"):
            sk.Saga("order", [reserve, release, reserve])

    def test_duplicate_names_across_parallel_branches(self) -> None:
        """Duplicates inside a parallel stage are found too."""
        with pytest.raises(ValueError, match="duplicate step name 'reserve'"):
            sk.Saga("order", [sk.parallel(reserve, reserve)])

    def test_saga_name(self) -> None:
        """A saga's name is a non-empty string."""
        with pytest.raises(ValueError, match="saga name: expected a non-empty string"):
            sk.Saga("", [reserve])
        with pytest.raises(TypeError, match="saga name: expected a non-empty string, got int 5"):
            sk.Saga(5, [reserve])  # type: ignore[arg-type]

    def test_nested_list_is_not_a_stage(self) -> None:
        """A list inside the list is refused, naming the position."""
        with pytest.raises(TypeError, match="stage 0: expected a step"):
            sk.Saga("order", [[reserve]])  # type: ignore[list-item]

    def test_policy_flags_are_bools(self) -> None:
        """continue_on_compensation_failure must be a bool, not a truthy string."""
        with pytest.raises(TypeError, match="continue_on_compensation_failure: expected True or False"):
            sk.CompensationPrimitive([(reserve, release)], continue_on_compensation_failure="yes")  # type: ignore[arg-type]


class TestStepOptions:
    def test_negative_retry(self) -> None:
        """A negative retry count names the step."""
        with pytest.raises(ValueError, match=r"step 'reserve' retry: expected an int >= 0, got -1"):
            sk.step(reserve, retry=-1)

    def test_non_int_retry(self) -> None:
        """retry=True is not a count."""
        with pytest.raises(TypeError, match=r"step 'reserve' retry: expected an int >= 0 or a RetryPolicy"):
            sk.step(reserve, retry=True)  # type: ignore[arg-type]

    @pytest.mark.parametrize("timeout", [0, -1.5, float("inf"), float("nan")])
    def test_bad_timeout(self, timeout: float) -> None:
        """Timeouts are finite numbers of seconds > 0."""
        with pytest.raises(ValueError, match=r"step 'reserve' timeout: expected a finite number of seconds > 0"):
            sk.step(reserve, timeout=timeout)

    def test_timeout_must_be_a_number(self) -> None:
        """A string timeout is a type error naming the step."""
        with pytest.raises(TypeError, match=r"step 'reserve' timeout: expected a number of seconds > 0, got str"):
            sk.step(reserve, timeout="10")  # type: ignore[arg-type]

    def test_retry_primitive_negative(self) -> None:
        """The seed's RetryPrimitive refuses negative max_retries."""
        with pytest.raises(ValueError, match="max_retries: expected an int >= 0, got -2"):
            sk.RetryPrimitive(reserve, max_retries=-2)

    def test_timeout_primitive_negative(self) -> None:
        """The seed's TimeoutPrimitive refuses a negative timeout."""
        with pytest.raises(ValueError, match="timeout: expected a finite number of seconds > 0, got -1"):
            sk.TimeoutPrimitive(reserve, timeout=-1)

    def test_policy_needs_a_callable(self) -> None:
        """Policies check what they wrap."""
        with pytest.raises(TypeError, match="RetryPrimitive: expected a callable"):
            sk.RetryPrimitive("reserve")  # type: ignore[arg-type]

    def test_step_name_must_be_text(self) -> None:
        """step(name=...) is a non-empty string."""
        with pytest.raises(ValueError, match="step name: expected a non-empty string"):
            sk.step(reserve, name="  ")
        with pytest.raises(TypeError, match="step name: expected a non-empty string, got int 3"):
            sk.step(reserve, name=3)  # type: ignore[arg-type]


class TestNames:
    @pytest.mark.parametrize(
        ("name", "what"),
        [
            ("charge\\", "a backslash (at 6)"),
            ("a\\Nb", "a backslash (at 1)"),
            ("a\\Gb", "a backslash (at 1)"),
            ("two\nlines", "U+000A (at 3)"),
            ("tab\there", "U+0009 (at 3)"),
            ("esc\x1b[31m", "U+001B (at 3)"),
            ("del\x7f", "U+007F (at 3)"),
            ("line\u2028sep", "U+2028 (at 4)"),
        ],
    )
    def test_names_that_break_diagrams_are_refused(self, name: str, what: str) -> None:
        """Backslashes and control characters are refused in step names, naming the character and why."""
        with pytest.raises(sk.SagaDefinitionError, match=re.escape(f"step name {name!r}: ") + ".*" + re.escape(what)):
            sk.step(reserve, name=name)

    def test_a_function_name_is_checked_too(self) -> None:
        """A name taken from the action's __name__ is checked and the message says to pass name=."""

        async def action(data: Any, context: sk.WorkflowContext) -> Any:
            return data

        action.__name__ = "bad\tname"
        with pytest.raises(ValueError, match=r"taken from the action's __name__; pass name=\.\.\."):
            sk.Saga("order", [action])

    def test_saga_and_parallel_names_are_checked(self) -> None:
        """The saga's and a parallel stage's names follow the same rule."""
        with pytest.raises(ValueError, match="saga name 'order\\\\n'"):
            sk.Saga("order\n", [reserve])
        with pytest.raises(ValueError, match="parallel name"):
            sk.parallel(reserve, sk.step(reserve, name="other"), name="fan\\out")

    def test_printable_unicode_is_welcome(self) -> None:
        """Names in any script, with spaces, dashes and emoji, are fine."""
        saga = sk.Saga("bestellung", [sk.step(reserve, name="réserver l'article – 📦")])
        assert saga.step_names == ("réserver l'article – 📦",)


class TestRunHistoryMaxlen:
    @pytest.mark.parametrize(("maxlen", "error"), [(-1, ValueError), (0, ValueError), ("5", TypeError),
                                                   (True, TypeError), (2.0, TypeError)])
    def test_bad_maxlen_is_refused_at_construction_and_assignment(self, maxlen: object, error: type) -> None:
        """history.maxlen = -1 no longer empties the history silently: it is refused, naming maxlen."""
        with pytest.raises(error, match="RunHistory maxlen: expected an int >= 1 or None"):
            sk.RunHistory(maxlen=maxlen)  # type: ignore[arg-type]
        saga = sk.Saga("order", [reserve])
        saga.run_sync({})
        RAN.clear()
        with pytest.raises(error, match="RunHistory maxlen"):
            saga.history.maxlen = maxlen  # type: ignore[assignment]
        assert len(saga.history) == 1 and saga.history.maxlen is None

    def test_a_smaller_maxlen_keeps_the_newest_runs(self) -> None:
        """Lowering maxlen drops the oldest runs at once."""
        saga = sk.Saga("order", [reserve])
        runs = [saga.run_sync({}) for _ in range(3)]
        RAN.clear()
        saga.history.maxlen = 2
        assert [r.run_id for r in saga.history] == [r.run_id for r in runs[1:]]
        assert len(saga.history.runs) == 2


class TestFaultValidation:
    def saga(self) -> sk.Saga:
        return sk.Saga("order", [sk.step(reserve, release), sk.step(reserve, name="charge")])

    def test_fault_for_an_unknown_step_lists_the_steps(self) -> None:
        """saga.faults refuses a name the saga lacks and lists its steps."""
        saga = self.saga()
        with pytest.raises(sk.UnknownStepError, match=r"saga 'order' has no step named 'ship'; its steps are: 'reserve', 'charge'"):
            saga.faults["ship"] = "fail"
        assert dict(saga.faults) == {}

    async def test_per_run_fault_for_an_unknown_step_runs_nothing(self) -> None:
        """run(faults=...) is checked before anything runs."""
        saga = self.saga()
        with pytest.raises(ValueError, match="no step named 'ship'"):
            await saga.run({}, faults={"ship": "fail"})
        assert len(saga.history) == 0

    def test_unknown_fault_mode(self) -> None:
        """An unknown mode lists the valid ones and names the step."""
        saga = self.saga()
        with pytest.raises(sk.FaultError, match=r"unknown fault mode 'explode'; expected one of 'none', 'fail', 'fail_after', 'fail_compensation', 'cancel', 'cancel_compensation' for step 'charge'"):
            saga.faults["charge"] = "explode"

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"delay": -1}, "delay must be a finite number >= 0"),
            ({"delay": "1"}, "delay must be a number of seconds"),
            ({"probability": 1.5}, "probability must be between 0 and 1"),
            ({"probability": None}, "probability must be a number"),
            ({"delay": 10**400}, "delay must be a finite number >= 0 seconds, got an int too large"),
            ({"seed": "abc"}, "seed must be an int or None, got str 'abc'"),
        ],
    )
    def test_bad_fault_fields(self, kwargs: dict[str, Any], message: str) -> None:
        """Delays and probabilities are checked when the fault is made."""
        with pytest.raises(sk.FaultError, match=message):
            sk.Fault("fail", **kwargs)

    def test_fault_plan_must_be_a_mapping(self) -> None:
        """A number as a whole fault plan is named."""
        with pytest.raises(sk.FaultError, match="fault plan: expected a mapping of step names to faults"):
            self.saga().faults = 5  # type: ignore[assignment]

    def test_fault_plan_value_type(self) -> None:
        """A plan value must be a Fault or a mode string."""
        with pytest.raises(sk.FaultError, match="expected a Fault or a mode string for step 'charge', got int 3"):
            self.saga().faults["charge"] = 3  # type: ignore[assignment]

    def test_context_must_be_a_workflow_context(self) -> None:
        """Passing a dict as the context is refused before anything runs."""
        saga = self.saga()
        with pytest.raises(TypeError, match="context: expected a WorkflowContext or None"):
            saga.run_sync({}, {"correlation_id": "x"})  # type: ignore[arg-type]


class TestImmutableParts:
    def test_step_replace_returns_a_checked_copy(self) -> None:
        """Step.replace changes one option, keeps the rest and validates like step()."""
        original = sk.step(reserve, release, retry=2)
        changed = original.replace(timeout=5)
        assert (changed.name, changed.compensate, changed.retry, changed.timeout) == ("reserve", release,
                                                                                      original.retry, 5.0)
        assert original.timeout is None
        with pytest.raises(ValueError, match="step 'reserve' timeout"):
            original.replace(timeout=-1)
        with pytest.raises(TypeError, match=r"Step\.replace: unknown change 'retries'"):
            original.replace(retries=3)

    def test_step_replace_renames_with_a_new_action(self) -> None:
        """A name taken from the action follows a new action; a given name stays."""

        async def charge(data: Any, context: sk.WorkflowContext) -> Any:
            return data

        assert sk.step(reserve).replace(action=charge).name == "charge"
        assert sk.step(reserve, name="hold").replace(action=charge).name == "hold"

    def test_steps_and_parallel_stages_refuse_assignment(self) -> None:
        """Steps and parallel stages are read-only; the message says how to change them."""
        with pytest.raises(AttributeError, match=r"step.replace\(timeout=\.\.\.\)"):
            sk.step(reserve).timeout = 3  # type: ignore[misc]
        stage = sk.parallel(reserve, sk.step(reserve, name="other"))
        with pytest.raises(AttributeError, match=r"parallel stages are immutable"):
            stage.steps = ()  # type: ignore[misc]

    def test_parallel_branches_must_be_steps(self) -> None:
        """Parallel(...) built directly checks its branches."""
        with pytest.raises(TypeError, match="parallel branch 0: expected a Step, got str 'x'"):
            sk.Parallel(["x"])  # type: ignore[list-item]


class TestFaultPlanArguments:
    def test_steps_saga_and_watchers_are_checked(self) -> None:
        """FaultPlan's own arguments name themselves when wrong."""
        with pytest.raises(TypeError, match="FaultPlan steps: expected step names"):
            sk.FaultPlan(steps="reserve")
        with pytest.raises(TypeError, match="FaultPlan steps: expected step names"):
            sk.FaultPlan(steps=[1, 2])  # type: ignore[list-item]
        with pytest.raises(TypeError, match="FaultPlan saga: expected the saga's name"):
            sk.FaultPlan(saga=5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"FaultPlan uncompensated: expected step names \(an iterable of str\), got 'b'"):
            sk.FaultPlan(uncompensated="b")
        with pytest.raises(sk.FaultError, match="step 'b' has no compensation"):
            sk.FaultPlan({"b": "fail_compensation"}, uncompensated=["b"])
        with pytest.raises(TypeError, match=r"FaultPlan\.watch callback: expected a callable"):
            sk.FaultPlan().watch("print")  # type: ignore[arg-type]
