"""Whether the engine is running, judged only by the age of its last checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

# The engine checkpoints every few seconds (5 s by default). Missing three in a
# row means it is behind or stuck; a minute of silence means it is not running.
ALIVE_CHECKPOINTS = 3
ALIVE_MIN_S = 15.0
STOPPED_AFTER_S = 60.0


@dataclass(frozen=True)
class EngineStatus:
    """One of ``alive``, ``stalled``, ``stopped``, with how it reads on screen."""

    state: str
    label: str
    color: str  # a st.badge colour
    icon: str
    explanation: str


ALIVE = EngineStatus(
    "alive", "Engine alive", "green", ":material/check_circle:", "checkpoints are arriving on time"
)
STALLED = EngineStatus(
    "stalled",
    "Engine stalled",
    "orange",
    ":material/warning:",
    "checkpoints are late; the engine may be overloaded or stuck",
)
NO_BROKER = EngineStatus(
    "stalled",
    "Broker unreachable",
    "orange",
    ":material/cloud_off:",
    "the engine runs but cannot reach the broker, so no events arrive",
)
STOPPED = EngineStatus(
    "stopped",
    "Engine stopped",
    "red",
    ":material/stop_circle:",
    "no checkpoint for over a minute; showing the last one written",
)


def engine_status(
    age_s: float, interval_s: float | None = None, broker_connected: bool | None = None
) -> EngineStatus:
    """Judge the engine from the age of the last checkpoint (seconds) and its interval.

    ``broker_connected`` is what the engine wrote in that checkpoint (None: not known).
    """
    alive_within = max(ALIVE_MIN_S, ALIVE_CHECKPOINTS * (interval_s or 0.0))
    if age_s < alive_within:
        return NO_BROKER if broker_connected is False else ALIVE
    if age_s < max(STOPPED_AFTER_S, alive_within):
        return STALLED
    return STOPPED
