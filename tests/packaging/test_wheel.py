"""A wheel built from a clean checkout installs in a fresh virtual environment and works.

"Clean" means the files git tracks, nothing else: a file the wheel needs but git does not track
(an asset left out of a commit) fails here. The fresh environment has only the wheel and its
runtime dependencies: no test tools, no extras.
"""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest
from testsupport import ROOT, require

pytestmark = pytest.mark.slow


def _clean_checkout(target: Path) -> Path:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built without build isolation from the tracked files only."""
    require(shutil.which("git") is not None and (ROOT / ".git").exists(), "a git checkout (to list tracked files)")
    checkout = _clean_checkout(tmp_path_factory.mktemp("checkout"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(checkout)],
                   check=True, capture_output=True)
    (built,) = out.glob("sagakit-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment with the wheel (and its runtime dependencies) installed."""
    where = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True).create(where)
    python = where / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], check=True, capture_output=True)
    return python


def test_the_wheel_holds_the_package_and_its_assets(wheel: Path) -> None:
    """Every tracked file under sagakit/ that is not Python source is inside the wheel too."""
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(["git", "ls-files", "sagakit"], cwd=ROOT, capture_output=True, text=True, check=True)
    expected = {name for name in tracked.stdout.split() if not name.endswith(".pyc")}
    assert expected - names == set()
    assert "sagakit/py.typed" in names
    # The interactive diagram's front-end ships inside the package (no CDN, no build step).
    assert {"sagakit/notebook/static/sagakit.js", "sagakit/notebook/static/sagakit.css"} <= names


def test_the_wheel_registers_the_pytest_plugin_and_the_instrumentor(wheel: Path) -> None:
    """The wheel's entry points name the pytest plugin and the OpenTelemetry instrumentor."""
    with zipfile.ZipFile(wheel) as archive:
        (listed,) = [name for name in archive.namelist() if name.endswith(".dist-info/entry_points.txt")]
        text = archive.read(listed).decode()
    assert "[pytest11]\nsagakit = sagakit.testing._plugin" in text
    assert "[opentelemetry_instrumentor]\nsagakit = sagakit.telemetry._instrumentor:SagakitInstrumentor" in text
    assert "[console_scripts]\nsagakit = sagakit.__main__:main" in text


def test_import_and_cli_work_in_a_fresh_environment(fresh_python: Path) -> None:
    """``import sagakit`` and ``python -m sagakit --help`` work with only the runtime dependencies."""
    outside = {"cwd": fresh_python.parent, "env": {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}}
    shown = "import sagakit, importlib.metadata as m; print(sagakit.__version__, m.version('sagakit'), sagakit.__file__)"
    imported = subprocess.run([str(fresh_python), "-c", shown],
                              capture_output=True, text=True, check=True, **outside)  # type: ignore[call-overload]
    version, metadata_version, location = imported.stdout.split()
    written = runpy.run_path(str(ROOT / "sagakit" / "_version.py"))["__version__"]
    assert version == metadata_version == written  # the wheel's metadata reads sagakit/_version.py
    assert str(ROOT) not in location  # the installed copy, not the checkout
    helped = subprocess.run([str(fresh_python), "-m", "sagakit", "--help"], capture_output=True, text=True, **outside)  # type: ignore[call-overload]
    assert helped.returncode == 0, helped.stderr
    assert "recover" in helped.stdout


def test_extras_do_not_install_test_tools(fresh_python: Path) -> None:
    """The published extras name no development tool: those live in dependency groups."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    groups = project["dependency-groups"]
    tools = {
        requirement.split("[")[0].split(">")[0].split("=")[0].strip().lower()
        for name in ("test", "docs") for requirement in groups[name]
    }
    assert {"pytest", "mypy", "ruff", "playwright", "nbmake", "hypothesis", "marimo", "mkdocs"} <= tools
    for extra, requirements in project["project"]["optional-dependencies"].items():
        named = {requirement.split("[")[0].split(">")[0].split("=")[0].strip().lower() for requirement in requirements}
        assert named & tools == set(), f"extra {extra!r} installs {named & tools}"
    listed = subprocess.run([str(fresh_python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True)
    installed = {line.split("==")[0].lower() for line in listed.stdout.split()}
    assert installed & tools == set()
