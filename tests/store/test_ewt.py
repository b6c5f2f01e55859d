"""The estimated wait (§3.11; docs/metrics.md, EWT): exact values of the documented formula on
scripted centers, the regression cases of the ringing call and of queues competing for agents,
and the indexes it reads (`clswu:`, `m:ewt`)."""

from __future__ import annotations

from typing import cast

import msgpack

from router.domain.models import AgentState, CallbackPolicy, QueueConfig
from router.metrics.business import render
from router.store.codec import text
from tests.metrics.test_business import samples, value
from tests.store.center import Center


async def arrival_ewt(center: Center, queue: str) -> float:
    """`ewt_s` of the queue's stats: the EWT of an arrival now."""
    config = await center.engine.get_queue(queue)
    assert isinstance(config, QueueConfig)
    return float((await center.engine.queue_stats(config, center.now))["ewt_s"])


async def test_a_ringing_call_does_not_delay_the_next_arrival(center: Center) -> None:
    # Was: A rings a1, so the queue's EWT counted A in the position (2) but a1 no longer as free:
    # (2 - 1) x 180 s / 2 agents = 90 s, and B, offered to a2 at once, recorded an 89.5 s error.
    await center.queue("q", skills={"s": 1})
    await center.agent("a1", {"s": 1})
    await center.agent("a2", {"s": 1})
    await center.call("q", "A")
    assert await center.offered_to("A") == "a1"
    assert await arrival_ewt(center, "q") == 0.0  # a2 is free: offered at once
    await center.call("q", "B")
    assert await center.offered_to("B") == "a2"
    await center.advance(0.5)
    await center.engine.accept("A", "a1", center.now)
    await center.engine.accept("B", "a2", center.now)
    found = samples(await render(center.engine, center.now))
    assert value(found, "acd_ewt_error_seconds_count", queue="q") == 2
    assert value(found, "acd_ewt_error_seconds_sum", queue="q") == 1.0  # 0.5 s of ringing each


async def answered(center: Center, queue: str, ix_id: str) -> str:
    """A call offered at once and accepted at once; its agent."""
    await center.call(queue, ix_id)
    agent = await center.offered_to(ix_id)
    assert agent is not None
    await center.engine.accept(ix_id, agent, center.now)
    return agent


async def taught(center: Center, queue: str, talk_s: float, wrap_s: float) -> None:
    """The queue learns a talk time and a wrap-up (and no ring time) from one call."""
    agent = await answered(center, queue, f"teach-{queue}")
    await center.advance(talk_s)
    await center.engine.complete(f"teach-{queue}", agent, center.now, wrap_up_s=wrap_s)


async def members(center: Center, key: str) -> dict[str, float]:
    """A sorted set's members and scores."""
    pairs = cast(
        list[tuple[bytes, float]], await center.engine.redis.zrange(key, 0, -1, withscores=True)
    )
    return {text(m): s for m, s in pairs}


async def class_of(center: Center, signature: str) -> int:
    """The id of the routing class of a signature (channel|strategy|requirement)."""
    cid = await center.engine.redis.hget(center.engine.keys.classes, signature)
    assert cid is not None
    return int(cid)


async def test_a_known_wrap_up_end_is_a_departure(center: Center) -> None:
    await center.queue("q", skills={"s": 1})
    await center.agent("a1", {"s": 1})
    await taught(center, "q", 100, 30)  # a1 in wrap-up until 30 s from now
    cid = await class_of(center, "voice|longest_idle|s=1")
    wrap_index = center.engine.keys.class_wrap_up(cid)
    assert await members(center, wrap_index) == {"a1": (center.now + 30) * 1000}
    await center.advance(20)
    await center.call("q", "c1")
    # Its only candidate is free in 10 s: that is the wait, whatever the talk time.
    assert (await center.ix("c1")).ewt_s == 10.0
    await center.state("a1", AgentState.NOT_READY)  # its wrap-up end frees it no longer
    assert await members(center, wrap_index) == {}
    assert (await center.ix("c1")).ewt_s == 130.0  # nobody can become free: talk + wrap-up
    await center.state("a1", AgentState.AVAILABLE)  # ends wrap-up: offered at once
    assert await center.offered_to("c1") == "a1"


