"""The store's mechanics: script headers, key schema, event log cap, script reloading."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import replace

import msgpack
import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from router.domain.models import CallbackPolicy, NewInteraction, QueueConfig
from router.settings import ServiceSettings
from router.store.engine import Engine
from router.store.scripts import library, operation_source, operations
from tests.store.center import Center


@pytest.mark.parametrize("operation", operations())
def test_every_script_documents_keys_argv_and_returns(operation: str) -> None:
    lines = operation_source(operation).splitlines()
    header = "\n".join(line for line in itertools.takewhile(lambda x: x.startswith("--"), lines))
    for part in ("KEYS[1]", "ARGV[1]", "Returns"):
        assert part in header
    assert f"'{library().function(operation)}'" in library().source


async def test_every_key_of_a_namespace_shares_one_hash_tag(center: Center) -> None:
    await center.queue("support", skills={"support": 1}, steps=[(5, {})], wrap_up_s=3)
    await center.agent("a1", {"support": 1})
    await center.call("support", "c1")
    await center.call("support", "c2")
    keys = [k.decode() async for k in center.engine.redis.scan_iter(match="*")]
    ours = [k for k in keys if k.startswith(center.engine.keys.prefix)]
    assert len(ours) > 10
    tag = "{" + center.engine.settings.namespace + "}"
    assert all(k.split(":")[1] == tag for k in ours)


async def test_the_event_log_is_capped(redis: Redis, settings: ServiceSettings) -> None:
    engine = Engine(redis, replace(settings, event_log_max=10))
    await engine.start()
    await engine.upsert_queue(QueueConfig(name="q"), 0)
    for i in range(500):
        await engine.create_interaction(
            NewInteraction(queue="q", id=f"c{i}"),
            1_800_000_000 + i,
        )
    length = await redis.xlen(engine.keys.events)
    assert 10 <= length < 500  # approximate trimming keeps about event_log_max


async def test_scripts_are_reloaded_when_redis_lost_them(center: Center) -> None:
    await center.queue("support")
    await center.engine.redis.function_flush()
    assert not await center.engine.ready()
    await center.agent("a1", {})
    await center.call("support", "c1")
    assert await center.engine.ready()
    assert (await center.ix("c1")).agent_id == "a1"


async def store_lost(
    center: Center,
    queues: list[str],
    before_writing: Callable[[int], Awaitable[None]] | None = None,
) -> list[int]:
    """The configuration's `queues` written, then the store emptied (data and library). Returns
    `[rewrites]`, counted as they happen; `before_writing(rewrite)` runs before each."""
    engine = center.engine
    await engine.load_queues([QueueConfig(name=name) for name in queues], center.clock)
    writes = engine.runner.reloaded
    assert writes is not None
    rewrites = [0]

    async def counted() -> None:
        rewrites[0] += 1
        if before_writing is not None:
            await before_writing(rewrites[0])
        await writes()

    engine.runner.reloaded = counted
    await engine.redis.flushall()
    await engine.redis.function_flush()
    return rewrites


async def test_the_files_queues_are_written_again_when_redis_lost_its_data(
    center: Center,
) -> None:
    rewrites = await store_lost(center, ["support"])
    await center.agent("a1", {})  # finds the library missing: loads it, writes the queue
    await center.call("support", "c1")
    assert (await center.ix("c1")).agent_id == "a1"
    assert rewrites == [1]


async def test_calls_that_find_the_library_missing_at_once_reload_it_once(center: Center) -> None:
    # Seen: every such call reloaded and wrote every queue itself; with many queues and calls
    # they timed out, deleted the library again, and the store never recovered.
    rewrites = await store_lost(center, [f"q{i}" for i in range(50)])
    await asyncio.gather(*(center.agent(f"a{i}", {}) for i in range(20)))
    assert rewrites == [1]
    assert len(await center.engine.list_queues()) == 50


async def test_a_reload_whose_writes_find_the_library_gone_again_fails_without_recursing(
    center: Center,
) -> None:
    async def gone_once(rewrite: int) -> None:
        if rewrite == 1:
            await center.engine.redis.function_flush()  # as another process's failed reload

    rewrites = await store_lost(center, ["support"], gone_once)
    with pytest.raises(ResponseError, match="Function not found"):
        await center.agent("a1", {})
    await center.agent("a1", {})
    assert rewrites == [2]
    await center.call("support", "c1")
    assert (await center.ix("c1")).agent_id == "a1"


async def test_a_failed_write_after_a_reload_leaves_the_library_missing_for_the_next_call(
    center: Center,
) -> None:
    async def fails_once(rewrite: int) -> None:
        if rewrite == 1:
            raise RuntimeError("lost meanwhile")

    rewrites = await store_lost(center, ["support"], fails_once)
    with pytest.raises(RuntimeError):
        await center.agent("a1", {})
    assert not await center.engine.ready()
    await center.agent("a1", {})
    assert rewrites == [2]
    await center.call("support", "c1")
    assert (await center.ix("c1")).agent_id == "a1"


async def test_a_library_of_another_version_is_left_alone(center: Center) -> None:
    redis = center.engine.redis
    other = library().source.replace(library().name, "acd_0123456789abcdef")
    await redis.function_load(other, replace=True)
    try:
        await center.engine.start()  # loading ours again (REPLACE) is harmless
        await center.queue("support")
        names = {lib[lib.index(b"library_name") + 1] for lib in await redis.function_list()}
        assert {library().name.encode(), b"acd_0123456789abcdef"} <= names
    finally:
        await redis.function_delete("acd_0123456789abcdef")


async def test_a_queue_needing_more_classes_than_the_limit_is_written(center: Center) -> None:
    center.engine.tune(max_classes=2)
    await center.queue("q", skills={"a": 1}, steps=[(5, {"b": 1}), (10, {"c": 1})])
    assert await center.engine.get_queue("q") is not None
    assert await center.engine.redis.hlen(center.engine.keys.classes) == 3


@pytest.mark.parametrize(
    "data", [{}, {"empty": []}, {"text": "t", "zero": 0}, {"nested": {"empty": {}}}]
)
async def test_opaque_data_comes_back_unchanged(center: Center, data: object) -> None:
    await center.queue("support")
    await center.agent("a1", {})
    created = await center.call("support", "c1", data=data)
    assert created.data == data
    assert (await center.ix("c1")).data == data
    offered = (await center.events("interaction.offered"))[-1]
    assert offered.fields["data"] == data


async def test_classes_remembered_across_calls_follow_a_deleted_namespace(center: Center) -> None:
    redis, prefix = center.engine.redis, center.engine.keys.prefix
    await center.queue("first", skills={"a": 1})
    await center.queue("second", skills={"b": 1})  # classes 1 (a) and 2 (b)
    await center.agent("ann", {"a": 1})
    await center.call("first", "c1")
    assert (await center.ix("c1")).agent_id == "ann"
    keys = [k async for k in redis.scan_iter(match=prefix.replace("{", "[{]") + "*")]
    await redis.delete(*keys)
    await center.queue("second", skills={"b": 1})  # now class 1 is b, and 2 is a
    await center.queue("first", skills={"a": 1})
    await center.agent("bob", {"b": 1})
    await center.agent("ann", {"a": 1})
    await center.call("first", "c2")
    await center.call("second", "c3")
    assert (await center.ix("c2")).agent_id == "ann"
    assert (await center.ix("c3")).agent_id == "bob"


async def test_a_queue_an_earlier_version_stored_reads_even_past_todays_bounds(
    center: Center,
) -> None:
    # Before positive durations had to be >= 0.001 s, 1e-9 was accepted and stored.
    await center.queue("q", skills={"s": 1}, callback=CallbackPolicy(offer_when_ewt_s=60))
    keys, redis = center.engine.keys, center.engine.redis
    record = msgpack.unpackb(await redis.hget(keys.queues, "q"), raw=False)
    record["offer_timeout_s"] = 1e-9
    record["callback"]["retry_after_s"] = 1e-9
    await redis.hset(keys.queues, "q", msgpack.packb(record, use_bin_type=False))
    queue = await center.engine.get_queue("q")
    assert queue is not None
    assert (queue.offer_timeout_s, queue.callback and queue.callback.retry_after_s) == (1e-9, 1e-9)
    assert [q.name for q in await center.engine.list_queues()] == ["q"]
