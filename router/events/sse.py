"""GET /v1/events: the durable event log as Server-Sent Events (§4), from one reader per process
(under `serve --workers`, per machine).

One `EventHub` per application reads the log (XREAD BLOCK on a connection of its own, outside
`store_timeout_s`) and fans each event out to the open streams that want it; in a worker of
`serve --workers`, a `FedHub` fans out what the machine's one reader (router/events/feed.py)
sends it instead. Streams are indexed by their most selective filter (agent, else queue, else
types, else none), so an event costs the streams it may match, not all of them; idle streams
cost memory, not store connections. Each stream has a bounded buffer: a client that does not
keep up is dropped and resumes by `Last-Event-ID`. An event that cannot be rendered is logged
(type and id only), counted and skipped; it never ends a stream.

A stream that starts before the hub's position first catches up from the log (XRANGE pages, up
to that position), then joins the hub at the position it reached, in one step with no wait in
between: every later event reaches it live, every earlier one came from the catch-up, so the
hand-over neither loses nor repeats an event. With no stream open (durability `local`) the hub
reads nothing; the first stream to open moves it to the live end before its catch-up.

Without `Last-Event-ID` or `?after=` a stream starts at the live end (only events appended after
the request); `?after=0` starts at the oldest event kept. `Last-Event-ID` wins over `?after=`,
since a reconnecting EventSource sends it together with the URL it first used.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import re
import signal
import socket
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from router.api.keys import CONFIG, ENGINE, EVENT_FEED, EVENT_HUB, PRINCIPAL
from router.api.operations import documented
from router.api.views import event_view
from router.domain.fields import ID, NAME
from router.domain.models import EVENT_TYPES, Event
from router.domain.validation import whole_number
from router.errors import RouterError, StoreUnavailable, TooManyRequests, ValidationError
from router.metrics.process import EVENT_DELIVERIES, EVENT_STREAMS, EVENT_STREAMS_DROPPED
from router.settings import ServiceSettings
from router.store import codec
from router.store.codec import text
from router.store.connection import StreamReads, blocking_client
from router.store.engine import Entry
from router.store.replication import replica_ceiling

log = logging.getLogger("router.events")

KEEPALIVE_S = 15.0
"""Seconds without a write after which a `: keep-alive` comment is sent."""
READ_BLOCK_S = 5.0
"""The hub's longest XREAD wait."""
READ_COUNT = 500
"""Entries per XREAD of the hub, and per catch-up page."""
CATCH_UP_WRITE_S = 15.0
"""How long a stream's client may take to accept one page of its catch-up; past it the client is
dropped (until it catches up, the buffer of BUFFER_EVENTS does not apply)."""
BUFFER_EVENTS = 2000
"""Events a stream may have waiting for its client; past it the client is dropped. Frames are
shared by every stream that gets them: a full buffer costs pointers, not copies."""
SWEEP_S = 1.0
"""How often the hub looks for streams whose client went away."""
SWEEP_CHUNK = 500
"""Streams looked at between two yields to the event loop: a sweep never stalls requests."""
RETRY_S = 1.0
"""The hub's pause after a failed read."""
HELD_POLL_S = 0.005
"""The hub's longest XREAD wait while it holds events above its ceiling."""

_ID = re.compile(r"(\d{1,20})-(\d{1,20})|(0)")
"""A whole event id `<ms>-<seq>`, or `0`: before every event. A bare `<ms>` is refused: read as
`<ms>-0` it would skip the event `<ms>-0` itself."""
_MAX_ID_PART = 2**64 - 1
StreamId = tuple[int, int]
Ceiling = Callable[[StreamId], Awaitable[StreamId]]
"""Given the last id read, the highest id that may be delivered: all of them with durability
`local`, those a replica holds with `replicated` (router/store/replication.py)."""


