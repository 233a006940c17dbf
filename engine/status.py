"""`python -m engine status`: a store's latest checkpoint, or a deployment's, as one JSON object."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from storage import Deployment, StoreReader, read_deployment


def status(stores: list[Path]) -> dict:
    """What `status` prints for ``stores``; raises StoreError naming a store it cannot read.

    One store: its latest checkpoint's own figures, as ever, with its
    ``workers`` row and its ``partitions``. Several: the deployment's
    (storage.deployment: each partition counted once, at its newest state).
    """
    deployment = read_deployment(stores)
    online = _online_totals(
        [
            p
            for w in deployment.workers
            for p in StoreReader(w.store).online_metrics(max_points=1_000_000)
        ]
    )
    report = _one_store(deployment) if len(stores) == 1 else _deployment(deployment)
    report["events_per_s"] = deployment.events_per_s
    report["waiting"] = deployment.waiting
    report["online"] = online
    report["workers"] = [_worker_row(w) for w in deployment.workers]
    report["partitions"] = [_partition_row(p) for p in deployment.partitions]
    return report


def _one_store(deployment: Deployment) -> dict:
    (worker,) = deployment.workers
    checkpoint = worker.checkpoint
    totals = checkpoint.totals
    return {
        "time": checkpoint.time,
        "model": checkpoint.model,
        "received": totals.received,
        "accepted": totals.accepted,
        "positive": totals.positive,
        "rejected": totals.rejected,
        "rejected_by_reason": checkpoint.rejected_by_reason,
        "users": checkpoint.users,
        "items": checkpoint.items,
        "offsets": {str(p): o for p, o in sorted(checkpoint.offsets.items())},
        "recall_at_10": checkpoint.recall_at_10,
        "popular_recall_at_10": checkpoint.popular_recall_at_10,
        "evaluated": totals.evaluated,
        "topic": checkpoint.topic,
        "checkpoint_id": checkpoint.id,
    }


def _deployment(deployment: Deployment) -> dict:
    totals = deployment.totals
    newest = deployment.newest.checkpoint
    checkpoints = [w.checkpoint for w in deployment.workers]
    # Offsets: each partition's counted state; a store without partition rows adds its own.
    offsets: dict[int, int] = {}
    for worker in deployment.workers:
        if not worker.counted_by_partition:
            for p, o in worker.checkpoint.offsets.items():
                offsets[p] = max(o, offsets.get(p, o))
    offsets.update({p.partition: p.offset for p in deployment.partitions})
    by_reason: Counter[str] = Counter()
    for checkpoint in checkpoints:
        by_reason.update(checkpoint.rejected_by_reason)
    return {
        "time": deployment.time,
        "model": ", ".join(sorted({c.model for c in checkpoints})),
        "received": totals.received,
        "accepted": totals.accepted,
        "positive": totals.positive,
        "rejected": totals.rejected,
        "rejected_by_reason": dict(by_reason),
        "users": sum(c.users for c in checkpoints),
        "items": max(c.items for c in checkpoints),
        "offsets": {str(p): o for p, o in sorted(offsets.items())},
        "recall_at_10": deployment.recall_at_10,
        "popular_recall_at_10": deployment.popular_recall_at_10,
        "evaluated": totals.evaluated,
        "topic": ", ".join(sorted({c.topic for c in checkpoints})),
        "checkpoint_id": newest.id,
    }


def _worker_row(worker) -> dict:
    totals = worker.totals
    return {
        "store": worker.store,
        "worker": worker.worker,
        "partitions": worker.partitions,
        "received": totals.received,
        "evaluated": totals.evaluated,
        "recall_at_10": worker.recall_at_10,
        "events_per_s": worker.events_per_s,
        "time": worker.time,
        "checkpoint_id": worker.checkpoint.id,
    }


def _partition_row(view) -> dict:
    return {
        "partition": view.partition,
        "store": view.store,
        "worker": view.worker,
        "owned": view.owned,
        "offset": view.offset,
        "lag": view.lag,
        "time": view.point.time,
        **vars(view.totals),
    }


def _online_totals(points) -> dict:
    """Impressions, clicks and CTR per A/B variant over the metrics the stores keep."""
    totals: dict[str, dict] = {}
    for point in points:
        variant = totals.setdefault(point.variant, {"impressions": 0, "clicks": 0})
        variant["impressions"] += point.impressions
        variant["clicks"] += point.clicks
    for variant in totals.values():
        shown = variant["impressions"]
        variant["ctr"] = variant["clicks"] / shown if shown else None
    return totals
