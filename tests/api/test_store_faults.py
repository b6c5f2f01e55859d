"""A hung or restarted store (SPEC §4 "Failures and retries", §9): 503 within store_timeout_s,
no phantom creates, no failures on stale connections after a restart. Each test has a private
redis-server, and a short store_timeout_s so that it stays cheap."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from router.api import handlers
from router.api.app import create_app
from router.clock import ManualClock
from router.config import Role, WebhookConfig
from router.domain.models import Channel, QueueConfig
from router.settings import ServiceSettings
from router.store.server import RedisServer
from tests.api.conftest import QUEUES, ServiceTestServer, auth, config_for
from tests.api.test_openapi import check_against_document
from tests.conftest import configured

Client = TestClient[web.Request, web.Application]
TIMEOUT_S = 1.0
LOOSE_S = 10.0
"""A bound on each answer far above store_timeout_s and far below the 30 s hangs once seen."""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(data_dir=tmp_path)  # append-only: a restart keeps the data
    server.start()
    yield server
    if server.process is not None:
        os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


@pytest.fixture
async def faulty(
    store: RedisServer, settings: ServiceSettings, clock: ManualClock
) -> AsyncIterator[Client]:
    config = config_for(replace(settings, store_timeout_s=TIMEOUT_S), store.url)
    async with TestClient(ServiceTestServer(create_app(config, clock))) as client:
        async with client.put("/v1/agents/a1", json={"skills": {}}, headers=auth()) as resp:
            assert resp.status == 201
        yield client


async def answer(client: Client, method: str, path: str, **kw: Any) -> tuple[int, Any, float]:
    """Status, body and seconds taken of one request."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(LOOSE_S), client.request(method, path, **kw) as resp:
        body = await resp.read()
        if resp.status == 503:
            assert resp.content_type == "application/problem+json"
            assert resp.headers["Retry-After"] == "1"
        return resp.status, body, loop.time() - started


async def until_ready(client: Client) -> None:
    """Wait until /readyz answers 200: the store is back."""
    for _ in range(200):
        if (await answer(client, "GET", "/readyz"))[0] == 200:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the store did not come back")


async def burst(client: Client, count: int) -> list[int]:
    """Statuses of `count` parallel requests: half reads, half creates (one store call each)."""

    async def one(i: int) -> int:
        if i % 2:
            status, _, _ = await answer(client, "GET", "/v1/agents/a1", headers=auth())
        else:
            body = {"queue": "chat"}
            status, _, _ = await answer(
                client, "POST", "/v1/interactions", json=body, headers=auth()
            )
        return status

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def test_a_frozen_store_answers_503_in_time_and_a_retried_create_is_applied_once(
    faulty: Client, store: RedisServer
) -> None:
    assert store.process is not None
    os.kill(store.process.pid, signal.SIGSTOP)
    try:
        status, body, _ = await answer(
            faulty, "POST", "/v1/interactions", json={"queue": "chat"}, headers=auth()
        )
        assert status == 503
        problem = json.loads(body)
        assert problem["type"] == "/problems/store-unavailable"
        tried = problem["interaction_id"]  # the id to retry with
        paths = ("/v1/interactions/x", "/v1/agents/x", "/v1/queues", "/readyz")
        answers = await asyncio.gather(
            *(answer(faulty, "GET", path, headers=auth()) for path in paths)
        )
        assert [status for status, _, _ in answers] == [503] * len(paths)
        status, metrics, _ = await answer(faulty, "GET", "/metrics")
        assert status == 200  # the per-process series, while the store does not answer
        assert b"acd_store_up 0.0" in metrics
        assert b"acd_http_requests_total{" in metrics
        assert b"acd_queue_waiting" not in metrics
    finally:
        os.kill(store.process.pid, signal.SIGCONT)
    await until_ready(faulty)

    # The frozen create may be applied now; the retry with its id never creates a second one.
    status, body, _ = await answer(
        faulty, "POST", "/v1/interactions", json={"id": tried, "queue": "chat"}, headers=auth()
    )
    assert status in (200, 201)
    status, body, _ = await answer(faulty, "GET", "/v1/queues/chat", headers=auth())
    waiting = json.loads(body)["waiting"]
    assert [ix["id"] for ix in waiting] == [tried]
    assert await burst(faulty, 50) == [200 if i % 2 else 201 for i in range(50)]
    status, metrics, _ = await answer(faulty, "GET", "/metrics")
    assert b"acd_store_up 1.0" in metrics


