"""Redactor: masking payloads, finding secrets, scrubbing text; and where runs use it."""

from __future__ import annotations

import re
import re._constants as _sre
import re._parser
from dataclasses import dataclass
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from telemetry_support import noop_step

import sagakit
from sagakit import redaction
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

    def test_a_value_masked_as_a_known_secret_is_not_masked_again(self) -> None:
        """``token=<secret>`` with the secret known: one mask, not a mask cut at its "]" and masked again."""
        error = ValueError("card declined (token=tok_9f8e7d)")
        assert Redactor().message(error, {"tok_9f8e7d"}) == f"card declined (token={MASK})"
        assert Redactor().scrub(f"token={MASK}, password={MASK}") == f"token={MASK}, password={MASK}"

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


class Credentials(NamedTuple):
    user: str
    password: str


class SlottedToken:
    __slots__ = ("token", "user")

    def __init__(self, token: str) -> None:
        self.user = "ada"
        self.token = token

    def __repr__(self) -> str:
        return f"SlottedToken({self.user}, {self.token})"


class TestShown:
    """What the Lab's inspector and a run comparison show of a payload."""

    def test_a_shown_payload_is_masked_and_cut_short(self) -> None:
        shown = Redactor().shown({"password": "hunter2", "note": "x" * 1000, "items": list(range(100))})
        assert "hunter2" not in shown and MASK in shown
        assert len(shown) < 400 and "..." in shown

    def test_a_payload_that_cannot_be_redacted_is_not_shown(self) -> None:
        class Broken(dict[str, str]):
            def items(self) -> Any:
                raise RuntimeError("password=hunter2")

        assert Redactor().shown(Broken(password="hunter2")) == "(not shown: could not be redacted)"


class TestLeaksClosed:
    """Shapes and spellings that once slipped past the redactor."""

    @pytest.mark.parametrize("neighbour", [".", "_", "a", "Z", "é", "/", "(", "\u00a0", "#"])
    def test_card_numbers_touched_by_any_non_digit_are_masked(self, neighbour: str) -> None:
        """A Luhn-valid number is masked whatever non-digit character touches it on either side."""
        for card in ("4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111"):
            text = Redactor().scrub(f"card{neighbour}{card}{neighbour}")
            assert text == f"card{neighbour}{MASK}{neighbour}"

    def test_a_card_among_other_digit_groups_is_masked(self) -> None:
        """In ``1 4111 1111 1111 1111 2`` the card is the run of whole groups that passes the check."""
        assert Redactor().scrub("ref 1 4111 1111 1111 1111 2") == f"ref 1 {MASK} 2"
        assert Redactor().scrub("order 12345678901234567890123") == "order 12345678901234567890123"

    @pytest.mark.parametrize("identifier", [
        "01a252b89241e77a7b8553167774397f",  # a run id whose digits 8553167774397 pass the check
        "01A252B8-9241-4E77-A7B8-553167774397",
        "a" * 20 + "4111111111111111" + "b" * 4,
        "f" * 12 + "4111111111111111" + "e" * 36,
    ])
    def test_digits_inside_an_identifier_are_no_card(self, identifier: str) -> None:
        """A run id, a UUID or a hex digest is kept whole: only a card standing apart is masked."""
        text = f"run {identifier} was interrupted; card 4111111111111111"
        assert Redactor().scrub(text) == f"run {identifier} was interrupted; card {MASK}"
        # One character more and it is no identifier: its Luhn-valid digit run is masked.
        assert MASK in Redactor().scrub(f"x{identifier}")

    @pytest.mark.parametrize("text", ["api.key=sk_live_x1", "db.password: hunter2", "X.Auth.Token=abc123"])
    def test_dotted_keys_are_masked_in_text(self, text: str) -> None:
        """Keys written with dots count like ones with underscores or dashes."""
        assert Redactor().scrub(text).endswith(MASK)

    def test_named_tuples_and_slotted_objects_are_masked_and_hunted(self) -> None:
        """Their sensitive fields are masked in payloads and their values scrubbed from error text."""
        redactor = Redactor()
        payload = {"login": Credentials("ada", "hunter2"), "session": SlottedToken("tok-9f8e7d")}
        assert redactor.redact(payload) == {
            "login": {"user": "ada", "password": MASK},
            "session": f"SlottedToken(ada, {MASK})",
        }
        assert redactor.secrets(payload) == {"hunter2", "tok-9f8e7d"}
        error = ValueError("refused", SlottedToken("tok-9f8e7d"))
        assert "tok-9f8e7d" not in (redactor.message(error) or "")

    def test_secrets_nested_deeper_than_any_limit_are_found(self) -> None:
        """Secret values are collected at any depth (no recursion limit), so messages are scrubbed of them."""
        payload: Any = {"password": "deep-s3cret"}
        for _ in range(3000):
            payload = [payload]
        redactor = Redactor()
        assert redactor.secrets(payload) == {"deep-s3cret"}
        assert "deep-s3cret" not in repr(redactor.redact(payload))


