"""No secret leaves a run: the seed's user-onboarding saga under every failure point, every sink on.

The input carries an email, a password and a card number. Steps also raise errors that quote
them, as careless code does. Logs, spans (attributes, events, status), metrics, both frames,
the diagrams, the run's repr and every file written are searched for the secrets.
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs
from telemetry_support import module_available
from testsupport import require

import sagakit
from sagakit import CompensationPrimitive, WorkflowContext
from sagakit.telemetry import SpanCapture, instrument

EMAIL = "ada.lovelace@example.com"
PASSWORD = "hunter2-S3cret!"
CARD = "4111 1111 1111 1111"
SECRETS = (EMAIL, PASSWORD, CARD, CARD.replace(" ", ""), "S3cret")


@dataclass
class Services:
    """The seed's auth, profile, email and audit services, in memory."""

    accounts: dict[str, tuple[str, str]] = field(default_factory=dict)
    profiles: dict[str, str] = field(default_factory=dict)
    sent: list[str] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=itertools.count)


def onboarding(services: Services, *, careless: str | None = None) -> CompensationPrimitive:
    """The seed's onboarding workflow; ``careless`` names a function that raises quoting secrets."""

    def maybe_blurt(where: str, data: dict[str, Any]) -> None:
        if careless == where:
            raise ValueError(
                f"{where}: card {data['card']} ({data['card'].replace(' ', '')}) declined for {data['email']}, "
                f"password {data['password']!r}, payload {data}"
            )

    async def create_auth_account(data: dict[str, Any], context: WorkflowContext) -> dict[str, Any]:
        auth_id = f"auth-{next(services.ids)}"
        services.accounts[auth_id] = (data["email"], data["password"])
        maybe_blurt("create_auth_account", data)
        return {**data, "auth_id": auth_id}

    async def delete_auth_account(data: dict[str, Any], context: WorkflowContext) -> None:
        maybe_blurt("delete_auth_account", data)
        del services.accounts[data["auth_id"]]

    async def create_profile(data: dict[str, Any], context: WorkflowContext) -> dict[str, Any]:
        profile_id = f"profile-{next(services.ids)}"
        services.profiles[profile_id] = data["name"]
        maybe_blurt("create_profile", data)
        return {**data, "profile_id": profile_id}

    async def delete_profile(data: dict[str, Any], context: WorkflowContext) -> None:
        maybe_blurt("delete_profile", data)
        del services.profiles[data["profile_id"]]

    async def send_verification_email(data: dict[str, Any], context: WorkflowContext) -> dict[str, Any]:
        services.sent.append(data["email"])
        maybe_blurt("send_verification_email", data)
        return {**data, "verification_sent": True}

    async def log_verification_rollback(data: dict[str, Any], context: WorkflowContext) -> None:
        services.audit.append({"event": "verification_rollback", "user_id": data.get("auth_id"), "email": data["email"]})

    return CompensationPrimitive(
        primitives=[
            (create_auth_account, delete_auth_account),
            (create_profile, delete_profile),
            (send_verification_email, log_verification_rollback),
        ],
        name="onboarding",
        redact=["email"],  # the email counts as a secret here, on top of password and card
    )


STEPS = ("create_auth_account", "create_profile", "send_verification_email")


def scenarios() -> list[tuple[str, dict[str, str], str | None]]:
    """(id, faults, careless function): every step under every fault mode, and careless errors."""
    found: list[tuple[str, dict[str, str], str | None]] = [("success", {}, None)]
    for step_name in STEPS:
        for mode in ("fail", "fail_after"):
            found.append((f"{step_name}-{mode}", {step_name: mode}, None))
        # A compensation only runs when a later step fails: make the last step fail too.
        faults = {step_name: "fail_compensation"}
        if step_name != STEPS[-1]:
            faults[STEPS[-1]] = "fail"
        found.append((f"{step_name}-fail_compensation", faults, None))
    for where in (*STEPS, "delete_auth_account", "delete_profile"):
        faults = {} if where in STEPS else {STEPS[-1]: "fail"}
        found.append((f"careless-{where}", faults, where))
    return found


