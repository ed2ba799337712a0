"""The notebook front-end in real browsers: JupyterLab 4, Jupyter Notebook 7 and marimo, in Debian's Chromium.

One Jupyter server for the session (127.0.0.1, random token, isolated config, data, runtime and
settings directories) serves a temporary root holding copies of ``05-failure-lab``: JupyterLab
opens one copy (with more cells appended: a 25-step saga, steps named with punctuation, a
journal written by another process, a Lab made again and again), Notebook 7 another, each with
its own kernel. One Chromium per module serves them; one marimo server runs a small app showing
a run's diagram view and a saga's Lab, opened once in its light and once in its dark theme. The
Lab is the same anywidget view everywhere, so the scenarios share their helpers (Playwright's
locators reach into marimo's shadow roots). Every wait is on a condition; scenarios save
screenshots to ``test-output/``. With ``SAGAKIT_SCREENSHOT=1`` the replay scenario also writes
``docs/lab-rollback.png``: the Lab in the middle of a rollback.

Each text the Lab draws is measured against its background in light and dark themes: WCAG AA
asks 4.5:1.
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
import urllib.parse
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
LAB = ".sagakit-lab >> nth=0"  # the order saga's Lab (the appended ones come after it)
WIDE = ".sagakit-lab >> nth=1"
NAMES = ".sagakit-lab >> nth=2"
JOURNAL = ".sagakit-lab >> nth=3"
PIVOT = ".sagakit-lab >> nth=4"

APPENDED = [
    """\
async def noop(data, context):
    return data

wide = sagakit.Saga("wide", [sagakit.step(noop, compensate=noop, name=f"w{i:02d}") for i in range(25)])
wide.faults["w19"] = "fail"
wide_lab = wide.lab(charts=False)
await wide_lab.run()
wide_lab""",
    """\
names = sagakit.Saga("names", [sagakit.step(noop, compensate=noop, name=name)
                               for name in ("a b", "a-b", "a.b", "a&amp;b", "last")])
names.faults["last"] = "fail"
names_lab = names.lab(charts=False)
await names_lab.run()
names_lab""",
    """\
import subprocess, sys, tempfile
WRITER = '''
import asyncio, sys
import sagakit

async def reserve(data, context):
    return {**data, "reserved": True}

async def release(data, context):
    return None

async def charge(data, context):
    return {**data, "charged": True}

shop = sagakit.Saga("shop", [sagakit.step(reserve, compensate=release), sagakit.step(charge)])

async def main():
    await shop.run({"order": 1}, journal=sys.argv[1])
    await shop.run({"order": 2}, journal=sys.argv[1], faults={"charge": "fail"})

asyncio.run(main())
'''
journal_path = tempfile.mkdtemp() + "/shop.db"
subprocess.run([sys.executable, "-c", WRITER, journal_path], check=True)

async def reserve(data, context):
    return {**data, "reserved": True}

async def charge(data, context):
    return {**data, "charged": True}

shop = sagakit.Saga("shop", [sagakit.step(reserve, compensate=noop, name="reserve"), sagakit.step(charge)])
journal_lab = shop.lab(journal=journal_path, charts=False)
journal_lab""",
    """\
class FlakyCarrier:
    \"\"\"Down for the first run's three attempts and the resume's first one, then back.\"\"\"
    calls = 0

    async def ship(self, data, context):
        self.calls += 1
        await asyncio.sleep(0.25)  # an attempt in flight long enough to be drawn running
        if self.calls <= 4:
            raise ConnectionError("carrier unreachable")
        return {**data, "shipped": True}

