"""Redis Cluster (SPEC §8): each namespace in one hash slot, on its slot's primary; several
contact centers share one cluster; no script touches a key outside its namespace's slot."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from loadtest.failover import KEY, LAG_ALLOWED_S, Load, lost_changes
from loadtest.topology import Cluster, Node
from router.clock import ManualClock
from router.domain.models import NewInteraction, QueueConfig
from router.errors import StoreRefused
from router.settings import ServiceSettings
from router.store.connection import request_client
from router.store.engine import Engine
from router.store.invariants import check_invariants
from router.store.keys import Keys
from router.store.scripts import ScriptRunner, operations
from tests.conftest import configured
from tests.ha.conftest import StartRouters, router_config
from tests.store import test_callbacks, test_class_fill, test_lifecycle, test_offers, test_routing
from tests.store.center import Center

HEADERS = {"Authorization": f"Bearer {KEY}"}
Scenario = Callable[[Center], Awaitable[None]]


def namespaces_on(cluster: Cluster, nodes: list[Node], prefix: str) -> Iterator[str]:
    """A namespace whose slot is on each of `nodes`, in order."""
    for node in nodes:
        yield next(
            name
            for name in (f"{prefix}{i}" for i in itertools.count())
            if cluster.node_of(Keys(name).prefix) is node
        )


async def keys_by_node(cluster: Cluster, namespace: str) -> dict[int, int]:
    """How many keys of `namespace` each node holds, by port."""
    found = {}
    for node in cluster.nodes:
        async with Redis(port=node.port) as redis:
            match = Keys(namespace).prefix.replace("{", "[{]") + "*"
            found[node.port] = len([k async for k in redis.scan_iter(match=match, count=1000)])
    return found


async def test_three_contact_centers_share_a_cluster_each_in_its_slot(
    cluster: Cluster, start_routers: StartRouters, tmp_path: Path
) -> None:
    names = list(namespaces_on(cluster, cluster.nodes, "center"))
    loads = []
    for name in names:
        config = router_config(tmp_path, name, cluster.url)
        urls = [r.url for r in await start_routers(config, 2)]
        loads.append(Load(urls, [f"{name}-agent-{i}" for i in range(4)], name))
    stop = asyncio.Event()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for load in loads:
            await load.setup(session)
        running = [asyncio.create_task(load.run(session, 2, stop)) for load in loads]
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*running)
        others = loads[1:] + loads[:1]
        for name, node, load, other in zip(names, cluster.nodes, loads, others, strict=True):
            # Routed: lifecycles completed through both routers, nothing lost.
            assert 2 in load.acked.values(), name
            assert sum(n for s, n in load.statuses.items() if s >= 500) == 0, name
            async with Redis(port=node.port) as redis:
                assert await lost_changes(redis, name, load.acked) == []
                now = time.time() - LAG_ALLOWED_S
                assert await check_invariants(redis, Keys(name), now, {"voice"}) == []
                log = await Engine(redis, ServiceSettings(namespace=name)).read_events()
            # Isolated: every key on the slot's primary, every event its own, nothing of
            # another contact center visible.
            held = await keys_by_node(cluster, name)
            assert held.pop(node.port) > 0, name
            assert set(held.values()) == {0}, name
            ids = {e.fields.get("interaction_id") for e in log} - {None}
            assert ids
            assert all(str(i).startswith(f"{name}-") for i in ids)
            foreign = next(iter(other.acked))
            async with session.get(
                f"{load.urls[0]}/v1/interactions/{foreign}", headers=HEADERS
            ) as response:
                assert response.status == 404
            assert await load.settle(session) == []


async def test_a_router_follows_its_namespace_when_the_slot_moves(
    cluster: Cluster, start_routers: StartRouters, tmp_path: Path
) -> None:
    (name,) = namespaces_on(cluster, cluster.nodes[:1], "moving")
    config = router_config(tmp_path, name, cluster.url)
    urls = [r.url for r in await start_routers(config, 1)]
    load = Load(urls, ["a1"], name)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await load.setup(session)
        first = await load.request(
            session, urls[0], "POST", "/v1/interactions", {"id": "i1", "queue": "calls"}
        )
        await asyncio.to_thread(cluster.move_slot, Keys(name).prefix, cluster.nodes[1])
        # The next call meets MOVED, looks the slot up again and is retried on its new primary.
        second = await load.request(session, urls[0], "DELETE", "/v1/interactions/i1")
        third = await load.request(
            session, urls[0], "POST", "/v1/interactions", {"id": "i2", "queue": "calls"}
        )
    assert (first.status, second.status, third.status) == (201, 200, 201)
    assert second.body["status"] == "abandoned"
    held = await keys_by_node(cluster, name)
    assert held[cluster.nodes[0].port] == 0
    assert held[cluster.nodes[1].port] > 0


def scenarios() -> list[tuple[str, Scenario]]:
    """The store's scenario tests that need only a contact center."""
    found = []
    for module in (test_lifecycle, test_offers, test_routing, test_callbacks, test_class_fill):
        for name, function in vars(module).items():
            if (
                name.startswith("test_")
                and not hasattr(function, "pytestmark")
                and list(inspect.signature(function).parameters) == ["center"]
            ):
                found.append((f"{module.__name__}.{name}", function))
    return found


