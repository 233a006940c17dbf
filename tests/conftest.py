"""Shared fixtures: a real embedded broker, temporary stores, the MovieLens 100k path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.paths import ML100K, REPO

NO_API_URL = "http://127.0.0.1:9"


@pytest.fixture
def ml100k() -> Path:
    """The MovieLens 100k folder; the test is skipped where it is absent (never committed)."""
    if not (ML100K / "u.data").is_file():
        pytest.skip(f"MovieLens 100k not found at {ML100K} (its licence forbids shipping it)")
    return ML100K


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "reco.db"


@pytest.fixture(scope="session", autouse=True)
def no_live_api():
    """Point the dashboard at an API that is not there, unless a test says otherwise.

    A demo on this machine may serve the default http://127.0.0.1:6066; tests
    must not read from it. Nothing listens on port 9 (discard), and no test
    process can take a port below 1024.
    """
    previous = os.environ.get("RECO_API_URL")
    os.environ["RECO_API_URL"] = NO_API_URL
    yield
    if previous is None:
        os.environ.pop("RECO_API_URL", None)
    else:
        os.environ["RECO_API_URL"] = previous


@pytest.fixture
def fresh_streamlit_caches():
    """Streamlit's data caches, cleared before and after: they outlive an AppTest run."""
    import streamlit as st

    st.cache_data.clear()
    yield
    st.cache_data.clear()


@pytest.fixture(scope="session")
def broker():
    """A real embedded Kafka-compatible broker on a free port, for the whole session."""
    from engine.sources.broker import EmbeddedBroker

    with EmbeddedBroker() as running:
        yield running


@pytest.fixture
def engine_env(tmp_path: Path, broker) -> dict[str, str]:
    """Environment for an engine process: its own topic, group, store and data folder."""
    from engine.sources.broker import free_port

    name = tmp_path.name.replace("_", "-")[-40:]
    env = dict(os.environ)
    env.update(
        {
            "RECO_BROKER": broker.url,
            "RECO_TOPIC": f"events-{name}",
            "RECO_GROUP": f"group-{name}",
            "RECO_DB": str(tmp_path / "reco.db"),
            "RECO_DATADIR": str(tmp_path / "faust"),
            "RECO_CHECKPOINT_INTERVAL": "1",
            # Each worker serves its API on a port of its own (6066 may be taken).
            "RECO_WEB_PORT": str(free_port()),
            "PYTHONPATH": str(REPO),
        }
    )
    return env


# -- the test_commands_* modules -------------------------------------------------


@pytest.fixture(scope="session")
def command_layout(tmp_path_factory):
    """A folder to run the README's commands from, beside MovieLens-shaped fixture files."""
    from tests.support.rating_files import Layout, write_fixtures

    made = Layout(tmp_path_factory.mktemp("commands"))
    write_fixtures(made)
    return made


@pytest.fixture(scope="session")
def command_jobs(request, command_layout):
    """The slow commands the selected tests check (their ``@needs``), started at once in threads.

    Session-wide, so that all the test_commands_* modules share one start: their
    waits overlap whichever module runs first. The session waits for all at its end.
    """
    from tests.support.command_jobs import JOB_TIMEOUT_S, start_jobs

    wanted = {
        job
        for item in request.session.items
        for mark in item.iter_markers("needs")
        for job in mark.args
    }
    started = start_jobs(wanted, command_layout, lambda: request.getfixturevalue("broker"))
    yield started
    for job in started.values():
        job.join(JOB_TIMEOUT_S + 60)


@pytest.fixture(scope="session")
def worker_run(command_jobs):
    """What `python -m engine worker` with every flag showed (tests/support/command_jobs.py)."""
    return command_jobs["worker"].result()
