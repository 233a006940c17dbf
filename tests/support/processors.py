"""A StreamProcessor fed in process, and what it ranks."""

from __future__ import annotations

import numpy as np

from engine.processing.processor import ProcessorConfig, StreamProcessor
from storage.ranking import top_n
from tests.support.messages import message


def processor(**overrides) -> StreamProcessor:
    """A processor with a panel of 5 users, and ``overrides`` of ProcessorConfig's defaults."""
    return StreamProcessor(ProcessorConfig(**{"panel_size": 5, **overrides}))


def feed(processor: StreamProcessor, events, start_offset: int = 0, partition: int = 0) -> None:
    """Feed (user, item[, rating]) tuples as JSON messages at consecutive offsets."""
    for offset, event in enumerate(events, start=start_offset):
        processor.process(message(*event), partition, offset)


def processor_rankings(processor, users: list[str], n: int = 10) -> dict[str, list[str]]:
    """Each known user's top-``n`` item ids from a live processor, seen items excluded."""
    rec = processor.recommender
    result = {}
    for user in users:
        index = rec.user_index(user)
        if index is None:
            continue
        known = np.fromiter(processor.history.items(index), dtype=np.int64)
        best, _ = top_n(rec.scores(index), n, exclude=known)
        result[user] = [rec.item_ids[i] for i in best.tolist()]
    return result