async def test_every_store_scenario_runs_on_a_cluster_node(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cluster refuses a script that touches a key of another slot than its declared key
    # (the namespace's prefix): every operation of every scenario stays in its namespace.
    called: set[str] = set()
    call = ScriptRunner.call

    call_on = ScriptRunner.call_on

    async def recording(self: ScriptRunner, name: str, prefix: str, args: Any) -> Any:
        called.add(name)
        return await call(self, name, prefix, args)

    async def recording_on(
        self: ScriptRunner, redis: Any, name: str, prefix: str, args: Any
    ) -> Any:
        called.add(name)
        return await call_on(self, redis, name, prefix, args)

    monkeypatch.setattr(ScriptRunner, "call", recording)
    monkeypatch.setattr(ScriptRunner, "call_on", recording_on)
    found = scenarios()
    assert len(found) > 40
    for i, (name, scenario) in enumerate(found):
        settings = ServiceSettings(
            redis_url=cluster.url, namespace=f"scenario{i}", retention_s=3600
        )
        redis = request_client(settings)
        try:
            engine = Engine(redis, settings)
            if i == 0:
                await engine.start()
                assert await engine.eviction_policy() == "noeviction"  # read from a node
            center = Center(engine, ManualClock())
            try:
                await scenario(center)
                await center.check()
                # Two reads no scenario makes.
                await engine.metrics_snapshot(center.now, 0)
                await engine.page_interactions("", 10, center.now)
            except ResponseError as error:
                raise AssertionError(f"{name}: {error}") from error
        finally:
            await redis.aclose()
    assert called == set(operations())


async def test_the_cluster_refuses_a_script_that_leaves_its_slot(cluster: Cluster) -> None:
    # The check above relies on this: a key of another slot, even on the same node, fails.
    start, end, node = cluster.ranges()[0]
    here = [k for k in (f"k{i}" for i in range(2000)) if start <= cluster.slot(k) <= end][:2]
    assert cluster.slot(here[0]) != cluster.slot(here[1])
    async with Redis(port=node.port) as redis:
        await redis.function_load(
            "#!lua name=acd_test_slots\n"
            "redis.register_function('acd_test_slots', function(keys, args)\n"
            "  return redis.call('GET', args[1])\nend)",
            replace=True,
        )
        assert await redis.fcall("acd_test_slots", 1, here[0], here[0]) is None
        with pytest.raises(ResponseError, match="do not hash to the same slot"):
            await redis.fcall("acd_test_slots", 1, here[0], here[1])


async def test_a_call_while_the_slot_migrates_is_refused_and_changes_nothing(
    cluster: Cluster,
) -> None:
    (name,) = namespaces_on(cluster, cluster.nodes[:1], "migrating")
    settings = ServiceSettings(redis_url=cluster.url, namespace=name)
    redis = request_client(settings)
    source, target = cluster.nodes[0], cluster.nodes[1]
    slot = cluster.slot(Keys(name).prefix)
    try:
        engine = Engine(redis, settings)
        await engine.start()
        clock = ManualClock()
        await engine.upsert_queue(QueueConfig(name="q"), clock.now())
        async with Redis(port=source.port) as src, Redis(port=target.port) as dst:
            src_id, dst_id = (
                (await cluster_command(src, "MYID")).decode(),
                (await cluster_command(dst, "MYID")).decode(),
            )
            await cluster_command(dst, "SETSLOT", slot, "IMPORTING", src_id)
            await cluster_command(src, "SETSLOT", slot, "MIGRATING", dst_id)
            try:
                # The declared key (the prefix) is no key: the source answers ASK at once.
                with pytest.raises(StoreRefused) as refused:
                    await engine.create_interaction(NewInteraction(queue="q", id="i1"), clock.now())
                assert refused.value.members["reason"] == "moving"
            finally:
                for node in (src, dst):
                    await cluster_command(node, "SETSLOT", slot, "STABLE")
        assert await engine.get_interaction("i1", clock.now()) is None
        created, _ = await engine.create_interaction(
            NewInteraction(queue="q", id="i1"), clock.now()
        )
        assert created.id == "i1"
    finally:
        await redis.aclose()


async def test_a_cluster_down_is_refused_and_not_ready(cluster: Cluster) -> None:
    (name,) = namespaces_on(cluster, cluster.nodes[:1], "down")
    settings = ServiceSettings(redis_url=cluster.url, namespace=name)
    redis = request_client(settings)
    node = cluster.nodes[0]
    start, _, owner = next(r for r in cluster.ranges() if r[2] is not node)
    try:
        engine = Engine(redis, settings)
        await engine.start()
        async with Redis(port=node.port) as here, Redis(port=owner.port) as there:
            owner_id = (await cluster_command(there, "MYID")).decode()
            # As this node sees it, a slot of another shard has no primary: it stops serving.
            await cluster_command(here, "DELSLOTS", start)
            try:
                await wait_for_state(here, "fail")
                with pytest.raises(StoreRefused) as refused:
                    await engine.ready()
                assert refused.value.members["reason"] == "cluster_down"
            finally:
                await cluster_command(here, "SETSLOT", start, "NODE", owner_id)
                await wait_for_state(here, "ok")
        assert await engine.ready()
    finally:
        await redis.aclose()


async def cluster_command(node: Redis, *args: object) -> Any:
    """A CLUSTER subcommand on one node."""
    return await node.execute_command("CLUSTER", *args)  # type: ignore[no-untyped-call]


async def wait_for_state(node: Redis, state: str) -> None:
    """Until the node's `cluster_state` is `state` (it updates it every 100 ms or so)."""
    for _ in range(100):
        info = (await cluster_command(node, "INFO")).decode()
        if f"cluster_state:{state}" in info:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"cluster_state never {state}")


async def test_a_router_starts_while_another_shard_refuses_the_library(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    (name,) = namespaces_on(cluster, cluster.nodes[:1], "shard")
    settings = ServiceSettings(redis_url=cluster.url, namespace=name)
    redis = request_client(settings)
    try:
        # FUNCTION LOAD is refused at maxmemory, as a shard that is down fails it.
        other = Redis(port=cluster.nodes[1].port)
        try:
            async with configured(other, "maxmemory", "1"):
                await Engine(redis, settings).start()
        finally:
            await other.aclose()
        assert f"not loaded on cluster node 127.0.0.1:{cluster.nodes[1].port} (OOM)" in caplog.text
        clock = ManualClock()
        engine = Engine(redis, settings)
        await engine.upsert_queue(QueueConfig(name="q"), clock.now())
        created, _ = await engine.create_interaction(
            NewInteraction(queue="q", id="i1"), clock.now()
        )
        assert created.id == "i1"
    finally:
        await redis.aclose()
