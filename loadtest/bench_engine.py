"""Routing-decision benchmark (SPEC §9): run `python -m loadtest.bench_engine [--quick]`."""

# It starts a private redis-server, builds a synthetic contact center through the Engine API
# and prints the §9 routing-decision figures next to a bare 5-command Lua baseline measured in
# the same run. PASS/FAIL never changes the exit status (0); a crash or timeout exits 1.

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import multiprocessing
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, TypeVar

import msgpack
from redis.asyncio import Redis

import router
from loadtest.report import percentile
from router.clock import Clock
from router.domain.models import (
    AgentProfile,
    AgentState,
    Interaction,
    InteractionStatus,
    NewInteraction,
    QueueConfig,
    Step,
)
from router.settings import ServiceSettings
from router.store.codec import to_ms
from router.store.engine import Engine
from router.store.scripts import operations
from router.store.server import RedisServer

I = TypeVar("I")  # noqa: E741
R = TypeVar("R")

SEED = 20240611
TEAMS = 40
BACKLOG = "backlog"
NORMAL_SKILLS = tuple(f"s{i:02d}" for i in range(49))
SKILLS = (*NORMAL_SKILLS, BACKLOG)
NORMAL_QUEUES = 199
BATCH = 128
"""Every closed-loop row times batches of this many calls (arrivals, the bare script, the agent
side's completions by its WORKERS), so that each batch's ramp-up and drain weigh alike."""
WORKERS = BATCH
STANDING_BACKLOG = 1_000
CLIENTS = 8
BUILD_CLIENTS = 8
FILL_CLIENTS = 12
OPEN_RATE = 2_000.0
OPEN_WINDOW_S = 0.5
HELPERS = 4
NAMESPACE = "bench"
MAX_CONNECTIONS = 2_000
SLOW_US = 1_000
AFTER_FILL_S = 40.0
FLOOR_S = 180.0
TARGET_THROUGHPUT = 0.40
TARGET_P99_MS = 1.0
TARGET_GROWTH = 1.5
TARGET_REDIS_RATIO = 3.0
"""Round 2: Redis time of one decision over the bare script's, at most."""
BASELINE_FUNCTION = "acd_bench_baseline"
BASELINE_LUA = f"""#!lua name={BASELINE_FUNCTION}
redis.register_function('{BASELINE_FUNCTION}', function(KEYS, ARGV)
local P = KEYS[1]
local a = cmsgpack.unpack(ARGV[1])
local n = a.n % 1000
local prev = redis.call('GET', P .. 'bl:v')
redis.call('SET', P .. 'bl:v', a.n)
redis.call('ZADD', P .. 'bl:z', n, 'm' .. n)
local head = redis.call('ZRANGE', P .. 'bl:z', 0, 0)
redis.call('XADD', P .. 'bl:s', 'MAXLEN', '~', 10000, '*', 'n', a.n)
return cmsgpack.pack({{'ok', head[1], prev or false}})
end)
"""
BASELINE_LABEL = "baseline 5-cmd Lua"
OPEN_LABEL = f"10,000 agents, {OPEN_RATE:,.0f}/s offered"
OPEN_BASELINE_LABEL = f"{BASELINE_LABEL}, {OPEN_RATE:,.0f}/s"
OPEN_PROCESSES = 2
SLOWLOG_LEN = 10_000
INSIDE_US = 20
"""Open loop: the SLOWLOG threshold that logs every timed call but hardly any command the
scripts run (the SLOWLOG logs those too); calls under it count as shorter (tail_percentile)."""
TOP_COMMANDS = 4
"""Commands named in the breakdown of a decision's time inside Redis (print_inside)."""
TIMED_SCRIPT = {
    "arrival": "interaction_create",
    "agent": "interaction_complete",
    "baseline": "baseline",
}
OUTER = ("fcall", "evalsha")
NOT_INNER = (*OUTER, "function", "info", "config", "script", "client", "hello", "ping", "slowlog")


@dataclass(frozen=True)
class Plan:
    """How much one run measures."""

    agent_scales: tuple[int, ...]
    waiting_target: int
    waiting_floor: int
    """Always queued, however long it takes (up to FLOOR_S)."""
    fill_budget_s: float
    samples: int
    concurrent_samples: int
    open_windows: int
    open_rates: tuple[float, ...]
    budget_s: float
    """The fill shrinks so that the whole run stays near this."""
    timeout_s: float


FULL = Plan(
    agent_scales=(1_000, 10_000, 100_000),
    waiting_target=1_000_000,
    waiting_floor=100_000,
    fill_budget_s=210.0,
    samples=1_500,
    concurrent_samples=3_000,
    open_windows=6,
    open_rates=(500.0, 1_000.0),
    budget_s=600.0,
    timeout_s=1_500.0,
)
QUICK = Plan(
    agent_scales=(1_000, 10_000),
    waiting_target=20_000,
    waiting_floor=20_000,
    fill_budget_s=10.0,
    samples=400,
    concurrent_samples=800,
    open_windows=3,
    open_rates=(),
    budget_s=60.0,
    timeout_s=240.0,
)


# Statistics ------------------------------------------------------------------------------------


