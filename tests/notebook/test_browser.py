"""The notebook front-end in real browsers: JupyterLab 4, Jupyter Notebook 7 and marimo, in Debian's Chromium.

One Jupyter server for the session (127.0.0.1, random token, isolated config, data, runtime and
settings directories) serves a temporary root holding copies of ``05-failure-lab``: JupyterLab
opens one copy (with a 30-step saga appended), Notebook 7 another, each with its own kernel. One
Chromium serves all three; one marimo server runs a small app showing a run's diagram view and a
saga's Lab. The Lab is the same anywidget view everywhere, so the scenarios share their helpers
(Playwright's locators reach into marimo's shadow roots). Every wait is on a condition; each
scenario saves a screenshot to ``test-output/``. With ``SAGAKIT_SCREENSHOT=1`` the replay scenario also writes
``docs/lab-rollback.png``: the Lab in the middle of a rollback.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from .conftest import ROOT, require, stop_process

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
JUPYTER = Path(sys.executable).parent / "jupyter"
NOTEBOOK = ROOT / "notebooks" / "05-failure-lab.ipynb"
LAB_COPY = "lab-05-failure-lab.ipynb"
NB7_COPY = "nb7-05-failure-lab.ipynb"
TIMEOUT_MS = 60_000
LAB = ".sagakit-lab >> nth=0"  # the order saga's Lab (the 30-step one comes second)

WIDE_SAGA = """\
async def noop(data, context):
    return data