_CARDS = ("4111111111111111", "5500005555555559", "378282246310005", "4111 1111 1111 1111", "6011-0009-9013-9424")
_KEYS = st.sampled_from(["password", "api.key", "X-Api-Key", "user_token", "cardNumber", "name", "id", "note", 7])
# Letters found in no key name and not in the mask: a value found in the output is a leak, not a coincidence.
_TEXT = st.text(alphabet="QWXYZ!%&~ ", max_size=20)
_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _TEXT, st.binary(max_size=8))
_PAYLOADS = st.recursive(
    _LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(_KEYS, inner, max_size=4),
        st.builds(Credentials, _TEXT, _TEXT),
        st.builds(Login, _TEXT, _TEXT),
    ),
    max_leaves=30,
)


def _sensitive_values(value: Any, redactor: Redactor, under: bool = False) -> list[str]:
    """Every str value lying under a sensitive key or field (the reference the redactor must match)."""
    if isinstance(value, str):
        return [value] if under and len(value) >= redactor.min_secret_length else []
    if isinstance(value, Credentials | Login):
        value = {"user": value.user, "password": value.password}
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _sensitive_values(v, redactor, under or redactor.is_sensitive(k))]
    if isinstance(value, list | tuple):
        return [s for item in value for s in _sensitive_values(item, redactor, under)]
    return []


class TestFuzz:
    """Random text and payloads: the redactor never raises, never lets a card or a keyed value through."""

    @settings(max_examples=300, deadline=None)
    @given(before=st.text(max_size=30), after=st.text(max_size=30), card=st.sampled_from(_CARDS),
           left=st.characters(blacklist_categories=("Nd",)), right=st.characters(blacklist_categories=("Nd",)))
    def test_a_card_in_any_text_is_masked(self, before: str, after: str, card: str, left: str, right: str) -> None:
        """A card between any non-digit neighbours, in any surrounding text, is masked; scrubbing is idempotent."""
        text = Redactor().scrub(f"{before}{left}{card}{right}{after}")
        assert card not in text and card.replace(" ", "").replace("-", "") not in text.replace(" ", "")
        assert Redactor().scrub(text) == text

    @settings(max_examples=300, deadline=None)
    @given(text=st.text(alphabet=st.sampled_from("0123456789 -.=_:aZ\"'"), max_size=400))
    def test_scrub_takes_any_text(self, text: str) -> None:
        """Digit soups, separators and quotes: scrubbing returns text with no digit run added or reordered."""
        scrubbed = Redactor().scrub(text)
        assert isinstance(scrubbed, str)
        assert scrubbed.replace(MASK, "") == "".join(c for c in scrubbed.replace(MASK, ""))  # plain text back

    @settings(max_examples=300, deadline=None)
    @given(payload=_PAYLOADS)
    def test_every_keyed_value_is_masked_and_found(self, payload: Any) -> None:
        """``redact`` never raises and shows no value under a sensitive key; ``secrets`` finds every one."""
        redactor = Redactor()
        expected = _sensitive_values(payload, redactor)
        shown = repr(redactor.redact(payload))
        found = redactor.secrets(payload)
        for secret in expected:
            assert secret in found
        scrubbed = redactor.scrub(shown, found)
        assert all(secret not in scrubbed for secret in expected)

    def test_payload_strings_remembered_as_clean_hold_nothing_to_mask(self) -> None:
        """Redacting the same payload again masks it alike; only short clean texts are remembered, boundedly."""
        redactor = Redactor()
        payload = {"note": "password=hunter2", "card": "x", "lines": [f"sku-{i}" for i in range(6000)],
                   "ref": "paid 4111 1111 1111 1111", "long": "q" * 300}
        first = redactor.redact(payload)
        assert redactor.redact(payload) == first
        assert first["note"] == f"password={MASK}" and first["ref"] == f"paid {MASK}"
        remembered = redactor._clean
        assert 0 < len(remembered) <= redaction._CLEAN_CACHE_LIMIT
        assert all(redactor.scrub(text) == text and len(text) <= redaction._CLEAN_TEXT_LIMIT for text in remembered)
        assert "password=hunter2" not in remembered and "q" * 300 not in remembered

    def test_long_adversarial_inputs_finish(self) -> None:
        """Inputs built to make regular expressions backtrack are scrubbed in one pass."""
        redactor = Redactor()
        for text in ("1 " * 20_000, "1 4111" * 5_000, "password=" * 5_000, "4" * 100_000):
            assert isinstance(redactor.scrub(text), str)


