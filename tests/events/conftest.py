"""The events routes on a small app of their own, an SSE reader and a webhook receiver."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from router.api.http import problem_middleware
from router.api.keys import CLOCK, CONFIG, ENGINE, EVENT_FEED, EVENT_HUB
from router.clock import ManualClock
from router.config import Config, WebhookConfig
from router.domain.models import EVENT_TYPES
from router.events.sse import EventHub, close_streams, events_ctx, stream_events
from router.events.webhooks import signature, webhooks_ctx
from router.settings import ServiceSettings
from router.store.connection import request_client
from router.store.engine import Engine
from router.store.server import RedisServer

Client = TestClient[web.Request, web.Application]
SECRET_ENV = "ACD_TEST_WEBHOOK_SECRET"
SECRET = "test-secret"


class StartRouter(Protocol):
    def __call__(
        self, *webhooks: WebhookConfig, feed: socket.socket | None = None
    ) -> Awaitable[Client]: ...


async def eventually(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll `check` until it holds; fail after `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        while not check():  # noqa: ASYNC110 - the receiver's state changes on another task
            await asyncio.sleep(0.01)


def deliveries(sink: str, result: str) -> float:
    """The current value of `acd_event_deliveries_total{sink,result}`."""
    value = REGISTRY.get_sample_value(
        "acd_event_deliveries_total", {"sink": sink, "result": result}
    )
    return value or 0.0


@dataclass
class Frame:
    """One SSE frame: an event, or a comment."""

    id: str | None = None
    event: str | None = None
    data: str | None = None
    comment: str | None = None

    def json(self) -> dict[str, Any]:
        assert self.data is not None
        body: dict[str, Any] = json.loads(self.data)
        return body


class Sse:
    """Reads the frames of an event stream."""

    def __init__(self, response: ClientResponse) -> None:
        self.response = response

    async def frame(self, timeout_s: float = 5.0) -> Frame:
        """The next frame, comments included."""
        frame = Frame()
        async with asyncio.timeout(timeout_s):
            while True:
                raw = await self.response.content.readline()
                assert raw, "the stream ended"
                line = raw.decode().rstrip("\n")
                if not line:
                    return frame
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "":
                    frame.comment = value
                else:
                    setattr(frame, name, value)

    async def events(self, count: int) -> list[Frame]:
        """The next `count` frames that are not comments."""
        found: list[Frame] = []
        while len(found) < count:
            frame = await self.frame()
            if frame.comment is None:
                found.append(frame)
        return found

    async def until(self, last_id: str) -> list[Frame]:
        """Every event frame up to and including the one with id `last_id`."""
        found: list[Frame] = []
        while not found or found[-1].id != last_id:
            found.extend(await self.events(1))
        return found


def own_hub(client: Client) -> EventHub:
    """The hub of a router that reads the log itself."""
    hub = client.app[EVENT_HUB]
    assert isinstance(hub, EventHub)
    return hub


@pytest.fixture
async def start_router(
    redis_server: RedisServer, settings: ServiceSettings, clock: ManualClock
) -> AsyncIterator[StartRouter]:
    """Starts "router processes": the events routes on an app with a Redis client of its own
    (given `feed`, a worker's end of a socket pair to the machine's reader)."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(*webhooks: WebhookConfig, feed: socket.socket | None = None) -> Client:
            service = replace(settings, redis_url=redis_server.url)
            redis = request_client(service)
            stack.push_async_callback(redis.aclose)
            engine = Engine(redis, service)
            await engine.start()
            app = web.Application(middlewares=[problem_middleware])
            app[CONFIG] = Config(service=service, webhooks=webhooks)
            app[CLOCK] = clock
            app[ENGINE] = engine
            if feed is not None:  # a worker's: its events come from the machine's reader
                app[EVENT_FEED] = feed
            app.router.add_get("/v1/events", stream_events)
            app.cleanup_ctx.extend([events_ctx, webhooks_ctx])
            app.on_shutdown.append(close_streams)
            return await stack.enter_async_context(TestClient(TestServer(app)))

        yield start


@dataclass
class Receiver:
    """A webhook receiver on loopback that fails its first `fail_first` requests, and answers
    each `answer_after_s` after it arrived."""

    fail_first: int = 0
    answer_after_s: float = 0.0
    in_flight: int = 0
    most_in_flight: int = 0
    """The most requests it has held at once."""
    calls: list[tuple[str, dict[str, Any], bool]] = field(default_factory=list)
    """(X-ACD-Event-Id, body, acknowledged with 2xx) of every request with a valid signature."""
    bad_signatures: int = 0
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("X-ACD-Signature") != signature(SECRET.encode(), body):
            self.bad_signatures += 1
            return web.Response(status=401)
        ok = len(self.calls) >= self.fail_first
        self.calls.append((request.headers["X-ACD-Event-Id"], json.loads(body), ok))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.answer_after_s)  # a receiver's own work
        finally:
            self.in_flight -= 1
        return web.Response(status=204 if ok else 503)

    @property
    def acknowledged(self) -> list[dict[str, Any]]:
        """Bodies of the requests answered 2xx, in arrival order."""
        return [body for _, body, ok in self.calls if ok]

    def webhook(self, *types: str, concurrency: int = 1) -> WebhookConfig:
        """The configuration of a webhook to this receiver."""
        return WebhookConfig(
            url=self.url,
            secret_env=SECRET_ENV,
            types=types or EVENT_TYPES,
            concurrency=concurrency,
        )


@pytest.fixture
async def receiver(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Receiver]:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    found = Receiver()
    app = web.Application()
    app.router.add_post("/hook", found.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        found.url = str(server.make_url("/hook"))
        yield found
