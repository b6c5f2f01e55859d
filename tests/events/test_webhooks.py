"""Webhooks: signed POSTs of the event JSON, at least once, once per event across routers (§4)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from router.clock import ManualClock
from router.config import WebhookConfig
from router.domain.models import AgentState
from router.errors import ConfigError
from router.events import webhooks
from router.events.sse import event_json
from router.events.webhooks import Delivery, group_name
from router.store.engine import Engine
from tests.conftest import configured
from tests.events.conftest import SECRET, Receiver, StartRouter, deliveries, eventually
from tests.store.center import Center


async def pending(redis: Redis, engine: Engine, receiver: Receiver) -> int:
    """Entries of the webhook's group delivered to a consumer and not acknowledged."""
    summary = await redis.xpending(engine.keys.events, group_name(0, receiver.url))
    return int(summary["pending"])


async def eventually_pending(redis: Redis, engine: Engine, receiver: Receiver, count: int) -> None:
    """Poll until the group holds `count` unacknowledged entries."""
    for _ in range(500):
        if await pending(redis, engine, receiver) == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"pending never became {count}")


async def test_events_are_posted_signed_in_order_and_history_is_not_replayed(
    start_router: StartRouter, receiver: Receiver, center: Center, redis: Redis, engine: Engine
) -> None:
    await center.queue("support")
    await center.agent("ann", {"support": 1})
    await center.state("ann", AgentState.NOT_READY, reason="meeting")
    history = await center.events()
    assert len(history) == 2  # before the first start: not replayed
    before = deliveries("webhook:0", "delivered")
    await start_router(receiver.webhook())

    await center.state("ann", AgentState.AVAILABLE)
    await center.call("support", "i1", data={"vip": True})
    await center.call("support", "i2")
    events = (await center.events())[len(history) :]
    assert len(events) == 4
    await eventually(lambda: len(receiver.acknowledged) == len(events))

    assert receiver.acknowledged == [json.loads(event_json(e)) for e in events]
    assert [event_id for event_id, _, _ in receiver.calls] == [e.id for e in events]
    assert receiver.bad_signatures == 0
    await eventually_pending(redis, engine, receiver, 0)  # counted before acknowledged
    assert deliveries("webhook:0", "delivered") - before == len(events)


