"""Sentinel failover under load (SPEC §9): `python -m loadtest.failover`.

A primary, two replicas and three Sentinels (loadtest/topology.py), and for each durability
(`local`, `replicated`) two real `acd-router serve` processes on them, each pair its own
namespace. Fake agents run lifecycles (create → offer → accept → complete) through both routers
of a pair; every change the service acknowledges (2xx) is recorded. Two scenarios:
  kill   the primary SIGKILLed under load;
  lag    the replicas frozen (SIGSTOP) and their replication links cut for a moment under load,
         the primary SIGKILLed meanwhile, then the replicas thawed: what the primary
         acknowledged during the lag is on no replica.
Each reports the time from the kill to the first change answered again, the 503s seen, other
failures (a 500, a hang), the acknowledged changes the final primary lacks, and the events an
event stream delivered that it lacks or (within 10 s) never delivered. The final primary is the
one every Sentinel names once they agree and a replica streams from it: a second failover may
demote the replica promoted first. PASS/FAIL (§9): service again within 10 s, zero acknowledged
changes lost and zero such events with `replicated`. The verdicts never change the exit status
(0); a crash or timeout exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from loadtest.served import Served, clean_env, serve_args
from loadtest.topology import SentinelSet
from router.domain.models import InteractionStatus
from router.events.sse import StreamId, parse_event_id
from router.settings import ServiceSettings
from router.store.engine import Engine
from router.store.invariants import check_invariants
from router.store.keys import Keys

KEY = "failover-key"
KEY_ENV = "ACD_FAILOVER_KEY"
QUEUE = "calls"
STEPS = ("created", "accepted", "completed")
"""The changes of a lifecycle, in order: an interaction's acknowledged step is its highest."""
REACHED = {
    "created": set(InteractionStatus),
    "accepted": {InteractionStatus.CONNECTED, InteractionStatus.COMPLETED},
    "completed": {InteractionStatus.COMPLETED},
}
"""The statuses that show a step applied (wrap-up 0, no timer runs out during the load)."""
RETRY_S = 0.05
"""The pause before a 503 is retried (shorter than Retry-After: the outage is measured)."""
OFFER_WAIT_S = 2.0
REQUEST_TIMEOUT_S = 10.0
TARGET_SERVICE_S = 10.0
LAG_ALLOWED_S = 1.0
"""The invariants are checked as of this long ago: the tick loops apply due timers meanwhile."""
REACH_S = 10.0
"""How long an event stream may take, once the load stopped, to deliver the log's newest event."""


def config_text(namespace: str, durability: str, store_timeout_s: float) -> str:
    """The configuration of a router pair."""
    return (
        f'[service]\nnamespace = "{namespace}"\ndurability = "{durability}"\n'
        f"store_timeout_s = {store_timeout_s}\n\n"
        f'[[keys]]\nname = "admin"\nrole = "admin"\nenv = "{KEY_ENV}"\n\n'
        f'[[queues]]\nname = "{QUEUE}"\nchannel = "chat"\nwrap_up_s = 0\noffer_timeout_s = 60\n'
    )


@dataclass
class Answer:
    sent: float
    answered: float
    status: int
    body: Any


