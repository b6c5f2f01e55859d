"""HTTP benchmark of one router process and Redis (SPEC §9): `python -m loadtest.bench_http`."""

# Processes on the 2-core machine: THIS process is the load generator (one asyncio loop, one
# aiohttp ClientSession with a keep-alive pool for the requests, one more for the event stream);
# the service is the real `acd-router serve` child with its embedded redis-server; the baseline
# is a bare aiohttp app in its own spawned child process doing one EVALSHA per request on the
# service's embedded Redis (on a private redis-server when --url points at another service).
# Baseline and lifecycle segments alternate, so a change of background load hits both. PASS/FAIL
# never changes the exit status (0); a crash or timeout exits 1.

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing
import os
import random
import secrets
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

from loadtest.report import percentile
from loadtest.served import Served, clean_env
from loadtest.topology import SentinelSet
from router.store.server import RedisServer, free_port

QUEUES = 10
AGENTS = 300
CLIENTS = 32
SETUP_CLIENTS = 16
OPEN_RATE = 300.0
OFFER_WAIT_S = 5.0
DRAIN_S = 5.0
"""How long the open loop waits for its last lifecycles after the last send."""
READY_TIMEOUT_S = 20.0
REQUEST_TIMEOUT_S = 10.0
KEY_ENV = "ACD_BENCH_KEY"
NAMESPACE = "bench"
SEED = 20240611
HTTP_PER_LIFECYCLE = 3
"""create, accept, complete."""
MIX_PER_LIFECYCLE = 4
"""§9's mix: create, offer event, accept, complete (the event counted as one unit)."""
TARGET_RATIO = 0.35
TARGET_P99_MS = 25.0
INDICATIVE_LIFECYCLES = 1_000.0
WORKERS = 2
WORKERS_ROLE = "workers"
"""The CPU column of `serve --workers WORKERS` (the parent and its workers)."""
WORKERS_RATE = 1_000.0
"""Round 2: create -> offer event p99 at this many lifecycles/s."""
PER_WORKER_RATE = 100.0
"""Round 2's scaling: lifecycles/s offered to each worker, the lone one and each of WORKERS
alike, so that every worker is as loaded as the lone one (a process's CPU per lifecycle depends
on its load: docs/benchmarks.md); low enough that WORKERS x it leaves the 2 cores room."""
TARGET_WORKER_EFFICIENCY = 0.90
TARGET_CPU_MS = 0.5
TARGET_P99_MS_ROUND2 = 10.0
BASELINE_LUA = "return redis.call('INCR', KEYS[1])"
BASELINE_KEY = "bench-http:baseline"
BASELINE_LABEL = "baseline EVALSHA"
LIFECYCLE_LABEL = "lifecycle"


@dataclass(frozen=True)
class Plan:
    """How long each part of one run measures."""

    rounds: int
    warmup_s: float
    baseline_s: float
    lifecycle_s: float
    open_s: float
    timeout_s: float


FULL = Plan(rounds=3, warmup_s=1.0, baseline_s=6.0, lifecycle_s=8.0, open_s=10.0, timeout_s=300)
QUICK = Plan(rounds=1, warmup_s=0.5, baseline_s=3.0, lifecycle_s=4.0, open_s=3.0, timeout_s=50)
COMPARE = Plan(rounds=10, warmup_s=0.5, baseline_s=0.0, lifecycle_s=3.0, open_s=0.0, timeout_s=600)
"""--compare: short segments, many rounds, so that the changing load of a shared machine hits
every build alike."""


class BenchError(Exception):
    """The benchmark cannot go on (the target misbehaves)."""


# Statistics ------------------------------------------------------------------------------------


@dataclass
class Stats:
    """Latencies per request type, failures per type and status, create answers by status."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)

    def observe(self, kind: str, seconds: float) -> None:
        """One latency of `kind`."""
        self.latencies.setdefault(kind, []).append(seconds)

    def fail(self, kind: str, why: str) -> None:
        """One failed request of `kind`."""
        self.failures[f"{kind} {why}"] += 1


# Processes and their CPU time -----------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (0 when unknown)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pid(parent: int, name: str) -> int | None:
    """The pid of a child of `parent` whose command name is `name`, if any."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            text = stat.read_text()
            comm = text[text.index("(") + 1 : text.rindex(")")]
            if comm == name and int(text.rsplit(")", 1)[1].split()[1]) == parent:
                return int(stat.parent.name)
    return None


def children(parent: int) -> list[int]:
    """The pids of the children of `parent` but redis-server (the workers of `serve`)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            text = stat.read_text()
            comm = text[text.index("(") + 1 : text.rindex(")")]
            if comm != "redis-server" and int(text.rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(stat.parent.name))
    return found


@dataclass
class Cpu:
    """The processes whose CPU time the table shows, by role; a role in `trees` counts its
    children too (`serve --workers`: the parent and its workers)."""

    pids: dict[str, int] = field(default_factory=dict)
    trees: set[str] = field(default_factory=set)

    def snapshot(self) -> dict[str, float]:
        """CPU seconds so far, by role."""
        return {
            role: sum(map(cpu_seconds, [pid, *(children(pid) if role in self.trees else ())]))
            for role, pid in self.pids.items()
        }

    def since(self, before: Mapping[str, float]) -> dict[str, float]:
        """CPU seconds since `before`, by role."""
        now = self.snapshot()
        return {role: now[role] - before.get(role, 0.0) for role in now}


# The synthetic contact center ------------------------------------------------------------------


def queue_table(n: int) -> dict[str, Any]:
    """Queue n: needs skill s<n>; even queues longest_idle, odd ones best_skill."""
    return {
        "name": f"bench-q{n}",
        "channel": "voice",
        "skills": {f"s{n}": 1},
        "strategy": "longest_idle" if n % 2 == 0 else "best_skill",
        "offer_timeout_s": 60,
        "wrap_up_s": 10,
        "sla": {"threshold_s": 20, "target": 0.8},
    }


def agent_body(i: int) -> dict[str, Any]:
    """Agent i serves three of the queues (each queue has AGENTS * 3 / QUEUES agents)."""
    rnd = random.Random(SEED + i)
    queues = {i % QUEUES, (i + 3) % QUEUES, (i + 7) % QUEUES}
    return {"skills": {f"s{q}": rnd.randint(1, 5) for q in sorted(queues)}, "name": f"agent {i}"}


def toml_value(value: Any) -> str:
    """A TOML value: a string, a number or an inline table of them."""
    if isinstance(value, dict):
        return (
            "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
        )
    return json.dumps(value)


def config_text(namespace: str = NAMESPACE, durability: str = "local") -> str:
    """The service's configuration: settings, one admin key read from KEY_ENV, the queues."""
    lines = [
        "[service]",
        f'namespace = "{namespace}"',
        f'durability = "{durability}"',
        "",
        "[[keys]]",
        'name = "bench"',
        'role = "admin"',
        f'env = "{KEY_ENV}"',
    ]
    for n in range(QUEUES):
        lines += ["", "[[queues]]"]
        lines += [f"{k} = {toml_value(v)}" for k, v in queue_table(n).items()]
    return "\n".join(lines) + "\n"


