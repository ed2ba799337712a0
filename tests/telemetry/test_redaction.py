"""Redactor: masking payloads, finding secrets, scrubbing text; and where runs use it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from telemetry_support import noop_step

import sagakit
from sagakit.redaction import DEFAULT_SENSITIVE_KEYS, MASK, Redactor, as_redactor, default_redactor
from sagakit.runs import error_message


@dataclass
class Login:
    user: str
    password: str


class TestMasking:
    """Values under sensitive keys are masked, however deep and however the key is spelt."""

    def test_default_keys(self) -> None:
        """The documented default list."""
        assert DEFAULT_SENSITIVE_KEYS == (
            "password", "passwd", "secret", "token", "api_key", "authorization", "card", "cvv", "ssn",
        )

    @pytest.mark.parametrize(
        "key",
        ["password", "Password", "PASSWORD", "user_password", "passwd", "client_secret", "access_token",
         "api_key", "apiKey", "X-API-KEY", "Authorization", "card", "card_number", "CreditCard", "cvv", "ssn"],
    )
    def test_sensitive_spellings(self, key: str) -> None:
        """Case and separators do not matter; a key containing a sensitive word counts."""
        assert Redactor().is_sensitive(key)

    @pytest.mark.parametrize("key", ["email", "name", "user_id", "amount", "address"])
    def test_ordinary_keys_pass(self, key: str) -> None:
        """Keys naming no secret keep their values."""
        assert not Redactor().is_sensitive(key)

    def test_nested_structures_are_masked_without_touching_the_input(self) -> None:
        """Dicts in lists in dicts, tuples and dataclasses; the original is unchanged."""
        data = {
            "email": "ada@example.com",
            "password": "hunter2",
            "payment": {"card": {"number": "4111111111111111", "cvv": "123"}, "amount": 12},
            "attempts": [{"token": "t-1"}, ("x", {"Secret": "s"})],
            "login": Login("ada", "hunter2"),
        }
        assert Redactor().redact(data) == {
            "email": "ada@example.com",
            "password": MASK,
            "payment": {"card": MASK, "amount": 12},
            "attempts": [{"token": MASK}, ("x", {"Secret": MASK})],
            "login": {"user": "ada", "password": MASK},
        }
        assert data["password"] == "hunter2"

    def test_extra_keys_and_custom_mask(self) -> None:
        """extra_keys adds to the defaults; mask replaces the marker."""
        redactor = Redactor(extra_keys=["email"], mask="***")
        assert redactor.redact({"email": "a@b.c", "password": "p", "name": "Ada"}) == {
            "email": "***", "password": "***", "name": "Ada",
        }

    def test_unknown_objects_become_scrubbed_reprs(self) -> None:
        """An object's repr may show its fields: it is scrubbed of key=value pairs."""

        class Account:
            def __repr__(self) -> str:
                return "Account(user='ada', password='hunter2')"

        assert Redactor().redact(Account()) == f"Account(user='ada', password={MASK})"

    def test_cycles_do_not_loop(self) -> None:
        """A self-referencing payload is cut, not followed forever."""
        data: dict[str, Any] = {"name": "x"}
        data["self"] = data
        assert Redactor().redact(data) == {"name": "x", "self": "..."}