wide = sagakit.Saga("wide", [sagakit.step(noop, compensate=noop, name=f"w{i:02d}") for i in range(30)])
wide.faults["w27"] = "fail"
wide_lab = wide.lab(charts=False)
await wide_lab.run()
wide_lab"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_server(url: str, process: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Jupyter exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        # Polling a socket that is not listening yet: nothing to subscribe to, so retry briefly.
        time.sleep(0.2)
    raise TimeoutError(f"Jupyter did not answer at {url}:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def jupyter_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """One Jupyter server (JupyterLab and Notebook 7 front-ends) on a free port: its base URL and token."""
    require(JUPYTER.exists(), "jupyter lab in the virtual environment (pip install sagakit[lab])")
    base = tmp_path_factory.mktemp("jupyter")
    root = base / "root"
    root.mkdir()
    book = nbformat.read(NOTEBOOK, as_version=4)
    # Example notebooks are stored without a kernel choice: name it, so that no dialog asks.
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(book, root / NB7_COPY)
    book.cells.append(nbformat.v4.new_code_cell(WIDE_SAGA))
    nbformat.write(book, root / LAB_COPY)
    settings = base / "settings"
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        "JUPYTER_DATA_DIR": str(base / "data"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
    }
    port, token = _free_port(), secrets.token_hex(16)
    log = base / "jupyter.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(JUPYTER), "lab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--allow-root"],
            env=env, stdout=sink, stderr=subprocess.STDOUT, cwd=root,
        )
    try:
        _wait_for_server(f"http://127.0.0.1:{port}/api/status?token={token}", process, log, time.monotonic() + 90)
        yield f"http://127.0.0.1:{port}", token
    finally:
        stop_process(process, timeout=20)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (one browser for every front-end).

    Module-scoped: Playwright's synchronous API keeps an event loop running on this thread
    until it stops, which asyncio tests after this module could not live with.
    """
    require(CHROMIUM.exists(), "Debian's chromium at /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        try:
            yield browser
        finally:
            browser.close()


def _run_all(tab: Any, url: str, output_dir: Path, name: str) -> None:
    tab.set_default_timeout(TIMEOUT_MS)
    try:
        tab.goto(url)
        tab.locator(".jp-NotebookPanel .jp-Toolbar .jp-KernelName", has_text="Python 3").wait_for()
        tab.locator(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for()
        tab.locator(".lm-MenuBar-item", has_text="Run").first.click()
        tab.locator(".lm-Menu-item").get_by_text("Run All Cells", exact=True).click()
        tab.locator(".sagakit-lab .sagakit-diagram svg").first.wait_for()
        tab.locator(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for()
    except Exception:
        tab.screenshot(path=str(output_dir / f"notebook-{name}-0-setup-failed.png"))
        raise


def _notebook_tab(chromium: Any, url: str, output_dir: Path, name: str) -> Iterator[Any]:
    tab = chromium.new_page(viewport={"width": 1400, "height": 900})
    try:
        _run_all(tab, url, output_dir, name)
        yield tab
    finally:
        tab.close()


@pytest.fixture(scope="module")
def page(jupyter_server: tuple[str, str], chromium: Any, output_dir: Path) -> Iterator[Any]:
    """JupyterLab 4 at 1400×900 showing the failure lab notebook after Run All."""
    base, token = jupyter_server
    yield from _notebook_tab(chromium, f"{base}/lab/tree/{LAB_COPY}?token={token}&reset", output_dir, "lab")


@pytest.fixture(scope="module")
def notebook7(jupyter_server: tuple[str, str], chromium: Any, output_dir: Path) -> Iterator[Any]:
    """Jupyter Notebook 7 at 1400×900 showing its own copy of the failure lab after Run All."""
    base, token = jupyter_server
    yield from _notebook_tab(chromium, f"{base}/notebooks/{NB7_COPY}?token={token}", output_dir, "nb7")


def _lab(page: Any) -> Any:
    return page.locator(LAB)


def _node(page: Any, step: str) -> Any:
    return _lab(page).locator(f'.sagakit-diagram [id="step-{step}"]')


def _classes(page: Any, step: str) -> list[str]:
    return list(_node(page, step).evaluate("node => [...node.classList]"))


def _wait_for_class(page: Any, step: str, state: str) -> None:
    _lab(page).locator(f'.sagakit-diagram [id="step-{step}"].{state}').wait_for()


def _history(page: Any) -> Any:
    return _lab(page).locator(".sagakit-history tbody tr")


def _history_rows(page: Any) -> int:
    return int(_history(page).count())


def _wait_for_history_rows(page: Any, rows: int) -> None:
    _history(page).nth(rows - 1).wait_for()
    assert _history_rows(page) == rows
    # The heading counts the same runs the table lists (whatever order the front-end applies
    # the rows and the total in).
    _lab(page).locator(f'.sagakit-history [data-runs="{rows}"]').wait_for(timeout=5000)


def _reset(page: Any) -> None:
    _lab(page).locator(".sagakit-reset").click()
    _lab(page).locator(".sagakit-diagram g.step:not(.state-pending)").first.wait_for(state="detached")


def _set_delay(page: Any, step: str, seconds: int) -> None:
    delay = _lab(page).locator(f".sagakit-delay-{step} input")
    delay.fill(str(seconds))
    delay.press("Tab")  # the value goes to the kernel when the field loses focus
    if seconds:
        _node(page, step).filter(has_text=f"delay {seconds} s").wait_for()


def _fail_charge_payment_and_run(page: Any, step: str = "charge_payment", earlier: str = "reserve_inventory") -> None:
    rows = _history_rows(page)
    _lab(page).locator(f".sagakit-fault-{step} select").select_option("fail")
    _lab(page).locator(".sagakit-run").click()
    _wait_for_class(page, step, "state-failed")
    _wait_for_class(page, earlier, "state-compensated")
    _wait_for_history_rows(page, rows + 1)


def _inspect_failed_step(page: Any, step: str) -> Any:
    _node(page, step).click()
    inspector = _lab(page).locator(".sagakit-inspector")
    inspector.locator(".sagakit-attempt").first.wait_for()
    text = inspector.inner_text()
    assert "InjectedFault" in text and "idempotency key" in text
    return inspector


def _stop_slow_run(page: Any, step: str, earlier: str, stopper: Any) -> None:
    """Run with ``step`` delayed, stop it with ``stopper(page)`` once it runs: the rollback shows."""
    rows = _history_rows(page)
    _lab(page).locator(".sagakit-run").click()
    _wait_for_class(page, step, "state-running")
    assert "state-succeeded" in _classes(page, earlier)
    stopper(page)
    _wait_for_class(page, step, "state-cancelled")
    _wait_for_class(page, earlier, "state-compensated")
    _lab(page).locator(".sagakit-status", has_text="stopped").wait_for()
    _wait_for_history_rows(page, rows + 1)
    assert _history(page).first.get_attribute("class") == "run-cancelled"


def _click_stop(page: Any) -> None:
    _lab(page).locator(".sagakit-stop").click()


def _replay(page: Any) -> tuple[Any, int]:
    """Open the replay of the shown run: a function moving the slider (returns its label), and its length."""
    _lab(page).locator(".sagakit-replay-button").click()
    slider = _lab(page).locator(".sagakit-replay input")
    slider.wait_for()
    label = _lab(page).locator(".sagakit-replay-label")

    def seek(position: int) -> str:
        slider.evaluate("(s, position) => { s.value = String(position); s.dispatchEvent(new Event('input')); }",
                        position)
        return str(label.text_content())

    return seek, int(slider.get_attribute("max") or 0)


def _close_replay(page: Any) -> None:
    _lab(page).locator(".sagakit-replay-close").click()
    _lab(page).locator(".sagakit-replay.sagakit-open").wait_for(state="detached")


@pytest.fixture(autouse=True)
def screenshot_on_failure(request: pytest.FixtureRequest, output_dir: Path) -> Iterator[None]:
    """A screenshot of the page when a scenario fails, to see what the browser saw."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for name in ("page", "notebook7"):
            if name in request.fixturenames:
                request.getfixturevalue(name).screenshot(
                    path=str(output_dir / f"notebook-{name}-failed-{request.node.name}.png"))


def _shoot(page: Any, output_dir: Path, name: str, selector: str = LAB) -> None:
    page.locator(selector).scroll_into_view_if_needed()
    page.screenshot(path=str(output_dir / name), full_page=False)


def test_after_run_all_the_lab_shows_a_rolled_back_and_a_stopped_run(page: Any) -> None:
    """The notebook's own cells leave a meaningful Lab: two runs in the history, the last one stopped."""
    assert _history_rows(page) == 2
    statuses = _lab(page).locator(".sagakit-history tbody tr td:nth-child(2)").all_inner_texts()
    assert statuses == ["cancelled", "compensated"]
    assert "state-compensated" in _classes(page, "reserve_inventory")


def test_failing_a_step_by_clicking_then_inspecting_it(page: Any, output_dir: Path) -> None:
    """Fault selector to fail, Run: the step fails, earlier ones compensate; clicking it opens the inspector."""
    _reset(page)
    _fail_charge_payment_and_run(page)
    assert "injected" in _classes(page, "charge_payment")
    assert "state-pending" in _classes(page, "ship_order")
    status = _lab(page).locator(".sagakit-status").inner_text()
    assert "charge_payment" in status and "InjectedFault" in status
    title = _node(page, "charge_payment").locator("title").text_content() or ""
    assert "failed" in title  # the hover summary
    inspector = _inspect_failed_step(page, "charge_payment")
    assert inspector.locator(".sagakit-attempt").count() == 3  # retry=2 in the notebook: three attempts
    _shoot(page, output_dir, "notebook-lab-1-inspector.png")
    inspector.locator(".sagakit-inspector-close").click()
    _lab(page).locator(".sagakit-inspector.sagakit-open").wait_for(state="detached")


def test_replay_steps_through_the_rollback(page: Any, output_dir: Path) -> None:
    """The replay slider redraws the run at each event: before it, mid-rollback, and at its end."""
    if "state-failed" not in _classes(page, "charge_payment"):
        _reset(page)
        _fail_charge_payment_and_run(page)
    seek, frames = _replay(page)
    assert frames >= 6
    seek(0)
    assert all("state-pending" in _classes(page, step) for step in ("reserve_inventory", "charge_payment"))
    middle = next(position for position in range(frames + 1)
                  if "compensation succeeded authorize_payment" in seek(position))
    assert "state-compensated" in _classes(page, "authorize_payment")
    assert "state-succeeded" in _classes(page, "reserve_inventory")  # its compensation is still to come
    assert "state-failed" in _classes(page, "charge_payment")
    _shoot(page, output_dir, "notebook-lab-2-replay-mid-rollback.png")
    if os.environ.get("SAGAKIT_SCREENSHOT") == "1":
        docs = ROOT / "docs"
        docs.mkdir(exist_ok=True)
        _lab(page).screenshot(path=str(docs / "lab-rollback.png"))
    seek(frames)
    assert middle < frames
    assert "state-compensated" in _classes(page, "reserve_inventory")
    _close_replay(page)


def test_stop_and_kernel_interrupt_cancel_a_slow_run(page: Any, output_dir: Path) -> None:
    """With ship_order delayed, Stop (then a kernel interrupt) cancels the run; earlier steps compensate."""
    _reset(page)
    _set_delay(page, "ship_order", 20)

    def interrupt(page: Any) -> None:
        page.locator(".lm-MenuBar-item", has_text="Kernel").first.click()
        page.locator(".lm-Menu-item").get_by_text("Interrupt Kernel", exact=True).click()

    def stop(page: Any) -> None:
        _shoot(page, output_dir, "notebook-lab-3-in-flight.png")
        _click_stop(page)

    for stopper in (stop, interrupt):
        _stop_slow_run(page, "ship_order", "charge_payment", stopper)
        assert "state-compensated" in _classes(page, "reserve_inventory")
    _shoot(page, output_dir, "notebook-lab-3-stopped.png")
    _set_delay(page, "ship_order", 0)


def test_run_n_then_clicking_a_past_run_redraws_it(page: Any, output_dir: Path) -> None:
    """Run x 20 fills progress and history; clicking an older, failed run draws its failure again."""
    _reset(page)
    rows = _history_rows(page)
    assert _lab(page).locator(".sagakit-run-n").inner_text() == "Run \u00d7 20"
    _lab(page).locator(".sagakit-run-n").click()
    _lab(page).locator(".sagakit-progress-label", has_text="20/20").wait_for()
    _wait_for_history_rows(page, rows + 20)
    assert _lab(page).locator(".sagakit-progress progress").evaluate("bar => bar.value === bar.max && bar.max === 20")
    _wait_for_class(page, "charge_payment", "state-succeeded")
    _click_past_failed_run(page, "charge_payment")
    _shoot(page, output_dir, "notebook-lab-4-past-run.png")


def _click_past_failed_run(page: Any, step: str) -> None:
    _lab(page).locator(".sagakit-history tbody tr.run-compensated").first.click()
    _wait_for_class(page, step, "state-failed")
    assert _lab(page).locator(".sagakit-history tbody tr.sagakit-selected.run-compensated").count() == 1
    assert "run " in _lab(page).locator(".sagakit-caption").inner_text()


def test_chart_tooltips_show_on_hover(page: Any, output_dir: Path) -> None:
    """The Lab's charts are drawn interactively (Vega-Lite 5) and hovering a mark shows a tooltip."""
    # Charts are redrawn a moment after the last run: wait for one that has stayed for a while.
    page.wait_for_function(
        "() => { const e = document.querySelector('.sagakit-charts .vega-embed');"
        " if (!e) return false; if (!e.dataset.firstSeen) { e.dataset.firstSeen = String(Date.now()); return false; }"
        " return Date.now() - Number(e.dataset.firstSeen) > 1000; }")
    chart = page.locator(".sagakit-charts .vega-embed").first
    chart.scroll_into_view_if_needed()
    box = chart.bounding_box()
    assert box is not None
    found = False
    for row in range(4, 40, 3):
        for column in range(5, 95, 3):
            page.mouse.move(box["x"] + box["width"] * column / 100, box["y"] + box["height"] * row / 100)
            if page.evaluate("() => { const t = document.getElementById('vg-tooltip-element');"
                             " return t !== null && t.classList.contains('visible') && t.textContent.length > 0; }"):
                found = True
                break
        if found:
            break
    assert found, "no tooltip appeared over the chart"
    assert "step" in (page.locator("#vg-tooltip-element").text_content() or "")
    page.screenshot(path=str(output_dir / "notebook-lab-5-chart-tooltip.png"))


def test_a_30_step_saga_shows_its_failed_step_without_scrolling(page: Any, output_dir: Path) -> None:
    """The failed step of a 30-step saga is inside the view, and the view is no wider than the cell."""
    wide = page.locator(".sagakit-lab >> nth=1")
    wide.scroll_into_view_if_needed()
    page.wait_for_function("() => { const n = document.querySelector('.sagakit-diagram [id=\"step-w27\"]');"
                           " return n !== null && n.classList.contains('state-failed'); }")
    geometry = (
        "lab => { const view = lab.querySelector('.sagakit-viewport').getBoundingClientRect();"
        " const node = lab.querySelector('[id=\"step-w27\"]').getBoundingClientRect();"
        " const cell = lab.closest('.jp-OutputArea-output');"
        " return {view: [view.left, view.right], node: [node.left, node.right],"
        " overflow: cell.scrollWidth - cell.clientWidth}; }")
    inside = f"lab => {{ const g = ({geometry})(lab); return g.view[0] <= g.node[0] && g.node[1] <= g.view[1]" \
             " && g.overflow <= 1; }"
    try:  # the cell may still be settling its width: the view follows it, so wait
        page.wait_for_function(inside, arg=wide.element_handle(), timeout=10_000)
    except Exception:
        raise AssertionError(f"the failed step is not in view: {wide.evaluate(geometry)}") from None
    wide.locator(".sagakit-fit").click()
    scale = wide.locator(".sagakit-zoom-level").inner_text()
    wide.locator(".sagakit-zoom-in").click()
    assert wide.locator(".sagakit-zoom-level").inner_text() != scale
    _shoot(page, output_dir, "notebook-lab-6-wide-saga.png", ".sagakit-lab >> nth=1")


def test_notebook_7_runs_the_lab(notebook7: Any, output_dir: Path) -> None:
    """In Jupyter Notebook 7: fault by clicking, Run, the rollback shows, the inspector opens."""
    page = notebook7
    _reset(page)
    _fail_charge_payment_and_run(page)
    assert "state-compensated" in _classes(page, "authorize_payment")
    _inspect_failed_step(page, "charge_payment")
    _shoot(page, output_dir, "notebook-nb7-1-failed-step.png")


MARIMO_APP = """\
import marimo

app = marimo.App()


@app.cell
def _():
    import marimo as mo

    import sagakit
    from sagakit.notebook.widget import diagram_view

    return diagram_view, mo, sagakit


@app.cell
async def _(sagakit):
    async def reserve(data, context):
        return {**data, "reserved": True}

    async def release(data, context):
        return None

    async def charge(data, context):
        return data

    saga = sagakit.Saga("order", [sagakit.step(reserve, compensate=release), sagakit.step(charge)])
    saga.faults["charge"] = "fail"
    run = await saga.run({"card": "4111 1111 1111 1111"})
    return (run,)


@app.cell
def _(diagram_view, mo, run):
    view = mo.ui.anywidget(diagram_view(run))
    view
    return (view,)


@app.cell
def _(sagakit):
    async def hold(data, context):
        return {**data, "held": True}

    async def unhold(data, context):
        return None

    async def pay(data, context):
        return data

    async def refund(data, context):
        return None

    async def ship(data, context):
        return data

    shop = sagakit.Saga("shop", [sagakit.step(hold, compensate=unhold), sagakit.step(pay, compensate=refund),
                                 sagakit.step(ship)])
    lab = shop.lab(data={"card": "4111 1111 1111 1111"}, charts=False)
    return (lab,)


@app.cell
def _(lab):
    lab
    return


if __name__ == "__main__":
    app.run()
"""


@pytest.fixture(scope="module")
def marimo_app(tmp_path_factory: pytest.TempPathFactory, chromium: Any, output_dir: Path) -> Iterator[Any]:
    """A marimo app (``marimo run``, headless, token-protected) showing a rolled-back run's view and a Lab."""
    marimo = Path(sys.executable).parent / "marimo"
    require(marimo.exists(), "marimo in the virtual environment (pip install marimo)")
    base = tmp_path_factory.mktemp("marimo")
    (base / "app.py").write_text(MARIMO_APP)
    port, token = _free_port(), secrets.token_hex(16)
    log = base / "marimo.log"
    env = {**os.environ, "HOME": str(base), "XDG_CONFIG_HOME": str(base / "config"), "XDG_STATE_HOME": str(base / "state"),
           "XDG_CACHE_HOME": str(base / "cache")}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(marimo), "run", str(base / "app.py"), "--headless", "--host", "127.0.0.1", "--port", str(port),
             "--token", "--token-password", token],
            env=env, stdout=sink, stderr=subprocess.STDOUT, cwd=base,
        )
    tab = None
    try:
        _wait_for_server(f"http://127.0.0.1:{port}/health", process, log, time.monotonic() + 90)
        tab = chromium.new_page(viewport={"width": 1400, "height": 900})
        tab.set_default_timeout(TIMEOUT_MS)
        tab.goto(f"http://127.0.0.1:{port}/?access_token={token}")
        yield tab
    finally:
        if tab is not None:
            tab.close()
        stop_process(process, timeout=20)


def test_marimo_shows_and_inspects_a_run(marimo_app: Any, output_dir: Path) -> None:
    """In marimo (``mo.ui.anywidget``): the run's diagram is coloured, and clicking the failed step inspects it."""
    page = marimo_app
    try:
        page.wait_for_function(
            "() => { const n = [...document.querySelectorAll('*')].map(e => e.shadowRoot || e)"
            ".flatMap(r => [...r.querySelectorAll('[id=\"step-charge\"]')])[0];"
            " return n !== undefined && n.classList.contains('state-failed'); }")
        node = page.locator('[id="step-charge"]')
        assert "state-compensated" in (page.locator('[id="step-reserve"]').get_attribute("class") or "")
        node.click()
        inspector = page.locator(".sagakit-inspector").first  # the run's view comes before the Lab
        inspector.locator(".sagakit-attempt").first.wait_for()
        text = inspector.inner_text()
        assert "InjectedFault" in text and "4111" not in text
        page.screenshot(path=str(output_dir / "notebook-marimo-1-inspector.png"))
    except Exception:
        page.screenshot(path=str(output_dir / "notebook-marimo-failed.png"))
        raise


def test_marimo_runs_a_saga_lab(marimo_app: Any, output_dir: Path) -> None:
    """In marimo (``lab`` in a cell, the same view as ``mo.ui.anywidget(lab.widget)``): inject by clicking, run,
    inspect, replay, stop, click a past run."""
    page = marimo_app
    try:
        _lab(page).locator(".sagakit-diagram svg").wait_for()
        assert _history_rows(page) == 0
        _fail_charge_payment_and_run(page, "pay", "hold")
        _wait_for_history_rows(page, 1)
        assert "injected" in _classes(page, "pay") and "state-pending" in _classes(page, "ship")
        assert "InjectedFault" in _lab(page).locator(".sagakit-status").inner_text()
        text = _inspect_failed_step(page, "pay").inner_text()
        assert "4111" not in text  # the card number is redacted
        page.screenshot(path=str(output_dir / "notebook-marimo-2-lab-inspector.png"))
        seek, frames = _replay(page)
        assert frames >= 4
        seek(0)
        assert "state-pending" in _classes(page, "pay")
        seek(frames)
        assert "state-compensated" in _classes(page, "hold")
        _close_replay(page)
        _reset(page)
        _set_delay(page, "ship", 20)
        _stop_slow_run(page, "ship", "pay", _click_stop)
        assert "state-compensated" in _classes(page, "hold")
        page.screenshot(path=str(output_dir / "notebook-marimo-3-lab-stopped.png"))
        _click_past_failed_run(page, "pay")
        page.screenshot(path=str(output_dir / "notebook-marimo-4-lab-past-run.png"))
    except Exception:
        page.screenshot(path=str(output_dir / "notebook-marimo-lab-failed.png"))
        raise
