"""Scenarios for SPEC §3.1 to §3.4: requirements, order, agent choice, when matching runs."""

from __future__ import annotations

import pytest

from router.domain.models import AgentProfile, AgentState, Channel, InteractionStatus, Strategy
from router.errors import ValidationError
from tests.store.center import Center


async def test_longest_idle_agent_is_offered(center: Center) -> None:
    await center.queue("support", skills={"support": 1})
    await center.agent("a_late", {"support": 1}, available=False)
    await center.agent("a_early", {"support": 1}, available=False)
    await center.state("a_early", AgentState.AVAILABLE)  # idle since t=0
    await center.advance(5)
    await center.state("a_late", AgentState.AVAILABLE)  # idle since t=5
    ix = await center.call("support", "c1")
    assert ix.agent_id == "a_early"
    offered = (await center.events("interaction.offered"))[-1]
    assert offered.fields["routing"] == {
        "step": 0,
        "strategy": "longest_idle",
        "score": 5,
        "qualified": 2,
        "preferred": False,
    }


async def test_equal_idle_time_goes_to_the_first_agent_id(center: Center) -> None:
    await center.queue("support", skills={"support": 1})
    await center.agent("b", {"support": 1})
    await center.agent("a", {"support": 1})
    assert (await center.call("support", "c1")).agent_id == "a"


async def test_best_skill_picks_the_highest_level_sum_then_longest_idle(center: Center) -> None:
    await center.queue("billing", skills={"billing": 2, "lang:fi": 1}, strategy=Strategy.BEST_SKILL)
    await center.agent("senior", {"billing": 5, "lang:fi": 3})  # sum 8, idle since t=0
    await center.agent("junior", {"billing": 2, "lang:fi": 1})  # sum 3
    await center.advance(10)
    await center.agent("peer", {"billing": 4, "lang:fi": 4})  # sum 8, idle since t=10
    assert (await center.call("billing", "c1")).agent_id == "senior"
    assert (await center.call("billing", "c2")).agent_id == "peer"
    assert (await center.call("billing", "c3")).agent_id == "junior"
    offered = await center.events("interaction.offered")
    assert [e.fields["routing"]["score"] for e in offered] == [8, 8, 3]


async def test_higher_priority_goes_first_whatever_the_arrival(center: Center) -> None:
    await center.queue("support", skills={"support": 1})
    await center.agent("a1", {"support": 1}, available=False)
    await center.call("support", "low", priority=0)
    await center.advance(10)
    await center.call("support", "high", priority=10)
    assert (await center.ix("high")).position == 1
    assert (await center.ix("low")).position == 2
    await center.state("a1", AgentState.AVAILABLE)
    assert await center.offered_to("high") == "a1"
    assert (await center.ix("low")).status == InteractionStatus.QUEUED


async def test_credit_gives_a_head_start_within_a_priority(center: Center) -> None:
    await center.queue("support", skills={"support": 1})
    await center.agent("a1", {"support": 1}, available=False)
    await center.call("support", "plain")
    await center.advance(60)
    await center.call("support", "vip", credit_s=90)  # virtual start 30 s before "plain"
    await center.state("a1", AgentState.AVAILABLE)
    assert await center.offered_to("vip") == "a1"


async def test_equal_order_goes_by_arrival(center: Center) -> None:
    await center.queue("support", skills={"support": 1})
    await center.agent("a1", {"support": 1}, available=False)
    await center.call("support", "first")
    await center.call("support", "second")  # same priority, same instant
    await center.state("a1", AgentState.AVAILABLE)
    assert await center.offered_to("first") == "a1"


async def test_order_holds_across_queues_the_agent_serves(center: Center) -> None:
    await center.queue("sales", skills={"sales": 1})
    await center.queue("support", skills={"support": 1})
    await center.agent("a1", {"sales": 1, "support": 1}, available=False)
    await center.call("support", "older")
    await center.advance(1)
    await center.call("sales", "newer")
    await center.state("a1", AgentState.AVAILABLE)
    assert await center.offered_to("older") == "a1"


async def test_escalation_step_relaxes_the_requirement_at_its_time(center: Center) -> None:
    await center.queue("billing", skills={"billing": 4}, steps=[(30, {"billing": 2})])
    await center.agent("a1", {"billing": 2})
    ix = await center.call("billing", "c1")
    assert ix.status == InteractionStatus.QUEUED
    await center.advance(29.999)
    assert (await center.ix("c1")).status == InteractionStatus.QUEUED
    await center.advance(0.001)
    ix = await center.ix("c1")
    assert (ix.status, ix.agent_id, ix.step) == (InteractionStatus.OFFERED, "a1", 1)
    escalated = await center.events("interaction.escalated")
    assert [e.fields["step"] for e in escalated] == [1]


