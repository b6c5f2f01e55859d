"""Webhooks (§4): each configured receiver gets every event of its types, signed, at least once.

Each webhook has a Redis consumer group on the event log, so each event is delivered by one
delivery loop of the router processes: `concurrency` loops per process (default 1), each reading
with a consumer name of its own. A loop delivers its events in log order, one at a time, retrying
with exponential back-off until the receiver answers 2xx; entries left pending by a dead process
are taken over after `CLAIM_IDLE_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from router.api.keys import CLOCK, CONFIG, ENGINE
from router.clock import Clock
from router.config import WebhookConfig
from router.errors import ConfigError, FieldError, StoreUnavailable
from router.events.sse import (
    Ceiling,
    StreamId,
    event_json,
    id_text,
    log_id,
    no_ceiling,
    parse_event_id,
)
from router.metrics.process import EVENT_DELIVERIES
from router.store import codec
from router.store.codec import error_code, text
from router.store.connection import blocking_client
from router.store.engine import Engine, Entry
from router.store.replication import replica_ceiling

log = logging.getLogger("router.webhooks")

RETRY_BASE_S = 0.5
"""The first retry's delay; each further failed attempt doubles it, up to `RETRY_MAX_S`."""
RETRY_MAX_S = 60.0
REQUEST_TIMEOUT_S = 10.0
CLAIM_IDLE_S = 120.0
"""Pending entries idle this long are taken over from their (presumably dead) consumer.

An entry being retried is touched before every attempt, so this must exceed
`RETRY_MAX_S + REQUEST_TIMEOUT_S`, or a live process's retries would be taken over.
"""
RELEASED_MAX = 100
"""Entries a stopping loop looks for among its pending ones (it holds one at a time)."""
STORE_RETRY_S = 1.0
"""The wait after a failed store call before the next."""
READ_BLOCK_S = 5.0
"""Longest XREADGROUP wait; pending entries of dead consumers are looked for in between."""
HELD_WAIT_MS = 50
"""Durability `replicated`: the longest wait for replicas before the ceiling is asked again."""
READ_COUNT = 1
"""One entry at a time: entries read but not yet posted would go idle behind a retried one and
be taken over by another process, out of order."""
CLAIM_CHECK_S = 1.0
"""How often entries of dead consumers are looked for, beside a read: not with every read, which
would cost the store a scan of the group's pending entries per event."""
LOST_LOG_S = 60.0
"""Events lost to the log's trimming are logged at most this often, with the count since."""


def group_name(index: int, url: str) -> str:
    """The consumer group of the webhook `index` with `url`: kept across restarts."""
    return f"webhook:{index}:{hashlib.sha256(url.encode()).hexdigest()[:16]}"


def raise_if_cancelling() -> None:
    """CancelledError if this task was asked to stop: redis-py may swallow a cancellation that
    lands during a call (while it connects, for one)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def error_name(error: BaseException) -> str:
    """A store error's Redis code (`NOGROUP`), else its type: never its message, which may quote
    keys. An engine call's StoreUnavailable is named by the store error it wraps."""
    if isinstance(error, StoreUnavailable) and error.__cause__ is not None:
        error = error.__cause__
    return error_code(error) or type(error).__name__


@dataclass
class Every:
    """Due at most once every `seconds` (the process's monotonic clock: pacing, not routing)."""

    seconds: float
    _last: float = float("-inf")

    def due(self) -> bool:
        """True, and restarts the interval, when `seconds` have passed since the last time."""
        now = time.monotonic()
        if now - self._last < self.seconds:
            return False
        self._last = now
        return True

    def again(self) -> None:
        """Due at the next look."""
        self._last = float("-inf")


async def wait_for_entry(redis: Redis, key: str, position: str) -> None:
    """Until the log `key` holds an entry after `position`, or `READ_BLOCK_S` have passed."""
    block_ms = max(1, int(min(READ_BLOCK_S, CLAIM_IDLE_S) * 1000))
    await redis.xread({key: position}, count=1, block=block_ms)


@dataclass(eq=False)
class LogWaiter:
    """One blocking XREAD per webhook and process, on a connection of its own, which the
    webhook's delivery loops wait on together: a new event wakes one read per process, not one
    per loop."""

    redis: Redis
    key: str
    _read: asyncio.Task[None] | None = None

    async def after(self, position: str) -> None:
        """Until the log holds an entry after `position`, or `READ_BLOCK_S` have passed: the read
        under way, if any (a loop cancelled leaves it to the others), else a new one."""
        if self._read is None or self._read.done():
            self._read = asyncio.create_task(wait_for_entry(self.redis, self.key, position))
        await asyncio.shield(self._read)

    async def close(self) -> None:
        """Stop the read under way, if any, and close the connection."""
        if self._read is not None:
            self._read.cancel()
            await asyncio.gather(self._read, return_exceptions=True)
        await self.redis.aclose()


