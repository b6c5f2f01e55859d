"""The aiohttp application factory: routes, middlewares and one cleanup context per resource."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from router.api import handlers, instrument, openapi
from router.api.auth import Authenticator, Forbidden, authorize
from router.api.http import MAX_BODY_BYTES, Handler, problem_middleware
from router.api.keys import AUTH, CLOCK, CONFIG, ENGINE, PRINCIPAL, REDIS
from router.api.protocol import quiet_aiohttp_logs
from router.clock import Clock
from router.config import Config, Role
from router.errors import StoreUnavailable
from router.events.sse import close_streams, events_ctx, stream_events
from router.events.webhooks import webhooks_ctx
from router.metrics.process import observe_tick
from router.store.connection import request_client
from router.store.engine import Engine

log = logging.getLogger("router.service")

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json"})
TICK_INTERVAL_S = 0.05
"""Real seconds between ticks at most: the bound on the lag of a timer another router set."""
MIN_TICK_DELAY_S = 0.001


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


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """The store client and engine: scripts loaded, the file's queues written over the store's."""
    config = app[CONFIG]
    redis = request_client(config.service)
    engine = Engine(redis, config.service)
    await engine.start()
    await engine.load_queues(config.queues, app[CLOCK].now())
    app[REDIS] = redis
    app[ENGINE] = engine
    yield
    await redis.aclose()


async def run_ticks(engine: Engine, clock: Clock, stop: asyncio.Event) -> None:
    """Apply due timers until `stop`; several routers may run this at once (§3.5, §3.9)."""
    failing = False
    while not stop.is_set():
        try:
            result = await engine.tick(clock.now())
        except StoreUnavailable as error:
            if not failing:  # once per outage, not once a second
                log.warning("ticks fail: %s", error.detail)
            result = None
        except Exception as error:
            log.error("tick failed: %s", type(error).__name__)
            result = None
        if failing and result is not None:
            log.info("ticks apply again")
        failing = result is None
        if result is not None:
            observe_tick(result)
            if result.applied:
                continue
        delay = tick_delay(result.next_due, clock) if result is not None else 1.0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)


def tick_delay(next_due: float | None, clock: Clock) -> float:
    """Real seconds until the next tick: when the next timer falls due (at the clock's speed),
    but at most `TICK_INTERVAL_S` (another router may set an earlier one meanwhile)."""
    if next_due is None:
        return TICK_INTERVAL_S
    return min(TICK_INTERVAL_S, max(MIN_TICK_DELAY_S, (next_due - clock.now()) / clock.speed))


async def tick_ctx(app: web.Application) -> AsyncIterator[None]:
    """The background tick loop, stopped and awaited on shutdown."""
    # A stop event, not only cancel(): redis-py may swallow a CancelledError that lands during a
    # call, which would leave the loop running and the shutdown waiting for ever.
    stop = asyncio.Event()
    task = asyncio.create_task(run_ticks(app[ENGINE], app[CLOCK], stop), name="tick")
    yield
    stop.set()
    try:
        await asyncio.wait_for(task, timeout=5)
    except TimeoutError:
        log.warning("the tick loop did not stop in time")


def create_app(
    config: Config, clock: Clock | None = None, insecure: bool = False
) -> web.Application:
    """The service: API v1, events, operations routes; Redis at `config.service.redis_url`."""
    quiet_aiohttp_logs()
    app = web.Application(
        middlewares=[instrument.metrics_middleware, problem_middleware, auth_middleware],
        client_max_size=MAX_BODY_BYTES,
    )
    app[CONFIG] = config
    app[CLOCK] = clock or Clock()
    app[AUTH] = Authenticator.from_config(config.keys, insecure)
    app.cleanup_ctx.extend([redis_ctx, events_ctx, tick_ctx, webhooks_ctx])
    app.on_shutdown.append(close_streams)
    app.router.add_routes(handlers.routes)
    app.router.add_get("/v1/events", stream_events)
    app.router.add_get("/openapi.json", openapi.serve)
    return app
