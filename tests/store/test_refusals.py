"""Redis refusing a call before it runs (out of memory, too few replicas, made a replica, busy):
StoreRefused, nothing changed, each refusal counted; reads still answered at maxmemory."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from router.clock import ManualClock
from router.domain.models import AgentState, InteractionStatus, NewInteraction, QueueConfig
from router.errors import StoreRefused, StoreUnavailable
from router.settings import ServiceSettings
from router.store.codec import error_code
from router.store.engine import REFUSALS, Engine, refusal
from router.store.server import RedisServer
from tests.conftest import configured
from tests.store.center import Center

BUSY_SCRIPT = """
local t = redis.call('TIME')
local stop = t[1] * 1000000 + t[2] + tonumber(ARGV[1])
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= stop
"""
"""Keeps Redis running one script for ARGV[1] µs."""


def refusals(reason: str) -> float:
    return REGISTRY.get_sample_value("acd_store_refusals_total", {"reason": reason}) or 0.0


async def answers(redis: Redis) -> bool:
    """Whether Redis answers a PING (not BUSY)."""
    try:
        await redis.ping()
    except ResponseError:
        return False
    return True


async def refused(center: Center) -> str:
    """The reason of the refusal of an arrival."""
    with pytest.raises(StoreRefused) as error:
        await center.call("q", "i2")
    assert error.value.status == 503
    assert error.value.detail.endswith("nothing was changed")
    return str(error.value.members["reason"])


async def unchanged(engine: Engine, log_length: int) -> None:
    """The refused arrival left no trace: no record, no event."""
    assert not await engine.redis.exists(engine.keys.interaction("i2"))
    assert await engine.redis.xlen(engine.keys.events) == log_length


async def test_at_maxmemory_changes_are_refused_whole_and_reads_still_answered(
    engine: Engine, center: Center, redis: Redis
) -> None:
    await center.queue("q")
    await center.agent("a1", {})
    assert (await center.call("q", "i1")).status == InteractionStatus.OFFERED
    counted = refusals("out_of_memory")
    log_length = await redis.xlen(engine.keys.events)
    async with configured(redis, "maxmemory", "1"):
        assert await refused(center) == "out_of_memory"
        with pytest.raises(StoreRefused, match=r"maxmemory"):
            await center.state("a1", AgentState.NOT_READY)
        assert (await center.ix("i1")).status == InteractionStatus.OFFERED
        page, _ = await engine.page_interactions("", 10, center.now)
        assert [ix.id for ix in page] == ["i1"]
        assert (await engine.queue_figures(["q"], center.now))["q"]["waiting"] == 1
        assert "q" in (await engine.metrics_snapshot(center.now, 0))["queues"]
    await unchanged(engine, log_length)
    assert refusals("out_of_memory") == counted + 2
    assert (await center.ag("a1")).state == AgentState.AVAILABLE
    assert (await center.call("q", "i2")).status == InteractionStatus.QUEUED


async def test_too_few_replicas_refuse_changes(
    engine: Engine, center: Center, redis: Redis
) -> None:
    await center.queue("q")
    counted = refusals("no_replicas")
    log_length = await redis.xlen(engine.keys.events)
    async with configured(redis, "min-replicas-to-write", "1"):
        assert await refused(center) == "no_replicas"
    await unchanged(engine, log_length)
    assert refusals("no_replicas") == counted + 1


async def test_a_store_made_a_replica_refuses_changes(
    engine: Engine, center: Center, redis: Redis
) -> None:
    await center.queue("q")
    log_length = await redis.xlen(engine.keys.events)
    await redis.replicaof("127.0.0.1", "1")  # a primary never reached: the data stays
    try:
        assert await refused(center) == "read_only"
    finally:
        await redis.replicaof("NO", "ONE")
    await unchanged(engine, log_length)


async def test_a_call_while_another_script_runs_too_long_is_refused(
    engine: Engine, center: Center, redis: Redis, redis_server: RedisServer
) -> None:
    await center.queue("q")
    log_length = await redis.xlen(engine.keys.events)
    async with configured(redis, "busy-reply-threshold", "20"):
        other = Redis.from_url(redis_server.url)
        long_script = asyncio.ensure_future(other.eval(BUSY_SCRIPT, 0, "200000"))
        try:
            # Until Redis answers BUSY: the script ran past the threshold.
            while await answers(redis) and not long_script.done():
                pass
            assert await refused(center) == "busy"
        finally:
            await long_script
            await other.aclose()
    await unchanged(engine, log_length)


async def test_an_evicting_store_is_named_at_start(
    redis: Redis, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    async with configured(redis, "maxmemory-policy", "allkeys-lru"):
        assert await engine.eviction_policy() == "allkeys-lru"
        with caplog.at_level(logging.WARNING, "router.store.engine"):
            await engine.start()
    assert "maxmemory-policy is allkeys-lru" in caplog.text
    caplog.clear()
    await engine.start()
    assert "maxmemory-policy" not in caplog.text


async def test_a_wait_refused_after_the_change_is_not_reported_as_nothing_changed(
    redis: Redis, redis_server: RedisServer, settings: ServiceSettings, clock: ManualClock
) -> None:
    # Durability `replicated`: FCALL, then WAIT. Here WAIT alone is refused (NOPERM): the change
    # was applied, and the answer must say its outcome is unknown, never "nothing was changed".
    await redis.acl_setuser("nowait", enabled=True, passwords=["+pw"], keys=["*"],
                            channels=["*"], commands=["+@all", "-wait"])  # fmt: skip
    replicated = replace(settings, durability="replicated")
    user = Redis.from_url(redis_server.url, username="nowait", password="pw")
    try:
        engine = Engine(user, replicated)
        await Engine(redis, settings).upsert_queue(QueueConfig(name="q"), clock.now())
        with pytest.raises(StoreUnavailable) as error:
            await engine.create_interaction(NewInteraction(queue="q", id="i1"), clock.now())
        assert not isinstance(error.value, StoreRefused)
        assert error.value.members["interaction_id"] == "i1"
        assert await redis.exists(Engine(redis, settings).keys.interaction("i1"))
    finally:
        await user.aclose()
        await redis.acl_deluser("nowait")


def test_the_code_of_a_pipelines_error_is_found() -> None:
    error = ResponseError(
        "Command # 1 (HGETALL acd:{main}:m:c) of pipeline caused error: BUSY Redis is busy"
    )
    assert error_code(error) == "BUSY"
    assert refusal(error) == REFUSALS["BUSY"]
    assert error_code(ResponseError("wrong kind of value")) == ""


async def test_a_start_is_refused_on_a_replica_and_on_a_full_store_without_the_library(
    redis: Redis, settings: ServiceSettings
) -> None:
    await redis.replicaof("127.0.0.1", "1")  # it holds the library, but takes no change
    try:
        with pytest.raises(StoreRefused, match="read-only replica"):
            await Engine(redis, settings).start()
    finally:
        await redis.replicaof("NO", "ONE")
    empty = RedisServer()
    empty.start()
    try:
        async with Redis.from_url(empty.url) as fresh, configured(fresh, "maxmemory", "1"):
            with pytest.raises(StoreRefused, match="maxmemory"):
                await Engine(fresh, settings).start()
    finally:
        empty.stop()


async def test_a_start_with_no_replica_confirming_writes_the_queues_later(
    redis: Redis, settings: ServiceSettings, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    # Durability `replicated` and no replica (gone, or frozen): a router still starts.
    replicated = replace(settings, durability="replicated", store_timeout_s=1.0)
    engine = Engine(redis, replicated)
    await engine.start()
    with caplog.at_level(logging.WARNING, "router.store.engine"):
        await engine.load_queues([QueueConfig(name="q")], clock)
    assert "not written yet" in caplog.text
    with pytest.raises(StoreUnavailable):
        await engine.write_unwritten()  # still none: tried again before the next tick
