"""Clients of the store: the one place where Redis connections are made (timeouts, retries).

Two kinds: the request client, whose every wait is bounded by `store_timeout_s`, and clients
for blocking reads (the event reader, webhooks), whose reads wait longer than their block.
Both retry a call once when its connection turns out dead (refused, reset, closed: e.g. pooled
connections after a Redis restart), never after a timeout: a call that timed out may have been
applied, and only the client can decide to repeat it (SPEC §4, "Failures and retries").
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from router.settings import ServiceSettings

REQUEST_POOL_SIZE = 128
"""Connections of the request client: requests hold one only during a store call."""
HEALTH_CHECK_S = 5
"""A pooled connection idle this long is checked with a PING before it carries a call."""


def _client(url: str, *, read_timeout_s: float, connect_timeout_s: float, size: int) -> Redis:
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=size,
        timeout=connect_timeout_s,  # the wait for a free pooled connection
        socket_timeout=read_timeout_s,
        socket_connect_timeout=connect_timeout_s,
        socket_keepalive=True,
        health_check_interval=HEALTH_CHECK_S,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )
    return Redis.from_pool(pool)


def request_client(settings: ServiceSettings) -> Redis:
    """The client of requests and timers; the engine bounds each call by `store_timeout_s`."""
    timeout = settings.store_timeout_s
    return _client(
        settings.redis_url,
        read_timeout_s=timeout,
        connect_timeout_s=timeout,
        size=REQUEST_POOL_SIZE,
    )


def blocking_client(settings: ServiceSettings, block_s: float, size: int) -> Redis:
    """A client of `size` connections for reads that block up to `block_s` (XREAD BLOCK)."""
    timeout = settings.store_timeout_s
    return _client(
        settings.redis_url,
        read_timeout_s=block_s + timeout,
        connect_timeout_s=timeout,
        size=size,
    )
