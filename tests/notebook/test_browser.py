"""The failure lab in a real JupyterLab, driven through Debian's Chromium with Playwright.

JupyterLab is started once for the module on 127.0.0.1 with a random token, isolated config,
data, runtime and settings directories, and a temporary root holding a copy of the notebook.
Every wait is on a condition; each scenario saves a screenshot to ``test-output/``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import ROOT, require, stop_process

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
JUPYTER = Path(sys.executable).parent / "jupyter"
NOTEBOOK = ROOT / "notebooks" / "05-failure-lab.ipynb"
TIMEOUT_MS = 60_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_server(url: str, process: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        # Polling a socket that is not listening yet: nothing to subscribe to, so retry briefly.
        time.sleep(0.2)
    raise TimeoutError(f"JupyterLab did not answer at {url}:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def jupyter_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A JupyterLab server on a free port, serving a temporary copy of 05-failure-lab; its URL."""
    require(JUPYTER.exists(), "jupyter lab in the virtual environment (pip install sagakit[lab])")
    base = tmp_path_factory.mktemp("jupyterlab")
    root = base / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
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
    log = base / "jupyterlab.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(JUPYTER), "lab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--allow-root"],
            env=env, stdout=sink, stderr=subprocess.STDOUT, cwd=root,
        )
    try:
        _wait_for_server(f"http://127.0.0.1:{port}/api/status?token={token}", process, log, time.monotonic() + 90)
        yield f"http://127.0.0.1:{port}/lab/tree/{NOTEBOOK.name}?token={token}&reset"
    finally:
        stop_process(process, timeout=20)


@pytest.fixture(scope="module")
def page(jupyter_lab: str, output_dir: Path) -> Iterator[Any]:
    """Chromium showing the notebook after Run All, with the Lab displayed."""
    require(CHROMIUM.exists(), "Debian's chromium at /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            tab.set_default_timeout(TIMEOUT_MS)
            try:
                _open_and_run_all(tab, jupyter_lab)
            except Exception:
                tab.screenshot(path=str(output_dir / "notebook-lab-0-setup-failed.png"))
                raise
            yield tab
        finally:
            browser.close()


def _open_and_run_all(tab: Any, url: str) -> None:
    tab.goto(url)
    tab.locator(".jp-NotebookPanel .jp-Toolbar .jp-KernelName", has_text="Python 3").wait_for()
    tab.locator('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for()
    tab.locator(".lm-MenuBar-item", has_text="Run").first.click()
    tab.locator(".lm-Menu-item").get_by_text("Run All Cells", exact=True).click()
    tab.locator(".sagakit-lab .sagakit-diagram svg").wait_for()
    tab.locator('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for()


def _classes(page: Any, step: str) -> list[str]:
    return list(page.eval_on_selector(f'.sagakit-diagram [id="step-{step}"]', "node => [...node.classList]"))


def _wait_for_class(page: Any, step: str, state: str) -> None:
    page.wait_for_function(
        "([step, state]) => { const n = document.querySelector(`.sagakit-diagram [id=\"step-${step}\"]`);"
        " return n !== null && n.classList.contains(state); }",
        arg=[step, state],
        timeout=TIMEOUT_MS,
    )


def _history_rows(page: Any) -> int:
    return int(page.locator(".sagakit-history tbody tr").count())


def _reset(page: Any) -> None:
    page.locator(".sagakit-reset").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.sagakit-diagram g.step')].every(n => n.classList.contains('state-pending'))"
    )


@pytest.fixture(autouse=True)
def screenshot_on_failure(request: pytest.FixtureRequest, output_dir: Path) -> Iterator[None]:
    """A screenshot of the page when a scenario fails, to see what the browser saw."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and "page" in request.fixturenames:
        page = request.getfixturevalue("page")
        page.screenshot(path=str(output_dir / f"notebook-lab-failed-{request.node.name}.png"))


def _shoot(page: Any, output_dir: Path, name: str) -> None:
    page.locator(".sagakit-lab").scroll_into_view_if_needed()
    page.screenshot(path=str(output_dir / name), full_page=False)


def test_failing_a_middle_step_compensates_every_earlier_step(page: Any, output_dir: Path) -> None:
    """Scenario 1: fault selector of charge_payment to fail, Run: it fails, the earlier steps compensate."""
    _reset(page)
    rows = _history_rows(page)
    page.locator(".sagakit-fault-charge_payment select").select_option("fail")
    page.locator(".sagakit-run").click()
    _wait_for_class(page, "charge_payment", "state-failed")
    _wait_for_class(page, "authorize_payment", "state-compensated")
    _wait_for_class(page, "reserve_inventory", "state-compensated")
    page.wait_for_function(f"() => document.querySelectorAll('.sagakit-history tbody tr').length === {rows + 1}")
    assert "state-failed" in _classes(page, "charge_payment")
    assert "injected" in _classes(page, "charge_payment")
    assert "state-pending" in _classes(page, "ship_order")
    status = page.locator(".sagakit-status").inner_text()
    assert "charge_payment" in status and "InjectedFault" in status
    _shoot(page, output_dir, "notebook-lab-1-failed-step.png")


def test_a_delayed_step_is_seen_in_flight(page: Any, output_dir: Path) -> None:
    """Scenario 2: with a delay on ship_order, the diagram shows it running before its final colour."""
    _reset(page)
    delay = page.locator(".sagakit-delay-ship_order input")
    delay.fill("1.5")
    delay.press("Tab")  # the value goes to the kernel when the field loses focus
    page.locator('.sagakit-diagram [id="step-ship_order"]', has_text="1.5 s").wait_for()
    page.locator(".sagakit-run").click()
    _wait_for_class(page, "ship_order", "state-running")
    assert "state-succeeded" in _classes(page, "charge_payment")
    _shoot(page, output_dir, "notebook-lab-2-in-flight.png")
    _wait_for_class(page, "ship_order", "state-succeeded")
    _wait_for_class(page, "send_receipt", "state-succeeded")
    _shoot(page, output_dir, "notebook-lab-2-finished.png")


def test_run_n_drives_progress_and_history(page: Any, output_dir: Path) -> None:
    """Scenario 3: Run x 20 fills the progress bar to 20 and adds 20 rows to the history."""
    _reset(page)
    rows = _history_rows(page)
    page.locator(".sagakit-run-n").click()
    page.locator(".sagakit-progress .widget-label", has_text="20/20").wait_for()
    page.wait_for_function(f"() => document.querySelectorAll('.sagakit-history tbody tr').length === {rows + 20}")
    width = page.eval_on_selector(".sagakit-progress .progress-bar", "bar => bar.style.width")
    assert width == "100%"
    _shoot(page, output_dir, "notebook-lab-3-run-n.png")
