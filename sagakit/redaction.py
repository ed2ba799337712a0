"""Redaction: the one choke point that keeps secrets out of every sink.

Every place where run data or error text leaves the engine (log events, span attributes and
events, run frames, diagrams, exported files) goes through a :class:`Redactor`. It does three
things:

* **masks payload values under sensitive keys** (``password``, ``token``, ``card`` ...),
  in nested mappings, sequences and dataclasses, matched case-insensitively and ignoring
  separators, so ``Password``, ``user_password``, ``apiKey`` and ``X-Api-Key`` all count;
* **collects the secret values** a run carried (:meth:`Redactor.secrets`), so that an error
  message such as ``ValueError(f"card {card} declined")`` can be scrubbed of them;
* **scrubs free text** (:meth:`Redactor.scrub`): the known secret values, ``key=value`` and
  ``"key": value`` pairs under sensitive keys, ``Authorization: Bearer ...`` headers, and
  digit runs that pass the Luhn check (card numbers).

A saga's redactor is ``saga.redactor`` (``Saga(..., redact=["email"])`` adds keys;
``redact=Redactor(...)`` replaces it). This module imports only the standard library.
"""

from __future__ import annotations

import dataclasses
import re
import reprlib
from collections.abc import Iterable, Iterator, Mapping, Sequence, Set
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sagakit.events import Event

__all__ = ["DEFAULT_SENSITIVE_KEYS", "MASK", "Redactor", "RedactLike", "as_redactor", "default_redactor"]

#: Keys whose values are masked by default. A key matches when, lower-cased and stripped of
#: everything but letters and digits, it contains one of these (stripped the same way).
DEFAULT_SENSITIVE_KEYS: tuple[str, ...] = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "authorization",
    "card",
    "cvv",
    "ssn",
)

#: What a masked value is replaced with.
MASK = "[REDACTED]"

_NOT_ALNUM = re.compile(r"[^a-z0-9]")
# A run of ASCII digits (single spaces or dashes between them) that no other digit touches:
# letters, dots and underscores around a card number do not hide it.
_CARD_LIKE = re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){12,}+(?![0-9])")
# A run id, a UUID or a hex digest is an identifier: the digits inside it are never a card.
_HEX_ID = (r"(?<![0-9A-Za-z])(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
           r"|[0-9a-fA-F]{64}|[0-9a-fA-F]{40}|[0-9a-fA-F]{32})(?![0-9A-Za-z])")
_CARD_OR_ID = re.compile(f"(?P<id>{_HEX_ID})|{_CARD_LIKE.pattern}")
_SEPARATOR = re.compile(r"[ -]")
#: How deep payloads are walked for display; what lies deeper is shown as ``...``.
_DISPLAY_DEPTH = 32
# A shown payload's repr: long strings, big containers and deep nesting are cut short.
_SHOWN = reprlib.Repr()
_SHOWN.maxstring = 200
_SHOWN.maxother = 200
_SHOWN.maxdict = 12
_SHOWN.maxlist = 12
_SHOWN.maxlevel = 4
_KEY_CACHE_LIMIT = 4096
# Payload strings found clean are remembered (up to this many, this long): see _scrub_text.
_CLEAN_CACHE_LIMIT = 4096
_CLEAN_TEXT_LIMIT = 256
# Exact types whose values are shown as they are (bool is no subclass concern here: exact).
_PLAIN_TYPES = frozenset({type(None), bool, int, float})
# Exact types of values that are a secret only under a sensitive key (they hold nothing).
_LEAF_TYPES = frozenset({type(None), bool, int, float, str, bytes})
# Scalars whose text can be a secret; bools and None never are.
_SCALARS = (str, int, float, bytes)
# Exception arguments that cannot carry a secret under a key.
_PLAIN_ARGS = frozenset({str, int, float, bool, type(None)})


def _normalise(key: str) -> str:
    return _NOT_ALNUM.sub("", key.lower())


def _luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


