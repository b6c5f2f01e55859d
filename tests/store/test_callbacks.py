"""Scenarios for SPEC §3.10: callback offers that keep the caller's place."""

from __future__ import annotations

import msgpack
import pytest

from router.domain.models import (
    AgentState,
    CallbackPolicy,
    Channel,
    InteractionStatus,
    Outcome,
)
from router.errors import Conflict, IdempotencyConflict, ValidationError
from tests.store.center import Center

POLICY = CallbackPolicy(
    offer_when_ewt_s=120, retry_after_s=300, max_attempts=2, max_schedule_ahead_s=3600
)


async def _busy_queue(center: Center, policy: CallbackPolicy | None = POLICY) -> None:
    """One agent, busy on a call, in a queue that learned a handle time of 100 s."""
    await center.queue("support", skills={"s": 1}, callback=policy, offer_timeout_s=30)
    await center.agent("a1", {"s": 1})
    await center.call("support", "warm")
    await center.engine.accept("warm", "a1", center.now)
    await center.advance(100)
    await center.engine.complete("warm", "a1", center.now)
    await center.call("support", "busy")
    await center.engine.accept("busy", "a1", center.now)


async def test_a_long_ewt_at_arrival_offers_a_callback(center: Center) -> None:
    await _busy_queue(center)
    # The k-th departure of one agent on a call, talk 100 s: (k - 1/3) x 100 s.
    first = await center.call("support", "c1")  # 66.7 s, under 120 s
    second = await center.call("support", "c2")  # 166.7 s
    assert (first.callback_offered, second.callback_offered) == (False, True)
    offered = await center.events("callback.offered")
    assert [(e.fields["interaction_id"], round(e.fields["ewt_s"], 1)) for e in offered] == [
        ("c2", 166.7)
    ]


async def test_a_stalling_queue_offers_a_callback_later(center: Center) -> None:
    await _busy_queue(center)
    await center.queue("other", skills={"o": 1})
    await center.agent("a2", {"s": 1, "o": 1})
    await center.call("other", "elsewhere")  # a2 serves support too, but is busy elsewhere
    await center.engine.accept("elsewhere", "a2", center.now)
    await center.call("support", "c1")
    await center.call("support", "c2")  # 2 agents on calls: (2 - 1/3) x 100 / 2 = 83.3 s
    assert not (await center.ix("c2")).callback_offered
    await center.state("a2", AgentState.NOT_READY)  # the queue stalls: 166.7 s
    await center.advance(10)  # the next look at the caller's EWT
    assert (await center.ix("c2")).callback_offered
    assert len(await center.events("callback.offered")) == 1


async def test_a_policy_added_to_a_queue_applies_to_the_callers_waiting(center: Center) -> None:
    await _busy_queue(center, policy=None)
    await center.call("support", "c1")  # 66.7 s
    await center.call("support", "c2")  # 166.7 s
    await center.advance(30)
    assert await center.events("callback.offered") == []  # no policy yet
    # Callbacks are switched on while the queue is long: the callers already waiting are looked
    # at again at once, and later while they wait.
    await center.queue("support", skills={"s": 1}, offer_timeout_s=30, callback=POLICY)
    offered = await center.events("callback.offered")
    assert [e.fields["interaction_id"] for e in offered] == ["c2"]
    assert (await center.ix("c2")).callback_offered
    await center.queue(
        "support",
        skills={"s": 1},
        offer_timeout_s=30,
        callback=CallbackPolicy(
            offer_when_ewt_s=10, retry_after_s=300, max_attempts=2, max_schedule_ahead_s=3600
        ),
    )
    assert [e.fields["interaction_id"] for e in await center.events("callback.offered")] == [
        "c2",
        "c1",
    ]
    await center.check()


async def test_a_queue_write_offers_no_callback_to_callers_its_max_wait_times_out(
    center: Center,
) -> None:
    await _busy_queue(center, policy=None)
    await center.call("support", "c1")
    await center.call("support", "c2")
    await center.advance(50)
    # One write: a callback policy, and a max wait the callers have already passed.
    await center.queue(
        "support", skills={"s": 1}, offer_timeout_s=30, callback=POLICY, max_wait_s=40
    )
    assert [(await center.ix(c)).status for c in ("c1", "c2")] == [InteractionStatus.TIMED_OUT] * 2
    assert await center.events("callback.offered") == []


async def test_an_accepted_callback_keeps_its_place_off_the_line(center: Center) -> None:
    await _busy_queue(center)
    await center.call("support", "c1")
    await center.call("support", "c2")
    await center.call("support", "c3")
    ix = await center.engine.accept_callback("c2", center.now)
    assert (ix.status, ix.callback, ix.position) == (InteractionStatus.CALLBACK, True, 2)
    stats = await center.engine.queue_stats((await center.engine.get_queue("support")), center.now)  # type: ignore[arg-type]
    assert (stats["waiting"], stats["callbacks_waiting"]) == (2, 1)  # c1 and c3 on the line
    with pytest.raises(Conflict):
        await center.engine.accept_callback("c1", center.now)  # c1 was never offered one
    await center.engine.complete("busy", "a1", center.now)
    assert await center.offered_to("c1") == "a1"
    await center.engine.accept("c1", "a1", center.now)
    await center.engine.complete("c1", "a1", center.now)
    assert await center.offered_to("c2") == "a1"  # before c3, who is still behind it
    offered = (await center.events("interaction.offered"))[-1]
    assert offered.fields["callback"] is True
    assert (await center.ix("c3")).position == 2