def hits(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


@pytest.mark.parametrize("keep_going", [False, True], ids=["stop", "continue"])
async def test_no_secret_reaches_any_sink(
    keep_going: bool, tmp_path: Path, tracer_provider: Any, span_exporter: Any, meter_provider: Any, metric_reader: Any
) -> None:
    """Every failure point, both compensation policies: zero hits in every sink and every file."""
    services = Services()
    log_file = io.StringIO()
    file_logger = structlog.wrap_logger(
        structlog.PrintLogger(log_file),
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
    )
    outputs: dict[str, str] = {}
    runs = []
    for scenario, faults, careless in scenarios():
        saga = onboarding(services, careless=careless).replace(continue_on_compensation_failure=keep_going)
        capture = SpanCapture(saga, capture_payloads=True)
        # Every sink on, payload capture included: one set to the test's providers and a
        # structlog pipeline writing JSON, one to the default sagakit logger (captured).
        instrument(saga, tracer_provider=tracer_provider, meter_provider=meter_provider, logger=file_logger,
                   capture_payloads=True)
        instrument(saga, traces=False, metrics=False, capture_payloads=True)
        with capture_logs() as logs:
            run = await saga.run(
                {"email": EMAIL, "password": PASSWORD, "name": "Ada", "card": CARD},
                WorkflowContext(correlation_id=f"signup-{scenario}"),
                faults=faults,
            )
        runs.append(run)
        outputs[f"{scenario}: captured logs"] = repr(logs)
        outputs[f"{scenario}: repr"] = repr(run)
        outputs[f"{scenario}: spans frame"] = capture.frame().to_csv()
        outputs[f"{scenario}: history runs"] = saga.history.runs.to_csv()
        outputs[f"{scenario}: history steps"] = saga.history.steps.to_csv()
        outputs[f"{scenario}: run steps"] = run.steps.to_csv()
        if module_available("sagakit.notebook.diagram"):
            from sagakit.notebook.diagram import run_mimebundle, saga_mimebundle

            outputs[f"{scenario}: run diagram"] = repr(run_mimebundle(run))
            outputs[f"{scenario}: saga diagram"] = repr(saga_mimebundle(saga))
    assert len(runs) == len(scenarios())
    assert {run.status for run in runs} >= {"completed", "compensated", "compensation_failed"}
    outputs["spans (to_json)"] = "\n".join(span.to_json() for span in span_exporter.get_finished_spans())
    outputs["metrics"] = metric_reader.get_metrics_data().to_json()
    outputs["log file"] = log_file.getvalue()
    files = {
        "runs.csv": lambda path: runs[-1].definition.history.runs.to_csv(path),  # type: ignore[union-attr]
        "steps.csv": lambda path: runs[-1].definition.history.steps.to_csv(path),  # type: ignore[union-attr]
        "log.jsonl": lambda path: path.write_text(log_file.getvalue()),
    }
    for name, write in files.items():
        write(tmp_path / name)
    for path in sorted(tmp_path.rglob("*")):
        if path.is_file():
            outputs[f"file {path.name}"] = path.read_bytes().decode(errors="replace")
    # The sinks did see the errors: the masked text is there, not an empty string.
    assert "[REDACTED]" in outputs["log file"] and "[REDACTED]" in outputs["spans (to_json)"]
    assert '"exception.message"' in outputs["spans (to_json)"]
    leaks = {where: found for where, text in outputs.items() if (found := hits(text))}
    assert leaks == {}


def test_diagrams_are_searched() -> None:
    """The diagram module exists, so the leak test above searched its SVG."""
    require(module_available("sagakit.notebook.diagram"), "sagakit.notebook.diagram (the saga diagram)")


async def test_diagram_svg_of_a_careless_failure_has_no_secret() -> None:
    """The run diagram's SVG caption shows the redacted error."""
    require(module_available("sagakit.notebook.diagram"), "sagakit.notebook.diagram (the saga diagram)")
    from sagakit.notebook.diagram import run_mimebundle

    saga = onboarding(Services(), careless="create_profile")
    run = await saga.run({"email": EMAIL, "password": PASSWORD, "name": "Ada", "card": CARD})
    bundle = run_mimebundle(run)
    require("image/svg+xml" in bundle, "a Graphviz renderer for the diagram (dot or graphviz-pure)")
    text = "\n".join(str(value) for value in bundle.values())
    assert "create_profile" in text
    assert hits(text) == []


async def test_journal_file_has_no_secret(tmp_path: Path) -> None:
    """A run recorded by the SQLite journal leaves no secret in the database file."""
    require(module_available("sagakit.journal"), "sagakit.journal (the SQLite journal)")
    journal_type: Any = sagakit.SqliteJournal
    path = tmp_path / "journal.sqlite"
    saga = onboarding(Services(), careless="delete_profile")
    journal = journal_type(path, redact=saga.redactor)  # the saga's keys: email included
    try:
        await saga.run(
            {"email": EMAIL, "password": PASSWORD, "name": "Ada", "card": CARD},
            faults={STEPS[-1]: "fail"},
            journal=journal,
        )
    finally:
        close = getattr(journal, "close", None)
        if callable(close):
            close()
    written = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file()).decode(errors="replace")
    assert hits(written) == []


