"""Request bodies, responses and errors: JSON or msgpack in and out, problem+json (RFC 9457)."""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NoReturn, NotRequired

import msgpack
import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from pydantic import Field
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from typing_extensions import TypedDict

from router.domain.fields import Doc, Integer
from router.domain.validation import body_problems, json_nesting_problem, raise_errors
from router.errors import RouterError, StoreUnavailable, ValidationError

log = logging.getLogger("router.api")

JSON = "application/json"
MSGPACK = "application/msgpack"
PROBLEM = "application/problem+json"
MAX_BODY_BYTES = 64 * 1024
BODY_TIMEOUT_S = 10.0
"""How long a request's body may take to arrive whole once its handler reads it: a body trickled
in holds its connection no longer (a 408, and the connection is closed)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(RouterError):
    status = 400
    type = "/problems/malformed-body"
    title = "Malformed body"


class UnsupportedMediaType(RouterError):
    status = 415
    type = "/problems/unsupported-media-type"
    title = "Unsupported media type"


class RequestTimeout(RouterError):
    status = 408
    type = "/problems/request-timeout"
    title = "Request timeout"
    closes_connection = True  # the rest of the body may still come


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


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


_JSON_BODY = json.JSONDecoder(parse_constant=_no_constant)
"""Made once: `json.loads` with an option builds a new decoder on every call."""


async def read_body(request: web.Request, required: bool = True) -> dict[str, Any]:
    """The request's body as a map: JSON (default) or msgpack, by Content-Type. Every limit of
    §4 that any field must meet is checked here (nesting before the parser sees the body, then
    integer range and Unicode); a missing body is a 422 unless not `required` (then `{}`)."""
    raw = b""
    media = request.content_type
    if request.body_exists:
        # Without a Content-Type (aiohttp then says application/octet-stream) a body is JSON.
        declared = "Content-Type" in request.headers
        if declared and media not in (JSON, MSGPACK) and request.can_read_body:
            raise UnsupportedMediaType(f"send {JSON} or {MSGPACK}, not {media}")
        if request.headers.get("Content-Encoding", "identity").lower() != "identity":
            raise UnsupportedMediaType("send the body uncompressed (no Content-Encoding)")
        try:
            # No timer for a body already read whole with its head (most are).
            async with asyncio.timeout(None if request.content.is_eof() else BODY_TIMEOUT_S):
                raw = await request.read()
        except TimeoutError as slow:
            raise RequestTimeout(f"the body did not arrive within {BODY_TIMEOUT_S:g} s") from slow
        except web.HTTPRequestEntityTooLarge as too_large:
            raise PayloadTooLarge(f"the body may be at most {MAX_BODY_BYTES} bytes") from too_large
        except RequestPayloadError as malformed:  # e.g. bad chunking, past the first read
            raise BadRequest("the body's framing (chunks, length) is malformed") from malformed
    if not raw:
        if required:
            raise ValidationError.of("body", "is required")
        return {}
    try:
        if media == MSGPACK:
            # msgpack's parser does not recurse (its own stack ends at 1,024 levels).
            body = msgpack.unpackb(raw, raw=False, strict_map_key=True)
        else:
            body = _json_body(raw)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as err:
        raise BadRequest(
            f"the body is not valid {'msgpack' if media == MSGPACK else 'JSON'}"
        ) from err
    if not isinstance(body, dict):
        raise ValidationError.of("body", "must be an object")
    raise_errors(body_problems(body))
    return body


def _json_body(raw: bytes) -> Any:
    """What json.loads does with bytes (UTF-8, -16 or -32 by the first bytes), its nesting
    checked first, on the text as UTF-8: in UTF-16 or -32 a character's bytes can look like a
    quote and hide brackets from the check."""
    encoding = json.detect_encoding(raw)
    text = raw.decode(encoding, "surrogatepass")
    utf8 = raw if encoding.startswith("utf-8") else text.encode("utf-8", "surrogatepass")
    if (deep := json_nesting_problem(utf8)) is not None:
        raise ValidationError(str(deep), [deep])
    return _JSON_BODY.decode(text)


def respond(request: web.Request, body: Any, status: int = 200) -> web.Response:
    """`body` as msgpack when the client accepts it, else JSON."""
    if MSGPACK in request.headers.get("Accept", ""):
        return web.Response(
            body=msgpack.packb(body, use_bin_type=True), status=status, content_type=MSGPACK
        )
    return web.Response(
        body=orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        content_type=JSON,
        charset="utf-8",
    )


class InternalError(RouterError):
    status = 500
    type = "/problems/internal"
    title = "Internal error"


class FieldErrorView(TypedDict):
    """One invalid field of a 422."""

    field: Annotated[
        str,
        Field(
            description="The field's path: `skills.billing`, `preferred_agents[1]`, "
            "`steps[0].after_s`; `body` for the body as a whole."
        ),
    ]
    message: str


class ProblemView(TypedDict):
    """An error (RFC 9457), always sent as application/problem+json."""

    type: Annotated[str, Doc({"format": "uri-reference"}), Field(description="The kind.")]
    title: str
    status: Annotated[int, Integer(400, 599)]
    detail: str
    errors: NotRequired[
        Annotated[
            list[FieldErrorView],
            Field(
                description="Validation problems (422): every invalid field, not only the first."
            ),
        ]
    ]
    interaction_id: NotRequired[
        Annotated[
            str,
            Field(
                description="A create's 503: the id it tried. The create may have been applied; "
                "retry with this id (in the body or `Idempotency-Key`)."
            ),
        ]
    ]
    reason: NotRequired[
        Annotated[
            str,
            Field(
                description="A 503 `/problems/store-refused`: why Redis refused the request, "
                "which changed nothing: `out_of_memory`, `cannot_persist`, `no_replicas`, "
                "`busy` or `read_only`."
            ),
        ]
    ]


def problem(error: RouterError, headers: dict[str, str] | None = None) -> web.Response:
    """The problem+json response of an error (with `Retry-After` and `WWW-Authenticate` when the
    error has them)."""
    body: dict[str, Any] = {
        "type": error.type,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        **error.members,
    }
    if error.errors:
        body["errors"] = [{"field": e.field, "message": e.message} for e in error.errors]
    headers = dict(headers or {})
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(error.retry_after_s)
    if error.challenge is not None:
        headers["WWW-Authenticate"] = error.challenge
    response = web.Response(
        text=json.dumps(body), status=error.status, content_type=PROBLEM, headers=headers
    )
    if error.closes_connection:
        response.force_close()
    return response


def where(error: BaseException) -> str:
    """Where an unexpected error was raised (file:line of each frame), never its message, which
    could quote a request's data."""
    frames = traceback.extract_tb(error.__traceback__)
    return " < ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in reversed(frames))


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error becomes problem+json; a lost store is a 503 with Retry-After; never a raw 500."""
    try:
        return await handler(request)
    except RouterError as error:
        return problem(error)
    except (RedisConnectionError, RedisTimeoutError) as error:
        log.warning("store unavailable: %s", type(error).__name__)
        return problem(StoreUnavailable("the store is unavailable"))
    except web.HTTPNotFound:
        return problem(RouteNotFound(f"no route {request.path}"))
    except web.HTTPMethodNotAllowed as error:
        return problem(
            MethodNotAllowed(f"{request.method} is not allowed on {request.path}"),
            {"Allow": ",".join(sorted(error.allowed_methods))},
        )
    except web.HTTPRequestEntityTooLarge:
        return problem(PayloadTooLarge(f"the body may be at most {MAX_BODY_BYTES} bytes"))
    except web.HTTPException:
        raise
    except ConnectionError:
        raise  # the client went away: nobody to answer
    except Exception as error:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "(no route)"
        log.error("unexpected %s in %s %s at %s", type(error).__name__, request.method, route,
                  where(error))  # fmt: skip
        return problem(InternalError("an unexpected error; it was logged without request data"))
