"""Errors across the wire (no server needed): described on a worker, rebuilt for the caller."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import sagakit as sk
from sagakit.temporal._errors import RemoteStepError, describe_error, rebuild_error
from sagakit.temporal._json import json_problem


def _round_trip(error: BaseException) -> BaseException | None:
    return rebuild_error(json.loads(json.dumps(describe_error(error))))


class TestRebuild:
    @pytest.mark.parametrize("error", [ValueError("bad"), KeyError("k"), TimeoutError("slow"), RuntimeError()])
    def test_builtin_errors_keep_type_and_message(self, error: BaseException) -> None:
        """Built-in exceptions come back as themselves, with the same str()."""
        rebuilt = _round_trip(error)
        assert type(rebuilt) is type(error) and str(rebuilt) == str(error)

    def test_sagakit_errors_keep_their_fields(self) -> None:
        """InjectedFault, StepTimeout and CompensationError are rebuilt from their fields."""
        fault = _round_trip(sk.InjectedFault("pay", "fail_after"))
        assert isinstance(fault, sk.InjectedFault) and fault.mode == "fail_after" and fault.step == "pay"
        timeout = _round_trip(sk.StepTimeout("pay", 2.5))
        assert isinstance(timeout, sk.StepTimeout) and timeout.timeout == 2.5
        original = ValueError("boom")
        error = sk.CompensationError(saga="s", original=original, failures=[sk.CompensationFailure("a", KeyError("x"))],
                                     pending=["b"])
        rebuilt = _round_trip(error)
        assert isinstance(rebuilt, sk.CompensationError)
        assert str(rebuilt) == str(error) and rebuilt.pending == ("b",)
        assert isinstance(rebuilt.failures[0].error, KeyError)

    def test_unknown_types_become_named_remote_errors(self) -> None:
        """A class the caller never imported is a RemoteStepError subclass with the original name."""
        rebuilt = rebuild_error({"type": "PaymentDeclined", "module": "shop.errors", "message": "no", "args": ["no"]})
        assert isinstance(rebuilt, RemoteStepError) and type(rebuilt).__name__ == "PaymentDeclined"
        assert rebuilt.remote_module == "shop.errors" and str(rebuilt) == "no"
        assert "shop" not in sys.modules  # never imported by a remote name

    def test_the_same_error_id_rebuilds_one_object(self) -> None:
        """Mentions of one failure share one exception object, as locally."""
        memo: dict[int, BaseException] = {}
        info = {"id": 3, "type": "ValueError", "module": "builtins", "message": "x", "args": ["x"]}
        assert rebuild_error(dict(info), memo) is rebuild_error(dict(info), memo)


    def test_an_error_whose_str_raises_is_described_with_a_placeholder(self) -> None:
        """A step's exception whose __str__ raises still travels (as locally): the description
        carries a placeholder instead of failing, and comes back as itself, with its args."""
        info = describe_error(Unprintable("card 4111"))
        assert info["message"] == "<Unprintable: message unavailable>"
        rebuilt = _round_trip(Unprintable("card 4111"))
        assert type(rebuilt) is Unprintable and rebuilt.args == ("card 4111",)


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")


class TestJsonCheck:
    def test_plain_json_passes(self) -> None:
        """Nested dicts, lists and tuples of scalars are fine."""
        assert json_problem({"a": [1, 2.5, "x", None, True, ("t",)]}, "data") is None

    @pytest.mark.parametrize(
        ("value", "fragment"),
        [({"a": {1, 2}}, "data['a'] is a set"), ({1: "x"}, "has a key 1 of type int"), ([object()], "data[0] is a object")],
    )
    def test_the_first_problem_is_named(self, value: object, fragment: str) -> None:
        """The path and type of the offending value are named."""
        problem = json_problem(value, "data")
        assert problem is not None and fragment in problem


def test_import_sagakit_does_not_import_temporalio() -> None:
    """The extra stays optional: importing sagakit (and sagakit.temporal) loads no temporalio."""
    code = "import sys, sagakit, sagakit.temporal; print('temporalio' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