async def test_extra_skills_are_never_relaxed_by_a_step(center: Center) -> None:
    await center.queue("support", skills={"support": 3}, steps=[(10, {"support": 1})])
    await center.agent("a1", {"support": 1})
    await center.agent("a2", {"support": 1, "lang:fi": 2}, available=False)
    await center.call("support", "c1", skills={"lang:fi": 2})
    await center.advance(10)
    assert (await center.ix("c1")).status == InteractionStatus.QUEUED  # a1 lacks lang:fi
    await center.state("a2", AgentState.AVAILABLE)
    assert await center.offered_to("c1") == "a2"


async def test_extra_skill_merges_with_the_higher_minimum(center: Center) -> None:
    await center.queue("support", skills={"support": 2})
    await center.agent("a2", {"support": 2})
    await center.agent("a4", {"support": 4}, available=False)
    await center.call("support", "c1", skills={"support": 4})
    assert (await center.ix("c1")).status == InteractionStatus.QUEUED
    await center.state("a4", AgentState.AVAILABLE)
    assert await center.offered_to("c1") == "a4"


async def test_routing_class_limit_refuses_the_arrival(center: Center) -> None:
    center.engine.tune(max_classes=2)
    await center.queue("support", skills={"support": 1})
    await center.call("support", "c1", skills={"lang:fi": 1})  # second class
    with pytest.raises(ValidationError) as err:
        await center.call("support", "c2", skills={"lang:sv": 1})
    assert err.value.errors[0].field == "skills"
    assert await center.engine.get_interaction("c2", center.now) is None


async def test_an_arrival_takes_the_classes_of_every_step_or_is_refused(center: Center) -> None:
    # Was: only step 0 was checked; at step 1 the limit left the interaction in its step-0 pool
    # while its event said it escalated, and an agent of step 1 stayed idle.
    center.engine.tune(max_classes=4)
    await center.queue("support", skills={"s": 3}, steps=[(10, {"s": 1})])  # 2 classes
    await center.agent("a1", {"s": 1, "fi": 1})
    await center.call("support", "c1", skills={"fi": 1})  # s=3,fi=1 and s=1,fi=1: 4 classes
    with pytest.raises(ValidationError) as err:  # it would need 2 more
        await center.call("support", "c2", skills={"sv": 1})
    assert err.value.errors[0].field == "skills"
    await center.advance(10)
    ix = await center.ix("c1")
    assert (ix.step, ix.status, ix.agent_id) == (1, InteractionStatus.OFFERED, "a1")
    await center.check()


async def test_a_queue_change_keeps_its_waiting_requirements_within_16_skills(
    center: Center,
) -> None:
    await center.queue("q", skills={"s": 1})
    await center.call("q", "c1", skills={f"x{i}": 1 for i in range(10)})
    with pytest.raises(ValidationError) as err:  # 10 extra + 7 of the step: 17
        await center.queue("q", skills={"s": 1}, steps=[(10, {f"y{i}": 1 for i in range(7)})])
    assert err.value.errors[0].field == "skills"
    assert (await center.engine.get_queue("q")).steps == ()  # type: ignore[union-attr]


async def test_a_blocked_arrival_makes_no_routing_class(center: Center) -> None:
    await center.queue("q", skills={"s": 1}, steps=[(10, {})], max_waiting=1)
    await center.call("q", "c1")
    classes = await center.engine.redis.hlen(center.engine.keys.classes)
    blocked = await center.call("q", "c2", skills={"new": 1})
    assert blocked.status == InteractionStatus.BLOCKED
    assert await center.engine.redis.hlen(center.engine.keys.classes) == classes


async def test_a_queue_change_takes_the_classes_its_waiting_interactions_need(
    center: Center,
) -> None:
    center.engine.tune(max_classes=3)
    await center.queue("support", skills={"s": 3})
    await center.call("support", "c1", skills={"fi": 1})  # s=3 and s=3,fi=1
    # s=1, and s=1,fi=1 for c1: past the limit, but a queue write (admin) is not refused.
    await center.queue("support", skills={"s": 3}, steps=[(10, {"s": 1})])
    assert await center.engine.redis.hlen(center.engine.keys.classes) == 4
    with pytest.raises(ValidationError):  # arrivals are: c1's class of step 1 was made
        await center.call("support", "c2", skills={"sv": 1})
    await center.agent("a1", {"s": 1, "fi": 1})
    await center.advance(10)
    assert await center.offered_to("c1") == "a1"
    await center.check()


async def test_arrivals_that_used_the_class_budget_up_leave_queue_writes_free(
    center: Center,
) -> None:
    # Seen: a platform key spent max_routing_classes on arrivals with made-up extra skills, and
    # every PUT /v1/queues of a new requirement was a 422 for good.
    center.engine.tune(max_classes=3)
    await center.queue("support", skills={"s": 1})
    for i in range(2):
        await center.call("support", f"junk{i}", skills={f"k{i}": 1})
        await center.engine.abandon(f"junk{i}", center.now)
    with pytest.raises(ValidationError):
        await center.call("support", "c1", skills={"k9": 1})
    await center.queue("new", skills={"n": 1}, steps=[(10, {"m": 1})])
    await center.agent("a1", {"n": 1})
    assert (await center.call("new", "c2")).agent_id == "a1"
    await center.check()


