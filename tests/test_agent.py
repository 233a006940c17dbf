"""The Faust agent, driven through Faust's own test context (no broker)."""

from __future__ import annotations

import asyncio

from engine.settings import load_settings
from engine.worker.runtime import EngineRuntime
from storage import StoreReader
from tests.support.messages import message


def test_agent_learns_counts_and_rejects(tmp_path, monkeypatch):
    monkeypatch.setenv("RECO_DB", str(tmp_path / "reco.db"))
    from engine.worker import build_app

    settings = load_settings()
    app = build_app(settings)
    consume_events = app.agents["consume_events"]
    app.runtime = EngineRuntime(settings)

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


def test_held_messages_wait_for_their_run_and_a_checkpoint_processes_them(tmp_path, monkeypatch):
    monkeypatch.setenv("RECO_DB", str(tmp_path / "reco.db"))
    runtime = EngineRuntime(load_settings())
    assert runtime.hold(message("ann", "m1"), 0, 0) == 1
    assert runtime.hold(message("ann", "m2"), 0, 1) == 2
    processor = runtime.processor
    assert processor.totals.received == 0 and processor.offsets == {}

    runtime.process_held()
    assert processor.totals.received == 2 and processor.offsets == {0: 2}
    assert runtime.hold(message("bob", "m1"), 0, 2) == 1  # a new run

    asyncio.run(runtime.checkpoint())  # processes what is held before it snapshots
    runtime.checkpointer.close()
    latest = StoreReader(tmp_path / "reco.db").latest_checkpoint()
    assert latest.totals.received == 3
    assert latest.offsets == {0: 3}


def test_a_stop_during_a_checkpoints_broker_probe_loses_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("RECO_DB", str(tmp_path / "reco.db"))
    runtime = EngineRuntime(load_settings())
    runtime.process(message("ann", "m1"), 0, 0)
    runtime.broker.stalled_since = 1.0  # so the timer's checkpoint probes the broker
    probing, release = asyncio.Event(), asyncio.Event()

    async def slow_probe():
        probing.set()
        await release.wait()
        return False

    runtime.broker.check = slow_probe

    async def drive():
        timer = asyncio.ensure_future(runtime.checkpoint())
        await probing.wait()
        await runtime.final_checkpoint(timeout=1.0)  # what the worker's on_stop does
        release.set()
        await timer  # and the timer's checkpoint then ends without a write or an error

    asyncio.run(drive())
    reader = StoreReader(tmp_path / "reco.db")
    assert reader.latest_checkpoint().totals.received == 1
    assert [h.item for h in reader.history("ann")] == ["m1"]
