"""The invariant checker: reads a whole namespace and lists what is wrong with it.

It re-derives every index from the records with its own code (not the Lua scripts'), so a bug
in the scripts shows up as a disagreement. It scans the namespace: for tests, the property test
and an operator's diagnosis, never for the request path.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, cast

import msgpack
from redis.asyncio import Redis

from router.domain.models import TERMINAL_STATUSES, InteractionStatus
from router.store.codec import text
from router.store.keys import Keys

_IDLE_SPAN = 2**42
_SCORE_BASE = 2**53


def _map(value: Any) -> dict[str, Any]:
    return dict(value) if value else {}


@dataclass
class Snapshot:
    """Every record and index of one namespace."""

    queues: dict[str, dict[str, Any]] = field(default_factory=dict)
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)
    interactions: dict[str, dict[str, Any]] = field(default_factory=dict)
    classes: dict[int, dict[str, Any]] = field(default_factory=dict)
    class_waiting: dict[int, dict[str, float]] = field(default_factory=dict)
    class_agents: dict[int, dict[str, float]] = field(default_factory=dict)
    class_staffed: dict[int, set[str]] = field(default_factory=dict)
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

    @classmethod
    async def read(cls, redis: Redis, keys: Keys) -> Snapshot:
        """Read the namespace (SCAN: not for the request path)."""
        snap = cls()
        prefix = keys.prefix

        async def zset(key: str) -> dict[str, float]:
            pairs = cast(list[tuple[bytes, float]], await redis.zrange(key, 0, -1, withscores=True))
            return {text(m): float(s) for m, s in pairs}

        async def members(key: str) -> set[str]:
            return {text(m) for m in await redis.smembers(key)}

        async def record(key: str) -> dict[str, Any]:
            raw = await redis.get(key)
            assert isinstance(raw, bytes)
            found: dict[str, Any] = msgpack.unpackb(raw, raw=False, strict_map_key=False)
            return found

        async for raw_key in redis.scan_iter(match=prefix.replace("{", "[{]") + "*", count=1000):
            key = text(raw_key)
            kind, _, name = key[len(prefix) :].partition(":")
            if kind == "ag":
                snap.agents[name] = await record(key)
            elif kind == "ix":
                snap.interactions[name] = await record(key)
            elif kind == "cls":
                snap.classes[int(name)] = await record(key)
            elif kind == "clsix":
                snap.class_waiting[int(name)] = await zset(key)
            elif kind == "clsag":
                snap.class_agents[int(name)] = await zset(key)
            elif kind == "qst":
                snap.queue_staffed[name] = await members(key)
            elif kind == "clsin":
                snap.class_staffed[int(name)] = await members(key)
            elif kind == "agcls":
                snap.agent_classes[name] = {int(c) for c in await members(key)}
            elif kind == "agex":
                snap.agent_excluded[name] = await members(key)
            elif kind == "pref":
                snap.agent_preferred[name] = await zset(key)
            elif kind == "qw":
                snap.queue_waiting[name] = await zset(key)
            elif kind == "ql":
                snap.queue_on_line[name] = await zset(key)
            elif kind == "qcb":
                snap.queue_scheduled[name] = await members(key)
        raw_queues = await redis.hgetall(keys.queues)
        snap.queues = {text(k): msgpack.unpackb(v, raw=False) for k, v in raw_queues.items()}
        snap.logged_in = await members(keys.logged_in)
        snap.agent_ids = set(await zset(keys.agents))
        snap.timers = await zset(keys.timers)
        snap.filling = {int(c) for c in await redis.hkeys(keys.class_filling)}
        return snap


def _meets(skills: dict[str, int], requirement: dict[str, int]) -> bool:
    return all(skills.get(s, 0) >= level for s, level in requirement.items())


def _requirement(queue: dict[str, Any], step: int, extra: dict[str, int]) -> dict[str, int]:
    base = _map(queue["skills"]) if step == 0 else _map(queue["steps"][step - 1]["skills"])
    merged = dict(base)
    for skill, level in _map(extra).items():
        merged[skill] = max(level, merged.get(skill, 0))
    return merged


def _free_on(agent: dict[str, Any], channel: str, exclusive: set[str]) -> tuple[bool, int]:
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


def _routable(ix: dict[str, Any]) -> bool:
    """Queued, or a callback not held back: it waits in its class for an agent."""
    status = ix["status"]
    return status == InteractionStatus.QUEUED or (
        status == InteractionStatus.CALLBACK and not ix.get("cb_hold")
    )


def _agent_score(agent: dict[str, Any], cls: dict[str, Any], active: int) -> float:
    primary = active
    if cls["strategy"] == "best_skill":
        total = sum(_map(agent["skills"]).get(s, 0) for s in _map(cls["skills"]))
        primary = (80 - total) * 33 + active
    idle = max(0, min(_IDLE_SPAN - 1, agent.get("idle_since") or 0))
    return float(primary * _IDLE_SPAN + idle - _SCORE_BASE)


def find_violations(snap: Snapshot, now_ms: int, exclusive: set[str]) -> list[str]:
    """Every broken invariant of the snapshot, as readable lines (empty when all hold)."""
    bad: list[str] = []
    ixs, agents = snap.interactions, snap.agents
    holders: dict[str, list[str]] = defaultdict(list)

    for aid, ag in agents.items():
        active = _map(ag.get("act"))
        per_channel: dict[str, int] = defaultdict(int)
        for ix_id, a in active.items():
            per_channel[a["ch"]] += 1
            holders[ix_id].append(aid)
            held = ixs.get(ix_id)
            if held is None or held["status"] != a["st"] or held.get("agent") != aid:
                bad.append(f"agent {aid} holds {ix_id} as {a['st']} but the record disagrees")
            elif a["st"] == "offered" and f"off:{ix_id}" not in snap.timers:
                bad.append(f"agent {aid} reserved for {ix_id} with no live offer (no expiry timer)")
        for ch, n in per_channel.items():
            if n > _map(ag["channels"]).get(ch, 0):
                bad.append(f"agent {aid} over capacity on {ch}: {n}")
        if any(ch in exclusive for ch in per_channel) and sum(per_channel.values()) > 1:
            bad.append(f"agent {aid} holds an exclusive channel with other interactions")
        if (ag["state"] != "logged_out") != (aid in snap.logged_in):
            bad.append(f"agent {aid} state {ag['state']} disagrees with the logged-in set")
        if ag.get("wrap_until") and f"wu:{aid}" not in snap.timers:
            bad.append(f"agent {aid} in wrap-up with no wrap-up timer")

    for name, config in snap.queues.items():
        steps = range(len(config.get("steps") or ()) + 1)
        serving = {
            aid
            for aid in snap.logged_in
            if aid in agents
            and any(_meets(_map(agents[aid]["skills"]), _requirement(config, s, {})) for s in steps)
        }
        if snap.queue_staffed.get(name, set()) != serving:
            bad.append(f"queue {name} staffed set disagrees with the logged-in agents")

    if set(agents) != snap.agent_ids:
        bad.append("the agent list disagrees with the agent records")

    # Which classes each logged-in agent meets, and which of them it could take an offer of.
    for aid in snap.logged_in:
        record = agents.get(aid)
        if record is None:
            bad.append(f"logged-in agent {aid} has no record")
            continue
        meets = {
            c
            for c, cls in snap.classes.items()
            if _meets(_map(record["skills"]), _map(cls["skills"]))
        }
        have = snap.agent_classes.get(aid, set())
        if have - meets or (meets - have) - snap.filling:
            bad.append(f"agent {aid} class set disagrees with its skills")
    for cid, cls in snap.classes.items():
        pool: dict[str, float] = {}
        staffed = {
            aid
            for aid in snap.logged_in
            if aid in agents and _meets(_map(agents[aid]["skills"]), _map(cls["skills"]))
        }
        members = snap.class_staffed.get(cid, set())
        if cid in snap.filling:
            # Not reached by the fill yet is allowed; what it holds must be right and agree
            # with the agents' class sets.
            if members - staffed:
                bad.append(f"class {cid} (filling) holds agents that do not meet it")
            if members != {a for a in staffed if cid in snap.agent_classes.get(a, set())}:
                bad.append(f"class {cid} (filling) staffed set disagrees with the agents' sets")
            staffed &= members
        elif members != staffed:
            bad.append(f"class {cid} staffed set disagrees with the logged-in agents")
        for aid in staffed:
            free, on = _free_on(agents[aid], cls["channel"], exclusive)
            if free:
                pool[aid] = _agent_score(agents[aid], cls, on)
        if snap.class_agents.get(cid, {}) != pool:
            bad.append(
                f"class {cid} agent index disagrees with the agents: "
                f"{sorted(snap.class_agents.get(cid, {}))} vs {sorted(pool)}"
            )

    waiting_of_class: dict[int, dict[str, float]] = defaultdict(dict)
    for ix_id, ix in ixs.items():
        status = InteractionStatus(ix["status"])
        member: str = ix.get("m", "")
        queue = snap.queues.get(ix["queue"])
        if status in TERMINAL_STATUSES:
            for label, index in (("queue", snap.queue_waiting), ("line", snap.queue_on_line)):
                if member in index.get(ix["queue"], {}):
                    bad.append(f"ended {ix_id} ({status}) still in the {label} index")
            if any(t.endswith(f":{ix_id}") and not t.startswith("fill:") for t in snap.timers):
                bad.append(f"ended {ix_id} still has timers")
            if holders.get(ix_id):
                bad.append(f"ended {ix_id} still held by {holders[ix_id]}")
            continue
        if status == InteractionStatus.OFFERED and len(holders.get(ix_id, [])) != 1:
            bad.append(f"{ix_id} offered to {holders.get(ix_id, [])}")
        waiting = (InteractionStatus.QUEUED, InteractionStatus.OFFERED, InteractionStatus.CALLBACK)
        scheduled = status == InteractionStatus.CALLBACK and ix.get("cb_at")
        if status in waiting:
            on_line = member in snap.queue_on_line.get(ix["queue"], {})
            if on_line == bool(ix.get("cb")):
                bad.append(f"{ix_id}: on the line index of {ix['queue']} is {on_line}")
            in_order = snap.queue_waiting.get(ix["queue"], {}).get(member) == ix["score"]
            if in_order == bool(scheduled):
                bad.append(f"{ix_id}: in the queue order of {ix['queue']} is {in_order}")
            if queue is None:
                bad.append(f"{ix_id} ({status}) waits in {ix['queue']}, a queue that is gone")
            else:
                want_req = _requirement(queue, ix["step"], _map(ix.get("skills")))
                if _map(snap.classes[ix["cls"]]["skills"]) != want_req:
                    bad.append(f"{ix_id} in a class whose requirement is not its own")
        if bool(scheduled) != (ix_id in snap.queue_scheduled.get(ix["queue"], set())):
            bad.append(f"{ix_id}: in the scheduled callbacks of {ix['queue']} is {not scheduled}")
        if status == InteractionStatus.CALLBACK and ix.get("cb_hold"):
            kind = "cbd" if scheduled else "cbr"
            if f"{kind}:{ix_id}" not in snap.timers:
                bad.append(f"{ix_id} held back as a callback with no {kind} timer")
        elif _routable(ix):
            if ix.get("pref_until"):
                for aid in ix["pref"]:
                    if snap.agent_preferred.get(aid, {}).get(member) != ix["score"]:
                        bad.append(f"{ix_id} in preferred wait but not in {aid}'s set")
            else:
                waiting_of_class[ix["cls"]][member] = ix["score"]
        for aid in _map(ix.get("excl")):
            if ix_id not in snap.agent_excluded.get(aid, set()):
                bad.append(f"{ix_id} excludes {aid} but {aid}'s exclusion set lacks it")
        if status == InteractionStatus.CONNECTED and holders.get(ix_id) != [ix.get("agent")]:
            bad.append(f"{ix_id} connected but held by {holders.get(ix_id)}")

    for name, ids in snap.queue_scheduled.items():
        for ix_id in ids:
            ix = ixs.get(ix_id, {})
            if ix.get("queue") != name or ix["status"] != "callback" or not ix.get("cb_at"):
                bad.append(f"{ix_id} in the scheduled callbacks of {name} but not one of them")

    for cid in set(snap.class_waiting) | set(waiting_of_class):
        if snap.class_waiting.get(cid, {}) != waiting_of_class.get(cid, {}):
            bad.append(f"class {cid} waiting index disagrees with the interactions")

    # The one that matters most: nothing routable waits while an agent that could take it is
    # idle (§3.4).
    for ix_id, ix in ixs.items():
        if not _routable(ix):
            continue
        cls = snap.classes[ix["cls"]]
        excluded = _map(ix.get("excl"))
        candidates = ix["pref"] if ix.get("pref_until") else sorted(snap.logged_in)
        reached = snap.class_staffed.get(ix["cls"], set())
        for aid in candidates:
            record = agents.get(aid)
            if record is None or aid in excluded or aid not in snap.logged_in:
                continue
            if ix["cls"] in snap.filling and aid not in reached:
                continue  # the fill will index it, and route then
            if (
                _meets(_map(record["skills"]), _map(cls["skills"]))
                and _free_on(record, ix["channel"], exclusive)[0]
            ):
                bad.append(f"{ix_id} waits while agent {aid} could take it")
                break

    fill_timers = {int(m[5:]) for m in snap.timers if m.startswith("fill:")}
    if fill_timers != snap.filling:
        bad.append(f"fill timers {sorted(fill_timers)} disagree with the classes being filled")

    overdue = [m for m, due in snap.timers.items() if due <= now_ms]
    if overdue:
        bad.append(f"timers overdue at now: {sorted(overdue)[:5]}")
    return bad


async def check_invariants(redis: Redis, keys: Keys, now: float, exclusive: set[str]) -> list[str]:
    """Read the namespace and list its violations (empty when every invariant holds)."""
    return find_violations(await Snapshot.read(redis, keys), round(now * 1000), exclusive)