def signature(secret: bytes, body: bytes) -> str:
    """The `X-ACD-Signature` header of a body: `sha256=<hex HMAC-SHA256>`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


@dataclass
class Delivery:
    """The delivery loop of one webhook in this process."""

    index: int
    hook: WebhookConfig
    secret: bytes
    redis: Redis
    engine: Engine
    clock: Clock
    consumer: str
    session: aiohttp.ClientSession
    ceiling: Ceiling = no_ceiling
    waiter: LogWaiter | None = None
    """Shared with the webhook's other loops in this process; None: waits on its own connection."""
    _own_first: bool = False
    """After a store error: this consumer's pending entries first (the store may be another
    primary now, with an entry read but not yet delivered)."""
    _after: StreamId = (0, 0)
    """The group's position as this delivery last knew it (at its start, then each entry it
    handled): where the group is created again if the store lost it (NOGROUP)."""
    _group_lost: bool = False
    _handled: list[str] = field(default_factory=list)
    """Entries delivered (or not for this webhook): acknowledged by the next read, in its call."""
    _claim_check: Every = field(default_factory=lambda: Every(CLAIM_CHECK_S))
    _lost_unlogged: int = 0
    _lost_logged_at: float = float("-inf")

    @property
    def group(self) -> str:
        """The consumer group's name."""
        return group_name(self.index, self.hook.url)

    @property
    def key(self) -> str:
        """The event log."""
        return self.engine.keys.events

    @property
    def sink(self) -> str:
        """The `sink` label of `acd_event_deliveries_total`."""
        return f"webhook:{self.index}"

    async def ensure_group(self) -> None:
        """Note the group's position; create it at the log's end (no history replayed) when it
        does not exist. Only reads when it does (so a router starts on a store at maxmemory)."""
        position = await self._group_position()
        if position is None:
            await self._create_group("$")
            position = await self._group_position()
        self._after = position or self._after

    async def _group_position(self) -> StreamId | None:
        """The group's last delivered id; None when it (or the log) does not exist."""
        try:
            groups = await self.redis.xinfo_groups(self.key)
        except ResponseError:  # no log yet
            return None
        for group in groups:
            if text(group["name"]) == self.group:
                return log_id(text(group["last-delivered-id"]))
        return None

    async def _create_group(self, position: str) -> None:
        """Make the group at `position` ('$' or an id) with its count (webhook_group.lua), unless
        another loop or process made it."""
        await self._call("webhook_group", position=position)

    async def _call(self, op: str, **args: Any) -> list[Any]:
        """One of the webhook functions (router/lua/webhook_*.lua), for this loop's group and
        consumer, on its own connection."""
        return await self.engine.webhook_call(
            self.redis, op, self.clock.now(), group=self.group, consumer=self.consumer, **args
        )

    async def run(self) -> None:
        """Deliver until cancelled; store errors are logged (once while they last) and retried.
        A group the store lost (its data lost, or deleted) is created again where this delivery
        last knew it: a store that lost its data starts a new log, whose entries all come after
        it, and are all delivered."""
        # Every result at 0 from the start: an alert's increase() then sees the first one.
        for result in ("delivered", "failed", "skipped", "lost"):
            EVENT_DELIVERIES.labels(sink=self.sink, result=result)
        task = asyncio.current_task()
        failing = False
        # redis-py may swallow a CancelledError that lands during a call: check the request too.
        while task is None or not task.cancelling():
            try:
                if self._group_lost:
                    after = id_text(self._after)
                    await self._create_group(after)
                    log.warning("webhooks[%d]: group lost, made again after %s", self.index, after)
                    self._group_lost = False
                for entry_id, fields in await self._next_batch():
                    await self._handle(text(entry_id), fields)
                self._log_lost()
                if failing:
                    log.info("webhooks[%d]: the store answers again", self.index)
                    failing = False
            except (RedisError, OSError, StoreUnavailable) as error:
                if not failing:
                    log.warning("webhooks[%d]: store error %s", self.index, error_name(error))
                    failing = True
                # UNBLOCKED: a blocked read whose log was deleted.
                self._group_lost = error_name(error) in ("NOGROUP", "UNBLOCKED")
                self._own_first = True
                await asyncio.sleep(STORE_RETRY_S)
            except Exception as error:
                # Only the type: a message could quote event data.
                log.error("webhooks[%d]: unexpected %s", self.index, type(error).__name__)
                await asyncio.sleep(STORE_RETRY_S)

    async def _replicated(self, entry_id: str) -> bool:
        """Wait until a replica holds the entry (durability `replicated`; at once with `local`);
        whether it waited."""
        wanted = parse_event_id(entry_id, "log")
        waited = False
        while await self.ceiling(wanted) < wanted:
            waited = True
            raise_if_cancelling()
            # The read that got the entry wrote too (the group's position), on this delivery's
            # own connection: a WAIT for it makes the replicas acknowledge now, not at their
            # next periodic acknowledgement. Its answer is not used: the ceiling decides.
            await self.redis.wait(1, HELD_WAIT_MS)
        return waited

    async def _next_batch(self) -> list[Entry]:
        """This consumer's pending entries after a store error, then (once a second) those of
        dead consumers, then new ones; what was handled is acknowledged on the way."""
        if self._own_first:
            await self._acknowledge()  # else what was delivered would be read again
            reply = await self.redis.xreadgroup(
                self.group, self.consumer, {self.key: "0"}, count=READ_COUNT
            )
            own = cast(list[Entry], cast(list[Any], reply)[0][1]) if reply else []
            for entry_id, fields in own:
                if not fields:  # trimmed from the log meanwhile: lost, if not counted already
                    self._lost(await self.redis.xack(self.key, self.group, entry_id))
            if own:
                return [(entry_id, fields) for entry_id, fields in own if fields]
            self._own_first = False
        claim_ms = int(CLAIM_IDLE_S * 1000) if self._claim_check.due() else 0
        code, lost, *found = await self._call(
            "webhook_next", claim_idle_ms=claim_ms, ack=self._handled
        )
        self._handled = []
        self._lost(int(lost or 0))
        code = text(code)
        if code == "no_group":
            self._group_lost = True
            return []
        if code == "none":
            raise_if_cancelling()  # before a read that blocks
            if self.waiter is None:
                await wait_for_entry(self.redis, self.key, text(found[0]))
            else:
                await self.waiter.after(text(found[0]))
            return []  # an entry after the group's position, or none: the next call reads it
        if code == "claimed":  # more may wait: look again at once
            self._claim_check.again()
        entry_id, flat = found
        return [(entry_id, dict(zip(flat[::2], flat[1::2], strict=True)))]

    async def _acknowledge(self) -> None:
        """XACK the entries handled since the last read."""
        if self._handled:
            await self.redis.xack(self.key, self.group, *self._handled)
            self._handled = []

    def _lost(self, count: int) -> None:
        """Count `count` events lost to the log's trimming; log them (at most every
        `LOST_LOG_S`, the rest with the next)."""
        if not count:
            return
        EVENT_DELIVERIES.labels(sink=self.sink, result="lost").inc(count)
        self._lost_unlogged += count
        self._log_lost()

    def _log_lost(self) -> None:
        """Log the losses not logged yet, unless one was logged less than `LOST_LOG_S` ago."""
        if self._lost_unlogged and time.monotonic() - self._lost_logged_at >= LOST_LOG_S:
            log.warning(
                "webhooks[%d]: %d events trimmed from the log (event_log_max) before delivery",
                self.index,
                self._lost_unlogged,
            )
            self._lost_unlogged, self._lost_logged_at = 0, time.monotonic()

    async def _handle(self, entry_id: str, fields: dict[bytes, bytes] | None) -> None:
        """Deliver one entry (unless its type is filtered out) until acknowledged; then it is
        handled, for the next read to XACK."""
        if fields and fields[b"t"].decode(errors="replace") in self.hook.types:
            if await self._replicated(entry_id) and not await self._touch(entry_id):
                return  # it waited long enough for another loop to take the entry over
            try:
                body = event_json(codec.event(entry_id, fields))
            except Exception as error:  # RecursionError included: whatever the entry holds
                # The type and id only: a message could quote the event's data.
                log.error(
                    "webhooks[%d]: event %s cannot be rendered: %s; skipped",
                    self.index,
                    entry_id,
                    type(error).__name__,
                )
                EVENT_DELIVERIES.labels(sink=self.sink, result="skipped").inc()
                self._handled.append(entry_id)
                return
            attempt = 0
            while not await self._post(entry_id, body):
                EVENT_DELIVERIES.labels(sink=self.sink, result="failed").inc()
                await asyncio.sleep(min(RETRY_BASE_S * 2 ** min(attempt, 32), RETRY_MAX_S))
                attempt += 1
                if not await self._touch(entry_id):
                    return
            EVENT_DELIVERIES.labels(sink=self.sink, result="delivered").inc()
        self._handled.append(entry_id)
        self._after = max(self._after, log_id(entry_id))

    async def _touch(self, entry_id: str) -> bool:
        """Reset the entry's idle time so no other loop takes it over; False if it is no longer
        pending: taken over by another loop, or trimmed from the log (lost, counted here)."""
        [reply] = await self._call("webhook_touch", id=entry_id)
        outcome = text(reply)
        if outcome == "lost":
            self._lost(1)
        return outcome == "held"

    async def _post(self, entry_id: str, body: bytes) -> bool:
        """One attempt; True on 2xx."""
        headers = {
            "Content-Type": "application/json",
            "X-ACD-Event-Id": entry_id,
            "X-ACD-Signature": signature(self.secret, body),
        }
        try:
            async with self.session.post(
                self.hook.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                if 200 <= response.status < 300:
                    return True
                outcome = f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as error:
            outcome = type(error).__name__
        log.warning("webhooks[%d]: delivery of %s failed: %s", self.index, entry_id, outcome)
        return False

    async def release(self) -> None:
        """Acknowledge what was handled; then remove this process's consumer from the group when
        it holds nothing pending, else leave what it holds to the next loop at once."""
        await self._acknowledge()
        self._log_lost()
        pending = await self.redis.xpending_range(
            self.key, self.group, "-", "+", RELEASED_MAX, consumername=self.consumer
        )
        if not pending:
            await self.redis.xgroup_delconsumer(self.key, self.group, self.consumer)
            return
        # Stopped mid-delivery (or in a retry's wait): made as idle as a dead router's entries, so
        # that the next claim check of any loop takes them over, first, not CLAIM_IDLE_S later.
        ids: list[bytes | str | int | memoryview[int]] = [entry["message_id"] for entry in pending]
        idle_ms = int(CLAIM_IDLE_S * 1000)
        await self.redis.xclaim(
            self.key, self.group, self.consumer, 0, ids, idle=idle_ms, justid=True
        )


def webhook_secrets(
    hooks: Sequence[WebhookConfig], env: Mapping[str, str] | None = None
) -> list[bytes]:
    """Each webhook's signing secret from its variable; a ConfigError naming every unset one."""
    env = os.environ if env is None else env
    errors = [
        FieldError(f"webhooks[{i}].secret_env", f"variable {hook.secret_env} is not set")
        for i, hook in enumerate(hooks)
        if not env.get(hook.secret_env)
    ]
    if errors:
        raise ConfigError("; ".join(map(str, errors)), errors)
    return [env[hook.secret_env].encode() for hook in hooks]


async def webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: `concurrency` delivery tasks per configured webhook, each a consumer of
    its own; cancelled on shutdown."""
    hooks = app[CONFIG].webhooks
    secrets = webhook_secrets(hooks)
    if not hooks:
        yield
        return
    process = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))
    loops = [
        (i, hook, secret, f"{process}:{k}")
        for i, (hook, secret) in enumerate(zip(hooks, secrets, strict=True))
        for k in range(hook.concurrency)
    ]
    # A connection per loop and one per webhook's waiter, outside store_timeout_s: each blocks
    # up to READ_BLOCK_S.
    service, key = app[CONFIG].service, app[ENGINE].keys.events
    clients = [blocking_client(service, READ_BLOCK_S, size=1) for _ in loops]
    waiters = [LogWaiter(blocking_client(service, READ_BLOCK_S, size=1), key) for _ in hooks]
    deliveries = [
        Delivery(
            i, hook, secret, redis, app[ENGINE], app[CLOCK], consumer, session, waiter=waiters[i]
        )
        for (i, hook, secret, consumer), redis in zip(loops, clients, strict=True)
    ]
    try:
        for delivery in deliveries:
            await delivery.ensure_group()
            ceiling = await replica_ceiling(app[CONFIG].service, delivery.redis)
            delivery.ceiling = ceiling or no_ceiling
        tasks = [
            asyncio.create_task(d.run(), name=f"webhook-{d.index}-{d.consumer}") for d in deliveries
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
            for delivery in deliveries:
                with contextlib.suppress(RedisError, OSError):
                    await delivery.release()
    finally:
        await session.close()
        for waiter in waiters:
            await waiter.close()
        for redis in clients:
            await redis.aclose()
