"""Scenarios for SPEC §3.5 (offers) and §3.6 (capacity)."""

from __future__ import annotations

import msgpack
import pytest

from router.domain.models import (
    Activity,
    AgentProfile,
    AgentState,
    CallbackPolicy,
    Channel,
    InteractionStatus,
    Outcome,
    RejectReason,
)
from router.errors import Conflict, IdempotencyConflict, NotConnected, NotOffered, OfferExpired
from tests.store.center import Center


async def _two_agents_and_a_call(center: Center, **queue: object) -> None:
    await center.queue("support", skills={"support": 1}, offer_timeout_s=15, **queue)
    await center.agent("a1", {"support": 1})
    await center.advance(1)
    await center.agent("a2", {"support": 1})
    await center.call("support", "c1")
    assert await center.offered_to("c1") == "a1"


async def test_accept_connects_and_is_idempotent(center: Center) -> None:
    await _two_agents_and_a_call(center)
    first = await center.engine.accept("c1", "a1", center.now)
    again = await center.engine.accept("c1", "a1", center.now + 1)
    assert first.status == again.status == InteractionStatus.CONNECTED
    assert again.answered_at == first.answered_at
    assert len(await center.events("interaction.connected")) == 1
    assert (await center.ag("a1")).activity == Activity.BUSY
    with pytest.raises(NotOffered):
        await center.engine.accept("c1", "a2", center.now)


async def test_no_answer_sets_the_agent_not_ready_and_the_call_keeps_its_place(
    center: Center,
) -> None:
    await _two_agents_and_a_call(center)
    await center.state("a2", AgentState.NOT_READY, reason="break")
    await center.call("support", "c2")  # behind c1, nobody free
    ix = await center.engine.reject("c1", "a1", RejectReason.NO_ANSWER, center.now)
    assert ix.status == InteractionStatus.QUEUED
    assert ix.excluded_agents == ("a1",)
    assert ix.position == 1
    agent = await center.ag("a1")
    assert (agent.state, agent.reason) == (AgentState.NOT_READY, "no_answer")
    requeued = (await center.events("interaction.requeued"))[-1]
    assert requeued.fields["reason"] == "no_answer"
    await center.state("a2", AgentState.AVAILABLE)
    assert await center.offered_to("c1") == "a2"  # c1 still ahead of c2


async def test_reject_keeps_the_agent_available_and_never_offers_it_again(
    center: Center,
) -> None:
    await center.queue("support", skills={"support": 1})
    await center.agent("a1", {"support": 1})
    await center.call("support", "c1")
    await center.call("support", "c2")
    ix = await center.engine.reject("c1", "a1", RejectReason.REJECTED, center.now)
    assert ix.status == InteractionStatus.QUEUED
    agent = await center.ag("a1")
    assert agent.state == AgentState.AVAILABLE
    assert agent.interactions == {"c2": "offered"}  # the next one, not c1 again
    again = await center.engine.reject("c1", "a1", RejectReason.REJECTED, center.now)
    assert again.status == InteractionStatus.QUEUED  # a retry answers the current record
    await center.engine.accept("c2", "a1", center.now)
    await center.engine.complete("c2", "a1", center.now)
    assert (await center.ix("c1")).status == InteractionStatus.QUEUED


async def test_offer_expiry_is_a_miss(center: Center) -> None:
    await _two_agents_and_a_call(center)
    await center.advance(15)
    ix = await center.ix("c1")
    assert (ix.status, ix.agent_id, ix.excluded_agents) == (
        InteractionStatus.OFFERED,
        "a2",
        ("a1",),
    )
    requeued = (await center.events("interaction.requeued"))[-1]
    assert (requeued.fields["reason"], requeued.fields["agent_id"]) == ("expired", "a1")
    assert (await center.ag("a1")).reason == "no_answer"


