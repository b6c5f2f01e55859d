"""Staffed (§4): logged-in agents, in any state but logged_out, that meet any step's requirement
of the queue and have capacity on its channel; the sets that keep it (`qst:`, `clsin:`,
`agcls:`) and what reads it (stats, the EWT)."""

from __future__ import annotations

from router.domain.models import AgentProfile, AgentState, Channel, InteractionStatus
from router.metrics.business import render
from router.store.codec import text
from router.store.invariants import check_invariants
from tests.metrics.test_business import samples, value
from tests.store.center import Center

BOTH = {Channel.VOICE: 1, Channel.CHAT: 2}


async def stats(center: Center, name: str) -> tuple[int, int]:
    """A queue's (agents_staffed, agents_available)."""
    queue = await center.engine.get_queue(name)
    assert queue is not None
    found = await center.engine.queue_stats(queue, center.now)
    return found["agents_staffed"], found["agents_available"]


async def members(center: Center, key: str) -> set[str]:
    return {text(m) for m in await center.engine.redis.smembers(key)}


async def class_id(center: Center, signature: str) -> str:
    cid = await center.engine.redis.hget(center.engine.keys.classes, signature)
    assert cid is not None
    return text(cid)


async def test_a_voice_only_agent_does_not_staff_a_chat_queue(center: Center) -> None:
    await center.queue("chats", skills={"s": 1}, channel=Channel.CHAT)
    await center.queue("calls", skills={"s": 1})
    await center.agent("voice_only", {"s": 1})
    await center.agent("both", {"s": 1}, BOTH, available=False)
    await center.state("both", AgentState.NOT_READY)  # staffed, not available
    assert await stats(center, "chats") == (1, 0)
    assert await stats(center, "calls") == (2, 1)
    keys = center.engine.keys
    chat_class = await class_id(center, "chat|longest_idle|s=1")
    voice_class = await class_id(center, "voice|longest_idle|s=1")
    assert await members(center, keys.queue_staffed("chats")) == {"both"}
    assert await members(center, keys.class_staffed(chat_class)) == {"both"}
    assert await members(center, keys.agent_classes("voice_only")) == {voice_class}
    assert await members(center, keys.agent_classes("both")) == {voice_class, chat_class}


async def test_the_issue_case_a_chat_with_nobody_to_take_it(center: Center) -> None:
    # Was: `agents_staffed: 1` and a chat queued with an EWT counting the voice-only agent.
    await center.queue("chats", skills={"s": 1}, channel=Channel.CHAT)
    await center.agent("voice_only", {"s": 1})
    assert await stats(center, "chats") == (0, 0)
    exported = samples(await render(center.engine, center.now))
    assert value(exported, "acd_queue_agents_staffed", queue="chats") == 0
    await center.call("chats", "c1")
    await center.call("chats", "c2")
    chat = await center.ix("c2")
    assert chat.status == InteractionStatus.QUEUED
    # Nobody staffed: the documented fallback (the oldest wait, at least the 180 s default
    # handle time), not 2 x 180 s from a pool of one that cannot take it.
    assert chat.ewt_s == 180.0
    # The agent is given chat capacity while logged in: it staffs the queue and takes the chat.
    profile = AgentProfile(skills={"s": 1}, channels=BOTH)
    await center.engine.put_agent("voice_only", profile, center.now)
    assert await stats(center, "chats") == (1, 0)
    assert await center.offered_to("c1") == "voice_only"


async def test_channels_taken_away_unstaff_the_agent(center: Center) -> None:
    await center.queue("chats", skills={"s": 1}, channel=Channel.CHAT)
    await center.agent("a1", {"s": 1}, BOTH)
    assert await stats(center, "chats") == (1, 1)
    await center.engine.put_agent("a1", AgentProfile(skills={"s": 1}), center.now)
    assert await stats(center, "chats") == (0, 0)
    assert await members(center, center.engine.keys.queue_staffed("chats")) == set()


async def test_a_queue_made_or_moved_to_another_channel_rebuilds_its_staffed_set(
    center: Center,
) -> None:
    await center.agent("voice_only", {"s": 1})
    await center.agent("chat_only", {"s": 1}, {Channel.CHAT: 3})
    await center.queue("q", skills={"s": 1}, channel=Channel.CHAT)  # after the logins
    assert await members(center, center.engine.keys.queue_staffed("q")) == {"chat_only"}
    await center.queue("q", skills={"s": 1}, channel=Channel.VOICE)
    assert await members(center, center.engine.keys.queue_staffed("q")) == {"voice_only"}
    assert await stats(center, "q") == (1, 1)


async def test_a_step_counts_only_with_capacity_on_the_channel(center: Center) -> None:
    await center.queue("chats", skills={"senior": 1}, channel=Channel.CHAT, steps=[(30, {"s": 1})])
    await center.agent("voice_junior", {"s": 1})
    await center.agent("chat_junior", {"s": 1}, {Channel.CHAT: 1})
    await center.agent("voice_senior", {"senior": 1, "s": 1})
    assert await members(center, center.engine.keys.queue_staffed("chats")) == {"chat_junior"}
    await center.state("chat_junior", AgentState.LOGGED_OUT)
    assert await stats(center, "chats") == (0, 0)


async def test_a_class_filled_in_batches_takes_only_agents_with_the_channel(
    center: Center,
) -> None:
    center.engine.tune(fill_batch=3)
    await center.queue("chats", skills={"s": 1}, channel=Channel.CHAT)
    chat_agents = {f"c{i}" for i in range(4)}
    for i in range(8):
        aid = f"c{i // 2}" if i % 2 else f"v{i // 2}"
        await center.agent(aid, {"s": 1, "fr": 1}, BOTH if aid in chat_agents else None)
        await center.state(aid, AgentState.NOT_READY)
    await center.call("chats", "x1", skills={"fr": 1})  # a new class, filled in batches
    cid = await class_id(center, "chat|longest_idle|fr=1,s=1")
    while (await center.engine.tick(center.now)).applied:
        pass
    assert await members(center, center.engine.keys.class_staffed(cid)) == chat_agents


async def test_the_checker_finds_an_agent_staffed_without_the_channel(center: Center) -> None:
    await center.queue("chats", skills={"s": 1}, channel=Channel.CHAT)
    await center.agent("voice_only", {"s": 1})
    keys, redis = center.engine.keys, center.engine.redis
    cid = await class_id(center, "chat|longest_idle|s=1")
    wrong = [
        (keys.queue_staffed("chats"), "queue chats staffed set"),
        (keys.class_staffed(cid), f"class {cid} staffed set"),
        (keys.agent_classes("voice_only"), "agent voice_only class set"),
    ]
    for key, found in wrong:
        member = cid if key == keys.agent_classes("voice_only") else "voice_only"
        await redis.sadd(key, member)
        violations = await check_invariants(redis, keys, center.now, {"voice"})
        assert [v for v in violations if v.startswith(found)], violations
        await redis.srem(key, member)