class Redactor:
    """Masks sensitive values in payloads and scrubs secrets from text.

    A redactor is immutable and cheap to share; build variants with :meth:`with_keys`. It
    remembers which keys it found sensitive and which short payload strings it found nothing
    to mask in (both bounded), so that payloads repeating the same keys and texts cost less.

    Args:
        keys: the sensitive key words (default :data:`DEFAULT_SENSITIVE_KEYS`). A mapping key
            is sensitive when its normalised form (lower case, letters and digits only)
            contains a normalised key word: ``card`` covers ``card_number`` and
            ``CreditCard``; ``api_key`` covers ``apiKey`` and ``X-API-KEY``.
        extra_keys: key words added to ``keys``.
        mask: the text that replaces a masked value.
        min_secret_length: secret values shorter than this are not scrubbed from free text
            (masking ``"1"`` everywhere would destroy messages); values under sensitive keys
            are masked in payloads whatever their length.
        cards: also mask digit runs of 13 to 19 digits (spaces and dashes allowed) that pass
            the Luhn check in free text, even when the run never carried them. Digits inside
            an identifier (32, 40 or 64 hex characters, or a UUID) are not taken for a card.

    Raises:
        TypeError: a key word is not a non-empty string.
    """

    __slots__ = ("_clean", "_key_cache", "_pair_pattern", "_words", "cards", "keys", "mask", "min_secret_length")

    def __init__(
        self,
        keys: Iterable[str] = DEFAULT_SENSITIVE_KEYS,
        *,
        extra_keys: Iterable[str] = (),
        mask: str = MASK,
        min_secret_length: int = 3,
        cards: bool = True,
    ) -> None:
        words: list[str] = []
        for key in (*_as_key_list(keys, "keys"), *_as_key_list(extra_keys, "extra_keys")):
            if key not in words:
                words.append(key)
        if not isinstance(mask, str):
            raise TypeError(f"Redactor mask: expected a string, got {type(mask).__name__} {mask!r}")
        if isinstance(min_secret_length, bool) or not isinstance(min_secret_length, int) or min_secret_length < 1:
            raise TypeError(f"Redactor min_secret_length: expected an int >= 1, got {min_secret_length!r}")
        self.keys: tuple[str, ...] = tuple(words)
        self.mask = mask
        self.min_secret_length = min_secret_length
        self.cards = bool(cards)
        self._words = tuple(dict.fromkeys(_normalise(word) for word in words if _normalise(word)))
        self._key_cache: dict[str, bool] = {}
        self._clean: set[str] = set()
        self._pair_pattern = _pair_pattern(self._words, mask)

    def with_keys(self, *keys: str) -> Redactor:
        """A redactor like this one that also treats ``keys`` as sensitive."""
        return Redactor(
            self.keys,
            extra_keys=keys,
            mask=self.mask,
            min_secret_length=self.min_secret_length,
            cards=self.cards,
        )

    # -- keys ---------------------------------------------------------------------------

    def is_sensitive(self, key: object) -> bool:
        """Whether values under mapping key ``key`` are masked."""
        text = key if isinstance(key, str) else str(key)
        cached = self._key_cache.get(text)
        if cached is None:
            normalised = _normalise(text)
            cached = any(word in normalised for word in self._words)
            if len(self._key_cache) < _KEY_CACHE_LIMIT:
                self._key_cache[text] = cached
        return cached

    # -- payloads -----------------------------------------------------------------------

    def redact(self, value: Any) -> Any:
        """A copy of ``value`` with every value under a sensitive key replaced by the mask.

        Mappings become dicts, lists and tuples keep their type, sets become lists,
        dataclass instances become dicts of their fields; strings are scrubbed of
        ``key=value`` pairs and card numbers; other objects are replaced by their scrubbed
        ``repr`` (an object's repr may show its fields). The input is never modified.
        """
        return self._redact(value, 0, set())

    def shown(self, value: Any) -> str:
        """``value`` as sagakit shows it to a person (the Lab's inspector, a run comparison):
        redacted, then a ``repr`` bounded in length and depth. A value that cannot be redacted
        is not shown at all."""
        try:
            return _SHOWN.repr(self.redact(value))
        except Exception:
            return "(not shown: could not be redacted)"

    def _redact(self, value: Any, depth: int, active: set[int]) -> Any:
        kind = type(value)
        if kind is str:
            return self._scrub_text(value)
        if kind in _PLAIN_TYPES:
            return value
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            return self.scrub(value)
        if depth > _DISPLAY_DEPTH or id(value) in active:
            return "..."  # masks whatever lies deeper, secrets included
        active.add(id(value))
        try:
            if kind is dict:
                return self._redact_dict(value, depth, active)
            if isinstance(value, Mapping):
                return {
                    key: self.mask if self.is_sensitive(key) else self._redact(item, depth + 1, active)
                    for key, item in value.items()
                }
            if _is_record(value):
                return {
                    name: self.mask if self.is_sensitive(name) else self._redact(item, depth + 1, active)
                    for name, item in _fields(value)
                }
            if isinstance(value, list | tuple):
                items = [self._redact(item, depth + 1, active) for item in value]
                return items if isinstance(value, list) else tuple(items)
            if isinstance(value, Set):
                return [self._redact(item, depth + 1, active) for item in value]
            if isinstance(value, bytes | bytearray):
                return self.scrub(repr(bytes(value)))
            # An object's repr may show its attributes (slots or __dict__): scrub their secrets.
            return self.scrub(_safe_repr(value), self.secrets(value))
        finally:
            active.discard(id(value))

    def _redact_dict(self, value: dict[Any, Any], depth: int, active: set[int]) -> dict[Any, Any]:
        # The common case, written out: plain and already-clean leaves cost no call.
        known, clean, mask = self._key_cache, self._clean, self.mask
        shown: dict[Any, Any] = {}
        for key, item in value.items():
            sensitive = known.get(key) if type(key) is str else None
            if sensitive is None:
                sensitive = self.is_sensitive(key)
            if sensitive:
                shown[key] = mask
                continue
            kind = type(item)
            if kind in _PLAIN_TYPES or (kind is str and item in clean):
                shown[key] = item
            else:
                shown[key] = self._redact(item, depth + 1, active)
        return shown

    def secrets(self, *values: Any) -> frozenset[str]:
        """The text of every value found under a sensitive key in ``values`` (nested).

        Values shorter than ``min_secret_length`` are left out; see :meth:`scrub`.
        """
        found: set[str] = set()
        seen: set[int] = set()
        for value in values:
            self._collect(value, False, found, seen, 0)
        return frozenset(found)

    def event_secrets(self, events: Iterable[Event]) -> frozenset[str]:
        """The secret values carried by the payloads (``data``) of a run's events."""
        return self.payload_secrets(event.data for event in events)

    def payload_secrets(self, payloads: Iterable[Any]) -> frozenset[str]:
        """The secret values carried by ``payloads`` (a run's event ``data``, in order)."""
        distinct: list[Any] = []
        last: Any = None
        for data in payloads:
            if data is not None and data is not last:
                distinct.append(data)
                last = data
        return self.secrets(*distinct) if distinct else frozenset()

    def _collect(self, value: Any, sensitive: bool, found: set[str], seen: set[int], depth: int) -> None:
        # An explicit stack, not recursion: a secret nested at any depth is found.
        stack: list[tuple[Any, bool]] = [(value, sensitive)]
        minimum = self.min_secret_length
        while stack:
            value, sensitive = stack.pop()
            if value is None or isinstance(value, bool):
                continue
            if isinstance(value, _SCALARS):
                if sensitive:
                    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
                    if len(text) >= minimum:
                        found.add(text)
                continue
            if id(value) in seen:
                continue
            seen.add(id(value))
            kind = type(value)
            if kind is dict:  # the common case, written out: leaves under plain keys are skipped
                known = self._key_cache
                for key, item in value.items():
                    if sensitive:
                        stack.append((item, True))
                        continue
                    flag = known.get(key) if type(key) is str else None
                    if flag is None:
                        flag = key is not None and self.is_sensitive(key)
                    if flag or type(item) not in _LEAF_TYPES:
                        stack.append((item, flag))
                continue
            if kind is list or kind is tuple:
                stack.extend((item, sensitive) for item in value if sensitive or type(item) not in _LEAF_TYPES)
                continue
            for key, item in _children(value):
                stack.append((item, sensitive or (key is not None and self.is_sensitive(key))))

    # -- text ---------------------------------------------------------------------------

    def _scrub_text(self, text: str) -> str:
        """:meth:`scrub` of a payload's string, remembering short texts found clean.

        Payloads repeat the same strings run after run (names, states, currencies); only texts
        in which nothing was found to mask are remembered, so the memory holds no secret the
        redactor knows how to recognise.
        """
        clean = self._clean
        if text in clean:
            return text
        scrubbed = self.scrub(text)
        if scrubbed == text and len(text) <= _CLEAN_TEXT_LIMIT and len(clean) < _CLEAN_CACHE_LIMIT:
            clean.add(text)
        return scrubbed

    def scrub(self, text: str, secrets: Iterable[str] = ()) -> str:
        """``text`` with the known ``secrets``, sensitive ``key=value`` pairs and card numbers masked."""
        for secret in sorted(secrets, key=len, reverse=True):
            if len(secret) >= self.min_secret_length and secret in text:
                text = text.replace(secret, self.mask)
        if self._pair_pattern is not None and self._pair_pattern.search(text):
            text = self._pair_pattern.sub(self._mask_pair, text)
        if self.cards and _CARD_LIKE.search(text):
            text = _CARD_OR_ID.sub(self._mask_card, text)
        return text

    def message(self, error: BaseException | None, secrets: Iterable[str] = ()) -> str | None:
        """The scrubbed text of ``error`` (``None`` for no error).

        An exception whose ``__str__`` raises is described by its type name instead.
        """
        if error is None:
            return None
        try:
            text = str(error)
        except Exception:
            return f"<{type(error).__name__}: message unavailable>"
        args = getattr(error, "args", ())
        if isinstance(args, tuple) and any(type(arg) not in _PLAIN_ARGS for arg in args):
            # An argument such as a credentials object shows its fields in the message.
            secrets = (*secrets, *self.secrets(*args))
        return self.scrub(text, secrets)

    def _mask_pair(self, match: re.Match[str]) -> str:
        return f"{match.group(1)}{self.mask}"

    def _mask_card(self, match: re.Match[str]) -> str:
        text = match.group(0)
        if match.group("id") is not None:
            return text
        digits = _SEPARATOR.sub("", text)
        if 13 <= len(digits) <= 19 and _luhn_valid(digits):
            return self.mask
        if not _SEPARATOR.search(text):
            return text  # one long number: no card boundary to find inside it
        # Groups such as "1 4111 1111 1111 1111": a card may be any run of whole groups.
        groups = _SEPARATOR.split(text)
        separators = [*_SEPARATOR.findall(text), ""]
        pieces: list[str] = []
        start = 0
        while start < len(groups):
            end = _card_end(groups, start)
            if end is None:
                pieces.append(groups[start] + separators[start])
                start += 1
            else:
                pieces.append(self.mask + separators[end])
                start = end + 1
        return "".join(pieces)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Redactor):
            return NotImplemented
        return (self.keys, self.mask, self.min_secret_length, self.cards) == (
            other.keys,
            other.mask,
            other.min_secret_length,
            other.cards,
        )

    def __hash__(self) -> int:
        return hash((self.keys, self.mask, self.min_secret_length, self.cards))

    def __repr__(self) -> str:
        return f"Redactor(keys={self.keys!r})"


