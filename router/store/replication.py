"""Durability `replicated` (§8): a change is acknowledged once a replica holds it, and events are
delivered once a replica holds them.

A change: the script call and `WAIT 1 <ms>` go in one pipeline, on one connection and in one
round trip (WAIT counts the writes of its own connection only). WAIT answers the number of
replicas that hold every write of the connection so far; none within the time → 503, the
change's outcome unknown (it was applied on the primary, which may yet fail before a replica
has it; SPEC §4: a retry with the same id is safe).

Events: a reader that has read the log up to an id asks the primary for its replication offset
(it is past that event) and delivers the event once a replica has acknowledged that offset.
Offsets only compare within one primary's history: when the primary's replication id changes
(a failover), what was read but not yet confirmed is dropped and read again from the new
primary, which may not hold it.
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from router.errors import StoreUnavailable
from router.metrics.process import STORE_UNCONFIRMED
from router.settings import ServiceSettings
from router.store.sentinel import primary_epoch

REPLICAS = 1
"""Replicas that must hold a change before it is acknowledged."""
WAIT_SHARE = 0.75
"""The share of `store_timeout_s` a change waits for a replica (the rest: the round trip)."""

StreamId = tuple[int, int]


class NotReplicated(StoreUnavailable):
    """No replica confirmed a change in time: applied on the primary, maybe lost in a failover."""


class PrimaryChanged(RedisConnectionError):
    """The primary is not the one events were read from: read them again."""


def wait_ms(settings: ServiceSettings) -> int:
    """How long a change waits for a replica (0: durability `local`, no wait)."""
    if settings.durability != "replicated":
        return 0
    return max(1, int(settings.store_timeout_s * WAIT_SHARE * 1000))


async def fcall_replicated(redis: Redis, function: str, key: str, arg: bytes, ms: int) -> Any:
    """FCALL `function` then WAIT on the same connection; NotReplicated when no replica has it,
    or when a Sentinel failover was under way or done meanwhile (a replica still following the
    old primary may have confirmed it: the old primary drops it when it is demoted)."""
    epoch = primary_epoch(redis)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.fcall(function, 1, key, arg)
        pipe.wait(REPLICAS, ms)
        # Errors as they came (a raised one would carry the pipeline's prefix in its message).
        reply, replicas = await pipe.execute(raise_on_error=False)
    if isinstance(reply, Exception):
        raise reply
    if isinstance(replicas, Exception):  # the change was applied; whether a replica has it, unknown
        STORE_UNCONFIRMED.labels("no_replica").inc()
        raise NotReplicated(
            "the change is on the primary; whether a replica has it is unknown (WAIT failed)"
        ) from replicas
    if int(replicas) < REPLICAS:
        STORE_UNCONFIRMED.labels("no_replica").inc()
        raise NotReplicated(
            f"no replica confirmed the change within {ms} ms: it is on the primary, which may "
            "yet lose it"
        )
    if epoch is None or primary_epoch(redis) != epoch:
        STORE_UNCONFIRMED.labels("failover").inc()
        raise NotReplicated(
            "a Sentinel failover was under way while the change waited for a replica: it may be "
            "lost with the old primary"
        )
    return reply


async def replication_state(redis: Redis) -> tuple[str, int, int]:
    """The primary's replication id and offset, and the highest offset a replica confirmed;
    PrimaryChanged when the node is no primary (any more: demoted by a later failover)."""
    info = await redis.info("replication")
    if info.get("role") != "master":
        # Its pooled connections go: the next ones ask the Sentinels where the primary is now.
        await redis.connection_pool.disconnect(inuse_connections=False)
        raise PrimaryChanged("the store is a replica now: the primary is looked up again")
    acked = [
        int(value["offset"])
        for key, value in info.items()
        if key.startswith("slave") and isinstance(value, dict) and value.get("state") == "online"
    ]
    return (
        str(info.get("master_replid", "")),
        int(info.get("master_repl_offset", 0)),
        max(acked, default=-1),
    )


class ReplicaCeiling:
    """The ceiling of an event reader under `replicated`: the highest id read that a replica
    holds. Called after each read with the last id read (router/events/sse.py `Ceiling`)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.confirmed: StreamId = (0, 0)
        self._replid = ""
        self._epoch = primary_epoch(redis)
        self._pending: deque[tuple[StreamId, int]] = deque()
        """(id read, the primary's offset once it was read), oldest first."""

    async def start(self) -> None:
        """Learn the primary's replication id, before the first read."""
        with contextlib.suppress(PrimaryChanged):  # a failover under way: the first call learns
            self._replid = (await replication_state(self.redis))[0]

    async def __call__(self, last_read: StreamId) -> StreamId:
        """The highest id up to `last_read` that a replica holds; PrimaryChanged when the
        primary is another than at the previous call (drop what is held, read it again)."""
        if last_read <= self.confirmed:
            return last_read
        epoch = primary_epoch(self.redis)
        try:
            replid, offset, acked = await replication_state(self.redis)
        except PrimaryChanged:
            self._replid = ""  # what the reader held goes: the next primary's id is taken as is
            self._pending.clear()
            raise
        if epoch is None or primary_epoch(self.redis) != epoch:
            # A Sentinel failover under way: a replica that confirms may follow the old primary
            # still, which drops what it took once demoted (as fcall_replicated).
            return min(self.confirmed, last_read)
        if epoch != self._epoch:
            self._epoch = epoch
            if self._pending:
                self._pending.clear()
                raise PrimaryChanged("a Sentinel failover happened: events are read again")
        if self._replid != replid:
            known, self._replid = self._replid, replid
            self._pending.clear()
            if known:
                raise PrimaryChanged("the primary changed: events are read again")
        if not self._pending or self._pending[-1][0] < last_read:
            self._pending.append((last_read, offset))
        while self._pending and self._pending[0][1] <= acked:
            self.confirmed = max(self.confirmed, self._pending.popleft()[0])
        return min(self.confirmed, last_read)


async def replica_ceiling(settings: ServiceSettings, redis: Redis) -> ReplicaCeiling | None:
    """A started ceiling for a reader on `redis` under `replicated`; None under `local`."""
    if settings.durability != "replicated":
        return None
    ceiling = ReplicaCeiling(redis)
    await ceiling.start()
    return ceiling
