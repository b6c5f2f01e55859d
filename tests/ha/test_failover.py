"""Sentinel failover under load on real processes (SPEC §8, §9): a primary, two replicas, three
Sentinels; two routers per durability; the replicas cut off for a moment and the primary
SIGKILLed meanwhile. The time to service is measured by loadtest/failover.py, not here."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from loadtest.failover import KEY, QUEUE, Load, Pair, scenario
from loadtest.topology import MASTER, Node, SentinelSet, until
from router.api.keys import ENGINE
from router.config import WebhookConfig
from router.domain.models import AgentProfile, AgentState
from router.errors import StoreUnavailable
from router.events import sse
from router.events.sse import EventHub, no_ceiling, parse_event_id
from router.events.webhooks import signature
from router.settings import ServiceSettings
from router.store.connection import FunctionCalls, SentinelPool, request_client
from router.store.engine import Engine
from router.store.replication import replica_ceiling
from router.store.sentinel import watching
from tests.ha.conftest import Router, StartRouters, router_config

WORKERS = 4
LOOSE_S = 30.0
SECRET_ENV = "ACD_TEST_HA_WEBHOOK_SECRET"
SECRET = "ha-secret"
COMPLETED = "interaction.completed"


async def test_a_failover_loses_nothing_acknowledged_with_replicated_durability(
    sentinels: SentinelSet,
    start_routers: StartRouters,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    delivered: list[str] = []

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        assert request.headers["X-ACD-Signature"] == signature(SECRET.encode(), body)
        delivered.append(request.headers["X-ACD-Event-Id"])
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook", receive)
    async with TestServer(receiver, host="127.0.0.1") as hook_server:
        hook = WebhookConfig(
            url=str(hook_server.make_url("/hook")), secret_env=SECRET_ENV, types=(COMPLETED,)
        )
        pairs = []
        for durability in ("local", "replicated"):
            namespace = f"fo-{durability}"
            webhooks = (hook,) if durability == "replicated" else ()
            config = router_config(tmp_path, namespace, sentinels.url, durability, webhooks)
            urls = [r.url for r in await start_routers(config, 2)]
            agents = [f"agent-{i}" for i in range(WORKERS * 2)]
            pairs.append(Pair(durability, urls, Load(urls, agents, durability)))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            for pair in pairs:
                await pair.load.setup(session)
            local, replicated = await scenario(
                sentinels, pairs, session, workers=WORKERS, before_s=1.0, lag_s=0.5
            )
            # The tick loops go on with the new primary: a wrap-up ends by its timer (a GET of
            # the agent runs no script, so only a tick can end it).
            for pair in pairs:
                agent = await wrap_up_briefly(session, pair.load)
                async with asyncio.timeout(10):
                    while await activity(session, pair.load, agent) != "idle":  # noqa: ASYNC110
                        await asyncio.sleep(0.05)

        # Both: the service came back (no 500, no hang), the new primary is consistent, and
        # once what the load left is ended, every agent is available with nothing.
        for outcome in (local, replicated):
            assert outcome.service_s is not None, outcome.durability
            assert outcome.failures == 0, outcome.durability
            assert outcome.answered_503 > 0, outcome.durability
            assert outcome.violations == [], outcome.durability
            assert outcome.busy_agents == [], outcome.durability
            assert outcome.missing_events == 0, outcome.durability
        # replicated: every acknowledged change is on the new primary, and no stream got an
        # event it lacks.
        assert replicated.acknowledged > 0
        assert replicated.lost == []
        assert replicated.ghost_events == 0
        # local: what the primary acknowledged during the lag is gone.
        assert local.lost
        assert local.ghost_events > 0

        # Webhooks: every completed event the new primary holds is delivered, and none else.
        new = sentinels.primary()
        async with Redis(port=new.port) as redis:
            engine = Engine(redis, ServiceSettings(namespace="fo-replicated"))
            held = {e.id for e in await engine.read_events(count=100_000) if e.type == COMPLETED}
        async with asyncio.timeout(20):
            while not held <= set(delivered):  # noqa: ASYNC110 - deliveries come from routers
                await asyncio.sleep(0.05)
        assert set(delivered) <= held


async def wrap_up_briefly(session: aiohttp.ClientSession, load: Load) -> str:
    """A lifecycle whose agent ends in a 0.2 s wrap-up; the agent."""
    url, ix = load.urls[0], f"{load.prefix}-wrap"
    created = await load.request(
        session, url, "POST", "/v1/interactions", {"id": ix, "queue": QUEUE}
    )
    agent = created.body["agent_id"]
    extra: dict[str, Any]
    for action, extra in (("accept", {}), ("complete", {"wrap_up_s": 0.2})):
        answer = await load.request(
            session, url, "POST", f"/v1/interactions/{ix}/{action}", {"agent_id": agent, **extra}
        )
        assert answer.status == 200, (action, answer.body)
    assert await activity(session, load, agent) == "wrap_up"
    return str(agent)


async def activity(session: aiohttp.ClientSession, load: Load, agent: str) -> str:
    """The agent's activity."""
    answer = await load.request(session, load.urls[1], "GET", f"/v1/agents/{agent}")
    return str(answer.body["activity"])