import asyncio
carrier = FlakyCarrier()
paced = sagakit.RetryPolicy(max_retries=2, initial_delay=0.4, jitter=0)  # slow enough to watch
pivot_order = sagakit.Saga("pivot_order", [
    sagakit.step(noop, compensate=noop, name="reserve"),
    sagakit.step(noop, kind="readonly", name="check"),
    sagakit.step(noop, kind="pivot", name="capture"),
    sagakit.step(carrier.ship, name="ship", retry=paced),
    sagakit.step(noop, name="mail"),
])
pivot_lab = pivot_order.lab(journal=tempfile.mkdtemp() + "/orders.db", data={})
await pivot_lab.run()
pivot_lab""",
    "labs = []",
    "labs.append(order_saga.lab(charts=False))\nlabs[-1]",
    "print([each.watching for each in labs])",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_server(url: str, process: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        # Polling a socket that is not listening yet: nothing to subscribe to, so retry briefly.
        time.sleep(0.2)
    raise TimeoutError(f"the server did not answer at {url}:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def jupyter_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """One Jupyter server (JupyterLab and Notebook 7 front-ends) on a free port: its URL, token and root."""
    require(JUPYTER.exists(), "jupyter lab in the virtual environment (pip install sagakit[lab])")
    base = tmp_path_factory.mktemp("jupyter")
    root = base / "root"
    root.mkdir()
    book = nbformat.read(NOTEBOOK, as_version=4)
    # Example notebooks are stored without a kernel choice: name it, so that no dialog asks.
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(book, root / NB7_COPY)
    book.cells.extend(nbformat.v4.new_code_cell(source) for source in APPENDED)
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
        yield f"http://127.0.0.1:{port}", token, root
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


def _idle(tab: Any) -> None:
    tab.locator(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for()


def _menu(tab: Any, menu: str, *items: str) -> None:
    tab.locator(".lm-MenuBar-item", has_text=menu).first.click()
    for item in items[:-1]:
        tab.locator(".lm-Menu-item", has_text=item).first.hover()
    tab.locator(".lm-Menu-item").get_by_text(items[-1], exact=True).click()


def _run_all(tab: Any, url: str, output_dir: Path, name: str) -> None:
    tab.set_default_timeout(TIMEOUT_MS)
    try:
        tab.goto(url)
        tab.locator(".jp-NotebookPanel .jp-Toolbar .jp-KernelName", has_text="Python 3").wait_for()
        _idle(tab)
        _menu(tab, "Run", "Run All Cells")
        tab.locator(".sagakit-lab .sagakit-diagram svg").first.wait_for()
        _idle(tab)
    except Exception:
        tab.screenshot(path=str(output_dir / f"notebook-{name}-0-setup-failed.png"))
        raise


def _notebook_tab(chromium: Any, url: str, output_dir: Path, name: str) -> Iterator[Any]:
    tab = chromium.new_page(viewport={"width": 1400, "height": 900})
    tab.on("crash", lambda: print(f"the {name} tab crashed"))
    try:
        _run_all(tab, url, output_dir, name)
        yield tab
    finally:
        tab.close()


@pytest.fixture(scope="module")
def page(jupyter_server: tuple[str, str, Path], chromium: Any, output_dir: Path) -> Iterator[Any]:
    """JupyterLab 4 at 1400×900 showing the failure lab notebook after Run All."""
    base, token, _ = jupyter_server
    yield from _notebook_tab(chromium, f"{base}/lab/tree/{LAB_COPY}?token={token}&reset", output_dir, "lab")


@pytest.fixture(scope="module")
def notebook7(jupyter_server: tuple[str, str, Path], chromium: Any, output_dir: Path) -> Iterator[Any]:
    """Jupyter Notebook 7 at 1400×900 showing its own copy of the failure lab after Run All."""
    base, token, _ = jupyter_server
    yield from _notebook_tab(chromium, f"{base}/notebooks/{NB7_COPY}?token={token}", output_dir, "nb7")


# -- helpers shared by every front-end --------------------------------------------------------


def _lab(page: Any, which: str = LAB) -> Any:
    return page.locator(which)


def _node(page: Any, step: str, which: str = LAB) -> Any:
    return _lab(page, which).locator(f'.sagakit-diagram [id="step-{step}"]')


def _classes(page: Any, step: str, which: str = LAB) -> list[str]:
    return list(_node(page, step, which).evaluate("node => [...node.classList]"))


def _wait_for_class(page: Any, step: str, state: str, which: str = LAB) -> None:
    _lab(page, which).locator(f'.sagakit-diagram [id="step-{step}"].{state}').wait_for()


def _history(page: Any, which: str = LAB) -> Any:
    return _lab(page, which).locator(".sagakit-history tbody tr")


def _history_rows(page: Any, which: str = LAB) -> int:
    return int(_history(page, which).count())


def _wait_for_history_rows(page: Any, rows: int, which: str = LAB) -> None:
    _history(page, which).nth(rows - 1).wait_for()
    assert _history_rows(page, which) == rows
    # The heading counts the same runs the table lists (whatever order the front-end applies
    # the rows and the total in).
    _lab(page, which).locator(f'.sagakit-history [data-runs="{rows}"]').wait_for(timeout=5000)


def _status(page: Any, which: str = LAB) -> str:
    return str(_lab(page, which).locator(".sagakit-status").text_content())


def _reset(page: Any) -> None:
    _lab(page).locator(".sagakit-reset").click()
    _lab(page).locator(".sagakit-diagram g.step:not(.state-pending)").first.wait_for(state="detached")


def _set_delay(page: Any, step: str, seconds: int) -> None:
    delay = _lab(page).locator(f".sagakit-delay-{step} input")
    delay.fill(str(seconds))
    delay.press("Tab")  # the value goes to the kernel when the field loses focus
    if seconds:
        _node(page, step).filter(has_text=f"delay {seconds} s").wait_for()


def _set_pace(page: Any, seconds: float) -> None:
    _lab(page).locator(".sagakit-pace select").select_option(str(seconds) if seconds else "0")


def _fail_and_run(page: Any, step: str = "charge_payment", earlier: str = "reserve_inventory") -> None:
    rows = _history_rows(page)
    _lab(page).locator(f".sagakit-fault-{step} select").select_option("fail")
    _lab(page).locator(".sagakit-run").click()
    _wait_for_history_rows(page, rows + 1)
    _wait_for_class(page, step, "state-failed")
    _wait_for_class(page, earlier, "state-compensated")


def _inspect(page: Any, step: str, which: str = LAB) -> Any:
    _node(page, step, which).click()
    inspector = _lab(page, which).locator(".sagakit-inspector")
    inspector.locator(".sagakit-attempt").first.wait_for()
    return inspector


def _stop_slow_run(page: Any, step: str, earlier: str, stopper: Any) -> None:
    """Run with ``step`` delayed, stop it with ``stopper(page)`` once it runs: the rollback shows."""
    rows = _history_rows(page)
    _lab(page).locator(".sagakit-run").click()
    _wait_for_class(page, step, "state-running")
    assert "state-succeeded" in _classes(page, earlier)
    stopper(page)
    _wait_for_history_rows(page, rows + 1)
    _lab(page).locator(".sagakit-status", has_text="stopped").wait_for()
    _wait_for_class(page, step, "state-cancelled")
    _wait_for_class(page, earlier, "state-compensated")
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


def _click_past_failed_run(page: Any, step: str) -> None:
    _lab(page).locator(".sagakit-history tbody tr.run-compensated").first.click()
    _wait_for_class(page, step, "state-failed")
    assert _lab(page).locator(".sagakit-history tbody tr.sagakit-selected.run-compensated").count() == 1
    assert "run " in _lab(page).locator(".sagakit-caption").inner_text()


# Every visible text of an element, with its colour and the colour behind it (SVG text in a box:
# the box's fill), as WCAG computes contrast: relative luminance, (L1 + 0.05) / (L2 + 0.05).
CONTRAST = """root => {
  const parse = (c) => { const m = /rgba?\\(([^)]+)\\)/.exec(c || ''); if (!m) return null;
    const p = m[1].split(/[ ,/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const lum = ([r, g, b]) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const blend = (top, bottom) => { const a = top[3];
    return [0, 1, 2].map((i) => top[i] * a + bottom[i] * (1 - a)).concat([1]); };
  const up = (n) => n.parentElement || (n.getRootNode && n.getRootNode().host) || null;
  const behind = (node) => { const layers = [];
    for (let n = node; n; n = up(n)) { const c = parse(getComputedStyle(n).backgroundColor);
      if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; } }
    let colour = [255, 255, 255, 1]; for (const layer of layers.reverse()) colour = blend(layer, colour); return colour; };
  const ratio = (fg, bg) => { const [a, b] = [lum(fg), lum(bg)]; return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05); };
  const found = [];
  const visible = (el) => { const r = el.getBoundingClientRect(); const s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'; };
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let t = walker.nextNode(); t; t = walker.nextNode()) {
    const el = t.parentElement;
    if (!t.textContent.trim() || !el || el.closest('title, style, option') || !visible(el)) continue;
    let fg, bg;
    if (el instanceof SVGElement) {
      const text = el.closest('text');
      fg = parse(getComputedStyle(text).fill);
      const group = text.parentNode;
      const shape = group && group.classList && group.classList.contains('node')
        ? group.querySelector(':scope > path, :scope > polygon, :scope > ellipse') : null;
      const page = behind(text.closest('svg'));  // a static drawing paints its own background
      bg = shape ? parse(getComputedStyle(shape).fill) : page;
      if (!bg || bg[3] === 0) bg = page; else if (bg[3] < 1) bg = blend(bg, page);
    } else { fg = parse(getComputedStyle(el).color); bg = behind(el); }
    if (!fg) continue;
    if (fg[3] < 1) fg = blend(fg, bg);
    found.push({text: t.textContent.trim().slice(0, 50), ratio: Math.round(ratio(fg, bg) * 100) / 100});
  }
  for (const el of root.querySelectorAll('select, input[type=number], button')) {
    if (!visible(el)) continue;
    const bg = behind(el); const fg = blend(parse(getComputedStyle(el).color), bg);
    found.push({text: `<${el.tagName.toLowerCase()}> ${(el.value || el.textContent || '').slice(0, 30)}`,
                ratio: Math.round(ratio(fg, bg) * 100) / 100});
  }
  return found;
}"""


def _assert_readable(page: Any, which: str = LAB, minimum: int = 40) -> None:
    """Every text of the Lab meets WCAG AA (4.5:1) against what is behind it."""
    measured = _lab(page, which).evaluate(CONTRAST)
    assert len(measured) >= minimum, f"too few texts measured: {measured}"
    low = [item for item in measured if item["ratio"] < 4.5]
    assert not low, f"texts below 4.5:1: {low}"


def _theme(page: Any, name: str, *, views: bool = True) -> None:
    """Switch a Jupyter front-end's theme through its Settings menu (``views``: wait for the
    Labs to follow it)."""
    _menu(page, "Settings", "Theme", name)
    light = "true" if "Light" in name else "false"
    page.wait_for_function(f"document.body.dataset.jpThemeLight === '{light}'")
    theme = "light" if light == "true" else "dark"
    if views:
        page.locator(f'.sagakit-lab[data-sk-theme="{theme}"]').first.wait_for()


# The static fallbacks a live view hides, shown for measuring (their DOM and theme untouched).
SHOW_STATIC = """() => { const style = document.createElement('style'); style.id = 'sagakit-show-static';
  style.textContent = 'body .jp-OutputArea-child:has(> .jp-OutputArea-output .sagakit-static) { display: flex !important; }'
    + ' body .sagakit-static { display: block !important; }';
  document.head.append(style); }"""
HIDE_STATIC = "() => document.getElementById('sagakit-show-static').remove()"


def _assert_static_readable(page: Any, selector: str, minimum: int) -> list[dict[str, Any]]:
    """Every text of a static drawing (its step names, arrow labels, caption and status line)
    meets 4.5:1 against what is behind it; returns what was measured."""
    found = page.locator(selector)
    found.scroll_into_view_if_needed()
    measured: list[dict[str, Any]] = found.evaluate(CONTRAST)
    assert len(measured) >= minimum, f"too few texts measured: {measured}"
    low = [item for item in measured if item["ratio"] < 4.5]
    assert not low, f"texts below 4.5:1 in {selector}: {low}"
    return measured


def _assert_stuck_bars_are_drawn_stuck(page: Any) -> None:
    """The stuck step's attempts in the pivot Lab's timeline have the diagram's stuck colour and
    an entry in the chart's key."""
    pivot = _lab(page, PIVOT)
    bars = pivot.locator(".sagakit-chart-timeline .sagakit-bar-forward.state-stuck")
    bars.first.wait_for()
    assert bars.count() == 3 and pivot.locator(".sagakit-chart-timeline .sagakit-bar.state-failed").count() == 0
    bar, box = pivot.evaluate("""lab => [getComputedStyle(lab.querySelector('.sagakit-chart-timeline .state-stuck')).fill,
        getComputedStyle(lab.querySelector('.sagakit-diagram [id="step-ship"] > path')).stroke]""")
    assert bar == box, (bar, box)
    key = pivot.locator(".sagakit-chart-timeline .sagakit-key-stuck")
    assert key.inner_text().startswith("stuck") and "retries" in (key.get_attribute("title") or "")


