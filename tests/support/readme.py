"""The README as the spec of the commands, and what the test_commands_* modules cover.

The README is the spec, with docs/configuration.md. The README's Commands
table (commands and flags), key tables and ```sh blocks, and
docs/configuration.md's table (variables and flags), are parsed here.
A test marks what it runs with ``@covers`` and ``@runs_readme``;
test_commands_readme.py reads those marks from the modules' source, so that
a command, flag or line documented without a test fails the suite, whichever
modules a run selects.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.support.paths import REPO

README = REPO / "README.md"
CONFIGURATION = REPO / "docs" / "configuration.md"  # the Configuration table, moved from the README
KEYS_HEADER = "| output | keys |"  # the table of keys evaluate and the benchmarks print
COMMAND_TESTS = "test_commands_*.py"


def readme_table(header: str, document: Path = README) -> list[list[str]]:
    """The rows of the README table whose header row is ``header``, as lists of cells.

    ``document`` reads the table from another Markdown file instead.
    """
    lines = document.read_text().splitlines()
    assert header in lines, f"{document.relative_to(REPO)} has no table with the header {header}"
    start = lines.index(header)
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        rows.append([cell.strip().replace("\\|", "|") for cell in cells])
    return rows


def ticked(text: str) -> list[str]:
    """The `backticked` spans of a Markdown cell."""
    return re.findall(r"`([^`]+)`", text)


FLAG = re.compile(r"--[a-z][a-z-]*")


def documented_commands() -> dict[str, set[str]]:
    """Command -> the flags its rows of the Commands table show."""
    commands: dict[str, set[str]] = {}
    for usage, meaning in readme_table("| command | what it does |"):
        syntax = ticked(usage)[0]
        name = " ".join(re.match(r"[a-z][a-z -]*?(?= -|\s*\[|$)", syntax)[0].split())
        commands.setdefault(name, set()).update(FLAG.findall(syntax))
        for other in ticked(meaning):
            if other.startswith("faust "):
                commands.setdefault(other, set())
    return commands


def documented_variables() -> dict[str, str]:
    """Variable of docs/configuration.md's table -> its flag cell ('' where it has none)."""
    variables = {}
    for names, flag, *_ in readme_table("| variable | flag | default | meaning |", CONFIGURATION):
        for name in ticked(names):
            variables[name] = " ".join(ticked(flag))
    return variables


def documented_keys(header: str, row: str) -> list[str]:
    """The JSON keys a row of a README key table names (`recall@N`-style patterns left out)."""
    for cells in readme_table(header):
        if cells[0] == row:
            return [k for k in ticked(cells[-1]) if re.fullmatch(r"[a-z_]+(@\d+)?[a-z_]*", k)]
    raise AssertionError(f"no row {row!r} in the README table {header!r}")


def status_keys() -> set[str]:
    return {key for cells in readme_table("| key | meaning |") for key in ticked(cells[0])}


def readme_shell_commands() -> list[str]:
    """The commands of the README's ```sh blocks; a for loop is one command. In order, unique."""
    commands: list[str] = []
    in_block, loop = False, []
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            in_block = line.strip() == "```sh"
            continue
        text = re.sub(r"\s+#\s.*$", "", line).strip()
        if not in_block or not text or text.startswith("#"):
            continue
        if loop or text.startswith("for "):
            loop.append(text)
            if text == "done":
                commands.append("\n".join(loop))
                loop = []
        elif text not in commands:
            commands.append(text)
    return commands


def readme_commands_like(pattern: str) -> list[str]:
    found = [c for c in readme_shell_commands() if re.search(pattern, c, re.DOTALL)]
    assert found, f"the README has no ```sh command matching {pattern!r} any more"
    return found


# -- what the tests cover ------------------------------------------------------


def covers(command: str, *flags: str) -> pytest.MarkDecorator:
    """Mark a test as one that runs ``command`` with ``flags`` and checks their outcome."""
    return pytest.mark.covers(command, *flags)


def runs_readme(pattern: str) -> pytest.MarkDecorator:
    """Mark a test as the one that runs the README's ```sh commands matching ``pattern``."""
    return pytest.mark.runs_readme(pattern)


def covered() -> set[tuple[str, str]]:
    """(command, flag) pairs the tests cover; flag '' for the command itself."""
    pairs = set()
    for _, (command, *flags) in _marks("covers"):
        pairs.add((command, ""))
        pairs.update((command, flag) for flag in flags)
    return pairs


def readme_runs() -> list[tuple[str, str]]:
    """(pattern of a ```sh command, the test that runs it) for every ``@runs_readme``."""
    return [(pattern, test) for test, (pattern,) in _marks("runs_readme")]


def _marks(name: str) -> list[tuple[str, tuple]]:
    """(test, arguments) of each ``@name(...)`` on a test of the test_commands_* modules.

    Read from their source, not from the tests collected: a run of one module sees them all.
    """
    found = []
    for path in sorted((REPO / "tests").glob(COMMAND_TESTS)):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", None) == name:
                    found.append((node.name, tuple(map(ast.literal_eval, decorator.args))))
    return found