async def test_a_callback_is_exempt_from_max_wait_and_cancelled_not_abandoned(
    center: Center,
) -> None:
    await center.queue("support", skills={"s": 1}, callback=POLICY, max_wait_s=60)
    await center.call("support", "c1")  # nobody serves: EWT is the default 180 s
    await center.engine.accept_callback("c1", center.now)
    await center.advance(120)
    assert (await center.ix("c1")).status == InteractionStatus.CALLBACK
    ix = await center.engine.abandon("c1", center.now)
    assert ix.status == InteractionStatus.CANCELLED
    assert [e.type for e in await center.events("interaction.cancelled")] == [
        "interaction.cancelled"
    ]
    assert await center.events("interaction.abandoned") == []


async def test_a_scheduled_callback_routes_at_its_time_and_not_before(center: Center) -> None:
    await center.queue("support", skills={"s": 1}, callback=POLICY)
    await center.call("support", "c1")
    with pytest.raises(ValidationError) as err:
        await center.engine.accept_callback("c1", center.now, at=center.now + 7200)
    assert err.value.errors[0].field == "at"
    at = center.now + 600
    ix = await center.engine.accept_callback("c1", center.now, at=at)
    assert (ix.position, ix.scheduled_at) == (None, at)
    await center.agent("a1", {"s": 1})
    await center.advance(599.999)
    assert (await center.ix("c1")).status == InteractionStatus.CALLBACK
    await center.advance(0.001)
    ix = await center.ix("c1")
    assert (ix.status, ix.agent_id, ix.enqueued_at) == (InteractionStatus.OFFERED, "a1", at)


async def test_customer_no_answer_retries_then_fails(center: Center) -> None:
    await center.queue("support", skills={"s": 1}, callback=POLICY)
    await center.call("support", "c1")
    await center.engine.accept_callback("c1", center.now)
    await center.agent("a1", {"s": 1})
    await center.engine.accept("c1", "a1", center.now)  # dial attempt 1
    ix = await center.engine.complete("c1", "a1", center.now, Outcome.CUSTOMER_NO_ANSWER)
    assert (ix.status, ix.attempts, ix.position) == (InteractionStatus.CALLBACK, 1, 1)
    await center.advance(299)
    assert await center.offered_to("c1") is None  # routable only after retry_after_s
    await center.advance(1)
    assert await center.offered_to("c1") == "a1"
    await center.engine.accept("c1", "a1", center.now)  # dial attempt 2 of 2
    ix = await center.engine.complete("c1", "a1", center.now, Outcome.CUSTOMER_NO_ANSWER)
    assert (ix.status, ix.attempts) == (InteractionStatus.FAILED, 2)
    failed = await center.events("interaction.failed")
    assert [e.fields["attempts"] for e in failed] == [2]
    answered = await center.events("interaction.connected")
    assert len(answered) == 2  # but answered once for the service level (tests/metrics)


async def test_a_repeated_customer_no_answer_is_a_retry_not_a_conflict(center: Center) -> None:
    await center.queue("support", skills={"s": 1}, callback=POLICY)
    await center.call("support", "c1")
    await center.engine.accept_callback("c1", center.now)
    await center.agent("a1", {"s": 1})
    await center.engine.accept("c1", "a1", center.now)
    first = await center.engine.complete("c1", "a1", center.now, Outcome.CUSTOMER_NO_ANSWER)
    again = await center.engine.complete("c1", "a1", center.now, Outcome.CUSTOMER_NO_ANSWER)
    assert (again.status, again.attempts) == (first.status, first.attempts) == ("callback", 1)
    assert len(await center.events("interaction.requeued")) == 1
    with pytest.raises(IdempotencyConflict, match=r"outcome was customer_no_answer$"):
        await center.engine.complete("c1", "a1", center.now)  # not what it was completed with


async def test_steps_go_on_passing_during_a_callback_retry_wait(center: Center) -> None:
    await center.queue("support", skills={"s": 2}, callback=POLICY, steps=[(60, {"s": 1})])
    await center.call("support", "c1")
    await center.engine.accept_callback("c1", center.now)
    await center.agent("a2", {"s": 2})
    await center.engine.accept("c1", "a2", center.now)
    await center.engine.complete("c1", "a2", center.now, Outcome.CUSTOMER_NO_ANSWER)
    await center.state("a2", AgentState.LOGGED_OUT)
    await center.agent("a1", {"s": 1})  # serves only step 1, in force from 60 s
    await center.advance(299.999)
    assert (await center.ix("c1")).step == 1  # escalated while held back
    assert await center.offered_to("c1") is None
    await center.advance(0.001)
    assert await center.offered_to("c1") == "a1"


