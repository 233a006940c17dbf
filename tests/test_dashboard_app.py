"""Every page of the dashboard under Streamlit's AppTest, on stores the tests prepare."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from storage import MAX_USER_ID_LENGTH, StoreReader
from tests.support.dashboard import APP
from tests.support.stores import StoreFacts, write_empty_store, write_store

PAGES = {
    "Live": None,
    "Model": "views/model.py",
    "Recommend": "views/recommend.py",
    "Data quality": "views/quality.py",
}


pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


@pytest.fixture
def store(tmp_path: Path) -> StoreFacts:
    return write_store(tmp_path / "reco.db")


def open_page(db: Path, page: str, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("RECO_DB", str(db))
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    if PAGES[page]:
        at.switch_page(PAGES[page]).run()
    assert not at.exception, at.exception
    return at


def charts(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("vega_lite_chart")]


def infos(at: AppTest) -> list[str]:
    return [info.value for info in at.info]


def metrics(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def test_live_page_shows_status_headline_numbers_and_throughput(store, monkeypatch):
    at = open_page(store.path, "Live", monkeypatch)

    assert at.title[0].value == "Live"
    assert "Engine alive" in at.markdown[0].value
    assert re.match(
        r"Last checkpoint \*\*(just now|\d+ s ago)\*\* at \d\d:\d\d:\d\d", at.markdown[1].value
    )
    reader = StoreReader(store.path)
    totals = reader.latest_checkpoint().totals
    shown = metrics(at)
    assert shown["Events received"] == f"{totals.received:,}"
    assert shown["Accepted"] == f"{totals.accepted:,}"
    assert shown["Rejected"] == f"{totals.rejected:,}"
    assert shown["Users"] == str(len(store.users))
    assert shown["Items"] == str(len(store.items))
    assert {"Events/s now", "Consumer lag"} <= shown.keys()
    latest = reader.latest_checkpoint().interval
    assert at.metric[0].proto.delta == f"+{latest.received:,}"
    (throughput,) = charts(at)
    assert throughput["title"] == "Events per second"


@pytest.mark.parametrize(("age_s", "label"), [(40.0, "Engine stalled"), (3600.0, "Engine stopped")])
def test_live_page_says_when_the_engine_is_stalled_or_stopped(tmp_path, monkeypatch, age_s, label):
    facts = write_store(tmp_path / "reco.db", end=time.time() - age_s)
    at = open_page(facts.path, "Live", monkeypatch)
    assert label in at.markdown[0].value
    assert any(m.label == "Events/s (last interval)" for m in at.metric)


def test_live_page_says_when_the_engine_cannot_reach_the_broker(tmp_path, monkeypatch):
    facts = write_store(tmp_path / "reco.db", broker_connected=False)
    at = open_page(facts.path, "Live", monkeypatch)
    assert "Broker unreachable" in at.markdown[0].value
    assert "cannot reach the broker since " in at.markdown[1].value


def test_live_window_choice_survives_a_rerun(store, monkeypatch):
    at = open_page(store.path, "Live", monkeypatch)
    at.segmented_control(key="live_window").set_value("5 min").run()
    at.run()
    assert at.segmented_control(key="live_window").value == "5 min"
    assert not at.exception


@pytest.mark.parametrize(
    ("page", "key"),
    [("Live", "live_window"), ("Model", "model_window"), ("Data quality", "quality_window")],
)
@pytest.mark.parametrize("window", ["5 min", "All"])
def test_every_window_draws_without_errors(store, monkeypatch, page, key, window):
    at = open_page(store.path, page, monkeypatch)
    at.segmented_control(key=key).set_value(window).run()
    assert not at.exception
    assert charts(at)


def test_model_page_compares_model_with_popularity_and_marks_drift(store, monkeypatch):
    monkeypatch.setenv("RECO_DRIFT_THRESHOLD", "0.1")
    at = open_page(store.path, "Model", monkeypatch)

    checkpoint = StoreReader(store.path).latest_checkpoint()
    shown = metrics(at)
    assert shown["Recall@10, model"] == f"{checkpoint.recall_at_10:.1%}"
    assert shown["Recall@10, popularity"] == f"{checkpoint.popular_recall_at_10:.1%}"
    lift = checkpoint.recall_at_10 / checkpoint.popular_recall_at_10
    assert shown["Lift over baseline"] == f"×{lift:.2f}"
    assert shown["Update time per event"].endswith(" µs")
    titles = [chart["title"] for chart in charts(at)]
    assert titles == [
        "Cumulative recall@10",
        "Item-factor change",
        "Top-10 overlap of the panel",
        "Time per event",
    ]
    assert "10%" in " ".join(c.value for c in at.caption)  # the threshold from the environment
    # Every chart has a caption saying what it means.
    assert len(at.caption) >= len(titles) + 1

    at.segmented_control(key="model_recall").set_value("Per interval").run()
    assert charts(at)[0]["title"] == "Recall@10 per checkpoint interval"


def test_a_bad_setting_is_named_and_the_default_used(store, monkeypatch):
    monkeypatch.setenv("RECO_DRIFT_THRESHOLD", "lots")
    at = open_page(store.path, "Model", monkeypatch)
    assert any("RECO_DRIFT_THRESHOLD='lots'" in w.value for w in at.warning)
    assert "5%" in " ".join(c.value for c in at.caption)


def submit(at: AppTest, user: str, n: int | None = None) -> AppTest:
    at.text_input(key="recommend_user").set_value(user)
    if n is not None:
        at.number_input(key="recommend_n").set_value(n)
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def test_recommend_shows_named_top_n_beside_history_and_keeps_it(store, monkeypatch):
    at = open_page(store.path, "Recommend", monkeypatch)
    user = store.users[0]
    assert at.pills(key="recommend_suggestion").options[:3] == store.users[:3]

    submit(at, user)

    recommendations, history = (frame.value for frame in at.dataframe)
    assert list(recommendations.columns) == ["Rank", "Item", "Name", "Score"]
    assert recommendations["Rank"].tolist() == list(range(1, 11))
    assert recommendations["Name"].tolist() == [store.names[i] for i in recommendations["Item"]]
    assert recommendations["Score"].is_monotonic_decreasing
    expected = [h.item for h in StoreReader(store.path).history(user)]
    assert history["Item"].tolist() == expected
    assert not set(recommendations["Item"]) & set(expected)
    assert not infos(at) and not at.warning
    assert at.subheader[0].value == f"Top 10 for user {user}"
    assert at.get("download_button")[0].proto.label == "Download CSV"

    at.run()  # a rerun (another widget, a page refresh) keeps the result on screen
    assert len(at.dataframe) == 2
    assert at.subheader[0].value == f"Top 10 for user {user}"


def test_recommend_respects_n(store, monkeypatch):
    at = submit(open_page(store.path, "Recommend", monkeypatch), store.users[1], n=3)
    assert len(at.dataframe[0].value) == 3
    assert at.subheader[0].value == f"Top 3 for user {store.users[1]}"


def test_clicking_a_suggested_user_looks_it_up(store, monkeypatch):
    at = open_page(store.path, "Recommend", monkeypatch)
    at.pills(key="recommend_suggestion").set_value(store.users[2]).run()
    assert not at.exception
    assert at.text_input(key="recommend_user").value == store.users[2]
    assert at.subheader[0].value == f"Top 10 for user {store.users[2]}"


def test_unknown_user_gets_the_labelled_popularity_fallback(store, monkeypatch):
    at = submit(open_page(store.path, "Recommend", monkeypatch), "nobody-here")
    (info,) = infos(at)
    assert "popularity fallback" in info and "not in the model" in info
    assert at.subheader[0].value.startswith("Most popular items for")
    top = at.dataframe[0].value
    assert len(top) == 10
    assert top["Item"].tolist() == [
        r.item for r in StoreReader(store.path).recommend("nobody-here").items
    ]


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ("", "Type a user id, or pick one of the known users."),
        ("   ", "Type a user id, or pick one of the known users."),
        (
            "x" * 10_000,
            "That user id cannot be looked up: a user id has at most 256 characters; "
            "this one has 10000.",
        ),
        (
            "x" * (MAX_USER_ID_LENGTH + 1),
            "That user id cannot be looked up: a user id has at "
            "most 256 characters; this one has 257.",
        ),
        (
            "tab\tinside",
            "That user id cannot be looked up: a user id cannot contain control characters.",
        ),
        (
            "null\x00byte",
            "That user id cannot be looked up: a user id cannot contain control characters.",
        ),
    ],
)
def test_ids_that_cannot_be_looked_up_get_a_friendly_message(store, monkeypatch, user, message):
    at = submit(open_page(store.path, "Recommend", monkeypatch), user)
    assert [warning.value for warning in at.warning] == [message]
    assert not at.dataframe


@pytest.mark.parametrize(
    "user",
    [
        "1' OR '1'='1",
        "'; DROP TABLE users; --",
        '"quoted"',
        "ユーザー😀",
        "**bold** <b>html</b> :red[x] $x$",
        "%",
        "_",
    ],
)
def test_odd_but_valid_ids_are_looked_up_safely(store, monkeypatch, user):
    at = submit(open_page(store.path, "Recommend", monkeypatch), user)
    (info,) = infos(at)
    assert "popularity fallback" in info
    assert len(at.dataframe[0].value) == 10
    # The store is untouched and still answers.
    assert len(StoreReader(store.path).user_ids(limit=1000)) == len(store.users)


def test_data_quality_page_counts_and_lists_rejected_messages(store, monkeypatch):
    at = open_page(store.path, "Data quality", monkeypatch)
    checkpoint = StoreReader(store.path).latest_checkpoint()
    assert metrics(at)["Rejected messages"] == f"{checkpoint.totals.rejected:,}"
    (chart,) = charts(at)
    assert chart["title"] == "Rejected messages by reason"
    (table,) = (frame.value for frame in at.dataframe)
    assert list(table.columns) == ["Time", "Reason", "Partition", "Offset", "Payload"]
    assert len(table) == checkpoint.totals.rejected
    assert table["Payload"].str.len().max() <= 120
    assert not table["Time"].astype(str).str.fullmatch(r"\d{9,}(\.\d+)?").any()


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_on_an_empty_store_says_how_to_start(tmp_path, monkeypatch, page):
    db = write_empty_store(tmp_path / "reco.db")
    at = open_page(db, page, monkeypatch)
    assert infos(at) == [
        f"No checkpoint yet in {db} — start the engine with ./run.sh; this "
        "page fills in as soon as it writes one."
    ]
    assert not at.metric and not at.dataframe and not charts(at)


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_on_a_missing_store_says_how_to_start(tmp_path, monkeypatch, page):
    db = tmp_path / "nowhere" / "reco.db"
    at = open_page(db, page, monkeypatch)
    (info,) = infos(at)
    assert info.startswith(f"No store at {db} yet — start the engine with ./run.sh")
    assert not at.metric and not charts(at)
    assert not db.exists()  # reading never creates the store


def test_a_file_that_is_not_a_store_gets_one_line_not_a_traceback(tmp_path, monkeypatch):
    db = tmp_path / "reco.db"
    db.write_bytes(b"this is not SQLite" * 100)
    at = open_page(db, "Live", monkeypatch)
    (info,) = infos(at)
    assert info.startswith("Cannot read the store")
