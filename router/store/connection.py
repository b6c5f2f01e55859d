"""Clients of the store: the one place where Redis connections are made (timeouts, retries, and
where the primary is).

Two kinds: the request client, whose every call the engine bounds by `store_timeout_s` as a
whole (`Engine.bounded`), and clients for blocking reads (the event reader, webhooks), whose
reads wait longer than their block.
Both retry a call once when its connection turns out dead (refused, reset, closed: e.g. pooled
connections after a Redis restart or a failover), never after a timeout: a call that timed out
may have been applied, and only the client can decide to repeat it (SPEC §4, "Failures and
retries").

The store URL (router/store/url.py) says where the primary is (§8):
- `redis://`: that server.
- `redis+sentinel://`: the primary the Sentinels name, asked again for each new connection
  (redis-py's Sentinel support); after a failover, connections to the old primary fail, the
  retry connects to the new one. A demoted primary's READONLY answer counts as a dead
  connection too.
- `redis+cluster://`: the primary of the namespace's hash slot, found with redis-py's cluster
  client and then spoken to directly, as to one Redis: a namespace lives in one slot, so every
  call goes to one node, and `WAIT` (durability `replicated`) must follow the change on the same
  connection, which redis-py's cluster client cannot do. A MOVED answer (the slot moved: a
  cluster failover or a resharding) counts as a dead connection: the slot's primary is looked up
  again and the call retried there (a MOVED call was not applied).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio import BlockingConnectionPool, Connection, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MovedError, RedisClusterException, RedisError

from router.settings import ServiceSettings
from router.store.codec import error_code
from router.store.keys import Keys
from router.store.sentinel import PrimaryWatcher, watched
from router.store.url import StoreKind, StoreUrl, parse_store_url

log = logging.getLogger(__name__)

REQUEST_POOL_SIZE = 128
"""Connections of the request client: requests hold one only during a store call."""
HEALTH_CHECK_S = 5
"""A pooled connection idle this long is checked with a PING before it carries a call."""


class PrimaryConnection(SentinelManagedConnection):
    """A connection to the primary the Sentinels name: every (re)connection looks it up (the
    watcher's address when one runs, else the Sentinels are asked), and a connection still open
    to an address the watcher has left is closed and opened again before it sends anything."""

    connection_pool: SentinelPool

    async def _connect_retry(self) -> None:
        await self.connect_check_health(
            check_health=self.connection_pool.check_connection, retry_socket_connect=False
        )

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        """Connect to the primary; redis-py's reconnection before a send comes here too, and
        would otherwise reopen the address it had."""
        if self.is_connected:
            return
        self.host, self.port = await self.connection_pool.primary_address()
        await super().connect_check_health(check_health, retry_socket_connect)

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        """Send `command` to the current primary (after a switch: on a new connection)."""
        if self.is_connected and self.connection_pool.left(self):
            await self.disconnect()
        await super().send_packed_command(command, check_health)


class SentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """redis-py's Sentinel-backed pool, blocking when every connection is in use, following the
    primary the process's watcher (router/store/sentinel.py) sees the Sentinels name."""

    watcher: PrimaryWatcher | None = None
    """The process's watcher of the store, while one runs."""
    primary: tuple[str, int] | None = None
    """The primary's address as the watcher last saw it; None while no watcher runs."""
    cut_in_use: bool = False
    """On a switch, close the connections in use too: true of blocking clients, whose calls are
    reads (XREAD); requests' calls run to their end, their next one reconnects."""

    async def primary_address(self) -> tuple[str, int]:
        """Where connections go: the watcher's address, else the Sentinels' answer."""
        if self.primary is not None:
            return self.primary
        address: tuple[str, int] = await self.get_master_address()  # type: ignore[no-untyped-call]
        return address

    def left(self, connection: AbstractConnection) -> bool:
        """Whether `connection` is open to an address the watcher no longer sees as primary."""
        address = (getattr(connection, "host", None), getattr(connection, "port", None))
        return self.primary is not None and address != self.primary

    async def follow(self, primary: tuple[str, int]) -> None:
        """The Sentinels name `primary`: close the connections to any other address that are idle
        (and, with `cut_in_use`, in use); the others close before their next command."""
        self.primary = self.master_address = primary
        connections = list(self._available_connections)
        if self.cut_in_use:
            connections += list(self._in_use_connections)
        await asyncio.gather(
            *(c.disconnect() for c in connections if self.left(c)), return_exceptions=True
        )

    async def disconnect(self, inuse_connections: bool = True) -> None:
        """Close the pool's connections; when closing for good, the Sentinel clients too."""
        await super().disconnect(inuse_connections)
        if inuse_connections:
            await self.sentinel_manager.aclose()


class SlotLocator:
    """Where the primary of one hash slot is, from redis-py's cluster client (refreshed on
    demand, once however many connections ask at the same time)."""

    def __init__(self, cluster: RedisCluster, key: str) -> None:
        self.cluster = cluster
        self.key = key
        self._stale = False
        self._started = False
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        """The slot's primary may have changed: look again before the next connection."""
        self._stale = True

    async def address(self) -> tuple[str, int]:
        """The host and port of the primary of the slot of `key`."""
        try:
            async with self._lock:
                if not self._started:
                    await self.cluster.initialize()  # reads the slots
                    self._started = True
                elif self._stale:
                    await self.cluster.nodes_manager.initialize()
                self._stale = False
            node = self.cluster.get_node_from_key(self.key)
        except (RedisError, RedisClusterException, OSError) as error:
            self._stale = True
            raise RedisConnectionError(f"the cluster: {type(error).__name__}") from error
        if node is None:  # only asked for replicas
            raise RedisConnectionError("no node serves the namespace's hash slot")
        return node.host, int(node.port)


class SlotConnection(Connection):
    """A connection to the primary of the namespace's slot, wherever it is now."""

    def __init__(self, *, locator: SlotLocator, **kwargs: Any) -> None:
        self.locator = locator
        super().__init__(**kwargs)

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        """Connect to the slot's primary (looked up again after a failure or a MOVED); every
        (re)connection of redis-py's goes through here."""
        if self.is_connected:
            return
        self.host, self.port = await self.locator.address()
        try:
            await super().connect_check_health(check_health, retry_socket_connect)
        except RedisConnectionError:
            self.locator.invalidate()
            raise

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        """The reply; a MOVED one (not applied) as a dead connection, so the call is retried."""
        try:
            return await super().read_response(*args, **kwargs)
        except MovedError:
            self.locator.invalidate()
            await self.disconnect()
            raise RedisConnectionError("the namespace's hash slot moved") from None


class SlotPool(BlockingConnectionPool):
    """A blocking pool of connections to the namespace's slot primary."""

    def __init__(self, locator: SlotLocator, **kwargs: Any) -> None:
        super().__init__(connection_class=SlotConnection, locator=locator, **kwargs)
        self.locator = locator

    async def disconnect(self, inuse_connections: bool = True) -> None:
        """Close the pool's connections; when closing for good, the cluster client too."""
        await super().disconnect(inuse_connections)
        if inuse_connections:
            await self.locator.cluster.aclose()


def _client(
    settings: ServiceSettings, *, read_timeout_s: float | None, connect_timeout_s: float, size: int
) -> Redis:
    """A client; `read_timeout_s` None when the caller bounds each call as a whole: then neither
    reads and writes nor the wait for a free pooled connection carry a timeout of their own."""
    store = parse_store_url(settings.redis_url)
    options: dict[str, Any] = {
        "max_connections": size,
        # The wait for a free pooled connection.
        "timeout": None if read_timeout_s is None else connect_timeout_s,
        "socket_timeout": read_timeout_s,
        "socket_connect_timeout": connect_timeout_s,
        "health_check_interval": HEALTH_CHECK_S,
        "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    }
    if not store.url.lower().startswith("unix:"):  # a Unix socket has no keepalive
        options["socket_keepalive"] = True
    if store.kind is StoreKind.REDIS:
        return Redis.from_pool(BlockingConnectionPool.from_url(store.url, **options))
    credentials = {"username": store.username, "password": store.password}
    if store.kind is StoreKind.SENTINEL:
        sentinels = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8.2
            list(store.hosts),
            sentinel_kwargs={
                "socket_timeout": connect_timeout_s,
                "socket_connect_timeout": connect_timeout_s,
            },
        )
        pool = SentinelPool(  # type: ignore[no-untyped-call]
            store.master,
            sentinels,
            is_master=True,
            db=store.db,
            connection_class=PrimaryConnection,
            **credentials,
            **options,
        )
        pool.cut_in_use = read_timeout_s is not None
        watched(store, pool)
        return Redis.from_pool(pool)
    return Redis.from_pool(SlotPool(_locator(store, settings, connect_timeout_s), **options))


def _locator(store: StoreUrl, settings: ServiceSettings, timeout_s: float) -> SlotLocator:
    cluster = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in store.hosts],
        username=store.username,
        password=store.password,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )
    return SlotLocator(cluster, Keys(settings.namespace).prefix)