# Inputs of 200 kB that made the key=value pattern try every start inside a long run of key
# characters (quadratic), or every split of a run around a sensitive word (cubic).
_ADVERSARIAL = {
    "dashed digits": ("1-" * 100_000, "1-" * 100_000),  # no run of 13 to 19 ones passes the Luhn check
    "chained pairs": ("a=" * 100_000, "a=" * 100_000),
    "dotted keys": ("key." * 50_000, "key." * 50_000),
    "dotted sensitive keys": ("token." * 33_334, "token." * 33_334),
    "sensitive key far from its separator": ("token." * 33_334 + "=hunter2", "token." * 33_334 + "=" + MASK),
    "sensitive pairs": ("token= " * 28_572, f"token= {MASK} " * 14_286),
    "open quotes": ('token="' * 28_572, f"token={MASK}" * 14_286),
}


def _unbounded_repeats(tree: Any, in_lookaround: bool = False, nested: bool = False) -> Any:
    """``(opcode, in_lookaround, nested)`` for each unbounded quantifier of a parsed pattern."""
    for op, arg in tree:
        if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT):
            unbounded = arg[1] == _sre.MAXREPEAT
            if unbounded:
                yield op, in_lookaround, nested
            yield from _unbounded_repeats(arg[2], in_lookaround, nested or unbounded)
        elif op is _sre.SUBPATTERN:
            yield from _unbounded_repeats(arg[3], in_lookaround, nested)
        elif op is _sre.BRANCH:
            for branch in arg[1]:
                yield from _unbounded_repeats(branch, in_lookaround, nested)
        elif op in (_sre.ASSERT, _sre.ASSERT_NOT):
            yield from _unbounded_repeats(arg[1], True, nested)
        elif op is _sre.ATOMIC_GROUP:
            yield from _unbounded_repeats(arg, in_lookaround, nested)


def _scrub_patterns() -> dict[str, re.Pattern[str]]:
    with_extra_keys = Redactor(extra_keys=["iban", "x.y-z"])
    return {
        "key=value, default keys": Redactor()._pair_pattern,  # type: ignore[dict-item]
        "key=value, extra keys": with_extra_keys._pair_pattern,  # type: ignore[dict-item]
        "card numbers": redaction._CARD_LIKE,
    }


class TestLinearTime:
    """Scrubbing takes time linear in the text, whatever the text.

    Not timed here (timing is for ``benchmarks/bench_redaction.py``, which scrubs n, 2n, 4n and
    8n kB of each adversarial input): the patterns are shown to have the shape that makes a
    backtracking engine linear, and 200 kB adversarial messages are scrubbed right.
    """

    @pytest.mark.parametrize("name", list(_scrub_patterns()))
    def test_no_quantifier_hands_characters_back(self, name: str) -> None:
        """No unbounded quantifier inside another, and every one outside a lookaround is possessive.

        A possessive quantifier never gives back what it took, so no later part of the pattern
        can make it try again with fewer characters: from a given start, each character is
        read a bounded number of times. Lookarounds are atomic in Python's engine.
        """
        tree = re._parser.parse(_scrub_patterns()[name].pattern)
        repeats = list(_unbounded_repeats(tree))
        assert repeats, "the pattern has quantifiers to check"
        assert not [r for r in repeats if r[2]], "an unbounded quantifier inside another"
        assert all(op is _sre.POSSESSIVE_REPEAT for op, in_lookaround, _ in repeats if not in_lookaround)

    @pytest.mark.parametrize("name", list(_scrub_patterns()))
    def test_a_match_is_tried_only_where_a_run_starts(self, name: str) -> None:
        """Each pattern opens with a look-behind refusing the characters its first quantifier takes.

        So a key is tried from the start of a run of key characters only, never from each of its
        characters, and the scans from all starts add up to the length of the text. (For card
        numbers a start after a separator is possible, but only once the run before it held
        fewer than 13 digits: such a scan is short.)
        """
        tree = re._parser.parse(_scrub_patterns()[name].pattern)
        while tree[0][0] is _sre.SUBPATTERN:  # the captured key, and its (?i:) scope
            tree = tree[0][1][3]
        op, arg = tree[0]
        assert op is _sre.ASSERT_NOT and arg[0] == -1, "the pattern opens with a negative look-behind"
        refused, rest = arg[1], tree[1:]
        consumer = next(item for item in rest if item[0] not in (_sre.ASSERT, _sre.ASSERT_NOT))
        taken = consumer[1][2] if consumer[0] is _sre.POSSESSIVE_REPEAT else [consumer]
        assert list(refused) == list(taken)

    @pytest.mark.parametrize("name", list(_ADVERSARIAL))
    def test_200_kb_adversarial_messages_are_scrubbed(self, name: str) -> None:
        """Each adversarial message comes back scrubbed right (with the old pattern this never ended)."""
        text, expected = _ADVERSARIAL[name]
        assert len(text) >= 199_000
        assert Redactor().scrub(text) == expected