@pytest.fixture(autouse=True)
def screenshot_on_failure(request: pytest.FixtureRequest, output_dir: Path) -> Iterator[None]:
    """A screenshot of the page when a scenario fails, to see what the browser saw."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for name in ("page", "notebook7", "marimo_app"):
            if name in request.fixturenames:
                request.getfixturevalue(name).screenshot(
                    path=str(output_dir / f"notebook-{name}-failed-{request.node.name}.png"))


def _shoot(page: Any, output_dir: Path, name: str, selector: str = LAB) -> None:
    page.locator(selector).scroll_into_view_if_needed()
    page.screenshot(path=str(output_dir / name), full_page=False)


# -- JupyterLab 4 -----------------------------------------------------------------------------


def test_after_run_all_the_lab_shows_a_rolled_back_and_a_stopped_run(page: Any) -> None:
    """The notebook's own cells leave a meaningful Lab: two runs in the history, the last one
    stopped (its words say so, and how many steps were compensated); the 5-step diagram opens at
    a readable size."""
    _lab(page).scroll_into_view_if_needed()  # JupyterLab leaves cells out of sight unrendered
    _lab(page).locator(".sagakit-replay.sagakit-open").wait_for(state="detached")  # the paced playback ended
    assert _history_rows(page) == 2
    statuses = _lab(page).locator(".sagakit-history tbody tr .sagakit-status-cell").all_inner_texts()
    assert statuses == ["stopped", "rolled back"]
    assert "state-compensated" in _classes(page, "reserve_inventory")
    status = _status(page)
    assert "stopped while ship_order ran" in status and "3 steps compensated" in status
    assert "failed at" not in status and "CancelledError" not in status
    assert int(_lab(page).locator(".sagakit-zoom-level").inner_text().rstrip("%")) >= 75
    cancelled = _lab(page).locator(".sagakit-legend-cancelled")  # a stopped step has its legend entry
    assert cancelled.inner_text() == "cancelled" and "stopped" in (cancelled.get_attribute("title") or "")


def test_the_lab_reads_at_wcag_aa_in_light_and_dark(page: Any, output_dir: Path) -> None:
    """Every text of the Lab (title, step names, labels, diagram, status, charts, history) meets
    4.5:1 in JupyterLab Light and in JupyterLab Dark; the view follows the theme switch. The
    pivot saga's Lab, showing its stuck run (the stuck step, its status line and history row,
    the kinds), is measured too; its timeline draws the stuck step's attempts in the diagram's
    stuck colour, with a key entry, in both themes."""
    _assert_readable(page)
    _shoot(page, output_dir, "notebook-lab-light.png")
    _wait_for_class(page, "ship", "state-stuck", PIVOT)
    _lab(page, PIVOT).scroll_into_view_if_needed()
    _assert_stuck_bars_are_drawn_stuck(page)
    _assert_readable(page, PIVOT, minimum=30)
    _shoot(page, output_dir, "notebook-lab-pivot-stuck-light.png", PIVOT)
    _theme(page, "JupyterLab Dark")
    try:
        _assert_readable(page)
        _assert_readable(page, WIDE, minimum=30)
        _shoot(page, output_dir, "notebook-lab-dark.png")
        _lab(page, PIVOT).scroll_into_view_if_needed()
        _assert_stuck_bars_are_drawn_stuck(page)
        _assert_readable(page, PIVOT, minimum=30)
        _shoot(page, output_dir, "notebook-lab-pivot-stuck-dark.png", PIVOT)
    finally:
        _theme(page, "JupyterLab Light")


def test_failing_a_step_by_clicking_then_inspecting_it(page: Any, output_dir: Path) -> None:
    """Fault selector to fail, Run: the step fails, earlier ones compensate; the inspector shows
    its three attempts and its input; a compensation's line shows what the compensation received."""
    _set_pace(page, 0)
    _reset(page)
    _fail_and_run(page)
    assert "injected" in _classes(page, "charge_payment")
    assert "state-pending" in _classes(page, "ship_order")
    status = _status(page)
    assert status.startswith("✖ rolled back: charge_payment failed (InjectedFault") and "2 steps compensated" in status
    title = _node(page, "charge_payment").locator("title").text_content() or ""
    assert "failed" in title  # the hover summary
    inspector = _inspect(page, "charge_payment")
    assert inspector.locator(".sagakit-attempt").count() == 3  # retry=2 in the notebook: three attempts
    assert "'payment_hold': " in inspector.locator(".sagakit-inspector-input").inner_text()
    _shoot(page, output_dir, "notebook-lab-1-inspector.png")
    _node(page, "reserve_inventory").click()
    _lab(page).locator(".sagakit-inspector-title", has_text="reserve_inventory").wait_for()
    _lab(page).locator(".sagakit-inspector-switch").click()
    _lab(page).locator(".sagakit-inspector-title", has_text="compensation of reserve_inventory").wait_for()
    assert "'reservation': " in _lab(page).locator(".sagakit-inspector-input").inner_text()
    _lab(page).locator(".sagakit-inspector-close").click()
    _lab(page).locator(".sagakit-inspector.sagakit-open").wait_for(state="detached")


