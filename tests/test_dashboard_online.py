"""The dashboard's side of the online loop: the Online page, and live lists on Recommend."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import live_api
from dashboard.settings import DEFAULT_API_URL, load_settings
from storage import OnlineCounts, StoreWriter
from tests.support.dashboard import APP
from tests.support.processors import feed, processor
from tests.support.stub_http import JsonHandler, serving

# (model impressions, clicks, baseline impressions, clicks) per checkpoint interval
INTERVALS = [(40, 10, 10, 2), (60, 20, 10, 1), (100, 30, 20, 3)]


pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


def write_online_store(
    path: Path, intervals=INTERVALS, interval_s: float = 5.0, age_s: float = 0.0
) -> Path:
    """A store from a real processor, with the given impressions and clicks per interval;
    the last checkpoint is ``age_s`` seconds old."""
    proc = processor(panel_size=3)
    feed(proc, [(f"u{u}", f"i{(u * 3 + k) % 12}") for k in range(3) for u in range(10)])
    writer = StoreWriter(path)
    end = time.time() - age_s
    for i, (mi, mc, bi, bc) in enumerate(intervals):
        write = proc.checkpoint(now=end - (len(intervals) - 1 - i) * interval_s)
        write.online = [OnlineCounts("model", mi, mc), OnlineCounts("baseline", bi, bc)]
        writer.write_checkpoint(write)
    writer.put_item_names({f"i{i}": f"Item number {i}" for i in range(12)})
    writer.close()
    return path


def open_page(db: Path, page: str, monkeypatch, api_url: str | None = None) -> AppTest:
    monkeypatch.setenv("RECO_DB", str(db))
    if api_url:
        monkeypatch.setenv("RECO_API_URL", api_url)
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def test_online_page_compares_ctr_of_model_and_baseline(tmp_path, monkeypatch):
    at = open_page(write_online_store(tmp_path / "reco.db"), "views/online.py", monkeypatch)
    shown = {metric.label: metric.value for metric in at.metric}
    assert shown["CTR, model (hybrid)"] == f"{60 / 200:.1%}"
    assert shown["CTR, popularity baseline"] == f"{6 / 40:.1%}"
    assert shown["Lift"] == "+100%"
    assert shown["Impressions/s now"] == f"{120 / 5:,.1f}"
    titles = [json.loads(chart.proto.spec)["title"] for chart in at.get("vega_lite_chart")]
    assert titles == ["CTR since the window's start", "Impressions per second"]
    at.segmented_control(key="online_ctr").set_value("Per interval").run()
    assert not at.exception
    assert json.loads(at.get("vega_lite_chart")[0].proto.spec)["title"] == (
        "CTR per checkpoint interval"
    )


def test_online_page_says_how_impressions_arise_when_there_are_none(tmp_path, monkeypatch):
    db = write_online_store(tmp_path / "reco.db", intervals=[(0, 0, 0, 0)])
    at = open_page(db, "views/online.py", monkeypatch)
    assert any("No recommendations served yet" in info.value for info in at.info)
    assert not at.metric and not at.get("vega_lite_chart")


class StubApi(JsonHandler):
    """Stands in for the engine's API: a fixed list for any user, and a log of the paths."""

    variant = "model"
    paths: list[str] = []
    authorizations: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 (the http.server spelling)
        StubApi.paths.append(self.path)
        StubApi.authorizations.append(self.headers.get("Authorization"))
        user = unquote(urlparse(self.path).path.rsplit("/", 1)[-1])
        body = {
            "user": user,
            "items": [
                {"rank": 1, "item": "live-1", "name": "Straight from the model", "score": 2.5},
                {"rank": 2, "item": "live-2", "name": None, "score": 1.5},
            ],
            "model": "hybrid" if StubApi.variant == "model" else "popular",
            "fallback": False,
            "variant": StubApi.variant,
        }
        self.reply(200, json.dumps(body).encode())


@contextmanager
def stub_api(variant: str = "model") -> Iterator[str]:
    StubApi.variant, StubApi.paths, StubApi.authorizations = variant, [], []
    with serving(StubApi) as port:
        yield f"http://127.0.0.1:{port}"


def look_up(at: AppTest, user: str) -> AppTest:
    at.text_input(key="recommend_user").set_value(user)
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def test_recommend_shows_the_live_list_when_the_api_answers(tmp_path, monkeypatch):
    db = write_online_store(tmp_path / "reco.db")
    with stub_api() as url:
        at = look_up(open_page(db, "views/recommend.py", monkeypatch, url), "u1")
        assert StubApi.paths == ["/recommend/u1?n=10&preview=1"]  # a look, not an impression
    assert any("Live" in m.value and "badge" in m.value for m in at.markdown)
    table = at.dataframe[0].value
    assert table["Item"].tolist() == ["live-1", "live-2"]
    assert table["Name"].tolist() == ["Straight from the model", "—"]
    assert any("Live, model hybrid (A/B variant model)" in c.value for c in at.caption)
    assert not at.info


def test_recommend_sends_the_api_token_when_one_is_set(tmp_path, monkeypatch):
    db = write_online_store(tmp_path / "reco.db")
    with stub_api() as url:
        look_up(open_page(db, "views/recommend.py", monkeypatch, url), "u1")
        assert StubApi.authorizations == [None]
        monkeypatch.setenv("RECO_API_TOKEN", "a-long-enough-secret-for-tests")
        look_up(open_page(db, "views/recommend.py", monkeypatch, url), "u1")
        assert StubApi.authorizations == [None, "Bearer a-long-enough-secret-for-tests"]


def test_recommend_says_when_the_user_is_in_the_baseline_group(tmp_path, monkeypatch):
    db = write_online_store(tmp_path / "reco.db")
    with stub_api(variant="baseline") as url:
        at = look_up(open_page(db, "views/recommend.py", monkeypatch, url), "u2")
    (info,) = [i.value for i in at.info]
    assert "baseline group" in info and "most popular" in info


def test_recommend_falls_back_to_the_checkpoint_and_says_how_old_it_is(tmp_path, monkeypatch):
    db = write_online_store(tmp_path / "reco.db", age_s=150)
    at = look_up(open_page(db, "views/recommend.py", monkeypatch), "u1")  # nothing on port 9
    badges = [m.value for m in at.markdown if "badge" in m.value]
    assert len(badges) == 1 and "Checkpoint, 2 min ago" in badges[0]
    assert any("gave no answer" in c.value for c in at.caption)
    items = at.dataframe[0].value["Item"].tolist()
    assert items and all(item.startswith("i") for item in items)


def test_the_api_client_turns_every_failure_into_one_reason():
    class Broken(StubApi):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(500)
            self.end_headers()

    with (
        serving(Broken) as port,
        pytest.raises(live_api.ApiUnavailable, match="an HTTP 500 answer"),
    ):
        live_api.recommend(f"http://127.0.0.1:{port}", "u1", 5)
    with pytest.raises(live_api.ApiUnavailable, match="no answer"):
        live_api.recommend("http://127.0.0.1:9", "u1", 5)


def test_the_api_address_is_a_dashboard_setting():
    assert load_settings({}).api_url == DEFAULT_API_URL == "http://127.0.0.1:6066"
    assert load_settings({"RECO_API_URL": "http://10.0.0.5:7000/"}).api_url == (
        "http://10.0.0.5:7000"
    )
    bad = load_settings({"RECO_API_URL": "10.0.0.5:7000"})
    assert bad.api_url == DEFAULT_API_URL and "RECO_API_URL" in bad.problems[0]
