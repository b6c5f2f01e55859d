"""The HTTP metrics middleware (SPEC §6): requests by route template, method, status; latency."""

from __future__ import annotations

import asyncio
import functools
import time

from aiohttp import web
from prometheus_client import Counter, Histogram

from router.api.http import Handler
from router.metrics.process import HTTP_DURATION, HTTP_REQUESTS

UNMATCHED = "unmatched"
"""The route label of a request that matched no route (404, 405)."""
STREAM_ROUTES = frozenset({"/v1/events"})
"""Long-lived routes: counted when they end, kept out of the duration histogram."""
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Method labels kept as sent; any other method is labelled `other`, bounding the label set."""
CLIENT_CLOSED = 499
"""The status label of a request whose handler was cancelled before it answered: the client
left while the server cancels handlers on disconnect (nginx's convention), or a forced stop."""


def route_label(request: web.Request) -> str:
    """The matched route's path template (`/v1/agents/{id}`), never the raw path."""
    resource = request.match_info.route.resource
    return UNMATCHED if resource is None else resource.canonical


# The labelled series, looked up once per label set (bounded: route templates, METHODS, statuses)
# rather than on every request.
@functools.cache
def _requests(route: str, method: str, status: int) -> Counter:
    return HTTP_REQUESTS.labels(route=route, method=method, status=str(status))


@functools.cache
def _duration(route: str) -> Histogram:
    return HTTP_DURATION.labels(route=route)


def _record(route: str, method: str, status: int, started: float) -> None:
    _requests(route, method, status).inc()
    if route not in STREAM_ROUTES:
        _duration(route).observe(time.perf_counter() - started)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every request with its final status and time it (first in the middleware list)."""
    started = time.perf_counter()
    route = route_label(request)
    method = request.method if request.method in METHODS else "other"
    try:
        response = await handler(request)
    except web.HTTPException as error:
        _record(route, method, error.status, started)
        raise
    except asyncio.CancelledError:
        _record(route, method, CLIENT_CLOSED, started)
        raise
    except Exception:
        _record(route, method, 500, started)  # aiohttp answers an unhandled error with a 500
        raise
    _record(route, method, response.status, started)
    return response