async def test_exploration_frame_and_matrix_hover_show_no_secret() -> None:
    """``saga.explore`` shows the errors of its scenarios scrubbed, in the frame and in the HTML hover text."""
    saga = onboarding(Services(), careless="send_verification_email")
    exploration = await saga.explore({"email": EMAIL, "password": PASSWORD, "name": "Ada", "card": CARD})
    frame = exploration.scenarios.to_csv()
    html = exploration.to_html()
    assert "[REDACTED]" in frame and "[REDACTED]" in html  # the errors are there, masked
    assert hits(frame) == [] and hits(html) == []


@dataclass
class Payment:
    holder: str
    password: str


class Profile:
    """A model object the journal's serializer converts through its ``default``."""

    def __init__(self, api_key: str) -> None:
        self.name = "Ada"
        self._api_key = api_key

    def dump(self) -> dict[str, Any]:
        return {"name": self.name, "api_key": self._api_key}


def _plain(value: Any) -> Any:
    import dataclasses

    if isinstance(value, Profile):
        return value.dump()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


async def test_the_journal_masks_what_its_serializer_writes(tmp_path: Path) -> None:
    """Dataclasses and model objects converted by ``default=`` are stored masked, as are payloads 300 levels deep."""
    from sagakit.journal import JsonSerializer, SqliteJournal

    deep: Any = {"password": PASSWORD}
    for _ in range(300):
        deep = {"next": deep}

    async def keep(data: Any, context: WorkflowContext) -> Any:
        return data

    saga = sagakit.Saga("stored", [sagakit.step(keep)])
    path = tmp_path / "journal.db"
    with SqliteJournal(path, serializer=JsonSerializer(default=_plain)) as journal:
        run = await saga.run({"pay": Payment("ada", PASSWORD), "profile": Profile("sk_live_Q9x8"), "deep": deep},
                             journal=journal)
    assert run.status == "completed"
    assert isinstance(run.result["pay"], Payment)  # the caller's data is untouched
    written = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file()).decode(errors="replace")
    assert '"holder":"ada"' in written and '"name":"Ada"' in written  # the rest is stored faithfully
    assert PASSWORD not in written and "sk_live_Q9x8" not in written


async def test_parquet_honours_the_saga_keys(tmp_path: Path) -> None:
    """``history.to_parquet`` scrubs the values under the saga's own keys (``redact=["iban"]``) from errors."""
    require(module_available("pyarrow"), "pyarrow (pip install 'sagakit[parquet]')")
    iban = "DE89370400440532013000"

    async def transfer(data: Any, context: WorkflowContext) -> Any:
        raise ValueError(f"transfer to {data['iban']} refused")

    saga = sagakit.Saga("payout", [sagakit.step(transfer)], redact=["iban"])
    run = await saga.run({"iban": iban})
    assert run.status == "compensated" and iban in str(run.error)
    saga.history.to_parquet(tmp_path / "runs.parquet")
    written = (tmp_path / "runs.parquet").read_bytes()
    assert b"refused" in written and iban.encode() not in written
