"""The worker's live state: the processor and its checkpointer, created once per process."""

from __future__ import annotations

import logging
import time

from engine.checkpointer import Checkpointer
from engine.processor import ProcessorConfig, StreamProcessor
from engine.settings import Settings

log = logging.getLogger(__name__)


class EngineRuntime:
    """The processor restored from the store's latest checkpoint, and the way back to it."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.processor = StreamProcessor(
            ProcessorConfig(
                model=settings.model,
                model_params=settings.model_params,
                min_rating=settings.min_rating,
                eval_fraction=settings.eval_fraction,
                history_limit=settings.history_limit,
                panel_size=settings.panel_size,
                max_message_bytes=settings.max_message_bytes,
                seed=settings.seed,
                topic=settings.topic,
            )
        )
        self.checkpointer = Checkpointer(
            settings.db,
            keep_snapshots=settings.keep_snapshots,
            metrics_retention_s=settings.metrics_retention,
        )
        latest = self.checkpointer.open()
        if latest is None:
            log.info(
                "new store at %s; starting from the beginning of %s", settings.db, settings.topic
            )
        else:
            checkpoint, state = latest
            if checkpoint.topic != settings.topic:
                log.warning(
                    "the store's checkpoint is for topic %s, not %s; its offsets will not be used",
                    checkpoint.topic,
                    settings.topic,
                )
            self.processor.restore(checkpoint, state)
            if checkpoint.topic != settings.topic:
                self.processor.offsets = {}
            log.info(
                "resuming from checkpoint %d of %s: %d events, %d users, %d items, offsets %s",
                checkpoint.id,
                settings.db,
                checkpoint.totals.received,
                checkpoint.users,
                checkpoint.items,
                checkpoint.offsets,
            )

    def resume_offsets(self) -> dict[int, int]:
        """Partition -> next offset to consume, as far as this process has got."""
        return dict(self.processor.offsets)

    async def checkpoint(self, lag: int | None = None) -> None:
        started = time.perf_counter()
        write = self.processor.checkpoint(lag=lag)
        checkpoint_id = await self.checkpointer.write(write)
        log.info(
            "checkpoint %d: %d events (+%d), %d users, %d items, recall@10 %s vs "
            "popular %s, %.0f ms",
            checkpoint_id,
            write.totals.received,
            write.interval.received,
            write.n_users,
            write.n_items,
            _fmt(write.totals.model_hits, write.totals.evaluated),
            _fmt(write.totals.popular_hits, write.totals.evaluated),
            1000 * (time.perf_counter() - started),
        )

    def final_checkpoint(self) -> None:
        write = self.processor.checkpoint()
        checkpoint_id = self.checkpointer.write_now(write)
        log.info("final checkpoint %d: %d events in total", checkpoint_id, write.totals.received)
        self.checkpointer.close()


def _fmt(hits: int, total: int) -> str:
    return f"{hits / total:.3f}" if total else "n/a"
