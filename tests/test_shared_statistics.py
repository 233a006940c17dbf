"""Workers splitting the partitions share one model's item statistics, and hand partitions over.

In process, with the engine's own StreamProcessor: the item statistics of
workers that exchange their increments equal one worker's on the whole
stream, and a partition handed over continues exactly.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from engine.processing.processor import ProcessorConfig, StreamProcessor
from storage import Totals
from tests.support.messages import KnownStream

PARTITIONS = 4
# Every like ever counted, and rows wide enough that no co-occurrence is evicted:
# then a deployment's counts must equal one worker's exactly.
EXACT = {"popularity_window": 0, "neighbours": 1024, "profile": 20}


def new_processor(model: str = "hybrid", params: dict | None = None) -> StreamProcessor:
    processor = StreamProcessor(
        ProcessorConfig(model=model, model_params=params, panel_size=0, seed=7)
    )
    processor.publishing = True
    return processor


def stream(n: int, **options) -> list[bytes]:
    """``n`` messages of a seeded stream: positive, negative and malformed ones."""
    known = KnownStream(uniform=True, **options)
    return [known.next()[0] for _ in range(n)]


def partition_of(raw: bytes) -> int:
    """A stand-in for the producer's keyed partitioning: the same user, the same partition."""
    import json

    try:
        user = str(json.loads(raw)["user"])
    except Exception:
        user = ""
    return zlib.crc32(user.encode()) % PARTITIONS


def partitioned(messages: list[bytes]) -> list[tuple[bytes, int, int]]:
    """(message, partition, offset) in stream order, offsets counted per partition."""
    next_offset = [0] * PARTITIONS
    out = []
    for raw in messages:
        p = partition_of(raw)
        out.append((raw, p, next_offset[p]))
        next_offset[p] += 1
    return out


def exchange(workers: list[StreamProcessor]) -> None:
    """Every worker's increments since the last exchange, applied by every other worker."""
    drained = [worker.drain_shared() for worker in workers]
    for w, worker in enumerate(workers):
        for other, shared in enumerate(drained):
            if other != w:
                for partition, events in shared.items():
                    worker.apply_shared(partition, events)


def item_statistics(processor: StreamProcessor) -> dict[str, tuple]:
    """Item id -> (recent count, stage counts, neighbours {item id: count}, baseline count)."""
    rec = processor.recommender
    rows, counts = rec.export_items()
    s = 12  # storage.N_STAGES
    m = (rows.shape[1] - s) // 2
    ids = rec.item_ids
    stats = {}
    for i, item in enumerate(ids):
        neighbours = {
            ids[int(j)]: float(c)
            for j, c in zip(rows[i, s : s + m], rows[i, s + m :], strict=True)
            if c > 0
        }
        stats[item] = (
            float(counts[i]),
            tuple(rows[i, :s].tolist()),
            neighbours,
            float(processor.popularity.view[i]),
        )
    return stats


def run_deployment(messages, owners: dict[int, int], n_workers: int, exchange_every: int):
    workers = [new_processor(params=EXACT) for _ in range(n_workers)]
    for position, (raw, partition, offset) in enumerate(partitioned(messages), start=1):
        workers[owners[partition]].process_run([(raw, partition, offset)])
        if position % exchange_every == 0:
            exchange(workers)
    exchange(workers)
    return workers


@pytest.mark.parametrize("exchange_every", [1, 97])
def test_two_workers_hold_the_item_statistics_of_one(exchange_every):
    messages = stream(3000, users=120, items=80, seed=5)
    single = new_processor(params=EXACT)
    single.process_run(partitioned(messages))
    workers = run_deployment(messages, {0: 0, 1: 1, 2: 0, 3: 1}, 2, exchange_every)
    expected = item_statistics(single)
    for worker in workers:
        assert item_statistics(worker) == expected
    # The partitions' counts add up to the whole stream's, each counted by its owner.
    summed = Totals()
    for worker in workers:
        for counts in worker.partition_totals.values():
            summed = summed.plus(counts)
    assert (summed.received, summed.accepted, summed.positive, summed.rejected) == (
        single.totals.received,
        single.totals.accepted,
        single.totals.positive,
        single.totals.rejected,
    )
    assert sum(vars(single.partition_totals[p])["positive"] for p in range(PARTITIONS)) == (
        single.totals.positive
    )


def test_shared_events_count_once_however_often_they_come():
    messages = stream(600, users=50, items=40, seed=2)
    a, b = new_processor(params=EXACT), new_processor(params=EXACT)
    for raw, partition, offset in partitioned(messages):
        a.process_run([(raw, partition, offset)])
    shared = a.drain_shared()
    for _ in range(3):
        for partition, events in shared.items():
            b.apply_shared(partition, events)
    assert item_statistics(b) == item_statistics(a)
    assert b.shared_applied == sum(len(events) for events in shared.values())


