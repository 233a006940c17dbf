"""`worker`, Faust's own worker command and `status`, run as a user runs them.

The runs are slow jobs (tests/support/command_jobs.py): a test checks what one showed.
"""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from engine.settings import Settings
from engine.sources.broker import free_port
from engine.sources.producer import send_messages
from tests.support.api import get_or_none
from tests.support.command_jobs import (
    FAUST_HOST,
    FAUST_TOPIC,
    MALFORMED,
    MIN_RATING,
    SYNTHETIC_EVENTS,
    UDATA_EVENTS,
    needs,
    synthetic_counts,
)
from tests.support.commands import command_env, engine, one_line, shell_env
from tests.support.messages import message
from tests.support.rating_files import (
    MOVIES_CSV_NAMES,
    MOVIES_DAT_NAMES,
    RATINGS_CSV,
    RATINGS_DAT,
    U_DATA,
    U_ITEM_NAMES,
    expected_replay,
)
from tests.support.readme import covers, readme_commands_like, runs_readme, status_keys
from tests.support.stores import write_deployment
from tests.support.workers import Worker, wait_for

# The slow commands (tests/support/command_jobs.py) start with the first test of the
# test_commands_* modules, whichever runs first.
pytestmark = pytest.mark.usefixtures("command_jobs")

# -- the worker ----------------------------------------------------------------


@pytest.mark.integration
@needs("worker")
@covers("worker", "--web-port", "--broker", "--topic", "--db", "--checkpoint-interval")
@covers("worker", "--model", "--min-rating", "--eval-fraction", "--partitions", "--log-level")
@covers("worker", "--encoding")
@covers("produce", "--compression")
def test_worker_counts_every_event_sent_once(worker_run):
    """Sent by five producers, each with another codec (none, gzip, snappy, lz4, zstd)."""
    run = worker_run
    for name, produced in run.produced.items():
        assert produced.code == 0, f"produce {name} failed:\n{produced.output[-3000:]}"
    counted = run.counted
    assert counted is not None, run.output[-3000:]
    replays = expected_replay(U_DATA, UDATA_EVENTS) + RATINGS_DAT + RATINGS_CSV
    rejected, synthetic_positive = synthetic_counts(SYNTHETIC_EVENTS, MALFORMED, MIN_RATING)
    totals = counted.totals
    assert totals.received == len(replays) + SYNTHETIC_EVENTS
    assert totals.rejected == rejected > 0
    assert totals.accepted == totals.received - rejected
    # --min-rating 3 beat RECO_MIN_RATING=5, --eval-fraction 0.5 evaluates about half.
    assert totals.positive == sum(r.rating >= MIN_RATING for r in replays) + synthetic_positive
    assert 0 < totals.evaluated < totals.positive
    assert counted.model == "popular"  # --model beat RECO_MODEL=mf
    assert counted.topic == "commands-worker"  # --topic beat RECO_TOPIC
    # --partitions 2 (given to the first producer too): events in both, none lost.
    assert sorted(counted.offsets) == [0, 1] and sum(counted.offsets.values()) == totals.received


@pytest.mark.integration
@needs("worker")
@covers("worker", "--web-port")
def test_worker_serves_the_live_api_on_its_web_port(worker_run):
    run = worker_run
    assert run.health is not None and run.recommended is not None, run.output[-3000:]
    assert run.health["ok"] is True, run.health
    assert run.health["events"] == run.counted.totals.received
    items = run.recommended["items"]
    assert run.recommended["user"] == "1" and len(items) > 0
    assert run.unauthorised == 401  # RECO_API_TOKEN is set: no token, no answer
    names = U_ITEM_NAMES | MOVIES_DAT_NAMES | MOVIES_CSV_NAMES
    for item in items:
        if not item["item"].startswith("i"):  # the synthetic stream's items are i0, i1, ...
            assert item["name"] == names[item["item"]]


@pytest.mark.integration
@needs("worker")
@covers("worker", "--web-port")
def test_a_second_worker_on_a_taken_port_stops_with_one_line(worker_run):
    taken = worker_run.port_taken
    assert taken.returncode == 2
    assert str(worker_run.port) in one_line(taken.stderr)


@pytest.mark.integration
@needs("worker")
@covers("worker")
def test_worker_stops_on_sigterm_with_a_final_checkpoint(worker_run):
    run = worker_run
    assert run.exit_code == 0, run.output[-3000:]
    final = re.findall(r"final checkpoint (\d+): (\d+) events in total", run.output)
    assert final, run.output[-3000:]
    assert run.final is not None and run.final.id == int(final[-1][0])
    assert run.final.time >= run.stop_requested
    assert run.final.totals.received == int(final[-1][1]) >= run.looped.totals.received
    assert "Traceback" not in run.output
    assert not (run.cwd / "data").exists()  # its Faust folder is beside its store


