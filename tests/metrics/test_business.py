"""Business metrics (§6) kept with the state: exact values on scripted scenarios."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from router.domain.models import AgentState, CallbackPolicy, Channel, Outcome, Sla
from router.metrics.business import render
from router.store.codec import to_ms
from router.store.engine import Engine
from router.store.server import RedisServer
from tests.store.center import Center
from tests.store.test_schema import run_library


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found[(name, tuple(sorted(labels.items())))]


async def _ten_calls(center: Center) -> None:
    """10 calls, threshold 20 s: 6 answered within 20 s, 2 later, 2 abandoned (1 within 20 s)."""
    await center.queue(
        "q", skills={"s": 1}, sla=Sla(threshold_s=20, target=0.8), offer_timeout_s=600
    )
    for i in range(10):
        await center.call("q", f"c{i}")
    await center.advance(5)
    await center.engine.abandon("c8", center.now)  # abandoned within 20 s
    for i in range(6):  # six agents answer at 5..10 s
        await center.agent(f"a{i}", {"s": 1})
        await center.engine.accept(f"c{i}", f"a{i}", center.now)
        await center.advance(1)
    await center.advance(20)  # now 31 s
    for i in range(6, 8):
        await center.agent(f"a{i}", {"s": 1})
        await center.engine.accept(f"c{i}", f"a{i}", center.now)
    await center.engine.abandon("c9", center.now)  # abandoned after 20 s
    for i in range(8):
        await center.engine.complete(f"c{i}", f"a{i}", center.now)


async def test_service_level_in_four_formulas_and_histograms(center: Center) -> None:
    await _ten_calls(center)
    found = samples(await render(center.engine, center.now))
    level = {
        formula: value(found, "acd_queue_service_level_ratio", queue="q", formula=formula)
        for formula in ("answered", "abandons_failed", "abandons_excluded", "abandons_met")
    }
    assert level == {
        "answered": 6 / 8,
        "abandons_failed": 6 / 10,
        "abandons_excluded": 6 / 9,
        "abandons_met": 7 / 10,
    }
    assert value(found, "acd_interactions_arrived_total", queue="q") == 10
    assert value(found, "acd_interactions_answered_total", queue="q") == 8
    assert value(found, "acd_interactions_answered_within_sla_total", queue="q") == 6
    assert value(found, "acd_interactions_abandoned_total", queue="q") == 2
    assert value(found, "acd_interactions_abandoned_within_sla_total", queue="q") == 1
    answered = {"queue": "q", "outcome": "answered"}
    assert value(found, "acd_wait_seconds_bucket", le="20.0", **answered) == 6
    assert value(found, "acd_wait_seconds_bucket", le="+Inf", **answered) == 8
    assert value(found, "acd_wait_seconds_count", queue="q", outcome="abandoned") == 2
    assert value(found, "acd_wait_seconds_sum", **answered) == 5 + 6 + 7 + 8 + 9 + 10 + 31 + 31
    assert value(found, "acd_wait_seconds_sum", queue="q", outcome="abandoned") == 5 + 31
    assert value(found, "acd_handle_seconds_count", queue="q") == 8
    assert value(found, "acd_offers_total", queue="q", result="accepted") == 8
    assert value(found, "acd_queue_sla_target_ratio", queue="q") == 0.8


async def test_queue_info_names_each_configured_queue_channel(center: Center) -> None:
    await center.queue("calls", skills={"s": 1})
    await center.queue("chats", skills={"s": 1}, channel=Channel.CHAT)
    await center.queue("mails", skills={"s": 1}, channel=Channel.EMAIL)
    found = samples(await render(center.engine, center.now))
    info = {labels: v for (name, labels), v in found.items() if name == "acd_queue_info"}
    assert info == {
        (("channel", "voice"), ("queue", "calls")): 1.0,
        (("channel", "chat"), ("queue", "chats")): 1.0,
        (("channel", "email"), ("queue", "mails")): 1.0,
    }


async def test_two_routers_export_the_same_and_a_restart_keeps_it(
    center: Center, redis_server: RedisServer
) -> None:
    await _ten_calls(center)
    first = await render(center.engine, center.now)
    other = Engine(Redis.from_url(redis_server.url), center.engine.settings)
    await other.start()  # a second router process, or the first one restarted
    second = await render(other, center.now + 1)  # within the snapshot's age: the same snapshot
    await other.redis.aclose()
    assert samples(second) == samples(first)


async def test_agent_time_never_goes_back_between_scrapes(center: Center) -> None:
    await center.queue("q", skills={"s": 1}, offer_timeout_s=600)
    await center.agent("a1", {"s": 1})
    await center.agent("a2", {"s": 1})
    await center.call("q", "c1")  # a1 offered at t=0
    await center.advance(10)
    first = samples(await render(center.engine, center.now))  # the snapshot of t=10
    await center.advance(2)
    await center.call("q", "c2")  # a2 offered at t=12
    await center.advance(1)
    second = samples(await render(center.engine, center.now))  # t=13: the same snapshot
    await center.advance(5)
    third = samples(await render(center.engine, center.now))  # t=18: a new one
    offered = [
        value(s, "acd_agent_time_seconds_total", activity="offered") for s in (first, second, third)
    ]
    assert offered == [10.0, 10.0, 18.0 + 6.0]


async def test_agent_time_does_not_go_back_when_a_late_tick_ends_a_wrap_up(center: Center) -> None:
    await center.queue("q", skills={"s": 1}, wrap_up_s=10)
    await center.agent("a1", {"s": 1})
    await center.call("q", "c1")
    await center.engine.accept("c1", "a1", center.now)
    await center.engine.complete("c1", "a1", center.now)
    center.clock.advance(13)  # the wrap-up ends at +10, but no tick ran yet
    first = samples(await render(center.engine, center.now))
    await center.advance(6)  # the tick ends it at its scheduled end, +10
    second = samples(await render(center.engine, center.now))
    name = "acd_agent_time_seconds_total"
    assert value(first, name, activity="wrap_up") == 13.0
    assert value(second, name, activity="wrap_up") == 13.0  # held until the total passes it
    assert value(second, name, activity="idle") == 9.0


async def test_a_snapshot_far_ahead_of_the_clock_is_recomputed(center: Center) -> None:
    await center.queue("q", skills={"s": 1})
    # Taken by a router whose clock is an hour ahead (or before an NTP step back of this one).
    await center.engine.metrics_snapshot(center.now + 3600, 5.0)
    await center.call("q", "c1")
    await center.advance(60)
    seen = await center.engine.metrics_snapshot(center.now, 5.0)
    assert (seen["at"], seen["queues"]["q"]["waiting"]) == (to_ms(center.now), 1)


async def test_agent_time_by_activity_and_agents_by_state(center: Center) -> None:
    await center.queue("q", skills={"s": 1}, wrap_up_s=10)
    await center.agent("a1", {"s": 1})  # idle from t=0
    await center.advance(30)
    await center.call("q", "c1")  # offered at 30 s
    await center.advance(5)
    await center.engine.accept("c1", "a1", center.now)  # busy at 35 s
    await center.advance(60)
    await center.engine.complete("c1", "a1", center.now)  # wrap-up 95..105 s
    await center.advance(15)  # idle again from 105 s; now 110 s
    await center.state("a1", AgentState.NOT_READY)  # idle no longer counts
    await center.advance(100)
    found = samples(await render(center.engine, center.now))
    time = {
        a: value(found, "acd_agent_time_seconds_total", activity=a)
        for a in ("idle", "offered", "busy", "wrap_up")
    }
    assert time == {"idle": 35.0, "offered": 5.0, "busy": 60.0, "wrap_up": 10.0}
    assert value(found, "acd_agents", state="not_ready", activity="idle") == 1
    assert value(found, "acd_handle_seconds_sum", queue="q") == 70.0  # 60 s talk + 10 s wrap-up


async def test_ewt_follows_the_documented_method(center: Center) -> None:
    await center.queue("q", skills={"s": 1})
    for i in range(2):
        await center.agent(f"a{i}", {"s": 1})
    # Teach the queue a talk time of 100 s (no wrap-up, answered as offered: no ring time).
    for i in range(2):
        await center.call("q", f"warm{i}")
        await center.engine.accept(f"warm{i}", f"a{i}", center.now)
    await center.advance(100)
    for i in range(2):
        await center.engine.complete(f"warm{i}", f"a{i}", center.now)
    for i in range(2):  # both agents busy again
        await center.call("q", f"busy{i}")
        await center.engine.accept(f"busy{i}", f"a{i}", center.now)
    for i in range(3):
        await center.call("q", f"w{i}")
    # Third in line: the median of the 3rd departure of 2 agents on calls of 100 s,
    # (3 - 1/3) x 100 / 2 = 133.3 s.
    assert round((await center.ix("w2")).ewt_s or 0, 3) == 133.333
    stats = await center.engine.queue_stats((await center.engine.get_queue("q")), center.now)  # type: ignore[arg-type]
    assert stats["ewt_s"] == 183.3  # the next arrival would be fourth: (4 - 1/3) x 50 s
    await center.advance(40)
    await center.engine.complete("busy0", "a0", center.now)
    await center.engine.accept("w0", "a0", center.now)  # waited 40 s, told 33.3 s at arrival
    found = samples(await render(center.engine, center.now))
    # w0 was told (1 - 1/3) x 50 s and waited 40 s: an error of 6.7 s; the four calls answered
    # at once were told their ring time, 0 s, and waited 0 s.
    assert value(found, "acd_ewt_error_seconds_count", queue="q") == 5
    assert value(found, "acd_ewt_error_seconds_bucket", queue="q", le="5.0") == 4
    assert value(found, "acd_ewt_error_seconds_bucket", queue="q", le="10.0") == 5
    assert round(value(found, "acd_ewt_error_seconds_sum", queue="q"), 3) == 6.667


async def test_callback_counters_and_answered_once(center: Center) -> None:
    policy = CallbackPolicy(offer_when_ewt_s=60, retry_after_s=10, max_attempts=2)
    await center.queue("q", skills={"s": 1}, callback=policy)
    for ix_id in ("c1", "c2"):
        await center.call("q", ix_id)  # nobody serves: both are offered a callback
        await center.engine.accept_callback(ix_id, center.now)
    await center.engine.abandon("c2", center.now)
    await center.agent("a1", {"s": 1})
    for _ in range(2):
        await center.engine.accept("c1", "a1", center.now)
        await center.engine.complete("c1", "a1", center.now, Outcome.CUSTOMER_NO_ANSWER)
        await center.advance(10)
    found = samples(await render(center.engine, center.now))
    counts = {
        name: value(found, f"acd_callbacks_{name}_total", queue="q")
        for name in ("offered", "accepted", "cancelled", "failed")
    }
    assert counts == {"offered": 2, "accepted": 2, "cancelled": 1, "failed": 1}
    assert value(found, "acd_interactions_answered_total", queue="q") == 1  # answered once
    assert value(found, "acd_interactions_abandoned_total", queue="q") == 0  # cancelled instead


async def test_sums_kept_in_seconds_by_earlier_versions_still_count(center: Center) -> None:
    keys = center.engine.keys
    await center.queue("q", skills={"s": 1})
    await center.agent("a1", {"s": 1})  # idle from t=0
    await center.call("q", "c1")  # offered at once: 0 s of idle time, a wait of 0 s
    await center.advance(2)
    await center.engine.accept("c1", "a1", center.now)
    await center.advance(4)
    await center.engine.complete("c1", "a1", center.now)  # handled in 4 s, idle again
    await center.state("a1", AgentState.NOT_READY)
    redis = center.engine.redis
    await redis.hset(keys.agent_time, "total|busy", "1.25")
    await redis.hset(keys.metric_histograms, "acd_handle_seconds|q|sum", "0.5")
    await redis.delete(keys.metrics_snapshot)  # the next export reads the hashes again
    found = samples(await render(center.engine, center.now))
    assert value(found, "acd_agent_time_seconds_total", activity="offered") == 2.0
    assert value(found, "acd_agent_time_seconds_total", activity="busy") == 4 + 1.25
    assert value(found, "acd_handle_seconds_sum", queue="q") == 4 + 0.5
    minute = int(center.now // 60)
    await redis.hset(keys.metrics_window("q", minute), "handle_sum", "3")
    await redis.hincrby(keys.metrics_window("q", minute), "handle_n", 1)
    window = (await center.engine.queue_figures(["q"], center.now))["q"]["window"]
    assert (window["handle_sum"], window["handle_n"]) == (4 + 3, 2)


async def test_an_observation_too_large_for_whole_ms_is_summed_in_seconds(redis: Redis) -> None:
    body = """
