"""The request client's FCALL path and the event reader's XREAD path (router/store/connection.py
FunctionCalls, StreamReads) on a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import cast

import pytest
from redis.asyncio import BlockingConnectionPool, Redis

from router.settings import ServiceSettings
from router.store.connection import FunctionCalls, StreamReads, blocking_client, request_client
from router.store.server import RedisServer

LIBRARY = """#!lua name=acd_test_calls
redis.register_function('acd_test_echo', function(keys, args) return {keys[1], args[1]} end)
redis.register_function('acd_test_busy', function(keys, args)
  local t = redis.call('TIME')
  local until_us = t[1] * 1000000 + t[2] + tonumber(args[1])
  repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= until_us
  return 'done'
end)
"""


@pytest.fixture
async def client(redis_server: RedisServer, redis: Redis) -> AsyncIterator[Redis]:
    await redis.function_load(LIBRARY, replace=True)
    settings = ServiceSettings(namespace="calls", redis_url=redis_server.url)
    request = request_client(settings)
    yield request
    await request.aclose()


def test_the_command_is_what_redis_py_would_send() -> None:
    connection = Redis().connection_pool.make_connection()  # type: ignore[no-untyped-call]
    calls = FunctionCalls(Redis())
    for arg in (b"", b"\x00\r\n\xff", bytes(range(256)) * 40):
        ours = calls.command("acd_x_interaction_create", "acd:{ns}:", arg)
        assert ours == b"".join(
            connection.pack_command("FCALL", "acd_x_interaction_create", 1, "acd:{ns}:", arg)
        )
    assert (
        calls.command("f", "k", b"a")
        == b"*5\r\n$5\r\nFCALL\r\n$1\r\nf\r\n$1\r\n1\r\n$1\r\nk\r\n$1\r\na\r\n"
    )


def test_the_xread_is_what_redis_py_would_send() -> None:
    connection = Redis().connection_pool.make_connection()  # type: ignore[no-untyped-call]
    for key in ("acd:{ns}:events", "acd:{café}:events"):  # lengths in bytes, not characters
        reads = StreamReads(Redis(), key)
        for after, count, block_ms in (("0", 1, 0), ("1796328170715-12", 500, 5000)):
            assert reads.command(after, count, block_ms) == b"".join(
                connection.pack_command(
                    "XREAD", "COUNT", count, "BLOCK", block_ms, "STREAMS", key, after
                )
            )


async def test_calls_in_turn_reuse_one_connection(client: Redis) -> None:
    calls = FunctionCalls(client)
    for i in range(20):
        assert await calls.fcall("acd_test_echo", "k", b"%d" % i) == [b"k", b"%d" % i]
    assert len(calls.idle) == 1
    assert len(client.connection_pool._in_use_connections) == 1


async def test_concurrent_calls_keep_as_many_connections_as_ran_at_once(client: Redis) -> None:
    calls = FunctionCalls(client)
    replies = await asyncio.gather(*(calls.fcall("acd_test_echo", "k", b"x") for _ in range(5)))
    assert replies == [[b"k", b"x"]] * 5
    assert len(calls.idle) == 5
    for _ in range(10):
        await calls.fcall("acd_test_echo", "k", b"y")
    assert len(calls.idle) == 5


async def test_a_connection_closed_by_the_server_is_retried(client: Redis, redis: Redis) -> None:
    calls = FunctionCalls(client)
    await calls.fcall("acd_test_echo", "k", b"1")
    own = await redis.client_id()
    for entry in await redis.client_list():
        if int(entry["id"]) != own:
            await redis.client_kill_filter(_id=entry["id"])
    assert await calls.fcall("acd_test_echo", "k", b"2") == [b"k", b"2"]
    assert len(calls.idle) == 1


async def test_a_cancelled_call_gives_its_connection_back_closed(client: Redis) -> None:
    calls = FunctionCalls(client)
    await calls.fcall("acd_test_echo", "k", b"1")
    kept = calls.idle[0]
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.02):
            await calls.fcall("acd_test_busy", "k", b"200000")  # 200 ms inside Redis
    # Its reply would have come later, on the connection: it is not kept, and was closed.
    assert calls.idle == []
    assert not kept.is_connected
    assert await calls.fcall("acd_test_echo", "k", b"2") == [b"k", b"2"]


@pytest.mark.parametrize("make", [request_client, lambda s: blocking_client(s, 1.0, 2)])
async def test_clients_speak_over_a_unix_socket(make: Callable[[ServiceSettings], Redis]) -> None:
    server = RedisServer(unix_socket=True)
    server.start()
    try:
        client = make(ServiceSettings(namespace="unix", redis_url=server.socket_url))
        try:
            await client.function_load(LIBRARY, replace=True)
            assert await FunctionCalls(client).fcall("acd_test_echo", "k", b"1") == [b"k", b"1"]
            assert any("U" in c["flags"] for c in await client.client_list())
        finally:
            await client.aclose()
    finally:
        server.stop()


async def test_more_calls_than_connections_all_run_and_other_commands_find_one(
    redis_server: RedisServer, redis: Redis
) -> None:
    await redis.function_load(LIBRARY, replace=True)
    pool = BlockingConnectionPool.from_url(redis_server.url, max_connections=4, timeout=None)
    client = Redis.from_pool(pool)
    calls = FunctionCalls(client)
    try:
        async with asyncio.timeout(10):  # a starved caller would wait for ever
            burst = [calls.fcall("acd_test_busy", "k", b"5000") for _ in range(20)]  # 5 ms each
            # A PING among them: the client's other commands find a connection meanwhile.
            assert await asyncio.gather(*burst, client.ping()) == [b"done"] * 20 + [True]
        assert len(calls.idle) == 2  # half the pool's 4
    finally:
        await client.aclose()


async def test_stream_reads_keep_one_connection_and_follow_a_dead_one(
    redis_server: RedisServer, redis: Redis
) -> None:
    reader = blocking_client(ServiceSettings(redis_url=redis_server.url), 1.0, 2)
    reads = StreamReads(reader, "log")
    try:
        first = cast(bytes, await redis.xadd("log", {"t": "a", "d": "\x00\r\n"}))
        second = cast(bytes, await redis.xadd("log", {"t": "b"}))
        assert await reads.read("0", 10, 10) == [
            (first, {b"t": b"a", b"d": b"\x00\r\n"}),
            (second, {b"t": b"b"}),
        ]
        assert await reads.read(second.decode(), 10, 10) == []  # nothing new within the block
        kept = reads.connection
        assert await reads.read("0", 1, 10) == [(first, {b"t": b"a", b"d": b"\x00\r\n"})]
        assert reads.connection is kept  # one connection, read after read
        own = await redis.client_id()
        for entry in await redis.client_list():
            if int(entry["id"]) != own:
                await redis.client_kill_filter(_id=entry["id"])
        assert await reads.read(first.decode(), 10, 10) == [(second, {b"t": b"b"})]
        # A read cut short (a cancelled reader) leaves no connection behind mid-reply.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await reads.read(second.decode(), 10, 1000)
        assert reads.connection is None
        assert await reads.read("0", 10, 10) == [
            (first, {b"t": b"a", b"d": b"\x00\r\n"}),
            (second, {b"t": b"b"}),
        ]
    finally:
        await reads.close()
        await reader.aclose()