def force_failover(sentinels: SentinelSet) -> bool:
    """SENTINEL FAILOVER; False while no replica is fit yet (one restarted by an earlier test)."""
    with sentinels.watchers[0].client() as watcher:
        try:
            watcher.execute_command("SENTINEL", "FAILOVER", MASTER)
        except ResponseError as error:
            if "NOGOODSLAVE" not in str(error):
                raise
            return False
    return True


def role(node: Node) -> str:
    """A node's replication role: master or slave."""
    with node.client() as client:
        return str(client.info("replication")["role"])


INCR_LIBRARY = """#!lua name=acd_test_kept
redis.register_function('acd_test_incr', function(keys) return redis.call('INCR', keys[1]) end)
"""


async def test_kept_connections_reach_the_new_primary_after_a_failover(
    sentinels: SentinelSet,
) -> None:
    client = request_client(ServiceSettings(namespace="kept", redis_url=sentinels.url))
    calls = FunctionCalls(client)

    async def writes() -> list[Any]:
        return await asyncio.gather(
            *(calls.fcall("acd_test_incr", "{kept}:n", b"") for _ in range(4))
        )

    try:
        await client.function_load(INCR_LIBRARY, replace=True)
        assert sorted(await writes()) == [1, 2, 3, 4]
        assert len(calls.idle) == 4  # kept, each connected to the primary
        old = sentinels.primary()
        old.kill()
        new = await asyncio.to_thread(sentinels.wait_failover, old)
        await asyncio.to_thread(until, lambda: sentinels.agreed() is new, "every Sentinel agrees")
        # Each kept connection fails once on the dead primary; its retry asks the Sentinels.
        assert len(await writes()) == 4
        assert len(calls.idle) == 4
    finally:
        await client.aclose()
        await asyncio.to_thread(sentinels.restart_killed)


