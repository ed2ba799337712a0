"""``python -m sagakit.temporal worker``: clear errors, and a clean stop on SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.temporal


def _cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sagakit.temporal", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: nothing listens there


class TestWorkerErrors:
    def test_an_unreachable_server_exits_1_naming_the_address(self, subprocess_env: dict[str, str]) -> None:
        """Nothing listens: one line naming the address and namespace, exit code 1."""
        port = _closed_port()
        result = _cli("worker", "--address", f"127.0.0.1:{port}", "--namespace", "shop", "--task-queue", "q",
                      "--connect-timeout", "5", "temporal.durable_saga:durable", env=subprocess_env)
        assert result.returncode == 1, result.stderr
        assert f"cannot reach Temporal at 127.0.0.1:{port} (namespace 'shop')" in result.stderr
        assert "Traceback" not in result.stderr

    @pytest.mark.parametrize(
        ("spec", "message"),
        [
            ("temporal.no_such_module:durable", "cannot import module 'temporal.no_such_module'"),
            ("temporal.durable_saga:missing", "module 'temporal.durable_saga' has no attribute 'missing'"),
            ("temporal.durable_saga:not_a_saga", "expected a sagakit.Saga (or a list of them), got dict"),
            ("temporal.durable_saga", "expected package.module:saga_object"),
        ],
    )
    def test_an_unknown_or_invalid_saga_object_exits_2(self, subprocess_env: dict[str, str], spec: str,
                                                       message: str) -> None:
        """A bad saga name is reported before any connection is tried."""
        result = _cli("worker", "--address", "127.0.0.1:1", "--task-queue", "q", spec, env=subprocess_env)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
        assert "Traceback" not in result.stderr

    def test_mutual_tls_needs_both_cert_and_key(self, subprocess_env: dict[str, str], tmp_path: object) -> None:
        """--tls-cert without --tls-key is refused with a clear message."""
        result = _cli("worker", "--task-queue", "q", "--tls-cert", "cert.pem", "temporal.durable_saga:durable",
                      env=subprocess_env)
        assert result.returncode == 2
        assert "--tls-cert and --tls-key go together" in result.stderr

    def test_a_concurrency_limit_must_be_positive(self, subprocess_env: dict[str, str]) -> None:
        """--max-concurrent-local-activities 0 is refused, naming the option, before connecting."""
        result = _cli("worker", "--task-queue", "q", "--address", "127.0.0.1:1", "--max-concurrent-local-activities",
                      "0", "temporal.durable_saga:durable", env=subprocess_env)
        assert result.returncode == 2
        assert "--max-concurrent-local-activities: expected a positive whole number, got '0'" in result.stderr


def test_sigterm_stops_the_worker_cleanly(temporal_address: str, subprocess_env: dict[str, str]) -> None:
    """A running worker stops on SIGTERM with exit code 0."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "sagakit.temporal", "worker", "--address", temporal_address, "--task-queue",
         "sigterm-q", "temporal.durable_saga:durable"],
        env=subprocess_env, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert worker.stderr is not None
        line = worker.stderr.readline()  # blocks until the worker announces itself
        assert "serving durable on task queue 'sigterm-q'" in line
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=120) == 0  # a hang guard, not a speed target
        rest = worker.stderr.read()
        assert "stopped" in rest, rest
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        if worker.stderr is not None:
            worker.stderr.close()
