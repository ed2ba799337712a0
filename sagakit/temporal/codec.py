"""Encrypting what sagakit hands to Temporal: an AES-GCM payload codec.

Step inputs, outputs, errors and ``context.metadata`` travel to Temporal as payloads and
failures, and stay in the workflow's event history, where anyone with access to the
namespace (or its web UI) can read them. A payload codec in the client's data converter
encrypts them before they leave the process::

    from sagakit.temporal import AesGcmCodec, encrypted_data_converter

    codec = AesGcmCodec.from_key_file("keys.txt")
    client = await Client.connect("localhost:7233", data_converter=encrypted_data_converter(codec))
    run = await saga.run(data, backend=TemporalBackend(client, task_queue="orders"))

and the workers use the same keys: ``python -m sagakit.temporal worker ... --encryption-key-file
keys.txt`` (or ``serve(client, ...)`` with a client built as above).

**What is encrypted.** Every payload (workflow and activity arguments and results, heartbeat
details, failure details) and, with :func:`encrypted_data_converter`, the message and stack
trace of every failure (Temporal's ``encode_common_attributes``). Workflow ids, task queue,
step and activity names, timestamps and error types stay readable: they are how Temporal
schedules the work.

**Payload format.** An encrypted payload's ``data`` is a 12-byte random nonce followed by the
AES-GCM ciphertext (with its tag) of the original payload, serialised whole (its own metadata
included). Its metadata is ``encoding = binary/encrypted`` and ``encryption-key-id = <id>``; the
key id is also authenticated with the ciphertext, so a payload cannot be passed off as
encrypted with another key.

**Key rotation.** A codec holds several keys by id; it encrypts with one (the first, or
``encrypt_with=``) and decrypts with whichever key a payload names. To rotate: add the new key
at the top of every worker's and client's key file (the old one stays below it, for the
histories written with it), restart them; once no open workflow (nor one you still want to
read) uses the old key, remove it. The key file holds one key a line, ``<id> <base64 key>``
(16, 24 or 32 bytes: AES-128/192/256), ``#`` starts a comment; create a key with
``python -c "import base64, os; print('k2', base64.b64encode(os.urandom(32)).decode())"``.
Keep the file private (mode 0600); sagakit refuses one that other users can read.

The ``cryptography`` package comes with the ``temporal`` extra and is imported only when a
codec is made.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "ENCODING",
    "KEY_ID",
    "AesGcmCodec",
    "EncryptionKeyError",
    "KeylessCodec",
    "encrypted_data_converter",
    "read_key_file",
]

#: ``metadata["encoding"]`` of an encrypted payload.
ENCODING = b"binary/encrypted"
#: The metadata entry naming the key a payload is encrypted with.
KEY_ID = "encryption-key-id"
_NONCE_BYTES = 12
_KEY_SIZES = (16, 24, 32)


class EncryptionKeyError(ValueError):
    """A payload cannot be decrypted: its key is missing, or it was altered or encrypted with another key."""


def _aesgcm() -> type[AESGCM]:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as exc:
        raise ImportError(
            "encrypting Temporal payloads needs the cryptography package: pip install 'sagakit[temporal]'"
        ) from exc
    return AESGCM


class AesGcmCodec(PayloadCodec):
    """Encrypts payloads with AES-GCM, naming the key in their metadata; decrypts with any key it holds.

    Args:
        keys: key id -> key (16, 24 or 32 bytes), in order of preference.
        encrypt_with: the id of the key that encrypts (default: the first key). The others
            only decrypt: that is how keys are rotated (see the module's documentation).

    Raises:
        TypeError: a key id is not a non-empty string, or a key is not bytes.
        ValueError: no keys, a key of the wrong size, or ``encrypt_with`` names no key.
    """

    def __init__(self, keys: Mapping[str, bytes], *, encrypt_with: str | None = None) -> None:
        if not isinstance(keys, Mapping) or not keys:
            raise ValueError(f"AesGcmCodec keys: expected a non-empty mapping of key id to key bytes, got {keys!r}")
        aesgcm = _aesgcm()
        self._ciphers: dict[str, AESGCM] = {}
        for key_id, key in keys.items():
            if not isinstance(key_id, str) or not key_id or any(char.isspace() for char in key_id):
                raise TypeError(f"AesGcmCodec keys: a key id must be a non-empty string without spaces, got {key_id!r}")
            if not isinstance(key, bytes | bytearray):
                raise TypeError(f"AesGcmCodec key {key_id!r}: expected bytes, got {type(key).__name__}")
            if len(key) not in _KEY_SIZES:
                raise ValueError(
                    f"AesGcmCodec key {key_id!r}: expected 16, 24 or 32 bytes (AES-128/192/256), got {len(key)}"
                )
            self._ciphers[key_id] = aesgcm(bytes(key))
        chosen = next(iter(self._ciphers)) if encrypt_with is None else encrypt_with
        if chosen not in self._ciphers:
            raise ValueError(f"AesGcmCodec encrypt_with: {chosen!r} is not one of the key ids {list(self._ciphers)}")
        #: The id of the key new payloads are encrypted with.
        self.key_id = chosen
        #: Every key id this codec can decrypt.
        self.key_ids: tuple[str, ...] = tuple(self._ciphers)

    @classmethod
    def from_key_file(cls, path: str | os.PathLike[str], *, encrypt_with: str | None = None) -> AesGcmCodec:
        """A codec with the keys of a key file (see :func:`read_key_file`)."""
        return cls(read_key_file(path), encrypt_with=encrypt_with)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Encrypt each payload whole (data and metadata) with the encrypting key."""
        cipher = self._ciphers[self.key_id]
        key_id = self.key_id.encode()
        encoded = []
        for payload in payloads:
            nonce = os.urandom(_NONCE_BYTES)
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), key_id)
            encoded.append(Payload(metadata={"encoding": ENCODING, KEY_ID: key_id}, data=nonce + sealed))
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Decrypt each encrypted payload; a payload that is not encrypted passes as it is.

        Raises:
            EncryptionKeyError: a payload names a key this codec lacks, or fails authentication.
        """
        decoded = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                decoded.append(payload)  # written before encryption was turned on
                continue
            key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
            cipher = self._ciphers.get(key_id)
            if cipher is None:
                raise EncryptionKeyError(
                    f"a Temporal payload is encrypted with key {key_id!r}, which this process does not have "
                    f"(it has {', '.join(map(repr, self.key_ids))}); add that key to the key file "
                    "(--encryption-key-file) of this worker or client"
                )
            data = payload.data
            try:
                plain = cipher.decrypt(data[:_NONCE_BYTES], data[_NONCE_BYTES:], key_id.encode())
            except Exception as exc:  # cryptography's InvalidTag says nothing more
                raise EncryptionKeyError(
                    f"a Temporal payload encrypted with key {key_id!r} does not decrypt with this process's key "
                    f"{key_id!r}: the payload was altered, or the key files disagree about that key"
                ) from exc
            original = Payload()
            original.ParseFromString(plain)
            decoded.append(original)
        return decoded

    def __repr__(self) -> str:
        return f"AesGcmCodec(key_ids={list(self.key_ids)!r}, encrypt_with={self.key_id!r})"


class KeylessCodec(PayloadCodec):
    """For a process without keys: passes payloads through, and explains an encrypted one.

    Without it, a worker meeting an encrypted payload fails with Temporal's "unknown payload
    encoding"; with it, the error says which key is needed and how to give it.
    """

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """The payloads, unchanged."""
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """The payloads, unchanged.

        Raises:
            EncryptionKeyError: a payload is encrypted.
        """
        for payload in payloads:
            if payload.metadata.get("encoding") == ENCODING:
                key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
                raise EncryptionKeyError(
                    f"a Temporal payload is encrypted (AES-GCM, key {key_id!r}) and this process has no keys: "
                    "start the worker with --encryption-key-file (a file holding that key), or build its client "
                    "with sagakit.temporal.encrypted_data_converter(...)"
                )
        return list(payloads)


def encrypted_data_converter(codec: PayloadCodec | Mapping[str, bytes], **options: Any) -> DataConverter:
    """A data converter that encrypts payloads and failure messages with ``codec``.

    Args:
        codec: a payload codec, or keys for an :class:`AesGcmCodec`.
        **options: further ``DataConverter`` fields (``payload_converter_class`` ...).
    """
    if not isinstance(codec, PayloadCodec):
        codec = AesGcmCodec(codec)
    options.setdefault("failure_converter_class", DefaultFailureConverterWithEncodedAttributes)
    return DataConverter(payload_codec=codec, **options)


def read_key_file(path: str | os.PathLike[str]) -> dict[str, bytes]:
    """The keys of a key file: one ``<id> <base64 key>`` a line, the encrypting key first.

    Raises:
        ValueError: the file is missing, readable by other users, empty, or has a bad line
            (the message names the file and the line; never the key).
    """
    file = Path(path)
    try:
        mode = stat.S_IMODE(file.stat().st_mode)
        text = file.read_text()
    except OSError as exc:
        raise ValueError(f"encryption key file {file}: {exc.strerror or exc}") from None
    if mode & 0o077:
        raise ValueError(
            f"encryption key file {file}: other users can read it (mode {mode:04o}); run chmod 600 {file}"
        )
    keys: dict[str, bytes] = {}
    for number, line in enumerate(text.splitlines(), 1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        parts = content.split()
        where = f"encryption key file {file} line {number}"
        if len(parts) != 2:
            raise ValueError(f"{where}: expected '<key id> <base64 key>'")
        key_id, encoded = parts
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{where}: the key of {key_id!r} is not base64") from None
        if len(key) not in _KEY_SIZES:
            raise ValueError(f"{where}: the key of {key_id!r} has {len(key)} bytes; expected 16, 24 or 32")
        if key_id in keys:
            raise ValueError(f"{where}: key id {key_id!r} appears twice")
        keys[key_id] = key
    if not keys:
        raise ValueError(f"encryption key file {file}: holds no key; expected lines '<key id> <base64 key>'")
    return keys