async def test_a_scheduled_callback_keeps_its_queue_from_being_deleted_or_rechannelled(
    center: Center,
) -> None:
    config = await center.queue("support", skills={"s": 1}, callback=POLICY)
    await center.call("support", "c1")
    await center.engine.accept_callback("c1", center.now, at=center.now + 600)
    with pytest.raises(Conflict):
        await center.engine.delete_queue("support", center.now)
    with pytest.raises(Conflict):
        await center.queue("support", skills={"s": 1}, callback=POLICY, channel=Channel.CHAT)
    await center.queue("support", skills={"s": 2}, callback=POLICY)  # a new requirement
    await center.agent("a1", {"s": 1})
    await center.agent("a2", {"s": 2})
    await center.advance(600)
    assert await center.offered_to("c1") == "a2"
    await center.engine.abandon("c1", center.now)  # the platform cancels it
    await center.engine.delete_queue(config.name, center.now)


async def test_a_transferred_callback_is_a_caller_on_the_line(center: Center) -> None:
    await center.queue("support", skills={"s": 1}, callback=POLICY)
    await center.queue("sales", skills={"t": 1}, max_wait_s=30)  # nobody serves it
    await center.call("support", "c1")
    await center.engine.accept_callback("c1", center.now)
    await center.agent("a1", {"s": 1})
    await center.engine.accept("c1", "a1", center.now)
    ix = await center.engine.transfer("c1", "a1", "sales", center.now)
    assert (ix.status, ix.callback, ix.callback_offered, ix.attempts) == (
        InteractionStatus.QUEUED,
        False,
        False,
        0,
    )
    await center.advance(30)  # on the line, so its max wait applies
    assert (await center.ix("c1")).status == InteractionStatus.TIMED_OUT


async def scheduled_for_a_preferred_agent_on_a_break(center: Center) -> None:
    """c1 prefers `pref` (not ready) for 60 s and is scheduled as a callback 600 s from now."""
    await center.queue("support", skills={"s": 1}, callback=POLICY)
    await center.agent("pref", {"s": 1}, available=False)
    await center.state("pref", AgentState.NOT_READY)
    await center.call("support", "c1", preferred_agents=("pref",), preferred_wait_s=60)
    await center.engine.accept_callback("c1", center.now, at=center.now + 600)


async def test_a_scheduled_callback_waits_for_its_preferred_agent_again_then_for_anyone(
    center: Center,
) -> None:
    await scheduled_for_a_preferred_agent_on_a_break(center)
    await center.agent("other", {"s": 1})
    await center.advance(600)  # enters as an arrival: its preferred wait starts again, whole
    assert (await center.ix("c1")).status == InteractionStatus.CALLBACK
    await center.check()
    await center.advance(60)
    assert await center.offered_to("c1") == "other"
    await center.check()


async def test_a_scheduled_callback_whose_preferred_agent_left_goes_to_anyone(
    center: Center,
) -> None:
    await scheduled_for_a_preferred_agent_on_a_break(center)
    await center.state("pref", AgentState.LOGGED_OUT)
    await center.agent("other", {"s": 1})
    await center.advance(600)
    assert await center.offered_to("c1") == "other"


async def test_a_callback_accepted_again_with_another_time_is_a_conflict(center: Center) -> None:
    await center.queue("support", skills={"s": 1}, callback=POLICY)
    await center.call("support", "now")
    await center.call("support", "later")
    await center.engine.accept_callback("now", center.now)
    at = center.now + 600
    await center.engine.accept_callback("later", center.now, at=at)
    assert (await center.engine.accept_callback("now", center.now)).status == "callback"
    assert (await center.engine.accept_callback("later", center.now, at=at)).scheduled_at == at
    with pytest.raises(Conflict):
        await center.engine.accept_callback("now", center.now, at=at)
    with pytest.raises(Conflict):
        await center.engine.accept_callback("later", center.now, at=at + 60)
    with pytest.raises(Conflict):
        await center.engine.accept_callback("later", center.now)
    assert (await center.ix("now")).scheduled_at is None
    # Accepted by an earlier version, which kept no `cb_req`: its scheduled time stands for it.
    key = center.engine.keys.interaction("later")
    record = msgpack.unpackb(await center.engine.redis.get(key), raw=False)
    del record["cb_req"]
    await center.engine.redis.set(key, msgpack.packb(record, use_bin_type=False))
    assert (await center.engine.accept_callback("later", center.now, at=at)).scheduled_at == at


async def test_a_waiting_callback_shows_its_position_and_wait(center: Center) -> None:
    await _busy_queue(center)
    await center.call("support", "c1")
    await center.call("support", "c2")
    on_line = await center.ix("c2")
    await center.engine.accept_callback("c2", center.now)
    ix = await center.ix("c2")
    assert (ix.position, ix.ewt_s) == (2, on_line.ewt_s)
    assert (ix.ewt_s or 0) > 0
