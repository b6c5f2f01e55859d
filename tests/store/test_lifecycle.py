"""Scenarios for SPEC §3.7 (preferred agents), §3.8 (wrap-up), §3.9 (limits, transfer),
timers under several routers, the event log and record retention."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from router.domain.models import Activity, AgentState, Channel, InteractionStatus, RejectReason
from router.errors import Conflict, NotConnected, QueueFull, ValidationError
from router.store.engine import Engine
from router.store.server import RedisServer
from tests.store.center import Center


async def test_preferred_agent_gets_it_first_then_anyone(center: Center) -> None:
    await center.queue("support", skills={"support": 1})
    await center.agent("other", {"support": 1})
    await center.agent("pref", {"support": 1}, available=False)
    await center.state("pref", AgentState.NOT_READY)
    ix = await center.call("support", "c1", preferred_agents=("pref",), preferred_wait_s=20)
    assert ix.status == InteractionStatus.QUEUED  # "other" is idle but not preferred
    await center.advance(5)
    await center.state("pref", AgentState.AVAILABLE)
    assert await center.offered_to("c1") == "pref"
    routing = (await center.events("interaction.offered"))[-1].fields["routing"]
    assert routing["preferred"] is True


async def test_preferred_wait_ends_after_its_time(center: Center) -> None:
    await center.queue("support", skills={"support": 1})
    await center.agent("other", {"support": 1})
    await center.agent("pref", {"support": 1}, available=False)
    await center.state("pref", AgentState.NOT_READY)
    await center.call("support", "c1", preferred_agents=("pref",), preferred_wait_s=20)
    await center.advance(19.9)
    assert (await center.ix("c1")).status == InteractionStatus.QUEUED
    await center.advance(0.1)
    assert await center.offered_to("c1") == "other"


async def test_preferred_agents_in_list_order_if_they_qualify(center: Center) -> None:
    await center.queue("support", skills={"support": 2})
    await center.agent("unskilled", {"support": 1})
    await center.agent("second", {"support": 2})
    await center.agent("third", {"support": 2})
    ix = await center.call(
        "support", "c1", preferred_agents=("unskilled", "third", "second"), preferred_wait_s=30
    )
    assert ix.agent_id == "third"


async def test_preferred_wait_is_skipped_when_none_is_logged_in(center: Center) -> None:
    await center.queue("support", skills={"support": 1})
    await center.agent("other", {"support": 1})
    await center.agent("pref", {"support": 1}, available=False)
    ix = await center.call("support", "c1", preferred_agents=("pref",), preferred_wait_s=60)
    assert ix.agent_id == "other"


async def test_preferred_wait_ends_when_every_listed_agent_leaves(center: Center) -> None:
    await center.queue("support", skills={"support": 1})
    await center.agent("other", {"support": 1}, available=False)
    await center.agent("p1", {"support": 1})
    await center.agent("p2", {"support": 1}, available=False)
    await center.state("p2", AgentState.NOT_READY)
    await center.call("support", "c1", preferred_agents=("p1", "p2"), preferred_wait_s=60)
    assert await center.offered_to("c1") == "p1"
    await center.state("other", AgentState.AVAILABLE)
    await center.engine.reject("c1", "p1", RejectReason.REJECTED, center.now)
    assert (await center.ix("c1")).status == InteractionStatus.QUEUED  # p2 still logged in
    await center.state("p2", AgentState.LOGGED_OUT)
    assert await center.offered_to("c1") == "other"


async def test_wrap_up_blocks_offers_until_it_ends(center: Center) -> None:
    await center.queue("support", skills={"support": 1}, wrap_up_s=10)
    await center.agent("a1", {"support": 1})
    await center.call("support", "c1")
    await center.engine.accept("c1", "a1", center.now)
    await center.advance(30)
    await center.engine.complete("c1", "a1", center.now)
    assert (await center.ag("a1")).activity == Activity.WRAP_UP
    await center.call("support", "c2")
    assert (await center.ix("c2")).status == InteractionStatus.QUEUED
    wrap_end = center.now + 10
    await center.advance(12)  # the tick runs late: idle_since is still the end of wrap-up
    agent = await center.ag("a1")
    assert (agent.activity, agent.idle_since) == (Activity.OFFERED, wrap_end)


async def test_wrap_up_override_and_early_end(center: Center) -> None:
    await center.queue("support", skills={"support": 1}, wrap_up_s=10)
    await center.agent("a1", {"support": 1})
    await center.call("support", "c1")
    await center.engine.accept("c1", "a1", center.now)
    await center.engine.complete("c1", "a1", center.now, wrap_up_s=120)
    assert (await center.ag("a1")).wrap_up_until == center.now + 120
    await center.advance(3)
    await center.call("support", "c2")
    await center.state("a1", AgentState.AVAILABLE)  # ends wrap-up early
    agent = await center.ag("a1")
    assert (agent.activity, agent.idle_since) == (Activity.OFFERED, center.now)


async def test_max_waiting_blocks_arrivals_on_the_line(center: Center) -> None:
    await center.queue("support", skills={"support": 1}, max_waiting=1)
    await center.call("support", "c1")
    blocked = await center.call("support", "c2")
    assert (blocked.status, blocked.position) == (InteractionStatus.BLOCKED, None)
    assert [e.fields["interaction_id"] for e in await center.events("interaction.blocked")] == [
        "c2"
    ]


async def test_max_wait_times_out_but_an_offer_finishes_first(center: Center) -> None:
    await center.queue("support", skills={"support": 1}, max_wait_s=60, offer_timeout_s=15)
    await center.call("support", "c1")
    await center.advance(50)
    await center.agent("a1", {"support": 1})
    await center.call("support", "c2")
    assert await center.offered_to("c1") == "a1"
    await center.advance(10)  # c1's max wait passes during its offer
    assert await center.offered_to("c1") == "a1"
    await center.advance(5)  # the offer expires: now it times out
    assert (await center.ix("c1")).status == InteractionStatus.TIMED_OUT
    await center.advance(50)
    assert (await center.ix("c2")).status == InteractionStatus.TIMED_OUT
    assert len(await center.events("interaction.timed_out")) == 2


async def test_a_max_wait_changed_during_an_offer_applies_when_it_fails(center: Center) -> None:
    async def limit(max_wait_s: float) -> None:
        await center.queue("support", skills={"s": 1}, max_wait_s=max_wait_s, offer_timeout_s=120)

    await limit(60)
    await center.agent("a1", {"s": 1})
    await center.agent("a2", {"s": 1})
    await center.call("support", "lifted")
    await center.call("support", "kept")
    await center.advance(61)  # both passed their max wait while ringing
    await limit(600)
    await center.engine.reject("lifted", "a1", RejectReason.REJECTED, center.now)
    assert (await center.ix("lifted")).status == InteractionStatus.QUEUED
    await limit(60)  # passed again
    await center.engine.reject("kept", "a2", RejectReason.REJECTED, center.now)
    assert (await center.ix("kept")).status == InteractionStatus.TIMED_OUT


async def test_abandon_frees_the_offered_agent(center: Center) -> None:
    await center.queue("support", skills={"support": 1})
    await center.agent("a1", {"support": 1})
    await center.call("support", "c1")
    await center.call("support", "c2")
    ix = await center.engine.abandon("c1", center.now)
    assert ix.status == InteractionStatus.ABANDONED
    assert await center.offered_to("c2") == "a1"
    again = await center.engine.abandon("c1", center.now + 1)
    assert again.ended_at == ix.ended_at
    await center.engine.accept("c2", "a1", center.now)
    with pytest.raises(Conflict):
        await center.engine.abandon("c2", center.now)


async def test_transfer_enters_the_target_as_a_new_arrival(center: Center) -> None:
    await center.queue("support", skills={"support": 1}, wrap_up_s=5)
    await center.queue("billing", skills={"billing": 1})
    await center.queue("chat", channel=Channel.CHAT)
    await center.agent("a1", {"support": 1})
    await center.agent("b1", {"billing": 1}, available=False)
    await center.call("support", "c1", priority=7, credit_s=30, data={"k": 1})
    with pytest.raises(NotConnected):
        await center.engine.transfer("c1", "a1", "billing", center.now)
    await center.engine.accept("c1", "a1", center.now)
    await center.advance(40)
    for bad in ("nowhere", "chat"):
        with pytest.raises(ValidationError) as err:
            await center.engine.transfer("c1", "a1", bad, center.now)
        assert err.value.errors[0].field == "queue"
    ix = await center.engine.transfer("c1", "a1", "billing", center.now)
    assert (ix.queue, ix.status, ix.priority, ix.credit_s) == ("billing", "queued", 7, 30)
    assert ix.enqueued_at == center.now  # a new wait
    assert (await center.ag("a1")).activity == Activity.WRAP_UP
    moved = (await center.events("interaction.transferred"))[-1]
    assert (moved.fields["from_queue"], moved.fields["queue"]) == ("support", "billing")
    await center.state("b1", AgentState.AVAILABLE)
    assert await center.offered_to("c1") == "b1"


async def _connected_in_sales(center: Center) -> None:
    """Agent a1, without wrap-up, connected to `moved` in `sales`; `care` served by a1 too."""
    await center.queue("sales", skills={"s": 1})
    await center.queue("care", skills={"s": 1})
    await center.agent("a1", {"s": 1})
    await center.call("sales", "moved")
    await center.engine.accept("moved", "a1", center.now)


async def test_transfer_without_wrap_up_frees_the_agent_for_the_older_caller(
    center: Center,
) -> None:
    await _connected_in_sales(center)
    await center.advance(5)
    await center.call("care", "older")  # waits: a1 is busy
    await center.advance(5)
    await center.engine.transfer("moved", "a1", "care", center.now)
    # a1 gained capacity: the first waiting by §3.2 is the older caller; the transfer waits
    # behind it.
    assert await center.offered_to("older") == "a1"
    moved = await center.ix("moved")
    assert (moved.status, moved.position) == (InteractionStatus.QUEUED, 2)
    await center.check()


async def test_transfer_may_go_back_to_its_agent_when_nothing_else_waits(center: Center) -> None:
    await _connected_in_sales(center)
    await center.engine.transfer("moved", "a1", "care", center.now)
    assert await center.offered_to("moved") == "a1"


async def test_transfer_to_a_full_queue_stays_with_the_agent(center: Center) -> None:
    await center.queue("support", skills={"support": 1})
    await center.queue("billing", skills={"billing": 1}, max_waiting=1)
    await center.agent("a1", {"support": 1})
    await center.call("billing", "waiting")
    await center.call("support", "c1")
    await center.engine.accept("c1", "a1", center.now)
    with pytest.raises(QueueFull):
        await center.engine.transfer("c1", "a1", "billing", center.now)
    ix = await center.ix("c1")
    assert (ix.status, ix.agent_id) == (InteractionStatus.CONNECTED, "a1")


async def test_ended_records_expire_after_retention(center: Center) -> None:
    await center.queue("support", skills={"support": 1})
    await center.call("support", "c1")
    await center.engine.abandon("c1", center.now)
    ttl = await center.engine.redis.pttl(center.engine.keys.interaction("c1"))
    assert 3_590_000 < ttl <= 3_600_000  # the test settings keep records for an hour


async def test_each_timer_applies_once_under_concurrent_ticks(
    center: Center, redis_server: RedisServer
) -> None:
    await center.queue("support", skills={"support": 1}, steps=[(10, {})], max_wait_s=20)
    for i in range(30):
        await center.call("support", f"c{i}")
    others = [Redis.from_url(redis_server.url) for _ in range(3)]
    engines = [Engine(r, center.engine.settings) for r in others]
    for e in engines:
        await e.start()
    center.clock.advance(25)
    results = await asyncio.gather(*(e.tick(center.now, limit=7) for e in engines * 5))
    assert sum(r.applied for r in results) == 60  # 30 escalations + 30 timeouts, once each
    for r in others:
        await r.aclose()
    assert len(await center.events("interaction.escalated")) == 30
    assert len(await center.events("interaction.timed_out")) == 30


async def test_logout_of_the_only_preferred_agent_with_its_offer_routes_once(
    center: Center,
) -> None:
    await center.queue("support", skills={"support": 1})
    await center.agent("pref", {"support": 1})
    await center.call("support", "c1", preferred_agents=("pref",), preferred_wait_s=60)
    assert await center.offered_to("c1") == "pref"
    await center.agent("other1", {"support": 1})
    await center.agent("other2", {"support": 1})
    await center.state("pref", AgentState.LOGGED_OUT)  # withdraws, and ends the preferred wait
    assert await center.offered_to("c1") == "other1"
    offers = [e.fields["agent_id"] for e in await center.events("interaction.offered")]
    assert offers == ["pref", "other1"]
    assert (await center.ag("other2")).interactions == {}


async def test_a_webhook_group_reads_through_webhook_next_which_counts_trimmed_events_once(
    center: Center,
) -> None:
    engine, redis = center.engine, center.engine.redis
    key, group = engine.keys.events, "webhook:0:test"

    async def emit(count: int) -> None:  # one agent.state_changed each
        for _ in range(count):
            ann = await center.ag("ann")
            available = ann.state == AgentState.AVAILABLE
            await center.state("ann", AgentState.NOT_READY if available else AgentState.AVAILABLE)

    async def call(op: str, **args: Any) -> list[Any]:
        return await engine.webhook_call(redis, op, center.now, group=group, **args)

    async def next_entry(claim_idle_ms: int = 0, ack: tuple[bytes, ...] = ()) -> list[Any]:
        return await call("webhook_next", consumer="me", claim_idle_ms=claim_idle_ms, ack=list(ack))

    await center.agent("ann", {}, available=False)
    assert await next_entry() == [b"no_group", 0]
    assert await call("webhook_group", position="$") == [b"made"]
    assert await call("webhook_group", position="$") == [b"exists"]
    assert (await next_entry())[:2] == [b"none", 0]
    await emit(3)
    code, lost, first, fields = await next_entry()
    assert (code, lost, fields[0]) == (b"entry", 0, b"t")
    await emit(5)
    # The group read 1 of 8; the log keeps the last 3: 4 were never read.
    await redis.xtrim(key, maxlen=3, approximate=False)
    code, lost, held, _ = await next_entry(ack=(first,))
    assert (code, lost) == (b"entry", 4)
    assert [p["message_id"] for p in await redis.xpending_range(key, group, "-", "+", 9)] == [held]
    for _ in range(2):
        assert (await next_entry())[:2] == [b"entry", 0]  # counted once
    assert (await next_entry())[:2] == [b"none", 0]

    # An entry being retried: held, then trimmed (lost, once), then no longer pending.
    assert await call("webhook_touch", consumer="me", id=held) == [b"held"]
    await redis.xtrim(key, maxlen=0, approximate=False)
    assert await call("webhook_touch", consumer="me", id=held) == [b"lost"]
    assert await call("webhook_touch", consumer="me", id=held) == [b"gone"]

    # A dead consumer's pending entries: taken over, or lost when trimmed, once idle enough.
    await emit(2)
    read = await redis.xreadgroup(group, "dead", {key: ">"}, count=2)
    ids = [entry_id for entry_id, _ in cast(list[Any], read)[0][1]]
    await redis.xclaim(key, group, "dead", 0, ids, idle=60_000)  # read a minute ago
    await redis.xtrim(key, maxlen=1, approximate=False)
    assert (await next_entry(claim_idle_ms=120_000))[:2] == [b"none", 0]  # not idle enough
    code, lost, claimed, _ = await next_entry(claim_idle_ms=30_000)
    assert (code, lost) == (b"claimed", 1)
    assert await call("webhook_touch", consumer="me", id=claimed) == [b"held"]
    await redis.xclaim(key, group, "other", 0, [claimed])  # another loop took it over
    assert await call("webhook_touch", consumer="me", id=claimed) == [b"gone"]
    assert [entry_id for entry_id, _ in cast(list[Any], await redis.xrange(key))] == [claimed]


async def test_a_webhook_group_s_count_starts_when_made_and_holds_only_where_it_was_counted(
    center: Center,
) -> None:
    engine, redis = center.engine, center.engine.redis
    key, group = engine.keys.events, "webhook:0:test"

    async def call(op: str, **args: Any) -> list[Any]:
        return await engine.webhook_call(redis, op, center.now, group=group, **args)

    async def lost_by_next_read() -> int:
        reply = await call("webhook_next", consumer="me", claim_idle_ms=0, ack=[])
        return int(reply[1])

    await center.agent("ann", {}, available=False)
    await center.state("ann", AgentState.AVAILABLE)
    assert await call("webhook_group", position="$") == [b"made"]
    for state in [AgentState.NOT_READY, AgentState.AVAILABLE] * 3:  # before the first read
        await center.state("ann", state)
    await redis.xtrim(key, maxlen=2, approximate=False)
    assert await lost_by_next_read() == 4  # counted from the group's making

    # A read outside these functions (an older router) moves the group: its count is unknown
    # (nothing counted, rather than too much) until the log tells it again.
    await center.state("ann", AgentState.NOT_READY)
    await redis.xreadgroup(group, "older", {key: ">"}, count=1)
    for state in [AgentState.AVAILABLE, AgentState.NOT_READY] * 2:
        await center.state("ann", state)
    await redis.xtrim(key, maxlen=1, approximate=False)
    assert await lost_by_next_read() == 0  # 3 were lost: unknown, so not counted
    assert (await call("webhook_next", consumer="me", claim_idle_ms=0, ack=[]))[0] == b"none"
    for state in [AgentState.AVAILABLE, AgentState.NOT_READY, AgentState.AVAILABLE]:
        await center.state("ann", state)
    await redis.xtrim(key, maxlen=1, approximate=False)
    assert await lost_by_next_read() == 2  # known again since the log's end

    # Made again behind where it was (XGROUP DESTROY): counted from there, not from before.
    await redis.xgroup_destroy(key, group)
    for state in [AgentState.NOT_READY, AgentState.AVAILABLE]:
        await center.state("ann", state)
    [(first, _), *_] = cast(list[Any], await redis.xrange(key))
    assert await call("webhook_group", position=first.decode()) == [b"made"]
    assert await redis.hget(engine.keys.webhook_reads, group) is None  # the old count is gone
    await redis.xtrim(key, maxlen=1, approximate=False)
    assert await lost_by_next_read() == 0  # made in the middle: unknown, nothing counted