async def test_a_queue_whose_agents_are_all_on_a_break_waits_for_nobody(center: Center) -> None:
    # Was: the share of the center's agents available (here 1 of 2) made a1 half an agent on a
    # call, so callers heard a few seconds while nobody could answer them.
    await center.queue("q", skills={"s": 1})
    await center.queue("other", skills={"o": 1})
    await center.agent("a1", {"s": 1})
    await center.agent("a2", {"o": 1})  # available, in another queue
    await taught(center, "q", 100, 0)
    await center.state("a1", AgentState.NOT_READY, reason="lunch")
    cid = await class_of(center, "voice|longest_idle|s=1")
    available = center.engine.keys.class_available(cid)
    assert await center.engine.redis.smembers(available) == set()
    await center.call("q", "c1")
    assert (await center.ix("c1")).ewt_s == 100.0  # at least the handle time
    await center.advance(300)
    assert (await center.ix("c1")).ewt_s == 300.0  # the oldest wait on the line
    await center.state("a1", AgentState.AVAILABLE)
    assert await center.offered_to("c1") == "a1"
    assert await center.engine.redis.smembers(available) == {b"a1"}
    await center.check()


async def test_a_later_step_with_a_free_agent_bounds_the_wait(center: Center) -> None:
    # Was: 180 s (nobody staffed at step 0) and a callback offered, then an offer after 30 s.
    policy = CallbackPolicy(offer_when_ewt_s=60)
    await center.queue("q", skills={"s": 3}, steps=[(30, {"s": 1}), (60, {})], callback=policy)
    await center.agent("a1", {"s": 1, "fi": 1})
    assert await arrival_ewt(center, "q") == 30.0
    created = await center.call("q", "c1")
    assert (created.ewt_s, created.callback_offered) == (30.0, False)
    await center.advance(10)
    assert (await center.ix("c1")).ewt_s == 20.0
    await center.call("q", "c2", skills={"fi": 1})  # a1 meets its step 1 too...
    assert (await center.ix("c2")).ewt_s == 180.0  # ...but takes c1 first
    await center.call("q", "c3", skills={"sv": 1})  # nobody meets any of its steps
    assert (await center.ix("c3")).ewt_s == 180.0
    await center.advance(20)
    assert await center.offered_to("c1") == "a1"


async def test_the_classes_available_sets_are_built_for_data_without_them(
    center: Center,
) -> None:
    await center.queue("q", skills={"s": 1})
    await center.agent("a1", {"s": 1})
    await center.agent("a2", {"s": 1}, available=False)
    await center.state("a2", AgentState.NOT_READY)
    keys = center.engine.keys
    available = keys.class_available(await class_of(center, "voice|longest_idle|s=1"))
    # As an earlier version left it; a new library load (every router start) builds them.
    await center.engine.redis.delete(available, keys.class_available_built)
    await center.engine.start()
    await center.call("q", "c1")
    assert await center.engine.redis.smembers(available) == {b"a1"}
    await center.check()


async def test_the_build_of_the_available_sets_within_a_reclassification(center: Center) -> None:
    # Was: built by the agent's reclassification (the first call to look at a class), it left
    # the agent out of every class index until its next state change.
    await center.queue("q", skills={"s": 1})
    await center.agent("a1", {"s": 1})
    keys = center.engine.keys
    available = keys.class_available(await class_of(center, "voice|longest_idle|s=1"))
    await center.engine.redis.delete(available, keys.class_available_built)
    await center.engine.start()
    await center.agent("a1", {"s": 2})  # the first call: a skill change while available
    await center.check()
    await center.call("q", "c1")
    assert await center.offered_to("c1") == "a1"


