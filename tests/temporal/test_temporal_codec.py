"""The AES-GCM payload codec: payloads and failures reach Temporal encrypted, runs behave the same.

The end-to-end tests use the session's real dev server with clients and workers of their own
(the shared ones do not encrypt), on task queues of their own.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from testsupport import require

try:
    import cryptography  # noqa: F401
    from temporalio.api.common.v1 import Payload
except ImportError:  # pragma: no cover - the temporal extra brings both
    require(False, "the temporal extra (temporalio, cryptography) is not installed")

import sagakit as sk
from sagakit.temporal import AesGcmCodec, EncryptionKeyError, encrypted_data_converter, read_key_file
from sagakit.temporal.codec import ENCODING, KEY_ID, KeylessCodec

from . import secret_saga

pytestmark = pytest.mark.temporal

OLD = os.urandom(32)
NEW = os.urandom(32)
SECRETS = (secret_saga.PASSWORD, secret_saga.CARD, secret_saga.TOKEN, secret_saga.NOTE)


def _payload(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=f'"{text}"'.encode())


def _key_file(path: Path, **keys: bytes) -> Path:
    path.write_text("# encrypting key first\n" + "".join(f"{k} {base64.b64encode(v).decode()}\n" for k, v in keys.items()))
    path.chmod(0o600)
    return path


class TestCodec:
    async def test_a_payload_round_trips_and_names_its_key(self) -> None:
        """Encoding hides the data and metadata, names the key id; decoding restores the payload exactly."""
        codec = AesGcmCodec({"k1": OLD})
        original = _payload(secret_saga.PASSWORD)
        [encoded] = await codec.encode([original])
        assert encoded.metadata["encoding"] == ENCODING
        assert encoded.metadata[KEY_ID] == b"k1"
        assert secret_saga.PASSWORD.encode() not in encoded.SerializeToString()
        assert b"json/plain" not in encoded.SerializeToString()
        assert await codec.decode([encoded]) == [original]

    async def test_rotation_decrypts_old_payloads_and_encrypts_with_the_new_key(self) -> None:
        """A codec holding the new key first and the old one below decrypts both and encrypts with the new."""
        before = AesGcmCodec({"k1": OLD})
        after = AesGcmCodec({"k2": NEW, "k1": OLD})
        [old_payload] = await before.encode([_payload("a")])
        [new_payload] = await after.encode([_payload("b")])
        assert new_payload.metadata[KEY_ID] == b"k2"
        assert await after.decode([old_payload, new_payload]) == [_payload("a"), _payload("b")]
        assert AesGcmCodec({"k2": NEW, "k1": OLD}, encrypt_with="k1").key_id == "k1"

    async def test_a_missing_key_and_a_tampered_payload_fail_clearly(self) -> None:
        """Decoding names the missing key id and what to do; a changed byte or a swapped key id is refused."""
        [encoded] = await AesGcmCodec({"k1": OLD}).encode([_payload("x")])
        with pytest.raises(EncryptionKeyError, match=r"encrypted with key 'k1'.*has 'k2'.*--encryption-key-file"):
            await AesGcmCodec({"k2": NEW}).decode([encoded])
        tampered = Payload()
        tampered.CopyFrom(encoded)
        tampered.data = encoded.data[:-1] + bytes([encoded.data[-1] ^ 1])
        with pytest.raises(EncryptionKeyError, match="altered"):
            await AesGcmCodec({"k1": OLD}).decode([tampered])
        relabelled = Payload()
        relabelled.CopyFrom(encoded)
        relabelled.metadata[KEY_ID] = b"k2"
        with pytest.raises(EncryptionKeyError, match="altered"):
            await AesGcmCodec({"k2": OLD}).decode([relabelled])  # same bytes, another id: authenticated

    async def test_unencrypted_payloads_pass_and_a_keyless_codec_explains_encrypted_ones(self) -> None:
        """Payloads from before encryption decode as they are; a process without keys says which key it needs."""
        plain = _payload("x")
        assert await AesGcmCodec({"k1": OLD}).decode([plain]) == [plain]
        [encoded] = await AesGcmCodec({"k1": OLD}).encode([plain])
        with pytest.raises(EncryptionKeyError, match=r"key 'k1'.*has no keys.*--encryption-key-file"):
            await KeylessCodec().decode([encoded])

    def test_bad_keys_are_refused_with_the_reason(self) -> None:
        """Wrong key sizes, empty key sets and an unknown encrypt_with are clear errors."""
        with pytest.raises(ValueError, match="16, 24 or 32 bytes"):
            AesGcmCodec({"k1": b"short"})
        with pytest.raises(ValueError, match="non-empty mapping"):
            AesGcmCodec({})
        with pytest.raises(ValueError, match="'k9' is not one of the key ids"):
            AesGcmCodec({"k1": OLD}, encrypt_with="k9")
        with pytest.raises(TypeError, match="expected bytes"):
            AesGcmCodec({"k1": "text"})  # type: ignore[dict-item]

    def test_the_key_file_is_read_in_order_and_must_be_private(self, tmp_path: Path) -> None:
        """Keys keep the file's order; a world-readable file, a bad line or a bad key is named, never the key."""
        path = _key_file(tmp_path / "keys.txt", k2=NEW, k1=OLD)
        assert list(read_key_file(path).items()) == [("k2", NEW), ("k1", OLD)]
        path.chmod(0o644)
        with pytest.raises(ValueError, match=r"other users can read it.*chmod 600"):
            read_key_file(path)
        path.write_text("k1 not-base64!\n")
        path.chmod(0o600)
        with pytest.raises(ValueError, match="line 1: the key of 'k1' is not base64"):
            read_key_file(path)
        path.write_text("k1 " + base64.b64encode(b"x" * 20).decode() + "\n")
        with pytest.raises(ValueError, match="has 20 bytes"):
            read_key_file(path)
        with pytest.raises(ValueError, match="No such file"):
            read_key_file(tmp_path / "missing.txt")