@dataclass
class ServerCost:
    """Redis-side cost of the measured calls, from INFO commandstats deltas."""

    calls: int = 0
    usec: int = 0
    inner_calls: Counter[str] = field(default_factory=Counter)
    """Per command the scripts ran: its calls, and (inner_usec) its own time."""
    inner_usec: Counter[str] = field(default_factory=Counter)

    def add(self, before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> None:
        """Accumulate the difference between two snapshots."""
        for name, (calls, usec) in after.items():
            d_calls = calls - before.get(name, (0, 0))[0]
            d_usec = usec - before.get(name, (0, 0))[1]
            if name in OUTER:
                self.calls += d_calls
                self.usec += d_usec
            elif not name.startswith(NOT_INNER):
                self.inner_calls[name] += d_calls
                self.inner_usec[name] += d_usec

    @property
    def usec_per_call(self) -> float:
        """Redis CPU microseconds per script call."""
        return self.usec / self.calls if self.calls else float("nan")

    @property
    def commands_per_call(self) -> float:
        """Redis commands the scripts ran per call."""
        return self.inner_calls.total() / self.calls if self.calls else float("nan")


@dataclass
class Measure:
    """The timed calls of one table row."""

    label: str
    side: str
    clients: int
    latencies: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    offered: int = 0
    cost: ServerCost = field(default_factory=ServerCost)
    note: str = ""
    slow: int = 0
    slowest_us: int = 0
    load: float = 0.0
    redis_us: list[int] = field(default_factory=list)
    """Open loop: the timed calls' own times inside Redis (SLOWLOG, those over INSIDE_US)."""

    def inside_ms(self, q: float) -> float:
        """Percentile `q` of the timed calls' time inside Redis, in ms."""
        return tail_percentile(self.redis_us, self.count, q) / 1000

    @property
    def count(self) -> int:
        """Timed calls so far."""
        return len(self.latencies)

    @property
    def rate(self) -> float:
        """Calls per second of timed wall time."""
        return self.count / self.wall_s if self.wall_s else float("nan")

    def p(self, q: float) -> float:
        """Latency percentile in milliseconds."""
        return percentile(self.latencies, q) * 1000


@dataclass(frozen=True)
class Arrival:
    """The outcome of one arrival: offered to `agent_id`, or left waiting."""

    id: str
    agent_id: str
    offered: bool

    @classmethod
    def of(cls, ix: Interaction) -> Arrival:
        """From the interaction the engine answered."""
        offered = ix.status is InteractionStatus.OFFERED
        return cls(ix.id, ix.agent_id or "", offered)


async def call_baseline(engine: Engine, n: int) -> list[Any]:
    """The bare 5-command script, called as the engine calls its scripts (the same FCALL path
    and connections)."""
    packed = msgpack.packb({"n": n, "now": to_ms(time.time())}, use_bin_type=False)
    raw = await engine.runner.calls.fcall(BASELINE_FUNCTION, "acd:{baseline}:", packed)
    reply: list[Any] = msgpack.unpackb(raw, raw=False)
    return reply


# The synthetic contact center ------------------------------------------------------------------


def make_teams(rnd: random.Random) -> list[tuple[str, ...]]:
    """Each team's three core skills."""
    return [tuple(rnd.sample(NORMAL_SKILLS, 3)) for _ in range(TEAMS)]


def make_queue(index: int, teams: list[tuple[str, ...]], rnd: random.Random) -> QueueConfig:
    """A team's queue: 1-3 of its core skills at level 1-2, relaxed to one skill later."""
    core = teams[index % TEAMS]
    req = {s: rnd.randint(1, 2) for s in rnd.sample(core, rnd.randint(1, 3))}
    step = Step(after_s=rnd.choice((30.0, 60.0, 120.0)), skills={min(req): 1})
    return QueueConfig(name=f"q{index:03d}", skills=req, steps=(step,))


def backlog_queue() -> QueueConfig:
    """The queue only the workers serve; its one step lies beyond the run."""
    return QueueConfig(
        name=BACKLOG, skills={BACKLOG: 2}, steps=(Step(after_s=3600.0, skills={BACKLOG: 1}),)
    )


def agent_profile(index: int, teams: list[tuple[str, ...]]) -> AgentProfile:
    """A team's three core skills plus 0-3 others, levels 1..5, voice capacity 1."""
    rnd = random.Random(SEED + index)
    core = teams[index % TEAMS]
    extra = rnd.sample([s for s in NORMAL_SKILLS if s not in core], rnd.randint(0, 3))
    return AgentProfile(skills={s: rnd.randint(1, 5) for s in (*core, *extra)})


def worker_profile(index: int, teams: list[tuple[str, ...]]) -> AgentProfile:
    """An ordinary agent profile that also serves the backlog queue."""
    skills = dict(agent_profile(10_000_000 + index, teams).skills)
    skills[BACKLOG] = 3
    return AgentProfile(skills=skills)


# Running calls ---------------------------------------------------------------------------------


async def run_pool(items: Sequence[I], op: Callable[[I], Awaitable[R]], clients: int) -> list[R]:
    """Run `op` over `items` with `clients` concurrent callers; results in completion order."""
    results: list[R] = []
    todo = iter(items)

    async def caller() -> None:
        for item in todo:
            results.append(await op(item))

    await asyncio.gather(*(caller() for _ in range(clients)))
    return results


async def run_timed(
    items: Sequence[I], op: Callable[[I], Awaitable[R]], clients: int, into: list[float]
) -> tuple[list[R], float]:
    """Like run_pool, appending each call's latency to `into`; returns results and wall time."""

    async def timed(item: I) -> R:
        start = time.perf_counter()
        result = await op(item)
        into.append(time.perf_counter() - start)
        return result

    start = time.perf_counter()
    results = await run_pool(items, timed, clients)
    return results, time.perf_counter() - start


async def command_stats(redis: Redis) -> dict[str, tuple[int, int]]:
    """Calls and microseconds per Redis command since the server started."""
    info: dict[str, Any] = await redis.info("commandstats")
    return {k.removeprefix("cmdstat_"): (v["calls"], v["usec"]) for k, v in info.items()}


# Helper processes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """Work for one helper process: a module-level coroutine function and its arguments."""

    fn: Callable[..., Awaitable[Any]]
    args: tuple[Any, ...]


async def helper_loop(conn: Connection, url: str, namespace: str) -> None:
    """A helper process: its own client and engine (like one more router process)."""
    redis = Redis.from_url(url, max_connections=MAX_CONNECTIONS)
    engine = Engine(redis, ServiceSettings(namespace=namespace))
    await engine.start()
    await asyncio.gather(*(redis.ping() for _ in range(32)))
    conn.send("ready")
    clock = Clock()
    while (job := conn.recv()) is not None:
        try:
            conn.send(await job.fn(engine, clock, *job.args))
        except Exception as exc:  # handed to the parent, which raises it
            conn.send(exc)
    await redis.aclose()


def helper_main(conn: Connection, url: str, namespace: str) -> None:
    """Entry point of a helper process."""
    asyncio.run(helper_loop(conn, url, namespace))


@dataclass
class Helpers:
    """Helper processes: load generators and builders, each an independent engine client."""

    conns: list[Connection]
    procs: list[BaseProcess]

    @classmethod
    async def start(cls, url: str, namespace: str, count: int) -> Helpers:
        """Spawn `count` helpers and wait until each is connected."""
        ctx = multiprocessing.get_context("spawn")
        conns: list[Connection] = []
        procs: list[BaseProcess] = []
        for _ in range(count):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=helper_main, args=(theirs, url, namespace), daemon=True)
            proc.start()
            conns.append(mine)
            procs.append(proc)
        await asyncio.gather(*(asyncio.to_thread(c.recv) for c in conns))
        return cls(conns, procs)

    async def run(self, jobs: Sequence[Job]) -> list[Any]:
        """Run job i on helper i, all at once; their results in order."""
        for conn, job in zip(self.conns, jobs, strict=False):
            conn.send(job)
        used = self.conns[: len(jobs)]
        results = list(await asyncio.gather(*(asyncio.to_thread(c.recv) for c in used)))
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results

    def stop(self) -> None:
        """Ask every helper to exit; terminate any that does not."""
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join()


