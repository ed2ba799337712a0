"""Zero leaks, property-based: payload shapes × secret placements × every sink.

Hypothesis draws where a secret sits (a value under a sensitive key, inside an error message,
inside an exception's arguments, or a card number with any neighbouring character quoted in an
error) and in what it is wrapped (dicts, lists, tuples, named tuples, dataclasses, slotted
classes, objects a serializer's ``default`` converts, nested up to 130 levels deep). Each
example runs a saga that rolls back, with every sink on, and searches all of them.
"""

from __future__ import annotations

import dataclasses
import string
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs
from telemetry_support import module_available
from testsupport import require

import sagakit as sk
from sagakit.journal import JsonSerializer, SqliteJournal
from sagakit.telemetry import SpanCapture, instrument


class Credentials(NamedTuple):
    user: str
    password: Any


@dataclasses.dataclass
class Login:
    user: str
    api_key: Any


class Slotted:
    __slots__ = ("token", "user")

    def __init__(self, secret: Any) -> None:
        self.user = "ada"
        self.token = secret


class Model:
    """An object only the serializer's ``default`` knows how to store (as its fields)."""

    def __init__(self, secret: Any) -> None:
        self.kind = "model"
        self.fields = {"label": "m", "secret": secret}


def to_plain(value: Any) -> Any:
    """The journal serializer's ``default``: dataclasses, slotted objects and models as dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Slotted):
        return {"user": value.user, "token": value.token}
    if isinstance(value, Model):
        return {"kind": value.kind, **value.fields}
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


#: Containers holding the secret under a sensitive key or field.
HOLDERS: dict[str, Callable[[Any], Any]] = {
    "dict": lambda secret: {"id": 7, "password": secret},
    "named tuple": lambda secret: Credentials("ada", secret),
    "dataclass": lambda secret: Login("ada", secret),
    "slotted": lambda secret: Slotted(secret),
    "model (serializer default)": lambda secret: Model(secret),
}
#: Wrappers around the holder, applied repeatedly for nesting.
WRAPPERS: dict[str, Callable[[Any], Any]] = {
    "dict": lambda inner: {"next": inner},
    "list": lambda inner: [1, inner],
    "tuple": lambda inner: ("x", inner),
}
PLACEMENTS = ("under a key", "in the error message", "in the exception args", "card in the error")
CARDS = ("4111111111111111", "5500005555555559", "378282246310005", "4111 1111 1111 1111")
NEIGHBOURS = [c for c in string.printable if not c.isdigit()] + ["é", "\u00a0", "٣", "ß", "€"]
SECRET_ALPHABET = string.ascii_letters + string.digits + "-_.!@$%^*+="
#: The sinks searched in every example.
SINKS = (
    "repr", "str", "runs frame", "steps frame", "run diagram", "saga diagram", "diagram view state",
    "diagram view inspector and replay", "Lab HTML and widget state", "structlog events",
    "span attributes and events", "journal file bytes (with -wal)", "parquet", "exploration frame",
    "exploration HTML",
)


def shape(holder: str, wrappers: list[str], secret: Any) -> Any:
    value = HOLDERS[holder](secret)
    for wrapper in wrappers:
        value = WRAPPERS[wrapper](value)
    return value


def saga_for(placement: str, blob: Any, secret: str, card: str, neighbour: str) -> sk.Saga:
    async def reserve(data: Any, context: sk.WorkflowContext) -> Any:
        return {"reservation": "r-1", "blob": data["blob"]}

    async def release(data: Any, context: sk.WorkflowContext) -> None:
        return None

    async def charge(data: Any, context: sk.WorkflowContext) -> Any:
        if placement == "in the error message":
            raise ValueError(f"declined for {secret}!")
        if placement == "in the exception args":
            raise ValueError("declined", blob)
        if placement == "card in the error":
            raise ValueError(f"card {neighbour}{card}{neighbour} declined")
        raise ValueError("declined")

    return sk.Saga("checkout", [sk.step(reserve, compensate=release), sk.step(charge)])


def from_front_end(view: Any, content: dict[str, Any]) -> None:
    """Deliver ``content`` to ``view`` as a custom message from its front-end arrives: through
    its comm, as the kernel's comm manager hands it over."""
    view.comm.handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})


def diagram_view_outputs(run: sk.Run) -> dict[str, str]:
    """What the notebook's diagram view of ``run`` sends: its synced state, then the inspector of
    every step and compensation and the replay frames, asked for as the front-end asks (messages)."""
    from sagakit.notebook.widget import diagram_view

    view = diagram_view(run)
    shown = [repr(view.get_state())]
    try:
        for step in run.definition.step_names:  # type: ignore[union-attr]
            for phase in ("forward", "compensate"):
                from_front_end(view, {"t": "inspect", "step": step, "phase": phase})
                shown.append(repr(view.inspector))
        from_front_end(view, {"t": "replay"})
        shown.append(repr(view.replay))
    finally:
        view.close()
    assert "input" in shown[1]  # the inspector showed the first step's attempt, not nothing
    return {"diagram view state": shown[0], "diagram view inspector and replay": "\n".join(shown[1:])}


