"""The online loop without a broker: clicks, A/B assignment, live lists, the loop's share."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from engine.settings import SettingsError, load_settings
from engine.sources.closed_loop import ClosedLoop
from engine.worker.admission import LoopShare
from engine.worker.clicks import CLOCK_SLACK_S, ClickLog, StreamClock, variant_of
from engine.worker.live import LiveService
from tests.support.messages import message
from tests.support.processors import feed, processor

T0 = 1_700_000_000.0


class FakeTime:
    """A monotonic clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def click_log(window_s: float = 1800.0, **bounds) -> tuple[ClickLog, FakeTime]:
    wall = FakeTime()
    clock = StreamClock(monotonic=wall, wall=lambda: T0)
    return ClickLog(window_s, clock=clock, **bounds), wall


def counts(log: ClickLog) -> dict[str, tuple[int, int]]:
    return {c.variant: (c.impressions, c.clicks) for c in log.drain()}


def test_clicks_are_later_positive_events_on_shown_items_within_the_window():
    log, _ = click_log(window_s=600)
    log.clock.observe(T0)
    log.record("ann", ["a", "b", "c"], "model")  # stamped T0 on the stream's clock
    log.record("bob", ["a"], "baseline")

    assert not log.observe_positive("ann", "z", T0 + 10)  # not shown to her
    assert not log.observe_positive("cat", "a", T0 + 10)  # shown to someone else
    assert not log.observe_positive("ann", "a", T0 - CLOCK_SLACK_S - 1)  # before the list
    assert not log.observe_positive("bob", "a", T0 + 601)  # after the window
    assert log.observe_positive("ann", "b", T0 + 60)
    assert not log.observe_positive("ann", "c", T0 + 61)  # a list counts one click
    assert counts(log) == {"model": (1, 1), "baseline": (1, 0)}
    assert counts(log) == {"model": (0, 0), "baseline": (0, 0)}  # drained per interval


def test_only_positive_events_click_and_they_move_the_clock():
    log, _ = click_log()
    log.clock.observe(T0)
    log.record("ann", ["a"], "model")
    event = type("Event", (), {"user": "ann", "item": "a", "timestamp": T0 + 5})()
    log.observe(event, positive=False)
    assert log.clicks == 0 and log.clock.latest == T0 + 5
    log.observe(event, positive=True)
    assert log.clicks == 1


def test_an_event_credits_the_newest_list_that_has_not_clicked_yet():
    log, _ = click_log()
    log.clock.observe(T0)
    first = log.record("ann", ["a", "b"], "model")
    log.clock.observe(T0 + 100)
    second = log.record("ann", ["a", "c"], "model")
    assert log.observe_positive("ann", "a", T0 + 110)
    assert second.clicked and not first.clicked
    assert log.observe_positive("ann", "a", T0 + 120)  # the older list still can
    assert first.clicked
    assert not log.observe_positive("ann", "a", T0 + 130)  # both lists have clicked
    assert counts(log)["model"] == (2, 2)


def test_impressions_carry_the_stream_clock_not_the_wall_clock():
    log, wall = click_log(window_s=60)
    assert log.clock.now() == T0  # no event yet: the wall clock
    log.clock.observe(900_000_000.0)  # a replay of 1998
    wall.now += 2.5  # seconds later the API serves a list
    impression = log.record("ann", ["a"], "model")
    assert impression.time == 900_000_002.5
    assert log.observe_positive("ann", "a", 900_000_030.0)


def test_memory_stays_bounded_by_the_window_and_the_caps():
    log, wall = click_log(window_s=60, max_per_user=3, max_impressions=10)
    log.clock.observe(T0)
    for i in range(5):
        log.record("ann", [f"item{i}"], "model")
    # Only her newest three lists can still be clicked.
    assert not log.observe_positive("ann", "item1", T0 + 1)
    assert log.observe_positive("ann", "item2", T0 + 1)
    for i in range(20):
        log.record(f"user{i}", ["x"], "baseline")
    assert len(log) <= 10
    wall.now += 120  # two windows later nothing can be clicked any more
    log.drain()
    assert len(log) == 0
    assert not log.observe_positive("user19", "x", T0 + 121)


def test_empty_lists_count_as_impressions_but_are_not_kept():
    log, _ = click_log()
    log.record("ann", [], "model")
    assert counts(log)["model"] == (1, 0) and len(log) == 0


def test_ab_assignment_is_stable_and_splits_users_by_the_fraction():
    users = [f"u{i}" for i in range(20_000)]
    baseline = [u for u in users if variant_of(u, 0.2) == "baseline"]
    assert 0.18 < len(baseline) / len(users) < 0.22
    assert all(variant_of(u, 0.0) == "model" for u in users[:1000])
    assert all(variant_of(u, 1.0) == "baseline" for u in users[:1000])
    # A larger fraction only moves users from the model to the baseline.
    assert set(baseline) <= {u for u in users if variant_of(u, 0.5) == "baseline"}
    # The same in another process, whose str hash() is salted differently.
    code = (
        "from engine.worker.clicks import variant_of;"
        "print(''.join('b' if variant_of(f'u{i}', 0.2) == 'baseline' else 'm' "
        "for i in range(300)))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": "", "PYTHONPATH": "."},
    )
    here = "".join("b" if variant_of(f"u{i}", 0.2) == "baseline" else "m" for i in range(300))
    assert other.stdout.strip() == here


