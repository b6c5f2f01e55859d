"""Durability `replicated` (SPEC §8) on a primary and one replica: a change is acknowledged once
the replica holds it, else 503; events are delivered once the replica holds them."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from loadtest.failover import KEY
from loadtest.topology import SentinelSet
from router.store.replication import PrimaryChanged, ReplicaCeiling
from router.store.sentinel import PrimaryWatcher
from router.store.server import RedisServer
from router.store.url import parse_store_url
from tests.ha.conftest import StartRouters, router_config

HEADERS = {"Authorization": f"Bearer {KEY}"}
STORE_TIMEOUT_S = 0.5


@pytest.fixture(scope="module")
def pair() -> Iterator[SentinelSet]:
    """A primary and one replica, no Sentinel."""
    topology = SentinelSet(replicas=1, sentinels=0)
    topology.start()
    yield topology
    topology.stop()


async def post(
    session: aiohttp.ClientSession, url: str, body: object
) -> tuple[int, dict[str, str], float]:
    started = time.monotonic()
    async with session.post(url, json=body, headers=HEADERS) as response:
        await response.read()
        return response.status, dict(response.headers), time.monotonic() - started


async def unconfirmed(session: aiohttp.ClientSession, url: str) -> float:
    """The router's `acd_store_unconfirmed_total{reason="no_replica"}`."""
    async with session.get(f"{url}/metrics") as response:
        exposition = await response.text()
    found = re.search(
        r'^acd_store_unconfirmed_total\{reason="no_replica"\} (\S+)$', exposition, re.M
    )
    assert found is not None
    return float(found[1])


async def test_a_change_no_replica_confirms_answers_503_and_its_events_wait(
    pair: SentinelSet, start_routers: StartRouters, tmp_path: Path
) -> None:
    primary, replica = pair.nodes
    config = router_config(
        tmp_path, "rep", primary.server.url, "replicated", store_timeout_s=STORE_TIMEOUT_S
    )
    (router,) = await start_routers(config, 1)
    create = f"{router.url}/v1/interactions"
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        assert (await post(session, create, {"id": "before", "queue": "calls"}))[0] == 201
        async with session.get(
            f"{router.url}/v1/events?types=interaction.queued", headers=HEADERS
        ) as stream:
            unconfirmed_before = await unconfirmed(session, router.url)
            replica.freeze()
            try:
                status, headers, seconds = await post(
                    session, create, {"id": "frozen", "queue": "calls"}
                )
                # Applied on the primary, not confirmed: 503, outcome unknown, within the bound.
                assert status == 503
                assert "Retry-After" in headers
                assert seconds < STORE_TIMEOUT_S + 0.5
                async with Redis(port=primary.port) as redis:
                    assert await redis.exists("acd:{rep}:ix:frozen")
                # Counted apart (Redis answers: acd_store_up stays 1), for AcdChangesUnconfirmed.
                assert await unconfirmed(session, router.url) > unconfirmed_before
                # Its event is not delivered while no replica holds it.
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.3):
                        await stream.content.readuntil(b"\n\n")
            finally:
                replica.thaw()
            async with asyncio.timeout(5):
                frame = (await stream.content.readuntil(b"\n\n")).decode()
            assert '"interaction_id":"frozen"' in frame
        # The retry with the same id is safe: the change was applied, now confirmed.
        assert (await post(session, create, {"id": "frozen", "queue": "calls"}))[0] == 200
        # A primary without the library gets it again at the first call that misses it.
        async with Redis(port=primary.port) as redis:
            await redis.function_flush()
        assert (await post(session, create, {"id": "after", "queue": "calls"}))[0] == 201


async def test_the_ceiling_drops_what_it_holds_when_the_primary_changes(
    pair: SentinelSet, redis_server: RedisServer
) -> None:
    primary, replica = pair.nodes
    async with Redis(port=primary.port) as redis, Redis(port=redis_server.port) as other:
        ceiling = ReplicaCeiling(redis)
        await ceiling.start()
        replica.freeze()
        try:
            await redis.set("acd:test:ceiling", 1)  # past what the frozen replica acknowledged
            assert await ceiling((2**63, 0)) < (2**63, 0)
        finally:
            replica.thaw()
        ceiling.redis = other  # another primary: another replication id
        with pytest.raises(PrimaryChanged):
            await ceiling((2**63, 0))


async def test_the_ceiling_confirms_nothing_across_a_sentinel_failover(pair: SentinelSet) -> None:
    # During a planned failover a replica still following the old primary confirms what the old
    # primary drops once demoted: events read then wait, and a failover seen meanwhile drops them.
    primary, _ = pair.nodes
    async with Redis(port=primary.port) as redis:
        watcher = PrimaryWatcher(parse_store_url("redis+sentinel://127.0.0.1:1/acd"), 1.0)
        redis.connection_pool.watcher = watcher  # type: ignore[attr-defined]
        ceiling = ReplicaCeiling(redis)
        await ceiling.start()
        await redis.set("acd:test:ceiling", 1)
        await redis.wait(1, 1000)  # the replica holds it
        watcher.failing_over, watcher.epoch = True, 1  # a Sentinel's +try-failover
        assert await ceiling((2**63, 0)) == (0, 0)
        watcher.failing_over, watcher.epoch = False, 2  # ended: the replica now follows another
        async with asyncio.timeout(5):  # read under the new epoch: confirmed by the next ack
            while await ceiling((2**63, 0)) != (2**63, 0):  # noqa: ASYNC110 - the replica acks
                await asyncio.sleep(0.05)
        await redis.set("acd:test:ceiling", 2)
        assert await ceiling((2**63 + 1, 0)) < (2**63 + 1, 0)  # pending: not confirmed yet
        watcher.epoch = 3  # another switch seen
        with pytest.raises(PrimaryChanged):
            await ceiling((2**63 + 1, 0))
        await watcher.aclose()