@dataclass
class Load:
    """Fake agents and a platform running lifecycles through `urls` (HTTP, 127.0.0.1)."""

    urls: list[str]
    agents: list[str]
    prefix: str
    acked: dict[str, int] = field(default_factory=dict)
    """Interaction id → index in STEPS of its highest acknowledged change."""
    statuses: Counter[int] = field(default_factory=Counter)
    """Every answer's status; 0: no answer in time or no connection (a hang or a refusal)."""
    changes: list[Answer] = field(default_factory=list)
    """Every answer to a change, in the order answered."""
    open: set[str] = field(default_factory=set)
    """Interactions the load created (maybe) and did not see complete."""
    headers: dict[str, str] = field(default_factory=lambda: {"Authorization": f"Bearer {KEY}"})

    async def setup(self, session: aiohttp.ClientSession) -> None:
        """Every agent created and available."""
        for i, agent in enumerate(self.agents):
            url = self.urls[i % len(self.urls)]
            for method, path, body in (
                ("PUT", f"/v1/agents/{agent}", {"skills": {}, "channels": {"chat": 1}}),
                ("POST", f"/v1/agents/{agent}/state", {"state": "available"}),
            ):
                answer = await self.request(session, url, method, path, body)
                if answer.status not in (200, 201):
                    raise AssertionError(f"agent set-up: {method} {path} {answer.status}")

    async def request(
        self, session: aiohttp.ClientSession, url: str, method: str, path: str, body: Any = None
    ) -> Answer:
        """One request; status 0 when it got no answer in time."""
        sent = time.monotonic()
        try:
            async with session.request(
                method, url + path, json=body, headers=self.headers
            ) as response:
                status = response.status
                if status == 503 and "Retry-After" not in response.headers:
                    status = -503  # a 503 without Retry-After counts as a failure
                parsed = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError):
            status, parsed = 0, None
        answer = Answer(sent, time.monotonic(), status, parsed)
        self.statuses[status] += 1
        if method != "GET":
            self.changes.append(answer)
        return answer

    async def change(
        self, session: aiohttp.ClientSession, stop: asyncio.Event, url: str, path: str, body: Any
    ) -> Answer:
        """POST until it is answered other than 503 (a retry is safe, §4), or `stop`."""
        while True:
            answer = await self.request(session, url, "POST", path, body)
            if answer.status not in (503, 0) or stop.is_set():
                return answer
            await asyncio.sleep(RETRY_S)

    async def run(self, session: aiohttp.ClientSession, workers: int, stop: asyncio.Event) -> None:
        """`workers` lifecycles at a time until `stop`."""
        await asyncio.gather(*(self._worker(session, w, stop) for w in range(workers)))

    async def _worker(self, session: aiohttp.ClientSession, w: int, stop: asyncio.Event) -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            ix_id = f"{self.prefix}-{w}-{n}"
            self.open.add(ix_id)
            # Each change through the other router than the one before.
            urls = itertools.cycle(
                self.urls[w % len(self.urls) :] + self.urls[: w % len(self.urls)]
            )
            created = await self.change(
                session, stop, next(urls), "/v1/interactions", {"id": ix_id, "queue": QUEUE}
            )
            if created.status not in (200, 201):
                continue
            self.acked[ix_id] = 0
            agent = await self._offered(session, next(urls), ix_id, created.body, stop)
            if agent is None:
                await self.request(session, next(urls), "DELETE", f"/v1/interactions/{ix_id}")
                continue
            for step, action in ((1, "accept"), (2, "complete")):
                answer = await self.change(
                    session,
                    stop,
                    next(urls),
                    f"/v1/interactions/{ix_id}/{action}",
                    {"agent_id": agent},
                )
                if answer.status != 200:
                    break  # an earlier change was lost (409, 404), or the load stops
                self.acked[ix_id] = step
            if self.acked[ix_id] == len(STEPS) - 1:
                self.open.discard(ix_id)

    async def _offered(
        self,
        session: aiohttp.ClientSession,
        url: str,
        ix_id: str,
        record: Any,
        stop: asyncio.Event,
    ) -> str | None:
        """The agent the interaction is offered to, polling a little if it waits."""
        deadline = time.monotonic() + OFFER_WAIT_S
        while True:
            if isinstance(record, dict) and record.get("status") == "offered":
                return str(record["agent_id"])
            if stop.is_set() or time.monotonic() > deadline:
                return None
            await asyncio.sleep(RETRY_S)
            answer = await self.request(session, url, "GET", f"/v1/interactions/{ix_id}")
            record = answer.body

    async def settle(self, session: aiohttp.ClientSession) -> list[str]:
        """End what the load left open or a failover took back (abandon what waits, complete
        what is connected); then the agents that are not available with nothing, as
        `<agent>: <state> <interactions>`."""
        url = self.urls[0]
        for ix_id in sorted(self.open | set(self.acked)):
            found = await self.request(session, url, "GET", f"/v1/interactions/{ix_id}")
            status = found.body.get("status") if isinstance(found.body, dict) else None
            if status in ("queued", "offered"):
                await self.request(session, url, "DELETE", f"/v1/interactions/{ix_id}")
            elif status == "connected":
                body = {"agent_id": found.body["agent_id"]}
                await self.request(session, url, "POST", f"/v1/interactions/{ix_id}/complete", body)
        self.open.clear()
        busy = []
        for agent in self.agents:
            found = await self.request(session, url, "GET", f"/v1/agents/{agent}")
            body = found.body if isinstance(found.body, dict) else {}
            if body.get("state") != "available" or body.get("interactions"):
                busy.append(f"{agent}: {body.get('state')} {body.get('interactions')}")
        return busy

    def first_success_after(self, moment: float) -> float | None:
        """Seconds from `moment` to the first change sent after it and acknowledged."""
        times = [a.answered for a in self.changes if a.sent >= moment and 200 <= a.status < 300]
        return min(times) - moment if times else None

    def failures(self) -> int:
        """Answers that are neither a success, a 4xx, nor a 503 with Retry-After."""
        return sum(n for s, n in self.statuses.items() if not (200 <= s < 500 or s == 503))