def test_replay_steps_through_the_rollback_and_a_run_ends_it(page: Any, output_dir: Path) -> None:
    """The replay slider redraws the run at each event; pressing Run while it is open shows the
    new run, not the replayed frame."""
    if "state-failed" not in _classes(page, "charge_payment"):
        _reset(page)
        _fail_and_run(page)
    seek, frames = _replay(page)
    assert frames >= 6
    seek(0)
    assert all("state-pending" in _classes(page, step) for step in ("reserve_inventory", "charge_payment"))
    middle = next(position for position in range(frames + 1)
                  if "compensation succeeded authorize_payment" in seek(position))
    assert "state-compensated" in _classes(page, "authorize_payment")
    assert "state-succeeded" in _classes(page, "reserve_inventory")  # its compensation is still to come
    assert "state-failed" in _classes(page, "charge_payment")
    assert middle < frames
    _shoot(page, output_dir, "notebook-lab-2-replay-mid-rollback.png")
    if os.environ.get("SAGAKIT_SCREENSHOT") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        _lab(page).screenshot(path=str(ROOT / "docs" / "lab-rollback.png"))
    seek(0)
    _inspect(page, "charge_payment")
    rows = _history_rows(page)
    _lab(page).locator(".sagakit-fault-charge_payment select").select_option("none")
    _lab(page).locator(".sagakit-run").click()
    _wait_for_history_rows(page, rows + 1)
    _lab(page).locator(".sagakit-replay.sagakit-open").wait_for(state="detached")
    _wait_for_class(page, "send_receipt", "state-succeeded")
    assert "state-succeeded" in _classes(page, "charge_payment")
    # The open inspector follows the new run: its one attempt succeeded.
    _lab(page).locator(".sagakit-inspector-state", has_text="succeeded").wait_for()
    assert _lab(page).locator(".sagakit-inspector .sagakit-attempt").count() == 1
    _lab(page).locator(".sagakit-inspector-close").click()


def test_a_fast_rollback_is_played_back_at_the_chosen_pace(page: Any) -> None:
    """With a pace chosen, a rollback too fast to see is played back once it ends: each
    compensation is seen in flight, then done, one after another; then the live view returns."""
    _set_pace(page, 0.1)
    # What the two first steps show, recorded from the moment the playback starts.
    _lab(page).evaluate("""lab => { window.__seen = [];
        const watched = ['step-authorize_payment', 'step-reserve_inventory'].map(id => lab.querySelector(`[id="${id}"]`));
        const state = n => [...n.classList].find(c => c.startsWith('state-'));
        const bar = lab.querySelector('.sagakit-replay');
        window.__observer = new MutationObserver(() => {
          if (bar.classList.contains('sagakit-playing')) window.__seen.push(watched.map(state).join(' ')); });
        watched.forEach(n => window.__observer.observe(n, {attributes: true, attributeFilter: ['class']})); }""")
    rows = _history_rows(page)
    _lab(page).locator(".sagakit-fault-charge_payment select").select_option("fail")
    _lab(page).locator(".sagakit-run").click()
    _wait_for_history_rows(page, rows + 1)
    _lab(page).locator(".sagakit-replay.sagakit-playing").wait_for()
    _lab(page).locator(".sagakit-replay.sagakit-open").wait_for(state="detached", timeout=30_000)
    seen = page.evaluate("() => { window.__observer.disconnect(); return window.__seen; }")
    assert "state-compensating state-succeeded" in seen
    assert "state-compensated state-succeeded" in seen
    assert "state-compensated state-compensating" in seen
    assert seen.index("state-compensated state-succeeded") < seen.index("state-compensated state-compensating")
    assert "state-compensated" in _classes(page, "reserve_inventory")
    _set_pace(page, 0)


def test_stop_and_kernel_interrupt_cancel_a_slow_run_and_the_charts_follow(page: Any, output_dir: Path) -> None:
    """With ship_order delayed, Stop (then a kernel interrupt) cancels the run; earlier steps
    compensate; the status and the charts tell of the stopped run, not of the one before."""
    _reset(page)
    _set_delay(page, "ship_order", 20)

    def interrupt(page: Any) -> None:
        _menu(page, "Kernel", "Interrupt Kernel")

    def stop(page: Any) -> None:
        _shoot(page, output_dir, "notebook-lab-3-in-flight.png")
        _click_stop(page)

    for stopper in (stop, interrupt):
        _stop_slow_run(page, "ship_order", "charge_payment", stopper)
        assert "state-compensated" in _classes(page, "reserve_inventory")
        assert "3 steps compensated" in _status(page)
    _lab(page).locator(".sagakit-chart-title", has_text="stopped while ship_order ran").wait_for()
    _shoot(page, output_dir, "notebook-lab-3-stopped.png")
    _set_delay(page, "ship_order", 0)


def test_run_n_totals_and_a_past_run_redraws_diagram_and_charts(page: Any, output_dir: Path) -> None:
    """Run x 20 fills progress and history and the status gives the totals; clicking an older,
    failed run draws its failure and its timeline again; hovering a bar shows what it was."""
    _reset(page)
    rows = _history_rows(page)
    _lab(page).locator(".sagakit-fault-ship_order select").select_option("fail")
    _lab(page).locator(".sagakit-probability-ship_order input").evaluate(
        "(s) => { s.value = '0.5'; s.dispatchEvent(new Event('change')); }")
    _node(page, "ship_order").filter(has_text="p=0.5").wait_for()
    assert _lab(page).locator(".sagakit-run-n").inner_text() == "Run \u00d7 20"
    _lab(page).locator(".sagakit-run-n").click()
    _lab(page).locator(".sagakit-progress-label", has_text="20/20").wait_for()
    _wait_for_history_rows(page, rows + 20)
    _lab(page).locator(".sagakit-status", has_text="20 runs: ").wait_for()
    assert "failed at ship_order ×" in _status(page)
    _click_past_failed_run(page, "ship_order")
    number = _lab(page).locator(".sagakit-history tbody tr.sagakit-selected").get_attribute("data-run")
    _lab(page).locator(".sagakit-chart-title", has_text=f"run {number}: rolled back").wait_for()
    bar = _lab(page).locator(".sagakit-bar-compensate").first
    bar.hover()
    tip = _lab(page).locator(".sagakit-tooltip.sagakit-open")
    tip.wait_for()
    assert "compensation of" in tip.inner_text() and "attempt 1" in tip.inner_text()
    _shoot(page, output_dir, "notebook-lab-4-past-run.png")


