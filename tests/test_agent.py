"""The Faust agent, driven through Faust's own test context (no broker)."""

from __future__ import annotations

import asyncio

from engine.runtime import EngineRuntime
from engine.settings import load_settings
from storage import StoreReader
from tests.helpers import message


def test_agent_learns_counts_and_rejects(tmp_path, monkeypatch):
    monkeypatch.setenv("RECO_DB", str(tmp_path / "reco.db"))
    from engine.agents import consume_events
    from engine.app import app

    app.runtime = EngineRuntime(load_settings())

    async def drive():
        async with consume_events.test_context() as agent:
            await agent.put(message("ann", "m1"), partition=0)
            await agent.put(message("bob", "m1", rating=1), partition=0)
            await agent.put(b"\xffnot json", partition=0)
            await agent.put(message("ann", "m2"), partition=0)

    asyncio.run(drive())
    processor = app.runtime.processor
    totals = processor.totals
    assert (totals.received, totals.accepted, totals.positive, totals.rejected) == (4, 3, 2, 1)
    assert processor.offsets == {0: 4}
    assert processor.recommender.user_ids == ["ann"]

    asyncio.run(app.runtime.checkpoint())
    app.runtime.checkpointer.close()
    reader = StoreReader(tmp_path / "reco.db")
    assert reader.latest_checkpoint().totals.received == 4
    assert reader.rejected_events()[0].reason == "not UTF-8"