# The baseline: a bare aiohttp handler doing one EVALSHA ----------------------------------------


BASE_REDIS = web.AppKey("base_redis", Redis)
BASE_SHA = web.AppKey("base_sha", str)


async def baseline_ctx(app: web.Application) -> AsyncIterator[None]:
    """The Redis client and the loaded script of the baseline app."""
    redis = app[BASE_REDIS]
    app[BASE_SHA] = await redis.script_load(BASELINE_LUA)
    yield
    await redis.aclose()


async def baseline_handler(request: web.Request) -> web.Response:
    """Read the body, run the script once, answer JSON."""
    await request.read()
    value = await request.app[BASE_REDIS].evalsha(request.app[BASE_SHA], 1, BASELINE_KEY)
    return web.json_response({"n": value})


async def baseline_ready(request: web.Request) -> web.Response:
    """The app is up."""
    return web.json_response({"status": "ready"})


def baseline_app(redis_url: str) -> web.Application:
    """The bare app: POST /evalsha, GET /ready."""
    app = web.Application()
    app[BASE_REDIS] = Redis.from_url(redis_url, max_connections=1_000)
    app.cleanup_ctx.append(baseline_ctx)
    app.router.add_post("/evalsha", baseline_handler)
    app.router.add_get("/ready", baseline_ready)
    return app


def baseline_main(port: int, redis_url: str) -> None:
    """Entry point of the baseline process: serve on 127.0.0.1:`port` until SIGTERM."""
    web.run_app(baseline_app(redis_url), host="127.0.0.1", port=port, print=None, access_log=None)


def start_baseline(port: int, redis_url: str) -> BaseProcess:
    """Spawn the baseline process."""
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=baseline_main, args=(port, redis_url), daemon=True)
    proc.start()
    return proc


def stop_process(proc: BaseProcess) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if proc.is_alive():
        proc.terminate()
        proc.join(10)
    if proc.is_alive():
        proc.kill()
        proc.join()


# HTTP client -----------------------------------------------------------------------------------


@dataclass
class Client:
    """Timed requests to one base URL through the shared session."""

    session: aiohttp.ClientSession
    base: str
    headers: dict[str, str]

    async def call(
        self, stats: Stats, kind: str, method: str, path: str, body: Any = None
    ) -> tuple[int, bytes]:
        """One request; its latency goes to `stats` under `kind`; status 0 if it failed."""
        start = time.perf_counter()
        try:
            async with self.session.request(
                method, self.base + path, json=body, headers=self.headers
            ) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            stats.fail(kind, type(error).__name__)
            return 0, b""
        stats.observe(kind, time.perf_counter() - start)
        if status >= 300:
            stats.fail(kind, str(status))
        return status, raw

    async def must(self, method: str, path: str, body: Any = None) -> Any:
        """A set-up request that has to succeed; its JSON answer."""
        status, raw = await self.call(Stats(), "setup", method, path, body)
        if not 200 <= status < 300:
            raise BenchError(f"{method} {path}: {status} {raw[:300]!r}")
        return json.loads(raw) if raw else None


async def wait_ready(
    client: Client, path: str, alive: Callable[[], bool], timeout_s: float = READY_TIMEOUT_S
) -> None:
    """Poll GET `path` until it answers 200, while `alive()` holds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        status, _ = await client.call(Stats(), "ready", "GET", path)
        if status == 200:
            return
        await asyncio.sleep(0.05)
    raise BenchError(f"{client.base}{path} not ready within {timeout_s:.0f} s")


# The offer events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Offer:
    """An `interaction.offered` event as it reached the client."""

    agent_id: str
    at: float
    """perf_counter() when the event's frame was read."""


@dataclass
class OfferStream:
    """GET /v1/events streams of `interaction.offered`, one per queue (as a queue's wallboard or
    CTI connector would hold), matched to waiters by id. With `--workers` the streams spread over
    the workers, so that each reads the log as it would in a deployment."""

    # When the service ends a stream, it is reopened at once with Last-Event-ID (as an
    # EventSource does), so no event is lost; `reconnects` counts those.

    waiting: dict[str, asyncio.Future[Offer]] = field(default_factory=dict)
    received: int = 0
    unmatched: int = 0
    reconnects: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def expect(self, ix_id: str) -> asyncio.Future[Offer]:
        """A future for the offer of `ix_id` (register it before the create is sent)."""
        future: asyncio.Future[Offer] = asyncio.get_running_loop().create_future()
        self.waiting[ix_id] = future
        return future

    def forget(self, ix_id: str) -> None:
        """Stop waiting for `ix_id`."""
        self.waiting.pop(ix_id, None)

    async def open(self, client: Client) -> None:
        """Start following one stream per queue (from the live end); return once all are
        connected."""
        for n in range(QUEUES):
            connected = asyncio.Event()
            task = asyncio.create_task(self._follow(client, f"bench-q{n}", connected))
            self.tasks.append(task)
            waited = asyncio.create_task(connected.wait())
            await asyncio.wait((task, waited), return_when=asyncio.FIRST_COMPLETED)
            waited.cancel()
            if task.done():
                task.result()  # raises what ended it
                raise BenchError("an event stream ended at once")

    async def _follow(self, client: Client, queue: str, connected: asyncio.Event) -> None:
        """Read a queue's stream, reconnecting with Last-Event-ID whenever it ends; deliver
        each offer with the time its frame was read."""
        url = f"{client.base}/v1/events?types=interaction.offered&queue={queue}"
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        last_id = ""
        while True:
            headers = {**client.headers, **({"Last-Event-ID": last_id} if last_id else {})}
            try:
                async with client.session.get(url, headers=headers, timeout=timeout) as response:
                    if response.status != 200:
                        if not connected.is_set():
                            raise BenchError(f"GET /v1/events: {response.status}")
                        raise aiohttp.ClientError(f"GET /v1/events: {response.status}")
                    connected.set()
                    kind, data = b"", b""
                    async for line in response.content:
                        if line == b"\n":
                            if kind == b"interaction.offered":
                                self._deliver(data, time.perf_counter())
                            kind, data = b"", b""
                        elif line.startswith(b"event:"):
                            kind = line[6:].strip()
                        elif line.startswith(b"data:"):
                            data = line[5:].strip()
                        elif line.startswith(b"id:"):
                            last_id = line[3:].strip().decode()
            # aiohttp raises RuntimeError("Connection closed.") when the server cuts a stream.
            except (aiohttp.ClientError, TimeoutError, RuntimeError):
                await asyncio.sleep(0.05)
            self.reconnects += 1

    def _deliver(self, data: bytes, at: float) -> None:
        self.received += 1
        event = json.loads(data)
        future = self.waiting.pop(str(event.get("interaction_id")), None)
        if future is None or future.done():
            self.unmatched += 1
            return
        future.set_result(Offer(str(event["agent_id"]), at))

    async def close(self) -> None:
        """Stop reading."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


# Workloads -------------------------------------------------------------------------------------


@dataclass
class Bench:
    """The targets, the event stream and the id sequence of one run."""

    service: Client
    baseline: Client
    stream: OfferStream
    cpu: Cpu
    plan: Plan
    clients: int
    rate: float
    tag: str = field(default_factory=lambda: f"hb{secrets.token_hex(3)}")
    seq: itertools.count[int] = field(default_factory=itertools.count)

    def next_id(self) -> tuple[str, str]:
        """A new interaction id and the queue it goes to."""
        k = next(self.seq)
        return f"{self.tag}-{k}", f"bench-q{k % QUEUES}"

    def agent_id(self, i: int) -> str:
        """Agent i's id."""
        return f"{self.tag}-a{i:03d}"