def test_picking_two_runs_compares_them(page: Any, output_dir: Path) -> None:
    """Ticking two history rows shows both runs side by side, the first divergence named and its row marked."""
    completed = _lab(page).locator(".sagakit-history tbody tr.run-completed").first
    rolled_back = _lab(page).locator(".sagakit-history tbody tr.run-compensated").first
    completed.locator(".sagakit-pick").check()
    rolled_back.locator(".sagakit-pick").check()
    comparison = _lab(page).locator(".sagakit-compare.sagakit-open")
    comparison.wait_for()
    assert "first divergence at ship_order: status" in comparison.locator(".sagakit-compare-first").inner_text()
    assert comparison.locator(".sagakit-compare-drawing svg").count() == 2
    assert comparison.locator('.sagakit-compare-b [data-id="step-ship_order"].state-failed, '
                              '.sagakit-compare-a [data-id="step-ship_order"].state-failed').count() == 1
    assert comparison.locator("tr.sagakit-first td").first.inner_text() == "ship_order"
    _shoot(page, output_dir, "notebook-lab-5-compare.png", ".sagakit-compare >> nth=0")
    comparison.locator(".sagakit-compare-close").click()
    _lab(page).locator(".sagakit-compare.sagakit-open").wait_for(state="detached")


def test_keys_pressed_in_the_lab_stay_in_the_lab(page: Any) -> None:
    """An arrow key on a slider moves the slider; JupyterLab's own shortcuts (collapsing the
    notebook's heading, moving between cells) do not fire."""
    page.locator(".jp-MarkdownCell").first.click()
    page.keyboard.press("Escape")
    visible = "() => [...document.querySelectorAll('.jp-Notebook .jp-Cell')].filter(c => c.offsetParent !== null).length"
    before = page.evaluate(visible)
    slider = _lab(page).locator(".sagakit-probability-reserve_inventory input")
    slider.focus()
    value = float(slider.input_value())
    slider.press("ArrowLeft")
    slider.press("ArrowLeft")
    assert float(slider.input_value()) < value
    assert page.evaluate(visible) == before
    assert page.locator(".jp-Notebook .jp-Cell.jp-mod-active .sagakit-lab").count() == 1
    slider.evaluate("(s) => { s.value = '1'; s.dispatchEvent(new Event('change')); }")


def test_fit_shows_a_25_step_saga_whole_at_a_readable_size(page: Any, output_dir: Path) -> None:
    """After Fit, every step of a 25-step saga (its failed step 20 included) is inside the view,
    wrapped onto rows, and no text is drawn smaller than 11 pixels."""
    wide = _lab(page, WIDE)
    wide.scroll_into_view_if_needed()
    wide.locator(".sagakit-fit").click()
    geometry = """lab => { const view = lab.querySelector('.sagakit-viewport').getBoundingClientRect();
      const svg = lab.querySelector('.sagakit-diagram svg'); const scale = svg.getScreenCTM().a;
      const nodes = [...lab.querySelectorAll('.sagakit-diagram g.step')].map(n => n.getBoundingClientRect());
      const outside = nodes.filter(r => r.left < view.left - 1 || r.right > view.right + 1 || r.top < view.top - 1
                                       || r.bottom > view.bottom + 1).length;
      const fonts = [...svg.querySelectorAll('text[font-size]')].map(t => Number(t.getAttribute('font-size')) * scale);
      const cell = lab.closest('.jp-OutputArea-output');
      return {nodes: nodes.length, outside, smallest: Math.min(...fonts), overflow: cell.scrollWidth - cell.clientWidth,
              note: lab.querySelector('.sagakit-fit-note').textContent}; }"""
    try:  # the cell may still be settling its width: the view follows it, so wait
        page.wait_for_function(f"lab => {{ const g = ({geometry})(lab); return g.nodes === 25 && g.outside === 0; }}",
                               arg=wide.element_handle(), timeout=15_000)
    except Exception:
        raise AssertionError(f"the saga is not all in view: {wide.evaluate(geometry)}") from None
    found = wide.evaluate(geometry)
    assert found["smallest"] >= 10.9 and found["overflow"] <= 1 and found["note"] == ""
    assert "state-failed" in _classes(page, "w19", WIDE)
    _shoot(page, output_dir, "notebook-lab-6-wide-saga-fit.png", WIDE)
    scale = wide.locator(".sagakit-zoom-level").inner_text()
    wide.locator(".sagakit-zoom-in").click()
    assert wide.locator(".sagakit-zoom-level").inner_text() != scale


def test_steps_named_with_punctuation_or_entities_keep_their_own_classes_and_colours(page: Any) -> None:
    """``a b``, ``a-b``, ``a.b`` and ``a&amp;b`` each have their own node and fault selector, and
    each is coloured by the run."""
    names = _lab(page, NAMES)
    for step in ("a b", "a-b", "a.b", "a&amp;b"):
        assert "state-compensated" in _classes(page, step, NAMES), step
    assert names.locator(".sagakit-step-name").first.get_attribute("title") == "a b"  # names cut keep a tooltip
    selectors = names.locator(".sagakit-step select")
    classes = names.locator(".sagakit-step").evaluate_all("rows => rows.map(r => r.className)")
    assert selectors.count() == 5 and len(set(classes)) == 5


def test_a_journal_backed_lab_draws_and_compares_runs_another_process_recorded(page: Any) -> None:
    """The Lab given a journal lists the runs another process recorded; clicking one draws it, and two compare."""
    journal = _lab(page, JOURNAL)
    journal.scroll_into_view_if_needed()
    assert "shop.db" in journal.locator(".sagakit-title").inner_text()
    assert journal.locator(".sagakit-history tbody tr").count() == 2
    journal.locator('.sagakit-history tbody tr[data-run="2"]').click()
    _wait_for_class(page, "charge", "state-failed", JOURNAL)
    _wait_for_class(page, "reserve", "state-compensated", JOURNAL)
    _inspect(page, "reserve", JOURNAL)
    assert "'order': 2" in journal.locator(".sagakit-inspector-input").inner_text()
    for number in ("1", "2"):
        journal.locator(f'.sagakit-history tbody tr[data-run="{number}"] .sagakit-pick').check()
    journal.locator(".sagakit-compare-first", has_text="first divergence at charge").wait_for()