def live_service(baseline_fraction: float = 0.0) -> tuple[LiveService, ClickLog]:
    proc = processor()
    feed(
        proc,
        [("ann", "a"), ("ann", "b"), ("bob", "a"), ("bob", "c"), ("cat", "a"), ("cat", "d")],
    )
    log, _ = click_log()
    service = LiveService(proc, log, baseline_fraction)
    proc.add_listener(log.observe)
    return service, log


def test_live_lists_leave_out_seen_items_and_fall_back_for_new_users():
    service, _ = live_service()
    service.add_names({"c": "Item C"})
    known = service.recommend("ann", 10)
    assert (known.fallback, known.variant, known.model) == (False, "model", "hybrid")
    assert {i.item for i in known.items} == {"c", "d"}  # she liked a and b
    assert [i.rank for i in known.items] == [1, 2]
    assert {i.item: i.name for i in known.items}["c"] == "Item C"
    new = service.recommend("nobody", 2)
    assert (new.fallback, new.model) == (True, "popular")
    assert [i.item for i in new.items] == ["a", "b"]  # most liked first, ties by arrival


def test_baseline_users_get_popularity_without_their_seen_items():
    service, _ = live_service(baseline_fraction=1.0)
    result = service.recommend("bob", 3)
    assert (result.variant, result.model, result.fallback) == ("baseline", "popular", False)
    assert [i.item for i in result.items] == ["b", "d"]


def test_served_lists_are_impressions_and_events_click_them_through_the_processor():
    service, log = live_service()
    service.recommend("ann", 10)
    service.recommend("ann", 10, preview=True)  # an operator's look: not an impression
    assert log.impressions == 1
    service.ranker.processor.process(message("ann", "c", rating=2, timestamp=T0 + 5), 0, 100)
    assert log.clicks == 0  # not positive
    service.ranker.processor.process(message("ann", "c", rating=5, timestamp=T0 + 6), 0, 101)
    assert log.clicks == 1
    assert service.stats.requests == 2


def test_the_loop_share_queues_then_refuses_requests_beyond_it():
    async def scenario() -> tuple[bool, bool, float, bool]:
        share = LoopShare(0.5, burst_s=0.001, max_wait_s=0.2)
        loop = asyncio.get_running_loop()
        first = await share.admit()
        share.spend(0.02)  # 19 ms over: 38 ms of wall time to earn back at half
        started = loop.time()
        second = await share.admit()
        waited = loop.time() - started
        share.spend(0.2)  # far over: the next one would wait ~0.4 s > max_wait_s
        refused = not await share.admit()
        return first, second, waited, refused

    first, second, waited, refused = asyncio.run(scenario())
    assert first and second and refused
    assert waited >= 0.03


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("RECO_WEB_PORT", "70000", "RECO_WEB_PORT=70000 is not valid"),
        ("RECO_CLICK_WINDOW", "0", "RECO_CLICK_WINDOW=0.0 is not valid"),
        ("RECO_AB_BASELINE_FRACTION", "1.5", "RECO_AB_BASELINE_FRACTION=1.5 is not valid"),
        ("RECO_API_MAX_SHARE", "0", "RECO_API_MAX_SHARE=0.0 is not valid"),
        ("RECO_API_URL", "localhost:6066", "RECO_API_URL=localhost:6066 is not valid"),
        ("RECO_WEB_HOST", "a b", "RECO_WEB_HOST=a b is not valid"),
    ],
)
def test_bad_online_settings_are_named(env, value, message):
    with pytest.raises(SettingsError, match=message):
        load_settings({env: value})


def test_online_settings_default_to_a_local_api():
    settings = load_settings({})
    assert (settings.web_host, settings.web_port) == ("127.0.0.1", 6066)
    assert settings.api == "http://127.0.0.1:6066"
    assert settings.click_window == 1800.0
    assert load_settings({"RECO_WEB_PORT": "7000"}).api == "http://127.0.0.1:7000"


def test_closed_loop_users_take_what_suits_their_taste():
    class Stream:
        items = [None] * 4

        def taste(self, user: int, item: int) -> float:
            return 3.0 if item == 0 else -3.0

    loop = ClosedLoop(Stream(), "http://127.0.0.1:9")
    taken = [item for _ in range(2000) for item in loop.taken(1, ["i0", "i1", "x9", "i99"])]
    # sigmoid(1.5 * 3 - 4) = 62% against sigmoid(1.5 * -3 - 4) = 0.02%; x9 and i99
    # are not the stream's items and are never taken.
    assert 1100 < taken.count(0) < 1400
    assert taken.count(1) < 10 and set(taken) <= {0, 1}
