"""``python -m sagakit.temporal worker``: serve sagas from a module on a Temporal cluster.

Example::

    python -m sagakit.temporal worker --address temporal.internal:7233 --namespace shop \\
        --task-queue orders --tls --tls-ca ca.pem shop.sagas:order shop.sagas:refund

Each ``module:attribute`` names a :class:`~sagakit.Saga` (or a list of them). Every worker
runs the sagas' steps both as regular and as local activities: which kind a run uses is the
caller's choice (``TemporalBackend(local_activities=...)``), carried in the workflow's input
so that any worker replays it alike; ``--max-concurrent-local-activities`` bounds how many
local steps this worker runs at once. The worker
runs until SIGINT or SIGTERM, then finishes its in-flight tasks and exits 0. It exits 2 for
bad arguments (an unknown module or saga object) and 1 when the server cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sagakit.saga import Saga

__all__ = ["load_sagas", "main"]


class CliError(Exception):
    """A problem the worker reports in one line before it exits."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def load_sagas(specs: Sequence[str]) -> list[Saga]:
    """Import the sagas named ``package.module:attribute``.

    Raises:
        CliError: a name is malformed, its module cannot be imported, or it is not a Saga.
    """
    sagas: list[Saga] = []
    for spec in specs:
        module_name, sep, attribute = spec.partition(":")
        if not sep or not module_name or not attribute:
            raise CliError(f"saga {spec!r}: expected package.module:saga_object", 2)
        try:
            target: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise CliError(f"saga {spec!r}: cannot import module {module_name!r} ({exc})", 2) from None
        for part in attribute.split("."):
            if not hasattr(target, part):
                raise CliError(f"saga {spec!r}: module {module_name!r} has no attribute {attribute!r}", 2)
            target = getattr(target, part)
        found = list(target) if isinstance(target, list | tuple) else [target]
        for item in found:
            if not isinstance(item, Saga):
                raise CliError(
                    f"saga {spec!r}: expected a sagakit.Saga (or a list of them), got {type(item).__name__}", 2
                )
        sagas.extend(found)
    return sagas


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sagakit.temporal", description="sagakit on Temporal.")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run a worker for sagas", description="Run a Temporal worker that "
                                 "executes the given sagas' workflows and activities until SIGINT or SIGTERM.")
    worker.add_argument("sagas", nargs="+", metavar="package.module:saga_object",
                        help="a Saga (or a list of Sagas) to serve")
    worker.add_argument("--address", default="localhost:7233", help="the Temporal frontend, HOST:PORT "
                        "(default: localhost:7233)")
    worker.add_argument("--namespace", default="default", help="the Temporal namespace (default: default)")
    worker.add_argument("--task-queue", required=True, help="the task queue the sagas' backend uses")
    worker.add_argument("--tls", action="store_true", help="connect with TLS (implied by the other --tls-* options)")
    worker.add_argument("--tls-cert", type=Path, help="client certificate (PEM) for mutual TLS")
    worker.add_argument("--tls-key", type=Path, help="client private key (PEM) for mutual TLS")
    worker.add_argument("--tls-ca", type=Path, help="CA certificate (PEM) to verify the server with")
    worker.add_argument("--tls-server-name", help="server name to verify, when it differs from the address")
    worker.add_argument("--encryption-key-file", type=Path,
                        help="encrypt payloads and failures with AES-GCM: a private file of '<key id> <base64 key>' "
                        "lines, the encrypting key first (see sagakit.temporal.codec); clients need the same keys")
    worker.add_argument("--api-key", help="API key (Temporal Cloud); prefer the TEMPORAL_API_KEY variable")
    worker.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to wait for the server "
                        "(default: 10)")
    worker.add_argument("--max-concurrent-activities", type=_positive, default=None,
                        help="most activities run at once by this worker")
    worker.add_argument("--max-concurrent-local-activities", type=_positive, default=None,
                        help="most local activities (steps of runs started with local_activities) run at once "
                        "by this worker")
    worker.add_argument("--sticky-timeout", type=float, default=10.0, help="seconds a workflow task waits for "
                        "this worker's cache before another worker takes it (default: 10)")
    return parser