def event_json(event: Event) -> bytes:
    """The compact JSON of an event (§4): the SSE `data` line and the webhook body."""
    return orjson.dumps(event_view(event), option=orjson.OPT_NON_STR_KEYS)


def parse_event_id(value: str, name: str) -> StreamId:
    """A stream id `<ms>-<seq>` (or `0`) as a pair; a 422 naming `name` when malformed."""
    found = _ID.fullmatch(value.strip())
    if found is None:
        raise ValidationError.of(name, "must be an event id such as 1712345678901-0, or 0")
    if found[3]:
        return 0, 0
    ms, seq = int(found[1]), int(found[2])
    if ms > _MAX_ID_PART or seq > _MAX_ID_PART:
        raise ValidationError.of(name, "is out of range")
    return ms, seq


def log_id(entry_id: str) -> StreamId:
    """The id of an entry Redis returned (`<ms>-<seq>`, well formed) as a pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def id_text(stream_id: StreamId) -> str:
    """A stream id as Redis spells it."""
    return f"{stream_id[0]}-{stream_id[1]}"


def render(entry_id: str, fields: dict[bytes, bytes]) -> tuple[Event, bytes] | None:
    """An entry of the log as an event and its SSE frame; None (logged, counted) if it cannot be
    rendered, so that one bad event never ends a stream or takes its neighbours with it."""
    try:
        event = codec.event(entry_id, fields)
        head = f"id: {event.id}\nevent: {event.type}\ndata: ".encode()
        frame = b"".join((head, event_json(event), b"\n\n"))
    except Exception as error:  # RecursionError included: whatever the entry holds
        kind = fields.get(b"t", b"?").decode(errors="replace")
        # The type and id only: a message could quote the event's data.
        log.error("event %s (%s) cannot be rendered: %s", entry_id, kind, type(error).__name__)
        EVENT_DELIVERIES.labels(sink="sse", result="skipped").inc()
        return None
    return event, frame


@dataclass(frozen=True)
class Filter:
    """What a stream wants: `?types=`, `?queue=`, `?agent_id=` (empty: everything)."""

    types: frozenset[str] = frozenset()
    queue: str | None = None
    agent_id: str | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Filter:
        """The filter of a request's query; a 422 naming the parameter when malformed."""
        types = frozenset(t.strip() for t in query.get("types", "").split(",") if t.strip())
        if "types" in query and not types:
            raise ValidationError.of("types", "must name at least one event type")
        unknown = sorted(types - set(EVENT_TYPES))
        if unknown:
            raise ValidationError.of(
                "types", f"unknown event type {unknown[0]!r}; known: {', '.join(EVENT_TYPES)}"
            )
        for name, rule in (("queue", NAME), ("agent_id", ID)):
            problem = rule.problem(query[name]) if name in query else None
            if problem:
                raise ValidationError.of(name, problem)
        return cls(types, query.get("queue"), query.get("agent_id"))

    def matches(self, event: Event) -> bool:
        """Whether the stream wants `event`."""
        return (
            (not self.types or event.type in self.types)
            and (self.queue is None or self.queue in event_queues(event.fields))
            and (self.agent_id is None or event.fields.get("agent_id") == self.agent_id)
        )

    def index_keys(self) -> list[tuple[str, str]]:
        """Where the hub files the stream: under its most selective filter."""
        if self.agent_id is not None:
            return [("agent", self.agent_id)]
        if self.queue is not None:
            return [("queue", self.queue)]
        if self.types:
            return [("type", t) for t in sorted(self.types)]
        return [("all", "")]


FIELD_KINDS = ("queue", "agent")
"""Index kinds that name a field of the event."""


def event_queues(fields: Mapping[str, Any]) -> list[str]:
    """The queues an event concerns, for `?queue=`: its `queue`, and the queue a transfer left
    (`from_queue`)."""
    return [v for v in (fields.get("queue"), fields.get("from_queue")) if isinstance(v, str)]


