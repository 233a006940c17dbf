"""Whether a worker is ready: the reasons it is not, as GET /health reports them.

Ready means consuming and saving what it consumes: the broker reachable,
partitions of the events topic assigned, and checkpoints being written. An
orchestrator's readiness probe reads /health (200 or 503 with the reasons);
its liveness probe reads /health/live, which only says the process answers.
"""

from __future__ import annotations

from datetime import UTC, datetime


def not_ready_reasons(
    broker_down_since: float | None,
    checkpoint_failing_since: float | None,
    partitions: list[int],
) -> list[str]:
    """Why the worker is not ready (empty when it is); times are Unix seconds.

    >>> not_ready_reasons(None, None, [0, 1])
    []
    >>> not_ready_reasons(0.0, None, [])
    ['broker unreachable since 1970-01-01T00:00:00Z', 'no partitions assigned']
    """
    reasons = []
    if broker_down_since is not None:
        reasons.append(f"broker unreachable since {_iso(broker_down_since)}")
    if checkpoint_failing_since is not None:
        reasons.append(f"checkpoint failing since {_iso(checkpoint_failing_since)}")
    if not partitions:
        reasons.append("no partitions assigned")
    return reasons


def _iso(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
