"""The dashboard over several stores: the deployment's figures, its workers and partitions."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from storage import StoreReader, Totals
from tests.support.dashboard import APP
from tests.support.stores import DeploymentFacts, write_deployment, write_store

pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


@pytest.fixture
def facts(tmp_path: Path) -> DeploymentFacts:
    return write_deployment(tmp_path / "stores")


def open_live(db: str, monkeypatch: pytest.MonkeyPatch, page: str | None = None) -> AppTest:
    monkeypatch.setenv("RECO_DB", db)
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def shown(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def newest_totals(facts: DeploymentFacts) -> Totals:
    states = [state for _, state in facts.newest.values()]
    return Totals(
        **{f.name: sum(getattr(s.totals, f.name) for s in states) for f in fields(Totals)}
    )


def test_live_shows_each_partition_once_at_its_newest_state(facts, monkeypatch):
    at = open_live(",".join(map(str, facts.stores)), monkeypatch)
    expected = newest_totals(facts)
    plain = sum(own.received for own in facts.own)

    tiles = shown(at)
    assert tiles["Events received"] == f"{expected.received:,}" != f"{plain:,}"
    assert tiles["Accepted"] == f"{expected.accepted:,}"
    assert tiles["Positive events"] == f"{expected.positive:,}"
    assert tiles["Recall@10, deployment"] == f"{expected.model_hits / expected.evaluated:.1%}"
    lags = [state.lag for _, state in facts.newest.values() if state.lag is not None]
    assert tiles["Consumer lag"] == f"{sum(lags):,}"
    # Only the worker still checkpointing adds to the rate; the first stopped a minute ago.
    assert tiles["Events/s, all workers"] == f"{facts.interval_received[1] / 5.0:,.0f}"


def test_live_tables_say_which_worker_owns_which_partition(facts, monkeypatch):
    at = open_live(",".join(map(str, facts.stores)), monkeypatch)
    workers, partitions = (frame.value for frame in at.dataframe)

    assert workers["Worker"].tolist() == facts.workers
    assert workers["Received (own)"].tolist() == [own.received for own in facts.own]
    assert workers["Events/s"].tolist() == [r / 5.0 for r in facts.interval_received]
    recalls = [own.model_hits / own.evaluated for own in facts.own]
    assert workers["Recall@10"].tolist() == pytest.approx(recalls)
    assert partitions["Partition"].tolist() == sorted(facts.newest)
    for _, row in partitions.iterrows():
        store, state = facts.newest[row["Partition"]]
        assert row["Owner"] == facts.workers[facts.stores.index(store)]
        assert (row["Offset"], row["Received"]) == (state.offset, state.totals.received)
        assert row["Lag"] == state.lag if state.lag is not None else pd.isna(row["Lag"])


def test_live_charts_lag_per_partition_and_events_per_worker(facts, monkeypatch):
    at = open_live(",".join(map(str, facts.stores)), monkeypatch)
    at.segmented_control(key="deployment_window").set_value("All").run()
    assert not at.exception
    specs = [json.loads(chart.proto.spec) for chart in at.get("vega_lite_chart")]
    titles = [spec["title"] for spec in specs]
    assert titles == ["Consumer lag per partition", "Events per second by worker"]
    (lag_data,) = [d for d in at.get("vega_lite_chart")[0].proto.datasets]
    assert lag_data  # the chart carries the partitions' rows


def test_a_folder_of_stores_reads_as_the_same_deployment(facts, monkeypatch, tmp_path):
    at = open_live(str(tmp_path / "stores"), monkeypatch)
    assert shown(at)["Events received"] == f"{newest_totals(facts).received:,}"


def test_a_one_store_page_picks_one_of_several_stores(facts, monkeypatch):
    at = open_live(",".join(map(str, facts.stores)), monkeypatch, page="views/model.py")
    (picker,) = at.selectbox
    assert picker.options == [str(p) for p in facts.stores]
    picker.set_value(str(facts.stores[1])).run()
    assert not at.exception
    own = StoreReader(facts.stores[1]).latest_checkpoint()
    assert shown(at)["Recall@10, model"] == f"{own.recall_at_10:.1%}"


@pytest.mark.parametrize(("value", "says"), [("a.db,,b.db", "empty item"), ("{empty}", "*.db")])
def test_a_bad_list_of_stores_says_what_to_fix(tmp_path, monkeypatch, value, says):
    (tmp_path / "empty").mkdir()
    at = open_live(value.format(empty=tmp_path / "empty"), monkeypatch)
    (error,) = at.error
    assert "RECO_DB" in error.value and says in error.value
    assert not at.metric


def test_a_missing_store_of_several_is_named(facts, monkeypatch, tmp_path):
    at = open_live(f"{facts.stores[0]},{tmp_path / 'gone.db'}", monkeypatch)
    assert any("gone.db" in info.value for info in at.info)
    assert not at.metric


def test_one_store_with_partitions_also_lists_them(tmp_path, monkeypatch, facts):
    at = open_live(str(facts.stores[1]), monkeypatch)
    assert shown(at)["Events received"] == f"{facts.own[1].received:,}"  # its own, as ever
    (table,) = [frame.value for frame in at.dataframe]
    assert table["Partition"].tolist() == sorted(facts.newest)


def test_one_older_store_shows_no_partitions_table(tmp_path, monkeypatch):
    store = write_store(tmp_path / "reco.db", checkpoints=3)
    at = open_live(str(store.path), monkeypatch)
    assert not at.dataframe and not at.selectbox