def _history_bytes(history: Any) -> bytes:
    return b"".join(event.SerializeToString() for event in history.events)


async def _encrypted_client(address: str, keys: dict[str, bytes]) -> Any:
    from temporalio.client import Client

    return await Client.connect(address, namespace="default", data_converter=encrypted_data_converter(keys))


@pytest.mark.asyncio(loop_scope="session")
async def test_an_encrypted_saga_rolls_back_and_its_history_holds_no_secret(temporal_address: str) -> None:
    """On the real server a saga runs and rolls back as usual, and the raw history shows none of its secrets."""
    from sagakit.temporal import TemporalBackend, serve

    client = await _encrypted_client(temporal_address, {"k1": OLD})
    queue = f"encrypted-{uuid.uuid4().hex[:8]}"
    async with serve(client, [secret_saga.secret], task_queue=queue):
        backend = TemporalBackend(client, task_queue=queue)
        context = sk.WorkflowContext(metadata={"api_key": "meta-key-77"})
        run = await secret_saga.secret.run(secret_saga.order(1), context, backend=backend)
    assert run.status == "compensated"
    assert run.failed_step == "ship"
    assert run.compensated_steps == ["charge", "reserve"]
    assert secret_saga.CARD in str(run.error)  # the caller, holding the key, sees the real error
    history = await client.get_workflow_handle(run.info["workflow_id"]).fetch_history()
    raw = _history_bytes(history)
    assert len(history.events) > 10
    for secret in (*SECRETS, "meta-key-77", "carrier refused"):
        assert secret.encode() not in raw, secret
    assert ENCODING in raw and b"k1" in raw


