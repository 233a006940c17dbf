"""`evaluate` simulating P partitions and N workers: one engine's figures where nothing lags.

The simulation runs the engine's own StreamProcessor once per worker and
exchanges their item increments every ``share_every`` events. One worker on
any number of partitions must be the plain replay; several workers that
exchange after every event must rank every event as one engine does; and
however they share, every event is evaluated once, by its user's owner.
"""

from __future__ import annotations

import random

import pytest

from engine.evaluation.deployment import Deployment, simulate, user_partition
from engine.evaluation.replay import Protocol, replay
from engine.sources.events import Interaction

PROTOCOL = Protocol(min_rating=4.0, pretrain=0.2, holdout=0.1)
FIGURES = ("events", "recall@10", "mpr", "popular_recall@10", "users", "items", "positives")


def sessions(n: int = 4000, users: int = 160, items: int = 90, seed: int = 3) -> list[Interaction]:
    """``n`` positive events in time order: users liking runs of related, skewed items."""
    rng = random.Random(seed)
    events, t = [], 0
    while len(events) < n:
        user = str(rng.randrange(users))
        start = int(items * rng.random() ** 3)  # low numbers are the popular items
        for step in range(rng.randint(1, 6)):
            item = (start + step * rng.choice((1, 1, 2, 7))) % items
            events.append(Interaction(user, f"i{item}", 5.0, float(t)))
            t += 1
    return events[:n]


@pytest.mark.parametrize("partitions", [1, 4])
@pytest.mark.parametrize("model", ["hybrid", "popular"])
def test_one_worker_on_any_partitions_is_the_plain_replay(model, partitions):
    events = sessions()
    single = replay(events, model, PROTOCOL, progress=False)
    simulated = simulate(events, model, PROTOCOL, Deployment(partitions, 1), progress=False)
    assert {k: simulated[k] for k in FIGURES} == {k: single[k] for k in FIGURES}
    assert simulated["per_worker"][0]["partitions"] == list(range(partitions))


def test_one_worker_learns_extra_epochs_as_the_replay_does():
    events = sessions(1500)
    protocol = Protocol(min_rating=4.0, pretrain=0.4, holdout=0.1, epochs=3)
    single = replay(events, "hybrid", protocol, progress=False)
    simulated = simulate(events, "hybrid", protocol, Deployment(4, 1), progress=False)
    assert {k: simulated[k] for k in FIGURES} == {k: single[k] for k in FIGURES}


@pytest.mark.parametrize("share_every", [1, 250, 10_000])
def test_every_event_is_evaluated_once_by_its_user_s_owner(share_every):
    events = sessions()
    single = replay(events, "hybrid", PROTOCOL, progress=False)
    deployment = Deployment(partitions=4, workers=2, share_every=share_every)
    simulated = simulate(events, "hybrid", PROTOCOL, deployment, progress=False)
    per_worker = simulated["per_worker"]
    assert [w["partitions"] for w in per_worker] == [[0, 2], [1, 3]]
    assert sum(w["events"] for w in per_worker) == simulated["events"] == single["events"]
    assert sum(w["positives"] for w in per_worker) == len(events)
    # Each worker learned exactly its own users' events, and the other's through sharing.
    users = {e.user for e in events}
    for w, figures in enumerate(per_worker):
        own = {u for u in users if user_partition(u, 4) % 2 == w}
        assert figures["users"] == len(own)
        assert figures["shared_applied"] == len(events) - figures["positives"]
    hits = sum(w["recall@10"] * w["events"] for w in per_worker)
    assert simulated["recall@10"] == pytest.approx(hits / simulated["events"], rel=1e-12)


@pytest.mark.parametrize("model", ["hybrid", "popular"])
def test_workers_sharing_after_every_event_rank_as_one_engine(model):
    """With no lag the item statistics are one model's, and each user is with their owner."""
    events = sessions()
    single = replay(events, model, PROTOCOL, progress=False)
    for workers in (2, 4):
        deployment = Deployment(partitions=4, workers=workers, share_every=1)
        simulated = simulate(events, model, PROTOCOL, deployment, progress=False)
        # Hits are counts: exactly equal. MPR sums the same percentiles in another order.
        assert simulated["events"] == single["events"]
        assert simulated["recall@10"] == single["recall@10"]
        assert simulated["popular_recall@10"] == single["popular_recall@10"]
        assert simulated["mpr"] == pytest.approx(single["mpr"], rel=1e-12)
        assert all(w["items"] == single["items"] for w in simulated["per_worker"])


def test_workers_that_never_share_are_not_one_engine():
    """The test above can fail: without exchanges each worker ranks with half the likes."""
    events = sessions()
    single = replay(events, "hybrid", PROTOCOL, progress=False)
    apart = Deployment(partitions=4, workers=2, share_every=len(events))
    simulated = simulate(events, "hybrid", PROTOCOL, apart, progress=False)
    assert simulated["mpr"] != pytest.approx(single["mpr"], rel=1e-6)


def test_users_go_to_the_partition_a_live_worker_routes_them_to():
    from engine.worker.routing import user_partition as live_partition

    users = [str(u) for u in range(2000)] + ["alice", "é-user", ""]
    for partitions in (1, 2, 4, 7, 8):
        assert [user_partition(u, partitions) for u in users] == [
            live_partition(u, partitions) for u in users
        ]


@pytest.mark.parametrize("bad", [(0, 1, 1), (4, 0, 1), (4, 2, 0)])
def test_a_deployment_needs_a_partition_a_worker_and_exchanges(bad):
    with pytest.raises(ValueError, match="at least 1"):
        Deployment(*bad)
