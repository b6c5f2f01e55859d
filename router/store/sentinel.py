"""The primary watcher of a `redis+sentinel://` store: one per store and event loop, asking the
Sentinels which server is the primary and whether a failover is under way (on each of their
failover events, and every `POLL_S`), and moving the loop's Sentinel pools
(router/store/connection.py `SentinelPool`) to the primary when it changes. Durability
`replicated` acknowledges no change across a failover (`primary_epoch`).

Without it a pool asks the Sentinels only when it opens a connection, and its open connections
write on to the old primary after a planned failover (`SENTINEL FAILOVER`: the old primary stays
up and writable until the Sentinels demote it, ~10 s later, and then drops what it took).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from redis.exceptions import RedisError

from router.settings import ServiceSettings
from router.store.url import StoreKind, StoreUrl, parse_store_url

if TYPE_CHECKING:
    from router.store.connection import SentinelPool

log = logging.getLogger("router.store.sentinel")

POLL_S = 0.5
"""Seconds between two questions to the Sentinels, besides what their pub/sub channels tell at
once: the longest a router writes on to a primary the Sentinels no longer name if it missed that."""
EVENTS = (
    "+try-failover",
    "+promoted-slave",
    "+failover-state-reconf-slaves",
    "+failover-end",
    "+failover-end-for-timeout",
    "+switch-master",
)
"""The Sentinel events after which the Sentinels are asked at once (+try-failover: a failover
starts; then it promotes a replica, names it, ends)."""

Address = tuple[str, int]


class PrimaryWatcher:
    """Which server the Sentinels name as primary, whether a failover is under way, and the pools
    that follow the primary."""

    def __init__(self, store: StoreUrl, timeout_s: float) -> None:
        self.store = store
        self.timeout_s = timeout_s
        self.sentinels = [
            Redis(host=host, port=port, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
            for host, port in store.hosts
        ]
        self.primary: Address | None = None
        self.failing_over = False
        """Whether a failover is under way: a Sentinel promotes a replica before it names it, and
        meanwhile the old primary (and a replica still following it) takes changes it drops."""
        self.epoch = 0
        """Counts the failovers' starts and ends and the switches seen."""
        self.pools: weakref.WeakSet[SentinelPool] = weakref.WeakSet()
        self.users = 0
        self.task: asyncio.Task[None] | None = None
        self._woken = asyncio.Event()
        self._started_at = -math.inf
        """When a Sentinel last said a failover starts (the event loop's clock)."""

    async def ask(self) -> tuple[Address | None, bool]:
        """The primary the Sentinels name, and whether any reports a failover under way. Every
        Sentinel is asked: the one running a failover knows first and is believed; else the
        address most of those that answer name."""
        answered = await asyncio.gather(*(self._ask(s) for s in self.sentinels))
        answers = [answer for answer in answered if answer is not None]
        if not answers:  # nothing is known: nothing changes
            return None, self.failing_over
        failing_over = any(under_way for _, under_way in answers)
        leading = [address for address, under_way in answers if under_way and address]
        named = [address for address, _ in answers if address is not None]
        if leading:
            return leading[0], failing_over
        if not named:
            return None, failing_over
        return max(set(named), key=lambda a: (named.count(a), a == self.primary)), failing_over

    async def _ask(self, sentinel: Redis) -> tuple[Address | None, bool] | None:
        """One Sentinel's answer; None when it gives none."""
        try:
            async with sentinel.pipeline(transaction=False) as pipe:
                pipe.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.store.master)
                pipe.execute_command("SENTINEL", "MASTER", self.store.master)
                address, state = await pipe.execute()
        except (RedisError, OSError):
            return None
        # SENTINEL MASTER: a map (RESP3) or a flat list of names and values (RESP2).
        fields = (
            state if isinstance(state, dict) else dict(zip(state[::2], state[1::2], strict=True))
        )
        under_way = b"failover_in_progress" in fields.get(b"flags", b"")
        if not address:
            return None, under_way
        host, port = address
        return (host.decode(), int(port)), under_way

    def _failover(self, failing_over: bool) -> None:
        if failing_over != self.failing_over:
            self.failing_over = failing_over
            self.epoch += 1

    async def check(self) -> None:
        """Ask the Sentinels; when they name another primary, move every pool there."""
        asked_at = asyncio.get_running_loop().time()
        primary, failing_over = await self.ask()
        # Answers that may predate a failover's start heard meanwhile do not end it.
        self._failover(failing_over or asked_at <= self._started_at)
        if primary is None or primary == self.primary:
            return
        old, self.primary = self.primary, primary
        self.epoch += 1
        if old is not None:
            log.warning(
                "the Sentinels name a new primary for %s: %s:%d (was %s:%d); connections to the "
                "old one are closed",
                self.store.master,
                *primary,
                *old,
            )
        for pool in list(self.pools):
            await pool.follow(primary)

    def heard(self, channel: bytes, data: bytes) -> None:
        """A Sentinel event: a failover's start counts at once; the Sentinels are asked now."""
        if self.store.master not in data.decode(errors="replace").split():
            return
        if channel == b"+try-failover":
            self._started_at = asyncio.get_running_loop().time()
            self._failover(True)
        self._woken.set()

    async def run(self) -> None:
        """Ask the Sentinels every `POLL_S`, and at once on their events, until cancelled; when
        it ends, the pools ask the Sentinels themselves again."""
        try:
            async with asyncio.TaskGroup() as group:
                for host, port in self.store.hosts:
                    group.create_task(self._listen(host, port))
                while True:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._woken.wait(), POLL_S)
                    self._woken.clear()
                    try:
                        await self.check()
                    except Exception:  # a bug: logged, and the next round asks again
                        log.exception("primary watcher")
        finally:
            self.release()

    def release(self) -> None:
        """Leave the pools to ask the Sentinels themselves (the watcher stops)."""
        for pool in list(self.pools):
            pool.watcher = pool.primary = None
        self.pools.clear()

    async def _listen(self, host: str, port: int) -> None:
        """One Sentinel's events, subscribed again after a lost connection."""
        while True:
            client = Redis(
                host=host, port=port, socket_connect_timeout=self.timeout_s, socket_keepalive=True
            )
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(*EVENTS)
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self.heard(message["channel"], message["data"])
            except (RedisError, OSError):
                pass
            except Exception:  # a bug: logged, and subscribed again
                log.exception("primary watcher: the events of Sentinel %s:%d", host, port)
            finally:
                await client.aclose()
            await asyncio.sleep(POLL_S)

    async def aclose(self) -> None:
        """Close the Sentinel clients."""
        for sentinel in self.sentinels:
            await sentinel.aclose()


_watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, PrimaryWatcher]] = (
    weakref.WeakKeyDictionary()
)


def _watcher(store: StoreUrl, timeout_s: float) -> PrimaryWatcher:
    """The running loop's watcher of `store`."""
    mine = _watchers.setdefault(asyncio.get_running_loop(), {})
    if store.url not in mine:
        mine[store.url] = PrimaryWatcher(store, timeout_s)
    return mine[store.url]


def watched(store: StoreUrl, pool: SentinelPool) -> None:
    """Let the running loop's watcher of `store` (when one runs) move `pool` on a switch."""
    try:
        watcher = _watchers.get(asyncio.get_running_loop(), {}).get(store.url)
    except RuntimeError:  # no running loop: a client made outside one follows no watcher
        return
    if watcher is not None:
        watcher.pools.add(pool)
        pool.watcher, pool.primary = watcher, watcher.primary


def primary_epoch(redis: Redis) -> int | None:
    """The epoch of the primary that the store's watcher sees (0 when none runs): it changes
    with each switch and each failover's start and end; None while a failover is under way. A
    change acknowledged by a replica is safe only if the epoch is the same, not None, before the
    change was sent and once the replica confirmed it."""
    watcher: PrimaryWatcher | None = getattr(redis.connection_pool, "watcher", None)
    if watcher is None:
        return 0
    return None if watcher.failing_over else watcher.epoch


@contextlib.asynccontextmanager
async def watching(settings: ServiceSettings) -> AsyncIterator[None]:
    """The store's primary watcher running while the block runs (shared by the blocks of one
    loop, stopped after the last); nothing for other stores than `redis+sentinel://`."""
    store = parse_store_url(settings.redis_url)
    if store.kind is not StoreKind.SENTINEL:
        yield
        return
    watcher = _watcher(store, settings.store_timeout_s)
    watcher.users += 1
    if watcher.task is None:
        # Started before the first await, so that a block entered meanwhile starts no other.
        watcher.task = asyncio.create_task(watcher.run(), name="primary-watcher")
        with contextlib.suppress(RedisError, OSError):
            await watcher.check()
    try:
        yield
    finally:
        watcher.users -= 1
        if watcher.users == 0:
            task, watcher.task = watcher.task, None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            _watchers.get(asyncio.get_running_loop(), {}).pop(store.url, None)
            await watcher.aclose()
