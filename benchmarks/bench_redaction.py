"""Redaction's cost on the hot paths, and scrubbing time against the length of the text.

Saga runs. W3: a 5-step saga whose input carries a password, an API token and a card number
(and a list of order lines); each step passes it on with a little added; step 5 fails with an
error quoting the card and ``token=...`` (careless code), steps 1-4 are compensated. The sinks
are those of a production set-up: ``sagakit.telemetry.instrument`` with payload capture on (an
SDK ``TracerProvider`` exporting to memory through a ``SimpleSpanProcessor``, and a structlog
logger rendering JSON into a sink that drops the text), with or without a ``SqliteJournal``
(a file in a temporary folder); the first row leaves payload capture off (the default: only
error text is scrubbed). "redaction off" is the same run with a redactor that masks
nothing and hunts for nothing (its methods hand values back as they are) and the journal made
with ``redact=False``: the hand-written baseline of "no masking at all". The ratio is what
masking every payload and scrubbing every error text costs on top. Rounds interleave the
variants; medians are reported.

Functions. ``Redactor.redact`` and ``Redactor.secrets`` of the W3 payload and
``Redactor.message`` of its error, next to hand-written functions doing the same for this
payload only (walks of dicts and lists that know the sensitive keys by name; ``str.replace`` of
the known secrets and one ``re.sub`` for ``token=``).

Scrubbing time against length. Adversarial messages of n, 2n, 4n and 8n characters (n = 25 kB):
time per kB stays flat when scrubbing is linear (it grew 4× per doubling with the old pattern).
The baseline is one ``str.replace`` pass over the same text.
"""

from __future__ import annotations

import asyncio
import logging
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog
from _common import median, report
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import sagakit as sk
from sagakit.journal import SqliteJournal
from sagakit.redaction import MASK, Redactor
from sagakit.telemetry import automatic, instrument

ROUNDS = 7
PER_ROUND = 200
STEPS = 5
CARD = "4111 1111 1111 1111"
TOKEN = "tok_9f8e7d6c5b4a"
PAYLOAD = {
    "user": {"name": "Ada", "email": "ada@example.com", "password": "hunter2-S3cret!"},
    "payment": {"card_number": CARD, "cvv": "123", "amount": 42.5, "currency": "EUR"},
    "api_token": TOKEN,
    "lines": [{"sku": f"sku-{i}", "qty": i, "note": "gift wrap"} for i in range(5)],
}


class NoRedaction(Redactor):
    """A redactor that masks nothing and finds nothing: redaction turned off."""

    __slots__ = ()

    def is_sensitive(self, key: object) -> bool:
        return False

    def redact(self, value: Any) -> Any:
        return value

    def secrets(self, *values: Any) -> frozenset[str]:
        return frozenset()

    def payload_secrets(self, payloads: Any) -> frozenset[str]:
        return frozenset()

    def scrub(self, text: str, secrets: Any = ()) -> str:
        return text

    def message(self, error: BaseException | None, secrets: Any = ()) -> str | None:
        return None if error is None else str(error)


async def passing(data: Any, context: Any) -> Any:
    return {**data, "seen": data.get("seen", 0) + 1}


async def undo(data: Any, context: Any) -> None:
    return None


async def careless(data: Any, context: Any) -> Any:
    raise ValueError(f"card {data['payment']['card_number']} declined (token={data['api_token']})")


def null_logger() -> Any:
    """A structlog logger that does all the work of a JSON log line, then drops the text."""
    return structlog.wrap_logger(
        structlog.ReturnLogger(),
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
    ).bind()


def w3(name: str, redactor: Redactor | None, capture: bool = True) -> tuple[sk.Saga, InMemorySpanExporter]:
    steps = [sk.step(passing, undo, name=f"s{i}") for i in range(STEPS - 1)] + [sk.step(careless, name="charge")]
    saga = sk.Saga(name, steps, redact=redactor)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument(saga, tracer_provider=provider, metrics=False, logger=null_logger(), capture_payloads=capture)
    return saga, exporter


