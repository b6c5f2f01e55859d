"""Virtual-time simulation: a trace and a roster driven through the real Engine, no sleeps.

A discrete-event loop plays the platform and the agents: agents log in and out by their shifts,
interactions arrive, offers (read from the event log) are accepted after the ring delay, calls
complete after `handle_s` (then wrap-up), callers hang up after `patience_s` while still waiting,
agents take the roster's breaks (`not_ready`, see `loadtest.unavailability`), and `tick(now)` runs
at every due timer. Every engine call gets an explicit `now`.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any, cast

import msgpack
from redis.asyncio import Redis

from loadtest.progress import SILENT, Progress
from loadtest.trace import Call, Roster, RosterAgent
from loadtest.unavailability import BREAK_REASON, BreakBook, Unavailability
from router.domain.models import AgentProfile, AgentState, Channel, NewInteraction, QueueConfig
from router.errors import Conflict
from router.settings import ServiceSettings
from router.store import codec
from router.store.engine import Engine
from router.store.server import RedisServer

EPOCH = 1_800_000_000.0
"""Trace second 0 in engine time (the engine needs epoch seconds)."""
SHIFT_END_REASON = "end_of_shift"


class Kind(IntEnum):
    """Simulation events; at equal times the smaller kind goes first."""

    TICK = 0
    COMPLETE = 1
    ACCEPT = 2
    CALLBACK = 3
    ABANDON = 4
    LOGOUT = 5
    BREAK = 6
    BACK = 7
    LOGIN = 8
    ARRIVAL = 9


@dataclass
class CallResult:
    """What happened to one call; times are trace seconds."""

    call: Call
    status: str = "pending"
    """answered, abandoned, timed_out, blocked, or unanswered (still waiting at the end)."""
    enqueued_s: float | None = None
    answered_s: float | None = None
    ended_s: float | None = None
    free_s: float | None = None
    """End of the agent's wrap-up."""
    agent_id: str | None = None
    ewt_s: float | None = None
    """The router's EWT at arrival (what it records for the arrival; `replay`: the API's)."""
    queued: bool = False
    """It waited in the queue (it was not offered at once)."""
    callback_offered: bool = False
    callback: bool = False
    """The caller took the callback (off the line: no longer abandons)."""

    @property
    def wait_s(self) -> float | None:
        """Wait from queue entry to the answer or the end."""
        end = self.answered_s if self.answered_s is not None else self.ended_s
        if end is None or self.enqueued_s is None:
            return None
        return max(0.0, end - self.enqueued_s)


@dataclass(frozen=True)
class SimOptions:
    """Ring delay (s) before each accept, the engine time of trace second 0, the seed of the
    roster's wrap-up and break draws, and where arrivals are counted (silent by default)."""

    ring_delay_s: float = 0.0
    start: float = EPOCH
    seed: int = 1
    progress: Progress = field(default=SILENT, compare=False, repr=False)


@dataclass
class SimResult:
    """The calls' outcomes and what the run cost."""

    calls: list[CallResult]
    queues: dict[str, QueueConfig]
    roster: Roster
    wall_s: float = 0.0
    engine_calls: int = 0
    label: str = ""
    notes: list[str] = field(default_factory=list)


def check_queues(calls: Sequence[Call], queues: dict[str, QueueConfig]) -> None:
    """Every queue the trace names must be configured."""
    missing = sorted({c.queue for c in calls} - set(queues))
    if missing:
        raise ValueError(f"trace queues not in the configuration: {', '.join(missing)}")


class Simulator:
    """One run of a trace through an engine namespace."""

    def __init__(
        self,
        engine: Engine,
        calls: Sequence[Call],
        roster: Roster,
        queues: Sequence[QueueConfig],
        options: SimOptions = SimOptions(),
    ) -> None:
        self.engine = engine
        self.calls = list(calls)
        self.roster = roster
        self.queues = {q.name: q for q in queues}
        check_queues(self.calls, self.queues)
        self.opt = options
        self.results = {c.id: CallResult(c) for c in self.calls}
        self.heap: list[tuple[float, int, int, Any]] = []
        self.seq = 0
        self.ticks: set[int] = set()
        self.last_event = "0"
        self.connected: dict[str, set[str]] = {a.id: set() for a in roster.agents}
        self.offered: dict[str, set[str]] = {a.id: set() for a in roster.agents}
        self.unav = Unavailability(roster, options.seed)
        self.breaks = BreakBook(self.unav)
        self.on_shift: set[str] = set()
        self.leaving: set[str] = set()
        self.engine_calls = 0
        self.horizon = 0.0

    def push(self, t: float, kind: Kind, payload: Any) -> None:
        """Schedule an event at trace second `t`."""
        self.seq += 1
        heapq.heappush(self.heap, (t, int(kind), self.seq, payload))

    def now(self, t: float) -> float:
        """Engine time of trace second `t`."""
        return self.opt.start + t

    async def run(self) -> SimResult:
        """Play everything; the result lists every call's outcome."""
        wall = time.perf_counter()
        for queue in self.queues.values():
            await self.engine.upsert_queue(queue, self.now(0))
        for agent in self.roster.agents:
            profile = AgentProfile(
                skills=agent.skills, channels={Channel(c): n for c, n in agent.channels.items()}
            )
            await self.engine.put_agent(agent.id, profile, self.now(0))
            for start, end in agent.shifts:
                self.push(start, Kind.LOGIN, agent.id)
                self.push(end, Kind.LOGOUT, agent.id)
        for index, call in enumerate(self.calls):
            self.push(call.arrival_s, Kind.ARRIVAL, index)
        ends = [c.arrival_s + c.handle_s for c in self.calls] + [
            e for a in self.roster.agents for _, e in a.shifts
        ]
        self.horizon = max(ends, default=0.0) + 2 * 86_400
        await self.poll(0.0)
        while self.heap:
            t, kind, _, payload = heapq.heappop(self.heap)
            await self.handle(t, Kind(kind), payload)
        for r in self.results.values():
            if r.status == "pending":
                r.status = "unanswered"
        return SimResult(
            list(self.results.values()),
            self.queues,
            self.roster,
            time.perf_counter() - wall,
            self.engine_calls,
        )

    async def handle(self, t: float, kind: Kind, payload: Any) -> None:
        """Apply one simulation event, then read what the engine did."""
        self.engine_calls += 1
        if await self.apply(t, kind, payload):
            await self.poll(t)

    async def apply(self, t: float, kind: Kind, payload: Any) -> bool:
        """Apply one simulation event; whether it may have routed something (then poll)."""
        if kind is Kind.TICK:
            return await self.tick(t)
        if kind is Kind.ARRIVAL:
            await self.arrive(t, self.calls[payload])
            self.opt.progress.advance()
        elif kind is Kind.ACCEPT:
            await self.accept(t, *payload)
            return False  # an accept routes nothing: no poll
        elif kind is Kind.COMPLETE:
            await self.complete(t, *payload)
        elif kind is Kind.CALLBACK:
            return await self.take_callback(t, payload)
        elif kind is Kind.ABANDON:
            return await self.abandon(t, payload)
        elif kind is Kind.LOGIN:
            await self.login(t, payload)
        elif kind is Kind.BREAK:
            return await self.take_break(t, *payload)
        elif kind is Kind.BACK:
            return await self.back_from_break(t, *payload)
        else:
            await self.logout(self.now(t), payload)
        return True

    async def tick(self, t: float) -> bool:
        """Apply the due timers; whether any was (a stale one, removed by an accept, is not)."""
        self.ticks.discard(codec.to_ms(t))
        tick = await self.engine.tick(self.now(t))
        if not tick.applied and tick.next_due is not None:
            self.schedule_tick(t, codec.to_ms(tick.next_due))
        return bool(tick.applied)

    async def arrive(self, t: float, call: Call) -> None:
        """Queue the call; read its EWT when it has to wait."""
        request = NewInteraction(
            queue=call.queue,
            id=call.id,
            priority=call.priority,
            credit_s=call.credit_s,
            skills=dict(call.skills),
        )
        ix, _ = await self.engine.create_interaction(request, self.now(t))
        result = self.results[call.id]
        result.enqueued_s = ix.enqueued_at - self.opt.start
        if ix.status == "blocked":
            result.status, result.ended_s = "blocked", t
            return
        result.queued = ix.status == "queued"
        result.ewt_s = await arrival_ewt(self.engine, call.id)
        if call.patience_s is not None:
            self.push(t + call.patience_s, Kind.ABANDON, call.id)

    async def accept(self, t: float, ix_id: str, agent_id: str) -> None:
        """The agent answers its offer (a withdrawn or expired one is a 409, ignored)."""
        result = self.results[ix_id]
        self.offered[agent_id].discard(ix_id)
        if result.status != "pending" or result.answered_s is not None:
            return
        try:
            ix = await self.engine.accept(ix_id, agent_id, self.now(t))
        except Conflict:
            return
        result.answered_s = (ix.answered_at or self.now(t)) - self.opt.start
        result.agent_id = agent_id
        self.connected[agent_id].add(ix_id)
        self.push(t + result.call.handle_s, Kind.COMPLETE, (ix_id, agent_id))

    async def complete(self, t: float, ix_id: str, agent_id: str) -> None:
        """The agent hangs up (wrap-up follows); it logs out now if its shift is over, or goes
        on the break that fell due during the call."""
        result = self.results[ix_id]
        call = result.call
        wrap_up_s = self.unav.wrap_up_s(call, agent_id)
        wrap = wrap_up_s if wrap_up_s is not None else self.queues[call.queue].wrap_up_s
        self.connected[agent_id].discard(ix_id)
        back = None
        if not self.connected[agent_id] and not self.offered[agent_id]:
            back = self.breaks.completed(agent_id, t, wrap)
        if back is not None:  # not ready before the call ends: no offer in between
            await self.engine.set_agent_state(
                agent_id, AgentState.NOT_READY, self.now(t), reason=BREAK_REASON
            )
        await self.engine.complete(ix_id, agent_id, self.now(t), wrap_up_s=wrap_up_s)
        result.status, result.ended_s, result.free_s = "answered", t, t + wrap
        if back is not None:
            self.push(back, Kind.BACK, (agent_id, self.breaks.token(agent_id)))
        if agent_id in self.leaving and not self.connected[agent_id]:
            self.leaving.discard(agent_id)
            await self.engine.set_agent_state(agent_id, AgentState.LOGGED_OUT, self.now(t))

    async def take_break(self, t: float, agent_id: str, token: int) -> bool:
        """A break falls due: not ready now, or owed until the agent's call ends."""
        busy = bool(self.connected[agent_id] or self.offered[agent_id])
        back = self.breaks.due(agent_id, token, t, busy)
        if back is None:
            return False
        await self.engine.set_agent_state(
            agent_id, AgentState.NOT_READY, self.now(t), reason=BREAK_REASON
        )
        self.push(back, Kind.BACK, (agent_id, token))
        return True

    async def back_from_break(self, t: float, agent_id: str, token: int) -> bool:
        """The break is over: available again (unless the shift ended), and the next one due."""
        if not self.breaks.current(agent_id, token):
            return False
        await self.engine.set_agent_state(agent_id, AgentState.AVAILABLE, self.now(t))
        self.start_breaks(t, agent_id)
        return True

    def start_breaks(self, t: float, agent_id: str) -> None:
        """Start the agent's break clock at `t`."""
        due = self.breaks.start(agent_id, t)
        if due is not None:
            self.push(due[0], Kind.BREAK, (agent_id, due[1]))

    async def take_callback(self, t: float, ix_id: str) -> bool:
        """The caller accepts the callback offered (the trace's `callback_accept`)."""
        result = self.results[ix_id]
        if result.status != "pending" or result.answered_s is not None:
            return False
        try:
            await self.engine.accept_callback(ix_id, self.now(t))
        except Conflict:
            return False
        result.callback = True
        return True

    async def abandon(self, t: float, ix_id: str) -> bool:
        """The caller hangs up if still waiting on the line."""
        result = self.results[ix_id]
        if result.status != "pending" or result.answered_s is not None or result.callback:
            return False
        try:
            await self.engine.abandon(ix_id, self.now(t))
        except Conflict:
            return False
        result.status, result.ended_s = "abandoned", t
        return True

    async def login(self, t: float, agent_id: str) -> None:
        """Start of a shift (its break clock starts), or back from a forced not-ready."""
        if agent_id not in self.on_shift:
            self.start_breaks(t, agent_id)
        self.on_shift.add(agent_id)
        self.leaving.discard(agent_id)
        await self.engine.set_agent_state(agent_id, AgentState.AVAILABLE, self.now(t))

    async def logout(self, now: float, agent_id: str) -> None:
        """End of a shift: out at once, or not ready until the last call ends."""
        self.on_shift.discard(agent_id)
        self.breaks.stop(agent_id)
        if self.connected[agent_id]:
            self.leaving.add(agent_id)
            await self.engine.set_agent_state(
                agent_id, AgentState.NOT_READY, now, reason=SHIFT_END_REASON
            )
        else:
            await self.engine.set_agent_state(agent_id, AgentState.LOGGED_OUT, now)

    async def poll(self, t: float) -> None:
        """Read new events and the next due timer in one round trip; schedule what follows."""
        keys = self.engine.keys
        start = f"({self.last_event}" if self.last_event != "0" else "-"
        pipe = self.engine.redis.pipeline(transaction=False)
        pipe.xrange(keys.events, start, "+")
        pipe.zrange(keys.timers, 0, 0, withscores=True)
        entries, head = cast(tuple[list[Any], list[Any]], tuple(await pipe.execute()))
        for eid, fields in entries:
            event = codec.event(codec.text(eid), fields)
            self.last_event = event.id
            self.on_event(t, event.type, event.fields)
        if head:
            self.schedule_tick(t, int(head[0][1]))

    def schedule_tick(self, t: float, due_ms: int) -> None:
        """A tick when the timer due at `due_ms` (engine ms) falls due, not before `t`."""
        due_ms = max(due_ms, codec.to_ms(self.now(t)))
        due = due_ms / 1000 - self.opt.start
        if due_ms not in self.ticks and due <= self.horizon:
            self.ticks.add(due_ms)
            self.push(due, Kind.TICK, None)

    def on_event(self, t: float, etype: str, fields: dict[str, Any]) -> None:
        """React to one engine event."""
        ix_id = fields.get("interaction_id")
        if etype == "interaction.offered" and isinstance(ix_id, str):
            self.offered.setdefault(fields["agent_id"], set()).add(ix_id)
            self.push(t + self.opt.ring_delay_s, Kind.ACCEPT, (ix_id, fields["agent_id"]))
        elif etype == "interaction.timed_out" and ix_id in self.results:
            result = self.results[ix_id]
            result.status, result.ended_s = "timed_out", t
        elif etype == "callback.offered" and ix_id in self.results:
            self.results[ix_id].callback_offered = True
            if self.results[ix_id].call.callback_accept:
                self.push(t, Kind.CALLBACK, ix_id)
        elif etype == "agent.state_changed" and fields.get("reason") == "no_answer":
            agent_id = fields.get("agent_id")
            if agent_id in self.on_shift:
                self.push(t, Kind.LOGIN, agent_id)


