"""The aiohttp application factory: routes, middlewares and one cleanup context per resource."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

from aiohttp import web

from router.api import handlers, instrument, openapi
from router.api.auth import Authenticator, Forbidden, authorize
from router.api.http import MAX_BODY_BYTES, Handler, problem_middleware
from router.api.keys import AUTH, CLOCK, CONFIG, ENGINE, EVENT_FEED, PRINCIPAL, REDIS
from router.api.operations import operation_of
from router.api.protocol import quiet_aiohttp_logs
from router.clock import Clock
from router.config import Config, Role
from router.errors import FieldError, ValidationError
from router.events.sse import close_streams, events_ctx, stream_events
from router.events.webhooks import webhooks_ctx
from router.store.connection import request_client
from router.store.engine import Engine
from router.store.sentinel import watching
from router.store.ticks import ticking

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json"})


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every route but the operations routes needs a key whose role permits the request."""
    if request.path == "/metrics":
        if request.app[CONFIG].service.metrics_auth:
            principal = request.app[AUTH].identify(request.headers.get("Authorization"))
            if principal.role not in (Role.MONITOR, Role.ADMIN):
                raise Forbidden("/metrics needs a monitor key")
    elif request.path not in PUBLIC_PATHS:
        principal = request.app[AUTH].identify(request.headers.get("Authorization"))
        authorize(principal, request.method, request.path)
        request[PRINCIPAL] = principal
    return await handler(request)


@web.middleware
async def query_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A documented operation takes the query parameters it declares, each at most once: any
    other, or a repeat, is a 422 naming it (a misspelt filter would otherwise filter nothing)."""
    op = operation_of(request.match_info.handler)
    if op is not None:
        allowed = openapi.query_names(op.params)
        found = []
        for name in dict.fromkeys(request.query):
            if name not in allowed:
                found.append(FieldError(name, "unknown query parameter"))
            elif len(request.query.getall(name)) > 1:
                found.append(FieldError(name, "given more than once"))
        if found:
            raise ValidationError("; ".join(map(str, found)), found)
    return await handler(request)


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """The store client and engine: scripts loaded, the file's queues written over the store's."""
    config = app[CONFIG]
    redis = request_client(config.service)
    engine = Engine(redis, config.service)
    await engine.start()
    await engine.load_queues(config.queues, app[CLOCK])
    app[REDIS] = redis
    app[ENGINE] = engine
    yield
    await redis.aclose()


async def primary_ctx(app: web.Application) -> AsyncIterator[None]:
    """The Sentinel store's primary watcher (router/store/sentinel.py), before any client."""
    async with watching(app[CONFIG].service):
        yield


async def tick_ctx(app: web.Application) -> AsyncIterator[None]:
    """The background tick loop (router/store/ticks.py), stopped and awaited on shutdown."""
    async with ticking(app[ENGINE], app[CLOCK]):
        yield


def create_app(
    config: Config,
    clock: Clock | None = None,
    insecure: bool = False,
    event_feed: socket.socket | None = None,
) -> web.Application:
    """The service: API v1, events, operations routes; Redis at `config.service.redis_url`;
    events from `event_feed` (a worker's feed from the machine's reader) if given."""
    quiet_aiohttp_logs()
    app = web.Application(
        middlewares=[
            instrument.metrics_middleware,
            problem_middleware,
            auth_middleware,
            query_middleware,
        ],
        client_max_size=MAX_BODY_BYTES,
    )
    app[CONFIG] = config
    app[CLOCK] = clock or Clock()
    app[AUTH] = Authenticator.from_config(config.keys, insecure)
    if event_feed is not None:
        app[EVENT_FEED] = event_feed
    app.cleanup_ctx.extend([primary_ctx, redis_ctx, events_ctx, tick_ctx, webhooks_ctx])
    app.on_shutdown.append(close_streams)
    app.router.add_routes(handlers.routes)
    app.router.add_get("/v1/events", stream_events)
    app.router.add_get("/openapi.json", openapi.serve)
    return app