async def login(engine: Engine, clock: Clock, agent_id: str, profile: AgentProfile) -> None:
    """Create one agent and make it available."""
    await engine.put_agent(agent_id, profile, clock.now())
    await engine.set_agent_state(agent_id, AgentState.AVAILABLE, clock.now())


async def login_range(
    engine: Engine, clock: Clock, teams: list[tuple[str, ...]], indexes: range, clients: int
) -> int:
    """Helper job: log in the ordinary agents of `indexes`."""

    async def one(i: int) -> None:
        await login(engine, clock, f"a{i:06d}", agent_profile(i, teams))

    await run_pool(indexes, one, clients)
    return len(indexes)


async def fill_queue(
    engine: Engine, clock: Clock, queue: str, count: int, clients: int, deadline: float
) -> int:
    """Helper job: queue up to `count` arrivals before the wall-clock `deadline`."""
    created = 0

    async def filler() -> None:
        nonlocal created
        while created < count and time.time() < deadline:
            created += 1
            await engine.create_interaction(NewInteraction(queue=queue), clock.now())

    await asyncio.gather(*(filler() for _ in range(clients)))
    return created


@dataclass(frozen=True)
class WindowOrder:
    """One open-loop window for one helper: global arrival k is due at start + k / rate."""

    start_at: float
    first: int
    step: int
    rate: float
    queues: tuple[str, ...]
    bare: bool = False
    """The bare script instead of arrivals (the open loop's baseline)."""


@dataclass(frozen=True)
class WindowReport:
    """What one helper saw in a window."""

    arrivals: list[Arrival]
    latencies: list[float]
    lateness: list[float]
    end_at: float


async def run_window(engine: Engine, clock: Clock, order: WindowOrder) -> WindowReport:
    """Helper job: start this helper's arrivals on schedule, each timed from its own start."""
    latencies: list[float] = []
    lateness: list[float] = []

    async def arrival(k: int, due: float) -> Arrival | None:
        start = time.time()
        lateness.append(start - due)
        if order.bare:
            await call_baseline(engine, k)
            latencies.append(time.time() - start)
            return None
        ix, _ = await engine.create_interaction(NewInteraction(queue=order.queues[k]), clock.now())
        latencies.append(time.time() - start)
        return Arrival.of(ix)

    tasks: list[asyncio.Task[Arrival | None]] = []
    for k in range(order.first, len(order.queues), order.step):
        due = order.start_at + k / order.rate
        if due > time.time():
            await asyncio.sleep(due - time.time())
        tasks.append(asyncio.create_task(arrival(k, due)))
    arrivals = [a for a in await asyncio.gather(*tasks) if a is not None]
    return WindowReport(arrivals, latencies, lateness, time.time())


async def open_window(
    helpers: Helpers, processes: int, queues: list[str], rate: float, bare: bool
) -> Any:
    """One window across `processes` helpers, interleaved into one schedule at `rate`."""
    start_at = time.time() + 0.05
    order = [
        WindowOrder(start_at, i, processes, rate, tuple(queues), bare) for i in range(processes)
    ]
    return await helpers.run([Job(run_window, (o,)) for o in order])


# The benchmark ---------------------------------------------------------------------------------