def test_a_stuck_run_is_drawn_stuck_and_resumed_from_the_journal_live(page: Any, output_dir: Path) -> None:
    """The pivot saga's run is stuck at ship: the pivot has its double outline, the arrow past it
    reads "point of no return", ship is ``state-stuck`` with its legend entry, the history row
    reads stuck and offers Resume. Resume carries it on live (ship retrying with its attempt
    named, then succeeded), in the same row, which then reads completed and resumed; the replay
    marks the point where it was resumed."""
    pivot = _lab(page, PIVOT)
    pivot.scroll_into_view_if_needed()
    _wait_for_class(page, "ship", "state-stuck", PIVOT)
    assert "kind-pivot" in _classes(page, "capture", PIVOT) and "kind-readonly" in _classes(page, "check", PIVOT)
    assert "kind-retriable" in _classes(page, "mail", PIVOT)
    assert (pivot.locator('.sagakit-diagram [id="no-return"] text').text_content() or "").strip() == "point of no return"
    assert pivot.locator('.sagakit-diagram [id="undo-ship"], .sagakit-diagram [id="undo-capture"]').count() == 0
    legend = pivot.locator(".sagakit-legend-stuck")
    assert legend.inner_text().startswith("stuck") and "resume" in (legend.get_attribute("title") or "")
    assert pivot.locator(".sagakit-legend-pivot").count() == 1 and pivot.locator(".sagakit-legend-no-undo").count() == 0
    assert pivot.locator(".sagakit-step.kind-pivot .sagakit-kind").inner_text() == "pivot"
    assert pivot.locator(".sagakit-fault-ship option").all_inner_texts() == ["none", "fail", "fail_after", "cancel"]
    status = _status(page, PIVOT)
    assert status.startswith("⚠ stuck at ship after 3 attempts (ConnectionError: carrier unreachable)")
    assert "nothing undone (past the pivot capture)" in status
    row = _history(page, PIVOT).first
    assert row.get_attribute("class") == "run-stuck" and row.locator(".sagakit-status-cell").inner_text() == "stuck"
    # What ship shows during the resume, from the click on.
    pivot.evaluate("""lab => { window.__ship = [];
        const node = lab.querySelector('.sagakit-diagram [id="step-ship"]');
        const note = () => [...node.querySelectorAll('text:not(.undo-line)')].pop().textContent;
        window.__shipObserver = new MutationObserver(() => window.__ship.push(
          [...node.classList].find(c => c.startsWith('state-')) + ' ' + note()));
        window.__shipObserver.observe(node, {attributes: true, subtree: true, characterData: true, childList: true}); }""")
    row.locator(".sagakit-resume").click()
    _wait_for_class(page, "mail", "state-succeeded", PIVOT)
    pivot.locator(".sagakit-status", has_text="resumed once").wait_for()
    seen = page.evaluate("() => { window.__shipObserver.disconnect(); return window.__ship; }")
    assert "state-running attempt 4/6" in seen and "state-retrying attempt 4 failed" in seen, seen
    assert "state-running attempt 5/6" in seen, seen
    assert seen.index("state-retrying attempt 4 failed") < seen.index("state-running attempt 5/6")
    assert seen[-1].startswith("state-succeeded"), seen
    assert "state-succeeded" in _classes(page, "ship", PIVOT)
    _wait_for_history_rows(page, 1, PIVOT)
    row = _history(page, PIVOT).first
    row.locator(".sagakit-resumed-note").wait_for()
    assert row.get_attribute("class") == "run-completed" and row.locator(".sagakit-resume").count() == 0
    _shoot(page, output_dir, "notebook-lab-pivot-resumed.png", PIVOT)
    pivot.locator(".sagakit-replay-button").click()
    pivot.locator(".sagakit-replay-resumed").click()
    assert "run resumed (it was stuck)" in pivot.locator(".sagakit-replay-label").inner_text()
    assert "state-stuck" in _classes(page, "ship", PIVOT)
    pivot.locator(".sagakit-replay-close").click()


def test_a_lab_made_again_stops_the_old_ones_listening(page: Any) -> None:
    """Re-running the cell that makes a Lab three times: only the newest Lab follows the saga."""
    cells = page.locator(".jp-Notebook .jp-CodeCell")
    rerun = cells.nth(cells.count() - 2)
    for _ in range(3):
        rerun.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        _idle(page)
    last = cells.nth(cells.count() - 1)
    last.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    _idle(page)
    last.locator(".jp-OutputArea-output", has_text="[").wait_for()
    # One Lab from Run All, three made again: only the newest still listens.
    assert last.locator(".jp-OutputArea-output").inner_text().strip() == "[False, False, False, True]"


STATIC_ORDER = ".jp-OutputArea-output .sagakit-static >> nth=0"  # the order saga's Lab, drawn without its view
# The pivot saga's Lab drawn without its view: the stuck step, "point of no return", the status.
STATIC_PIVOT = '.jp-OutputArea-output .sagakit-static:has([id="no-return"]) >> nth=0'


def test_a_saved_notebook_reopened_without_its_kernel_shows_the_static_fallback(
        page: Any, jupyter_server: tuple[str, str, Path], chromium: Any, output_dir: Path) -> None:
    """Saved and reopened after its kernel is gone, the notebook shows each Lab's last drawing and
    status line instead of nothing (and no "model not found" where the view was), every text of it at 4.5:1 in JupyterLab Light and Dark (the
    arrow labels and the caption included); nbconvert's HTML export shows them too, as readable
    in its light and dark themes."""
    _menu(page, "File", "Save Notebook")
    page.locator(".jp-mod-dirty").first.wait_for(state="detached")
    _menu(page, "Kernel", "Shut Down Kernel")
    base, token, root = jupyter_server
    tab = chromium.new_page(viewport={"width": 1400, "height": 900})
    tab.set_default_timeout(TIMEOUT_MS)
    try:
        tab.goto(f"{base}/lab/tree/{LAB_COPY}?token={token}")
        static = tab.locator(".jp-OutputArea-output .sagakit-static").first
        static.wait_for()
        static.scroll_into_view_if_needed()
        assert static.locator('svg [id="step-reserve_inventory"]').count() == 1
        assert "completed" in static.inner_text() or "rolled back" in static.inner_text()
        # Where each view was, the widget manager writes that its model is gone: that line is
        # hidden behind the drawing that stands in for the view.
        dead = tab.locator(".jp-OutputArea-output.jupyter-widgets", has_text="model not found")
        dead.first.wait_for(state="attached")
        assert dead.count() >= 2 and tab.get_by_text("model not found").filter(visible=True).count() == 0
        _assert_static_readable(tab, STATIC_ORDER, minimum=15)
        tab.screenshot(path=str(output_dir / "notebook-lab-7-reopened.png"))
        measured = _assert_static_readable(tab, STATIC_PIVOT, minimum=15)
        assert any(item["text"] == "point of no return" for item in measured)
        tab.screenshot(path=str(output_dir / "notebook-lab-7-reopened-pivot.png"))
        _theme(tab, "JupyterLab Dark", views=False)
        try:
            _assert_static_readable(tab, STATIC_ORDER, minimum=15)
            tab.screenshot(path=str(output_dir / "notebook-lab-7-reopened-dark.png"))
            _assert_static_readable(tab, STATIC_PIVOT, minimum=15)
            tab.screenshot(path=str(output_dir / "notebook-lab-7-reopened-pivot-dark.png"))
        finally:
            _theme(tab, "JupyterLab Light", views=False)
    finally:
        tab.close()
    from nbconvert import HTMLExporter

    book = nbformat.read(root / LAB_COPY, as_version=4)
    exported, _ = HTMLExporter().from_notebook_node(book)
    assert 'class="sagakit-static"' in exported and 'id="step-w19"' in exported
    # Where each view was, the export says what it is (not an object's address).
    assert "object at 0x" not in exported and exported.count("a live view, drawn in a running Jupyter") >= 2
    for theme, html in (("light", exported), ("dark", HTMLExporter(theme="dark").from_notebook_node(book)[0])):
        export = chromium.new_page(viewport={"width": 1400, "height": 900})
        export.set_default_timeout(TIMEOUT_MS)
        try:
            export.route("**/*", lambda route: route.abort())  # the template's CDN scripts: no network here
            export.set_content(html, wait_until="domcontentloaded")
            pivot = STATIC_PIVOT.replace(".jp-OutputArea-output ", "")
            _assert_static_readable(export, pivot, minimum=15)
            _assert_static_readable(export, STATIC_ORDER.replace(".jp-OutputArea-output ", ""), minimum=15)
            export.locator(pivot).scroll_into_view_if_needed()
            export.screenshot(path=str(output_dir / f"notebook-export-{theme}.png"))
        finally:
            export.close()