async def per_run_us(saga: sk.Saga, exporter: InMemorySpanExporter, journal: SqliteJournal | None) -> float:
    start = time.perf_counter()
    for _ in range(PER_ROUND):
        run = await saga.run(PAYLOAD, journal=journal)
        assert run.status == "compensated"
    elapsed = time.perf_counter() - start
    exporter.clear()
    saga.history.clear()
    return elapsed / PER_ROUND * 1e6


async def saga_runs(folder: Path) -> list[tuple[str, float, float, float]]:
    variants = {"off": w3("w3_off", NoRedaction()), "on": w3("w3_on", None)}
    bare = {"off": w3("w3_bare_off", NoRedaction(), capture=False), "on": w3("w3_bare_on", None, capture=False)}
    journals = {
        "off": SqliteJournal(folder / "off.db", redact=False),
        "on": SqliteJournal(folder / "on.db"),
    }
    workloads = ("errors only", "telemetry", "journal")
    results: dict[str, list[float]] = {f"{where} {key}": [] for where in workloads for key in variants}
    for _ in range(ROUNDS):
        for key, (saga, exporter) in bare.items():
            results[f"errors only {key}"].append(await per_run_us(saga, exporter, None))
        for key, (saga, exporter) in variants.items():
            results[f"telemetry {key}"].append(await per_run_us(saga, exporter, None))
        for key, (saga, exporter) in variants.items():
            results[f"journal {key}"].append(await per_run_us(saga, exporter, journals[key]))
    for journal in journals.values():
        journal.close()
    written = {key: (folder / f"{key}.db").read_bytes() + _wal(folder / f"{key}.db") for key in journals}
    assert CARD.encode() in written["off"] and CARD.encode() not in written["on"], "the variants are what they say"
    rows: list[tuple[str, float, float, float]] = []
    for where, label in (
        ("errors only", "spans + logs, payloads not captured"),
        ("telemetry", "spans + logs capturing payloads"),
        ("journal", "the same + SQLite journal"),
    ):
        off, on = median(results[f"{where} off"]), median(results[f"{where} on"])
        ratios = [b / a for a, b in zip(results[f"{where} off"], results[f"{where} on"], strict=True)]
        rows.append((label, off, on, statistics.median(ratios)))
    return rows


def _wal(path: Path) -> bytes:
    wal = path.with_name(path.name + "-wal")
    return wal.read_bytes() if wal.exists() else b""


# -- functions ------------------------------------------------------------------------------

_HAND_KEYS = {"password", "card_number", "cvv", "api_token"}
_HAND_PAIR = re.compile(r"(token=)[^\s,;)]+")


def hand_mask(value: Any) -> Any:
    """Hand-written masking of the W3 payload: the known keys, in dicts and lists."""
    if isinstance(value, dict):
        return {key: MASK if key in _HAND_KEYS else hand_mask(item) for key, item in value.items()}
    if isinstance(value, list):
        return [hand_mask(item) for item in value]
    return value


def hand_secrets(value: Any, found: set[str] | None = None, under: bool = False) -> set[str]:
    """Hand-written hunt for the W3 payload's secrets: every value under the known keys."""
    found = set() if found is None else found
    if isinstance(value, dict):
        for key, item in value.items():
            hand_secrets(item, found, under or key in _HAND_KEYS)
    elif isinstance(value, list):
        for item in value:
            hand_secrets(item, found, under)
    elif under:
        found.add(str(value))
    return found


def hand_message(error: BaseException, secrets: tuple[str, ...]) -> str:
    """Hand-written scrubbing of the W3 error: the known secrets, then ``token=`` pairs."""
    text = str(error)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return _HAND_PAIR.sub(rf"\1{MASK}", text)