async def lost_changes(redis: Redis, namespace: str, acked: dict[str, int]) -> list[str]:
    """The acknowledged changes the store (the final primary) does not show: `<id>: <step>`."""
    engine = Engine(redis, ServiceSettings(namespace=namespace))
    lost = []
    now = time.time()
    for ix_id, step in sorted(acked.items()):
        found = await engine.get_interaction(ix_id, now)
        if found is None or found.status not in REACHED[STEPS[step]]:
            lost.append(f"{ix_id}: {STEPS[step]}")
    return lost


@dataclass
class EventCollector:
    """An event stream client that resumes by `Last-Event-ID`; the ids it received."""

    url: str
    after: str
    ids: list[str] = field(default_factory=list)
    _target: StreamId = (2**64, 0)
    _reached: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        """Read until `stop`, reconnecting after any end."""
        headers = {"Authorization": f"Bearer {KEY}"}
        while not stop.is_set():
            headers["Last-Event-ID"] = self.ids[-1] if self.ids else self.after
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(
                    f"{self.url}/v1/events", headers=headers, timeout=aiohttp.ClientTimeout()
                ) as response:
                    if response.status == 200:
                        async for line in response.content:
                            if line.startswith(b"id: "):
                                self.ids.append(line[4:].decode().strip())
                                if parse_event_id(self.ids[-1], "id") >= self._target:
                                    self._reached.set()
            await asyncio.sleep(0.2)

    async def reach(self, last: str) -> bool:
        """Wait until the stream has delivered `last`; False if it has not within REACH_S."""
        self._target = parse_event_id(last, "last")
        newest = self.ids[-1] if self.ids else self.after
        if parse_event_id(newest, "id") < self._target:
            try:
                await asyncio.wait_for(self._reached.wait(), REACH_S)
            except TimeoutError:
                return False
        return True


async def log_ids(redis: Redis, namespace: str, after: str) -> list[str]:
    """The ids of the event log of `namespace` after `after`."""
    engine = Engine(redis, ServiceSettings(namespace=namespace))
    ids: list[str] = []
    while True:
        entries = await engine.read_log(ids[-1] if ids else after, "+", 1000)
        if not entries:
            return ids
        ids += [e[0].decode() for e in entries]


async def last_event_id(redis: Redis, namespace: str) -> str:
    """The newest id of the namespace's event log (0-0 when empty)."""
    info = await Engine(redis, ServiceSettings(namespace=namespace)).log_info()
    return "0-0" if info is None else str(info["last-generated-id"].decode())


@dataclass
class Pair:
    """Two routers of one durability, their load and their event stream."""

    durability: str
    urls: list[str]
    load: Load
    events: EventCollector | None = None

    @property
    def namespace(self) -> str:
        return f"fo-{self.durability}"