def lab_outputs(saga: sk.Saga) -> str:
    """What the saga's Lab shows of its last run: its SVG, its view's whole synced state (status,
    history rows, diagram) and the inspector of every step and compensation, asked for by message."""
    lab = saga.lab(charts=False)
    try:
        lab.show_run(len(saga.history))
        lab.flush()
        view = lab.widget
        shown = [lab.svg, repr(view.get_state()), repr(lab._repr_mimebundle_())]
        for step in saga.step_names:
            for phase in ("forward", "compensate"):
                from_front_end(view, {"t": "inspect", "step": step, "phase": phase})
                shown.append(repr(view.inspector))
    finally:
        lab.close()
    assert "compensated" in shown[1]  # the Lab does describe the run
    return "\n".join(shown)


def search(outputs: dict[str, str], secrets: list[str]) -> dict[str, list[str]]:
    return {where: found for where, text in outputs.items() if (found := [s for s in secrets if s in text])}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    holder=st.sampled_from(sorted(HOLDERS)),
    wrappers=st.one_of(
        st.lists(st.sampled_from(sorted(WRAPPERS)), max_size=3),
        st.lists(st.sampled_from(sorted(WRAPPERS)), min_size=101, max_size=130),
    ),
    placement=st.sampled_from(PLACEMENTS),
    secret=st.text(SECRET_ALPHABET, min_size=6, max_size=16).map(lambda text: "Zq" + text),
    card=st.sampled_from(CARDS),
    neighbour=st.sampled_from(NEIGHBOURS),
)
async def test_no_sink_shows_a_secret(
    holder: str, wrappers: list[str], placement: str, secret: str, card: str, neighbour: str
) -> None:
    """Whatever the shape and wherever the secret, no sink shows it (the card in any of its forms)."""
    require(module_available("opentelemetry.sdk"), "opentelemetry-sdk (pip install 'sagakit[otel]')")
    require(module_available("pyarrow"), "pyarrow (pip install 'sagakit[parquet]')")
    require(module_available("anywidget"), "anywidget (pip install 'sagakit[notebook]')")
    carried = card if placement == "card in the error" and holder == "dict" else secret
    blob = shape(holder, wrappers, carried)
    saga = saga_for(placement, blob, secret, card, neighbour)
    capture = SpanCapture(saga, capture_payloads=True)
    instrument(saga, traces=False, metrics=False, capture_payloads=True)
    outputs: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        journal = SqliteJournal(folder / "journal.db", serializer=JsonSerializer(default=to_plain))
        with capture_logs() as logs:
            run = await saga.run({"order": 1, "blob": blob}, journal=journal)
        # Read while the journal is open: recent pages still sit in the -wal file.
        outputs["journal file bytes (with -wal)"] = b"".join(
            path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()
        ).decode("latin-1")
        journal.close()
        saga.history.to_parquet(folder / "runs.parquet")
        outputs["parquet"] = (folder / "runs.parquet").read_bytes().decode("latin-1")
    assert run.status == "compensated"
    outputs["repr"] = repr(run)
    outputs["str"] = str(run)
    outputs["runs frame"] = saga.history.runs.to_csv()
    outputs["steps frame"] = run.steps.to_csv() + saga.history.steps.to_csv()
    outputs["run diagram"] = repr(run._repr_mimebundle_())
    outputs["saga diagram"] = repr(saga._repr_mimebundle_())
    outputs.update(diagram_view_outputs(run))
    outputs["Lab HTML and widget state"] = lab_outputs(saga)
    outputs["structlog events"] = repr(logs) + structlog.processors.JSONRenderer(default=repr)(None, "", {"e": logs})
    outputs["span attributes and events"] = capture.frame().to_csv()
    exploration = await saga.explore({"order": 1, "blob": blob})
    outputs["exploration frame"] = "\n".join(
        frame.to_csv() for frame in (exploration.scenarios, exploration.violations, exploration.matrix(),
                                     exploration.history.runs, exploration.history.steps)
    )
    outputs["exploration HTML"] = exploration.to_html() + exploration.to_text() + repr(exploration)
    assert set(outputs) == set(SINKS)
    if holder == "dict" and len(wrappers) < 3:  # shown, not cut: the mask is there, not an empty string
        assert "[REDACTED]" in outputs["span attributes and events"]
    secrets = [secret, card, card.replace(" ", "")]
    assert search(outputs, secrets) == {}


def test_the_property_covers_every_shape_placement_and_sink() -> None:
    """The README's counts: the shapes, placements and sinks the property test draws from."""
    assert (len(HOLDERS), len(WRAPPERS), len(PLACEMENTS), len(CARDS), len(NEIGHBOURS), len(SINKS)) == (
        5, 3, 4, 4, len(string.printable) - 10 + 5, 15
    )


@pytest.fixture(autouse=True)
def _quiet_structlog() -> None:
    """Nothing to set up: capture_logs() replaces the processors for each run."""
