"""Record batches the consumer cannot decode become rejected messages, not a crashed worker.

aiokafka raises from inside its fetcher when a fetched batch is compressed
with a codec whose library is missing (it reads snappy, lz4 and zstd only
through ``cramjam``), or cannot be decompressed or parsed, or fails its CRC.
Faust's consumer dies of it, and a restarted worker fetches the same batch
from the same offset and dies again: one producer setting would stop the
engine for good. Here such a batch hands on one message per offset it
covers, each an empty ``UndecodableMessage`` carrying the reason. The
processor rejects, counts and keeps them like any malformed message, and
its offsets move past the batch in order, so the checkpoint's offsets and
counts stay exactly-once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, NamedTuple

import aiokafka.consumer.fetcher as aiokafka_fetcher
from aiokafka.errors import UnsupportedCodecError

from engine.sources.events import UndecodableMessage
from engine.worker.throttle import Throttle

log = logging.getLogger(__name__)

CODEC_MASK = 0x07  # the codec's bits in a batch's attributes (Kafka's record batch format)
CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
CRAMJAM_CODECS = ("snappy", "lz4", "zstd")  # aiokafka.codec decodes these only with cramjam


def reject_undecodable_batches() -> None:
    """Make aiokafka's fetcher hand undecodable batches on as rejections instead of raising.

    aiokafka builds each fetch response's PartitionRecords by its module's
    name and offers no setting for it, so the module's name is pointed at
    TolerantPartitionRecords; call this before the consumer fetches.
    """
    aiokafka_fetcher.PartitionRecords = TolerantPartitionRecords
    # A producer stuck on an unreadable codec sends batch after batch: one line per 30 s.
    if not any(isinstance(f, Throttle) for f in log.filters):
        log.addFilter(Throttle())


class TolerantPartitionRecords(aiokafka_fetcher.PartitionRecords):
    """aiokafka's records of one fetched partition, whose batches never raise for their bytes."""

    def __init__(self, tp, records, *args, **kwargs):
        super().__init__(tp, _Batches(tp, records), *args, **kwargs)


class _Batches:
    """A fetch response's batches (aiokafka's MemoryRecords), each wrapped in a _TolerantBatch."""

    def __init__(self, tp, records):
        self._tp = tp
        self._records = records

    def has_next(self) -> bool:
        return self._records.has_next()

    def next_batch(self) -> _TolerantBatch:
        return _TolerantBatch(self._tp, self._records.next_batch())


class _UnreadableRecord(NamedTuple):
    """What aiokafka reads of a record, for one offset of a batch that cannot be decoded."""

    offset: int
    timestamp: int | None
    timestamp_type: int | None
    value: UndecodableMessage
    key: None = None
    headers: tuple = ()
    checksum: None = None


class _TolerantBatch:
    """One record batch: its records, or if they cannot be read, one rejection per offset."""

    def __init__(self, tp, batch):
        self._tp = tp
        self._batch = batch
        self._crc_ok = True

    def __getattr__(self, name: str) -> Any:
        # base_offset, next_offset, producer_id, is_control_batch, ...: the batch's own.
        return getattr(self._batch, name)

    def validate_crc(self) -> bool:
        # A batch that fails its CRC fails it again at every fetch: it is
        # rejected as undecodable when its records are read, instead of raising.
        self._crc_ok = self._batch.validate_crc()
        return True

    def __next__(self):
        # aiokafka reads a control batch's first record this way (transaction markers).
        return next(self._batch)

    def __iter__(self) -> Iterator:
        return self._records()

    def _records(self) -> Iterator:
        if not self._crc_ok:
            yield from self._unreadable("CRC mismatch", None)
            return
        try:
            yield from self._batch
        except Exception as exc:  # whatever fails to read these bytes fails again at every fetch
            yield from self._unreadable(None, exc)

    def _unreadable(self, problem: str | None, exc: Exception | None) -> Iterator:
        """One _UnreadableRecord per offset of the batch, sharing one reason.

        Those of a batch that failed part way are yielded again from its
        first offset: aiokafka skips the offsets it has handed on already.
        """
        batch, tp = self._batch, self._tp
        kind, particulars = _describe(batch, problem, exc)
        reason = f"{kind} ({particulars})"
        # The kind ("unsupported compression: lz4") is part of the format, so
        # the throttle holds back repeats of a kind, not other kinds.
        log.warning(
            kind + " in partition %d of %s (%s): counted as rejected; %s",
            tp.partition,
            tp.topic,
            particulars,
            repr(exc) if exc is not None else problem,
        )
        message = UndecodableMessage(reason)
        timestamp = getattr(batch, "first_timestamp", None)
        timestamp_type = getattr(batch, "timestamp_type", None)
        for offset in range(_first_offset(batch), batch.next_offset):
            yield _UnreadableRecord(offset, timestamp, timestamp_type, message)


def _describe(batch, problem: str | None, exc: Exception | None) -> tuple[str, str]:
    """What went wrong with ``batch``, and its particulars: the messages it held, the fix.

    The rejection reason is "kind (particulars)": the dashboard leaves out
    what is in parentheses when it groups reasons, so they group as
    "unsupported compression: lz4" or "undecodable batch".
    """
    codec_id = getattr(batch, "attributes", 0) & CODEC_MASK
    codec = CODECS.get(codec_id, f"codec {codec_id}")
    first, last = _first_offset(batch), batch.next_offset - 1
    messages = f"{last - first + 1} messages at offsets {first}-{last}"
    if isinstance(exc, UnsupportedCodecError):
        fix = "; install cramjam to read them" if codec in CRAMJAM_CODECS else ""
        return f"unsupported compression: {codec}", messages + fix
    compressed = "uncompressed" if codec == "none" else codec
    return "undecodable batch", f"{problem or type(exc).__name__}; {compressed}, {messages}"


def _first_offset(batch) -> int:
    # A v2 batch has a base offset; an old-format (v0/v1) one is known by its last offset only.
    return getattr(batch, "base_offset", batch.next_offset - 1)