@dataclass
class Outcome:
    durability: str
    service_s: float | None
    answered_503: int
    failures: int
    acknowledged: int
    lost: list[str]
    violations: list[str]
    """What the invariant checker finds on the final primary."""
    busy_agents: list[str]
    """Agents not available with nothing once the load's leftovers are ended."""
    ghost_events: int
    """Events delivered that the final primary does not hold."""
    missing_events: int
    """Events the final primary holds that the stream never delivered."""
    caught_up: bool
    """Whether the stream delivered the final primary's newest event within REACH_S (if not,
    `missing_events` counts a stream still behind when the wait gave up)."""


async def scenario(
    topology: SentinelSet,
    pairs: list[Pair],
    session: aiohttp.ClientSession,
    *,
    workers: int,
    before_s: float,
    lag_s: float | None,
) -> list[Outcome]:
    """Load on every pair; the primary killed (after a lag when `lag_s`); the outcome of each."""
    stop = asyncio.Event()
    old = topology.primary()
    async with Redis(port=old.port) as redis:
        for pair in pairs:
            pair.load.statuses.clear()
            pair.load.changes.clear()
            pair.load.acked.clear()
            pair.load.prefix = f"{pair.durability}-{'kill' if lag_s is None else 'lag'}"
            after = await last_event_id(redis, pair.namespace)
            pair.events = EventCollector(pair.urls[0], after)
    tasks = [asyncio.create_task(p.load.run(session, workers, stop)) for p in pairs]
    tasks += [asyncio.create_task(p.events.run(session, stop)) for p in pairs if p.events]
    try:
        await asyncio.sleep(before_s)
        if lag_s is None:
            killed = time.monotonic()
            old.kill()
        else:
            with topology.cut_off():
                await asyncio.sleep(lag_s)
                killed = time.monotonic()
                old.kill()
        deadline = time.monotonic() + 30
        while any(p.load.first_success_after(killed) is None for p in pairs):
            if time.monotonic() > deadline:
                raise TimeoutError("no change acknowledged within 30 s of the kill")
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # the load goes on after the failover
        stop.set()
        await asyncio.gather(*tasks[: len(pairs)])
        final = await asyncio.to_thread(topology.settled)
        caught_up = {}
        async with Redis(port=final.port) as redis:
            for pair in pairs:
                assert pair.events is not None
                last = await last_event_id(redis, pair.namespace)
                caught_up[pair.durability] = await pair.events.reach(last)
    finally:
        stop.set()
        for task in tasks[len(pairs) :]:
            task.cancel()  # a stream ends only when its reader stops
        await asyncio.gather(*tasks, return_exceptions=True)
    outcomes = []
    async with Redis(port=final.port) as redis:
        for pair in pairs:
            assert pair.events is not None
            held = await log_ids(redis, pair.namespace, pair.events.after)
            got = pair.events.ids
            outcomes.append(
                Outcome(
                    durability=pair.durability,
                    service_s=pair.load.first_success_after(killed),
                    answered_503=pair.load.statuses[503],
                    failures=pair.load.failures(),
                    acknowledged=len(pair.load.acked),
                    lost=await lost_changes(redis, pair.namespace, pair.load.acked),
                    violations=await check_invariants(
                        redis, Keys(pair.namespace), time.time() - LAG_ALLOWED_S, {"voice"}
                    ),
                    busy_agents=await pair.load.settle(session),
                    ghost_events=len(set(got) - set(held)),
                    missing_events=len(set(held) - set(got)),
                    caught_up=caught_up[pair.durability],
                )
            )
    return outcomes