def per_call_ns(call: Any, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n * 1e9


def functions() -> list[tuple[str, float, float]]:
    redactor = Redactor()
    error = ValueError(f"card {CARD} declined (token={TOKEN})")
    secrets = redactor.secrets(PAYLOAD)
    known = tuple(sorted(secrets, key=len, reverse=True))
    assert redactor.redact(PAYLOAD) == hand_mask(PAYLOAD) and secrets == hand_secrets(PAYLOAD)
    assert redactor.message(error, secrets) == hand_message(error, known)
    pairs = {
        "redact(payload)": (lambda: hand_mask(PAYLOAD), lambda: redactor.redact(PAYLOAD)),
        "secrets(payload)": (lambda: hand_secrets(PAYLOAD), lambda: redactor.secrets(PAYLOAD)),
        "message(error, secrets)": (lambda: hand_message(error, known), lambda: redactor.message(error, secrets)),
    }
    results: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in pairs}
    for _ in range(ROUNDS):
        for name, (hand, ours) in pairs.items():
            results[name][0].append(per_call_ns(hand, 2_000))
            results[name][1].append(per_call_ns(ours, 2_000))
    return [(name, median(hand), median(ours)) for name, (hand, ours) in results.items()]


# -- scrubbing time against length ------------------------------------------------------------

ADVERSARIAL = {
    "dashed digits 1-1-1-": "1-",
    "chained pairs a=a=a=": "a=",
    "dotted sensitive keys token.token.": "token.",
    "sensitive pairs token= token= ": "token= ",
    "prose with a card": f"order 7 paid with card {CARD} by ada; ",
}
BASE_KB = 25


def scaling() -> None:
    redactor = Redactor()
    print(f"\nScrubbing time against length (Redactor.scrub; µs per kB; n = {BASE_KB} kB; median of 3)")
    print(f"  {'input':<38} {'n':>9} {'2n':>9} {'4n':>9} {'8n':>9} {'8n / n':>8} {'str.replace':>12}")
    for name, unit in ADVERSARIAL.items():
        per_kb = []
        for factor in (1, 2, 4, 8):
            text = (unit * (BASE_KB * 1000 * factor // len(unit) + 1))[: BASE_KB * 1000 * factor]
            times = []
            for _ in range(3):
                start = time.perf_counter()
                redactor.scrub(text)
                times.append(time.perf_counter() - start)
            per_kb.append(median(times) / (BASE_KB * factor) * 1e6)
        text = (unit * (BASE_KB * 8000 // len(unit) + 1))[: BASE_KB * 8000]
        start = time.perf_counter()
        text.replace(TOKEN, MASK)
        baseline = (time.perf_counter() - start) / (BASE_KB * 8) * 1e6
        cells = " ".join(f"{value:>9.2f}" for value in per_kb)
        print(f"  {name:<38} {cells} {per_kb[-1] / per_kb[0]:>7.2f}× {baseline:>12.3f}")


async def main() -> None:
    automatic(False)  # only the sinks set up here
    with tempfile.TemporaryDirectory() as directory:
        rows = await saga_runs(Path(directory))
    print(f"\nW3 (5 steps, step 5 fails quoting secrets; {ROUNDS} rounds × {PER_ROUND} runs)")
    print(f"  {'sinks':<36} {'redaction off':>16} {'sagakit':>12} {'ratio':>8}")
    for label, off, on, ratio in rows:
        print(f"  {label:<36} {off:>13.1f} µs {on:>9.1f} µs {ratio:>7.2f}×")
    measured = functions()
    report(
        "Redactor functions, W3 payload and error (hand-written masking vs sagakit)",
        [(f"{name}: hand-written", hand, None) for name, hand, _ in measured]
        + [(f"{name}: sagakit", ours, ours / hand) for name, hand, ours in measured],
        unit="ns/call",
    )
    scaling()


if __name__ == "__main__":
    asyncio.run(main())
