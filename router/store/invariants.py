"""The invariant checker: reads a whole namespace and lists what is wrong with it.

It re-derives every index from the records with its own code (not the Lua scripts'), so a bug
in the scripts shows up as a disagreement. It scans the namespace: for tests, the property test
and an operator's diagnosis, never for the request path. One function checks one family of
invariants; the record fields are those of router/store/records.py.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import msgpack
from redis.asyncio import Redis

from router.domain.models import TERMINAL_STATUSES, InteractionStatus
from router.store import timers
from router.store.codec import text, to_ms
from router.store.keys import Keys
from router.store.records import (
    ACTIVE_SLOTS,
    IDLE_SPAN_MS,
    SCORE_BASE,
    SKILL_SUM_MAX,
    AgentRecord,
    ClassRecord,
    InteractionRecord,
    QueueRecord,
    member_id,
)


def _map(value: Any) -> dict[str, Any]:
    return dict(value) if value else {}


@dataclass
class Snapshot:
    """Every record and index of one namespace."""

    queues: dict[str, QueueRecord] = field(default_factory=dict)
    agents: dict[str, AgentRecord] = field(default_factory=dict)
    interactions: dict[str, InteractionRecord] = field(default_factory=dict)
    classes: dict[int, ClassRecord] = field(default_factory=dict)
    class_waiting: dict[int, dict[str, float]] = field(default_factory=dict)
    classes_waiting: set[int] = field(default_factory=set)
    class_agents: dict[int, dict[str, float]] = field(default_factory=dict)
    class_staffed: dict[int, set[str]] = field(default_factory=dict)
    class_wrap_up: dict[int, dict[str, float]] = field(default_factory=dict)
    class_available: dict[int, set[str]] = field(default_factory=dict)
    queue_staffed: dict[str, set[str]] = field(default_factory=dict)
    agent_classes: dict[str, set[int]] = field(default_factory=dict)
    agent_excluded: dict[str, set[str]] = field(default_factory=dict)
    agent_preferred: dict[str, dict[str, float]] = field(default_factory=dict)
    queue_waiting: dict[str, dict[str, float]] = field(default_factory=dict)
    queue_on_line: dict[str, dict[str, float]] = field(default_factory=dict)
    queue_scheduled: dict[str, set[str]] = field(default_factory=dict)
    logged_in: set[str] = field(default_factory=set)
    agent_ids: set[str] = field(default_factory=set)
    timers: dict[str, float] = field(default_factory=dict)
    filling: set[int] = field(default_factory=set)
    """Classes with a live fill cursor: they may still miss agents their scan has not reached."""
    live: set[str] = field(default_factory=set)
    """Members of the index of interactions not yet ended."""

    @classmethod
    async def read(cls, redis: Redis, keys: Keys) -> Snapshot:
        """Read the namespace (SCAN: not for the request path)."""
        snap = cls()

        async def zset(key: str) -> dict[str, float]:
            pairs = cast(list[tuple[bytes, float]], await redis.zrange(key, 0, -1, withscores=True))
            return {text(m): float(s) for m, s in pairs}

        async def members(key: str) -> set[str]:
            return {text(m) for m in await redis.smembers(key)}

        async def class_ids(key: str) -> set[int]:
            return {int(c) for c in await members(key)}

        async def record(key: str) -> Any:
            raw = await redis.get(key)
            assert isinstance(raw, bytes)
            return msgpack.unpackb(raw, raw=False, strict_map_key=False)

        # Each family of per-record keys (the builder's key with an empty id): the map of the
        # snapshot it fills, how one key is read, and the type of the record id.
        Reader = Callable[[str], Awaitable[Any]]
        families: dict[str, tuple[dict[Any, Any], Reader, Callable[[str], Any]]] = {
            keys.agent(""): (snap.agents, record, str),
            keys.interaction(""): (snap.interactions, record, str),
            keys.routing_class(""): (snap.classes, record, int),
            keys.class_waiting(""): (snap.class_waiting, zset, int),
            keys.class_agents(""): (snap.class_agents, zset, int),
            keys.class_staffed(""): (snap.class_staffed, members, int),
            keys.class_wrap_up(""): (snap.class_wrap_up, zset, int),
            keys.class_available(""): (snap.class_available, members, int),
            keys.queue_staffed(""): (snap.queue_staffed, members, str),
            keys.agent_classes(""): (snap.agent_classes, class_ids, str),
            keys.agent_excluded(""): (snap.agent_excluded, members, str),
            keys.agent_preferred(""): (snap.agent_preferred, zset, str),
            keys.queue_waiting(""): (snap.queue_waiting, zset, str),
            keys.queue_on_line(""): (snap.queue_on_line, zset, str),
            keys.queue_scheduled(""): (snap.queue_scheduled, members, str),
        }
        start = len(keys.prefix)
        async for raw_key in redis.scan_iter(
            match=keys.prefix.replace("{", "[{]") + "*", count=1000
        ):
            key = text(raw_key)
            family = key[: key.find(":", start) + 1]
            if family in families:
                into, read, record_id = families[family]
                into[record_id(key[len(family) :])] = await read(key)
        raw_queues = await redis.hgetall(keys.queues)
        snap.queues = {text(k): msgpack.unpackb(v, raw=False) for k, v in raw_queues.items()}
        snap.logged_in = await members(keys.logged_in)
        snap.agent_ids = set(await zset(keys.agents))
        snap.timers = await zset(keys.timers)
        snap.filling = {int(c) for c in await redis.hkeys(keys.class_filling)}
        snap.classes_waiting = await class_ids(keys.classes_waiting)
        snap.live = set(await zset(keys.live))
        return snap


# Timer kinds the checker expects by name, as lib/timers.lua declares them.
_OFFER_EXPIRY = timers.declared("off", "interaction")
_WRAP_UP_END = timers.declared("wu", "agent")
_SCHEDULED_CALLBACK = timers.declared("cbd", "interaction")
_CALLBACK_RETRY = timers.declared("cbr", "interaction")
_INTERACTION_KINDS = timers.kinds_of("interaction")
_CLASS_KINDS = timers.kinds_of("class")
_WAITING = (InteractionStatus.QUEUED, InteractionStatus.OFFERED, InteractionStatus.CALLBACK)


def _meets(skills: dict[str, int], requirement: dict[str, int]) -> bool:
    return all(skills.get(s, 0) >= level for s, level in requirement.items())


def _requirement(queue: QueueRecord, step: int, extra: dict[str, int]) -> dict[str, int]:
    base = _map(queue["skills"]) if step == 0 else _map(queue["steps"][step - 1]["skills"])
    merged = dict(base)
    for skill, level in _map(extra).items():
        merged[skill] = max(level, merged.get(skill, 0))
    return merged


def _free_on(agent: AgentRecord, channel: str, exclusive: set[str]) -> tuple[bool, int]:
    """Whether the agent can take an offer on the channel (§3.6), and its active count there."""
    active = _map(agent.get("act"))
    on = sum(1 for a in active.values() if a["ch"] == channel)
    if agent["state"] != "available" or agent.get("wrap_until"):
        return False, on
    if on >= _map(agent["channels"]).get(channel, 0):
        return False, on
    if channel in exclusive and active:
        return False, on
    if any(a["ch"] in exclusive for a in active.values()):
        return False, on
    return True, on


def _routable(ix: InteractionRecord) -> bool:
    """Queued, or a callback not held back: it waits in its class for an agent."""
    status = ix["status"]
    return status == InteractionStatus.QUEUED or (
        status == InteractionStatus.CALLBACK and not ix.get("cb_hold")
    )


def _agent_score(agent: AgentRecord, cls: ClassRecord, active: int) -> float:
    primary = active
    if cls["strategy"] == "best_skill":
        total = sum(_map(agent["skills"]).get(s, 0) for s in _map(cls["skills"]))
        primary = (SKILL_SUM_MAX - total) * ACTIVE_SLOTS + active
    idle = max(0, min(IDLE_SPAN_MS - 1, agent.get("idle_since") or 0))
    return float(primary * IDLE_SPAN_MS + idle - SCORE_BASE)


def _holders(snap: Snapshot) -> dict[str, list[str]]:
    """Interaction id -> the agents whose records hold it."""
    holders: dict[str, list[str]] = defaultdict(list)
    for aid, ag in snap.agents.items():
        for ix_id in _map(ag.get("act")):
            holders[ix_id].append(aid)
    return holders


def _qualifies(agent: AgentRecord, channel: str, requirement: dict[str, int]) -> bool:
    """The agent has capacity on the channel and its skills meet the requirement."""
    return _map(agent["channels"]).get(channel, 0) > 0 and _meets(
        _map(agent["skills"]), requirement
    )


def _staffed(snap: Snapshot, channel: str, requirement: dict[str, int]) -> set[str]:
    """The logged-in agents that qualify for the channel and requirement (§4 staffed)."""
    return {
        aid
        for aid in snap.logged_in
        if aid in snap.agents and _qualifies(snap.agents[aid], channel, requirement)
    }


def find_violations(snap: Snapshot, now_ms: int, exclusive: set[str]) -> list[str]:
    """Every broken invariant of the snapshot, as readable lines (empty when all hold)."""
    holders = _holders(snap)
    return [
        *_agent_violations(snap, exclusive),
        *_queue_staffed_violations(snap),
        *_agent_class_violations(snap),
        *_class_index_violations(snap, exclusive),
        *_interaction_violations(snap, holders),
        *_scheduled_callback_violations(snap),
        *_class_waiting_violations(snap),
        *_idle_agent_violations(snap, exclusive),
        *_timer_violations(snap, now_ms),
        *_live_index_violations(snap),
    ]


def _agent_violations(snap: Snapshot, exclusive: set[str]) -> Iterator[str]:
    """What each agent holds, its capacity, the logged-in set and its wrap-up timer."""
    if set(snap.agents) != snap.agent_ids:
        yield "the agent list disagrees with the agent records"
    for aid, ag in snap.agents.items():
        per_channel: dict[str, int] = defaultdict(int)
        for ix_id, a in _map(ag.get("act")).items():
            per_channel[a["ch"]] += 1
            held = snap.interactions.get(ix_id)
            if held is None or held["status"] != a["st"] or held.get("agent") != aid:
                yield f"agent {aid} holds {ix_id} as {a['st']} but the record disagrees"
            elif a["st"] == "offered" and timers.member(_OFFER_EXPIRY, ix_id) not in snap.timers:
                yield f"agent {aid} reserved for {ix_id} with no live offer (no expiry timer)"
        for ch, n in per_channel.items():
            if n > _map(ag["channels"]).get(ch, 0):
                yield f"agent {aid} over capacity on {ch}: {n}"
        if any(ch in exclusive for ch in per_channel) and sum(per_channel.values()) > 1:
            yield f"agent {aid} holds an exclusive channel with other interactions"
        if (ag["state"] != "logged_out") != (aid in snap.logged_in):
            yield f"agent {aid} state {ag['state']} disagrees with the logged-in set"
        if ag.get("wrap_until") and timers.member(_WRAP_UP_END, aid) not in snap.timers:
            yield f"agent {aid} in wrap-up with no wrap-up timer"


def _queue_staffed_violations(snap: Snapshot) -> Iterator[str]:
    """A queue's staffed set: the logged-in agents with capacity on its channel that meet any
    of its steps (§4)."""
    for name, config in snap.queues.items():
        steps = range(len(config.get("steps") or ()) + 1)
        channel = config["channel"]
        serving = set().union(
            *(_staffed(snap, channel, _requirement(config, s, {})) for s in steps)
        )
        if snap.queue_staffed.get(name, set()) != serving:
            yield f"queue {name} staffed set disagrees with the logged-in agents"


def _agent_class_violations(snap: Snapshot) -> Iterator[str]:
    """The classes a logged-in agent qualifies for (a class being filled may not have reached
    it)."""
    for aid in snap.logged_in:
        record = snap.agents.get(aid)
        if record is None:
            yield f"logged-in agent {aid} has no record"
            continue
        meets = {
            c
            for c, cls in snap.classes.items()
            if _qualifies(record, cls["channel"], _map(cls["skills"]))
        }
        have = snap.agent_classes.get(aid, set())
        if have - meets or (meets - have) - snap.filling:
            yield f"agent {aid} class set disagrees with its skills and channels"


def _class_index_violations(snap: Snapshot, exclusive: set[str]) -> Iterator[str]:
    """A class's staffed set, its index of the agents that could take an offer now, and that of
    the available agents in wrap-up, by its end."""
    for cid, cls in snap.classes.items():
        staffed = _staffed(snap, cls["channel"], _map(cls["skills"]))
        members = snap.class_staffed.get(cid, set())
        if cid in snap.filling:
            # Not reached by the fill yet is allowed; what it holds must be right and agree
            # with the agents' class sets.
            if members - staffed:
                yield f"class {cid} (filling) holds agents that do not meet it"
            if members != {a for a in staffed if cid in snap.agent_classes.get(a, set())}:
                yield f"class {cid} (filling) staffed set disagrees with the agents' sets"
            staffed &= members
        elif members != staffed:
            yield f"class {cid} staffed set disagrees with the logged-in agents"
        wrapping = {
            aid: float(snap.agents[aid]["wrap_until"])
            for aid in staffed
            if snap.agents[aid].get("wrap_until") and snap.agents[aid]["state"] == "available"
        }
        available = {aid for aid in staffed if snap.agents[aid]["state"] == "available"}
        if snap.class_available.get(cid, set()) != available:
            yield f"class {cid} available set disagrees with the agents' states"
        if snap.class_wrap_up.get(cid, {}) != wrapping:
            yield (
                f"class {cid} wrap-up index disagrees with the agents in wrap-up: "
                f"{snap.class_wrap_up.get(cid, {})} vs {wrapping}"
            )
        pool: dict[str, float] = {}
        for aid in staffed:
            free, on = _free_on(snap.agents[aid], cls["channel"], exclusive)
            if free:
                pool[aid] = _agent_score(snap.agents[aid], cls, on)
        if snap.class_agents.get(cid, {}) != pool:
            yield (
                f"class {cid} agent index disagrees with the agents: "
                f"{sorted(snap.class_agents.get(cid, {}))} vs {sorted(pool)}"
            )


def _interaction_violations(snap: Snapshot, holders: dict[str, list[str]]) -> Iterator[str]:
    """Each interaction against the indexes, timers and agents its status implies."""
    for ix_id, ix in snap.interactions.items():
        if InteractionStatus(ix["status"]) in TERMINAL_STATUSES:
            yield from _ended_violations(snap, holders, ix_id, ix)
        else:
            yield from _live_violations(snap, holders, ix_id, ix)


def _ended_violations(
    snap: Snapshot, holders: dict[str, list[str]], ix_id: str, ix: InteractionRecord
) -> Iterator[str]:
    """An ended interaction is in no index, has no timer and is held by no agent."""
    status, member = InteractionStatus(ix["status"]), ix.get("m", "")
    for label, index in (("queue", snap.queue_waiting), ("line", snap.queue_on_line)):
        if member in index.get(ix["queue"], {}):
            yield f"ended {ix_id} ({status}) still in the {label} index"
    if any(timers.member(kind, ix_id) in snap.timers for kind in _INTERACTION_KINDS):
        yield f"ended {ix_id} still has timers"
    if holders.get(ix_id):
        yield f"ended {ix_id} still held by {holders[ix_id]}"


def _live_violations(
    snap: Snapshot, holders: dict[str, list[str]], ix_id: str, ix: InteractionRecord
) -> Iterator[str]:
    """A live interaction: its holders, queue indexes, callback timers, exclusions."""
    status = InteractionStatus(ix["status"])
    scheduled = bool(status == InteractionStatus.CALLBACK and ix.get("cb_at"))
    if status == InteractionStatus.OFFERED and len(holders.get(ix_id, [])) != 1:
        yield f"{ix_id} offered to {holders.get(ix_id, [])}"
    if status in _WAITING:
        yield from _waiting_violations(snap, ix_id, ix, scheduled)
    if scheduled and ix.get("pref_until"):
        yield f"{ix_id}: a scheduled callback in a preferred wait"
    if scheduled != (ix_id in snap.queue_scheduled.get(ix["queue"], set())):
        yield f"{ix_id}: in the scheduled callbacks of {ix['queue']} is {not scheduled}"
    if status == InteractionStatus.CALLBACK and ix.get("cb_hold"):
        kind = _SCHEDULED_CALLBACK if scheduled else _CALLBACK_RETRY
        if timers.member(kind, ix_id) not in snap.timers:
            yield f"{ix_id} held back as a callback with no {kind} timer"
    elif _routable(ix) and ix.get("pref_until"):
        for aid in ix["pref"]:
            if snap.agent_preferred.get(aid, {}).get(ix["m"]) != ix["score"]:
                yield f"{ix_id} in preferred wait but not in {aid}'s set"
    for aid in _map(ix.get("excl")):
        if ix_id not in snap.agent_excluded.get(aid, set()):
            yield f"{ix_id} excludes {aid} but {aid}'s exclusion set lacks it"
    if status == InteractionStatus.CONNECTED and holders.get(ix_id) != [ix.get("agent")]:
        yield f"{ix_id} connected but held by {holders.get(ix_id)}"


def _waiting_violations(
    snap: Snapshot, ix_id: str, ix: InteractionRecord, scheduled: bool
) -> Iterator[str]:
    """A waiting interaction: on the line unless a callback, in the queue's order unless
    scheduled, in the class of its requirement."""
    status, queue, member = ix["status"], snap.queues.get(ix["queue"]), ix.get("m", "")
    on_line = member in snap.queue_on_line.get(ix["queue"], {})
    if on_line == bool(ix.get("cb")):
        yield f"{ix_id}: on the line index of {ix['queue']} is {on_line}"
    in_order = snap.queue_waiting.get(ix["queue"], {}).get(member) == ix["score"]
    if in_order == scheduled:
        yield f"{ix_id}: in the queue order of {ix['queue']} is {in_order}"
    if queue is None:
        yield f"{ix_id} ({status}) waits in {ix['queue']}, a queue that is gone"
    elif _map(snap.classes[ix["cls"]]["skills"]) != _requirement(
        queue, ix["step"], _map(ix.get("skills"))
    ):
        yield f"{ix_id} in a class whose requirement is not its own"


def _scheduled_callback_violations(snap: Snapshot) -> Iterator[str]:
    """A queue's scheduled callbacks are its callbacks waiting for their time."""
    for name, ids in snap.queue_scheduled.items():
        for ix_id in ids:
            ix = snap.interactions.get(ix_id)
            if (
                ix is None
                or ix["queue"] != name
                or ix["status"] != "callback"
                or not ix.get("cb_at")
            ):
                yield f"{ix_id} in the scheduled callbacks of {name} but not one of them"