def _tls(args: argparse.Namespace) -> Any:
    from temporalio.service import TLSConfig

    if not (args.tls or args.tls_cert or args.tls_key or args.tls_ca or args.tls_server_name):
        return False
    if bool(args.tls_cert) != bool(args.tls_key):
        raise CliError("--tls-cert and --tls-key go together (mutual TLS needs both)", 2)

    def read(path: Path | None, option: str) -> bytes | None:
        if path is None:
            return None
        try:
            return path.read_bytes()
        except OSError as exc:
            raise CliError(f"{option} {path}: {exc.strerror or exc}", 2) from None

    return TLSConfig(
        server_root_ca_cert=read(args.tls_ca, "--tls-ca"),
        client_cert=read(args.tls_cert, "--tls-cert"),
        client_private_key=read(args.tls_key, "--tls-key"),
        domain=args.tls_server_name,
    )


def _data_converter(key_file: Path | None) -> Any:
    """The worker's data converter: encrypting with the key file's keys, else explaining encrypted payloads."""
    from temporalio.converter import DataConverter

    from sagakit.temporal.codec import AesGcmCodec, KeylessCodec, encrypted_data_converter

    if key_file is None:
        return DataConverter(payload_codec=KeylessCodec())
    try:
        return encrypted_data_converter(AesGcmCodec.from_key_file(key_file))
    except ValueError as exc:
        raise CliError(f"--encryption-key-file: {exc}", 2) from None


async def _serve(args: argparse.Namespace, sagas: list[Saga]) -> None:
    from datetime import timedelta

    from temporalio.client import Client

    from sagakit.temporal.worker import build_worker

    api_key = args.api_key or os.environ.get("TEMPORAL_API_KEY") or None
    converter = _data_converter(args.encryption_key_file)
    try:
        client = await asyncio.wait_for(
            Client.connect(args.address, namespace=args.namespace, tls=_tls(args), api_key=api_key,
                           data_converter=converter),
            timeout=args.connect_timeout,
        )
    except (TimeoutError, RuntimeError, OSError) as exc:
        reason = f"no answer within {args.connect_timeout:g}s" if isinstance(exc, TimeoutError) else str(exc)
        raise CliError(f"cannot reach Temporal at {args.address} (namespace {args.namespace!r}): {reason}", 1) from None
    options: dict[str, Any] = {"sticky_queue_schedule_to_start_timeout": timedelta(seconds=args.sticky_timeout)}
    for option in ("max_concurrent_activities", "max_concurrent_local_activities"):
        if getattr(args, option) is not None:
            options[option] = getattr(args, option)
    worker = build_worker(client, sagas, task_queue=args.task_queue, **options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    names = ", ".join(saga.name for saga in sagas)
    async with worker:
        print(f"sagakit worker: serving {names} on task queue {args.task_queue!r} at {args.address} "
              f"(namespace {args.namespace!r}); stop with Ctrl-C or SIGTERM", file=sys.stderr, flush=True)
        await stop.wait()
        print("sagakit worker: stopping (finishing in-flight tasks)", file=sys.stderr, flush=True)
    print("sagakit worker: stopped", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        from sagakit.temporal import require_temporalio

        require_temporalio()
        if "" not in sys.path and "." not in sys.path:
            sys.path.insert(0, "")  # like `python -m`: sagas importable from the working directory
        sagas = load_sagas(args.sagas)
        if not sagas:
            raise CliError("no sagas to serve", 2)
        asyncio.run(_serve(args, sagas))
    except ImportError as exc:
        print(f"sagakit worker: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"sagakit worker: {exc}", file=sys.stderr)
        return exc.code
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The worker has stopped cleanly. Skip interpreter finalisation: threads of Temporal's
    # native core can still hold Python objects then, which aborts the process at exit.
    os._exit(code)