class TestSecretsAndText:
    """Secret values are found in payloads and scrubbed from free text."""

    def test_secrets_are_the_values_under_sensitive_keys(self) -> None:
        """Every scalar under a sensitive key, nested; short ones left out."""
        data = {"password": "hunter2", "card": {"number": "4111 1111 1111 1111", "cvv": 123}, "pin": "7", "x": "y"}
        assert Redactor().secrets(data) == {"hunter2", "4111 1111 1111 1111", "123"}

    def test_known_secrets_are_scrubbed_from_messages(self) -> None:
        """An error message quoting a secret value loses it."""
        error = ValueError("card 4111 1111 1111 1111 declined for ada (password hunter2)")
        assert Redactor().message(error, {"hunter2", "4111 1111 1111 1111"}) == (
            f"card {MASK} declined for ada (password {MASK})"
        )

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("login failed: password=hunter2", f"login failed: password={MASK}"),
            ("{'api_key': 'abc123', 'user': 'ada'}", f"{{'api_key': {MASK}, 'user': 'ada'}}"),
            ('{"token": "t-1"}', f'{{"token": {MASK}}}'),
            ("Authorization: Bearer abc.def.ghi", f"Authorization: {MASK}"),
            ("charge 4242-4242-4242-4242 refused", f"charge {MASK} refused"),
            ("order 1234567890123 placed", "order 1234567890123 placed"),
        ],
    )
    def test_free_text_patterns(self, text: str, expected: str) -> None:
        """key=value pairs, auth headers and Luhn-valid card numbers, even when never seen."""
        assert Redactor().scrub(text) == expected

    def test_a_broken_str_is_described_by_type(self) -> None:
        """An exception whose __str__ raises still gets a message."""

        class Broken(Exception):
            def __str__(self) -> str:
                raise RuntimeError("no")

        assert Redactor().message(Broken()) == "<Broken: message unavailable>"


class TestOptions:
    """Redactor construction and the saga's redact= option."""

    def test_bad_keys_are_refused(self) -> None:
        """Keys must be non-empty strings; the message names the argument."""
        with pytest.raises(TypeError, match="Redactor keys"):
            Redactor([""])
        with pytest.raises(TypeError, match="Redactor extra_keys"):
            Redactor(extra_keys=[3])  # type: ignore[list-item]

    def test_saga_redact_adds_keys(self) -> None:
        """redact=["email"] extends the defaults; a Redactor is used as is; None is the default."""
        saga = sagakit.Saga("s", [noop_step("a")], redact=["email"])
        assert saga.redactor.is_sensitive("email") and saga.redactor.is_sensitive("password")
        own = Redactor(["pin"])
        assert sagakit.Saga("s", [noop_step("a")], redact=own).redactor is own
        assert sagakit.Saga("s", [noop_step("a")]).redactor is default_redactor()
        assert sagakit.CompensationPrimitive([noop_step("a")], redact="email").redactor.is_sensitive("email")

    def test_saga_redact_rejects_other_things(self) -> None:
        """A number is neither keys nor a Redactor: the error names the saga."""
        with pytest.raises(TypeError, match="saga 'checkout' redact"):
            sagakit.Saga("checkout", [noop_step("a")], redact=42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="saga 'checkout' redact"):
            as_redactor([None], saga="checkout")  # type: ignore[list-item]


async def leaky(data: Any, context: sagakit.WorkflowContext) -> Any:
    raise ValueError(f"card {data['card']} declined for {data['email']}")


class TestRuns:
    """error_message(), the frames and the run's repr go through the saga's redactor."""

    async def test_frames_and_repr_hide_secrets_seen_in_payloads(self) -> None:
        """The card from the input is masked in both frames and in repr(run); the email is kept."""
        saga = sagakit.Saga("signup", [noop_step("a"), sagakit.step(leaky, name="charge")])
        run = await saga.run({"email": "ada@example.com", "card": "4000 0000 0000 0002x"})
        expected = f"card {MASK} declined for ada@example.com"
        assert error_message(run.error, run=run) == expected
        assert saga.history.runs["error_message"].tolist() == [expected]
        assert run.steps["error_message"].dropna().tolist() == [expected]
        assert "4000 0000 0000 0002x" not in repr(run)

    async def test_extra_keys_apply_to_error_text(self) -> None:
        """With redact=["email"] the email is scrubbed from messages too."""
        saga = sagakit.Saga("signup", [sagakit.step(leaky, name="charge")], redact=["email"])
        run = await saga.run({"email": "ada@example.com", "card": "x-1234"})
        assert error_message(run.error, run=run) == f"card {MASK} declined for {MASK}"

    def test_error_message_without_a_run_still_scrubs_patterns(self) -> None:
        """No run, no known secrets: key=value pairs and card numbers are still masked."""
        assert error_message(ValueError("password=hunter2")) == f"password={MASK}"
        assert error_message(None) is None