def request_client(settings: ServiceSettings) -> Redis:
    """The client of requests and timers; the engine bounds each call by `store_timeout_s`."""
    timeout = settings.store_timeout_s
    return _client(
        settings,
        # No timeouts of its own: every call runs inside Engine.bounded, and redis-py would wrap
        # each write in a task (asyncio.wait_for), each read and each wait for a connection in a
        # timeout.
        read_timeout_s=None,
        connect_timeout_s=timeout,
        size=REQUEST_POOL_SIZE,
    )


def blocking_client(settings: ServiceSettings, block_s: float, size: int) -> Redis:
    """A client of `size` connections for reads that block up to `block_s` (XREAD BLOCK)."""
    timeout = settings.store_timeout_s
    return _client(
        settings,
        read_timeout_s=block_s + timeout,
        connect_timeout_s=timeout,
        size=size,
    )


async def load_library(redis: Redis, source: str) -> None:
    """FUNCTION LOAD `source` where the namespace's calls may run: the one Redis, the primary
    (replicas get it by replication), or the primary of the namespace's slot and, as far as
    they answer, the cluster's other primaries (the slot may move to any of them; one that
    misses it gets it at its first call)."""
    await redis.function_load(source, replace=True)
    pool = redis.connection_pool
    if not isinstance(pool, SlotPool):
        return
    cluster, own = pool.locator.cluster, await pool.locator.address()
    for node in cluster.get_primaries():
        if (node.host, node.port) == own:
            continue
        try:
            await cluster.execute_command("FUNCTION LOAD", "REPLACE", source, target_nodes=node)
        except (RedisError, OSError) as error:  # a shard down stops no namespace elsewhere
            log.warning(
                "the library is not loaded on cluster node %s:%s (%s); it will be when a "
                "namespace's slot is there",
                node.host,
                node.port,
                error_code(error) or type(error).__name__,
            )