@dataclass
class Bench:
    """One engine on a private Redis, the center built on it and the workers' held work."""

    redis: Redis
    helpers: Helpers
    engine: Engine
    plan: Plan
    teams: list[tuple[str, ...]]
    queues: list[str]
    rnd: random.Random = field(default_factory=lambda: random.Random(SEED))
    clock: Clock = field(default_factory=Clock)
    agents: int = 0
    held: dict[str, str] = field(default_factory=dict)
    slow: Counter[str] = field(default_factory=Counter)
    slowest: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.perf_counter)

    @property
    def workers(self) -> list[str]:
        """The ids of the backlog workers."""
        return [f"w{i:02d}" for i in range(WORKERS)]

    def agent_ids(self) -> list[str]:
        """Every agent id built so far."""
        return self.workers + [f"a{i:06d}" for i in range(self.agents - WORKERS)]

    async def login(self, item: tuple[str, AgentProfile]) -> None:
        """Create one agent and make it available."""
        await login(self.engine, self.clock, *item)

    async def create(self, queue: str) -> Arrival:
        """One arrival: the decision of the arrival side."""
        ix, _ = await self.engine.create_interaction(NewInteraction(queue=queue), self.clock.now())
        return Arrival.of(ix)

    async def answer_and_finish(self, arrival: Arrival) -> None:
        """The offered agent accepts and completes at once, without wrap-up."""
        await self.engine.accept(arrival.id, arrival.agent_id, self.clock.now())
        await self.engine.complete(arrival.id, arrival.agent_id, self.clock.now(), wrap_up_s=0.0)

    async def finish_held(self, worker: str) -> str:
        """A worker completes its call: the decision of the agent side picks its next one."""
        ix_id = self.held.pop(worker)
        await self.engine.complete(ix_id, worker, self.clock.now(), wrap_up_s=0.0)
        return worker

    async def take_offer(self, worker: str) -> bool:
        """The worker accepts the offer it holds, if any; True when it had one."""
        agent = await self.engine.get_agent(worker)
        offered = [i for i, st in (agent.interactions if agent else {}).items() if st == "offered"]
        for ix_id in offered:
            await self.engine.accept(ix_id, worker, self.clock.now())
            self.held[worker] = ix_id
        return bool(offered)

    async def baseline_call(self, n: int) -> list[Any]:
        """The bare 5-command script (call_baseline)."""
        return await call_baseline(self.engine, n)

    async def timed_batch(
        self, m: Measure, items: Sequence[I], op: Callable[[I], Awaitable[R]]
    ) -> list[R]:
        """Time one batch into `m`, with the Redis-side cost of just that batch."""
        before = await command_stats(self.redis)
        results, wall = await run_timed(items, op, m.clients, m.latencies)
        m.wall_s += wall
        m.cost.add(before, await command_stats(self.redis))
        return results

    def pick_queues(self, n: int) -> list[str]:
        """`n` ordinary queues, spread round-robin from a random start."""
        start = self.rnd.randrange(len(self.queues))
        return [self.queues[(start + k) % len(self.queues)] for k in range(n)]


# Setup -----------------------------------------------------------------------------------------


async def build_center(bench: Bench) -> None:
    """Queues, the workers, and the standing backlog the workers hold and wait on."""
    now = bench.clock.now()
    for k in range(NORMAL_QUEUES):
        await bench.engine.upsert_queue(make_queue(k, bench.teams, bench.rnd), now)
    await bench.engine.upsert_queue(backlog_queue(), now)
    profiles = [(w, worker_profile(i, bench.teams)) for i, w in enumerate(bench.workers)]
    await run_pool(profiles, bench.login, BUILD_CLIENTS)
    bench.agents = WORKERS
    await run_pool([BACKLOG] * (WORKERS + STANDING_BACKLOG), bench.create, CLIENTS)
    took = await run_pool(bench.workers, bench.take_offer, CLIENTS)
    print(f"center: {NORMAL_QUEUES + 1} queues, {len(SKILLS)} skills, {sum(took)} workers busy")


async def grow_agents(bench: Bench, total: int) -> tuple[float, float]:
    """Log in agents (from the helpers) until `total` exist; seconds and Redis us per agent."""
    first, last = bench.agents - WORKERS, total - WORKERS
    jobs = [
        Job(login_range, (bench.teams, range(first + i, last, HELPERS), BUILD_CLIENTS))
        for i in range(HELPERS)
    ]
    cost = ServerCost()
    before = await command_stats(bench.redis)
    start = time.perf_counter()
    await bench.helpers.run(jobs)
    took = time.perf_counter() - start
    cost.add(before, await command_stats(bench.redis))
    bench.agents = total
    return took, cost.usec / max(1, last - first)


async def class_membership(bench: Bench) -> tuple[int, float, int]:
    """Routing classes, and the mean and max classes an agent belongs to (`agcls:` sizes)."""
    keys = bench.engine.keys
    classes = int(await bench.redis.hlen(keys.classes))
    sizes: list[int] = []
    ids = bench.agent_ids()
    for k in range(0, len(ids), 10_000):
        pipe = bench.redis.pipeline(transaction=False)
        for agent_id in ids[k : k + 10_000]:
            pipe.scard(keys.agent_classes(agent_id))
        sizes.extend(int(n) for n in await pipe.execute())
    return classes, sum(sizes) / len(sizes), max(sizes)


async def waiting_now(bench: Bench) -> int:
    """Interactions on the line in the backlog queue."""
    return int(await bench.redis.zcard(bench.engine.keys.queue_on_line(BACKLOG)))


