"""The dashboard's small parts: engine status, text, settings, loaders, import boundaries."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

from dashboard import loaders
from dashboard.settings import DEFAULT_DB, load_settings
from dashboard.status import ALIVE_MIN_S, STOPPED_AFTER_S, engine_status
from dashboard.text import ago, escape_markdown, local_time, shorten
from tests.support.paths import REPO
from tests.support.stores import write_empty_store, write_store

pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


@pytest.mark.parametrize(
    ("age_s", "interval_s", "state"),
    [
        (0.0, 5.0, "alive"),
        (14.9, 5.0, "alive"),
        (15.0, 5.0, "stalled"),
        (59.0, 5.0, "stalled"),
        (60.0, 5.0, "stopped"),
        (86400.0, 5.0, "stopped"),
        # A slow checkpoint interval stretches "alive" to three missed checkpoints.
        (50.0, 30.0, "alive"),
        (100.0, 30.0, "stopped"),
        (10.0, None, "alive"),
    ],
)
def test_engine_status_follows_the_age_of_the_last_checkpoint(age_s, interval_s, state):
    assert engine_status(age_s, interval_s).state == state


def test_a_running_engine_without_its_broker_is_not_called_alive():
    assert engine_status(2.0, 5.0, broker_connected=False).label == "Broker unreachable"
    assert engine_status(2.0, 5.0, broker_connected=None).state == "alive"
    assert engine_status(3600.0, 5.0, broker_connected=False).state == "stopped"


def test_status_thresholds_are_a_few_checkpoints_and_a_minute():
    assert ALIVE_MIN_S == 15.0
    assert STOPPED_AFTER_S == 60.0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-3, "just now"),
        (0.4, "just now"),
        (12.2, "12 s ago"),
        (59.4, "59 s ago"),
        (61, "1 min ago"),
        (3599, "59 min ago"),
        (3600 + 5 * 60, "1 h 5 min ago"),
        (86400, "1 day ago"),
        (3 * 86400, "3 days ago"),
    ],
)
def test_ago_reads_like_people_say_it(seconds, text):
    assert ago(seconds) == text


def test_local_time_shows_the_clock_today_and_the_date_otherwise():
    now = time.time()
    assert len(local_time(now - 5, now=now)) == len("18:47:03")
    assert local_time(now - 10 * 86400, now=now)[:2] == "20"


def test_escaped_markdown_shows_user_text_literally():
    assert escape_markdown("**x** :red[y] `z` <b>") == r"\*\*x\*\* \:red\[y\] \`z\` \<b\>"


def test_shorten_marks_the_cut():
    assert shorten("abcdef", 4) == "abc…"
    assert shorten("abc", 4) == "abc"


def test_settings_default_to_a_laptop_with_nothing_set():
    settings = load_settings({})
    assert settings.db == DEFAULT_DB == "data/reco.db"
    assert settings.drift_threshold == 0.05
    assert settings.problems == ()


def test_settings_read_the_environment_and_name_bad_values():
    settings = load_settings(
        {
            "RECO_DB": "/x/y.db",
            "RECO_DRIFT_THRESHOLD": "0.2",
            "RECO_OVERLAP_THRESHOLD": "2",
            "RECO_DASHBOARD_REFRESH_S": "nan",
        }
    )
    assert settings.db == "/x/y.db"
    assert settings.drift_threshold == 0.2
    assert settings.overlap_threshold == 0.5
    assert settings.refresh_s == 3.0
    assert [p.split("=")[0] for p in settings.problems] == [
        "RECO_OVERLAP_THRESHOLD",
        "RECO_DASHBOARD_REFRESH_S",
    ]


def test_metrics_are_bucketed_so_a_chart_stays_small(tmp_path):
    facts = write_store(tmp_path / "reco.db", checkpoints=60)
    checkpoint = loaders.latest_checkpoint(str(facts.path))
    everything = loaders.metrics(str(facts.path), checkpoint.id)
    assert len(everything) == 60
    few = loaders.metrics(str(facts.path), checkpoint.id, max_points=12)
    assert len(few) <= 12
    assert few["received"].sum() == everything["received"].sum()
    assert (few["received_per_s"] > 0).all()
    assert loaders.MAX_CHART_POINTS <= 2000


def test_recent_window_returns_only_recent_intervals(tmp_path):
    facts = write_store(tmp_path / "reco.db", checkpoints=30, interval_s=5.0)
    checkpoint = loaders.latest_checkpoint(str(facts.path))
    recent = loaders.metrics(str(facts.path), checkpoint.id, since=checkpoint.time - 20.0)
    assert len(recent) == 5
    assert recent["time"].iloc[-1] == pytest.approx(checkpoint.time)


def test_rejected_counts_fit_the_window_into_few_bars(tmp_path):
    facts = write_store(tmp_path / "reco.db")
    checkpoint = loaders.latest_checkpoint(str(facts.path))
    counts, bucket_s = loaders.rejected_counts(
        str(facts.path), checkpoint.id, checkpoint.time - 3600, checkpoint.time
    )
    assert bucket_s == 60.0
    assert counts["count"].sum() == checkpoint.totals.rejected
    assert "payload too large" in set(counts["reason"])
    everything, bucket_s = loaders.rejected_counts(
        str(facts.path), checkpoint.id, 0.0, checkpoint.time + 7 * 86400
    )
    assert bucket_s == 3 * 3600
    assert everything["count"].sum() == checkpoint.totals.rejected


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("payload too large (70000 bytes > 65536)", "payload too large"),
        ("not a JSON object (got list)", "not a JSON object"),
        (
            "'user' must be a string or an integer, not list",
            "'user' must be a string or an integer",
        ),
        ("missing field 'item'", "missing field 'item'"),
        ("not valid JSON", "not valid JSON"),
    ],
)
def test_reasons_are_grouped_without_their_particulars(reason, kind):
    assert loaders.reason_kind(reason) == kind


def test_loaders_say_what_to_do_when_there_is_nothing_to_read(tmp_path):
    with pytest.raises(loaders.Unavailable, match=r"No store at .* start the engine"):
        loaders.latest_checkpoint(str(tmp_path / "missing.db"))
    empty = write_empty_store(tmp_path / "empty.db")
    with pytest.raises(loaders.Unavailable, match=r"No checkpoint yet in .* start the engine"):
        loaders.latest_checkpoint(str(empty))


def test_a_bad_user_id_is_refused_before_the_store_is_read(tmp_path):
    with pytest.raises(ValueError, match="at most 256 characters"):
        loaders.recommend(str(tmp_path / "missing.db"), 1, "x" * 10_000, 10)


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_loaders_import_storage_and_nothing_imports_the_engine():
    files = sorted((REPO / "dashboard").rglob("*.py"))
    assert len(files) >= 8
    for path in files:
        names = imports_of(path)
        assert not names & {"engine", "faust", "flurs", "sqlite3", "sqlite_utils"}, path
        if path.name != "loaders.py":
            assert "storage" not in names, path