async def test_accept_after_expiry_is_refused_and_applies_the_expiry(center: Center) -> None:
    await _two_agents_and_a_call(center)
    center.clock.advance(20)  # no tick: the timer is overdue
    with pytest.raises(OfferExpired):
        await center.engine.accept("c1", "a1", center.now)
    ix = await center.ix("c1")
    assert (ix.status, ix.agent_id) == (InteractionStatus.OFFERED, "a2")


async def test_max_no_answer_counts_consecutive_misses(center: Center) -> None:
    await center.queue("support", skills={"support": 1}, max_no_answer=2)
    await center.agent("a1", {"support": 1})
    for i in range(2):
        await center.call("support", f"c{i}")
    await center.engine.reject("c0", "a1", RejectReason.NO_ANSWER, center.now)
    agent = await center.ag("a1")
    assert (agent.state, agent.missed_offers) == (AgentState.AVAILABLE, 1)
    await center.engine.accept("c1", "a1", center.now)  # resets the count
    await center.engine.complete("c1", "a1", center.now)
    assert (await center.ag("a1")).missed_offers == 0
    await center.call("support", "c2")
    await center.engine.reject("c2", "a1", RejectReason.NO_ANSWER, center.now)
    await center.call("support", "c3")
    await center.engine.reject("c3", "a1", RejectReason.NO_ANSWER, center.now)
    agent = await center.ag("a1")
    assert (agent.state, agent.reason) == (AgentState.NOT_READY, "no_answer")


async def test_setting_available_again_resets_the_missed_offers(center: Center) -> None:
    await center.queue("support", skills={"support": 1}, max_no_answer=2)
    await center.agent("a1", {"support": 1})
    await center.call("support", "c0")
    await center.engine.reject("c0", "a1", RejectReason.NO_ANSWER, center.now)
    assert (await center.state("a1", AgentState.AVAILABLE)).missed_offers == 0
    await center.call("support", "c1")
    await center.engine.reject("c1", "a1", RejectReason.NO_ANSWER, center.now)
    agent = await center.ag("a1")
    assert (agent.state, agent.missed_offers) == (AgentState.AVAILABLE, 1)


async def test_an_agent_created_again_with_its_id_keeps_its_exclusions(center: Center) -> None:
    await center.queue("support", skills={"support": 1})
    await center.agent("a1", {"support": 1})
    await center.call("support", "c1")
    await center.engine.reject("c1", "a1", RejectReason.REJECTED, center.now)
    await center.state("a1", AgentState.LOGGED_OUT)
    await center.engine.delete_agent("a1", center.now)
    await center.agent("a1", {"support": 1})
    assert await center.offered_to("c1") is None
    await center.state("a1", AgentState.NOT_READY)
    await center.state("a1", AgentState.AVAILABLE)
    assert await center.offered_to("c1") is None
    await center.check()


async def test_a_miss_routes_the_refused_and_the_withdrawn_in_their_order(center: Center) -> None:
    await center.queue("web", channel=Channel.CHAT, skills={"s": 1})
    await center.agent("a1", {"s": 1}, channels={Channel.CHAT: 2})
    await center.call("web", "ahead")
    await center.advance(1)
    await center.call("web", "behind")
    assert await center.offered_to("ahead") == await center.offered_to("behind") == "a1"
    await center.agent("b1", {"s": 1}, channels={Channel.CHAT: 1})
    # The miss on `behind` sets a1 not_ready, which withdraws `ahead`: the one free agent goes
    # to the first of the two by §3.2, not to the one refused.
    await center.engine.reject("behind", "a1", RejectReason.NO_ANSWER, center.now)
    assert await center.offered_to("ahead") == "b1"
    behind = await center.ix("behind")
    assert (behind.status, behind.position) == (InteractionStatus.QUEUED, 2)
    await center.check()


async def test_leaving_available_withdraws_the_offer_without_excluding(center: Center) -> None:
    await _two_agents_and_a_call(center)
    await center.state("a1", AgentState.NOT_READY, reason="lunch")
    ix = await center.ix("c1")
    assert (ix.agent_id, ix.excluded_agents) == ("a2", ())  # routed again at once
    requeued = (await center.events("interaction.requeued"))[-1]
    assert requeued.fields["reason"] == "withdrawn"
    with pytest.raises(OfferExpired):
        await center.engine.accept("c1", "a1", center.now)
    await center.state("a2", AgentState.LOGGED_OUT)
    await center.state("a1", AgentState.AVAILABLE)
    assert await center.offered_to("c1") == "a1"  # not excluded


