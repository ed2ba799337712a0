"""Every example notebook runs top to bottom in a real kernel, and is committed without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
# The documentation site renders these executed copies (scripts/docs.py), so a test run and a
# docs build execute each notebook once between them.
EXECUTED = NOTEBOOKS.parent / "build" / "executed-notebooks"
ALL = sorted(NOTEBOOKS.glob("*.ipynb"))


def test_the_examples_exist() -> None:
    """The six example notebooks of the notebook layer are present (others may be added)."""
    names = {path.stem for path in ALL}
    expected = {"01-quickstart", "02-order-processing", "03-user-onboarding", "04-data-sync", "05-failure-lab",
                "06-compensation-timings"}
    assert expected <= names


@pytest.mark.parametrize("path", ALL, ids=[path.stem for path in ALL])
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    """Notebooks are stored clean: no outputs, no execution counts."""
    book = nbformat.read(path, as_version=4)
    dirty = [i for i, cell in enumerate(book.cells)
             if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)]
    assert dirty == [], f"{path.name}: cells {dirty} carry outputs; clear them before committing"


@pytest.mark.slow
@pytest.mark.parametrize("path", ALL, ids=[path.stem for path in ALL])
def test_notebook_runs_top_to_bottom(path: Path, tmp_path: Path) -> None:
    """Executing the notebook in a fresh kernel raises no error in any cell."""
    book = nbformat.read(path, as_version=4)
    client = NotebookClient(book, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the cell on any error
    errors = [output for cell in book.cells if cell.cell_type == "code" for output in cell.outputs
              if output.output_type == "error"]
    assert errors == []
    displayed = [output for cell in book.cells if cell.cell_type == "code" for output in cell.outputs
                 if output.output_type in ("display_data", "execute_result")]
    assert displayed, f"{path.name} displayed nothing"
    EXECUTED.mkdir(parents=True, exist_ok=True)
    partial = EXECUTED / f".{path.name}.partial"
    nbformat.write(book, partial)
    partial.replace(EXECUTED / path.name)   # whole or absent, for a docs build running meanwhile


def test_run_sync_works_in_a_kernel_cell_without_patching_asyncio(tmp_path: Path) -> None:
    """In a real kernel (a running loop), ``run_sync`` returns the run; asyncio is not patched."""
    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import asyncio, sagakit\n"
        "original = asyncio.run\n"
        "async def step_one(data, context):\n"
        "    return {**data, 'done': True}\n"
        "saga = sagakit.Saga('sync', [sagakit.step(step_one)])\n"
        "asyncio.get_running_loop()  # a cell runs inside the kernel's loop\n"
        "run = saga.run_sync({'n': 1})\n"
        "print(run.status, run.result['done'], asyncio.run is original, not hasattr(asyncio, '_nest_patched'))"
    )])
    NotebookClient(book, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    (output,) = book.cells[0].outputs
    assert output.text.strip() == "completed True True True"


def test_saga_run_and_lab_displays_are_the_view_after_a_static_fallback(tmp_path: Path) -> None:
    """In a kernel, a Saga, Run or Lab display is two outputs: the static drawing (what nbconvert,
    GitHub or a reopened notebook show: the coloured SVG, and for the Lab its status line, kept up
    to date), then the interactive view; a notebook exported to HTML shows the drawing."""
    from nbconvert import HTMLExporter

    book = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(
            "import sagakit\n"
            "def one(data, context):\n"
            "    return data\n"
            "saga = sagakit.Saga('shown', [sagakit.step(one, compensate=one, name='one'), sagakit.step(one, name='two')])\n"
            "saga"),
        nbformat.v4.new_code_cell("await saga.run({}, faults={'two': 'fail'})"),
        nbformat.v4.new_code_cell("lab = saga.lab(charts=False)\nlab"),
        nbformat.v4.new_code_cell("import asyncio\nsaga.faults['two'] = 'fail'\nawait lab.run()\nawait asyncio.sleep(0.5)"),
    ])
    NotebookClient(book, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    for cell in book.cells[:3]:
        static, view = cell.outputs
        assert 'class="sagakit-static"' in static.data["text/html"] and "<svg" in static.data["image/svg+xml"]
        assert "application/vnd.jupyter.widget-view+json" in view.data
        assert "application/vnd.jupyter.widget-view+json" not in static.data
    assert "state-compensated" in book.cells[1].outputs[0].data["image/svg+xml"]
    # The Lab's fallback was updated after its run: the drawing and the status line of that run.
    lab_static = book.cells[2].outputs[0].data
    assert "state-failed" in lab_static["image/svg+xml"] and "rolled back: two failed" in lab_static["text/plain"]
    exported, _ = HTMLExporter().from_notebook_node(book)
    assert "rolled back: two failed" in exported and 'id="step-one"' in exported


def test_an_error_raised_in_a_cell_names_the_cell(tmp_path: Path) -> None:
    """The inspector names a frame in a notebook cell as the notebook does (``Cell In[1]``), not
    by the kernel's temporary file name."""
    book = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(
            "import sagakit\n"
            "async def boom(data, context):\n"
            "    raise ValueError('no')\n"
            "saga = sagakit.Saga('cells', [sagakit.step(boom)])"),
        nbformat.v4.new_code_cell(
            "lab = saga.lab(charts=False)\nawait lab.run()\nprint(lab.inspect('boom')['attempts'][0][7])"),
    ])
    NotebookClient(book, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    (output,) = [output for output in book.cells[1].outputs if output.output_type == "stream"]
    assert output.text.strip() == "['Cell In[1], line 3 in boom']"
