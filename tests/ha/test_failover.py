"""Sentinel failover under load on real processes (SPEC §8, §9): a primary, two replicas, three
Sentinels; two routers per durability; the replicas cut off for a moment and the primary
SIGKILLed meanwhile. The time to service is measured by loadtest/failover.py, not here."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from loadtest.failover import QUEUE, Load, Pair, scenario
from loadtest.topology import MASTER, Node, SentinelSet, until
from router.config import WebhookConfig
from router.events.webhooks import signature
from router.settings import ServiceSettings
from router.store.connection import FunctionCalls, request_client
from router.store.engine import Engine
from tests.ha.conftest import StartRouters, router_config

WORKERS = 4
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


def all_name(sentinels: SentinelSet, primary: Node) -> bool:
    """Whether every Sentinel names `primary`, up, as the primary (redis-py takes any's word)."""
    for watcher in sentinels.watchers:
        with watcher.client() as client:
            state = client.sentinel_master(MASTER)
        if int(state["port"]) != primary.port or state["is_sdown"] or state["is_odown"]:
            return False
    return True


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
        await asyncio.to_thread(until, lambda: all_name(sentinels, new), "every Sentinel agrees")
        # Each kept connection fails once on the dead primary; its retry asks the Sentinels.
        assert len(await writes()) == 4
        assert len(calls.idle) == 4
    finally:
        await client.aclose()
        await asyncio.to_thread(sentinels.restart_killed)
