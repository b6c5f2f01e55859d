"""GET /v1/events: the durable event log as Server-Sent Events (§4).

Without `Last-Event-ID` or `?after=` a stream starts at the live end (only events appended after
the request); `?after=0` starts at the oldest event kept. `Last-Event-ID` wins over `?after=`,
since a reconnecting EventSource sends it together with the URL it first used.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from router.api.keys import ENGINE, REDIS
from router.api.views import event_view
from router.domain.models import EVENT_TYPES, Event
from router.errors import ValidationError
from router.metrics.process import EVENT_DELIVERIES
from router.store import codec
from router.store.codec import text

log = logging.getLogger("router.events")

KEEPALIVE_S = 15.0
"""Seconds without a write after which a `: keep-alive` comment is sent."""
READ_COUNT = 100
"""Entries per XREAD."""

_ID = re.compile(r"(\d{1,20})(?:-(\d{1,20}))?")
_MAX_ID_PART = 2**64 - 1
StreamId = tuple[int, int]


@dataclass
class _Streams:
    """The open streams of one application, so that its shutdown can end them at once."""

    closing: bool = False
    reads: set[asyncio.Task[Any]] = field(default_factory=set)


_streams: weakref.WeakKeyDictionary[web.Application, _Streams] = weakref.WeakKeyDictionary()


def event_json(event: Event) -> str:
    """The compact JSON of an event (§4): the SSE `data` line and the webhook body."""
    return json.dumps(event_view(event), separators=(",", ":"))


def parse_event_id(value: str, name: str) -> StreamId:
    """A stream id `<ms>-<seq>` (or `<ms>`) as a pair; a 422 naming `name` when malformed."""
    found = _ID.fullmatch(value.strip())
    if found is None:
        raise ValidationError.of(name, "must be an event id such as 1712345678901-0")
    ms, seq = int(found[1]), int(found[2] or 0)
    if ms > _MAX_ID_PART or seq > _MAX_ID_PART:
        raise ValidationError.of(name, "is out of range")
    return ms, seq


def _filter(query: Mapping[str, str]) -> Callable[[Event], bool]:
    types = {t.strip() for t in query.get("types", "").split(",") if t.strip()}
    unknown = sorted(types - set(EVENT_TYPES))
    if unknown:
        raise ValidationError.of(
            "types", f"unknown event type {unknown[0]!r}; known: {', '.join(EVENT_TYPES)}"
        )
    queue = query.get("queue") or None
    agent_id = query.get("agent_id") or None

    def match(event: Event) -> bool:
        return (
            (not types or event.type in types)
            and (queue is None or event.fields.get("queue") == queue)
            and (agent_id is None or event.fields.get("agent_id") == agent_id)
        )

    return match


async def _log_info(redis: Redis, key: str) -> dict[str, Any] | None:
    """XINFO STREAM of the log, or None when nothing was ever appended."""
    try:
        return await redis.xinfo_stream(key)
    except ResponseError:
        return None


def _gap(info: dict[str, Any] | None, after: StreamId) -> str | None:
    """The oldest id kept when events after `after` have been trimmed away, else None."""
    if info is None or after == (0, 0) or info.get("first-entry") is None:
        return None
    if info.get("entries-added", info["length"] + 1) <= info["length"]:
        return None  # nothing was ever trimmed
    oldest = text(info["first-entry"][0])
    return oldest if parse_event_id(oldest, "oldest") > after else None


def _frame(event: Event) -> bytes:
    return f"id: {event.id}\nevent: {event.type}\ndata: {event_json(event)}\n\n".encode()


async def stream_events(request: web.Request) -> web.StreamResponse:
    """GET /v1/events: events as SSE, resumable by `Last-Event-ID` or `?after=`, filtered."""
    match = _filter(request.query)
    header = request.headers.get("Last-Event-ID")
    resume, name = (header, "Last-Event-ID") if header else (request.query.get("after"), "after")
    redis = request.app[REDIS]
    key = request.app[ENGINE].keys.events
    info = await _log_info(redis, key)
    gap = None
    if resume is None:
        cursor = text(info["last-generated-id"]) if info else "0-0"
    else:
        after = parse_event_id(resume, name)
        cursor = f"{after[0]}-{after[1]}"
        gap = _gap(info, after)

    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    try:
        if gap is not None:
            data = json.dumps({"oldest_id": gap, "after": resume}, separators=(",", ":"))
            await response.write(f"event: gap\ndata: {data}\n\n".encode())
        await _pump(request, response, redis, key, cursor, match)
        await response.write_eof()
    except ConnectionError:
        pass  # the client went away
    except RedisError as error:
        # The response has begun, so no problem document: end it, the client resumes.
        log.warning("event stream ended: store error %s", type(error).__name__)
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
    return response


async def _pump(
    request: web.Request,
    response: web.StreamResponse,
    redis: Redis,
    key: str,
    cursor: str,
    match: Callable[[Event], bool],
) -> None:
    """Write events after `cursor` until the client leaves or the application shuts down."""
    loop = asyncio.get_running_loop()
    streams = _streams.setdefault(request.app, _Streams())
    last_write = loop.time()
    while not streams.closing and not _gone(request):
        wait_s = last_write + KEEPALIVE_S - loop.time()
        if wait_s <= 0:
            await response.write(b": keep-alive\n\n")
            last_write = loop.time()
            continue
        entries = await _read(streams, redis, key, cursor, wait_s)
        if entries is None:
            return
        frames = []
        for entry_id, fields in entries:
            event = codec.event(text(entry_id), fields)
            cursor = event.id
            if match(event):
                frames.append(_frame(event))
        if frames:
            await response.write(b"".join(frames))
            last_write = loop.time()
            EVENT_DELIVERIES.labels(sink="sse", result="delivered").inc(len(frames))


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _read(
    streams: _Streams, redis: Redis, key: str, cursor: str, wait_s: float
) -> list[tuple[bytes, dict[bytes, bytes]]] | None:
    """Entries after `cursor`, waiting up to `wait_s`; None when the application shuts down."""
    # BLOCK 0 would wait for ever: at least 1 ms. The read holds one pooled connection.
    read = redis.xread({key: cursor}, count=READ_COUNT, block=max(1, int(wait_s * 1000)))
    task = asyncio.ensure_future(read)
    streams.reads.add(task)
    try:
        reply = await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if streams.closing and (current is None or not current.cancelling()):
            return None
        raise
    finally:
        streams.reads.discard(task)
    # RESP2 (the client's default): [[key, entries]].
    return (
        cast(list[tuple[bytes, dict[bytes, bytes]]], cast(list[Any], reply)[0][1]) if reply else []
    )


async def close_streams(app: web.Application) -> None:
    """An `on_shutdown` handler: end every open event stream of `app` without waiting."""
    streams = _streams.setdefault(app, _Streams())
    streams.closing = True
    for task in list(streams.reads):
        task.cancel()