async def lifecycle(bench: Bench, stats: Stats, due: float | None = None) -> bool:
    """create -> offer event -> accept -> complete (no wrap-up); whether it all succeeded."""
    ix_id, queue = bench.next_id()
    offered = bench.stream.expect(ix_id)
    try:
        sent = time.perf_counter()
        if due is not None:
            stats.observe("send lateness", sent - due)
        body = {"id": ix_id, "queue": queue}
        status, raw = await bench.service.call(stats, "create", "POST", "/v1/interactions", body)
        if status != 201:
            return False
        answered = time.perf_counter()
        stats.answers[str(json.loads(raw).get("status"))] += 1
        offer = await asyncio.wait_for(offered, OFFER_WAIT_S)
        stats.observe("event after answer", max(0.0, offer.at - answered))
    except TimeoutError:
        stats.fail("offer event", "missing")
        return False
    finally:
        bench.stream.forget(ix_id)
    stats.observe("create -> offer event", offer.at - sent)
    return await accept_complete(bench, stats, ix_id, offer.agent_id)


async def accept_complete(bench: Bench, stats: Stats, ix_id: str, agent_id: str) -> bool:
    """The agent answers the offer, then ends the interaction with no wrap-up."""
    path = f"/v1/interactions/{ix_id}"
    body: dict[str, Any] = {"agent_id": agent_id}
    if (await bench.service.call(stats, "accept", "POST", f"{path}/accept", body))[0] != 200:
        return False
    body["wrap_up_s"] = 0
    return (await bench.service.call(stats, "complete", "POST", f"{path}/complete", body))[0] == 200


async def baseline_request(bench: Bench, stats: Stats) -> bool:
    """One POST to the bare handler, with a body like a create's."""
    ix_id, queue = bench.next_id()
    body = {"id": ix_id, "queue": queue}
    status, _ = await bench.baseline.call(stats, "baseline POST", "POST", "/evalsha", body)
    return status == 200


Step = Callable[[Bench, Stats], Awaitable[bool]]


async def run_closed(bench: Bench, step: Step, stats: Stats, seconds: float) -> tuple[int, float]:
    """`bench.clients` callers repeat `step` for `seconds`; steps that succeeded and wall time."""
    deadline = time.perf_counter() + seconds
    done = 0

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            if await step(bench, stats):
                done += 1

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(bench.clients)))
    return done, time.perf_counter() - start


async def run_open(bench: Bench, stats: Stats, rate: float, seconds: float) -> tuple[int, float]:
    """Lifecycles started at `rate` for `seconds`; those that succeeded and the sending time."""
    start = time.perf_counter() + 0.05
    tasks: list[asyncio.Task[bool]] = []
    for k in range(int(rate * seconds)):
        due = start + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(lifecycle(bench, stats, due)))
    sending = time.perf_counter() - start
    done, pending = await asyncio.wait(tasks, timeout=DRAIN_S) if tasks else (set(), set())
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if pending:
        stats.failures[f"lifecycle unfinished {DRAIN_S:.0f} s after the last send"] += len(pending)
    return sum(task.result() for task in done), sending


# Rows of the table -----------------------------------------------------------------------------


@dataclass
class Row:
    """One workload, summed over its segments."""

    label: str
    per_unit: int
    clients: str
    server: str
    """The role of the process that serves the requests."""
    units: int = 0
    wall_s: float = 0.0
    cpu_wall_s: float = 0.0
    cpu: Counter[str] = field(default_factory=Counter)
    loads: list[float] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)

    def add(
        self, units: int, wall_s: float, cpu: Mapping[str, float], cpu_wall_s: float = 0.0
    ) -> None:
        """One measured segment; `cpu` was used over `cpu_wall_s` (default `wall_s`)."""
        self.units += units
        self.wall_s += wall_s
        self.cpu_wall_s += cpu_wall_s or wall_s
        self.cpu.update(cpu)
        self.loads.append(os.getloadavg()[0])

    @property
    def rate(self) -> float:
        """Units per second."""
        return self.units / self.wall_s if self.wall_s else float("nan")

    @property
    def server_ms(self) -> float:
        """CPU milliseconds of the serving process per unit (nan when unknown)."""
        if self.server not in self.cpu or not self.units:
            return float("nan")
        return 1000 * self.cpu[self.server] / self.units

    def mark(self) -> tuple[float, int]:
        """The serving process's CPU seconds and the units so far (for `ms_since`)."""
        return self.cpu[self.server], self.units

    def ms_since(self, mark: tuple[float, int]) -> float:
        """CPU ms of the serving process per unit since `mark` (nan when none completed)."""
        cpu, units = mark
        done = self.units - units
        return 1000 * (self.cpu[self.server] - cpu) / done if done else float("nan")

    def cpu_pct(self, role: str) -> str:
        """CPU of `role` in % of one core over the row's wall time."""
        if role not in self.cpu or not self.cpu_wall_s:
            return "-"
        return f"{100 * self.cpu[role] / self.cpu_wall_s:.0f}"


async def closed_segment(bench: Bench, row: Row, step: Step, seconds: float) -> float:
    """Warm up, then measure one closed-loop segment into `row`; the segment's rate."""
    await run_closed(bench, step, Stats(), bench.plan.warmup_s)
    before = bench.cpu.snapshot()
    units, wall = await run_closed(bench, step, row.stats, seconds)
    row.add(units, wall, bench.cpu.since(before))
    return units / wall


async def closed_rounds(bench: Bench, workers: Bench | None) -> tuple[Row, Row, Row | None]:
    """Alternate baseline, lifecycle and (given `workers`) lifecycle segments on the service with
    WORKERS workers, for the plan's rounds."""
    clients = str(bench.clients)
    base = Row(BASELINE_LABEL, 1, clients, "baseline")
    life = Row(LIFECYCLE_LABEL, HTTP_PER_LIFECYCLE, clients, "service")
    many = Row(f"lifecycle {WORKERS} workers", HTTP_PER_LIFECYCLE, clients, WORKERS_ROLE)
    for r in range(bench.plan.rounds):
        b = await closed_segment(bench, base, baseline_request, bench.plan.baseline_s)
        lc = await closed_segment(bench, life, lifecycle, bench.plan.lifecycle_s)
        ratio = lc * MIX_PER_LIFECYCLE / b
        more = ""
        if workers is not None:
            w = await closed_segment(workers, many, lifecycle, bench.plan.lifecycle_s)
            more = f", {WORKERS} workers {w:,.0f}/s"
        print(
            f"  round {r + 1}: baseline {b:,.0f} req/s, lifecycles {lc:,.0f}/s "
            f"(mix ratio {ratio:.2f}){more}, load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    return base, life, many if workers is not None else None


async def open_segment(bench: Bench, row: Row, rate: float) -> None:
    """One open-loop segment at `rate` for the plan's open_s, measured into `row`."""
    before, start = bench.cpu.snapshot(), time.perf_counter()
    units, sending = await run_open(bench, row.stats, rate, bench.plan.open_s)
    row.add(units, sending, bench.cpu.since(before), time.perf_counter() - start)


async def open_row(bench: Bench) -> Row:
    """The open loop at the run's offered rate."""
    row = Row(f"open loop {bench.rate:.0f}/s", HTTP_PER_LIFECYCLE, "open", "service")
    await open_segment(bench, row, bench.rate)
    return row


SPLIT_BAND = 0.2
"""A scaling round counts when each of the WORKERS workers spent its even share of their CPU
within this much (±20 %): each was about as loaded as the lone worker."""


def worker_shares(cpu: Mapping[int, float]) -> list[float]:
    """Each worker's share of the workers' CPU, largest first (the parent is idle)."""
    busiest = sorted(cpu.values(), reverse=True)[:WORKERS]
    total = sum(busiest)
    return [c / total for c in busiest] if total else []


async def scaling_rounds(bench: Bench, workers: Bench) -> Sides:
    """Open-loop segments alternating, for the plan's rounds: one worker at PER_WORKER_RATE,
    then WORKERS workers at WORKERS times it; each round's service CPU ms per lifecycle, and
    the split of the workers' CPU. Every request goes on a new connection (on both sides), so
    that the kernel spreads them evenly over the workers' sockets; kept-alive connections would
    land where a few happen to."""
    rates = (PER_WORKER_RATE, WORKERS * PER_WORKER_RATE)
    sides = Sides(
        [
            Row(f"open {rates[0]:.0f}/s 1 worker", HTTP_PER_LIFECYCLE, "open", "service"),
            Row(f"open {rates[1]:.0f}/s {WORKERS}w", HTTP_PER_LIFECYCLE, "open", WORKERS_ROLE),
        ]
    )
    print(
        f"scaling: {PER_WORKER_RATE:.0f} lifecycles/s per worker, 1 worker then {WORKERS}, "
        f"{bench.plan.open_s:.0f} s each, {bench.plan.rounds} round(s), a connection per request",
        flush=True,
    )
    async with session(force_close=True) as http:
        pair = [replace(b, service=replace(b.service, session=http)) for b in (bench, workers)]
        for r in range(bench.plan.rounds):
            round_ms = []
            pids = children(workers.cpu.pids[WORKERS_ROLE])
            before = {pid: cpu_seconds(pid) for pid in pids}
            for side, row, rate in zip(pair, sides.rows, rates, strict=True):
                mark = row.mark()
                await open_segment(side, row, rate)
                round_ms.append(row.ms_since(mark))
            shares = worker_shares({pid: cpu_seconds(pid) - before[pid] for pid in pids})
            even = bool(shares) and max(abs(x * WORKERS - 1) for x in shares) <= SPLIT_BAND
            sides.rounds_ms.append(round_ms if even else [])
            print(
                f"  round {r + 1}: service CPU per lifecycle 1 worker {round_ms[0]:.2f} ms, "
                f"{WORKERS} workers {round_ms[1]:.2f} ms; the workers' CPU split "
                f"{' / '.join(f'{100 * x:.0f} %' for x in shares)}"
                f"{'' if even else ' (uneven: the round does not count)'}, "
                f"load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
    return sides


# Report ----------------------------------------------------------------------------------------


ROLES = ("service", "redis", "baseline", "loadgen")
ROLES_WITH_WORKERS = ("service", WORKERS_ROLE, "redis", "baseline", "loadgen")


def print_rows(rows: Sequence[Row], roles: Sequence[str] = ROLES) -> None:
    """Throughput and CPU per workload."""
    head = (
        f"{'workload':<20} {'clients':>7} {'units':>7} {'units/s':>8} {'http req/s':>10} "
        + " ".join(f"{r + ' %':>10}" for r in roles)
        + f" {'cpu ms/unit':>11} {'load':>5}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for row in rows:
        cpu = " ".join(f"{row.cpu_pct(r):>10}" for r in roles)
        load = max(row.loads) if row.loads else float("nan")
        print(
            f"{row.label:<20} {row.clients:>7} {row.units:>7} {row.rate:>8,.0f} "
            f"{row.rate * row.per_unit:>10,.0f} {cpu} {row.server_ms:>11.2f} {load:>5.2f}"
        )
    print(
        "units: baseline requests / completed lifecycles (3 HTTP requests each); % = CPU of one "
        "core over the\nmeasured wall time (loadgen = this process); cpu ms/unit: CPU of the "
        "serving process (baseline\nor service) per unit; load: highest 1-minute load average "
        "seen after a segment"
    )


def print_latencies(rows: Sequence[Row]) -> None:
    """Latency percentiles per request type, and failures."""
    head = (
        f"{'workload':<20} {'request':<22} {'count':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for row in rows:
        for kind, values in row.stats.latencies.items():
            ms = [v * 1000 for v in values]
            print(
                f"{row.label:<20} {kind:<22} {len(ms):>7} {percentile(ms, 0.5):>8.2f} "
                f"{percentile(ms, 0.99):>8.2f} {max(ms):>8.2f}"
            )
        answers = ", ".join(f"{k} {n}" for k, n in row.stats.answers.most_common())
        failures = ", ".join(f"{k} x{n}" for k, n in row.stats.failures.most_common())
        if answers:
            print(f"{'':<20} create answered: {answers}")
        print(f"{'':<20} failures: {failures or 'none'}")


def verdict(name: str, value: float, target: float, at_least: bool) -> str:
    """One target line with PASS or FAIL."""
    ok = value >= target if at_least else value <= target
    sign = ">=" if at_least else "<="
    return f"  {'PASS' if ok else 'FAIL'}  {name}: {value:.2f} (target {sign} {target})"


def print_targets(base: Row, life: Row, open_loop: Row, rate: float) -> None:
    """The SPEC §9 figures."""
    print("\nTargets (docs/benchmarks.md): one router process + Redis")
    mix = life.rate * MIX_PER_LIFECYCLE / base.rate
    print(
        verdict(
            "lifecycle mix rate (4 per lifecycle) / baseline request rate", mix, TARGET_RATIO, True
        )
    )
    http = life.rate * HTTP_PER_LIFECYCLE / base.rate
    print(f"  info  counting only the 3 HTTP requests per lifecycle: {http:.2f}")
    print(
        f"  info  {life.rate:,.0f} lifecycles/s (indicative: about "
        f"{INDICATIVE_LIFECYCLES:,.0f}/s on 2 cores)"
    )
    p99 = percentile(open_loop.stats.latencies.get("create -> offer event", []), 0.99) * 1000
    name = f"create -> offer event p99 ms at {rate:.0f}/s"
    if rate != OPEN_RATE:
        name += f" (the target is for {OPEN_RATE:.0f}/s)"
    print(verdict(name, p99, TARGET_P99_MS, False))
    print_cpu_estimate(base, life)
    sent = len(open_loop.stats.latencies.get("send lateness", []))
    print(
        f"  info  open loop: {sent} creates sent at {sent / open_loop.wall_s:,.1f}/s, "
        f"{open_loop.units} lifecycles completed"
    )


def p99_ms(row: Row, kind: str) -> float:
    """The p99 of one request type of `row`, in ms."""
    return percentile(row.stats.latencies.get(kind, []), 0.99) * 1000


def print_round2(measured: Measured) -> None:
    """The SPEC §9 round-2 figures of the service."""
    life = measured.life
    print("\nRound 2 targets (docs/benchmarks.md)")
    print(verdict("service CPU ms per lifecycle, one worker", life.server_ms, TARGET_CPU_MS, False))
    many, open_many, scaling = measured.many, measured.open_many, measured.scaling
    if many is None or open_many is None or scaling is None:
        print("  info  --workers and the open loop at 1,000/s are measured only without --url")
        return
    one_ms, many_ms = (row.server_ms for row in scaling.rows)
    counted = [ms[0] / ms[1] for ms in scaling.rounds_ms if ms]
    efficiency = percentile(sorted(counted), 0.5) if counted else float("nan")
    name = (
        f"lifecycles per service CPU-second per worker, {WORKERS} workers / 1, each worker "
        f"offered {PER_WORKER_RATE:.0f}/s (the median of the {len(counted)} rounds whose split "
        "was even)"
    )
    print(verdict(name, efficiency, TARGET_WORKER_EFFICIENCY, True))
    print(
        f"  info  service CPU per lifecycle: 1 worker {one_ms:.2f} ms, {WORKERS} workers "
        f"{many_ms:.2f} ms (all rounds)"
    )
    per_cpu_one = life.units / life.cpu[life.server]
    per_cpu_many = many.units / many.cpu[many.server]
    print(
        f"  info  at the same total load instead ({life.clients} callers, closed loop): "
        f"{per_cpu_many / per_cpu_one:.2f} ({per_cpu_one:,.0f} and {per_cpu_many:,.0f} lifecycles "
        f"per service CPU-second: each of {WORKERS} workers half as loaded batches less); total "
        f"lifecycles/s: 1 worker {life.rate:,.0f}, {WORKERS} workers {many.rate:,.0f} "
        f"({many.rate / life.rate:.2f}x; the 2 cores also run Redis and the load generator: CPU % "
        f"in the table)"
    )
    name = f"create -> offer event p99 ms at {WORKERS_RATE:,.0f}/s ({WORKERS} workers)"
    print(verdict(name, p99_ms(open_many, "create -> offer event"), TARGET_P99_MS_ROUND2, False))
    print(
        f"  info  where the tail comes from (p99 ms): the load generator's own lateness in "
        f"sending {p99_ms(open_many, 'send lateness'):.1f}, the create's round trip "
        f"{p99_ms(open_many, 'create'):.1f}, the offer event after the create's answer "
        f"{p99_ms(open_many, 'event after answer'):.1f}; CPU % of a core: load generator "
        f"{open_many.cpu_pct('loadgen')}, service {open_many.cpu_pct(WORKERS_ROLE)}, Redis "
        f"{open_many.cpu_pct('redis')}; {open_many.units} of "
        f"{len(open_many.stats.latencies.get('send lateness', []))} lifecycles completed"
    )


def print_cpu_estimate(base: Row, life: Row) -> None:
    """The same ratio from CPU time per unit: less sensitive to other processes' load."""
    per_unit = life.server_ms / MIX_PER_LIFECYCLE
    if per_unit != per_unit:  # nan: the service's CPU is unknown (--url)
        return
    print(
        f"  info  CPU time: a baseline request costs its process {base.server_ms:.2f} ms, a "
        f"lifecycle the service {life.server_ms:.2f} ms ({per_unit:.2f} ms per unit of the "
        f"mix):\n        ratio at equal CPU {base.server_ms / per_unit:.2f}; one busy core "
        f"would do about {1000 / life.server_ms:,.0f} lifecycles/s"
    )


def cpu_pressure() -> str:
    """The kernel's CPU pressure (share of time some task waited for a CPU), if available."""
    try:
        some = Path("/proc/pressure/cpu").read_text().split("\n")[0].split()
    except OSError:
        return "cpu pressure unknown"
    fields = dict(f.split("=") for f in some[1:])
    return f"cpu pressure avg10 {fields['avg10']}%, avg60 {fields['avg60']}%"


# Set-up ----------------------------------------------------------------------------------------


@dataclass
class Targets:
    """What the run started, for the clean-up."""

    served: Served | None = None
    more: list[Served] = field(default_factory=list)
    redis: RedisServer | None = None
    baseline: BaseProcess | None = None
    folder: tempfile.TemporaryDirectory[str] | None = None

    def folder_name(self) -> str:
        """The run's temporary folder (made on first use)."""
        if self.folder is None:
            self.folder = tempfile.TemporaryDirectory(prefix="bench-http-")
        return self.folder.name

    def stop(self) -> None:
        """Stop whatever was started."""
        if self.baseline is not None:
            stop_process(self.baseline)
        for served in [*([self.served] if self.served else []), *self.more]:
            served.kill()
        if self.redis is not None:
            self.redis.stop()
        if self.folder is not None:
            self.folder.cleanup()


def start_service(targets: Targets, key: str) -> Served:
    """`acd-router serve` on a free loopback port with the generated config and key."""
    config = Path(targets.folder_name()) / "bench.toml"
    config.write_text(config_text())
    args = ["serve", "--config", str(config), "--listen", f"127.0.0.1:{free_port()}"]
    targets.served = Served(args, env=clean_env({KEY_ENV: key}))
    return targets.served


async def own_service(targets: Targets, cpu: Cpu) -> tuple[str, str, str]:
    """Start the service; its URL, its key and its embedded Redis URL."""
    key = secrets.token_urlsafe(24)
    served = start_service(targets, key)
    url = await asyncio.to_thread(served.wait_ready)
    store_url = served.store_url
    if store_url is None:
        raise BenchError(f"no embedded store in the log:\n{served.output}")
    cpu.pids["service"] = served.process.pid
    redis_pid = child_pid(served.process.pid, "redis-server")
    if redis_pid is not None:
        cpu.pids["redis"] = redis_pid
    print(f"service: acd-router serve pid {served.process.pid} at {url}, {QUEUES} queues")
    print(f"redis: its embedded redis-server pid {redis_pid} at {store_url} (baseline too)")
    return url, key, store_url


def private_redis(targets: Targets, cpu: Cpu) -> str:
    """A redis-server for the baseline when the service's store is not ours to use."""
    targets.redis = RedisServer()
    targets.redis.start()
    if targets.redis.process is not None:
        cpu.pids["redis"] = targets.redis.process.pid
    print(f"redis: a private redis-server on port {targets.redis.port} for the baseline only")
    return targets.redis.url


async def put_queues(client: Client) -> None:
    """With --url: write the bench queues (admin key), or check that they exist."""
    for n in range(QUEUES):
        table = queue_table(n)
        status, _ = await client.call(Stats(), "setup", "PUT", f"/v1/queues/{table['name']}", table)
        if status == 403:
            await client.must("GET", f"/v1/queues/{table['name']}")
        elif not 200 <= status < 300:
            raise BenchError(f"PUT /v1/queues/{table['name']}: {status}")


async def setup_agents(bench: Bench, state: str) -> None:
    """Create the agents and set them `state` (available), SETUP_CLIENTS at a time."""
    todo = iter(range(AGENTS))

    async def worker() -> None:
        for i in todo:
            agent = bench.agent_id(i)
            if state == "available":
                await bench.service.must("PUT", f"/v1/agents/{agent}", agent_body(i))
            await bench.service.must("POST", f"/v1/agents/{agent}/state", {"state": state})

    await asyncio.gather(*(worker() for _ in range(SETUP_CLIENTS)))


def session(force_close: bool = False) -> aiohttp.ClientSession:
    """A session with a keep-alive pool big enough for the callers; with `force_close`, a new
    connection per request."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, force_close=force_close)
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    )


# Durability: local versus replicated ----------------------------------------------------------

DURABILITIES = ("local", "replicated")
DURABILITY_ROLES = (*DURABILITIES, "primary", "replica", "loadgen")


@dataclass(frozen=True)
class Side:
    """One of several services measured side by side: its role (the CPU column), its config and
    command line, and the checkout whose code it runs (None: this one)."""

    role: str
    config: str
    args: tuple[str, ...] = ()
    checkout: Path | None = None


async def side_benches(
    args: Args, sides: Sequence[Side], targets: Targets, cpu: Cpu, http: aiohttp.ClientSession,
    events: aiohttp.ClientSession,
) -> list[Bench]:  # fmt: skip
    """Start one `serve` per side, agents available and an event stream open on each."""
    key = secrets.token_urlsafe(24)
    headers = {"Authorization": f"Bearer {key}"}
    folder = Path(targets.folder_name())
    benches = []
    for side in sides:
        config = folder / f"{side.role}.toml"
        config.write_text(side.config)
        argv = ["serve", "--config", str(config), *side.args]
        argv += ["--listen", f"127.0.0.1:{free_port()}"]
        served = Served(argv, clean_env({KEY_ENV: key}), side.checkout)
        targets.more.append(served)
        url = await asyncio.to_thread(served.wait_ready)
        cpu.pids[side.role] = served.process.pid
        service = Client(http, url, headers)
        bench = Bench(service, service, OfferStream(), cpu, args.plan, args.clients, args.rate)
        await wait_ready(service, "/readyz", served.alive)
        await setup_agents(bench, "available")
        await bench.stream.open(Client(events, url, headers))
        benches.append(bench)
        where = f" ({side.checkout})" if side.checkout is not None else ""
        print(f"{side.role}: acd-router serve pid {served.process.pid} at {url}{where}")
    return benches


async def durability_benches(
    args: Args, topology: SentinelSet, targets: Targets, cpu: Cpu, http: aiohttp.ClientSession,
    events: aiohttp.ClientSession,
) -> list[Bench]:  # fmt: skip
    """One `serve` per durability on the primary (a namespace each), agents and streams ready."""
    primary, replica = topology.nodes
    cpu.pids.update(primary=primary.pid, replica=replica.pid)
    sides = [
        Side(d, config_text(f"{NAMESPACE}-{d}", d), ("--redis-url", primary.server.url))
        for d in DURABILITIES
    ]
    benches = await side_benches(args, sides, targets, cpu, http, events)
    print(
        f"store: primary pid {primary.pid} on port {primary.port}, one replica pid {replica.pid}; "
        f"{AGENTS} agents and an event stream per service",
        flush=True,
    )
    return benches


@dataclass
class Sides:
    """Closed-loop rows of services measured side by side, and each round's CPU ms per
    lifecycle of each (rounds alternate the services, so that a change of load hits all)."""

    rows: list[Row]
    rounds_ms: list[list[float]] = field(default_factory=list)

    def median_ratio(self, i: int) -> float:
        """The median over rounds of side i's CPU per lifecycle over side 0's (paired)."""
        ratios = sorted(ms[i] / ms[0] for ms in self.rounds_ms)
        return percentile(ratios, 0.5)


async def closed_sides(benches: Sequence[Bench], roles: Sequence[str]) -> Sides:
    """Closed-loop lifecycle segments of each side in turn, for the plan's rounds."""
    plan = benches[0].plan
    clients = str(benches[0].clients)
    sides = Sides([Row(f"lifecycle {role}", HTTP_PER_LIFECYCLE, clients, role) for role in roles])
    print(f"closed loop: {clients} callers per service, {plan.rounds} round(s)")
    for r in range(plan.rounds):
        rates, round_ms = [], []
        for bench, row in zip(benches, sides.rows, strict=True):
            mark = row.mark()
            rates.append(await closed_segment(bench, row, lifecycle, plan.lifecycle_s))
            round_ms.append(row.ms_since(mark))
        sides.rounds_ms.append(round_ms)
        shown = ", ".join(
            f"{role} {rate:,.0f} ({ms:.2f} ms)"
            for role, rate, ms in zip(roles, rates, round_ms, strict=True)
        )
        print(
            f"  round {r + 1}: lifecycles/s (service CPU per lifecycle) {shown}, "
            f"load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    return sides


async def measure_durability(benches: list[Bench]) -> list[Row]:
    """Closed-loop lifecycle segments of each durability in turn, then an open loop of each."""
    closed = (await closed_sides(benches, DURABILITIES)).rows
    opened = []
    for bench, durability in zip(benches, DURABILITIES, strict=True):
        print(f"open loop {durability}: {bench.rate:.0f} creates/s for {bench.plan.open_s:.0f} s")
        row = await open_row(bench)
        row.label, row.server = f"open {bench.rate:.0f}/s {durability}", durability
        opened.append(row)
    return [*closed, *opened]


def print_durability(rows: list[Row]) -> None:
    """The cost of `replicated`: lifecycles/s and create -> offer p99, against `local`."""
    (life_local, life_rep, open_local, open_rep) = rows

    def p99(row: Row) -> float:
        return percentile(row.stats.latencies.get("create -> offer event", []), 0.99) * 1000

    print("\nDurability (docs/high-availability.md): replicated against local, same run")
    print(
        f"  info  lifecycles/s: local {life_local.rate:,.0f}, replicated {life_rep.rate:,.0f} "
        f"(ratio {life_rep.rate / life_local.rate:.2f})"
    )
    print(
        f"  info  service CPU per lifecycle: local {life_local.server_ms:.2f} ms, replicated "
        f"{life_rep.server_ms:.2f} ms"
    )
    print(
        f"  info  create -> offer event p99 at {open_local.label.split()[1]}: local "
        f"{p99(open_local):.2f} ms, replicated {p99(open_rep):.2f} ms"
    )
    failed = sum(sum(row.stats.failures.values()) for row in rows)
    print(f"  {'PASS' if not failed else 'FAIL'}  no failed request ({failed})")


async def run_durability(args: Args) -> None:
    """Start a primary, a replica and a service per durability; measure; report; stop."""
    started = time.perf_counter()
    targets = Targets()
    topology = SentinelSet(replicas=1, sentinels=0)
    cpu = Cpu({"loadgen": os.getpid()})
    print(
        f"load average at start {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; {cpu_pressure()}"
    )
    try:
        await asyncio.to_thread(topology.start)
        async with session() as http, session() as events:
            benches = await durability_benches(args, topology, targets, cpu, http, events)
            rows = await measure_durability(benches)
            for bench in benches:
                await bench.stream.close()
        print_rows(rows, DURABILITY_ROLES)
        print_latencies(rows)
        print_durability(rows)
        for bench, served in zip(benches, targets.more, strict=True):
            print_service_log(served, bench.stream)
    finally:
        targets.stop()
        topology.stop()
    print(f"\nload average at end {os.getloadavg()[0]:.2f}; {cpu_pressure()}")
    print(f"total run time {time.perf_counter() - started:.0f} s")


# Builds compared: this checkout against others --------------------------------------------


async def run_compare(args: Args) -> None:
    """This checkout's service beside those of `args.compare` (other checkouts of the project,
    each with its embedded store): alternating closed-loop lifecycle segments; the CPU each
    service spends per lifecycle, against this checkout's."""
    started = time.perf_counter()
    targets = Targets()
    cpu = Cpu({"loadgen": os.getpid()})
    roles = ["this", *(f"other{i}" for i in range(1, len(args.compare) + 1))]
    checkouts = [None, *(Path(c) for c in args.compare)]
    specs = [Side(r, config_text(), (), c) for r, c in zip(roles, checkouts, strict=True)]
    print(f"load average at start {os.getloadavg()[0]:.2f}; {cpu_pressure()}")
    try:
        async with session() as http, session() as events:
            benches = await side_benches(args, specs, targets, cpu, http, events)
            sides = await closed_sides(benches, roles)
            for bench in benches:
                await bench.stream.close()
        rows = sides.rows
        print_rows(rows, [*roles, "loadgen"])
        first = rows[0].server_ms
        print("\nservice CPU ms per lifecycle against this checkout's, same run (all rounds; the")
        print("median of the rounds' ratios):")
        for i, row in enumerate(rows):
            print(
                f"  {row.server:<8} {row.server_ms:6.3f} ms  ratio {row.server_ms / first:.3f}; "
                f"median of rounds {sides.median_ratio(i):.3f}"
            )
        failed = sum(sum(row.stats.failures.values()) for row in rows)
        print(f"  {'PASS' if not failed else 'FAIL'}  no failed request ({failed})")
    finally:
        targets.stop()
    print(f"\nload average at end {os.getloadavg()[0]:.2f}; {cpu_pressure()}")
    print(f"total run time {time.perf_counter() - started:.0f} s")


# Main ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Args:
    """The command line."""

    plan: Plan
    url: str | None
    key: str | None
    clients: int
    rate: float
    durability: bool = False
    compare: tuple[str, ...] = ()


@dataclass
class Measured:
    """The rows of a run: the closed loops, the open loops and (without --url) the workers'."""

    base: Row
    life: Row
    open_one: Row
    many: Row | None = None
    open_many: Row | None = None
    scaling: Sides | None = None

    @property
    def rows(self) -> list[Row]:
        """Every row, in the table's order."""
        scaled = self.scaling.rows if self.scaling is not None else []
        rows = [self.base, self.life, self.many, self.open_one, *scaled, self.open_many]
        return [r for r in rows if r is not None]


async def measure(bench: Bench, workers: Bench | None) -> Measured:
    """The closed-loop rounds, the open loop at the run's rate on one worker, the scaling rounds,
    and the open loop at WORKERS_RATE on WORKERS workers."""
    print(f"closed loop: {bench.clients} callers per target, {bench.plan.rounds} round(s)")
    base, life, many = await closed_rounds(bench, workers)
    print(f"open loop: {bench.rate:.0f} creates/s for {bench.plan.open_s:.0f} s", flush=True)
    measured = Measured(base, life, await open_row(bench), many)
    if workers is not None:
        measured.scaling = await scaling_rounds(bench, workers)
        # Last: at 1,000/s this machine overloads, which leaves the agents busy.
        rate = WORKERS_RATE
        print(f"open loop, {WORKERS} workers: {rate:.0f} creates/s for {bench.plan.open_s:.0f} s")
        measured.open_many = await open_row(replace(workers, rate=rate))
        measured.open_many.label = f"open {rate:.0f}/s {WORKERS}w"
    return measured


async def run(args: Args) -> None:
    """Start the targets, measure, report, stop everything."""
    started = time.perf_counter()
    targets = Targets()
    cpu = Cpu({"loadgen": os.getpid()})
    print(
        f"load average at start {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; {cpu_pressure()}"
    )
    try:
        async with session() as http, session() as events:
            bench = await open_bench(args, targets, cpu, http, events)
            workers = None
            if args.url is None:
                workers = await workers_bench(args, bench, targets, cpu, http, events)
            measured = await measure(bench, workers)
            for each in (bench, workers):
                if each is not None:
                    await each.stream.close()
            if args.url is not None:
                await setup_agents(bench, "logged_out")
        print_rows(measured.rows, ROLES if workers is None else ROLES_WITH_WORKERS)
        print_latencies(measured.rows)
        print_targets(measured.base, measured.life, measured.open_one, bench.rate)
        print_round2(measured)
        print_service_log(targets.served, bench.stream)
        if workers is not None:
            print(
                f"workers' event streams: {workers.stream.received} offers read, reconnected "
                f"{workers.stream.reconnects} time(s)"
            )
    finally:
        targets.stop()
    print(f"\nload average at end {os.getloadavg()[0]:.2f}; {cpu_pressure()}")
    print(f"total run time {time.perf_counter() - started:.0f} s")


async def workers_bench(
    args: Args, bench: Bench, targets: Targets, cpu: Cpu, http: aiohttp.ClientSession,
    events: aiohttp.ClientSession,
) -> Bench:  # fmt: skip
    """`serve --workers WORKERS` on the same Redis (a namespace of its own), ready to measure."""
    # Over the Unix socket the single service uses, so that both sides are called the same way.
    redis_url = targets.served.store_url if targets.served is not None else None
    if redis_url is None:
        raise BenchError("no embedded store to share with the workers")
    side = Side(
        WORKERS_ROLE,
        config_text(f"{NAMESPACE}-{WORKERS_ROLE}"),
        ("--workers", str(WORKERS), "--redis-url", redis_url),
    )
    cpu.trees.add(WORKERS_ROLE)
    [workers] = await side_benches(args, [side], targets, cpu, http, events)
    return workers


async def open_bench(
    args: Args,
    targets: Targets,
    cpu: Cpu,
    http: aiohttp.ClientSession,
    events: aiohttp.ClientSession,
) -> Bench:
    """Start (or reach) the service and the baseline; agents logged in; the stream open."""
    if args.url is None:
        url, key, redis_url = await own_service(targets, cpu)
    else:
        url, key, redis_url = args.url.rstrip("/"), args.key or "", private_redis(targets, cpu)
        print(f"service: {url} (not started here; no CPU figures for it)")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    port = free_port()
    targets.baseline = start_baseline(port, redis_url)
    service = Client(http, url, headers)
    bench = Bench(
        service, Client(http, f"http://127.0.0.1:{port}", headers), OfferStream(), cpu,
        args.plan, args.clients, args.rate,
    )  # fmt: skip
    served = targets.served
    await wait_ready(service, "/readyz", lambda: served is None or served.process.poll() is None)
    await wait_ready(bench.baseline, "/ready", targets.baseline.is_alive)
    if targets.baseline.pid is not None:
        cpu.pids["baseline"] = targets.baseline.pid
    print(f"baseline: bare aiohttp app pid {targets.baseline.pid} on 127.0.0.1:{port}")
    print(f"load generator: this process (pid {os.getpid()}), one asyncio loop")
    if args.url is not None:
        await put_queues(service)
    await setup_agents(bench, "available")
    await bench.stream.open(Client(events, url, headers))
    print(f"{AGENTS} agents available; an event stream per queue open", flush=True)
    return bench


def print_service_log(served: Served | None, stream: OfferStream) -> None:
    """The service's warnings and errors (timestamps cut, counted), and stream reconnects."""
    print(f"\nevent stream: {stream.received} offers read, reconnected {stream.reconnects} time(s)")
    if served is None:
        return
    bad = Counter(
        line.split(" ", 2)[-1]
        for line in served.lines
        if any(w in line for w in (" WARNING ", " ERROR ", "Traceback"))
        and "embedded store:" not in line
    )
    print(f"service log: {sum(bad.values())} warning/error line(s)")
    for message, count in bad.most_common(5):
        print(f"  {count} x {message[:160]}")


def parse_args(argv: Sequence[str] | None) -> Args:
    """The command line as Args."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one short round (under 30 s)")
    parser.add_argument("--url", help="an already running service instead of starting one")
    parser.add_argument("--key", help="its API key (admin to write the queues, else platform)")
    parser.add_argument("--clients", type=int, default=CLIENTS, help="closed-loop callers")
    parser.add_argument("--rate", type=float, default=OPEN_RATE, help="open-loop creates/s")
    parser.add_argument(
        "--durability",
        action="store_true",
        help="instead: durability local against replicated, on a primary and a replica",
    )
    parser.add_argument(
        "--rounds", type=int, help="closed-loop rounds (default: 3, --quick 1, --compare 10)"
    )
    parser.add_argument(
        "--compare",
        metavar="DIR",
        action="append",
        default=[],
        help="instead: this checkout's service against that of another checkout of the project "
        "(repeatable), CPU per lifecycle side by side",
    )
    ns = parser.parse_args(argv)
    plan = QUICK if ns.quick else COMPARE if ns.compare else FULL
    if ns.rounds is not None:  # the time limit grows with the rounds
        rounds = max(1, ns.rounds)
        plan = replace(plan, rounds=rounds, timeout_s=plan.timeout_s * rounds / plan.rounds)
    return Args(
        plan, ns.url, ns.key, max(1, ns.clients), max(1.0, ns.rate), ns.durability,
        tuple(ns.compare),
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run; 0 whatever the verdicts, 1 if the benchmark itself failed."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up on SIGTERM too
    try:
        if args.compare:
            main_run = run_compare(args)
        else:
            main_run = run_durability(args) if args.durability else run(args)
        asyncio.run(asyncio.wait_for(main_run, args.plan.timeout_s))
    except TimeoutError:
        print(f"benchmark stopped: over {args.plan.timeout_s:.0f} s", file=sys.stderr)
        return 1
    except BenchError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