def _class_waiting_violations(snap: Snapshot) -> Iterator[str]:
    """A class's waiting index holds exactly the routable interactions of the class that are
    not in a preferred wait, and a class with any is in `classes_waiting` (agents look there)."""
    expected: dict[int, dict[str, float]] = defaultdict(dict)
    for ix in snap.interactions.values():
        if _routable(ix) and not ix.get("pref_until"):
            expected[ix["cls"]][ix["m"]] = ix["score"]
    for cid in set(snap.class_waiting) | set(expected):
        if snap.class_waiting.get(cid, {}) != expected.get(cid, {}):
            yield f"class {cid} waiting index disagrees with the interactions"
        if snap.class_waiting.get(cid) and cid not in snap.classes_waiting:
            yield f"class {cid} has interactions waiting but is not in classes_waiting"


def _idle_agent_violations(snap: Snapshot, exclusive: set[str]) -> Iterator[str]:
    """The one that matters most: nothing routable waits while an agent that could take it is
    idle (§3.4)."""
    for ix_id, ix in snap.interactions.items():
        if not _routable(ix):
            continue
        requirement = _map(snap.classes[ix["cls"]]["skills"])
        excluded = _map(ix.get("excl"))
        candidates = ix["pref"] if ix.get("pref_until") else sorted(snap.logged_in)
        reached = snap.class_staffed.get(ix["cls"], set())
        for aid in candidates:
            record = snap.agents.get(aid)
            if record is None or aid in excluded or aid not in snap.logged_in:
                continue
            if ix["cls"] in snap.filling and aid not in reached:
                continue  # the fill will index it, and route then
            if (
                _meets(_map(record["skills"]), requirement)
                and _free_on(record, ix["channel"], exclusive)[0]
            ):
                yield f"{ix_id} waits while agent {aid} could take it"
                break


def _timer_violations(snap: Snapshot, now_ms: int) -> Iterator[str]:
    """Every timer is of a declared kind, a class's fill timer runs while it is filled, and
    nothing is overdue (every script applies what is due at its `now` first)."""
    parsed = [timers.parse(t) for t in snap.timers]
    unknown = sorted(f"{kind}:{rid}" for kind, rid in parsed if kind not in timers.KINDS)
    if unknown:
        yield f"timers of no declared kind: {unknown[:5]}"
    fill_timers = {int(rid) for kind, rid in parsed if kind in _CLASS_KINDS}
    if fill_timers != snap.filling:
        yield f"fill timers {sorted(fill_timers)} disagree with the classes being filled"
    overdue = [m for m, due in snap.timers.items() if due <= now_ms]
    if overdue:
        yield f"timers overdue at now: {sorted(overdue)[:5]}"


def _live_index_violations(snap: Snapshot) -> Iterator[str]:
    """The index of interactions not yet ended lists exactly those, each by its member."""
    expected = {
        f"{ix['created']:015d}:{ix_id}"
        for ix_id, ix in snap.interactions.items()
        if ix["status"] not in TERMINAL_STATUSES
    }
    for member in sorted(expected - snap.live)[:5]:
        yield f"{member_id(member)} not ended, missing from the live index"
    for member in sorted(snap.live - expected)[:5]:
        yield f"the live index lists {member_id(member)}, ended or gone"


async def check_invariants(redis: Redis, keys: Keys, now: float, exclusive: set[str]) -> list[str]:
    """Read the namespace and list its violations (empty when every invariant holds)."""
    return find_violations(await Snapshot.read(redis, keys), to_ms(now), exclusive)