def report(name: str, outcomes: list[Outcome]) -> list[bool]:
    """Print a scenario's rows and verdicts; the verdicts."""
    print(f"\n{name}")
    print(
        f"  {'durability':<11} {'service s':>9} {'503s':>6} {'failures':>8} {'acked':>6} "
        f"{'lost':>5} {'ghost ev':>8} {'missed ev':>9} {'violations':>10} {'busy':>5}"
    )
    for o in outcomes:
        service = "-" if o.service_s is None else f"{o.service_s:.2f}"
        missed = str(o.missing_events) if o.caught_up else "gave up"
        print(
            f"  {o.durability:<11} {service:>9} {o.answered_503:>6} {o.failures:>8} "
            f"{o.acknowledged:>6} {len(o.lost):>5} {o.ghost_events:>8} {missed:>9} "
            f"{len(o.violations):>10} {len(o.busy_agents):>5}"
        )
    checks = []
    for o in outcomes:
        checks += [
            (
                o.service_s is not None and o.service_s <= TARGET_SERVICE_S,
                f"{o.durability}: service again within {TARGET_SERVICE_S:g} s",
            ),
            (not o.failures, f"{o.durability}: no 500, no hang"),
            (
                not o.violations and not o.busy_agents and o.caught_up and not o.missing_events,
                f"{o.durability}: invariants hold, no agent stuck, no event missed",
            ),
        ]
        if o.durability == "replicated":
            checks.append(
                (
                    not o.lost and not o.ghost_events,
                    "replicated: zero acknowledged changes lost, zero events delivered that the "
                    "final primary lacks",
                )
            )
    for ok, text in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {text}")
    for o in outcomes:
        if not o.caught_up:
            print(
                f"    {o.durability}: gave up waiting for the event stream: {REACH_S:g} s after "
                "the load stopped it had not delivered the final primary's newest event"
            )
        for line in (o.violations + o.busy_agents)[:5]:
            print(f"    {o.durability}: {line}")
    return [ok for ok, _ in checks]


async def run(workers: int, store_timeout_s: float, folder: Path) -> None:
    topology = SentinelSet(folder=folder / "redis")
    await asyncio.to_thread(topology.start)
    served: list[Served] = []
    try:
        pairs = []
        for durability in ("local", "replicated"):
            config = folder / f"{durability}.toml"
            config.write_text(config_text(f"fo-{durability}", durability, store_timeout_s))
            urls = []
            for _ in range(2):
                args, _ = serve_args("--config", str(config), "--redis-url", topology.url)
                router = Served(args, clean_env({KEY_ENV: KEY}))
                served.append(router)
                urls.append(await asyncio.to_thread(router.wait_ready))
            agents = [f"agent-{i}" for i in range(workers * 2)]
            pairs.append(Pair(durability, urls, Load(urls, agents, durability)))
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for pair in pairs:
                await pair.load.setup(session)
            print(
                f"failover: primary + 2 replicas + 3 Sentinels (down-after 1000 ms), two routers "
                f"per durability, {workers} lifecycles at a time each, store_timeout_s "
                f"{store_timeout_s:g}"
            )
            verdicts = report(
                "kill: the primary SIGKILLed under load",
                await scenario(topology, pairs, session, workers=workers, before_s=2, lag_s=None),
            )
            await asyncio.to_thread(topology.restart_killed)
            verdicts += report(
                "lag: replicas frozen and cut off for 0.5 s, the primary SIGKILLed meanwhile",
                await scenario(topology, pairs, session, workers=workers, before_s=2, lag_s=0.5),
            )
        print(f"\n{'PASS' if all(verdicts) else 'FAIL'}  SPEC §9 failover target")
    finally:
        for router in served:
            router.kill()
        topology.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.failover", description=__doc__)
    parser.add_argument("--workers", type=int, default=8, help="lifecycles at a time per pair")
    parser.add_argument("--store-timeout-s", type=float, default=1.0)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up on SIGTERM too
    with tempfile.TemporaryDirectory(prefix="acd-failover-") as tmp:
        try:
            asyncio.run(asyncio.wait_for(run(args.workers, args.store_timeout_s, Path(tmp)), 240))
        except (AssertionError, TimeoutError, OSError, aiohttp.ClientError) as error:
            print(f"failover: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("failover: stopped", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
