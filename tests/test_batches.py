"""Record batches the consumer cannot decode become counted rejections, never a raised error.

Real batches in Kafka's format, built and compressed by aiokafka's own
builder, go through the fetcher's records (engine.worker.batches) as a fetch
response's bytes would; the ones that cannot be read are damaged on purpose
with a CRC that still matches, as a faulty producer would send them.
"""

from __future__ import annotations

import json
import struct

import cramjam
import pytest
from aiokafka.consumer.fetcher import PartitionRecords
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition

from dashboard.loaders import reason_kind
from engine.sources.events import InvalidEvent, UndecodableMessage, parse_event
from engine.worker.batches import TolerantPartitionRecords
from tests.support.processors import processor

TP = TopicPartition("events", 0)
NONE, GZIP, LZ4 = 0, 1, 3
HEADER_BYTES = 61  # a v2 batch's header; its records (compressed or not) follow
CRC_AT, CRC_FROM = 17, 21  # where the CRC sits, and where the bytes it covers begin


def batch(base_offset: int, count: int, codec: int = NONE) -> bytearray:
    """``count`` valid events in one v2 record batch starting at ``base_offset``."""
    builder = DefaultRecordBatchBuilder(2, codec, 0, -1, -1, -1, 1 << 20)
    for delta in range(count):
        value = json.dumps(
            {"user": f"u{base_offset + delta}", "item": "i1", "rating": 5, "timestamp": 881250949}
        ).encode()
        builder.append(delta, timestamp=1_700_000_000_000, key=b"k", value=value, headers=[])
    data = builder.build()
    struct.pack_into(">q", data, 0, base_offset)  # outside the CRC, as the broker sets it
    return data


def with_valid_crc(data: bytearray) -> bytearray:
    struct.pack_into(">I", data, CRC_AT, calc_crc32c(bytes(data[CRC_FROM:])))
    return data


def damaged(data: bytearray) -> bytearray:
    """The batch with its records' bytes overwritten, and a CRC that matches them."""
    data[HEADER_BYTES + 12 : HEADER_BYTES + 40] = b"\xff" * 28
    return with_valid_crc(data)


def with_codec(data: bytearray, codec_id: int) -> bytearray:
    # The CRC covers the bytes from the batch's attributes (a big-endian int16) on.
    (attributes,) = struct.unpack_from(">h", data, CRC_FROM)
    struct.pack_into(">h", data, CRC_FROM, (attributes & ~0x07) | codec_id)
    return with_valid_crc(data)


def fetched(*batches: bytearray, fetch_offset: int = 0, records=TolerantPartitionRecords):
    """The consumer records a fetch from ``fetch_offset`` hands on, and the next fetch's offset."""
    partition_records = records(
        TP, MemoryRecords(b"".join(batches)), None, fetch_offset, None, None, True, 0
    )
    return list(partition_records), partition_records.next_fetch_offset


def test_readable_batches_pass_unchanged():
    batches = batch(0, 3), batch(3, 4, GZIP), batch(7, 2, LZ4)
    ours, next_offset = fetched(*batches)
    theirs, _ = fetched(*batches, records=PartitionRecords)
    assert ours == theirs
    assert [r.offset for r in ours] == list(range(9)) and next_offset == 9
    assert all(parse_event(r.value).item == "i1" for r in ours)


def test_aiokafka_alone_raises_on_a_damaged_batch():
    # What stopped the worker for good: the same bytes come back at every fetch.
    with pytest.raises(cramjam.DecompressionError):
        fetched(batch(0, 2), damaged(batch(2, 3, LZ4)), records=PartitionRecords)


def test_a_damaged_compressed_batch_becomes_one_rejection_per_record():
    records, next_offset = fetched(batch(0, 2), damaged(batch(2, 3, LZ4)), batch(5, 2))
    assert [r.offset for r in records] == list(range(7)) and next_offset == 7
    rejected = records[2:5]
    assert all(type(r.value) is UndecodableMessage for r in rejected)
    assert {r.value.reason for r in rejected} == {
        "undecodable batch (DecompressionError; lz4, 3 messages at offsets 2-4)"
    }
    assert [parse_event(r.value).user for r in records[5:]] == ["u5", "u6"]
    assert reason_kind(rejected[0].value.reason) == "undecodable batch"  # the dashboard's group


def test_a_batch_that_fails_its_crc_is_rejected_too():
    bad = batch(2, 3)
    bad[-1] ^= 0xFF  # the CRC no longer matches
    records, next_offset = fetched(batch(0, 2), bad, batch(5, 1))
    assert next_offset == 6
    assert [r.value.reason for r in records[2:5]] == [
        "undecodable batch (CRC mismatch; uncompressed, 3 messages at offsets 2-4)"
    ] * 3
    assert parse_event(records[5].value).user == "u5"


def test_an_unknown_codec_is_an_unsupported_compression():
    records, _ = fetched(with_codec(batch(0, 2), 6))
    assert {r.value.reason for r in records} == {
        "unsupported compression: codec 6 (2 messages at offsets 0-1)"
    }
    assert reason_kind(records[0].value.reason) == "unsupported compression: codec 6"


def test_a_fetch_from_inside_a_damaged_batch_rejects_only_what_follows():
    # A checkpoint taken part way through the batch's messages resumes there.
    records, next_offset = fetched(damaged(batch(10, 5, LZ4)), batch(15, 1), fetch_offset=12)
    assert [r.offset for r in records] == [12, 13, 14, 15] and next_offset == 16
    assert [type(r.value) for r in records[:3]] == [UndecodableMessage] * 3


def test_the_processor_counts_and_keeps_them_with_their_reason():
    proc = processor()
    records, _ = fetched(batch(0, 2), damaged(batch(2, 3, LZ4)), batch(5, 2))
    proc.process_run((r.value, r.partition, r.offset) for r in records)
    totals = proc.totals
    assert (totals.received, totals.accepted, totals.rejected) == (7, 4, 3)
    assert proc.offsets == {0: 7}
    kept = proc.checkpoint().rejected
    assert [(e.offset, e.payload) for e in kept] == [(2, ""), (3, ""), (4, "")]
    assert kept[0].reason.startswith("undecodable batch (DecompressionError; lz4")


def test_an_undecodable_message_is_invalid_and_an_empty_one_keeps_its_reason():
    with pytest.raises(InvalidEvent, match=r"^unsupported compression: zstd \(x\)$"):
        parse_event(UndecodableMessage("unsupported compression: zstd (x)"))
    with pytest.raises(InvalidEvent, match="not valid JSON"):
        parse_event(b"")
