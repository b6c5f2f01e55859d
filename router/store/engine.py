"""The routing engine's API: the only code that touches Redis. Every call takes `now`."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, cast

import msgpack
import orjson
from redis.asyncio import Redis
from redis.exceptions import (
    AskError,
    ClusterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from router.clock import Clock
from router.domain.models import (
    MAX_REQUIREMENT_SKILLS,
    Agent,
    AgentProfile,
    AgentState,
    Event,
    Interaction,
    InteractionStatus,
    NewInteraction,
    Outcome,
    QueueConfig,
    RejectReason,
)
from router.domain.stats import BUCKETS
from router.errors import RouterError, StoreRefused, StoreUnavailable
from router.metrics.process import STORE_REFUSALS, STORE_UP, observe_decision
from router.settings import ServiceSettings
from router.store import codec
from router.store.codec import error_code, raise_for, stats_view, text, to_ms
from router.store.keys import Keys
from router.store.records import (
    EWT_REFRESH_MS,
    SCORES,
    CallSettings,
    MetricsSnapshot,
    QueueFigures,
    member_id,
)
from router.store.replication import NotReplicated, wait_ms
from router.store.scripts import ScriptRunner

ROUTING_OPERATIONS = frozenset(
    {
        "interaction_create",
        "interaction_accept",
        "interaction_reject",
        "interaction_complete",
        "interaction_transfer",
        "interaction_abandon",
        "agent_state",
        "agent_put",
    }
)
"""The scripts that may route (their latency is `acd_routing_decision_seconds`)."""

Entry = tuple[bytes, dict[bytes, bytes]]
"""An entry of the event log as Redis returns it: id and fields."""

DUE_BATCH = 100
"""Due timers every operation applies before its own change (the tick loop does the rest)."""

log = logging.getLogger("router.store.engine")


def call_settings(settings: ServiceSettings) -> CallSettings:
    """The settings every script call carries (`cfg`)."""
    return {
        "retention_ms": to_ms(settings.retention_s),
        "log_max": settings.event_log_max,
        "exclusive": {c: True for c in settings.exclusive_channels},
        "max_classes": settings.max_routing_classes,
        "max_skills": MAX_REQUIREMENT_SKILLS,
        "fill_batch": settings.class_fill_batch,
        "due_batch": DUE_BATCH,
        "buckets": {name: list(bounds) for name, bounds in BUCKETS.items()},
        "scores": SCORES,
        "ewt_refresh_ms": EWT_REFRESH_MS,
    }


@dataclass(frozen=True)
class TickResult:
    applied: int
    lag_s: float
    next_due: float | None


def fingerprint(request: NewInteraction) -> str:
    """A digest of an arrival request: the same id with another body is a conflict. `data` is
    taken with its object members sorted: JSON objects are unordered, and a retry rebuilt from a
    store that reorders them (e.g. PostgreSQL's jsonb) is the same body. `channel` is left out:
    a given one must be the queue's, what its absence means (the script compares it with the
    interaction's)."""
    body = msgpack.packb(
        [
            request.queue,
            None,  # the channel's place: fingerprints of requests without one stay as they were
            request.priority,
            request.credit_s,
            sorted(request.skills.items()),
            list(request.preferred_agents),
            request.preferred_wait_s or 0.0,  # absent: 0.0, as before, so earlier fingerprints hold
            orjson.dumps(request.data, option=orjson.OPT_SORT_KEYS),
        ],
        use_bin_type=False,
    )
    return hashlib.sha256(body).hexdigest()[:32]


REFUSALS = {
    "OOM": ("out_of_memory", "it reached its memory limit (maxmemory)"),
    "MISCONF": ("cannot_persist", "it cannot write its data to disk (MISCONF)"),
    "NOREPLICAS": ("no_replicas", "it has fewer replicas than its min-replicas-to-write"),
    "BUSY": ("busy", "another script has been running too long (BUSY)"),
    "READONLY": ("read_only", "it is a read-only replica (READONLY)"),
    "ASK": ("moving", "the namespace's cluster slot is moving to another node (ASK)"),
    "TRYAGAIN": ("moving", "the namespace's cluster slot is moving to another node (TRYAGAIN)"),
    "CLUSTERDOWN": ("cluster_down", "the cluster is down: a slot has no primary (CLUSTERDOWN)"),
}
"""Redis's answers that refuse a call before it runs, by error code: the reason (the label of
`acd_store_refusals_total`) and what it means."""
for _reason, _ in REFUSALS.values():
    STORE_REFUSALS.labels(_reason)  # every reason's series exists from the start, at 0


def refusal(error: BaseException) -> tuple[str, str] | None:
    """The reason and meaning of a refusal (REFUSALS), or None for any other error."""
    # redis-py strips the code of the errors it maps to a class of their own
    if isinstance(error, OutOfMemoryError):
        return REFUSALS["OOM"]
    if isinstance(error, ReadOnlyError):  # a `redis://` store made a replica (Sentinel: a retry)
        return REFUSALS["READONLY"]
    # A cluster answers these before it runs a call (a function's keys are looked up first).
    if isinstance(error, AskError):
        return REFUSALS["ASK"]
    if isinstance(error, TryAgainError):
        return REFUSALS["TRYAGAIN"]
    if isinstance(error, ClusterDownError):
        return REFUSALS["CLUSTERDOWN"]
    return REFUSALS.get(error_code(error))


class Bounded:
    """`async with engine.bounded()`: the calls inside bounded by `store_timeout_s` in all."""

    # A class rather than a generator-based context manager: it wraps every store call.
    def __init__(self, engine: Engine, timeout_s: float) -> None:
        self._engine = engine
        self._timeout_s = timeout_s
        self._timeout = asyncio.timeout(timeout_s)

    async def __aenter__(self) -> None:
        await self._timeout.__aenter__()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            await self._timeout.__aexit__(kind, error, traceback)
        except TimeoutError as timed_out:  # the bound expired: the calls were cancelled
            error = timed_out
        self._engine.settle(error, self._timeout_s)


class Engine:
    """Async facade over the Lua scripts of one namespace."""

    def __init__(self, redis: Redis, settings: ServiceSettings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.namespace)
        self.runner = ScriptRunner(redis, wait_ms(settings))
        self._cfg = b""
        self.tune()
        self._store_up = False
        self._unwritten: Callable[[], Awaitable[None]] | None = None
        """The configuration's queues, while the store refused them (load_queues)."""

    def tune(self, **changes: Any) -> None:
        """The settings every call carries, with `changes` (tests lower limits with it)."""
        # Packed once, apart from each call's own arguments: the library decodes them only when
        # they change.
        cfg = {**call_settings(self.settings), **changes}
        self._cfg = msgpack.packb(cfg, use_bin_type=False)

    async def start(self) -> None:
        """Load the library of every script (FUNCTION LOAD), unless the store refuses it while
        it holds it already (at maxmemory: the router then starts on it); warn of an eviction
        policy."""
        async with self.bounded():
            try:
                await self.runner.load()
            except ResponseError as error:
                # A replica (READONLY) holds the library too, but would refuse every change.
                if refusal(error) in (None, REFUSALS["READONLY"]) or not await self.runner.loaded():
                    raise
                log.warning("the store refused to load the library again: using the one it holds")
            policy = await self.eviction_policy()
        if policy is not None and policy != "noeviction":
            log.warning(
                "the store's maxmemory-policy is %s: when full, Redis deletes %s to make room; "
                "set it to noeviction",
                policy,
                "ended interactions before their retention_s"
                if policy.startswith("volatile")
                else "any key, and with them interactions and agents",
            )

    async def eviction_policy(self) -> str | None:
        """The store's `maxmemory-policy`; None where CONFIG is not allowed (managed Redis)."""
        try:
            found = await self.redis.config_get("maxmemory-policy")
        except ResponseError:
            return None
        policy = found.get("maxmemory-policy")
        return None if policy is None else text(policy)

    def bounded(self, timeout_s: float | None = None) -> Bounded:
        """The store calls inside wait `store_timeout_s` (or `timeout_s`) at most in all; past
        it, or when the store cannot be reached, StoreUnavailable (the outcome of a change is then
        unknown)."""
        return Bounded(self, self.settings.store_timeout_s if timeout_s is None else timeout_s)

    def settle(self, error: BaseException | None, timeout_s: float) -> None:
        """After store calls bounded by `timeout_s`: `acd_store_up` follows their outcome; a
        timeout or a lost connection becomes StoreUnavailable, a refusal (REFUSALS) StoreRefused,
        any other error goes on unchanged."""
        if error is None:
            if not self._store_up:
                self._set_store_up(True)
            return
        if isinstance(error, TimeoutError | RedisTimeoutError):
            self._set_store_up(False)
            raise StoreUnavailable(f"the store did not answer within {timeout_s:g} s") from error
        if isinstance(error, RedisConnectionError | OSError):
            self._set_store_up(False)
            raise StoreUnavailable("the store cannot be reached") from error
        refused = refusal(error)
        if refused is not None:  # it answered (up), but changed nothing
            if not self._store_up:
                self._set_store_up(True)
            reason, meaning = refused
            STORE_REFUSALS.labels(reason).inc()
            detail = f"the store refused the request: {meaning}; nothing was changed"
            raise StoreRefused(detail, reason=reason) from error

    def _set_store_up(self, up: bool) -> None:
        self._store_up = up
        STORE_UP.set(int(up))

    async def _call(self, op: str, now: float, **args: Any) -> list[Any]:
        start = time.perf_counter()
        async with self.bounded():
            reply = await self.runner.call(
                op, self.keys.prefix, {"now": to_ms(now), "cfg": self._cfg, **args}
            )
        if op in ROUTING_OPERATIONS:
            observe_decision(time.perf_counter() - start)
        return reply

    # Queues

    async def upsert_queue(self, queue: QueueConfig, now: float) -> bool:
        """Create or replace a queue; True when created."""
        code, created, _ = await self._call("queue_upsert", now, queue=queue.to_record())
        raise_for(code)
        return bool(created)

    async def delete_queue(self, name: str, now: float) -> None:
        """Remove a queue with nothing waiting."""
        code, _, _ = await self._call("queue_delete", now, name=name)
        raise_for(code)

    async def get_queue(self, name: str) -> QueueConfig | None:
        """A queue's configuration."""
        async with self.bounded():
            raw = await self.redis.hget(self.keys.queues, name)
        if raw is None:
            return None
        return QueueConfig.from_record(msgpack.unpackb(raw, raw=False))

    async def list_queues(self) -> list[QueueConfig]:
        """Every queue, by name."""
        async with self.bounded():
            raw = await self.redis.hgetall(self.keys.queues)
        queues = [QueueConfig.from_record(msgpack.unpackb(v, raw=False)) for v in raw.values()]
        return sorted(queues, key=lambda q: q.name)

    async def queue_figures(self, names: list[str], now: float) -> dict[str, QueueFigures]:
        """Live figures of the named queues (all when empty), keyed by name."""
        code, figures, _ = await self._call("queue_stats", now, names=names)
        raise_for(code)
        return {name: cast(QueueFigures, dict(f)) for name, f in (figures or {}).items()}

    async def queue_stats(self, queue: QueueConfig, now: float) -> dict[str, Any]:
        """A queue's stats (§4): figures, service level per formula and agents required."""
        figures = (await self.queue_figures([queue.name], now))[queue.name]
        return stats_view(figures, queue)

    async def metrics_snapshot(self, now: float, max_age_s: float) -> MetricsSnapshot:
        """The shared snapshot of time-dependent figures (recomputed when older than max_age_s)."""
        code, snapshot, _ = await self._call("metrics_snapshot", now, max_age_ms=to_ms(max_age_s))
        raise_for(code)
        return {
            "at": snapshot["at"],
            "queues": dict(snapshot["queues"] or {}),
            "agent_seconds": dict(snapshot["agent_seconds"] or {}),
        }

    async def first_waiting(self, queue: str, count: int) -> list[Interaction]:
        """The first `count` interactions waiting in the queue, with their positions."""
        key = self.keys.queue_waiting(queue)
        async with self.bounded():
            members = cast(list[bytes], await self.redis.zrange(key, 0, count - 1))
            ids = [member_id(text(m)) for m in members]
            raws = await self.redis.mget([self.keys.interaction(i) for i in ids]) if ids else []
        found = []
        for position, raw in enumerate(raws, start=1):
            if raw is not None:
                rec = msgpack.unpackb(raw, raw=False, strict_map_key=False)
                rec["position"] = position
                found.append(codec.interaction(rec))
        return found

    async def ready(self) -> bool:
        """The store answers for the namespace and holds the library of every script."""
        async with self.bounded():
            # A keyed read: a cluster answers FUNCTION LIST even while it is down (CLUSTERDOWN).
            await self.redis.exists(self.keys.queues)
            return await self.runner.loaded()

    async def load_queues(self, queues: Iterable[QueueConfig], clock: Clock) -> None:
        """Write the configuration file's queues over what the store holds (§7): now, and again
        whenever the store is found without the library and without the namespace's queues
        (restarted without its data). A node that holds them but lacked the library (a cluster
        slot moved to a node joined without it, a FUNCTION FLUSH) keeps its queues: they may
        have been changed through the API since."""
        written = tuple(queues)

        async def write() -> None:
            for queue in written:
                await self.upsert_queue(queue, clock.now())

        async def write_again() -> None:
            if await self.redis.exists(self.keys.queues):
                log.warning("the store lacked the library (not its data): loaded it again")
                return
            log.warning(
                "the store had lost the library (restarted without its data?): loaded it again, "
                "and the configuration's %d queue(s) written again",
                len(written),
            )
            await write()

        try:
            await write()
        except (StoreRefused, NotReplicated) as refused:  # not (or not known to be) written
            log.warning(
                "the configuration's %d queue(s) are not written yet: %s; written once it takes "
                "changes again",
                len(written),
                refused.detail,
            )
            self._unwritten = write
        self.runner.reloaded = write_again

    async def write_unwritten(self) -> None:
        """Write the configuration's queues if the store refused them at start (load_queues):
        the tick loop calls this before each tick, until the store takes them or answers why
        not (a conflict: logged, the store's queues stay)."""
        write, self._unwritten = self._unwritten, None
        if write is None:
            return
        try:
            await write()
        except StoreUnavailable:
            self._unwritten = write
            raise
        except RouterError as error:
            log.error(
                "the configuration's queues cannot be written, the store's stay: %s", error.detail
            )
            return
        log.info("the configuration's queues are written")

    # Agents

    async def put_agent(
        self, agent_id: str, profile: AgentProfile, now: float
    ) -> tuple[Agent, bool]:
        """Create or update an agent; True when created."""
        code, rec, created = await self._call(
            "agent_put",
            now,
            id=agent_id,
            skills=profile.skills,
            channels={str(c): n for c, n in profile.channels.items()},
            name=profile.name,
        )
        raise_for(code)
        return codec.agent(rec), bool(created)

    async def set_agent_state(
        self,
        agent_id: str,
        state: AgentState,
        now: float,
        reason: str | None = None,
        force: bool = False,
    ) -> Agent:
        """Set an agent's state (§3.5)."""
        code, rec, _ = await self._call(
            "agent_state", now, id=agent_id, state=state.value, reason=reason, force=force
        )
        raise_for(code)
        return codec.agent(rec)

    async def delete_agent(self, agent_id: str, now: float) -> None:
        """Remove a logged-out agent."""
        code, _, _ = await self._call("agent_delete", now, id=agent_id)
        raise_for(code)

    async def get_agent(self, agent_id: str) -> Agent | None:
        """An agent, or None."""
        async with self.bounded():
            raw = await self.redis.get(self.keys.agent(agent_id))
        return None if raw is None else codec.agent(msgpack.unpackb(raw, raw=False))

    async def page_agents(
        self,
        after: str,
        limit: int,
        state: AgentState | None = None,
        queue: QueueConfig | None = None,
    ) -> tuple[list[Agent], str | None]:
        """Up to `limit` agents after id `after` in id order, with the cursor of the next page.

        Filters read at most 10 x `limit` agents per page, so a page may hold fewer than `limit`
        and still have a next cursor.
        """
        start = f"({after}" if after else "-"
        async with self.bounded():
            raw_ids = await self.redis.zrangebylex(self.keys.agents, start, "+", 0, limit * 10)
            ids = [text(i) for i in raw_ids]
            raws = await self.redis.mget([self.keys.agent(i) for i in ids]) if ids else []
        found: list[Agent] = []
        last = None
        for agent_id, raw in zip(ids, raws, strict=True):
            if len(found) == limit:
                break
            last = agent_id
            if raw is None:
                continue
            agent = codec.agent(msgpack.unpackb(raw, raw=False, strict_map_key=False))
            if (state is None or agent.state == state) and (
                queue is None or queue.served_by(agent.skills)
            ):
                found.append(agent)
        more = last is not None and (last != ids[-1] or len(ids) == limit * 10)
        return found, last if more else None

    # Interactions

    async def create_interaction(
        self, request: NewInteraction, now: float
    ) -> tuple[Interaction, bool]:
        """Queue an interaction (routed at once); False when `id` already existed."""
        ix_id = request.id or uuid.uuid4().hex
        try:
            code, rec, created = await self._call(
                "interaction_create",
                now,
                ix={
                    "id": ix_id,
                    "queue": request.queue,
                    "channel": request.channel.value if request.channel else None,
                    "priority": request.priority,
                    "credit_ms": None if request.credit_s is None else to_ms(request.credit_s),
                    "skills": request.skills,
                    "pref": list(request.preferred_agents),
                    "pref_wait_ms": to_ms(request.preferred_wait_s or 0.0),
                    # Opaque to the scripts: JSON text survives Lua unchanged ({} stays {}).
                    "data": None if request.data is None else json.dumps(request.data),
                    "fp": fingerprint(request),
                },
            )
        except StoreRefused:
            raise
        except StoreUnavailable as error:
            # It may have been applied: the client retries with this id (SPEC §4).
            raise StoreUnavailable(
                f"{error.detail}; the interaction may have been created: retry with the same id",
                interaction_id=ix_id,
            ) from error
        raise_for(code, "channel" if code == "channel_mismatch" else None)
        return codec.interaction(rec), bool(created)

    async def accept(self, interaction_id: str, agent_id: str, now: float) -> Interaction:
        """The agent answered its offer."""
        return await self._ix_op("interaction_accept", now, id=interaction_id, agent_id=agent_id)

    async def reject(
        self, interaction_id: str, agent_id: str, reason: RejectReason, now: float
    ) -> Interaction:
        """The agent rejected or missed its offer."""
        return await self._ix_op(
            "interaction_reject", now, id=interaction_id, agent_id=agent_id, reason=reason.value
        )

    async def complete(
        self,
        interaction_id: str,
        agent_id: str,
        now: float,
        outcome: Outcome = Outcome.RESOLVED,
        wrap_up_s: float | None = None,
    ) -> Interaction:
        """The agent finished the interaction."""
        return await self._ix_op(
            "interaction_complete",
            now,
            id=interaction_id,
            agent_id=agent_id,
            outcome=outcome.value,
            wrap_up_ms=None if wrap_up_s is None else to_ms(wrap_up_s),
        )

    async def transfer(
        self, interaction_id: str, agent_id: str, queue: str, now: float
    ) -> Interaction:
        """The connected agent sends the interaction to another queue."""
        return await self._ix_op(
            "interaction_transfer", now, id=interaction_id, agent_id=agent_id, queue=queue
        )

    async def abandon(self, interaction_id: str, now: float) -> Interaction:
        """The caller hung up (or the platform cancels a callback)."""
        return await self._ix_op("interaction_abandon", now, id=interaction_id)

    async def accept_callback(
        self, interaction_id: str, now: float, at: float | None = None
    ) -> Interaction:
        """The caller accepts the callback offered to it, now or scheduled `at` (§3.10)."""
        return await self._ix_op(
            "interaction_callback", now, id=interaction_id, at_ms=None if at is None else to_ms(at)
        )

    async def _ix_op(self, op: str, now: float, **args: Any) -> Interaction:
        code, rec, _ = await self._call(op, now, **args)
        raise_for(code, about=rec)
        return codec.interaction(rec)

    async def get_interaction(self, interaction_id: str, now: float) -> Interaction | None:
        """An interaction with its position and EWT (§4), or None."""
        code, rec, _ = await self._call("interaction_get", now, id=interaction_id)
        return None if code == "not_found" else codec.interaction(rec)

    async def page_interactions(
        self,
        after: str,
        limit: int,
        now: float,
        *,
        queue: str | None = None,
        status: InteractionStatus | None = None,
        agent_id: str | None = None,
    ) -> tuple[list[Interaction], str | None]:
        """Up to `limit` interactions not yet ended, oldest first, after cursor `after`, each
        with its position and EWT; and the cursor of the next page (None on the last)."""
        code, page, cursor = await self._call(
            "interaction_list",
            now,
            after=after,
            limit=limit,
            queue=queue,
            status=None if status is None else status.value,
            agent=agent_id,
        )
        raise_for(code)
        return [codec.interaction(rec) for rec in page or []], cursor or None

    # Time and events

    async def tick(self, now: float, limit: int = 500) -> TickResult:
        """Apply due timers; any number of routers may call this at once."""
        code, (applied, lag_ms, next_due), _ = await self._call("tick", now, limit=limit)
        raise_for(code)
        return TickResult(
            int(applied), lag_ms / 1000, None if next_due is False else next_due / 1000
        )

    async def read_log(self, after: str = "0", until: str = "+", count: int = 1000) -> list[Entry]:
        """Entries of the event log after the id `after`, up to `until`, oldest first."""
        start = f"({after}" if after not in ("0", "0-0") else "-"
        async with self.bounded():
            return cast(list[Entry], await self.redis.xrange(self.keys.events, start, until, count))

    async def read_events(self, after: str = "0", count: int = 1000) -> list[Event]:
        """Events of the log after the id `after`, oldest first."""
        entries = await self.read_log(after, "+", count)
        return [codec.event(text(eid), fields) for eid, fields in entries]

    async def log_info(self) -> dict[str, Any] | None:
        """XINFO STREAM of the event log, or None when nothing was ever appended."""
        async with self.bounded():
            try:
                info: dict[str, Any] = await self.redis.xinfo_stream(self.keys.events)
            except ResponseError:
                return None
        return info

    async def webhook_call(self, redis: Redis, op: str, now: float, **args: Any) -> list[Any]:
        """A webhook delivery loop's operation (webhook_group, webhook_next, webhook_touch) on its
        own client `redis`: outside `store_timeout_s` and the durability wait, as its other
        reads; the reply as Redis sent it."""
        reply = await self.runner.call_on(
            redis, op, self.keys.prefix, {"now": to_ms(now), "cfg": self._cfg, **args}
        )
        return cast(list[Any], reply)