async def test_a_failing_receiver_gets_retries_until_it_acknowledges(
    start_router: StartRouter,
    receiver: Receiver,
    center: Center,
    redis: Redis,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(webhooks, "RETRY_BASE_S", 0.01)
    receiver.fail_first = 3
    failed, delivered = deliveries("webhook:0", "failed"), deliveries("webhook:0", "delivered")
    await start_router(receiver.webhook())

    await center.queue("support")
    await center.agent("ann", {"support": 1})
    [event] = await center.events()
    await eventually(lambda: len(receiver.acknowledged) == 1)

    assert [(i, ok) for i, _, ok in receiver.calls] == [(event.id, False)] * 3 + [(event.id, True)]
    await eventually_pending(redis, engine, receiver, 0)  # counted before acknowledged
    assert deliveries("webhook:0", "failed") - failed == 3
    assert deliveries("webhook:0", "delivered") - delivered == 1


async def test_with_two_routers_each_event_arrives_once(
    start_router: StartRouter, receiver: Receiver, center: Center, redis: Redis, engine: Engine
) -> None:
    first = await start_router(receiver.webhook())
    await start_router(receiver.webhook())

    await center.queue("support")
    for i in range(10):
        await center.agent(f"a{i}", {"support": 1})
        await center.call("support", f"i{i}")
    events = await center.events()
    assert len(events) == 30
    await eventually(lambda: len(receiver.acknowledged) >= len(events))
    await eventually_pending(redis, engine, receiver, 0)  # so no redelivery can follow

    assert sorted(event_id for event_id, _, _ in receiver.calls) == sorted(e.id for e in events)
    group = group_name(0, receiver.url)
    assert len(await redis.xinfo_consumers(engine.keys.events, group)) == 2
    await first.close()  # a router that stops leaves the group with nothing pending
    assert len(await redis.xinfo_consumers(engine.keys.events, group)) == 1


async def test_concurrency_delivers_that_many_events_at_once_each_once(
    start_router: StartRouter, receiver: Receiver, center: Center, redis: Redis, engine: Engine
) -> None:
    receiver.answer_after_s = 0.05
    router = await start_router(receiver.webhook(concurrency=4))
    await center.agent("ann", {}, available=False)
    for state in [AgentState.AVAILABLE, AgentState.NOT_READY] * 6:
        await center.state("ann", state)
    events = await center.events()
    await eventually(lambda: len(receiver.acknowledged) >= len(events))
    await eventually_pending(redis, engine, receiver, 0)

    assert sorted(event_id for event_id, _, _ in receiver.calls) == sorted(e.id for e in events)
    assert receiver.most_in_flight == 4
    group = group_name(0, receiver.url)
    assert len(await redis.xinfo_consumers(engine.keys.events, group)) == 4
    await router.close()  # each loop leaves the group, holding nothing
    assert await redis.xinfo_consumers(engine.keys.events, group) == []


async def test_the_loops_of_a_webhook_wait_for_new_events_on_one_read_per_process(
    start_router: StartRouter, receiver: Receiver, center: Center, redis: Redis
) -> None:
    async def xreads() -> int:
        return int((await redis.info("commandstats")).get("cmdstat_xread", {}).get("calls", 0))

    await center.agent("ann", {}, available=False)
    await start_router(receiver.webhook(concurrency=4))
    before = await xreads()
    events = 8
    for sent, state in enumerate([AgentState.AVAILABLE, AgentState.NOT_READY] * 4, start=1):
        await center.state("ann", state)  # one at a time, each to idle loops
        await eventually(lambda: len(receiver.acknowledged) == sent)  # noqa: B023 - awaited here
    # Each event ends the read all four loops wait on, and one more starts: not four.
    assert await xreads() - before < 2 * events


async def test_types_not_subscribed_are_acknowledged_without_delivery(
    start_router: StartRouter, receiver: Receiver, center: Center, redis: Redis, engine: Engine
) -> None:
    await start_router(receiver.webhook("agent.state_changed"))

    await center.queue("support")
    await center.call("support", "i1")
    await center.agent("ann", {"support": 1})  # state change, then i1 offered
    await center.agent("bob", {"support": 1})
    await eventually(lambda: len(receiver.acknowledged) == 2)

    assert [(b["type"], b["agent_id"]) for b in receiver.acknowledged] == [
        ("agent.state_changed", "ann"),
        ("agent.state_changed", "bob"),
    ]
    await eventually_pending(redis, engine, receiver, 0)
    groups = await redis.xinfo_groups(engine.keys.events)
    last = (await center.events())[-1].id
    assert [g["last-delivered-id"].decode() for g in groups] == [last]


async def test_entries_of_a_dead_consumer_are_taken_over(
    start_router: StartRouter,
    receiver: Receiver,
    center: Center,
    redis: Redis,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(webhooks, "CLAIM_IDLE_S", 0.05)
    group = group_name(0, receiver.url)
    await redis.xgroup_create(engine.keys.events, group, "$", mkstream=True)
    await center.queue("support")
    await center.agent("ann", {"support": 1})
    [event] = await center.events()
    # A router read the event and died before delivering it.
    await redis.xreadgroup(group, "dead", {engine.keys.events: ">"}, count=10)
    assert await pending(redis, engine, receiver) == 1

    await start_router(receiver.webhook())
    await eventually(lambda: len(receiver.acknowledged) == 1)
    assert receiver.calls[0][0] == event.id
    await eventually_pending(redis, engine, receiver, 0)


async def test_an_event_a_stopping_router_was_delivering_goes_to_the_next_at_once(
    start_router: StartRouter,
    receiver: Receiver,
    center: Center,
    redis: Redis,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Seen: stranded for CLAIM_IDLE_S (2 minutes), then delivered after the later events.
    monkeypatch.setattr(webhooks, "RETRY_BASE_S", 60.0)  # its failed attempt waits to retry
    receiver.fail_first = 1
    first = await start_router(receiver.webhook())
    await center.queue("support")
    await center.agent("ann", {"support": 1})
    [event] = await center.events()
    await eventually(lambda: len(receiver.calls) == 1)
    await first.close()  # a graceful stop, the event pending on its consumer
    assert await pending(redis, engine, receiver) == 1
    await center.agent("bob", {"support": 1})  # a later event

    await start_router(receiver.webhook())
    await eventually(lambda: len(receiver.acknowledged) == 2)
    assert next(i for i, _, ok in receiver.calls if ok) == event.id  # the stranded one first
    await eventually_pending(redis, engine, receiver, 0)


async def test_a_missing_secret_fails_startup_naming_the_field(
    start_router: StartRouter, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ACD_TEST_MISSING_SECRET", raising=False)
    missing = WebhookConfig(url=receiver.url, secret_env="ACD_TEST_MISSING_SECRET")
    with pytest.raises(ConfigError) as raised:
        await start_router(receiver.webhook(), missing)
    assert [e.field for e in raised.value.errors] == ["webhooks[1].secret_env"]
    assert SECRET not in str(raised.value)


async def test_store_errors_are_logged_once_while_they_last(
    start_router: StartRouter,
    receiver: Receiver,
    center: Center,
    redis: Redis,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(webhooks, "STORE_RETRY_S", 0.01)
    caplog.set_level(logging.INFO, "router.webhooks")
    await center.queue("support")
    await start_router(receiver.webhook())

    async def refused_reads() -> int:
        errors = await redis.info("errorstats")
        return int(errors.get("errorstat_NOREPLICAS", {}).get("count", 0))

    before = await refused_reads()
    async with configured(redis, "min-replicas-to-write", "1"):
        for client in await redis.client_list():
            if client["cmd"] == "xread":  # its blocked wait ends: the next read is refused
                await redis.client_kill_filter(_id=client["id"])
        for _ in range(500):
            if await refused_reads() >= before + 5:
                break
            await asyncio.sleep(0.01)
    await center.call("support", "i1")  # the next read gets it
    await eventually(lambda: len(receiver.acknowledged) == 1)
    assert "webhooks[0]: the store answers again" in caplog.text
    assert caplog.text.count("webhooks[0]: store error NOREPLICAS") == 1


@pytest.mark.parametrize("lost", ["the log", "the group"])
async def test_a_group_the_store_lost_is_made_again_where_it_was(
    start_router: StartRouter,
    receiver: Receiver,
    center: Center,
    redis: Redis,
    engine: Engine,
    lost: str,
) -> None:
    await center.queue("support")
    await start_router(receiver.webhook())
    await center.call("support", "i1")
    await eventually(lambda: len(receiver.acknowledged) == 1)
    if lost == "the log":  # with its groups, as in a store that lost its data
        await redis.delete(engine.keys.events)
    else:
        await redis.xgroup_destroy(engine.keys.events, group_name(0, receiver.url))
    await center.call("support", "i2")
    await eventually(lambda: len(receiver.acknowledged) == 2)
    delivered = [body["interaction_id"] for body in receiver.acknowledged]
    assert delivered == ["i1", "i2"]  # the new one, and no old one again


async def test_events_trimmed_from_the_log_before_delivery_are_counted_lost(
    start_router: StartRouter,
    receiver: Receiver,
    center: Center,
    redis: Redis,
    engine: Engine,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(webhooks, "RETRY_BASE_S", 0.01)
    monkeypatch.setattr(webhooks, "RETRY_MAX_S", 0.01)
    monkeypatch.setattr(webhooks, "READ_BLOCK_S", 0.2)  # idle: counted within 1 s, not 5
    caplog.set_level(logging.WARNING, "router.webhooks")
    lost = deliveries("webhook:0", "lost")
    receiver.fail_first = 1_000_000  # down
    await center.agent("ann", {}, available=False)
    await start_router(receiver.webhook())
    for state in (AgentState.AVAILABLE, AgentState.NOT_READY, AgentState.AVAILABLE):
        await center.state("ann", state)
    first, _, kept = await center.events()
    await eventually(lambda: len(receiver.calls) >= 2)  # the first event, retried

    # The log is trimmed past the receiver: the first (being retried) and the second (not read
    # yet) are lost, each counted once; the third is delivered when the receiver is back.
    await redis.xtrim(engine.keys.events, maxlen=1, approximate=False)
    await eventually(lambda: deliveries("webhook:0", "lost") - lost >= 1)
    receiver.fail_first = 0
    await eventually(lambda: len(receiver.acknowledged) == 1)
    assert receiver.acknowledged == [json.loads(event_json(kept))]
    assert {event_id for event_id, _, _ in receiver.calls} == {first.id, kept.id}
    await eventually(lambda: deliveries("webhook:0", "lost") - lost == 2)
    await eventually_pending(redis, engine, receiver, 0)
    assert deliveries("webhook:0", "lost") - lost == 2
    assert "webhooks[0]: 1 events trimmed from the log (event_log_max) before delivery" in (
        caplog.text
    )


@pytest.fixture
async def delivery(
    receiver: Receiver, redis: Redis, engine: Engine, clock: ManualClock
) -> AsyncIterator[Delivery]:
    """A webhook's delivery loop of one process (consumer `me`), its group made; not running."""
    async with aiohttp.ClientSession() as session:
        made = Delivery(0, receiver.webhook(), SECRET.encode(), redis, engine, clock, "me", session)
        await made.ensure_group()
        yield made


@contextlib.asynccontextmanager
async def running(delivery: Delivery) -> AsyncIterator[None]:
    task = asyncio.create_task(delivery.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("held_by", ["dead", "me"])
async def test_a_pending_event_trimmed_from_the_log_is_counted_lost(
    delivery: Delivery,
    receiver: Receiver,
    center: Center,
    redis: Redis,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    held_by: str,
) -> None:
    monkeypatch.setattr(webhooks, "CLAIM_IDLE_S", 0.05)
    lost = deliveries("webhook:0", "lost")
    await center.agent("ann", {})
    # Read by a consumer that died, or by this one before a store error; then trimmed.
    await redis.xreadgroup(delivery.group, held_by, {engine.keys.events: ">"}, count=1)
    await redis.xtrim(engine.keys.events, maxlen=0, approximate=False)
    delivery._own_first = held_by == "me"  # as after a store error
    async with running(delivery):
        await eventually(lambda: deliveries("webhook:0", "lost") - lost == 1)
        await eventually_pending(redis, engine, receiver, 0)
    assert receiver.calls == []


async def test_webhooks_deliver_while_the_store_is_at_its_maxmemory(
    delivery: Delivery, receiver: Receiver, center: Center, redis: Redis
) -> None:
    await center.agent("ann", {})
    [event] = await center.events()
    async with configured(redis, "maxmemory", "1"), running(delivery):
        await eventually(lambda: len(receiver.acknowledged) == 1)
    assert receiver.acknowledged == [json.loads(event_json(event))]


async def test_every_result_of_a_webhook_is_exposed_from_its_start(delivery: Delivery) -> None:
    # At 0 before the first of each, so that an alert's increase() counts the first one.
    unused = replace(delivery, index=97)

    def exposed() -> list[float | None]:
        return [
            REGISTRY.get_sample_value(
                "acd_event_deliveries_total", {"sink": "webhook:97", "result": result}
            )
            for result in ("delivered", "failed", "skipped", "lost")
        ]

    assert exposed() == [None] * 4
    async with running(unused):
        await eventually(lambda: exposed() == [0.0] * 4)


async def test_a_receiver_the_log_overtakes_loses_exactly_the_events_trimmed_unread(
    delivery: Delivery, receiver: Receiver, center: Center, redis: Redis, engine: Engine
) -> None:
    receiver.answer_after_s = 0.02  # slower than the log: the group lags behind it
    lost = deliveries("webhook:0", "lost")
    await center.agent("ann", {})
    for state in [AgentState.NOT_READY, AgentState.AVAILABLE] * 10:
        await center.state("ann", state)
    events = await center.events()
    async with running(delivery):
        await eventually(lambda: len(receiver.acknowledged) >= 3)
        await redis.xtrim(engine.keys.events, maxlen=5, approximate=False)
        await eventually(lambda: receiver.calls[-1][0] == events[-1].id)
        await eventually_pending(redis, engine, receiver, 0)
    delivered = {event_id for event_id, _, ok in receiver.calls if ok}
    assert len(delivered) >= 8  # the first 3, and the 5 kept
    assert deliveries("webhook:0", "lost") - lost == len(events) - len(delivered)