def _as_key_list(keys: Iterable[str], what: str) -> list[str]:
    if isinstance(keys, str):
        keys = (keys,)
    try:
        items = list(keys)
    except TypeError:
        raise TypeError(f"Redactor {what}: expected strings, got {type(keys).__name__} {keys!r}") from None
    for key in items:
        if not isinstance(key, str) or not _normalise(key):
            raise TypeError(f"Redactor {what}: expected non-empty key strings, got {key!r}")
    return items


def _card_end(groups: Sequence[str], start: int) -> int | None:
    """The last group of the longest run of whole digit groups from ``start`` that is a card number."""
    found = None
    length = 0
    # The Luhn sum of the digits so far, and the same with every digit's doubling swapped:
    # appending a digit shifts the others by one place, so each sum becomes the other's.
    plain = swapped = 0
    for end in range(start, len(groups)):
        length += len(groups[end])
        if length > 19:
            break
        for char in groups[end]:
            value = ord(char) - 48
            doubled = value * 2 - 9 if value > 4 else value * 2
            plain, swapped = value + swapped, doubled + plain
        if length >= 13 and plain % 10 == 0:
            found = end
    return found


def _is_record(value: Any) -> bool:
    """Whether ``value`` is a dataclass instance or a named tuple (named fields, shown as a dict)."""
    if isinstance(value, tuple):
        return isinstance(getattr(type(value), "_fields", None), tuple)
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _fields(value: Any) -> Iterator[tuple[str, Any]]:
    """The named fields of a record (see :func:`_is_record`)."""
    if isinstance(value, tuple):
        yield from zip(getattr(type(value), "_fields"), value, strict=False)  # noqa: B009
    else:
        for field in dataclasses.fields(value):
            yield field.name, getattr(value, field.name, None)


