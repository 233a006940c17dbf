"""Package boundaries, as docs/architecture.md draws them, read from the imports themselves."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO

PACKAGES = ("engine", "storage", "dashboard")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(package: str, top_level_only: bool = False) -> dict[str, set[str]]:
    """Module -> the modules it imports (dotted, absolute), at any depth or at module level only."""
    found = {}
    for path in sorted((REPO / package).rglob("*.py")):
        tree = ast.parse(path.read_text())
        nodes = tree.body if top_level_only else ast.walk(tree)
        names = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names |= {f"{node.module}.{alias.name}" for alias in node.names}
        found[_module_name(path)] = names
    return found


def _offenders(package: str, forbidden) -> dict[str, list[str]]:
    return {
        module: sorted(name for name in names if forbidden(name))
        for module, names in _imports(package).items()
        if any(forbidden(name) for name in names)
    }


def _top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("storage", {"engine", "dashboard", "faust", "flurs", "streamlit"}),
        ("dashboard", {"engine", "faust", "flurs"}),
        ("engine", {"dashboard", "streamlit"}),
    ],
)
def test_packages_import_only_what_the_design_allows(package, forbidden):
    assert _offenders(package, lambda name: _top(name) in forbidden) == {}


def test_only_the_models_package_imports_flurs():
    importers = {
        module
        for package in PACKAGES
        for module, names in _imports(package).items()
        if any(_top(name) == "flurs" for name in names)
    }
    assert importers and all(module.startswith("engine.models.") for module in importers)


@pytest.mark.parametrize("package", ["engine/sources", "engine/evaluation"])
def test_producing_and_evaluating_need_no_worker(package):
    assert _offenders(package, lambda name: name.startswith("engine.worker")) == {}


@pytest.mark.parametrize("package", ["engine", "dashboard"])
def test_storage_is_used_through_its_public_surface_only(package):
    """httpx-style: `from storage import X`, never a module inside storage."""
    import storage

    public = set(storage.__all__)

    def inside(name: str) -> bool:
        if not name.startswith("storage."):
            return False
        return name.split(".", 1)[1] not in public

    assert _offenders(package, inside) == {}


def test_only_storage_runs_sql():
    offenders = []
    for package in ("engine", "dashboard"):
        for path in (REPO / package).rglob("*.py"):
            text = path.read_text()
            if "import sqlite3" in text or ".execute(" in text:
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


def test_no_module_imports_itself_back_at_import_time():
    """The module-level import graph of engine, storage and dashboard has no cycle."""
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        for module, names in _imports(package, top_level_only=True).items():
            graph[module] = set()
            for name in names:
                # "from a.b import c" names a.b and, when c is a module, a.b.c.
                while name and _top(name) in PACKAGES:
                    # A module's own packages are importing already when it runs.
                    if name != module and not module.startswith(name + "."):
                        graph[module].add(name)
                    name = name.rpartition(".")[0]
    modules = set(graph)
    graph = {m: {n for n in names if n in modules} for m, names in graph.items()}
    cycles = []
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_importing_any_engine_module_does_no_work():
    """With every setting broken, every module still imports: nothing reads them at import."""
    modules = [
        _module_name(path)
        for path in sorted((REPO / "engine").rglob("*.py"))
        if path.name != "__main__.py"
    ]
    broken = {**os.environ, "RECO_MODEL": "nonsense", "RECO_BROKER": "nonsense", "RECO_DB": "/"}
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    done = subprocess.run(
        [sys.executable, "-c", code, *modules],
        cwd=REPO,
        env=broken,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "" and "error" not in done.stderr.lower()


def test_no_module_but_the_kernels_is_over_500_lines():
    long = {
        str(path.relative_to(REPO)): n
        for package in PACKAGES
        for path in (REPO / package).rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 500
        and path.relative_to(REPO).parts[:2] != ("engine", "kernels")
    }
    assert long == {}


def test_a_test_module_imports_helpers_from_tests_support_only():
    """Shared helpers live in tests/support/; a test module never imports another."""
    offenders = {}
    for path in sorted((REPO / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                names = [f"{'.' * node.level}{node.module or ''}"]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            outside = [
                name
                for name in names
                if name.startswith(".") or name.split(".")[0] == "tests"
                if name != "tests.support" and not name.startswith("tests.support.")
            ]
            if outside:
                offenders[str(path.relative_to(REPO))] = outside
    assert offenders == {}
