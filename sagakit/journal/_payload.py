"""What the journal stores of a run's data: serializers, and masking secrets before storing.

A payload (the run's input, a completed step's output, the run's result) is masked first:
every value under a sensitive mapping key (see :mod:`sagakit.redaction`) is replaced by the
mask, and its text is remembered so that error messages of the same run can be scrubbed of
it. The masked value is then turned into text by the journal's :class:`Serializer`
(:class:`JsonSerializer` by default), which must refuse what it cannot store faithfully.
"""

from __future__ import annotations

import copy as copy_module
import dataclasses
import json
import json.encoder
from collections.abc import Callable, Iterable, Mapping, Set
from typing import Any, Protocol, runtime_checkable

from sagakit.errors import error_text
from sagakit.redaction import Redactor, as_redactor, attributes

__all__ = [
    "JsonSerializer",
    "Serializer",
    "error_text",
    "journal_redactor",
    "mask_secrets",
    "masked_dumps",
    "unstorable_type",
]


@runtime_checkable
class Serializer(Protocol):
    """Turns payloads into text or bytes for the journal, and back.

    ``dumps`` must raise (``TypeError``/``ValueError``) for a value it cannot store faithfully;
    the journal then fails the run with :class:`~sagakit.errors.PayloadError` before the next
    step starts.
    """

    def dumps(self, value: Any, /) -> str | bytes: ...

    def loads(self, payload: str | bytes, /) -> Any: ...


class JsonSerializer:
    """The default serializer: JSON, strictly (no fallback to ``str`` for unknown objects).

    Tuples come back as lists and dict keys as strings, as JSON has it.

    Args:
        default: passed to :func:`json.dumps` to encode other types (it must raise
            ``TypeError`` for what it cannot encode).
        object_hook: passed to :func:`json.loads` to decode them again.
    """

    __slots__ = ("_decoder", "_encoder", "_markers", "_one_shot", "plain")

    def __init__(
        self,
        *,
        default: Callable[[Any], Any] | None = None,
        object_hook: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        #: Without ``default`` only JSON's own types are written: what was masked is what is stored.
        self.plain = default is None
        self._encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=default)
        self._decoder = json.JSONDecoder(object_hook=object_hook)
        # JSONEncoder.encode builds the C encoder anew for every call, which costs as much as
        # encoding a small payload; the journal encodes one per step, so it builds it once.
        # Any error falls back to JSONEncoder.encode, whose result and errors are the reference.
        self._markers: dict[int, Any] = {}
        make = getattr(json.encoder, "c_make_encoder", None)
        self._one_shot: Callable[[Any, int], Iterable[str]] | None = None
        if make is not None:
            encoder = self._encoder
            self._one_shot = make(self._markers, encoder.default, json.encoder.encode_basestring, None,
                                  encoder.key_separator, encoder.item_separator, False, False, True)

    def dumps(self, value: Any, /) -> str:
        one_shot = self._one_shot
        if one_shot is not None:
            try:
                return "".join(one_shot(value, 0))
            except Exception:
                self._markers.clear()  # left behind by the failed attempt
        return self._encoder.encode(value)

    def loads(self, payload: str | bytes, /) -> Any:
        return self._decoder.decode(payload.decode() if isinstance(payload, bytes) else payload)

    def __repr__(self) -> str:
        return "JsonSerializer()"


# Types that never hold a mapping: masking skips them without an isinstance() call.
_LEAVES = frozenset({str, int, float, bool, type(None), bytes})
#: Payloads are walked this deep; a container nested deeper is stored as the mask, whole.
MAX_DEPTH = 200


def mask_secrets(value: Any, redactor: Redactor, found: set[str], depth: int = 0) -> Any:
    """``value`` with every value under a sensitive key or field replaced by the mask.

    The text of each masked value goes into ``found`` (to scrub error messages of it). Unlike
    ``Redactor.redact`` every other value is left as it is (no ``repr`` of unknown objects), so
    the serializer still rejects what it cannot store; and a value with nothing to mask is
    returned as is, not copied. Mappings that are not dicts come back as dicts; dataclass
    instances, named tuples and other objects (slotted or not) keep their type, as a shallow
    copy whose sensitive fields hold the mask, so a serializer's ``default`` still converts them.
    A container nested deeper than :data:`MAX_DEPTH` is replaced by the mask.
    """
    kind = type(value)
    if kind in _LEAVES:
        return value
    if depth > MAX_DEPTH:
        found.update(redactor.secrets(value))
        return redactor.mask
    if kind is dict or (kind is not list and kind is not tuple and isinstance(value, Mapping)):
        copy: dict[Any, Any] | None = None if kind is dict else dict(value)
        is_sensitive = redactor.is_sensitive
        for key, item in value.items():
            if is_sensitive(key):
                found.update(redactor.secrets({key: item}))
                new = redactor.mask
            elif type(item) in _LEAVES:
                continue
            else:
                new = mask_secrets(item, redactor, found, depth + 1)
            if new is not item:
                if copy is None:
                    copy = dict(value)
                copy[key] = new
        return value if copy is None else copy
    if kind is list or kind is tuple or isinstance(value, list | tuple):
        fields = getattr(kind, "_fields", None)
        if isinstance(value, tuple) and isinstance(fields, tuple):  # a named tuple
            changes = _masked_fields(zip(fields, value, strict=False), redactor, found, depth)
            return value._replace(**changes) if changes else value  # type: ignore[attr-defined]
        items = [item if type(item) in _LEAVES else mask_secrets(item, redactor, found, depth + 1) for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, type) or callable(value) or isinstance(value, Set | bytearray):
        return value
    if dataclasses.is_dataclass(value):
        named: Iterable[tuple[str, Any]] = (
            (field.name, getattr(value, field.name, None)) for field in dataclasses.fields(value)
        )
    else:
        named = attributes(value)
    changes = _masked_fields(named, redactor, found, depth)
    if not changes:
        return value
    try:
        masked = copy_module.copy(value)
        for name, new in changes.items():
            object.__setattr__(masked, name, new)
    except Exception:
        return redactor.mask  # an object that cannot be copied masked is not stored with its secrets
    return masked


def _masked_fields(
    named: Iterable[tuple[str, Any]], redactor: Redactor, found: set[str], depth: int
) -> dict[str, Any]:
    """The new values of the fields that masking changes."""
    changes: dict[str, Any] = {}
    for name, item in named:
        if redactor.is_sensitive(name):
            if item is not None:
                found.update(redactor.secrets({name: item}))
                changes[name] = redactor.mask
        elif type(item) not in _LEAVES:
            new = mask_secrets(item, redactor, found, depth + 1)
            if new is not item:
                changes[name] = new
    return changes


def masked_dumps(serializer: Serializer, value: Any, redactor: Redactor, found: set[str]) -> str | bytes:
    """What the journal writes for ``value``: masked, serialised, and masked again as written.

    A serializer's ``default`` (or a serializer of one's own) may turn an object into fields
    that masking never saw, such as a model object's ``password``. Unless the serializer is
    the plain :class:`JsonSerializer`, whose output holds nothing but the value masked, the
    written text is read back, masked, and written again when that masked anything.
    """
    text = serializer.dumps(mask_secrets(value, redactor, found))
    if isinstance(serializer, JsonSerializer) and serializer.plain:
        return text
    written: set[str] = set()
    decoded = serializer.loads(text)
    masked = mask_secrets(decoded, redactor, written)
    if not written:
        return text
    found.update(written)
    return serializer.dumps(masked)


def journal_redactor(redact: object) -> Redactor | None:
    """The redactor for a journal's (or an export's) ``redact=`` option; ``None`` stores data as given."""
    if redact is False or redact is None:
        return None
    if redact is True:
        return as_redactor(None)
    try:
        return as_redactor(redact)  # type: ignore[arg-type]
    except TypeError as exc:
        raise TypeError(f"SqliteJournal redact: {exc}; or pass True (the default keys) or False") from None


def unstorable_type(value: Any, exc: Exception) -> str:
    """The type the serializer choked on: named in JSON's message, else the payload's own type."""
    text = str(exc)
    if text.startswith("Object of type ") and " is not " in text:
        return text[len("Object of type ") : text.index(" is not ")]
    return type(value).__name__