def slot_names(kind: type) -> Iterator[str]:
    """The ``__slots__`` attribute names of ``kind`` and its bases."""
    for base in kind.__mro__:
        slots = base.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__"):
                yield name


def attributes(value: Any) -> Iterator[tuple[str, Any]]:
    """An object's attributes: its ``__slots__`` that are set, then its ``__dict__``."""
    for name in slot_names(type(value)):
        try:
            yield name, object.__getattribute__(value, name)
        except AttributeError:
            continue
    own = getattr(value, "__dict__", None)
    if isinstance(own, dict):
        yield from own.items()


def _children(value: Any) -> Iterator[tuple[Any, Any]]:
    if isinstance(value, Mapping):
        yield from value.items()
    elif _is_record(value):
        yield from _fields(value)
    elif isinstance(value, Sequence | Set) and not isinstance(value, str | bytes | bytearray):
        for item in value:
            yield None, item
    elif not isinstance(value, type):
        yield from attributes(value)  # a plain or slotted object's fields may hold secrets too


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__name__}>"


def _pair_pattern(words: Sequence[str], mask: str = MASK) -> re.Pattern[str] | None:
    """``key=value``, ``key: value`` and ``"key": "value"`` where ``key`` contains a sensitive word.

    The pattern runs in time linear in the text, whatever the text: a key is tried only where a
    run of key characters starts (never from inside one), the sensitive word is looked for once
    per run, and every unbounded quantifier is possessive, so no character is handed back to
    another quantifier to try again. ``tests/telemetry/test_redaction.py`` checks that shape.
    """
    if not words:
        return None
    # A word matches with any separators between its letters (api_key, api.key, api-key, apiKey).
    alternatives = "|".join(r"[._-]?".join(re.escape(char) for char in word) for word in words)
    key = rf"(?<![\w.-])(?=[\w.-]*?(?:{alternatives}))[\w.-]++"
    value = r"""(?:(?:bearer|basic|token|digest)\s++)?(?:"[^"]*+"|'[^']*+'|[^\s,;&)}\]]++)"""
    if mask:
        # A value already masked (a known secret replaced first) is taken whole, not cut at
        # the mask's own "]" and masked again.
        value = rf"""(?:{re.escape(mask)}(?![^\s,;&)}}\]])|{value})"""
    return re.compile(rf"""((?i:{key})["']?\s*+[:=]\s*+)(?i:{value})""")


_DEFAULT: Redactor | None = None


def default_redactor() -> Redactor:
    """The shared redactor with :data:`DEFAULT_SENSITIVE_KEYS`."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Redactor()
    return _DEFAULT


#: What ``Saga(..., redact=...)`` accepts.
RedactLike = Redactor | Iterable[str] | None


def as_redactor(redact: RedactLike, *, saga: str | None = None) -> Redactor:
    """The redactor for a ``redact=`` option.

    ``None`` gives the default redactor; a :class:`Redactor` is used as is; a string or an
    iterable of strings adds those key words to the defaults.

    Raises:
        TypeError: ``redact`` is none of these; the message names the saga.
    """
    if redact is None:
        return default_redactor()
    if isinstance(redact, Redactor):
        return redact
    where = f"saga {saga!r} redact" if saga else "redact"
    if isinstance(redact, bytes | bytearray) or not isinstance(redact, str | Iterable):
        raise TypeError(
            f"{where}: expected a Redactor or sensitive key names (strings), got {type(redact).__name__} {redact!r}"
        )
    try:
        return default_redactor().with_keys(*_as_key_list(redact, "keys"))
    except TypeError as exc:
        raise TypeError(f"{where}: {exc}") from None
