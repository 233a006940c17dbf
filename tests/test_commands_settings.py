"""A bad setting stops every command at once, with one line naming it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from engine.sources.broker import free_port
from tests.support.commands import FAUST, command_env, engine, finished, one_line
from tests.support.paths import PYTHON, REPO
from tests.support.readme import documented_commands, documented_variables

# The slow commands (tests/support/command_jobs.py) start with the first test of the
# test_commands_* modules, whichever runs first.
pytestmark = pytest.mark.usefixtures("command_jobs")

WORKER = ("worker",)

# A bad value of each variable `python -m engine` reads, and a command that reads it.
BAD_VALUES: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "RECO_BROKER": ({"RECO_BROKER": "127.0.0.1:9092"}, WORKER),
    "RECO_BROKER_PORT": ({"RECO_BROKER_PORT": "90000"}, ("broker",)),
    "RECO_TOPIC": ({"RECO_TOPIC": "my events"}, WORKER),
    "RECO_PARTITIONS": ({"RECO_PARTITIONS": "0"}, WORKER),
    "RECO_REPLICATION": ({"RECO_REPLICATION": "0"}, WORKER),
    "RECO_DB": ({"RECO_DB": "."}, WORKER),
    "RECO_GROUP": ({"RECO_GROUP": "a/b"}, WORKER),
    "RECO_MODEL": ({"RECO_MODEL": "svd"}, WORKER),
    # docs/configuration.md's example parameters, which are mf's, with the default model.
    "RECO_MODEL_PARAMS": ({"RECO_MODEL_PARAMS": '{"k": 20, "learn_rate": 0.03}'}, WORKER),
    "RECO_MIN_RATING": ({"RECO_MIN_RATING": "nan"}, WORKER),
    "RECO_EVAL_FRACTION": ({"RECO_EVAL_FRACTION": "1.5"}, WORKER),
    "RECO_CHECKPOINT_INTERVAL": ({"RECO_CHECKPOINT_INTERVAL": "nan"}, WORKER),
    "RECO_HISTORY_LIMIT": ({"RECO_HISTORY_LIMIT": "0"}, WORKER),
    "RECO_PANEL_SIZE": ({"RECO_PANEL_SIZE": "-1"}, WORKER),
    "RECO_KEEP_SNAPSHOTS": ({"RECO_KEEP_SNAPSHOTS": "many"}, WORKER),
    "RECO_METRICS_RETENTION": ({"RECO_METRICS_RETENTION": "-1"}, WORKER),
    "RECO_MAX_MESSAGE_BYTES": ({"RECO_MAX_MESSAGE_BYTES": "64k"}, WORKER),
    "RECO_SEED": ({"RECO_SEED": "1.5"}, WORKER),
    "RECO_DATADIR": ({"RECO_DATADIR": os.devnull}, WORKER),
    "RECO_LOG_LEVEL": ({"RECO_LOG_LEVEL": "loud"}, WORKER),
    "RECO_LOG_FORMAT": ({"RECO_LOG_FORMAT": "xml"}, ("status",)),
    "RECO_DEAD_LETTER_TOPIC": ({"RECO_DEAD_LETTER_TOPIC": "dead letters"}, WORKER),
    "RECO_BROKER_SECURITY_PROTOCOL": ({"RECO_BROKER_SECURITY_PROTOCOL": "TLS"}, WORKER),
    "RECO_SASL_MECHANISM": (
        {
            "RECO_BROKER_SECURITY_PROTOCOL": "SASL_SSL",
            "RECO_SASL_MECHANISM": "GSSAPI",
            "RECO_SASL_USERNAME": "alice",
            "RECO_SASL_PASSWORD": "s3cret-value",
        },
        WORKER,
    ),
    "RECO_SASL_USERNAME": ({"RECO_SASL_USERNAME": "alice"}, WORKER),
    "RECO_SASL_PASSWORD": ({"RECO_SASL_PASSWORD": "s3cret-value"}, WORKER),
    "RECO_SSL_CAFILE": (
        {"RECO_BROKER_SECURITY_PROTOCOL": "SSL", "RECO_SSL_CAFILE": "missing-ca.pem"},
        WORKER,
    ),
    "RECO_SSL_CERTFILE": (
        {"RECO_BROKER_SECURITY_PROTOCOL": "SSL", "RECO_SSL_CERTFILE": "missing.pem"},
        WORKER,
    ),
    "RECO_SSL_KEYFILE": (
        {"RECO_BROKER_SECURITY_PROTOCOL": "SSL", "RECO_SSL_KEYFILE": "missing.key"},
        WORKER,
    ),
    "RECO_KEEP_REJECTED": ({"RECO_KEEP_REJECTED": "0"}, WORKER),
    "RECO_ENCODING": ({"RECO_ENCODING": "avro"}, ("produce", "--source", "synthetic")),
    "RECO_COMPRESSION": ({"RECO_COMPRESSION": "brotli"}, ("produce", "--source", "synthetic")),
    "RECO_EVENT_LOOP": ({"RECO_EVENT_LOOP": "tokio"}, WORKER),
    "RECO_WEB_PORT": ({"RECO_WEB_PORT": "70000"}, WORKER),
    # Other machines may reach it: only with a token.
    "RECO_WEB_HOST": ({"RECO_WEB_HOST": "0.0.0.0"}, WORKER),
    "RECO_API_TOKEN": ({"RECO_API_TOKEN": "s3cret"}, WORKER),
    "RECO_CLICK_WINDOW": ({"RECO_CLICK_WINDOW": "0"}, WORKER),
    "RECO_AB_BASELINE_FRACTION": ({"RECO_AB_BASELINE_FRACTION": "20%"}, WORKER),
    "RECO_API_MAX_SHARE": ({"RECO_API_MAX_SHARE": "0"}, WORKER),
    "RECO_API_URL": (
        {"RECO_API_URL": "127.0.0.1:6066"},
        ("produce", "--source", "synthetic", "--closed-loop"),
    ),
}
# Variables of docs/configuration.md that `python -m engine` does not read, and why.
NOT_READ = {
    "RECO_DASHBOARD_PORT": "./run.sh's: the port it gives streamlit",
    "RECO_DASHBOARD_HOST": "./run.sh's: the address it gives streamlit",
    "RECO_DEMO_RATE": "./run.sh's: the --rate it gives its demo producer",
    "RECO_WORKERS": "./run.sh's: how many workers it starts (tests/test_run_sh.py runs two)",
    "RECO_DRIFT_THRESHOLD": "the dashboard's: a bad value falls back to the default, with a "
    "warning on the page (tests/test_dashboard_parts.py)",
    "RECO_OVERLAP_THRESHOLD": "the dashboard's: as RECO_DRIFT_THRESHOLD",
    "RECO_DASHBOARD_REFRESH_S": "the dashboard's: as RECO_DRIFT_THRESHOLD",
}
# A bad value of each variable ./run.sh reads itself (RECO_BROKER_PORT: the engine's too).
RUN_SH_BAD_VALUES = {
    "RECO_DEMO_RATE": "fast",
    "RECO_DASHBOARD_PORT": "70000",
    "RECO_DASHBOARD_HOST": "0.0.0.0/0",
    "RECO_BROKER_PORT": "port",
    "RECO_WORKERS": "0",
}


@pytest.mark.parametrize("variable", sorted(BAD_VALUES))
def test_a_bad_value_stops_the_command_with_one_line_naming_it(variable, tmp_path):
    values, command = BAD_VALUES[variable]
    # A port of its own, should the bad value be taken and a worker start.
    env = command_env(**{"RECO_WEB_PORT": free_port(), **values})
    try:
        result = engine(*command, env=env, cwd=tmp_path, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{variable}={values[variable]!r} was taken: {' '.join(command)} started")
    line = one_line(result.stderr)
    assert result.returncode == 2, result.stderr
    assert variable in line and result.stdout == ""
    assert "s3cret" not in line  # a password or token never shows
    assert list(tmp_path.iterdir()) == []  # stopped before it made anything


READERS = {
    "worker": ("worker",),
    "faust -A engine.worker.app worker": (FAUST, "-A", "engine.worker.app", "worker"),
    "produce": ("produce", "--source", "synthetic", "--events", "1"),
    "status": ("status",),
    "wait-for-broker": ("wait-for-broker", "--timeout", "1"),
    "bench pipeline": ("bench", "pipeline", "--quick"),
    "bench serve": ("bench", "serve", "--quick"),
}


@pytest.mark.parametrize("command", sorted(READERS))
def test_every_command_that_reads_the_settings_refuses_a_bad_one_alike(command, tmp_path):
    """The settings are read in one place: each reader stops the same way. (evaluate and bench
    model read only RECO_LOG_LEVEL: their defaults are their flags'.)"""
    argv = READERS[command]
    full = list(argv) if argv[0] == FAUST else [PYTHON, "-m", "engine", *argv]
    env = command_env(RECO_PARTITIONS="two", RECO_WEB_PORT=free_port())
    try:
        result = finished(full, env=env, cwd=tmp_path, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{command} started with RECO_PARTITIONS=two")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "RECO_PARTITIONS" in one_line(result.stderr)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "command", sorted(c for c in documented_commands() if not c.startswith("faust "))
)
def test_every_command_takes_log_level_and_refuses_a_bad_one(command, tmp_path):
    """The README: every command takes --log-level, after the command's own name."""
    required = ["--data", "ratings.csv"] if command == "evaluate" else []
    argv = [*command.split(), *required, "--log-level", "loud"]
    result = engine(*argv, env=command_env(), cwd=tmp_path)
    assert result.returncode == 2
    assert "RECO_LOG_LEVEL" in one_line(result.stderr)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("variable", sorted(RUN_SH_BAD_VALUES))
def test_a_bad_value_stops_run_sh_before_it_starts_anything(variable):
    value = RUN_SH_BAD_VALUES[variable]
    env = command_env(RECO_VENV=Path(PYTHON).parent.parent, **{variable: value})
    result = finished(["./run.sh"], env=env, cwd=REPO, timeout=30)
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"{variable}={value}" in one_line(result.stderr)
    assert result.stdout == ""


def test_the_variables_python_m_engine_does_not_read_are_read_where_the_table_says():
    run_sh = (REPO / "run.sh").read_text()
    for variable, reason in NOT_READ.items():
        if reason.startswith("./run.sh"):
            assert variable in run_sh and variable in RUN_SH_BAD_VALUES, variable
        else:
            assert variable in (REPO / "dashboard" / "settings.py").read_text(), variable
            assert variable in (REPO / "tests" / "test_dashboard_parts.py").read_text(), variable


def test_every_configuration_variable_is_checked_or_said_not_to_be_read():
    from engine.settings import ENV_FOR_FIELD

    documented = set(documented_variables())
    assert set(BAD_VALUES) | set(NOT_READ) == documented, (
        f"not in docs/configuration.md: {sorted(set(BAD_VALUES) | set(NOT_READ) - documented)}; "
        f"no bad-value test: {sorted(documented - set(BAD_VALUES) - set(NOT_READ))}"
    )
    read = set(ENV_FOR_FIELD.values())
    assert read <= documented, (
        f"read by engine.settings, not documented: {sorted(read - documented)}"
    )
