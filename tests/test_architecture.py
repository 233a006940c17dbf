"""Package boundaries: engine -> storage and dashboard -> storage, nothing else."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _imports(package: str) -> dict[Path, set[str]]:
    found = {}
    for path in (REPO / package).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[path.relative_to(REPO)] = names
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("storage", {"engine", "dashboard", "faust", "flurs", "streamlit"}),
        ("dashboard", {"engine", "faust", "flurs"}),
        ("engine", {"dashboard", "streamlit"}),
    ],
)
def test_packages_import_only_what_the_design_allows(package, forbidden):
    offenders = {
        str(path): sorted(names & forbidden)
        for path, names in _imports(package).items()
        if names & forbidden
    }
    assert offenders == {}


def test_only_the_recommender_module_imports_flurs():
    importers = {
        str(path)
        for package in ("engine", "storage", "dashboard")
        for path, names in _imports(package).items()
        if "flurs" in names
    }
    assert importers == {"engine/models/registry.py"}


def test_only_storage_runs_sql():
    offenders = []
    for package in ("engine", "dashboard"):
        for path in (REPO / package).rglob("*.py"):
            text = path.read_text()
            if "import sqlite3" in text or ".execute(" in text:
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == []
