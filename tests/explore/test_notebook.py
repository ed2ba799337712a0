"""Notebook 08 runs in a real kernel and tells its story: a leak found, fixed, then simulated."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from tests.conftest import require

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "08-explore-and-simulate.ipynb"


@pytest.mark.slow
def test_the_notebook_finds_the_leak_fixes_it_and_simulates(tmp_path: Path) -> None:
    """The first matrix marks fail_after on the payment as violated, the fixed one has no violation; random
    search shrinks its violations to that one fault, replays it, overlays coverage on the diagram, the test
    assertion reports it; 10,000 runs follow."""
    require(importlib.util.find_spec("nbclient") is not None, "nbclient is needed to execute notebooks")
    require(importlib.util.find_spec("ipykernel") is not None, "ipykernel is needed to execute notebooks")
    import nbformat
    from nbclient import NotebookClient

    book = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    assert all(not cell.get("outputs") for cell in book.cells if cell.cell_type == "code"), "commit it without outputs"
    NotebookClient(book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    pages = []
    overlays = []
    texts = []
    for cell in book.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "text/html" in data and "sagakit-exploration" in data["text/html"]:
                pages.append(data["text/html"])
            if "text/html" in data and 'class="sagakit-coverage"' in data["text/html"]:
                overlays.append(data["text/html"])
            texts.append(output.get("text", "") + data.get("text/plain", ""))
    first, fixed, drawn = pages
    assert re.search(r"random: \d+ scenarios \(seed 2026\), \d+ violate the invariant", drawn)
    assert "minimal counterexample: charge_payment=fail_after" in drawn
    printed = "\n".join(texts)
    assert "minimal: {'charge_payment': 'fail_after'}" in printed
    assert "charge_payment=fail_after -> violated | same events in the same order: True" in printed
    assert "replay:         await sagakit.testing.replay(saga, {'order_id': 7, 'qty': 2, 'amount': 30.0}" in printed
    assert "Coverage of saga 'order': 13 of 13 failure points exercised (0 violated)" in printed
    (overlay,) = overlays
    assert "coverage-violated" in overlay and "coverage-explored" in overlay
    assert 'id="cell-charge_payment-fail_after" class="sagakit-cell outcome-violated"' in first
    assert first.count("outcome-violated") == 1
    assert "outcome-violated" not in fixed
    assert 'id="cell-charge_payment-fail_after" class="sagakit-cell outcome-compensated"' in fixed
    assert any(text.startswith("10000 runs:") for text in texts)


ISOLATION = Path(__file__).resolve().parents[2] / "notebooks" / "09-isolation.ipynb"


@pytest.mark.slow
def test_the_isolation_notebook_finds_both_anomalies_and_fixes_them(tmp_path: Path) -> None:
    """Notebook 09 in a real kernel: the naive saga's oversell is a lost update and its turned-away order a
    dirty read, each drawn as a timeline; reread value removes the first only; the semantic lock passes every
    interleaving with every fault and pair of faults; the saved interleaving replays; the test assertion
    reports both anomalies with their replay lines."""
    require(importlib.util.find_spec("nbclient") is not None, "nbclient is needed to execute notebooks")
    require(importlib.util.find_spec("ipykernel") is not None, "ipykernel is needed to execute notebooks")
    import nbformat
    from nbclient import NotebookClient

    book = nbformat.read(ISOLATION, as_version=4)  # type: ignore[no-untyped-call]
    assert all(not cell.get("outputs") for cell in book.cells if cell.cell_type == "code"), "commit it without outputs"
    NotebookClient(book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    pages, texts = [], []
    for cell in book.cells:
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error", output
            data = output.get("data", {})
            if "sagakit-concurrent" in data.get("text/html", ""):
                pages.append(data["text/html"])
            texts.append(output.get("text", "") + data.get("text/plain", ""))
    oversell, dirty, fixed = pages
    assert 'data-anomaly="lost update"' in oversell and 'class="sagakit-timeline"' in oversell
    assert 'data-anomaly="dirty read"' in dirty and "run 0: charge=fail" in dirty
    assert "0 violate the invariant" in fixed and "sagakit-counterexample" not in fixed
    printed = "\n".join(texts)
    assert re.search(r"order-reread\): \d+ interleavings \(every one, with partial-order reduction\), 0 violate", printed)
    assert "still: ['dirty read']" in printed
    assert "dirty read | same actions: True" in printed
    assert "counterexample 1 of 2: lost update" in printed and "counterexample 2 of 2: dirty read" in printed
    assert "replay:         await sagakit.testing.replay_interleaving(runs, {'sagas': ['order', 'order']" in printed
    assert re.search(r"order-locked\): \d+ interleavings \(every one, with partial-order reduction\), 0 violate", printed)