async def test_complete_is_idempotent_and_needs_the_connected_agent(center: Center) -> None:
    await _two_agents_and_a_call(center)
    with pytest.raises(NotConnected):
        await center.engine.complete("c1", "a1", center.now)
    await center.engine.accept("c1", "a1", center.now)
    with pytest.raises(NotConnected):
        await center.engine.complete("c1", "a2", center.now)
    first = await center.engine.complete("c1", "a1", center.now)
    again = await center.engine.complete("c1", "a1", center.now + 5)
    assert first.ended_at == again.ended_at
    assert len(await center.events("interaction.completed")) == 1


async def test_create_with_the_same_id_is_idempotent(center: Center) -> None:
    await center.queue("support", skills={"support": 1})
    first = await center.call("support", "c1", priority=3, data={"ani": "x"})
    again = await center.call("support", "c1", priority=3, data={"ani": "x"})
    assert again == first
    with pytest.raises(IdempotencyConflict):
        await center.call("support", "c1", priority=4, data={"ani": "x"})
    data = {"ani": "x", "ivr": {"lang": "de", "menu": [1, 2]}}
    await center.call("support", "c2", data=data)
    reordered = {"ivr": {"menu": [1, 2], "lang": "de"}, "ani": "x"}  # the same JSON object
    assert (await center.call("support", "c2", data=reordered)).id == "c2"
    with pytest.raises(IdempotencyConflict):  # an array's order is its value
        await center.call("support", "c2", data={**data, "ivr": {"lang": "de", "menu": [2, 1]}})
    assert len(await center.events("interaction.queued")) == 2


async def test_voice_is_exclusive_of_other_channels(center: Center) -> None:
    await center.queue("voice", skills={"s": 1})
    await center.queue("chat", channel=Channel.CHAT, skills={"s": 1})
    await center.agent("a1", {"s": 1}, channels={Channel.VOICE: 1, Channel.CHAT: 3})
    await center.call("chat", "chat1")
    assert await center.offered_to("chat1") == "a1"
    await center.call("voice", "voice1")
    assert (await center.ix("voice1")).status == InteractionStatus.QUEUED  # busy on chat
    await center.call("chat", "chat2")
    assert await center.offered_to("chat2") == "a1"  # chat has room
    for ix in ("chat1", "chat2"):
        await center.engine.accept(ix, "a1", center.now)
        await center.engine.complete(ix, "a1", center.now)
    assert await center.offered_to("voice1") == "a1"
    await center.call("chat", "chat3")
    assert (await center.ix("chat3")).status == InteractionStatus.QUEUED  # busy on voice


async def test_finishing_a_chat_gives_room_for_the_next(center: Center) -> None:
    await center.queue("chat", channel=Channel.CHAT, skills={"s": 1})
    await center.agent("a1", {"s": 1}, channels={Channel.CHAT: 1})
    await center.call("chat", "c1")
    await center.call("chat", "c2")
    await center.engine.accept("c1", "a1", center.now)
    await center.engine.complete("c1", "a1", center.now)
    assert await center.offered_to("c2") == "a1"


async def test_logout_with_a_connected_call_needs_force(center: Center) -> None:
    await _two_agents_and_a_call(center)
    await center.engine.accept("c1", "a1", center.now)
    with pytest.raises(Conflict):
        await center.state("a1", AgentState.LOGGED_OUT)
    agent = await center.state("a1", AgentState.LOGGED_OUT, force=True)
    assert (agent.state, agent.interactions) == (AgentState.LOGGED_OUT, {})
    ix = await center.ix("c1")
    assert (ix.status, ix.outcome) == (InteractionStatus.COMPLETED, Outcome.AGENT_LOST)
    with pytest.raises(IdempotencyConflict, match=r"outcome was agent_lost$"):  # was a 200
        await center.engine.complete("c1", "a1", center.now)