def field_keys(fields: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    """The queue and agent index keys of an event's fields."""
    for queue in event_queues(fields):
        yield ("queue", queue)
    agent_id = fields.get("agent_id")
    if isinstance(agent_id, str):
        yield ("agent", agent_id)


def candidate_keys(event: Event) -> Iterable[tuple[str, str]]:
    """The index keys under which streams that may want `event` are filed (each stream once)."""
    yield ("all", "")
    yield ("type", event.type)
    yield from field_keys(event.fields)


@dataclass(eq=False)
class Stream:
    """One open event stream: its filter, its position and the frames waiting for its client."""

    filter: Filter
    cursor: StreamId
    """The id of the last event this stream has passed (delivered or filtered out)."""
    transport: asyncio.Transport | None = None
    buffer: deque[bytes] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: bool = False

    def push(self, event_id: StreamId, frame: bytes) -> bool:
        """Queue a frame for the client; False when the buffer is full (the stream is dropped)."""
        if event_id <= self.cursor:
            return True  # the catch-up already passed it
        self.cursor = event_id
        if len(self.buffer) >= BUFFER_EVENTS:
            self.drop()
            return False
        self.buffer.append(frame)
        self.wake.set()
        return True

    def drop(self) -> None:
        """End the stream at once: its client is too slow (a write to it may be stuck)."""
        self.dropped = True
        self.wake.set()
        if self.transport is not None:
            self.transport.abort()

    def gone(self) -> bool:
        """Whether the client went away."""
        return self.transport is None or self.transport.is_closing()


async def no_ceiling(last_read: StreamId) -> StreamId:
    """Every event read may be delivered (durability `local`)."""
    return last_read


class LogReader:
    """Reads the log on a connection of its own from `position` and hands each batch to
    `deliver`; while nothing is wanted (durability `local`) it parks, reading nothing. The
    reader of a process's streams (EventHub) and of a machine's workers (router/events/feed.py)."""

    def __init__(self, redis: Redis, key: str, ceiling: Ceiling = no_ceiling) -> None:
        self.redis = redis
        self.key = key
        self.reads = StreamReads(redis, key)
        self.ceiling = ceiling
        self.position: StreamId = (0, 0)
        """Every event up to this id has been handed to those that want it."""
        self.wanted = asyncio.Event()
        """Set when something becomes wanted: a parked reader wakes."""
        self._read_from: StreamId = (0, 0)
        self._held: list[Entry] = []
        self._failing = False
        self._parked = False
        """Whether the reader waits for something to be wanted, reading nothing (its position
        goes stale)."""

    def idle(self) -> bool:
        """Whether nothing is wanted."""
        raise NotImplementedError

    def deliver(self, entries: list[Entry]) -> None:
        """Hand `entries` (in order) to those that want them and move `position` past them."""
        raise NotImplementedError

    async def start(self) -> None:
        """Start at the log's live end."""
        try:
            last = text((await self.redis.xinfo_stream(self.key))["last-generated-id"])
        except ResponseError:  # nothing was ever appended
            last = "0-0"
        self.position = self._read_from = parse_event_id(last, "log")

    def resume(self, live_end: StreamId) -> None:
        """Before something becomes wanted: move a parked reader, whose position is stale, to
        `live_end` (the log's last id), so that what was appended since it parked is read by the
        catch-up of whoever wants it, not by the reader. Nothing is wanted, so none misses a
        thing."""
        if self._parked and self.idle():
            self.position = self._read_from = max(self.position, live_end)

    async def run(self, stop: asyncio.Event) -> None:
        """Read the log and hand its events on until `stop`; while nothing is wanted (durability
        `local`), read nothing: a router whose clients use webhooks only, or a machine whose
        workers hold no stream, spends nothing on the log here."""
        while not stop.is_set():
            # Under `replicated` the catch-up could not tell what a replica holds: read on.
            if self.idle() and self.ceiling is no_ceiling:
                await self._park(stop)
                continue
            try:
                self.deliver(await self._read())
            except (RedisError, OSError) as error:
                if not self._failing:
                    log.warning("event reader: store error %s; retrying", type(error).__name__)
                self._failing = True
                # Held events are read again: the store may be another primary now.
                self._held, self._read_from = [], self.position
                with contextlib.suppress(RedisError, OSError):
                    await self.reads.close()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RETRY_S)
                continue
            except Exception as error:  # a bug: logged, and the reader goes on past the batch
                log.error("event reader: unexpected %s", type(error).__name__)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RETRY_S)
                continue
            if self._failing:
                log.info("event reader: reading again")
                self._failing = False

    async def _park(self, stop: asyncio.Event) -> None:
        """Wait until something is wanted, or `stop`; the reads' connection is closed meanwhile
        (no health check runs on it while it is kept)."""
        # Parked before the close's await: what becomes wanted meanwhile resumes it and wakes it.
        self._parked = True
        self.wanted.clear()
        try:
            await self.reads.close()
            waits = [asyncio.ensure_future(e.wait()) for e in (self.wanted, stop)]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()
        finally:
            self._parked = False

    async def _read(self) -> list[Entry]:
        if len(self._held) >= READ_COUNT:  # no replica confirms them: read no more meanwhile
            await asyncio.sleep(HELD_POLL_S)
            new: list[Entry] = []
        else:
            block_ms = int((HELD_POLL_S if self._held else READ_BLOCK_S) * 1000)
            new = await self.reads.read(id_text(self._read_from), READ_COUNT, block_ms)
        if new:
            self._read_from = log_id(text(new[-1][0]))
        entries = self._held + new
        if not entries:
            return []
        upto = await self.ceiling(log_id(text(entries[-1][0])))
        ready = [e for e in entries if log_id(text(e[0])) <= upto]
        self._held = entries[len(ready) :]
        return ready