async def test_skill_change_of_a_logged_in_agent_routes_at_once(center: Center) -> None:
    await center.queue("fi", skills={"lang:fi": 3})
    await center.agent("a1", {"lang:fi": 1})
    await center.call("fi", "c1")
    assert (await center.ix("c1")).status == InteractionStatus.QUEUED
    await center.engine.put_agent("a1", AgentProfile(skills={"lang:fi": 3}), center.now)
    assert await center.offered_to("c1") == "a1"


async def test_queue_change_applies_to_waiting_interactions(center: Center) -> None:
    await center.queue("support", skills={"support": 5})
    await center.agent("a1", {"support": 2})
    await center.call("support", "c1")
    assert (await center.ix("c1")).status == InteractionStatus.QUEUED
    await center.queue("support", skills={"support": 2})
    assert await center.offered_to("c1") == "a1"


async def test_position_counts_everything_ahead_in_the_queue(center: Center) -> None:
    await center.queue("support", skills={"support": 1}, steps=[(20, {})])
    await center.call("support", "c1")
    await center.advance(20)  # c1 is now at step 1: still counted
    await center.call("support", "c2")
    await center.call("support", "c3", priority=5)
    positions = [(await center.ix(i)).position for i in ("c1", "c2", "c3")]
    assert positions == [2, 3, 1]


async def test_a_chat_agent_takes_up_to_its_capacity_fewest_active_first(center: Center) -> None:
    await center.queue("chat", channel=Channel.CHAT, skills={"chat": 1})
    await center.agent("a", {"chat": 1}, channels={Channel.CHAT: 2})
    await center.advance(1)
    await center.agent("b", {"chat": 1}, channels={Channel.CHAT: 2})
    got = [(await center.call("chat", f"c{i}")).agent_id for i in range(5)]
    # a is idle longest; then b has fewer active; then a again (fewest active, idle longer).
    assert got == ["a", "b", "a", "b", None]
    assert (await center.ag("a")).interactions == {"c0": "offered", "c2": "offered"}


async def test_best_skill_ties_go_to_the_agent_idle_longest_by_a_millisecond(
    center: Center,
) -> None:
    await center.queue("q", skills={"s": 1}, strategy=Strategy.BEST_SKILL)
    await center.agent("a", {"s": 1}, available=False)
    await center.agent("b", {"s": 1}, available=False)
    center.clock.advance(0.003)
    await center.state("b", AgentState.AVAILABLE)
    center.clock.advance(0.001)
    await center.state("a", AgentState.AVAILABLE)
    assert (await center.call("q", "c1")).agent_id == "b"


async def test_an_agent_looks_only_at_its_classes_with_interactions_waiting(center: Center) -> None:
    redis, keys = center.engine.redis, center.engine.keys
    await center.queue("support", skills={"support": 1})
    await center.agent("a1", {"support": 1}, available=False)
    await center.call("support", "c1")
    (cid,) = [int(c) for c in await redis.smembers(keys.classes_waiting)]
    assert await redis.zcard(keys.class_waiting(cid)) == 1
    await center.engine.abandon("c1", center.now)
    await center.state("a1", AgentState.AVAILABLE)  # finds the class empty: it leaves the set
    assert await redis.smembers(keys.classes_waiting) == set()
    await center.state("a1", AgentState.NOT_READY)
    await center.call("support", "c2")
    await redis.srem(keys.classes_waiting, cid)  # out of the set, c2 is out of the agent's sight
    await center.state("a1", AgentState.AVAILABLE)
    assert await center.offered_to("c2") is None
    await center.state("a1", AgentState.NOT_READY)
    await redis.sadd(keys.classes_waiting, cid)
    await center.state("a1", AgentState.AVAILABLE)
    assert await center.offered_to("c2") == "a1"


async def test_interactions_an_earlier_version_placed_are_found_after_a_router_start(
    center: Center,
) -> None:
    # An earlier version placed interactions without adding their class to classes_waiting:
    # before the set existed, or after a rollback (when the set had dropped the class).
    redis, keys = center.engine.redis, center.engine.keys
    await center.queue("support", skills={"support": 1})
    await center.agent("a1", {"support": 1}, available=False)
    await center.call("support", "c1")
    await redis.delete(keys.classes_waiting)
    await center.engine.start()  # a router starts: FUNCTION LOAD REPLACE, the library anew
    await center.state("a1", AgentState.AVAILABLE)
    assert await center.offered_to("c1") == "a1"