async def test_an_offered_interaction_waits_for_its_ring_time(center: Center) -> None:
    await center.queue("q", skills={"s": 1}, offer_timeout_s=60)
    await center.agent("a1", {"s": 1})
    await center.call("q", "c0")
    await center.advance(4)
    await center.engine.accept("c0", "a1", center.now)  # the queue's ring time: 4 s
    await center.engine.complete("c0", "a1", center.now)
    await center.call("q", "c1")
    assert (await center.ix("c1")).ewt_s == 4.0
    await center.advance(3)
    assert (await center.ix("c1")).ewt_s == 1.0
    await center.advance(3)
    assert (await center.ix("c1")).ewt_s == 0.0


async def test_a_queue_competing_for_shared_agents_waits_longer(center: Center) -> None:
    # `low` has two candidates on calls, `flex` and `own`; `flex` also serves `high`, whose
    # waiting call goes first. Was: the EWT of a low arrival ignored it.
    await center.queue("low", skills={"low": 1})
    await center.queue("high", skills={"high": 1}, priority=10)
    await center.agent("flex", {"low": 1, "high": 1})
    await center.agent("own", {"low": 1})
    await taught(center, "low", 100, 0)
    for i in range(2):
        await answered(center, "low", f"busy{i}")
    await center.call("high", "h1")
    low = await class_of(center, "voice|longest_idle|low=1")
    high = await class_of(center, "voice|longest_idle|high=1")
    await center.call("low", "before")  # the competition as tick last saw it: none
    assert round((await center.ix("before")).ewt_s or 0, 1) == 33.3  # (1 - 1/3) x 100 / 2
    await center.engine.abandon("before", center.now)
    await center.advance(5)  # tick recomputes the competition
    # |S(low) ∩ S(high)|² / (|S(low)| · |S(high)|) = 1² / (2 · 1): h1 takes half a departure.
    competition = await center.engine.redis.hgetall(center.engine.keys.competition)
    assert msgpack.unpackb(competition[str(low).encode()]) == [high, 0.5]
    assert str(high).encode() not in competition  # nothing waits in `low` now
    await center.call("low", "l1")
    assert round((await center.ix("l1")).ewt_s or 0, 1) == 58.3  # (1.5 - 1/3) x 50 s
    # h1, before every low call, has its one candidate: (1 - 1/3) x 180 s (no talk time yet).
    assert round((await center.ix("h1")).ewt_s or 0, 1) == 120.0


async def test_agents_all_in_wrap_up_are_no_fraction_of_an_agent_on_a_call(center: Center) -> None:
    # Seen in review: 25 staffed * 7/25 available - 7 wrap-up ends left 8.9e-16 "agents on a
    # call", an EWT of 7.5e15 s, and an answer whose EWT error no integer sum could hold.
    await center.queue("q", skills={"s": 1}, wrap_up_s=60)
    for i in range(25):
        await center.agent(f"a{i:02}", {"s": 1}, available=i < 7)
    for i in range(18):
        await center.state(f"a{i + 7:02}", AgentState.NOT_READY)
    for i in range(7):
        await center.call("q", f"c{i}")
        await center.engine.accept(f"c{i}", f"a{i:02}", center.now)
    await center.advance(10)
    for i in range(7):
        await center.engine.complete(f"c{i}", f"a{i:02}", center.now)  # 7 wrap-ups till 70 s
    for i in range(8):
        await center.call("q", f"w{i}")
    ewt_s = (await center.ix("w7")).ewt_s
    assert ewt_s is not None
    assert ewt_s < 3600
    for i in range(7):
        await center.engine.abandon(f"w{i}", center.now)
    await center.state("a07", AgentState.AVAILABLE)
    assert await center.offered_to("w7") == "a07"
    await center.engine.accept("w7", "a07", center.now)  # counts its EWT's error
    assert (await center.ix("w7")).status == "connected"