async def test_a_scrape_waits_for_a_frozen_store_less_than_a_long_store_timeout(
    store: RedisServer,
    settings: ServiceSettings,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A store_timeout_s past Prometheus's scrape timeout must not keep `acd_store_up 0` from it.
    monkeypatch.setattr(handlers, "METRICS_STORE_TIMEOUT_S", TIMEOUT_S)
    config = config_for(replace(settings, store_timeout_s=60.0), store.url)
    assert store.process is not None
    async with TestClient(ServiceTestServer(create_app(config, clock))) as client:
        await until_ready(client)
        os.kill(store.process.pid, signal.SIGSTOP)
        try:
            status, metrics, _ = await answer(client, "GET", "/metrics")  # within LOOSE_S
        finally:
            os.kill(store.process.pid, signal.SIGCONT)
    assert status == 200
    assert b"acd_store_up 0.0" in metrics


async def test_every_wait_on_a_frozen_store_ends_in_time(
    faulty: Client, store: RedisServer
) -> None:
    assert store.process is not None
    await burst(faulty, 20)  # pooled connections, then the store hangs
    os.kill(store.process.pid, signal.SIGSTOP)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        statuses = await burst(faulty, 30)
        assert statuses == [503] * 30
        # All answered by the bound, not by a socket's: far below the 30 s once seen.
        assert loop.time() - started < LOOSE_S
    finally:
        os.kill(store.process.pid, signal.SIGCONT)
    await until_ready(faulty)
    assert set(await burst(faulty, 50)) == {200, 201}


async def test_no_request_fails_on_a_stale_connection_after_a_restart(
    faulty: Client, store: RedisServer
) -> None:
    # Seen: 10-14 of 20 parallel requests 1 s after the restart failed on dead pooled
    # connections.
    assert set(await burst(faulty, 50)) == {200, 201}  # a pool full of connections
    assert store.process is not None
    store.process.kill()
    store.process.wait()
    store.start()  # answers PING when it returns
    assert set(await burst(faulty, 50)) == {200, 201}


async def flush(store: RedisServer, *, data: bool) -> None:
    """The store loses its library (FUNCTION FLUSH), and with `data` everything (FLUSHALL)."""
    redis = Redis.from_url(store.url)
    try:
        if data:
            await redis.flushall()
        await redis.function_flush()
    finally:
        await redis.aclose()


async def test_a_store_that_lost_its_data_gets_the_files_queues_again(
    faulty: Client, store: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    await flush(store, data=True)
    status, created, _ = await answer(
        faulty, "POST", "/v1/interactions", json={"queue": "chat"}, headers=auth()
    )
    assert status == 201, created
    status, body, _ = await answer(faulty, "GET", "/v1/queues", headers=auth())
    assert {q["name"] for q in json.loads(body)["queues"]} == {q.name for q in QUEUES}
    assert (await answer(faulty, "GET", "/readyz"))[0] == 200
    assert "written again" in caplog.text


async def test_a_store_that_lost_only_the_library_keeps_its_queues(
    faulty: Client, store: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A cluster slot moved to a node joined without the library: the API's changes stay.
    changed = {"skills": {"chat": 2}, "channel": "chat"}
    put = await answer(faulty, "PUT", "/v1/queues/chat", json=changed, headers=auth(Role.ADMIN))
    assert put[0] == 200, put
    await flush(store, data=False)
    status, created, _ = await answer(
        faulty, "POST", "/v1/interactions", json={"queue": "chat"}, headers=auth()
    )
    assert status == 201, created
    status, body, _ = await answer(faulty, "GET", "/v1/queues/chat", headers=auth())
    assert json.loads(body)["skills"] == {"chat": 2}
    assert "lacked the library (not its data)" in caplog.text


async def test_a_store_at_its_maxmemory_refuses_changes_with_503_and_still_answers_reads(
    faulty: Client, store: RedisServer
) -> None:
    async with faulty.post(
        "/v1/interactions", json={"id": "i1", "queue": "chat"}, headers=auth()
    ) as resp:
        assert resp.status == 201
    async with Redis.from_url(store.url) as redis, configured(redis, "maxmemory", "1"):
        async with faulty.post(
            "/v1/interactions", json={"id": "i2", "queue": "chat"}, headers=auth()
        ) as resp:
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "5"
            problem = await resp.json(content_type="application/problem+json")
        assert problem["type"] == "/problems/store-refused"
        assert problem["reason"] == "out_of_memory"
        check_against_document(
            "POST", "/v1/interactions", None, 503, "application/problem+json", problem
        )
        assert "interaction_id" not in problem  # nothing was created: no id to retry with
        async with faulty.get("/v1/interactions/i1", headers=auth()) as resp:
            assert resp.status == 200
        async with faulty.get("/metrics") as resp:
            assert resp.status == 200
            metrics = await resp.text()
        assert 'acd_queue_waiting{queue="chat"} 1.0' in metrics  # the business metrics too
        assert 'acd_store_refusals_total{reason="out_of_memory"}' in metrics
        assert "acd_store_up 1.0" in metrics  # it answers
    async with faulty.get("/v1/interactions/i2", headers=auth()) as resp:
        assert resp.status == 404


async def test_a_router_starts_on_a_store_at_its_maxmemory_and_writes_its_queues_later(
    store: RedisServer,
    settings: ServiceSettings,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("HOOK_SECRET", "s")
    hook = WebhookConfig(url="http://127.0.0.1:9/hook", secret_env="HOOK_SECRET")
    config = replace(config_for(settings, store.url), webhooks=(hook,))
    async with TestClient(ServiceTestServer(create_app(config, clock))):
        pass  # the library, the queues and the webhook's group are in the store
    more = replace(config, queues=(*config.queues, QueueConfig(name="new")))
    async with (
        Redis.from_url(store.url) as redis,
        configured(redis, "maxmemory", "1"),
        TestClient(ServiceTestServer(create_app(more, clock))) as client,
    ):
        assert "queue(s) are not written yet" in caplog.text
        async with client.get("/v1/queues/chat", headers=auth()) as resp:
            assert resp.status == 200
        async with client.get("/v1/queues/new", headers=auth()) as resp:
            assert resp.status == 404
        async with client.post("/v1/interactions", json={"queue": "chat"}, headers=auth()) as resp:
            assert resp.status == 503
        await redis.config_set("maxmemory", "0")
        for _ in range(100):  # the tick loop tries again within a second
            async with client.get("/v1/queues/new", headers=auth()) as resp:
                if resp.status == 200:
                    break
            await asyncio.sleep(0.05)
        assert resp.status == 200


async def test_queues_refused_at_start_then_in_conflict_are_logged_and_ticks_go_on(
    store: RedisServer,
    settings: ServiceSettings,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "router.store")
    config = config_for(settings, store.url)
    async with (
        TestClient(ServiceTestServer(create_app(config, clock))) as client,
        client.post("/v1/interactions", json={"queue": "chat"}, headers=auth()) as resp,
    ):
        assert resp.status == 201  # it waits: the queue's channel cannot change now
    chat_on_voice = QueueConfig(name="chat", channel=Channel.VOICE, skills={"chat": 1})
    on_voice = replace(config, queues=(*config.queues[:2], chat_on_voice))
    async with (
        Redis.from_url(store.url) as redis,
        configured(redis, "maxmemory", "1"),
        TestClient(ServiceTestServer(create_app(on_voice, clock))) as client,
    ):
        await redis.config_set("maxmemory", "0")
        for _ in range(100):  # the tick loop tries again within a second
            if "ticks apply again" in caplog.text:
                break
            await asyncio.sleep(0.05)
        assert "ticks apply again" in caplog.text
        assert "the configuration's queues cannot be written, the store's stay" in caplog.text
        async with client.get("/v1/queues/chat", headers=auth()) as resp:
            assert (await resp.json())["channel"] == "chat"