async def test_agent_deletion_needs_logout(center: Center) -> None:
    await center.agent("a1", {"s": 1})
    with pytest.raises(Conflict):
        await center.engine.delete_agent("a1", center.now)
    await center.state("a1", AgentState.LOGGED_OUT)
    await center.engine.delete_agent("a1", center.now)
    assert await center.engine.get_agent("a1") is None


async def test_channels_cannot_shrink_below_what_the_agent_holds(center: Center) -> None:
    await center.queue("support", skills={"support": 1})
    await center.agent("a1", {"support": 1})
    await center.call("support", "c1")
    chat_only = AgentProfile(skills={"support": 1}, channels={Channel.CHAT: 2})
    with pytest.raises(Conflict):
        await center.engine.put_agent("a1", chat_only, center.now)
    assert (await center.ag("a1")).channels == {"voice": 1}


async def test_reject_and_transfer_answer_the_interaction_as_get_shows_it(center: Center) -> None:
    await center.queue("support", skills={"support": 1})
    await center.queue("sales", skills={"sales": 1})
    await center.agent("a1", {"support": 1})
    await center.call("support", "c1")
    rejected = await center.engine.reject("c1", "a1", RejectReason.REJECTED, center.now)
    assert rejected == await center.ix("c1")
    assert rejected.ewt_s is not None
    await center.call("support", "c2")
    await center.engine.accept("c2", "a1", center.now)
    transferred = await center.engine.transfer("c2", "a1", "sales", center.now)
    assert transferred == await center.ix("c2")
    assert transferred.ewt_s is not None


async def test_an_offer_ended_without_an_accept_leaves_no_expiry_nor_agent(
    center: Center,
) -> None:
    # Was: an abandon or a cancel during the offer kept the offer's `expires_at` and agent.
    policy = CallbackPolicy(offer_when_ewt_s=120, retry_after_s=300, max_attempts=2)
    await center.queue(
        "support", skills={"s": 1}, callback=policy, max_wait_s=60, offer_timeout_s=120
    )
    await center.call("support", "cb")  # nobody serves: EWT 180 s, a callback is offered
    await center.engine.accept_callback("cb", center.now)
    for ix_id in ("hung_up", "rejected", "timed_out"):
        await center.call("support", ix_id)
    for agent_id in ("a1", "a2", "a3", "a4"):
        await center.agent(agent_id, {"s": 1})
    offered = {ix_id: await center.offered_to(ix_id) for ix_id in ("cb", "hung_up", "rejected")}
    assert offered == {"cb": "a1", "hung_up": "a2", "rejected": "a3"}
    assert await center.offered_to("timed_out") == "a4"
    assert (await center.engine.abandon("cb", center.now)).status == InteractionStatus.CANCELLED
    await center.engine.abandon("hung_up", center.now)
    await center.engine.reject("rejected", "a3", RejectReason.REJECTED, center.now)
    await center.advance(60)  # `timed_out` passed its max wait while offered...
    await center.engine.reject("timed_out", "a4", RejectReason.REJECTED, center.now)  # ...so ends
    found = {ix_id: await center.ix(ix_id) for ix_id in ("cb", "hung_up", "timed_out")}
    assert {ix_id: (ix.status, ix.agent_id, ix.expires_at) for ix_id, ix in found.items()} == {
        "cb": (InteractionStatus.CANCELLED, None, None),
        "hung_up": (InteractionStatus.ABANDONED, None, None),
        "timed_out": (InteractionStatus.TIMED_OUT, None, None),
    }
    # The events still name the agent whose offer ended.
    (cancelled,) = await center.events("interaction.cancelled")
    (abandoned,) = await center.events("interaction.abandoned")
    assert (cancelled.fields["agent_id"], abandoned.fields["agent_id"]) == ("a1", "a2")
    # A late accept or reject is told that the interaction ended, and how.
    with pytest.raises(OfferExpired) as late:
        await center.engine.accept("hung_up", "a2", center.now)
    assert late.value.detail == (
        "the offer expired or was withdrawn: the interaction has ended (abandoned)"
    )
    with pytest.raises(NotOffered, match=r"not offered to this agent: .* ended \(cancelled\)$"):
        await center.engine.reject("cb", "a1", RejectReason.NO_ANSWER, center.now)