@pytest.mark.integration
@needs("faust")
@covers("faust -A engine.worker.app worker")
@covers("produce", "--encoding")
def test_faust_worker_consumes_msgpack_events_and_stops_on_sigterm(command_jobs):
    run = command_jobs["faust"].result()
    assert run.empty is not None and run.empty.totals.received == 0, run.output[-3000:]
    produced = run.produced["ratings.csv"]
    assert produced.code == 0, produced.output
    assert run.counted is not None, run.output[-3000:]
    totals = run.counted.totals
    assert totals.received == totals.accepted == len(RATINGS_CSV)  # decoded, none rejected
    assert totals.positive == sum(r.rating >= 4 for r in RATINGS_CSV)
    assert run.health is not None, f"no API on {FAUST_HOST}:{run.port}"
    assert run.health["ok"] is True and run.health["events"] == len(RATINGS_CSV)
    assert run.exit_code == 0, run.output[-3000:]
    assert run.final.time >= run.stop_requested
    assert run.final.totals.received == len(RATINGS_CSV)
    assert "Traceback" not in run.output


@pytest.mark.integration
@needs("faust")
def test_the_topic_the_worker_creates_has_reco_replication_copies(command_jobs, broker):
    command_jobs["faust"].result()
    (described,) = asyncio.run(_describe(broker.url, FAUST_TOPIC))
    replicas = [len(partition["replicas"]) for partition in described["partitions"]]
    assert replicas and set(replicas) == {3}, described


async def _describe(broker_url: str, topic: str) -> list[dict]:
    from aiokafka.admin import AIOKafkaAdminClient

    from engine.sources.kafka import bootstrap_servers

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(broker_url))
    await admin.start()
    try:
        return await admin.describe_topics([topic])
    finally:
        await admin.close()


# -- status --------------------------------------------------------------------


@pytest.mark.integration
@needs("worker")
@covers("status", "--db")
def test_status_prints_the_documented_keys_of_the_latest_checkpoint(worker_run):
    status = worker_run.status
    assert status.returncode == 0, status.stderr
    printed = json.loads(status.stdout)
    assert set(printed) == status_keys()
    final = worker_run.final
    assert printed["checkpoint_id"] == final.id and printed["received"] == final.totals.received
    assert printed["offsets"] == {str(p): o for p, o in final.offsets.items()}
    assert set(printed["online"]) == {"model", "baseline"}
    assert sum(printed["rejected_by_reason"].values()) == printed["rejected"] > 0


