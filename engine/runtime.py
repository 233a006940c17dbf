"""The worker's live state: the processor and its checkpointer, created once per process."""

from __future__ import annotations

import logging
import time

from engine.checkpointer import Checkpointer
from engine.live import LiveService
from engine.online import ClickLog
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
        self.last_checkpoint_time: float | None = None  # Unix seconds of the last write
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
            self.last_checkpoint_time = checkpoint.time
        # The live API's side: it ranks from this very processor and sees every event.
        self.live = LiveService(
            self.processor, ClickLog(settings.click_window), settings.ab_baseline_fraction
        )
        self.processor.add_listener(self.live.clicks.observe)
        names, self._names_cursor = self.checkpointer.item_names_now()
        self.live.add_names(names)

    def health(self) -> dict:
        """The worker's state for GET /health: times in Unix seconds."""
        processor = self.processor
        clicks = self.live.clicks
        return {
            "ok": True,
            "model": processor.recommender.model,
            "events": processor.totals.received,
            "users": processor.recommender.n_users,
            "items": processor.recommender.n_items,
            "last_event_time": clicks.clock.latest,
            "last_checkpoint_time": self.last_checkpoint_time,
            "impressions": clicks.impressions,
            "clicks": clicks.clicks,
            "impressions_held": len(clicks),
            **self.live.stats.as_dict(),
        }

    def resume_offsets(self) -> dict[int, int]:
        """Partition -> next offset to consume, as far as this process has got."""
        return dict(self.processor.offsets)

    async def checkpoint(self, lag: int | None = None) -> None:
        started = time.perf_counter()
        write = self.processor.checkpoint(lag=lag)
        write.online = self.live.clicks.drain()
        checkpoint_id = await self.checkpointer.write(write)
        self.last_checkpoint_time = write.time
        # Producers record item names at any time; pick up the new ones for the API.
        names, self._names_cursor = await self.checkpointer.item_names(self._names_cursor)
        self.live.add_names(names)
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
        write.online = self.live.clicks.drain()
        checkpoint_id = self.checkpointer.write_now(write)
        log.info("final checkpoint %d: %d events in total", checkpoint_id, write.totals.received)
        self.checkpointer.close()


def _fmt(hits: int, total: int) -> str:
    return f"{hits / total:.3f}" if total else "n/a"