def _start_worker(address: str, queue: str, env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    worker = subprocess.Popen(
        [sys.executable, "-m", "sagakit.temporal", "worker", "--address", address, "--task-queue", queue, *extra,
         "temporal.secret_saga:secret"],
        env=env, stderr=subprocess.PIPE, text=True,
    )
    assert worker.stderr is not None
    line = worker.stderr.readline()  # blocks until the worker announces itself (or fails)
    assert "serving secret_order" in line, line + worker.stderr.read()
    return worker


def _stop_worker(worker: subprocess.Popen[str]) -> str:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
    assert worker.stderr is not None
    rest = worker.stderr.read()
    worker.stderr.close()
    return rest


@pytest.mark.asyncio(loop_scope="session")
async def test_the_worker_command_decrypts_with_a_rotated_key_file(
    temporal_address: str, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    """A worker given --encryption-key-file (new key first, old below) runs a client's old-key run to its rollback."""
    from sagakit.temporal import TemporalBackend

    keys = _key_file(tmp_path / "keys.txt", k2=NEW, k1=OLD)
    client = await _encrypted_client(temporal_address, {"k1": OLD, "k2": NEW})  # still encrypting with k1
    queue = f"encrypted-cli-{uuid.uuid4().hex[:8]}"
    worker = _start_worker(temporal_address, queue, subprocess_env, "--encryption-key-file", str(keys))
    try:
        run = await secret_saga.secret.run(secret_saga.order(2), backend=TemporalBackend(client, task_queue=queue))
    finally:
        _stop_worker(worker)
    assert (run.status, run.compensated_steps) == ("compensated", ["charge", "reserve"])
    raw = _history_bytes(await client.get_workflow_handle(run.info["workflow_id"]).fetch_history())
    assert b"k2" in raw  # the worker's results use its encrypting key
    for secret in SECRETS:
        assert secret.encode() not in raw, secret


@pytest.mark.asyncio(loop_scope="session")
async def test_a_worker_without_the_key_fails_with_a_clear_error(
    temporal_address: str, subprocess_env: dict[str, str]
) -> None:
    """A keyless worker cannot read an encrypted run: its workflow task fails saying which key to give it."""
    from temporalio.api.enums.v1 import EventType

    from sagakit.temporal import TemporalBackend

    client = await _encrypted_client(temporal_address, {"k1": OLD})
    queue = f"encrypted-keyless-{uuid.uuid4().hex[:8]}"
    worker = _start_worker(temporal_address, queue, subprocess_env)
    backend = TemporalBackend(client, task_queue=queue, workflow_id=lambda request: f"keyless/{request.run_id}")
    running = asyncio.create_task(secret_saga.secret.run(secret_saga.order(3), backend=backend))
    message = ""
    try:
        for _ in range(300):  # up to 30 s: the first workflow task fails within a second or two
            await asyncio.sleep(0.1)
            handles = [wf async for wf in client.list_workflows(f"TaskQueue = '{queue}'")]
            if not handles:
                continue
            history = await client.get_workflow_handle(handles[0].id).fetch_history()
            failed = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
            if failed:
                message = failed[0].workflow_task_failed_event_attributes.failure.message
                break
    finally:
        running.cancel()
        for wf in [wf async for wf in client.list_workflows(f"TaskQueue = '{queue}'")]:
            await client.get_workflow_handle(wf.id).terminate("test over")
        await asyncio.wait([running], timeout=10)
        _stop_worker(worker)
    assert "encrypted (AES-GCM, key 'k1') and this process has no keys" in message
    assert "--encryption-key-file" in message


def test_the_worker_command_refuses_a_readable_key_file(subprocess_env: dict[str, str], tmp_path: Path) -> None:
    """A key file other users can read stops the worker before it connects, exit code 2."""
    keys = _key_file(tmp_path / "keys.txt", k1=OLD)
    keys.chmod(0o644)
    result = subprocess.run(
        [sys.executable, "-m", "sagakit.temporal", "worker", "--address", "127.0.0.1:1", "--task-queue", "q",
         "--encryption-key-file", str(keys), "temporal.secret_saga:secret"],
        env=subprocess_env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "--encryption-key-file: encryption key file" in result.stderr and "chmod 600" in result.stderr
    assert base64.b64encode(OLD).decode() not in result.stderr