@covers("status")
def test_status_without_a_store_says_so_in_one_line(tmp_path):
    result = engine("status", env=command_env(), cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert "data/reco.db" in one_line(result.stderr)
    assert list(tmp_path.iterdir()) == []  # no store or folder made by asking


@covers("status", "--db")
def test_status_of_several_stores_prints_the_deployment_each_partition_once(tmp_path):
    facts = write_deployment(tmp_path / "stores")
    listed = ",".join(str(p.relative_to(tmp_path)) for p in facts.stores)
    result = engine("status", "--db", listed, env=command_env(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert set(printed) == status_keys()
    newest = [state for _, state in facts.newest.values()]
    assert printed["received"] == sum(s.totals.received for s in newest)
    assert printed["received"] != sum(own.received for own in facts.own)  # not a plain sum
    assert printed["evaluated"] == sum(s.totals.evaluated for s in newest)
    hits = sum(s.totals.model_hits for s in newest)
    assert printed["recall_at_10"] == pytest.approx(hits / printed["evaluated"])
    assert printed["offsets"] == {str(s.partition): s.offset for s in newest}
    assert [w["worker"] for w in printed["workers"]] == facts.workers
    assert [w["received"] for w in printed["workers"]] == [own.received for own in facts.own]
    assert [(p["partition"], p["lag"]) for p in printed["partitions"]] == [
        (s.partition, s.lag) for s in newest
    ]


@covers("status")
def test_status_reads_every_store_of_a_folder_named_by_reco_db(tmp_path):
    facts = write_deployment(tmp_path / "stores")
    listed = ",".join(str(p.relative_to(tmp_path)) for p in facts.stores)
    by_list = engine("status", env=command_env(RECO_DB=listed), cwd=tmp_path)
    by_folder = engine("status", env=command_env(RECO_DB="stores"), cwd=tmp_path)
    assert by_folder.returncode == 0, by_folder.stderr
    folder, named = json.loads(by_folder.stdout), json.loads(by_list.stdout)
    assert [w["worker"] for w in folder["workers"]] == facts.workers
    assert folder["partitions"] == named["partitions"] and folder["received"] == named["received"]


@covers("status", "--db")
def test_status_names_a_missing_store_of_a_list_in_one_line(tmp_path):
    facts = write_deployment(tmp_path / "stores")
    listed = f"{facts.stores[0]},{tmp_path / 'stores' / 'gone.db'}"
    result = engine("status", "--db", listed, env=command_env(), cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert "gone.db" in one_line(result.stderr)


@covers("status", "--db")
@pytest.mark.parametrize(
    ("value", "says"), [("a.db,,b.db", "empty item"), ("empty", "holds no *.db store")]
)
def test_status_refuses_a_bad_list_of_stores_in_one_line(tmp_path, value, says):
    (tmp_path / "empty").mkdir()
    result = engine("status", "--db", value, env=command_env(), cwd=tmp_path)
    line = one_line(result.stderr)
    assert result.returncode == 2 and result.stdout == ""
    assert "RECO_DB" in line and says in line
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]  # nothing made


@covers("worker", "--db")
@pytest.mark.parametrize("value", ["stores", "stores/worker-1.db,stores/worker-2.db"])
def test_a_worker_refuses_several_stores_in_one_line(tmp_path, value):
    write_deployment(tmp_path / "stores")
    env = command_env(RECO_WEB_PORT=free_port())
    result = engine("worker", "--db", value, env=env, cwd=tmp_path, timeout=30)
    line = one_line(result.stderr)
    assert result.returncode == 2 and "RECO_DB" in line and "exactly one store" in line
    assert [p.name for p in tmp_path.iterdir()] == ["stores"]


@pytest.mark.integration
@covers("status", "--db")
def test_status_of_a_store_without_a_checkpoint_says_so_in_one_line(
    broker, command_layout, tmp_path
):
    db = tmp_path / "names-only.db"
    names = engine(
        "produce", "--source", command_layout.ratings_csv, "--events", 1, "--quiet", "--db", db,
        "--broker", broker.url, "--topic", "commands-names-only", env=command_env(), cwd=tmp_path,
    )  # fmt: skip
    assert names.returncode == 0, names.stderr
    result = engine("status", "--db", db, env=command_env(), cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert str(db) in one_line(result.stderr)


@pytest.mark.integration
@runs_readme(r"^python -m engine worker --web-port 6067")
def test_a_second_worker_joins_as_the_readme_shows(broker, tmp_path):
    """The README's line, from a fresh folder beside a first worker: both work, status adds them."""
    line = readme_commands_like(r"^python -m engine worker --web-port 6067")[0]
    settings = {
        "RECO_BROKER": broker.url,
        "RECO_TOPIC": "events-second-worker",
        "RECO_GROUP": "group-second-worker",
        "RECO_CHECKPOINT_INTERVAL": 1,
    }
    first_port = free_port()
    workers = [
        Worker(
            command_env(**settings, RECO_WEB_PORT=first_port),
            tmp_path / "worker-1.log",
            cwd=tmp_path,
        ),
        Worker(
            shell_env(**settings),
            tmp_path / "worker-2.log",
            command=["bash", "-c", f"exec {line}"],
            cwd=tmp_path,
        ),
    ]
    apis = [f"http://127.0.0.1:{port}" for port in (first_port, 6067)]
    try:
        for worker in workers:
            worker.start()
        wait_for(
            lambda: (
                all(get_or_none(f"{api}/health")[1] for api in apis)
                and all(get_or_none(f"{api}/health")[1]["partitions"] for api in apis)
            ),
            120,
            "both workers to own partitions",
        )
        events = [message(f"u{n % 40}", f"i{n % 25}") for n in range(400)]
        asyncio.run(
            send_messages(
                events,
                broker=broker.url,
                topic=settings["RECO_TOPIC"],
                partitions=Settings().partitions,
            )
        )
        stores = "data/reco.db,data/worker-2.db"

        def counted() -> dict | None:
            done = engine("status", "--db", stores, env=command_env(), cwd=tmp_path)
            if done.returncode != 0:
                return None
            figures = json.loads(done.stdout)
            return figures if figures["received"] == len(events) else None

        figures = wait_for(counted, 60, "status over both stores to count every event")
        assert len(figures["workers"]) == 2
        assert all(w["received"] for w in figures["workers"]), figures["workers"]
        for worker in workers:
            assert worker.terminate() == 0, worker.output()[-3000:]
    finally:
        for worker in workers:
            worker.stop_quietly()
