"""The machine's one reader of the event log under `serve --workers` (SPEC §8, §9).

Without it, every worker with an event stream open reads the whole log: each pays for the
events of its siblings' lifecycles, and the more workers, the more each pays. Instead the parent
reads the log once (a thread with its own event loop, the same reader as a process's,
`LogReader`: parked while nothing is wanted, the replicas' ceiling under `replicated`) and sends
each worker, over a socket pair, only the entries under the keys its streams asked for
(`FeedKey`: a type, or a queue or an agent with a type). The worker's hub (`FedHub`) fans them
out to its streams as it would its own reads.

The hand-over: a worker asks for new keys with the log's live end it saw; the reader takes them
between two batches and answers with its position, up to which the stream catches up from the
log itself; every later entry under the keys is sent. A worker that falls FEED_BUFFER_BYTES
behind is cut off; it ends its streams (their clients resume by Last-Event-ID) and is started
again by the parent with a new feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
import uvloop
from redis.asyncio import Redis

from router.events.sse import (
    FEED_ACK,
    FEED_ENTRIES,
    FEED_READ_BYTES,
    RETRY_S,
    FeedKey,
    LogReader,
    field_keys,
    log_id,
    no_ceiling,
    reader_client,
)
from router.settings import ServiceSettings
from router.store import codec
from router.store.codec import text
from router.store.engine import Entry
from router.store.keys import Keys
from router.store.replication import replica_ceiling
from router.store.sentinel import watching

log = logging.getLogger("router.events.feed")

FEED_BUFFER_BYTES = 64 << 20
"""Entries waiting to be written to one worker; past it the worker is cut off."""
STOP_TIMEOUT_S = 5.0


def event_fields(raw_id: bytes, fields: dict[bytes, bytes]) -> Mapping[str, Any] | None:
    """The fields of an entry's event; None when it cannot be decoded (the worker logs it)."""
    try:
        return codec.event(text(raw_id), fields).fields
    except Exception:
        return None


@dataclass(eq=False)
class Subscriber:
    """A worker's end: the keys it asked for and what is on its way to it."""

    writer: asyncio.StreamWriter
    keys: set[FeedKey] = field(default_factory=set)
    field_types: Counter[str] = field(default_factory=Counter)
    """Of the keys naming a queue or an agent: how many are of each type ("" every type)."""
    batch: list[Entry] = field(default_factory=list)

    def update(self, added: list[list[str]], removed: list[list[str]]) -> None:
        """Take the keys `added`, give up those `removed`."""
        for kind, name, etype in added:
            if (kind, name, etype) not in self.keys and kind != "all":
                self.field_types[etype] += 1
            self.keys.add((kind, name, etype))
        for kind, name, etype in removed:
            if (kind, name, etype) in self.keys and kind != "all":
                self.field_types[etype] -= 1
            self.keys.discard((kind, name, etype))
        self.field_types = +self.field_types  # no zero counts: `in` means wanted

    def wants_type(self, etype: str) -> bool:
        """Whether a key takes every event of type `etype`."""
        return ("all", "", "") in self.keys or ("all", "", etype) in self.keys

    def may_want_fields(self, etype: str) -> bool:
        """Whether a key naming a queue or an agent may take an event of type `etype`."""
        return etype in self.field_types or "" in self.field_types

    def wants_fields(self, etype: str, fields: Mapping[str, Any] | None) -> bool:
        """Whether a key naming a queue or an agent takes an event with `fields`."""
        if fields is None:
            return True  # undecodable: the worker's hub logs and counts it
        return any(
            (kind, value, etype) in self.keys or (kind, value, "") in self.keys
            for kind, value in field_keys(fields)
        )

    def send(self, message: list[Any]) -> bool:
        """Write `message`; False when the worker is gone, or cut off because too much waits
        for it."""
        if self.writer.transport.is_closing():  # gone (reset): its serve() ends it
            return False
        self.writer.write(msgpack.packb(message))
        if self.writer.transport.get_write_buffer_size() <= FEED_BUFFER_BYTES:
            return True
        log.error("a worker fell %d bytes behind the event feed: cut off", FEED_BUFFER_BYTES)
        self.writer.transport.abort()
        return False