M.observe('acd_ewt_error_seconds|q', 7.5e15, {1, 10})
M.observe('acd_ewt_error_seconds|q', 2.5, {1, 10})
M.observe('acd_ewt_error_seconds|q', 0/0, {1, 10})
return cmsgpack.pack(redis.call('HGETALL', M.keys.metric_histograms))
"""
    flat = await run_library(redis, "acd:{huge}:", body)
    fields = dict(zip(flat[::2], flat[1::2], strict=True))
    prefix = "acd_ewt_error_seconds|q|"
    assert float(fields[prefix + "sum"]) == 7.5e15  # beyond 2^53 ms: the seconds field
    assert fields[prefix + "sum_ms"] == "2500"
    assert (fields[prefix + "+Inf"], fields[prefix + "10"]) == ("2", "1")  # NaN: no sum


async def test_a_forced_logout_is_no_handle_time(center: Center) -> None:
    # Was: an agent_lost end counted its talk as a handle time (0.005 s here), and the queue's
    # EWT took it as its recent handle time: a few ms of wait announced with nobody staffed.
    await center.queue("q", skills={"s": 1})
    await center.agent("a1", {"s": 1})
    await center.call("q", "c1")
    await center.engine.accept("c1", "a1", center.now)
    await center.advance(0.005)
    await center.state("a1", AgentState.LOGGED_OUT, force=True)
    assert (await center.ix("c1")).outcome == Outcome.AGENT_LOST
    found = samples(await render(center.engine, center.now))
    assert value(found, "acd_handle_seconds_count", queue="q") == 0
    window = (await center.engine.queue_figures(["q"], center.now))["q"]["window"]
    assert (window["handle_sum"], window["handle_n"]) == (0, 0)
    await center.call("q", "c2")
    assert (await center.ix("c2")).ewt_s == 180.0  # the default talk time: none measured