def test_a_handed_over_partition_continues_as_if_it_never_moved():
    """Worker A processes part of the stream, hands partition 1 to B; B continues exactly."""
    messages = partitioned(stream(2000, users=60, items=50, seed=9))
    half = len(messages) // 2
    reference = new_processor(params=EXACT)
    reference.process_run(messages)

    a, b = new_processor(params=EXACT), new_processor(params=EXACT)
    owners = {0: a, 1: a, 2: a, 3: a}
    for message in messages[:half]:
        owners[message[1]].process_run([message])
    exchange([a, b])
    # The handover: partition 1's users, counts and offset, as the changelog carries them.
    a.history.drain_touched()
    states = {state.partition: state for state in a.partition_states()}
    users = a.changed_users_by_partition(np.arange(a.recommender.n_users))[1]
    b.adopt_partition(1, states[1].offset, states[1].totals, users)
    a.release_partition(1)
    owners[1] = b
    for message in messages[half:]:
        owners[message[1]].process_run([message])
    exchange([a, b])
    assert item_statistics(a) == item_statistics(reference)
    assert item_statistics(b) == item_statistics(reference)
    assert b.partition_totals[1].positive == reference.partition_totals[1].positive
    assert b.partition_totals[1].received == reference.partition_totals[1].received
    # Partition 1's users rank alike wherever they are.
    for user in {u for u, _ in users}:
        ua, ub = reference.recommender.user_index(user), b.recommender.user_index(user)
        assert reference.history.items(ua).size == b.history.items(ub).size
        ids_ref = [reference.recommender.item_ids[i] for i in reference.history.items(ua)]
        ids_b = [b.recommender.item_ids[i] for i in b.history.items(ub)]
        assert ids_ref == ids_b
        top_ref = np.argsort(-reference.recommender.scores(ua), kind="stable")[:10]
        top_b = np.argsort(-b.recommender.scores(ub), kind="stable")[:10]
        assert [reference.recommender.item_ids[i] for i in top_ref] == [
            b.recommender.item_ids[i] for i in top_b
        ]


def test_events_replayed_after_a_takeover_update_users_only():
    """A took events past its handover into the shared statistics, then died: B replays them."""
    messages = partitioned(stream(1500, users=60, items=50, seed=4))
    reference = new_processor(params=EXACT)
    reference.process_run(messages)
    a, b = new_processor(params=EXACT), new_processor(params=EXACT)
    first = [m for m in messages if m[1] == 0]
    cut, died = len(first) // 3, 2 * len(first) // 3
    a.process_run(first[:cut])
    a.history.drain_touched()
    state = a.partition_states()[0]
    users = a.changed_users_by_partition(np.arange(a.recommender.n_users))[0]
    a.process_run(first[cut:died])  # shared, never handed over: A dies here
    exchange([a, b])
    b.adopt_partition(0, state.offset, state.totals, users)
    b.process_run(first[cut:])
    others = [m for m in messages if m[1] != 0]
    b.process_run(others)
    single = new_processor(params=EXACT)
    single.process_run(first + others)
    assert item_statistics(b) == item_statistics(single)
    assert b.partition_totals[0].positive == single.partition_totals[0].positive
    assert b.replayed == sum(1 for m in first[cut:died] if _positive(m[0]))


def _positive(raw: bytes) -> bool:
    import json

    try:
        return float(json.loads(raw)["rating"]) >= 4.0
    except Exception:
        return False


@pytest.mark.parametrize("model", ["popular", "mf"])
def test_the_baseline_is_shared_for_every_model(model):
    messages = stream(1500, users=80, items=60, seed=3)
    single = new_processor(model)
    single.process_run(partitioned(messages))
    workers = [new_processor(model), new_processor(model)]
    for raw, partition, offset in partitioned(messages):
        workers[partition % 2].process_run([(raw, partition, offset)])
    exchange(workers)
    for worker in workers:
        counts = dict(
            zip(worker.recommender.item_ids, worker.popularity.view.tolist(), strict=True)
        )
        assert counts == dict(
            zip(single.recommender.item_ids, single.popularity.view.tolist(), strict=True)
        )
        if model == "popular":
            rows = worker.recommender.export_items()[1]
            assert dict(zip(worker.recommender.item_ids, rows.tolist(), strict=True)) == dict(
                zip(
                    single.recommender.item_ids,
                    single.recommender.export_items()[1].tolist(),
                    strict=True,
                )
            )
