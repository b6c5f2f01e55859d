"""Request bodies, responses and errors: JSON or msgpack in and out, problem+json (RFC 9457)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgpack
from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from router.errors import RouterError, StoreUnavailable, ValidationError

log = logging.getLogger("router.api")

JSON = "application/json"
MSGPACK = "application/msgpack"
PROBLEM = "application/problem+json"
MAX_BODY_BYTES = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(RouterError):
    status = 400
    type = "/problems/malformed-body"
    title = "Malformed body"


class UnsupportedMediaType(RouterError):
    status = 415
    type = "/problems/unsupported-media-type"
    title = "Unsupported media type"


class PayloadTooLarge(RouterError):
    status = 413
    type = "/problems/payload-too-large"
    title = "Body too large"


class RouteNotFound(RouterError):
    status = 404
    type = "/problems/not-found"
    title = "Not found"


class MethodNotAllowed(RouterError):
    status = 405
    type = "/problems/method-not-allowed"
    title = "Method not allowed"


async def read_body(request: web.Request) -> dict[str, Any]:
    """The request's body as a map: JSON (default) or msgpack, by Content-Type."""
    if not request.body_exists:
        return {}
    media = request.content_type
    if media not in (JSON, MSGPACK, "application/octet-stream") and request.can_read_body:
        raise UnsupportedMediaType(f"send {JSON} or {MSGPACK}, not {media}")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as too_large:
        raise PayloadTooLarge(f"the body may be at most {MAX_BODY_BYTES} bytes") from too_large
    if not raw:
        return {}
    try:
        if media == MSGPACK:
            body = msgpack.unpackb(raw, raw=False, strict_map_key=True)
        else:
            body = json.loads(raw)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as err:
        raise BadRequest(
            f"the body is not valid {'msgpack' if media == MSGPACK else 'JSON'}"
        ) from err
    if not isinstance(body, dict):
        raise ValidationError.of("body", "must be an object")
    return body


def respond(request: web.Request, body: Any, status: int = 200) -> web.Response:
    """`body` as msgpack when the client accepts it, else JSON."""
    if MSGPACK in request.headers.get("Accept", ""):
        return web.Response(
            body=msgpack.packb(body, use_bin_type=True), status=status, content_type=MSGPACK
        )
    return web.Response(
        text=json.dumps(body, separators=(",", ":")), status=status, content_type=JSON
    )


def problem(error: RouterError, headers: Mapping[str, str] | None = None) -> web.Response:
    """The problem+json response of an error."""
    body: dict[str, Any] = {
        "type": error.type,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
    }
    if error.errors:
        body["errors"] = [{"field": e.field, "message": e.message} for e in error.errors]
    return web.Response(
        text=json.dumps(body), status=error.status, content_type=PROBLEM, headers=headers
    )


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error becomes problem+json; a lost store is a 503 with Retry-After; never a raw 500."""
    try:
        return await handler(request)
    except StoreUnavailable as error:
        return problem(error, {"Retry-After": "1"})
    except RouterError as error:
        return problem(error)
    except (RedisConnectionError, RedisTimeoutError, ConnectionError) as error:
        log.warning("store unavailable: %s", type(error).__name__)
        return problem(StoreUnavailable("the store is unavailable"), {"Retry-After": "1"})
    except web.HTTPNotFound:
        return problem(RouteNotFound(f"no route {request.path}"))
    except web.HTTPMethodNotAllowed as error:
        return problem(
            MethodNotAllowed(f"{request.method} is not allowed on {request.path}"),
            {"Allow": ",".join(sorted(error.allowed_methods))},
        )
    except web.HTTPRequestEntityTooLarge:
        return problem(PayloadTooLarge(f"the body may be at most {MAX_BODY_BYTES} bytes"))