# -- Jupyter Notebook 7 --------------------------------------------------------------------------


def test_notebook_7_runs_the_lab_and_reads_in_both_themes(notebook7: Any, output_dir: Path) -> None:
    """In Jupyter Notebook 7: fault by clicking, Run, the rollback shows, the inspector opens;
    every text reads at 4.5:1 in its light and dark themes, the Lab's static fallback's too."""
    page = notebook7
    _set_pace(page, 0)
    _reset(page)
    _fail_and_run(page)
    assert "state-compensated" in _classes(page, "authorize_payment")
    _inspect(page, "charge_payment")
    _assert_readable(page)
    _shoot(page, output_dir, "notebook-nb7-1-failed-step.png")
    _lab(page).locator(".sagakit-replay.sagakit-open").wait_for(state="detached")
    page.evaluate(SHOW_STATIC)
    try:
        _assert_static_readable(page, STATIC_ORDER, minimum=12)
    finally:
        page.evaluate(HIDE_STATIC)
    _theme(page, "JupyterLab Dark")
    try:
        _assert_readable(page)
        _shoot(page, output_dir, "notebook-nb7-2-dark.png")
        page.evaluate(SHOW_STATIC)
        try:
            _assert_static_readable(page, STATIC_ORDER, minimum=12)
            page.screenshot(path=str(output_dir / "notebook-nb7-3-static-dark.png"))
        finally:
            page.evaluate(HIDE_STATIC)
    finally:
        _theme(page, "JupyterLab Light")


# -- marimo --------------------------------------------------------------------------------------

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
    lab = shop.lab(data={"card": "4111 1111 1111 1111"})
    return (lab,)


@app.cell
def _(lab):
    lab
    return


@app.cell
async def _(sagakit):
    import tempfile

    class Carrier:
        calls = 0

        async def ship(self, data, context):
            self.calls += 1
            if self.calls <= 2:  # down for the first run's two attempts
                raise ConnectionError("carrier unreachable")
            return {**data, "shipped": True}

    async def step_done(data, context):
        return data

    carrier = Carrier()
    pivot_saga = sagakit.Saga("pivot_order", [
        sagakit.step(step_done, compensate=step_done, name="stock"),
        sagakit.step(step_done, kind="pivot", name="capture"),
        sagakit.step(carrier.ship, name="deliver", retry=sagakit.RetryPolicy(max_retries=1, initial_delay=0.01, jitter=0)),
    ])
    pivot_lab = pivot_saga.lab(journal=tempfile.mkdtemp() + "/orders.db", data={}, charts=False)
    stuck_run = await pivot_lab.run()
    return pivot_lab, stuck_run


@app.cell
def _(pivot_lab):
    pivot_lab
    return


@app.cell
def _(stuck_run):
    stuck_run  # outside a Jupyter kernel: the static drawing, inline
    return


if __name__ == "__main__":
    app.run()
"""


#: The stuck run shown as a cell's output: outside a Jupyter kernel, the static SVG, inline.
MARIMO_STATIC = ".output-area > svg.sagakit-svg >> nth=0"


@pytest.fixture(scope="module")
def marimo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A marimo app (``marimo run``, headless, token-protected) showing a rolled-back run's view
    and a Lab: its URL, with the access token."""
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
    try:
        _wait_for_server(f"http://127.0.0.1:{port}/health", process, log, time.monotonic() + 90)
        yield f"http://127.0.0.1:{port}/?access_token={token}"
    finally:
        stop_process(process, timeout=20)


@pytest.fixture(scope="module")
def marimo_app(marimo_server: str, chromium: Any) -> Iterator[Any]:
    """The marimo app in its light theme."""
    tab = chromium.new_page(viewport={"width": 1400, "height": 900})
    tab.set_default_timeout(TIMEOUT_MS)
    try:
        tab.goto(marimo_server)
        yield tab
    finally:
        tab.close()


def test_marimo_shows_and_inspects_a_run(marimo_app: Any, output_dir: Path) -> None:
    """In marimo (``mo.ui.anywidget``): the run's diagram is coloured, and clicking the failed step inspects it."""
    page = marimo_app
    page.wait_for_function(
        "() => { const n = [...document.querySelectorAll('*')].map(e => e.shadowRoot || e)"
        ".flatMap(r => [...r.querySelectorAll('[id=\"step-charge\"]')])[0];"
        " return n !== undefined && n.classList.contains('state-failed'); }")
    node = page.locator('[id="step-charge"]').first
    assert "state-compensated" in (page.locator('[id="step-reserve"]').first.get_attribute("class") or "")
    node.click()
    inspector = page.locator(".sagakit-inspector").first  # the run's view comes before the Lab
    inspector.locator(".sagakit-attempt").first.wait_for()
    text = inspector.inner_text()
    assert "InjectedFault" in text and "4111" not in text
    page.screenshot(path=str(output_dir / "notebook-marimo-1-inspector.png"))


def test_marimo_runs_a_saga_lab_with_its_charts(marimo_app: Any, output_dir: Path) -> None:
    """In marimo (``lab`` in a cell): inject by clicking, run, inspect; the charts are drawn in the
    panel; a new run updates an open inspector; replay, stop, and a past run click. A run shown
    as a plain output (its static drawing) reads at 4.5:1."""
    page = marimo_app
    _lab(page).locator(".sagakit-diagram svg").wait_for()
    assert _history_rows(page) == 0
    _lab(page).locator(".sagakit-chart-empty", has_text="No run to draw yet").wait_for()
    _fail_and_run(page, "pay", "hold")
    assert "injected" in _classes(page, "pay") and "state-pending" in _classes(page, "ship")
    assert "InjectedFault" in _status(page)
    inspector = _inspect(page, "pay")
    assert "4111" not in inspector.inner_text()  # the card number is redacted
    _lab(page).locator(".sagakit-chart-timeline svg .sagakit-bar").first.wait_for()
    assert _lab(page).locator(".sagakit-chart-durations svg .sagakit-dot").count() >= 1
    page.screenshot(path=str(output_dir / "notebook-marimo-2-lab-inspector.png"))
    _lab(page).locator(".sagakit-fault-pay select").select_option("none")
    _lab(page).locator(".sagakit-run").click()
    _wait_for_history_rows(page, 2)
    _lab(page).locator(".sagakit-inspector-state", has_text="succeeded").wait_for()
    assert "failed" not in _lab(page).locator(".sagakit-inspector").inner_text()
    seek, frames = _replay(page)
    assert frames >= 4
    seek(0)
    assert "state-pending" in _classes(page, "pay")
    _close_replay(page)
    _reset(page)
    _set_delay(page, "ship", 20)
    _stop_slow_run(page, "ship", "pay", _click_stop)
    assert "state-compensated" in _classes(page, "hold")
    _set_delay(page, "ship", 0)
    _lab(page).locator(".sagakit-fault-pay select").select_option("fail")
    _lab(page).locator(".sagakit-run").click()
    _wait_for_history_rows(page, 4)
    _click_past_failed_run(page, "pay")
    _assert_readable(page)
    page.screenshot(path=str(output_dir / "notebook-marimo-3-lab-light.png"))
    measured = _assert_static_readable(page, MARIMO_STATIC, minimum=10)
    assert any(item["text"] == "point of no return" for item in measured)
    page.screenshot(path=str(output_dir / "notebook-marimo-7-static-run-light.png"))


