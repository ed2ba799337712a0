"""Notebook 08 runs in a real kernel and tells its story: a leak found, fixed, then simulated."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.conftest import require

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "08-explore-and-simulate.ipynb"


@pytest.mark.slow
def test_the_notebook_finds_the_leak_fixes_it_and_simulates(tmp_path: Path) -> None:
    """The first matrix marks fail_after on the payment as violated, the fixed one has no violation, 10,000 runs follow."""
    require(importlib.util.find_spec("nbclient") is not None, "nbclient is needed to execute notebooks")
    require(importlib.util.find_spec("ipykernel") is not None, "ipykernel is needed to execute notebooks")
    import nbformat
    from nbclient import NotebookClient

    book = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    assert all(not cell.get("outputs") for cell in book.cells if cell.cell_type == "code"), "commit it without outputs"
    NotebookClient(book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    pages = []
    texts = []
    for cell in book.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "text/html" in data and "sagakit-exploration" in data["text/html"]:
                pages.append(data["text/html"])
            texts.append(output.get("text", "") + data.get("text/plain", ""))
    first, fixed = pages
    assert 'id="cell-charge_payment-fail_after" class="sagakit-cell outcome-violated"' in first
    assert first.count("outcome-violated") == 1
    assert "outcome-violated" not in fixed
    assert 'id="cell-charge_payment-fail_after" class="sagakit-cell outcome-compensated"' in fixed
    assert any(text.startswith("10000 runs:") for text in texts)
