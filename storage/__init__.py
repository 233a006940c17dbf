"""The SQLite store: the contract between the engine and every reader."""

from storage import _logarithm as logarithm
from storage._lock import WriterLock
from storage._logarithm import log1p, log1p_counts, log1p_table
from storage._session_rows import widen_session_rows
from storage._transient_arrays import transient_arrays
from storage.deployment import (
    Deployment,
    PartitionView,
    WorkerView,
    read_deployment,
    store_paths,
)
from storage.errors import (
    NoCheckpoint,
    StoreCorrupt,
    StoreError,
    StoreListError,
    StoreLocked,
    StoreMissing,
)
from storage.ranking import N_STAGES, STAGE_EDGES, score_items, stage_of
from storage.reader import MAX_N, MAX_USER_ID_LENGTH, StoreReader, validate_user_id
from storage.records import (
    Checkpoint,
    CheckpointWrite,
    HistoryItem,
    IntervalMetrics,
    MetricsPoint,
    ModelState,
    OnlineCounts,
    OnlinePoint,
    PartitionPoint,
    PartitionState,
    Recommendations,
    RecommendedItem,
    RejectedCount,
    RejectedEvent,
    Totals,
    reason_kind,
)
from storage.writer import StoreWriter

__all__ = [
    "MAX_N",
    "N_STAGES",
    "STAGE_EDGES",
    "MAX_USER_ID_LENGTH",
    "Checkpoint",
    "CheckpointWrite",
    "Deployment",
    "HistoryItem",
    "IntervalMetrics",
    "MetricsPoint",
    "ModelState",
    "NoCheckpoint",
    "OnlineCounts",
    "OnlinePoint",
    "PartitionPoint",
    "PartitionState",
    "PartitionView",
    "RecommendedItem",
    "Recommendations",
    "RejectedCount",
    "RejectedEvent",
    "StoreCorrupt",
    "StoreError",
    "StoreListError",
    "StoreLocked",
    "StoreMissing",
    "StoreReader",
    "StoreWriter",
    "Totals",
    "WorkerView",
    "WriterLock",
    "log1p",
    "log1p_counts",
    "log1p_table",
    "logarithm",
    "read_deployment",
    "reason_kind",
    "score_items",
    "stage_of",
    "store_paths",
    "transient_arrays",
    "validate_user_id",
    "widen_session_rows",
]