async def test_the_event_reader_leaves_a_demoted_primary_for_the_new_one(
    sentinels: SentinelSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seen in loadtest/failover.py: a second failover demoted the primary the reader was on; it
    # kept reading there, where under `replicated` no replica confirms anything, and delivered
    # nothing more.
    monkeypatch.setattr(sse, "RETRY_S", 0.1)  # where the reader goes is tested, not its pauses
    settings = ServiceSettings(
        namespace="demoted", redis_url=sentinels.url, durability="replicated"
    )
    engine = Engine(request_client(settings), settings)
    reader = sse.reader_client(settings)
    hub = EventHub(
        reader, engine.keys.events, 10, await replica_ceiling(settings, reader) or no_ceiling
    )
    stop = asyncio.Event()
    running: asyncio.Task[None] | None = None

    async def write_and_see_delivered(agent: str) -> None:
        # Deadlines checked in the loops, not asyncio.timeout: redis-py may swallow the one
        # cancellation a timeout sends (once seen: this loop ran on for good).
        deadline = time.monotonic() + LOOSE_S
        while True:  # the writer meets the demoted primary too, until it follows
            assert time.monotonic() < deadline, f"{agent}: not written within {LOOSE_S} s"
            try:
                await engine.put_agent(agent, AgentProfile(skills={"s": 1}), time.time())
                await engine.set_agent_state(agent, AgentState.AVAILABLE, time.time())
                break
            except StoreUnavailable:
                await asyncio.sleep(0.1)
        last = (await engine.read_events(count=100_000))[-1].id
        while hub.position < parse_event_id(last, "log"):
            assert time.monotonic() < deadline, f"{agent}: not read within {LOOSE_S} s"
            await asyncio.sleep(0.05)

    try:
        await engine.start()
        await hub.start()
        running = asyncio.create_task(hub.run(stop))
        await write_and_see_delivered("before")
        old = sentinels.primary()
        await asyncio.to_thread(until, lambda: force_failover(sentinels), "a failover accepted")
        new = await asyncio.to_thread(sentinels.wait_failover, old)
        # The old primary made a replica at once, as the Sentinels do once they see it (up to
        # 10 s later); what it took meanwhile is lost, not the reader's to deliver.
        with old.client() as client:
            client.replicaof("127.0.0.1", new.port)
        await asyncio.to_thread(until, lambda: role(old) == "slave", "the old primary demoted")
        await asyncio.to_thread(until, lambda: sentinels.online_replicas(new) > 0, "a replica")
        await write_and_see_delivered("after")
    finally:
        if running is not None:  # stopped as the app does: it may be in a 5 s XREAD, and
            stop.set()  # redis-py may swallow a cancellation that lands while it connects
            running.cancel()
            await asyncio.wait_for(asyncio.gather(running, return_exceptions=True), LOOSE_S)
        await reader.aclose()
        await engine.redis.aclose()


FOLLOW_S = 3.0
"""How long after the Sentinels name the new primary a router may still write to the old one: the
watcher asks every 0.5 s (without it, the Sentinels demote the old primary ~10 s later)."""


class Creates:
    """Creates of interactions through a router, one at a time; the ids acknowledged (201)."""

    def __init__(self, session: aiohttp.ClientSession, router: Router, namespace: str) -> None:
        self.session, self.router, self.namespace = session, router, namespace
        self.sent = 0
        self.acknowledged: list[str] = []

    async def create(self) -> str | None:
        """A new interaction's id once acknowledged, else None."""
        self.sent += 1
        ix = f"{self.namespace}-{self.sent}"
        async with self.session.post(
            f"{self.router.url}/v1/interactions",
            json={"id": ix, "queue": QUEUE},
            headers={"Authorization": f"Bearer {KEY}"},
        ) as answer:
            if answer.status != 201:
                return None
        self.acknowledged.append(ix)
        return ix

    async def run(self, stop: asyncio.Event) -> None:
        """Create until `stop`."""
        while not stop.is_set():
            await self.create()

    def missing(self, node: Node, ids: list[str]) -> list[str]:
        """Which of `ids` `node` lacks."""
        with node.client() as client:
            return [ix for ix in ids if not client.exists(f"acd:{{{self.namespace}}}:ix:{ix}")]


async def test_a_planned_failover_moves_kept_connections_to_the_new_primary(
    sentinels: SentinelSet,
    start_routers: StartRouters,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # SENTINEL FAILOVER leaves the old primary up and writable until the Sentinels demote it:
    # a router writing on there on its open connections lost what it acknowledged meanwhile,
    # with `local` and (a replica still following the old primary confirming) `replicated`.
    (local,) = await start_routers(router_config(tmp_path, "planned", sentinels.url), 1)
    config = router_config(tmp_path, "planned-rep", sentinels.url, "replicated")
    (replicated,) = await start_routers(config, 1)
    old = sentinels.primary()
    stop = asyncio.Event()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            creates = Creates(session, local, "planned")
            assert all(await asyncio.gather(*(creates.create() for _ in range(4))))
            assert local.app[ENGINE].runner.calls.idle  # connections kept to the old primary
            throughout = Creates(session, replicated, "planned-rep")
            assert await throughout.create()
            running = asyncio.create_task(throughout.run(stop))
            caplog.clear()
            await asyncio.to_thread(until, lambda: force_failover(sentinels), "a failover")
            new = await asyncio.to_thread(sentinels.wait_failover, old)
            # Soon the local router's creates land on the new primary, while the old one still
            # takes writes; from then on, every acknowledged one is there.
            async with asyncio.timeout(FOLLOW_S):
                while not ((ix := await creates.create()) and not creates.missing(new, [ix])):
                    pass
            assert role(old) == "master"
            after = [ix for ix in [await creates.create() for _ in range(10)] if ix]
            before_end = len(throughout.acknowledged)
            await asyncio.to_thread(
                until, lambda: len(throughout.acknowledged) > before_end, "a replicated create"
            )
            stop.set()
            await running
        assert after
        assert creates.missing(new, after) == []
        # replicated: nothing acknowledged before, during or after the failover is missing.
        assert throughout.missing(new, throughout.acknowledged) == []
        switches = [r for r in caplog.records if r.name == "router.store.sentinel"]
        assert [r.levelname for r in switches] == ["WARNING"]
    finally:
        stop.set()
        with old.client() as client:  # demoted now rather than by the Sentinels, 10 s later
            client.replicaof("127.0.0.1", sentinels.primary().port)


async def test_the_pools_ask_the_sentinels_again_once_the_watcher_stops(
    sentinels: SentinelSet,
) -> None:
    settings = ServiceSettings(redis_url=sentinels.url, namespace="watched")
    async with watching(settings):
        redis = request_client(settings)
        pool = redis.connection_pool
        assert isinstance(pool, SentinelPool)
        watcher, primary = following(pool)
        assert watcher is not None
        assert primary == ("127.0.0.1", sentinels.primary().port)
    try:
        assert following(pool) == (None, None)  # pinned to nothing
        assert await redis.ping()  # the pool asks the Sentinels itself
    finally:
        await redis.aclose()


def following(pool: SentinelPool) -> tuple[object, object]:
    """The watcher a pool follows, and the primary it was told."""
    return pool.watcher, pool.primary