async def test_a_repeat_with_other_arguments_is_a_conflict_naming_them(center: Center) -> None:
    # Was: a complete repeated with another outcome or wrap-up, or a reject with another reason,
    # answered 200 as a retry, and the new arguments were silently dropped.
    await _two_agents_and_a_call(center)
    await center.engine.accept("c1", "a1", center.now)
    first = await center.engine.complete("c1", "a1", center.now, wrap_up_s=30)
    again = await center.engine.complete("c1", "a1", center.now + 1, wrap_up_s=30)
    assert again.ended_at == first.ended_at  # the same arguments: a retry
    with pytest.raises(IdempotencyConflict, match=r"arguments: outcome was resolved$"):
        await center.engine.complete(
            "c1", "a1", center.now, outcome=Outcome.CUSTOMER_NO_ANSWER, wrap_up_s=30
        )
    with pytest.raises(IdempotencyConflict, match=r"arguments: wrap_up_s was 30$"):
        await center.engine.complete("c1", "a1", center.now, wrap_up_s=5)
    with pytest.raises(IdempotencyConflict, match=r"arguments: wrap_up_s was 30$"):
        await center.engine.complete("c1", "a1", center.now)
    assert first.ended_at is not None
    assert (await center.ag("a1")).wrap_up_until == first.ended_at + 30  # not applied
    await center.call("support", "c2")
    assert await center.offered_to("c2") == "a2"
    await center.engine.reject("c2", "a2", RejectReason.REJECTED, center.now)
    await center.engine.reject("c2", "a2", RejectReason.REJECTED, center.now)
    with pytest.raises(IdempotencyConflict, match=r"arguments: reason was rejected$"):
        await center.engine.reject("c2", "a2", RejectReason.NO_ANSWER, center.now)
    assert (await center.ag("a2")).missed_offers == 0  # not applied
    await center.advance(31)
    assert await center.offered_to("c2") == "a1"
    await center.advance(15)  # the offer expires: a miss, as a no-answer
    await center.engine.reject("c2", "a1", RejectReason.NO_ANSWER, center.now)
    with pytest.raises(IdempotencyConflict, match=r"reason was no_answer \(the offer expired\)$"):
        await center.engine.reject("c2", "a1", RejectReason.REJECTED, center.now)
    assert len(await center.events("interaction.completed")) == 1
    assert len(await center.events("interaction.requeued")) == 2


async def test_an_agent_s_reason_is_that_of_not_ready_or_logged_out_only(center: Center) -> None:
    # Was: `available` took a reason ("on_break"), and kept it when set again with another.
    await center.agent("a1", {"s": 1}, available=False)
    assert (await center.state("a1", AgentState.NOT_READY, reason="lunch")).reason == "lunch"
    assert (await center.state("a1", AgentState.AVAILABLE, reason="on_break")).reason is None
    # Kept by an earlier version, which took a reason with `available`: the next one drops it.
    key = center.engine.keys.agent("a1")
    record = msgpack.unpackb(await center.engine.redis.get(key), raw=False)
    await center.engine.redis.set(key, msgpack.packb({**record, "reason": "on_break"}))
    assert (await center.ag("a1")).reason == "on_break"
    assert (await center.state("a1", AgentState.AVAILABLE, reason="other")).reason is None
    assert (await center.ag("a1")).reason is None
    assert (await center.state("a1", AgentState.LOGGED_OUT, reason="shift")).reason == "shift"
    reasons = [e.fields["reason"] for e in await center.events("agent.state_changed")]
    assert reasons == ["lunch", None, "shift"]  # the repeated `available` changes nothing