class StreamFanout:
    """The open event streams of this process and how an event reaches those that want it;
    the events come from the process's own reader (EventHub) or from the machine's (FedHub)."""

    def __init__(self, max_per_key: int) -> None:
        self.max_per_key = max_per_key
        self.position: StreamId = (0, 0)
        """Every event up to this id has been handed to the streams that want it."""
        self.wanted = asyncio.Event()
        self.closing = False
        self._index: defaultdict[tuple[str, str], set[Stream]] = defaultdict(set)
        self._streams: set[Stream] = set()
        self._per_key: defaultdict[str, int] = defaultdict(int)
        self.catch_up_turn = asyncio.Semaphore(1)
        """Held while a stream reads and renders a page of its catch-up: one at a time, so that
        many streams catching up at once (each page a few ms of CPU) leave the process's other
        requests a turn between pages, instead of queueing behind all of their pages."""
        self._field_types: Counter[str] = Counter()
        """Of the streams filed under a queue or an agent (an event of a type they want must be
        decoded to know if they want it): how many want each type, "" counting those that want
        every type."""

    @contextlib.contextmanager
    def admission(self, owner: str) -> Iterator[None]:
        """Count a stream of API key `owner` while it is open; 429 past `max_per_key`."""
        if self._per_key[owner] >= self.max_per_key:
            raise TooManyRequests(
                f"this key has {self.max_per_key} event streams open on this router (the "
                "service's max_streams_per_key); close one first"
            )
        self._per_key[owner] += 1
        EVENT_STREAMS.inc()
        try:
            yield
        finally:
            EVENT_STREAMS.dec()
            self._per_key[owner] -= 1
            if not self._per_key[owner]:
                del self._per_key[owner]

    async def prepare(self, stream: Stream, live_end: StreamId) -> None:
        """Before `stream` catches up and joins (`live_end`: the log's last id): make sure that
        every event it wants after `position` will reach the hub."""
        raise NotImplementedError

    def idle(self) -> bool:
        """Whether no stream is joined."""
        return not self._streams

    def join(self, stream: Stream) -> None:
        """Feed `stream` every event after the hub's position from now on."""
        self._streams.add(stream)
        self.wanted.set()
        for key in stream.filter.index_keys():
            self._index[key].add(stream)
            if key[0] in FIELD_KINDS:
                self._field_types.update(stream.filter.types or ("",))

    def leave(self, stream: Stream) -> None:
        """Stop feeding `stream`."""
        if stream not in self._streams:
            return
        self._streams.discard(stream)
        for key in stream.filter.index_keys():
            streams = self._index.get(key)
            if streams is not None:
                streams.discard(stream)
                if key[0] in FIELD_KINDS:
                    self._field_types.subtract(stream.filter.types or ("",))
                    self._field_types = +self._field_types  # no zero counts: `in` means wanted
                if not streams:
                    del self._index[key]

    def close(self) -> None:
        """End every stream (application shutdown)."""
        self.closing = True
        for stream in self._streams:
            stream.wake.set()

    def deliver(self, entries: list[Entry]) -> None:
        """Hand each event to the streams it matches. No await: a stream joins between batches."""
        for raw_id, fields in entries:
            entry_id = text(raw_id)
            event_id = log_id(entry_id)
            if self._may_want(fields):
                rendered = render(entry_id, fields)
                if rendered is not None:
                    self._fan_out(event_id, *rendered)
            self.position = event_id

    def _may_want(self, fields: dict[bytes, bytes]) -> bool:
        """Whether a stream may want an entry, before it is decoded: one filed under its type or
        under every event, or one filed under a queue or an agent that wants its type (then it
        must be decoded to see the queue or agent)."""
        index = self._index
        if not index:
            return False
        if ("all", "") in index:
            return True
        kind = fields.get(b"t", b"").decode(errors="replace")
        wanted = self._field_types
        return ("type", kind) in index or "" in wanted or kind in wanted

    def _fan_out(self, event_id: StreamId, event: Event, frame: bytes) -> None:
        for key in candidate_keys(event):
            for stream in list(self._index.get(key, ())):
                if stream.filter.matches(event) and not stream.push(event_id, frame):
                    self.leave(stream)  # too slow: dropped, it resumes by Last-Event-ID
                    EVENT_STREAMS_DROPPED.inc()

    async def sweep(self, stop: asyncio.Event) -> None:
        """Wake the streams whose client went away, so that their handlers end."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SWEEP_S)
            for i, stream in enumerate(list(self._streams), start=1):
                if stream.gone():
                    stream.wake.set()
                if i % SWEEP_CHUNK == 0:
                    await asyncio.sleep(0)


class EventHub(StreamFanout, LogReader):
    """The streams of a process that reads the log itself (one `serve`, or a worker when the
    machine's reader is not there)."""

    def __init__(
        self, redis: Redis, key: str, max_per_key: int, ceiling: Ceiling = no_ceiling
    ) -> None:
        LogReader.__init__(self, redis, key, ceiling)
        StreamFanout.__init__(self, max_per_key)

    async def prepare(self, stream: Stream, live_end: StreamId) -> None:
        """A parked reader moves to `live_end` (LogReader.resume)."""
        self.resume(live_end)

    async def aclose(self) -> None:
        """Close the reader's store client."""
        await self.redis.aclose()


FeedKey = tuple[str, str, str]
"""What a worker asks the machine's reader for: (`all`, "", type) or (`queue`|`agent`, name,
type), the type "" meaning every type."""
FEED_ENTRIES = 0
"""Parent to worker: `[FEED_ENTRIES, [[id, fields], ...]]`, entries of the log in order."""
FEED_ACK = 1
"""Parent to worker: `[FEED_ACK, seq, [ms, seq]]`, a worker's message applied at that position."""
FEED_READ_BYTES = 1 << 16
FEED_ACK_TIMEOUT_S = 5.0
"""How long a stream waits for the machine's reader to take its filter before it gets a 503."""


def feed_keys(wanted: Filter) -> list[FeedKey]:
    """The keys under which the machine's reader sends a worker what `wanted` may match."""
    types = sorted(wanted.types) or [""]
    kind, name = wanted.index_keys()[0]  # the most selective filter, as the hub files it
    if kind in FIELD_KINDS:
        return [(kind, name, t) for t in types]
    return [("all", "", t) for t in types]


def stop_this_process() -> None:
    """A graceful stop (SIGTERM to itself): the parent starts the worker again."""
    os.kill(os.getpid(), signal.SIGTERM)


class FedHub(StreamFanout):
    """The streams of a worker of `serve --workers`, fed by the machine's one reader (the parent,
    router/events/feed.py) over a socket pair: the worker tells it which keys its streams want
    (`feed_keys`) and gets only the entries under them, so that a worker does not pay for the
    events of its siblings' lifecycles."""

    def __init__(
        self,
        sock: socket.socket,
        max_per_key: int,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(max_per_key)
        self.sock = sock
        self.on_lost = on_lost
        """Called when the feed ends while the worker serves (default: stop_this_process)."""
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.StreamReader | None = None
        self._keys: Counter[FeedKey] = Counter()
        self._taken: dict[FeedKey, asyncio.Future[None]] = {}
        """Each key asked for: done once the machine's reader has taken it."""
        self._of_stream: dict[Stream, list[FeedKey]] = {}
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._seq = itertools.count(1)

    async def start(self) -> None:
        """Connect to the machine's reader."""
        self._reader, self._writer = await asyncio.open_unix_connection(sock=self.sock)

    async def prepare(self, stream: Stream, live_end: StreamId) -> None:
        """Ask the machine's reader for the keys of `stream` it was not sending yet, and wait
        until it takes them (also for keys another stream asked for a moment ago): from the
        position it answers, every event under them reaches this hub."""
        if self.closing:
            raise StoreUnavailable("the machine's event reader is gone")
        keys = feed_keys(stream.filter)
        self._of_stream[stream] = keys
        added = [k for k in keys if not self._keys[k]]
        self._keys.update(keys)
        if added:
            taken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._taken.update(dict.fromkeys(added, taken))
            seq = self._send(live_end, added, [])
            if seq is not None:
                self._acks[seq] = taken
            else:
                taken.set_exception(StoreUnavailable("the machine's event reader is gone"))
        waits = {self._taken[k] for k in keys if not self._taken[k].done()}
        if waits:
            done, _ = await asyncio.wait(waits, timeout=FEED_ACK_TIMEOUT_S)
            if len(done) < len(waits):
                raise StoreUnavailable("the machine's event reader did not answer in time")
        for key in keys:
            self._taken[key].result()  # raises when the feed ended before the answer

    def leave(self, stream: Stream) -> None:
        """Stop feeding `stream`; the keys no stream wants any more are given up."""
        super().leave(stream)
        keys = self._of_stream.pop(stream, None)
        if keys is None:
            return
        self._keys.subtract(keys)
        removed = [k for k in keys if self._keys[k] <= 0]
        for key in removed:
            del self._keys[key]
            del self._taken[key]
        if removed:
            self._send(self.position, [], removed)

    def _send(self, live_end: StreamId, added: list[FeedKey], removed: list[FeedKey]) -> int | None:
        """Send a message to the machine's reader; its number, None when the feed is closed."""
        if self._writer is None or self._writer.is_closing():
            return None
        seq = next(self._seq)
        self._writer.write(msgpack.packb([seq, list(live_end), added, removed]))
        return seq

    async def run(self, stop: asyncio.Event) -> None:
        """Hand what the machine's reader sends to the streams; when it is gone, end every
        stream and stop this worker, which the parent starts again with a new feed."""
        try:
            await self._follow()
        except Exception as error:  # a bug: this worker's feed is lost with it
            log.error("event feed: unexpected %s", type(error).__name__)
        if stop.is_set():
            return
        log.error("the machine's event reader is gone: stopping this worker to start it again")
        self.close()
        for taken in self._acks.values():
            if not taken.done():
                taken.set_exception(StoreUnavailable("the machine's event reader is gone"))
        self._acks.clear()
        (self.on_lost or stop_this_process)()

    async def _follow(self) -> None:
        """Until the feed ends: entries to the streams, answers to the streams waiting."""
        assert self._reader is not None
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        with contextlib.suppress(ConnectionError):  # cut off: as when it ends
            while data := await self._reader.read(FEED_READ_BYTES):
                unpacker.feed(data)
                for message in unpacker:
                    if message[0] == FEED_ENTRIES:
                        self.deliver(message[1])
                        continue
                    _, seq, (ms, sq) = message
                    self.position = max(self.position, (ms, sq))
                    taken = self._acks.pop(seq, None)
                    if taken is not None and not taken.done():
                        taken.set_result(None)

    async def aclose(self) -> None:
        """Close the connection to the machine's reader."""
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()


def reader_client(config: ServiceSettings) -> Redis:
    """A log reader's own client: one connection kept by its reads (StreamReads), one for its
    other commands (the log's end, the replicas' positions)."""
    return blocking_client(config, READ_BLOCK_S, size=2)


async def events_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the event hub and its tasks; its own reader and store connection, or,
    in a worker of `serve --workers`, the feed of the machine's reader."""
    config = app[CONFIG].service
    feed = app.get(EVENT_FEED)
    hub: EventHub | FedHub
    if feed is None:
        redis = reader_client(config)
        ceiling = await replica_ceiling(config, redis) or no_ceiling
        hub = EventHub(redis, app[ENGINE].keys.events, config.max_streams_per_key, ceiling)
    else:
        hub = FedHub(feed, config.max_streams_per_key)
    await hub.start()
    app[EVENT_HUB] = hub
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(hub.run(stop), name="event-reader"),
        asyncio.create_task(hub.sweep(stop), name="event-sweeper"),
    ]
    try:
        yield
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
        await hub.aclose()


async def close_streams(app: web.Application) -> None:
    """An `on_shutdown` handler: end every open event stream of `app` without waiting."""
    if EVENT_HUB in app:
        app[EVENT_HUB].close()


# The handler


def _limit(query: Mapping[str, str]) -> int | None:
    value = query.get("limit")
    if value is None:
        return None
    limit = whole_number(value, 1, 1_000_000)
    if limit is None:
        raise ValidationError.of("limit", "must be an integer 1..1000000")
    return limit


FUTURE_ID_MS = 60_000
"""How far a resume point may lie beyond the log's last event: a point further ahead would hold
back every event until that time. The log's ids follow Redis's clock; the margin covers a store
restored on a host whose clock is a little behind (the router's own clock is no measure: it may
be a simulated one, `serve --clock-speed`)."""


def _not_in_the_future(after: StreamId, live_end: StreamId, name: str) -> None:
    """A 422 naming `name` when the resume point `after` lies beyond the log's last event
    `live_end` by more than FUTURE_ID_MS."""
    if after[0] > live_end[0] + FUTURE_ID_MS:
        raise ValidationError.of(name, f"is after the log's last event ({id_text(live_end)})")


def _gap(info: dict[str, Any] | None, after: StreamId) -> str | None:
    """The oldest id kept when events after `after` have been trimmed away, else None."""
    if info is None or after == (0, 0) or info.get("first-entry") is None:
        return None
    if info.get("entries-added", info["length"] + 1) <= info["length"]:
        return None  # nothing was ever trimmed
    oldest = text(info["first-entry"][0])
    return oldest if parse_event_id(oldest, "oldest") > after else None


@documented(
    "streamEvents",
    "The event stream",
    {},
    (429,),
    params=("LastEventId", "After", "Types", "EventQueue", "EventAgent", "EventLimit"),
)
async def stream_events(request: web.Request) -> web.StreamResponse:
    """GET /v1/events: events as SSE, resumable by `Last-Event-ID` or `?after=`, filtered."""
    wanted = Filter.from_query(request.query)
    limit = _limit(request.query)
    header = request.headers.get("Last-Event-ID")
    resume, name = (header, "Last-Event-ID") if header else (request.query.get("after"), "after")
    after = None if resume is None else parse_event_id(resume, name)
    hub, engine = request.app[EVENT_HUB], request.app[ENGINE]
    principal = request.get(PRINCIPAL)
    with hub.admission(principal.name if principal is not None else ""):
        info = await engine.log_info()
        live_end = parse_event_id(text(info["last-generated-id"]) if info else "0-0", "log")
        if after is None:
            start, gap = live_end, None
        else:
            if info is not None:  # without a log (a store that lost it), new ids come later
                _not_in_the_future(after, live_end, name)
            start, gap = after, _gap(info, after)
        stream = Stream(wanted, start, request.transport)
        try:
            await hub.prepare(stream, live_end)
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
                await _serve(request, response, hub, stream, limit)
            except ConnectionError:
                pass  # the client went away
            except RouterError as error:
                # The response has begun, so no problem document: end it, the client resumes.
                log.warning("event stream ended: %s", error.title)
        finally:
            hub.leave(stream)
        if stream.dropped:
            log.warning("event stream dropped: its client fell behind")
        else:
            with contextlib.suppress(ConnectionError):
                await response.write_eof()
        return response


async def _serve(
    request: web.Request,
    response: web.StreamResponse,
    hub: StreamFanout,
    stream: Stream,
    limit: int | None,
) -> None:
    """Catch up from the log to the hub's position, join the hub, then write live frames."""
    engine = request.app[ENGINE]
    left = limit
    while stream.cursor < hub.position and not hub.closing:
        target = hub.position
        frames = []
        async with hub.catch_up_turn:
            if hub.closing:
                return
            entries = await engine.read_log(id_text(stream.cursor), id_text(target), READ_COUNT)
            for raw_id, fields in entries:
                entry_id = text(raw_id)
                rendered = render(entry_id, fields)
                if rendered is not None and stream.filter.matches(rendered[0]):
                    frames.append(rendered[1])
        # Past the page's last entry; or, when nothing is left up to the target, the target.
        full = len(entries) == READ_COUNT
        stream.cursor = parse_event_id(text(entries[-1][0]), "log") if full else target
        try:
            async with asyncio.timeout(CATCH_UP_WRITE_S):
                left = await _write(response, frames, left)
        except TimeoutError:
            stream.drop()  # it resumes by Last-Event-ID
            EVENT_STREAMS_DROPPED.inc()
            return
        if left == 0:
            return
    hub.join(stream)  # at once after the last check: no event can slip between
    loop = asyncio.get_running_loop()
    last_write = loop.time()
    while not hub.closing and not stream.dropped and not stream.gone():
        if stream.buffer:
            frames = list(stream.buffer)
            stream.buffer.clear()
            left = await _write(response, frames, left)
            last_write = loop.time()
            if left == 0:
                return
            continue
        stream.wake.clear()
        wait_s = last_write + KEEPALIVE_S - loop.time()
        if wait_s <= 0:
            await response.write(b": keep-alive\n\n")
            last_write = loop.time()
            continue
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await stream.wake.wait()


async def _write(response: web.StreamResponse, frames: list[bytes], left: int | None) -> int | None:
    """Write `frames` (at most `left` of them); the number still allowed (None: no limit)."""
    if left is not None:
        frames = frames[:left]
        left -= len(frames)
    if frames:
        await response.write(b"".join(frames))
        EVENT_DELIVERIES.labels(sink="sse", result="delivered").inc(len(frames))
    return left