async def arrival_ewt(engine: Engine, interaction_id: str) -> float | None:
    """The EWT the router recorded for the interaction at its arrival (`ewt0` of the stored
    record: the figure its `acd_ewt_error_seconds` observes and its callback offer uses)."""
    raw = await engine.redis.get(engine.keys.interaction(interaction_id))
    if raw is None:
        return None
    ewt = msgpack.unpackb(raw, raw=False, strict_map_key=False).get("ewt0")
    return None if ewt is None else float(ewt)


def scale_roster(roster: Roster, factor: float) -> Roster:
    """About `factor` times the agents, copies spread evenly over the roster (ids `x~k`)."""
    agents: list[RosterAgent] = []
    for i, agent in enumerate(roster.agents):
        copies = int((i + 1) * factor + 1e-9) - int(i * factor + 1e-9)
        agents.extend(
            agent if k == 0 else replace(agent, id=f"{agent.id}~{k}") for k in range(copies)
        )
    return replace(roster, agents=tuple(agents))


def add_agents(roster: Roster, count: int, like: str | None = None) -> Roster:
    """`count` more agents, copies of agent `like` or spread evenly over the roster."""
    pool = [a for a in roster.agents if like is None or a.id == like]
    if not pool:
        raise ValueError(f"no agent {like!r} in the roster")
    extra = [
        replace(pool[(i * len(pool)) // count], id=f"{pool[(i * len(pool)) // count].id}+{i + 1}")
        for i in range(count)
    ]
    return replace(roster, agents=(*roster.agents, *extra))


async def simulate_on(
    redis: Redis,
    settings: ServiceSettings,
    calls: Sequence[Call],
    roster: Roster,
    queues: Sequence[QueueConfig],
    options: SimOptions = SimOptions(),
) -> SimResult:
    """Run on an existing Redis in `settings.namespace` (which should be fresh)."""
    engine = Engine(redis, settings)
    await engine.start()
    return await Simulator(engine, calls, roster, queues, options).run()


@dataclass(frozen=True)
class Scenario:
    """One run: its label, roster, queues and service settings."""

    label: str
    roster: Roster
    queues: tuple[QueueConfig, ...]
    settings: ServiceSettings


async def simulate_scenarios(
    calls: Sequence[Call], scenarios: Sequence[Scenario], options: SimOptions = SimOptions()
) -> list[SimResult]:
    """Each scenario on its own namespace of one private redis-server."""
    server = RedisServer()
    server.start()
    redis = Redis.from_url(server.url)
    try:
        results = []
        for n, sc in enumerate(scenarios):
            options.progress.start(f"simulate {sc.label}", len(calls))
            settings = replace(sc.settings, namespace=f"sim{n}")
            result = await simulate_on(redis, settings, calls, sc.roster, sc.queues, options)
            result.label = sc.label
            results.append(result)
        return results
    finally:
        await redis.aclose()
        server.stop()