async def round_trip(connection: Connection, command: bytes, check_health: bool = True) -> Any:
    """Send a packed command on `connection` and read its reply, once more when the connection
    turns out dead (the client's retry)."""

    async def send() -> Any:
        await connection.send_packed_command(command, check_health=check_health)
        return await connection.read_response()

    async def dead(_: Exception) -> None:
        # Connected again here, not by the retry's send: only `connect` asks the Sentinels where
        # the primary is now (a failover) or the cluster where the slot is.
        await connection.disconnect()
        await connection.connect()  # type: ignore[no-untyped-call]

    return await connection.retry.call_with_retry(send, dead)


class FunctionCalls:
    """FCALLs with one key and one argument, on connections of the request client's pool that
    are kept checked out between calls.

    What `redis.fcall` does (a pooled connection, the client's retry on a dead connection),
    without redis-py's per-call work on the service's hottest path: the pool's checkout and
    return (a lock, a timer, a probing read, observability hooks), the command's generic packing
    (the header of each function and key is built once) and its response callbacks. A connection
    goes back to the pool only when a call left it closed (a dead connection, or a call cancelled
    by `Engine.bounded`, after which redis-py closes it); closing the client closes these too.

    At most half the pool's connections carry FCALLs at once (callers beyond wait their turn, first
    come first served), so that the client's other commands always find one: connections kept
    here are never handed back to the pool's own waiters."""

    def __init__(self, redis: Redis) -> None:
        self.pool = redis.connection_pool
        self.slots = asyncio.Semaphore(max(1, self.pool.max_connections // 2))
        self.idle: list[Connection] = []
        self.heads: dict[tuple[str, str], bytes] = {}

    async def fcall(self, function: str, key: str, arg: bytes) -> Any:
        """FCALL `function` with `key` and `arg`: the reply as Redis sent it."""
        command = self.command(function, key, arg)
        async with self.slots:
            if self.idle:
                connection = self.idle.pop()
            else:
                connection = await self.pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                return await round_trip(connection, command)
            finally:
                if connection.is_connected:
                    self.idle.append(connection)
                else:
                    await self.pool.release(connection)

    def command(self, function: str, key: str, arg: bytes) -> bytes:
        """The FCALL as sent (RESP), its head up to the argument's length built once."""
        head = self.heads.get((function, key))
        if head is None:
            fn, k = function.encode(), key.encode()
            head = b"*5\r\n$5\r\nFCALL\r\n$%d\r\n%b\r\n$1\r\n1\r\n" % (len(fn), fn)
            head += b"$%d\r\n%b\r\n$" % (len(k), k)
            self.heads[(function, key)] = head
        return b"%b%d\r\n%b\r\n" % (head, len(arg), arg)


class StreamReads:
    """XREAD BLOCK of one stream on a connection of a blocking client's pool, kept between
    reads, the command packed here: what `redis.xread` does without redis-py's per-call work
    (the pool's checkout and return, observability hooks, the generic packing and reply parsing),
    which on a busy log was a quarter of its reader's CPU. A dead connection is connected again
    and the read tried once more (`round_trip`); any other failure closes it and goes to the
    caller. The client's pool needs a connection besides it for the reader's other commands."""

    def __init__(self, redis: Redis, key: str) -> None:
        self.pool = redis.connection_pool
        # XREAD COUNT <count> BLOCK <ms> STREAMS <key> <after>: the fixed parts, packed once.
        self.head = b"*8\r\n$5\r\nXREAD\r\n$5\r\nCOUNT\r\n"
        name = key.encode()
        self.streams = b"$7\r\nSTREAMS\r\n$%d\r\n%b\r\n" % (len(name), name)
        self.connection: Connection | None = None

    async def read(
        self, after: str, count: int, block_ms: int
    ) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """The entries after `after`, at most `count`, waiting up to `block_ms` for one."""
        command = self.command(after, count, block_ms)
        if self.connection is None:
            self.connection = await self.pool.get_connection()  # type: ignore[no-untyped-call]
        connection = self.connection
        try:
            reply = await round_trip(connection, command, check_health=False)
        except BaseException:
            await self.close()
            raise
        # Nil when nothing came, else the stream's entries [[id, [field, value, ...]], ...]: in
        # a map {key: entries} (RESP3, redis-py's default) or [[key, entries]] (RESP2).
        if not reply:
            return []
        entries = next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]
        return [
            (entry_id, dict(zip(flat[::2], flat[1::2], strict=True))) for entry_id, flat in entries
        ]

    def command(self, after: str, count: int, block_ms: int) -> bytes:
        """The XREAD as sent (RESP)."""
        n, ms, start = str(count).encode(), str(block_ms).encode(), after.encode()
        return b"%b$%d\r\n%b\r\n$5\r\nBLOCK\r\n$%d\r\n%b\r\n%b$%d\r\n%b\r\n" % (
            self.head, len(n), n, len(ms), ms, self.streams, len(start), start,
        )  # fmt: skip

    async def close(self) -> None:
        """Close the kept connection and give it back to the pool (the next read takes one)."""
        connection, self.connection = self.connection, None
        if connection is not None:
            try:
                await connection.disconnect()
            finally:
                await self.pool.release(connection)