def test_marimo_draws_a_stuck_run_and_resumes_it(marimo_app: Any, output_dir: Path) -> None:
    """In marimo: the pivot saga's stuck run shows ``state-stuck`` and its legend entry; Resume
    in its history row completes it from the journal."""
    page = marimo_app
    which = ".sagakit-lab >> nth=1"
    _wait_for_class(page, "deliver", "state-stuck", which)
    assert "kind-pivot" in _classes(page, "capture", which)
    assert _lab(page, which).locator(".sagakit-legend-stuck").count() == 1
    _lab(page, which).locator(".sagakit-history tbody tr.run-stuck .sagakit-resume").click()
    _wait_for_class(page, "deliver", "state-succeeded", which)
    _lab(page, which).locator(".sagakit-status", has_text="resumed once").wait_for()
    assert _lab(page, which).locator(".sagakit-history tbody tr").first.get_attribute("class") == "run-completed"
    _lab(page, which).scroll_into_view_if_needed()
    page.screenshot(path=str(output_dir / "notebook-marimo-5-pivot-resumed.png"))


def test_marimo_dark_theme_reads_at_wcag_aa(marimo_server: str, chromium: Any, output_dir: Path) -> None:
    """marimo's dark theme: the Lab takes dark colours, and every text reads at 4.5:1; so does
    the pivot saga's Lab showing its stuck run, and that run shown as a plain output."""
    tab = chromium.new_page(viewport={"width": 1400, "height": 900}, color_scheme="dark")
    tab.set_default_timeout(TIMEOUT_MS)
    try:
        tab.goto(marimo_server + "&theme=dark")
        tab.locator('.sagakit-lab[data-sk-theme="dark"] .sagakit-diagram svg').first.wait_for()
        _fail_and_run(tab, "pay", "hold")  # a session of its own: a fresh Lab
        _lab(tab).locator(".sagakit-chart-timeline svg .sagakit-bar").first.wait_for()
        _inspect(tab, "pay")
        _assert_readable(tab)
        _lab(tab).scroll_into_view_if_needed()
        tab.screenshot(path=str(output_dir / "notebook-marimo-4-lab-dark.png"))
        pivot = ".sagakit-lab >> nth=1"
        _wait_for_class(tab, "deliver", "state-stuck", pivot)
        _lab(tab, pivot).scroll_into_view_if_needed()
        _assert_readable(tab, pivot, minimum=25)
        tab.screenshot(path=str(output_dir / "notebook-marimo-6-pivot-stuck-dark.png"))
        _assert_static_readable(tab, MARIMO_STATIC, minimum=10)
        tab.screenshot(path=str(output_dir / "notebook-marimo-8-static-run-dark.png"))
    finally:
        tab.close()


# -- without a front-end: a plain page, and an SVG on its own -------------------------------------


def _static_drawings() -> tuple[str, str, str]:
    """Drawn in this process, as a user's script would: a stuck run's static fallback (its
    caption, the point of no return), the same run's SVG, and a coverage overlay whose
    ``charge`` is violated."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import sagakit
    from sagakit.explore import explore
    from sagakit.notebook.diagram import find_renderer, run_svg
    from sagakit.notebook.widget import diagram_view

    require(find_renderer() is not None, "a Graphviz renderer (dot or graphviz-pure)")

    async def noop(data: Any, context: Any) -> Any:
        return data

    async def down(data: Any, context: Any) -> Any:
        raise ConnectionError("carrier unreachable")

    def charged_once(world: Any, run: Any) -> None:
        assert run.failed_step != "charge", "the charge failed after the stock was held"

    async def draw() -> tuple[str, str, str]:
        quick = sagakit.RetryPolicy(max_retries=1, initial_delay=0.0, jitter=0)
        pivot = sagakit.Saga("order", [sagakit.step(noop, compensate=noop, name="reserve"),
                                       sagakit.step(noop, kind="pivot", name="capture"),
                                       sagakit.step(down, name="ship", retry=quick)])
        run = await pivot.run({})
        fallback = diagram_view(run).static_bundle("⚠ stuck at ship")["text/html"]
        svg = run_svg(run)
        assert svg is not None
        shop = sagakit.Saga("shop", [sagakit.step(noop, compensate=noop, name="hold"), sagakit.step(noop, name="charge")])
        exploration = await explore(shop, {}, world=dict, invariant=charged_once, modes=("fail",), progress=False)
        return fallback, svg, exploration.coverage.to_html()

    # Playwright's synchronous API holds this thread's event loop: draw on another thread.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, draw()).result()


def test_static_drawings_read_on_a_plain_page_and_on_their_own(chromium: Any, output_dir: Path) -> None:
    """With no front-end's theme (an exported page, an SVG opened as a file or shown as an
    image): a run's static fallback and a coverage overlay read at 4.5:1 on a plain page, the SVG
    alone paints its own white and reads too; the overlay fills the violated step's box with
    its colour and writes its name dark on it."""
    fallback, svg, coverage = _static_drawings()
    tab = chromium.new_page(viewport={"width": 1000, "height": 700})
    tab.set_default_timeout(TIMEOUT_MS)
    try:
        tab.set_content(f"<!doctype html><html><body>{fallback}{coverage}</body></html>")
        measured = _assert_static_readable(tab, ".sagakit-static", minimum=10)
        assert any(item["text"] == "point of no return" for item in measured)
        assert any(item["text"].startswith("stuck at ship") for item in measured)  # the caption
        _assert_static_readable(tab, ".sagakit-coverage", minimum=10)
        box, text = tab.locator('.sagakit-coverage [id="step-charge"]').evaluate(
            "n => [getComputedStyle(n.querySelector(':scope > path')).fill, getComputedStyle(n.querySelector('text')).fill]")
        assert (box, text) == ("rgb(254, 202, 202)", "rgb(31, 41, 51)")
        tab.screenshot(path=str(output_dir / "notebook-static-plain.png"))
        tab.goto("data:image/svg+xml," + urllib.parse.quote(svg))
        assert tab.evaluate("getComputedStyle(document.documentElement).backgroundColor") == "rgb(255, 255, 255)"
        measured = tab.evaluate(f"({CONTRAST})(document.documentElement)")
        assert len(measured) >= 10 and not [item for item in measured if item["ratio"] < 4.5], measured
    finally:
        tab.close()