class FeedServer(LogReader):
    """Reads the log once for the workers and sends each what its keys take."""

    def __init__(self, settings: ServiceSettings, redis: Redis) -> None:
        super().__init__(redis, Keys(settings.namespace).events)
        self.settings = settings
        self.subscribers: set[Subscriber] = set()
        self.started = asyncio.Event()

    def idle(self) -> bool:
        """Whether no worker asked for anything."""
        return not any(s.keys for s in self.subscribers)

    def deliver(self, entries: list[Entry]) -> None:
        """Send each worker the entries under its keys, in one message per batch."""
        subscribers = [s for s in self.subscribers if s.keys]
        for raw_id, fields in entries:
            etype = fields.get(b"t", b"").decode(errors="replace")
            decoded: list[Mapping[str, Any] | None] = []  # at most once, when a key needs it
            for subscriber in subscribers:
                if subscriber.wants_type(etype):
                    subscriber.batch.append((raw_id, fields))
                elif subscriber.may_want_fields(etype):
                    if not decoded:
                        decoded.append(event_fields(raw_id, fields))
                    if subscriber.wants_fields(etype, decoded[0]):
                        subscriber.batch.append((raw_id, fields))
        if entries:
            self.position = log_id(text(entries[-1][0]))
        for subscriber in subscribers:
            if subscriber.batch:
                batch, subscriber.batch = subscriber.batch, []
                if not subscriber.send([FEED_ENTRIES, batch]):
                    self.subscribers.discard(subscriber)

    async def serve(self, sock: socket.socket) -> None:
        """One worker's feed, until it closes: apply its messages, each answered with the
        position from which its keys hold."""
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        await self.started.wait()
        subscriber = Subscriber(writer)
        self.subscribers.add(subscriber)
        unpacker = msgpack.Unpacker(raw=False)
        try:
            while data := await reader.read(FEED_READ_BYTES):
                unpacker.feed(data)
                for seq, (ms, sq), added, removed in unpacker:
                    if added:
                        self.resume((ms, sq))  # a parked reader: nothing is wanted yet
                    subscriber.update(added, removed)
                    if subscriber.keys:
                        self.wanted.set()
                    if not subscriber.send([FEED_ACK, seq, list(self.position)]):
                        return
        except ConnectionError:
            pass
        finally:
            self.subscribers.discard(subscriber)
            writer.close()

    async def run(self, stop: asyncio.Event) -> None:
        """Start at the log's live end (once the store answers), then read until `stop`."""
        failing = False
        while not stop.is_set():
            try:
                self.ceiling = await replica_ceiling(self.settings, self.redis) or no_ceiling
                await self.start()
                break
            except Exception as error:  # the store's, or a bug: never the end of the feeds
                if not failing:
                    log.warning("event feed: cannot start (%s); retrying", type(error).__name__)
                failing = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RETRY_S)
        self.started.set()
        await super().run(stop)


class MachineReader:
    """The parent's thread that runs the FeedServer on an event loop of its own; `attach` gives
    it a worker's end of a socket pair."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="event-feed", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._server: FeedServer | None = None
        self._reading: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Start the thread; return once it takes workers, or has failed to (`alive`)."""
        self._thread.start()
        self._ready.wait()

    def alive(self) -> bool:
        """Whether the thread runs (it ends only when stopped, unless a bug ends it)."""
        return self._thread.is_alive() and self._server is not None

    def attach(self, sock: socket.socket) -> None:
        """Feed the worker at the other end of `sock` (from any thread)."""
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._serve_worker, sock)
        except RuntimeError:  # its loop is closed: the worker's feed ends, and it stops
            sock.close()

    def stop(self) -> None:
        """Stop reading at once (a blocked read of the log is cancelled) and end every feed;
        wait (bounded) for the thread."""
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed: the thread ended
                self._loop.call_soon_threadsafe(self._end)
        if self._thread.ident is not None:  # started
            self._thread.join(STOP_TIMEOUT_S)

    def _end(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._reading is not None:
            self._reading.cancel()

    def _main(self) -> None:
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(self._run())
        except Exception as error:  # a bug: the supervisor sees the thread gone
            log.error("the machine's event reader ended: %s", type(error).__name__)
        finally:
            self._server = None

    async def _run(self) -> None:
        async with watching(self.settings):  # the reader's loop follows the primary too
            try:
                self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
                redis = reader_client(self.settings)
                self._server = FeedServer(self.settings, redis)
            finally:
                self._ready.set()
            self._reading = asyncio.create_task(self._server.run(self._stop))
            try:
                with contextlib.suppress(asyncio.CancelledError):  # stopped (`_end`)
                    await self._reading
            finally:
                for task in self._tasks:
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                await redis.aclose()

    def _serve_worker(self, sock: socket.socket) -> None:
        assert self._server is not None
        task = asyncio.create_task(self._server.serve(sock), name="event-feed-worker")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
