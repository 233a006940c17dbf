"""The README is the spec, with docs/configuration.md: all they document is run by a test.

Each command runs in a subprocess from a fresh folder with no ``data/`` in it,
with PYTHONPATH pointing at the repository and no RECO_* variable but those
the test sets, and the test checks what the README promises: the store's
counts, the keys printed, the exit code and the one line of an error. Those
tests are the test_commands_* modules, a module per concern; this one checks
that together they leave nothing of either untested (tests/support/readme.py
reads what each covers from its source).
"""

from __future__ import annotations

import argparse
import re

import pytest

from tests.support.paths import REPO
from tests.support.readme import (
    KEYS_HEADER,
    covered,
    documented_commands,
    documented_variables,
    readme_runs,
    readme_shell_commands,
    readme_table,
)

# The slow commands (tests/support/command_jobs.py) start with the first test of the
# test_commands_* modules, whichever runs first.
pytestmark = pytest.mark.usefixtures("command_jobs")

ELSEWHERE = {
    r"^\./run\.sh$": "tests/test_run_sh.py",  # the demo: brought up, filled, stopped there
    r"^RECO_WORKERS=2 \./run\.sh$": "tests/test_run_sh.py",  # two workers, two stores
}


def test_every_documented_command_and_flag_has_a_test():
    documented = {(c, "") for c in documented_commands()} | {
        (c, f) for c, flags in documented_commands().items() for f in flags
    }
    missing = sorted(documented - covered())
    assert not missing, f"documented in the README's Commands table with no test here: {missing}"


def test_every_configuration_flag_has_a_test():
    for variable, flag in documented_variables().items():
        if not flag:
            continue
        command, _, name = flag.rpartition(" ")
        covered_by = {c for c, f in covered() if f == name}
        assert covered_by if not command else command in covered_by, (
            f"{variable}'s flag {flag} is in docs/configuration.md but no test here runs it"
        )


def test_the_documented_flags_are_the_command_line_s():
    from engine import cli

    parsers = _subparsers(cli._parser())
    for command, flags in documented_commands().items():
        if command.startswith("faust "):
            continue
        assert command in parsers, f"the README documents `{command}`; the CLI has no such command"
        known = {s for action in parsers[command]._actions for s in action.option_strings}
        assert flags <= known, f"`{command}`: {sorted(flags - known)} documented, not accepted"
    for variable, flag in documented_variables().items():
        command, _, name = flag.rpartition(" ")
        if name:
            owners = [parsers[command]] if command else list(parsers.values())
            assert any(name in _options(p) for p in owners), f"{variable}: no command takes {flag}"


def _subparsers(parser, prefix: str = "") -> dict:
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[f"{prefix}{name}"] = sub
                found.update(_subparsers(sub, f"{prefix}{name} "))
    return found


def _options(parser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def test_every_readme_shell_command_is_run_by_a_test():
    patterns = [pattern for pattern, _ in readme_runs()] + list(ELSEWHERE)
    for command in readme_shell_commands():
        assert any(re.search(pattern, command, re.DOTALL) for pattern in patterns), (
            f"no test runs the README's command {command!r}"
        )
    for pattern, elsewhere in ELSEWHERE.items():
        assert (REPO / elsewhere).is_file(), pattern


def test_every_row_of_the_key_table_is_checked():
    rows = [cells[0] for cells in readme_table(KEYS_HEADER)]
    checked = {
        "`evaluate`",
        "`bench pipeline`",
        "`bench pipeline --source PATH`",
        "`bench pipeline --workers N`",
        "`bench model`, a line per milestone",
        "`bench serve`, the summary (last line)",
    }
    assert set(rows) == checked, (
        f"rows of the README's key table no test reads: {set(rows) - checked}"
    )
