"""A new routing class at a center with more logged-in agents than `class_fill_batch`: filled in
batches, by the arrival and then by its `fill:<class>` timer (README, routing classes)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from router.domain.models import AgentState, InteractionStatus
from router.store.codec import text
from router.store.invariants import check_invariants
from tests.store.center import Center

BATCH = 3


async def small_batches(center: Center) -> None:
    """Batches of BATCH agents, and a queue."""
    center.engine.tune(fill_batch=BATCH)
    await center.queue("support", skills={"support": 1})


async def class_of(center: Center, ix_id: str) -> int:
    """The routing class an interaction waits in."""
    raw = await center.engine.redis.get(center.engine.keys.interaction(ix_id))
    assert isinstance(raw, bytes)
    record: dict[str, Any] = msgpack.unpackb(raw, raw=False)
    return int(record["cls"])


async def members(center: Center, cid: int) -> set[str]:
    """The logged-in agents the class holds so far."""
    return {
        text(m) for m in await center.engine.redis.smembers(center.engine.keys.class_staffed(cid))
    }


async def filling(center: Center, cid: int) -> bool:
    """Whether the class has a live fill cursor, and then its timer."""
    keys = center.engine.keys
    live = bool(await center.engine.redis.hexists(keys.class_filling, str(cid)))
    timer = await center.engine.redis.zscore(keys.timers, f"fill:{cid}")
    assert live == (timer is not None)
    return live


async def check_mid_fill(center: Center, cid: int) -> None:
    """Every invariant holds during the fill but its own timer, due now."""
    violations = await check_invariants(
        center.engine.redis, center.engine.keys, center.now, {"voice"}
    )
    assert violations in ([], [f"timers overdue at now: ['fill:{cid}']"]), violations


async def test_a_new_class_is_filled_in_batches_by_its_timer(center: Center) -> None:
    await small_batches(center)
    agents = [f"a{i}" for i in range(10)]
    for aid in agents:
        await center.agent(aid, {"support": 1, "fr": 2}, available=False)
        await center.state(aid, AgentState.NOT_READY)
    ix = await center.call("support", "c1", skills={"fr": 1})
    assert ix.status == InteractionStatus.QUEUED
    cid = await class_of(center, "c1")
    seen = await members(center, cid)
    assert 0 < len(seen) < len(agents)
    assert await filling(center, cid)
    await check_mid_fill(center, cid)
    ticks = 0
    while await filling(center, cid):
        applied = (await center.engine.tick(center.now)).applied
        assert applied == 1
        now_in = await members(center, cid)
        assert seen <= now_in
        seen = now_in
        ticks += 1
        await check_mid_fill(center, cid)
    assert seen == set(agents)
    assert ticks >= 1
    assert await center.engine.redis.zscore(center.engine.keys.timers, f"fill:{cid}") is None
    await center.state("a3", AgentState.AVAILABLE)
    assert await center.offered_to("c1") == "a3"


@pytest.mark.parametrize("preferred", [False, True])
async def test_the_waiting_interaction_is_offered_once_an_idle_agent_is_reached(
    center: Center, preferred: bool
) -> None:
    await small_batches(center)
    # Enough agents that the one chosen is seldom reached before it is idle (the batches of
    # the operations in between), when only the fill can offer it the interaction.
    agents = [f"a{i}" for i in range(60)]
    for aid in agents:
        await center.agent(aid, {"support": 1, "fr": 2}, available=False)
        await center.state(aid, AgentState.NOT_READY)
    await center.call("support", "c0", skills={"fr": 1})  # makes the class
    cid = await class_of(center, "c0")
    reached = await members(center, cid)
    late = sorted(set(agents) - reached)[-1]
    await center.engine.abandon("c0", center.now)
    wait = {"preferred_agents": (late,), "preferred_wait_s": 60.0} if preferred else {}
    await center.call("support", "c1", skills={"fr": 1}, **wait)
    assert await class_of(center, "c1") == cid
    await center.state(late, AgentState.AVAILABLE)
    # Idle and qualified, but until the fill reaches it (every operation applies due timers
    # first, this one too) the interaction waits; then it is offered in the same call.
    while True:
        offered = await center.offered_to("c1")
        assert offered == (late if late in await members(center, cid) else None)
        await check_mid_fill(center, cid)
        if not await filling(center, cid):
            break
        await center.engine.tick(center.now)
    assert await center.offered_to("c1") == late
    offer = (await center.events("interaction.offered"))[-1]
    assert offer.fields["routing"]["preferred"] is preferred
    await center.check()


async def test_agents_changing_during_a_fill_end_up_in_the_right_classes(center: Center) -> None:
    await small_batches(center)
    for i in range(24):
        skills = {"support": 1, "fr": 2} if i % 3 else {"support": 1}
        await center.agent(f"a{i:02}", skills, available=False)
        await center.state(f"a{i:02}", AgentState.NOT_READY)
    await center.call("support", "c1", skills={"fr": 1})
    cid = await class_of(center, "c1")
    # SSCAN goes in hash table order: a batch may reach none of the qualified agents yet.
    while not (reached := await members(center, cid)):
        await center.engine.tick(center.now)
    assert await filling(center, cid)
    everyone = {f"a{i:02}" for i in range(24)}
    qualified = {f"a{i:02}" for i in range(24) if i % 3}
    in_class = sorted(reached)
    not_yet = sorted(qualified - reached)
    assert reached <= qualified
    assert len(not_yet) >= 3
    # Out while in the class, out before it was reached, and back in.
    await center.state(in_class[0], AgentState.LOGGED_OUT)
    gone = not_yet[0]
    await center.state(gone, AgentState.LOGGED_OUT)
    await center.state(not_yet[1], AgentState.LOGGED_OUT)
    await center.state(not_yet[1], AgentState.NOT_READY)
    # Skills lost before being reached, skills gained, and a newcomer.
    await center.agent(not_yet[2], {"support": 1}, available=False)
    await center.agent("a00", {"support": 1, "fr": 3}, available=False)
    await center.agent("new", {"support": 1, "fr": 1}, available=False)
    await center.state("new", AgentState.NOT_READY)
    await check_mid_fill(center, cid)
    while await filling(center, cid):
        await center.engine.tick(center.now)
        await check_mid_fill(center, cid)
    await center.check()
    expected = set()
    for aid in everyone | {"new"}:
        agent = await center.ag(aid)
        if agent.state != AgentState.LOGGED_OUT and agent.skills.get("fr", 0) >= 1:
            expected.add(aid)
    assert await members(center, cid) == expected
    assert expected.isdisjoint({in_class[0], gone, not_yet[2]})
    assert {"new", not_yet[1], "a00"} <= expected


async def test_ticks_of_the_service_complete_a_fill_and_route(center: Center) -> None:
    await small_batches(center)
    for i in range(10):
        await center.agent(f"a{i}", {"support": 1, "fr": 2})
    await center.call("support", "c1", skills={"fr": 1})
    await center.call("support", "c2", skills={"fr": 1})
    await center.advance(0)  # ticks until none applies, as the service's tick loop
    cid = await class_of(center, "c1")
    assert not await filling(center, cid)
    assert await members(center, cid) == {f"a{i}" for i in range(10)}
    assert await center.offered_to("c1") is not None
    assert await center.offered_to("c2") is not None


async def test_few_logged_in_agents_fill_the_class_at_once(center: Center) -> None:
    await small_batches(center)
    for i in range(BATCH):
        await center.agent(f"a{i}", {"support": 1, "fr": 2}, available=False)
        await center.state(f"a{i}", AgentState.NOT_READY)
    await center.call("support", "c1", skills={"fr": 1})
    cid = await class_of(center, "c1")
    assert not await filling(center, cid)
    assert await members(center, cid) == {f"a{i}" for i in range(BATCH)}


async def test_a_queue_upsert_fills_its_classes_to_the_end(center: Center) -> None:
    await small_batches(center)
    for i in range(10):
        await center.agent(f"a{i}", {"support": 1, "fr": 2}, available=False)
        await center.state(f"a{i}", AgentState.NOT_READY)
    await center.call("support", "c1", skills={"fr": 1})
    cid = await class_of(center, "c1")
    assert await filling(center, cid)
    # A queue whose requirement is that class: it is completed first (its staffed set).
    french = await center.queue("french", skills={"support": 1, "fr": 1})
    assert not await filling(center, cid)
    assert await members(center, cid) == {f"a{i}" for i in range(10)}
    await center.state("a4", AgentState.AVAILABLE)
    assert await center.offered_to("c1") == "a4"
    stats = await center.engine.queue_stats(french, center.now)
    assert stats["agents_staffed"] == 10