async def fill_backlog(bench: Bench, target: int, budget_s: float) -> tuple[int, float]:
    """Queue arrivals no free agent can take until `target` wait or the budget runs out."""
    need = target - await waiting_now(bench)
    start = time.perf_counter()
    deadline = time.time() + budget_s
    share = [need // HELPERS + (i < need % HELPERS) for i in range(HELPERS)]
    jobs = [Job(fill_queue, (BACKLOG, n, FILL_CLIENTS, deadline)) for n in share]
    await bench.helpers.run(jobs)
    return await waiting_now(bench), time.perf_counter() - start


# Measurements ----------------------------------------------------------------------------------


async def settle(bench: Bench, arrivals: Sequence[Arrival]) -> None:
    """Bring offered arrivals to an end; abandon any that found no agent."""
    await run_pool([a for a in arrivals if a.offered], bench.answer_and_finish, CLIENTS)
    for a in arrivals:
        if not a.offered:
            await settle_one(bench, a.id)


async def settle_one(bench: Bench, ix_id: str) -> None:
    """End one arrival that was not offered at once, whatever happened to it since."""
    current = await bench.engine.get_interaction(ix_id, bench.clock.now())
    if current is None or current.status.is_terminal:
        return
    if current.status is InteractionStatus.OFFERED:
        await bench.answer_and_finish(Arrival.of(current))
    elif current.status is InteractionStatus.QUEUED:
        await bench.engine.abandon(ix_id, bench.clock.now())


async def measure_arrivals(bench: Bench, label: str, clients: int, samples: int) -> Measure:
    """Arrivals into queues with a free agent: create (timed), then accept and complete."""
    m = Measure(label, "arrival", clients)
    while m.count < samples:
        results = await bench.timed_batch(m, bench.pick_queues(BATCH), bench.create)
        m.offered += sum(a.offered for a in results)
        await settle(bench, results)
    return m


async def measure_agent_side(bench: Bench, label: str, clients: int, samples: int) -> Measure:
    """Workers complete (timed) while the backlog waits; each picks its next interaction."""
    m = Measure(label, "agent", clients)
    while m.count < samples:
        done = await bench.timed_batch(m, bench.workers, bench.finish_held)
        m.offered += sum(await run_pool(done, bench.take_offer, CLIENTS))
        await run_pool([BACKLOG] * len(done), bench.create, CLIENTS)
        idle = [w for w in bench.workers if w not in bench.held]
        await run_pool(idle, bench.take_offer, CLIENTS)
    return m


async def measure_baseline(bench: Bench, clients: int, samples: int) -> Measure:
    """The bare 5-command Lua script through the same client path."""
    m = Measure(BASELINE_LABEL, "baseline", clients)
    while m.count < samples:
        await bench.timed_batch(m, range(m.count, m.count + BATCH), bench.baseline_call)
    m.offered = m.count
    return m


async def measure_open_loop(
    bench: Bench, label: str, rate: float, processes: int, bare: bool = False
) -> Measure:
    """Arrivals (or, `bare`, calls of the bare script) offered at `rate` in short windows;
    agents are given back between windows."""
    side = "baseline" if bare else "arrival"
    m = Measure(label, side, 0)
    lateness: list[float] = []
    for _ in range(bench.plan.open_windows):
        before = await command_stats(bench.redis)
        # Every call's own time inside Redis, apart from the client's.
        await bench.redis.config_set("slowlog-log-slower-than", INSIDE_US)
        await bench.redis.slowlog_reset()
        started = time.time()
        reports: list[WindowReport] = await open_window(
            bench.helpers, processes, bench.pick_queues(int(rate * OPEN_WINDOW_S)), rate, bare
        )
        await bench.redis.config_set("slowlog-log-slower-than", SLOW_US)
        m.cost.add(before, await command_stats(bench.redis))
        calls = await slowlog_calls(bench)
        m.redis_us.extend(us for script, us in calls if script == TIMED_SCRIPT[side])
        for script, us in calls:
            if us >= SLOW_US:
                bench.slow[script] += 1
                bench.slowest[script] = max(bench.slowest[script], us)
                if script == TIMED_SCRIPT[side]:
                    m.slow += 1
                    m.slowest_us = max(m.slowest_us, us)
        await bench.redis.slowlog_reset()
        m.wall_s += max(r.end_at for r in reports) - started
        for r in reports:
            m.latencies.extend(r.latencies)
            lateness.extend(r.lateness)
        arrivals = [a for r in reports for a in r.arrivals]
        m.offered += sum(a.offered for a in arrivals)
        await settle(bench, arrivals)
    if bare:
        m.offered = m.count
    late = percentile(lateness, 0.99) * 1000
    m.note = (
        f"{rate:.0f}/s from {processes} helper processes; start lateness p99 {late:.2f} ms; "
        f"inside Redis p50 {m.inside_ms(0.5):.3f} ms, p99 {m.inside_ms(0.99):.3f} ms"
    )
    return m


def tail_percentile(logged: Sequence[int], total: int, q: float) -> float:
    """The nearest-rank percentile `q` of `total` values of which only `logged` (the largest)
    are known; the others are taken as 0 (nan when there are none)."""
    if not total:
        return float("nan")
    rank = min(total, max(1, round(q * total)))
    ordered = sorted(logged, reverse=True)
    index = total - rank
    return ordered[index] if index < len(ordered) else 0.0


async def measure_scale_point(bench: Bench, label: str) -> list[Measure]:
    """Arrival and agent side, sequential and with CLIENTS concurrent clients."""
    plan = bench.plan
    rows = []
    for clients, samples in ((1, plan.samples), (CLIENTS, plan.concurrent_samples)):
        rows.append(await with_slowlog(bench, measure_arrivals(bench, label, clients, samples)))
    for clients, samples in ((1, plan.samples), (CLIENTS, plan.concurrent_samples)):
        rows.append(await with_slowlog(bench, measure_agent_side(bench, label, clients, samples)))
    return rows


async def with_slowlog(bench: Bench, run: Awaitable[Measure]) -> Measure:
    """Run a measurement with a clean heap; note the scripts Redis ran over SLOW_US meanwhile."""
    gc.collect()
    await bench.redis.slowlog_reset()
    started = time.perf_counter()
    m = await run
    await collect_slowlog(bench, m)
    m.load = os.getloadavg()[0]
    took = time.perf_counter() - started
    print(f"  {m.label} / {m.side} / {m.clients or 'open'}: p50 {m.p(0.5):.3f} ms ({took:.0f} s)")
    return m


async def collect_slowlog(bench: Bench, m: Measure) -> None:
    """Count the script calls over SLOW_US, per script and for the row's timed script."""
    for script, duration in await slowlog_calls(bench):
        if duration < SLOW_US:
            continue
        bench.slow[script] += 1
        bench.slowest[script] = max(bench.slowest[script], duration)
        if script == TIMED_SCRIPT[m.side]:
            m.slow += 1
            m.slowest_us = max(m.slowest_us, duration)


async def slowlog_calls(bench: Bench) -> list[tuple[str, int]]:
    """The script calls in the SLOWLOG: script name and microseconds inside Redis."""
    library = bench.engine.runner.library
    names = {library.function(op).encode(): op for op in operations()}
    names[BASELINE_FUNCTION.encode()] = "baseline"
    calls = []
    for entry in await bench.redis.slowlog_get(SLOWLOG_LEN):
        words = bytes(entry["command"]).split(b" ", 2)
        if words[0].upper() == b"FCALL" and len(words) >= 2:
            calls.append((names.get(words[1], "?"), int(entry["duration"])))
    return calls


@dataclass(frozen=True)
class NewClassProbe:
    """An arrival that makes a new routing class, and the fill of that class after it."""

    arrival_ms: float
    ticks: int
    slowest_tick_ms: float
    fill_ms: float


async def new_class_probe(bench: Bench) -> NewClassProbe:
    """An arrival whose extra skills make a new routing class (its first batch of agents), then
    the ticks that fill the class with the other logged-in agents, a batch each."""
    request = NewInteraction(queue=bench.queues[0], skills={SKILLS[0]: 5, SKILLS[1]: 5})
    start = time.perf_counter()
    ix, _ = await bench.engine.create_interaction(request, bench.clock.now())
    took = (time.perf_counter() - start) * 1000
    ticks, slowest, fill_start = 0, 0.0, time.perf_counter()
    while True:
        tick_start = time.perf_counter()
        applied = (await bench.engine.tick(bench.clock.now())).applied
        if not applied:
            break
        ticks += 1
        slowest = max(slowest, (time.perf_counter() - tick_start) * 1000)
    fill_ms = (time.perf_counter() - fill_start) * 1000
    await settle(bench, [Arrival.of(ix)])
    return NewClassProbe(took, ticks, slowest, fill_ms)


async def upsert_probe(bench: Bench) -> float:
    """Milliseconds of writing an existing queue's configuration again, unchanged."""
    queue = await bench.engine.get_queue(bench.queues[1])
    assert queue is not None
    start = time.perf_counter()
    await bench.engine.upsert_queue(queue, bench.clock.now())
    return (time.perf_counter() - start) * 1000


async def competition_probe(bench: Bench) -> float:
    """Milliseconds of a tick that recomputes the EWT's competition between classes (lib/ewt.lua;
    every tick does when it is older than 5 s), the hash dropped first so that it must."""
    await bench.redis.delete(bench.engine.keys.competition)
    start = time.perf_counter()
    await bench.engine.tick(bench.clock.now())
    return (time.perf_counter() - start) * 1000


# Report ----------------------------------------------------------------------------------------


def print_table(rows: Sequence[Measure]) -> None:
    """The measurement table."""
    head = (
        f"{'scenario':<32} {'side':<8} {'clients':>7} {'calls':>6} {'dec/s':>6} "
        f"{'p50 ms':>7} {'p99 ms':>8} {'redis us':>8} {'cmds':>5} {'offer':>5} "
        f"{'>1ms':>5} {'max ms':>7} {'load':>5}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for m in rows:
        clients = str(m.clients) if m.clients else "open"
        share = f"{100 * m.offered / m.count:.0f}%" if m.count else "-"
        print(
            f"{m.label:<32} {m.side:<8} {clients:>7} {m.count:>6} {m.rate:>6.0f} "
            f"{m.p(0.5):>7.3f} {m.p(0.99):>8.3f} {m.cost.usec_per_call:>8.1f} "
            f"{m.cost.commands_per_call:>5.1f} {share:>5} {m.slow:>5} "
            f"{m.slowest_us / 1000:>7.1f} {m.load:>5.2f}"
        )
        if m.note:
            print(f"{'':<32}   ({m.note})")
    print(
        "dec/s: timed calls per second of timed wall time (closed loop; open loop: offered rate "
        "achieved)\nredis us: Redis time per call (INFO commandstats); cmds: Redis commands "
        "the script ran per call;\noffer: share of timed calls that made an offer; >1ms, max ms: "
        "timed calls over 1 ms inside Redis (SLOWLOG)\nand the longest; load: 1-minute load "
        "average after the row (other processes share the CPUs)"
    )


def verdict(name: str, value: float, target: float, at_least: bool, note: str = "") -> str:
    """One target line with PASS or FAIL."""
    ok = value >= target if at_least else value <= target
    sign = ">=" if at_least else "<="
    return f"  {'PASS' if ok else 'FAIL'}  {name}: {value:.2f} (target {sign} {target}){note}"


def find(rows: Sequence[Measure], label: str, side: str, clients: int) -> Measure:
    """The row of one scenario."""
    return next(m for m in rows if m.label == label and m.side == side and m.clients == clients)


@dataclass(frozen=True)
class Labels:
    """Row labels the ratios compare."""

    small: str
    reference: str
    large: str
    few_waiting: str
    many_waiting: str
    open_loop: str


def print_targets(rows: Sequence[Measure], labels: Labels) -> None:
    """The SPEC §9 ratios with PASS/FAIL: the first round's, then round 2's."""
    print("\nRouting-decision targets (docs/benchmarks.md)")
    print_throughput(rows, labels.reference)
    open_loop = find(rows, labels.open_loop, "arrival", 0)
    print(verdict(f"p99 ms, {labels.open_loop}", open_loop.p(0.99), TARGET_P99_MS, False))
    print_growth(rows, labels.large, labels.small)
    print_growth(rows, labels.many_waiting, labels.few_waiting)
    print("Round 2")
    base_us = find(rows, BASELINE_LABEL, "baseline", 1).cost.usec_per_call
    for side in ("arrival", "agent"):
        redis_us = find(rows, labels.reference, side, 1).cost.usec_per_call
        name = f"inside Redis one {side} decision / the bare script's, {labels.reference}"
        note = f" ({redis_us:.0f} us / {base_us:.0f} us)"
        print(verdict(name, redis_us / base_us, TARGET_REDIS_RATIO, False, note))
    inside = open_loop.inside_ms(0.99)
    bare = find(rows, OPEN_BASELINE_LABEL, "baseline", 0)
    note = (
        f"; of which inside Redis: p99 {inside:.3f} ms (the rest: client and network); the bare "
        f"script offered at the same rate by the same helpers: p99 {bare.p(0.99):.3f} ms "
        f"(inside Redis {bare.inside_ms(0.99):.3f} ms)"
    )
    print(verdict(f"p99 ms, {labels.open_loop}", open_loop.p(0.99), TARGET_P99_MS, False, note))
    print_inside(rows, labels.reference, base_us)


def print_inside(rows: Sequence[Measure], reference: str, base_us: float) -> None:
    """Where a decision's time inside Redis goes: its commands' own time, the largest of them,
    and the rest (the call's fixed cost, about the bare script's, and the Lua around them)."""
    print(f"\nwhere a decision's time inside Redis goes, {reference}, 1 client (INFO commandstats)")
    for side in ("arrival", "agent"):
        cost = find(rows, reference, side, 1).cost
        n = cost.calls or 1
        own = sum(cost.inner_usec.values()) / n
        top = ", ".join(
            f"{name} {cost.inner_calls[name] / n:.1f}x {us / n:.0f} us"
            for name, us in cost.inner_usec.most_common(TOP_COMMANDS)
        )
        print(
            f"  {side}: {cost.usec_per_call:.0f} us = commands' own time {own:.0f} us "
            f"({cost.commands_per_call:.1f} commands; largest: {top}) + the rest "
            f"{cost.usec_per_call - own:.0f} us (the call's fixed cost, about the bare "
            f"script's {base_us:.0f} us, and the Lua around the commands)"
        )


def print_throughput(rows: Sequence[Measure], reference: str) -> None:
    """Decision throughput against the baseline's, and the same comparison inside Redis."""
    for clients in (CLIENTS, 1):
        base = find(rows, BASELINE_LABEL, "baseline", clients).rate
        for side in ("arrival", "agent"):
            rate = find(rows, reference, side, clients).rate
            name = f"throughput {side} / baseline, {clients} client(s), {reference}"
            print(verdict(name, rate / base, TARGET_THROUGHPUT, True))
    base_us = find(rows, BASELINE_LABEL, "baseline", 1).cost.usec_per_call
    for side in ("arrival", "agent"):
        redis_us = find(rows, reference, side, 1).cost.usec_per_call
        print(
            f"  info  inside Redis one {side} decision takes "
            f"{redis_us:.0f} us = {redis_us / base_us:.1f}x the baseline's {base_us:.0f} us; "
            f"one Redis core caps it at {1e6 / redis_us:,.0f} decisions/s"
        )


def print_growth(rows: Sequence[Measure], large: str, small: str) -> None:
    """Median decision latency at the larger state over the smaller (sequential rows)."""
    for side in ("arrival", "agent"):
        big, little = find(rows, large, side, 1), find(rows, small, side, 1)
        inside = big.cost.usec_per_call / little.cost.usec_per_call
        note = f"; inside Redis {inside:.2f}"
        name = f"median {side} {large} / {small}"
        print(verdict(name, big.p(0.5) / little.p(0.5), TARGET_GROWTH, False, note))


# Main ------------------------------------------------------------------------------------------


def source_revision() -> str:
    """The git revision of the engine measured, marked dirty when edited (best effort)."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(router.__file__).parent,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


async def open_bench(redis: Redis, helpers: Helpers, plan: Plan) -> Bench:
    """An engine on the server, the baseline script loaded, connections warmed up."""
    engine = Engine(redis, ServiceSettings(namespace=NAMESPACE))
    await engine.start()
    rnd = random.Random(SEED)
    queues = [f"q{k:03d}" for k in range(NORMAL_QUEUES)]
    bench = Bench(redis, helpers, engine, plan, make_teams(rnd), queues)
    await redis.function_load(BASELINE_LUA, replace=True)
    await redis.config_set("slowlog-log-slower-than", SLOW_US)
    await redis.config_set("slowlog-max-len", SLOWLOG_LEN)
    await asyncio.gather(*(redis.ping() for _ in range(64)))
    return bench


async def agent_scales(bench: Bench, rows: list[Measure]) -> str:
    """Measure at every agent count of the plan; returns the label of the largest."""
    label = ""
    for total in bench.plan.agent_scales:
        took, login_us = await grow_agents(bench, total)
        label = f"{total:,} agents, {STANDING_BACKLOG:,} waiting"
        classes, mean, top = await class_membership(bench)
        print(
            f"\n{total:,} agents built (+{took:.1f} s, Redis {login_us:.0f} us per login); "
            f"routing classes {classes}; classes per agent mean {mean:.1f}, max {top}"
        )
        rows.extend(await measure_scale_point(bench, label))
        if total == 10_000:
            await reference_extras(bench, rows)
    return label


async def reference_extras(bench: Bench, rows: list[Measure]) -> None:
    """At the reference size: the baseline, and the open loop at OPEN_RATE (and lower rates)."""
    plan = bench.plan
    for clients, samples in ((1, plan.samples), (CLIENTS, plan.concurrent_samples)):
        rows.append(await with_slowlog(bench, measure_baseline(bench, clients, samples)))
    for rate in (*plan.open_rates, OPEN_RATE):
        label = f"10,000 agents, {rate:,.0f}/s offered"
        run = measure_open_loop(bench, label, rate, OPEN_PROCESSES)
        rows.append(await with_slowlog(bench, run))
    # What the same helpers and schedule give the bare script: the machine's own tail.
    run = measure_open_loop(bench, OPEN_BASELINE_LABEL, OPEN_RATE, OPEN_PROCESSES, bare=True)
    rows.append(await with_slowlog(bench, run))


def fill_budget(bench: Bench) -> float:
    """Seconds the fill beyond the floor may take: what the run's budget has left, if any."""
    plan = bench.plan
    left = plan.budget_s - (time.perf_counter() - bench.started) - AFTER_FILL_S
    return max(0.0, min(plan.fill_budget_s, left))


async def waiting_scale(bench: Bench, rows: list[Measure]) -> str:
    """Fill the backlog to the floor, then towards the target as the budget allows; measure."""
    plan = bench.plan
    start = time.perf_counter()
    waiting, _ = await fill_backlog(bench, min(plan.waiting_floor, plan.waiting_target), FLOOR_S)
    budget = fill_budget(bench)
    if waiting < plan.waiting_target and budget > 0:
        waiting, _ = await fill_backlog(bench, plan.waiting_target, budget)
    took = time.perf_counter() - start
    short = ""
    if waiting < plan.waiting_target:
        short = f" (target {plan.waiting_target:,} not reached: run budget {plan.budget_s:.0f} s)"
    print(f"\nbacklog filled to {waiting:,} waiting in {took:.1f} s{short}")
    label = f"{bench.agents:,} agents, {waiting:,} waiting"
    rows.extend(await measure_scale_point(bench, label))
    return label


async def run(plan: Plan) -> None:
    """The whole benchmark against a fresh private redis-server."""
    started = time.perf_counter()
    # Over a Unix socket, as `serve` speaks to its embedded store.
    server = RedisServer(unix_socket=True)
    server.start()
    redis = Redis.from_url(server.socket_url, max_connections=MAX_CONNECTIONS)
    helpers: Helpers | None = None
    try:
        helpers = await Helpers.start(server.socket_url, NAMESPACE, HELPERS)
        print(f"redis-server at {server.socket_path}; {HELPERS} helper processes; {plan}")
        print(f"load average at start {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        print(f"engine source: git {source_revision()}")
        bench = await open_bench(redis, helpers, plan)
        bench.started = started
        await build_center(bench)
        rows: list[Measure] = []
        large = await agent_scales(bench, rows)
        many = await waiting_scale(bench, rows)
        probes = (
            await new_class_probe(bench),
            await upsert_probe(bench),
            await competition_probe(bench),
        )
        small = f"{plan.agent_scales[0]:,} agents, {STANDING_BACKLOG:,} waiting"
        reference = f"10,000 agents, {STANDING_BACKLOG:,} waiting"
        print_table(rows)
        print_targets(rows, Labels(small, reference, large, large, many, OPEN_LABEL))
        print_notes(bench, probes, time.perf_counter() - started)
    finally:
        if helpers is not None:
            helpers.stop()
        await redis.aclose()
        server.stop()


def print_notes(bench: Bench, probes: tuple[NewClassProbe, float, float], total_s: float) -> None:
    """Observations that are not targets."""
    fill = probes[0]
    print(
        f"\nat {bench.agents:,} agents, one arrival that creates a new routing class "
        f"(its first batch of {bench.engine.settings.class_fill_batch} agents): "
        f"{fill.arrival_ms:.1f} ms; the rest of the fill: {fill.ticks} ticks "
        f"(slowest {fill.slowest_tick_ms:.1f} ms) in {fill.fill_ms:.0f} ms; "
        f"one unchanged queue upsert: {probes[1]:.1f} ms; one tick recomputing the EWT's "
        f"competition between classes: {probes[2]:.1f} ms"
    )
    slow = ", ".join(
        f"{k} x{n} (max {bench.slowest[k] / 1000:.1f} ms)" for k, n in bench.slow.most_common()
    )
    print(
        f"scripts over {SLOW_US / 1000:.0f} ms inside Redis (SLOWLOG) during measured rows: "
        + (slow or "none")
    )
    print(f"total run time {total_s:.0f} s")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run; 0 whatever the verdicts, 1 if the benchmark itself failed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1k and 10k agents, fewer samples")
    plan = QUICK if parser.parse_args(argv).quick else FULL
    try:
        asyncio.run(asyncio.wait_for(run(plan), plan.timeout_s))
    except TimeoutError:
        print(f"benchmark stopped: over {plan.timeout_s:.0f} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
