"""HTTP replay: a trace and a roster played against a running `acd-router serve` at S x real time.

This process plays the telephony platform and the agents. Agents are created (PUT) and log in and
out by their shifts; interactions are created at `arrival_s / S`; offers (read from the SSE event
stream) are accepted after the ring delay and completed `handle_s / S` later; callers hang up after
`patience_s / S` if not yet connected; callback offers are taken when the trace says
`callback_accept`; agents take the roster's wrap-up (in the completion's `wrap_up_s`) and breaks
(`not_ready`, then `available`), drawn as `simulate` draws them. The service must run with
`--clock-speed S`, so its timers (offer timeout, wrap-up, max wait) stay in trace time and every
difference of its timestamps is in trace seconds: waits and handle times come from the
interaction's `enqueued_at`, `answered_at` and `ended_at`, anchored at the call's `arrival_s`.

Durations the trace gives are counted from the service's own timestamps, mapped to this process's
trace time (`ServiceClock`): an accept is due the ring delay after the offer's `at`, a completion
`handle_s` after `answered_at`, a hang-up `patience_s` after `enqueued_at`. So the time an event
takes to reach this process, or a request to reach the service, is not added to every wait and
handle time; what remains is the lateness of the requests themselves (measured: `ClientStats`).

The run stops by itself when every call is over, or at the last arrival plus the drain bound
(trace seconds); calls still waiting then are `unanswered`. The result is a `SimResult`, so the
report is the one of `simulate`, plus client-side latencies and errors per request type.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, TextIO

import aiohttp

from loadtest.ewt import ewt_figures, ewt_report
from loadtest.page import html_page
from loadtest.report import COLUMNS, percentile, row, run_figures, run_title, table
from loadtest.simulate import SHIFT_END_REASON, CallResult, SimResult, check_queues
from loadtest.trace import Call, Roster
from loadtest.unavailability import BREAK_REASON, BreakBook, Unavailability
from router.domain.models import QueueConfig

EVENT_TYPES = (
    "interaction.offered",
    "interaction.timed_out",
    "callback.offered",
    "agent.state_changed",
)
REQUEST_TIMEOUT_S = 10.0
PROGRESS_EVERY_S = 0.5
DONE = ("answered", "abandoned", "timed_out", "blocked")
CLOCK_RATIO_TOLERANCE = 0.02
PERCENTILES = (("50", 0.5), ("99", 0.99), ("999", 0.999))


class ReplayError(Exception):
    """The replay cannot go on (the service refused a set-up request or the stream)."""


@dataclass(frozen=True)
class ReplayOptions:
    """Where and how fast to play; times are trace seconds."""

    url: str
    key: str | None = None
    speed: float = 1.0
    ring_delay_s: float = 0.0
    drain_s: float = 1800.0
    """After the last arrival, how long (trace s) to wait at most for the last calls."""
    id_prefix: str = ""
    """Prepended to every interaction id (to replay a trace twice on one service)."""
    seed: int = 1
    """Of the roster's wrap-up and break draws."""
    progress: TextIO | None = None


@dataclass
class ClientStats:
    """Latencies (s) per request type; failures and expected conflicts per type and status;
    lateness (real s) of each scheduled action against its due time, per action."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    conflicts: Counter[str] = field(default_factory=Counter)
    lateness: dict[str, list[float]] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        """Requests answered."""
        return sum(len(v) for v in self.latencies.values())

    def request_rows(self) -> list[dict[str, Any]]:
        """Per request type: count, latency percentiles (ms) and failures."""
        return [
            {
                "request": kind,
                "count": len(values),
                **{f"p{n}_ms": 1000 * percentile(values, q) for n, q in PERCENTILES},
                "errors": sum(n for k, n in self.errors.items() if k.split(" ")[0] == kind),
            }
            for kind, values in sorted(self.latencies.items())
        ]

    def lateness_rows(self, speed: float) -> list[dict[str, Any]]:
        """Per kind of action: count, lateness percentiles and maximum (real ms), and the p99 in
        trace seconds."""
        return [
            {
                "action": kind,
                "count": len(values),
                **{f"p{n}_ms": 1000 * percentile(values, q) for n, q in PERCENTILES[:2]},
                "max_ms": 1000 * max(values),
                "p99_trace_s": speed * percentile(values, 0.99),
            }
            for kind, values in sorted(self.lateness.items())
            if values
        ]

    def report(self) -> str:
        """A latency table per request type, then error and conflict counts."""
        rows = [
            [
                r["request"],
                str(r["count"]),
                *(f"{r[f'p{n}_ms']:.1f}" for n, _ in PERCENTILES),
                str(r["errors"]),
            ]
            for r in self.request_rows()
        ]
        header = ["request", "count", "p50 ms", "p99 ms", "p999 ms", "errors"]
        lines = [table(header, rows)] if rows else ["no requests"]
        lines.append(
            "errors: " + (", ".join(f"{k} x{n}" for k, n in sorted(self.errors.items())) or "none")
        )
        if self.conflicts:
            lines.append(
                "expected races (409, ignored): "
                + ", ".join(f"{k} x{n}" for k, n in sorted(self.conflicts.items()))
            )
        return "\n".join(lines)

    def lateness_report(self, speed: float) -> str:
        """How late each kind of action started against its schedule, real ms and trace s."""
        rows = [
            [
                r["action"],
                str(r["count"]),
                *(f"{r[k]:.1f}" for k in ("p50_ms", "p99_ms", "max_ms")),
                f"{r['p99_trace_s']:.2f}",
            ]
            for r in self.lateness_rows(speed)
        ]
        header = ["late by", "count", "p50 ms", "p99 ms", "max ms", "p99 trace s"]
        return table(header, rows) if rows else "nothing scheduled"


@dataclass
class ReplayResult:
    """The calls' outcomes (as `simulate` gives them) and the client's view of the service."""

    sim: SimResult
    stats: ClientStats
    speed: float
    stopped: str
    """`all calls over` or `drain bound`."""
    clock_ratio: float | None = None
    """Service seconds per trace second (`ServiceClock.speed_ratio`)."""


def timestamp(value: object) -> float | None:
    """Epoch seconds of an RFC 3339 string of the API (None when absent)."""
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass
class ServiceClock:
    """The service's clock seen from this process: service time = trace time + `offset`.

    Both clocks run at the same speed (`serve --clock-speed S`, `replay --speed S`), so one offset
    maps them. A response stamped `at` by the service was stamped before it was received here,
    so `at - received` is a lower bound of the offset; the largest one seen is kept (it is off by
    the fastest response's return leg, a fraction of a millisecond of real time).
    """

    offset: float | None = None
    first: tuple[float, float] | None = None
    last: tuple[float, float] | None = None
    """(trace s, service s) of the first and last stamp seen, to check the speeds match."""

    def observe(self, stamp: float | None, received: float) -> None:
        """A service timestamp `stamp` received at trace second `received`."""
        if stamp is None:
            return
        lower = stamp - received
        if self.offset is None or lower > self.offset:
            self.offset = lower
        self.first = self.first or (received, stamp)
        self.last = (received, stamp)

    def trace(self, stamp: float | None, default: float) -> float:
        """The trace second of service time `stamp` (`default` when unknown)."""
        if stamp is None or self.offset is None:
            return default
        return stamp - self.offset

    def speed_ratio(self) -> float | None:
        """Service seconds per trace second over the run (1.0 when the speeds match)."""
        if self.first is None or self.last is None or self.last[0] - self.first[0] < 1.0:
            return None
        return (self.last[1] - self.first[1]) / (self.last[0] - self.first[0])


@dataclass
class _Call:
    """A call's outcome with the service timestamp it is anchored at."""

    result: CallResult
    enqueued_at: float | None = None
    """The service's `enqueued_at` (service clock), matching `result.enqueued_s`."""


class Replayer:
    """One replay of a trace through one HTTP session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        calls: Sequence[Call],
        roster: Roster,
        options: ReplayOptions,
    ) -> None:
        if not options.speed > 0:
            raise ValueError("speed must be > 0")
        self.session = session
        self.calls = list(calls)
        self.roster = roster
        self.opt = options
        self.base = options.url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {options.key}"} if options.key else {}
        self.by_id = {options.id_prefix + c.id: _Call(CallResult(c)) for c in self.calls}
        self.queues: dict[str, QueueConfig] = {}
        self.stats = ClientStats()
        self.last_failure = ""
        """The latest request that got no answer: its error, for a set-up request's message."""
        self.tasks: set[asyncio.Task[None]] = set()
        self.t0 = 0.0
        self.created = 0
        self.connected: dict[str, set[str]] = {a.id: set() for a in roster.agents}
        self.offered: dict[str, set[str]] = {a.id: set() for a in roster.agents}
        self.unav = Unavailability(roster, options.seed)
        self.breaks = BreakBook(self.unav)
        self.on_shift: set[str] = set()
        self.leaving: set[str] = set()
        self.last_event_id = ""
        self.stream_ready = asyncio.Event()
        self.changed = asyncio.Event()
        self.clock = ServiceClock()

    # Time ---------------------------------------------------------------------------------------

    def trace_now(self) -> float:
        """Trace seconds since the start of the replay."""
        return (time.monotonic() - self.t0) * self.opt.speed

    def at(self, t: float, kind: str, action: Callable[[], Awaitable[None]]) -> None:
        """Run `action` at trace second `t` (at once when past); its lateness goes to `kind`."""

        async def later() -> None:
            due = self.t0 + t / self.opt.speed
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
            self.stats.lateness.setdefault(kind, []).append(max(0.0, time.monotonic() - due))
            await action()

        task = asyncio.create_task(later())
        self.tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.changed.set()
        if not task.cancelled() and task.exception() is not None:
            self.stats.errors[f"client {type(task.exception()).__name__}"] += 1

    # HTTP ---------------------------------------------------------------------------------------

    async def request(self, kind: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One timed request: its status (0 when it failed) and JSON answer."""
        start = time.perf_counter()
        try:
            async with self.session.request(
                method, self.base + path, json=body, headers=self.headers
            ) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            self.stats.errors[f"{kind} {type(error).__name__}"] += 1
            self.last_failure = (
                f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            )
            return 0, None
        self.stats.latencies.setdefault(kind, []).append(time.perf_counter() - start)
        if status == 409:
            self.stats.conflicts[kind] += 1
        elif status >= 300:
            self.stats.errors[f"{kind} {status}"] += 1
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None

    async def must(self, kind: str, method: str, path: str, body: Any = None) -> Any:
        """A set-up request that has to succeed."""
        status, answer = await self.request(kind, method, path, body)
        if status == 0:
            raise ReplayError(f"{method} {self.base}{path}: no answer ({self.last_failure})"[:500])
        if not 200 <= status < 300:
            raise ReplayError(f"{method} {self.base}{path}: {status} {answer!r}"[:500])
        return answer

    # The run ------------------------------------------------------------------------------------

    async def run(self) -> ReplayResult:
        """Set up, play, stop; every call's outcome."""
        wall = time.perf_counter()
        stream = await self.set_up()
        # Shifts that start with the trace log in before the clock starts, as in `simulate`
        # (logins before arrivals of the same second): not in a burst the first calls may beat.
        for agent in self.roster.agents:
            if any(start <= 0 for start, _ in agent.shifts):
                await self.login(agent.id)
        self.t0 = time.monotonic()
        for agent_id in self.on_shift:
            self.start_breaks(agent_id, 0.0)
        self.schedule()
        last = max((c.arrival_s for c in self.calls), default=0.0)
        stopped = await self.wait_done(last + self.opt.drain_s)
        stream.cancel()
        for task in list(self.tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
            await asyncio.gather(stream, *self.tasks, return_exceptions=True)
        for agent in self.roster.agents:  # leave the service as found: nobody logged in
            await self.set_state(agent.id, "logged_out")
        results = [c.result for c in self.by_id.values()]
        for r in results:
            if r.status == "pending" or (r.status == "answered" and r.ended_s is None):
                r.status = "unanswered"
        sim = SimResult(
            results,
            self.queues,
            self.roster,
            time.perf_counter() - wall,
            self.stats.requests,
            label=f"replay {self.opt.speed:g}x",
        )
        return ReplayResult(sim, self.stats, self.opt.speed, stopped, self.clock.speed_ratio())

    async def set_up(self) -> asyncio.Task[None]:
        """Read the queues, put the roster's agents, follow the events; the following task."""
        answer = await self.must("setup", "GET", "/v1/queues")
        self.queues = {
            q["name"]: QueueConfig.from_record({k: v for k, v in q.items() if k != "stats"})
            for q in answer["queues"]
        }
        check_queues(self.calls, self.queues)
        for agent in self.roster.agents:
            body = {"skills": agent.skills, "channels": agent.channels}
            await self.must("agent_put", "PUT", f"/v1/agents/{agent.id}", body)
        stream = asyncio.create_task(self.follow_events())
        ready = asyncio.create_task(self.stream_ready.wait())
        await asyncio.wait((stream, ready), return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if stream.done():
            stream.result()
            raise ReplayError("the event stream ended at once")
        return stream

    def schedule(self) -> None:
        """Every shift's login and logout after the start, and every arrival, at its time."""
        for agent in self.roster.agents:
            for start, end in agent.shifts:
                if start > 0:
                    self.at(start, "login", partial(self.login, agent.id))
                self.at(end, "logout", partial(self.logout, agent.id))
        for call in self.calls:
            self.at(call.arrival_s, "arrival", partial(self.arrive, call))

    def over(self) -> int:
        """Calls whose outcome is final."""
        return sum(
            1
            for c in self.by_id.values()
            if c.result.status in DONE
            and (c.result.status != "answered" or c.result.ended_s is not None)
        )

    async def wait_done(self, end_s: float) -> str:
        """Until every call is over or trace second `end_s`; the progress line meanwhile."""
        last_progress = 0.0
        try:
            while True:
                if self.created == len(self.calls) and self.over() == len(self.calls):
                    return "all calls over"
                if self.trace_now() >= end_s:
                    return "drain bound"
                if time.monotonic() - last_progress >= PROGRESS_EVERY_S:
                    last_progress = time.monotonic()
                    self.progress(end_s)
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), PROGRESS_EVERY_S)
        finally:
            self.progress(end_s, final=True)

    def progress(self, end_s: float, final: bool = False) -> None:
        """One line on the progress stream, rewritten in place."""
        out = self.opt.progress
        if out is None:
            return
        counts = Counter(c.result.status for c in self.by_id.values())
        last = max((c.arrival_s for c in self.calls), default=0.0)
        width = 20
        done = min(1.0, self.trace_now() / last) if last > 0 else 1.0
        bar = "#" * round(done * width)
        phase = "draining " if self.trace_now() > last else ""
        out.write(
            f"\r[{bar:<{width}}] {phase}t={self.trace_now():.0f}/{last:.0f} s  "
            f"created {self.created}/{len(self.calls)}  answered {counts['answered']}  "
            f"abandoned {counts['abandoned']}  over {self.over()}  "
            f"errors {sum(self.stats.errors.values())}  "
        )
        if final:
            out.write("\n")
        out.flush()

    # The platform -------------------------------------------------------------------------------

    def anchor(self, c: _Call, answer: Any, now_field: str) -> float | None:
        """Remember the service's `enqueued_at` of the call; the answer's `now_field` (the
        service's time of the request) calibrates the service clock, and is returned."""
        if not isinstance(answer, dict):
            return None
        if c.enqueued_at is None:
            c.enqueued_at = timestamp(answer.get("enqueued_at"))
        stamp = timestamp(answer.get(now_field))
        self.clock.observe(stamp, self.trace_now())
        return stamp

    def trace_time(self, c: _Call, service_at: float | None) -> float | None:
        """Trace second of a service timestamp of call `c`."""
        if service_at is None or c.enqueued_at is None or c.result.enqueued_s is None:
            return None
        return c.result.enqueued_s + (service_at - c.enqueued_at)

    async def arrive(self, call: Call) -> None:
        """Create the interaction; schedule the caller's hang-up."""
        ix_id = self.opt.id_prefix + call.id
        c = self.by_id[ix_id]
        body: dict[str, Any] = {"id": ix_id, "queue": call.queue}
        if call.priority is not None:
            body["priority"] = call.priority
        if call.credit_s is not None:
            body["credit_s"] = call.credit_s
        if call.skills:
            body["skills"] = dict(call.skills)
        c.result.enqueued_s = call.arrival_s
        status, answer = await self.request("create", "POST", "/v1/interactions", body)
        self.created += 1
        if status not in (200, 201) or not isinstance(answer, dict):
            c.result.status, c.result.ended_s = "blocked", call.arrival_s
            return
        enqueued_at = self.anchor(c, answer, "enqueued_at")
        if answer.get("status") == "blocked":
            c.result.status, c.result.ended_s = "blocked", call.arrival_s
            return
        c.result.queued = answer.get("status") == "queued"
        c.result.ewt_s = answer.get("ewt_s")
        if c.result.ewt_s is None:  # the 201 without ewt_s: the GET right after
            got_status, got = await self.request("get", "GET", f"/v1/interactions/{ix_id}")
            if got_status == 200 and isinstance(got, dict):
                c.result.ewt_s = got.get("ewt_s")
        if call.patience_s is not None:
            entered = self.clock.trace(enqueued_at, call.arrival_s)
            self.at(entered + call.patience_s, "abandon", partial(self.abandon, ix_id))

    async def accept(self, ix_id: str, agent_id: str) -> None:
        """The agent answers its offer (a withdrawn or expired one is a 409, ignored)."""
        c = self.by_id[ix_id]
        self.offered.setdefault(agent_id, set()).discard(ix_id)
        if c.result.status != "pending":
            return
        status, answer = await self.request(
            "accept", "POST", f"/v1/interactions/{ix_id}/accept", {"agent_id": agent_id}
        )
        if status != 200 or not isinstance(answer, dict):
            return
        answered_at = self.anchor(c, answer, "answered_at")
        c.result.answered_s = self.trace_time(c, answered_at)
        if c.result.answered_s is None:
            c.result.answered_s = self.trace_now()
        c.result.status, c.result.agent_id = "answered", agent_id
        self.connected.setdefault(agent_id, set()).add(ix_id)
        self.changed.set()
        done = self.clock.trace(answered_at, self.trace_now()) + c.result.call.handle_s
        self.at(done, "complete", partial(self.complete, ix_id, agent_id))

    async def complete(self, ix_id: str, agent_id: str) -> None:
        """The agent hangs up (wrap-up follows); it logs out now if its shift is over, or goes
        on the break that fell due during the call."""
        c = self.by_id[ix_id]
        call = c.result.call
        body: dict[str, Any] = {"agent_id": agent_id}
        wrap_up_s = self.unav.wrap_up_s(call, agent_id)
        if wrap_up_s is not None:
            body["wrap_up_s"] = wrap_up_s
        wrap = wrap_up_s if wrap_up_s is not None else self.queues[call.queue].wrap_up_s
        self.connected[agent_id].discard(ix_id)
        back = None
        if not self.connected[agent_id] and not self.offered[agent_id]:
            back = self.breaks.completed(agent_id, self.trace_now(), wrap)
        if back is not None:  # not ready before the call ends: no offer in between
            await self.set_state(agent_id, "not_ready", BREAK_REASON)
            token = self.breaks.token(agent_id)
            self.at(back, "break", partial(self.back_from_break, agent_id, token))
        status, answer = await self.request(
            "complete", "POST", f"/v1/interactions/{ix_id}/complete", body
        )
        ended_at = self.anchor(c, answer, "ended_at") if status == 200 else None
        ended = self.trace_time(c, ended_at)
        c.result.ended_s = ended if ended is not None else self.trace_now()
        c.result.free_s = c.result.ended_s + wrap
        self.changed.set()
        if agent_id in self.leaving and not self.connected[agent_id]:
            self.leaving.discard(agent_id)
            await self.set_state(agent_id, "logged_out")

    async def abandon(self, ix_id: str) -> None:
        """The caller hangs up if still waiting on the line."""
        c = self.by_id[ix_id]
        if c.result.status != "pending" or c.result.callback:
            return
        status, answer = await self.request("abandon", "DELETE", f"/v1/interactions/{ix_id}")
        if status != 200 or not isinstance(answer, dict) or answer.get("status") != "abandoned":
            return
        ended = self.trace_time(c, self.anchor(c, answer, "ended_at"))
        c.result.status = "abandoned"
        c.result.ended_s = ended if ended is not None else self.trace_now()
        self.changed.set()

    async def take_callback(self, ix_id: str) -> None:
        """The caller accepts the callback offered."""
        c = self.by_id[ix_id]
        if c.result.status != "pending":
            return
        status, _ = await self.request("callback", "POST", f"/v1/interactions/{ix_id}/callback", {})
        if status == 200:
            c.result.callback = True

    # The agents ---------------------------------------------------------------------------------

    async def set_state(self, agent_id: str, state: str, reason: str | None = None) -> int:
        """POST the agent's state; the status."""
        body: dict[str, Any] = {"state": state}
        if reason is not None:
            body["reason"] = reason
        status, _ = await self.request("agent_state", "POST", f"/v1/agents/{agent_id}/state", body)
        return status

    async def login(self, agent_id: str) -> None:
        """Start of a shift (its break clock starts), or back after a missed offer."""
        if agent_id not in self.on_shift and self.t0:  # before the clock starts: `run` does
            self.start_breaks(agent_id, self.trace_now())
        self.on_shift.add(agent_id)
        self.leaving.discard(agent_id)
        await self.set_state(agent_id, "available")

    def start_breaks(self, agent_id: str, t: float) -> None:
        """Start the agent's break clock at trace second `t`."""
        due = self.breaks.start(agent_id, t)
        if due is not None:
            self.at(due[0], "break", partial(self.take_break, agent_id, due[1]))

    async def take_break(self, agent_id: str, token: int) -> None:
        """A break falls due: not ready now, or owed until the agent's call ends."""
        busy = bool(self.connected[agent_id] or self.offered[agent_id])
        back = self.breaks.due(agent_id, token, self.trace_now(), busy)
        if back is not None:
            await self.set_state(agent_id, "not_ready", BREAK_REASON)
            self.at(back, "break", partial(self.back_from_break, agent_id, token))

    async def back_from_break(self, agent_id: str, token: int) -> None:
        """The break is over: available again (unless the shift ended), and the next one due."""
        if self.breaks.current(agent_id, token):
            await self.set_state(agent_id, "available")
            self.start_breaks(agent_id, self.trace_now())

    async def logout(self, agent_id: str) -> None:
        """End of a shift: out at once, or not ready until the last call ends."""
        self.on_shift.discard(agent_id)
        self.breaks.stop(agent_id)
        busy = bool(self.connected[agent_id])
        if busy or await self.set_state(agent_id, "logged_out") == 409:  # 409: ringing, say
            self.leaving.add(agent_id)
            await self.set_state(agent_id, "not_ready", SHIFT_END_REASON)

    # The event stream ---------------------------------------------------------------------------

    async def follow_events(self) -> None:
        """Read the SSE stream, reconnecting with Last-Event-ID whenever it ends."""
        url = f"{self.base}/v1/events?types={','.join(EVENT_TYPES)}"
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        while True:
            headers = dict(self.headers)
            if self.last_event_id:
                headers["Last-Event-ID"] = self.last_event_id
            try:
                async with self.session.get(url, headers=headers, timeout=timeout) as response:
                    if response.status != 200:
                        raise ReplayError(f"GET /v1/events: {response.status}")
                    self.stream_ready.set()
                    await self.read_events(response)
            except (aiohttp.ClientError, TimeoutError) as error:
                self.stats.errors[f"events {type(error).__name__}"] += 1
                await asyncio.sleep(0.05)

    async def read_events(self, response: aiohttp.ClientResponse) -> None:
        """Parse SSE frames and react to each event."""
        kind, data = "", b""
        async for line in response.content:
            if line in (b"\n", b"\r\n"):
                if kind and data:
                    self.on_event(kind, json.loads(data))
                kind, data = "", b""
            elif line.startswith(b"event:"):
                kind = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data = line[5:].strip()
            elif line.startswith(b"id:"):
                self.last_event_id = line[3:].strip().decode()

    def on_event(self, kind: str, event: dict[str, Any]) -> None:
        """React to one event of the stream (others' interactions are ignored)."""
        ix_id = event.get("interaction_id")
        c = self.by_id.get(ix_id) if isinstance(ix_id, str) else None
        now = self.trace_now()
        if kind == "interaction.offered" and c is not None and isinstance(ix_id, str):
            agent_id = str(event.get("agent_id"))
            self.offered.setdefault(agent_id, set()).add(ix_id)
            offered = self.clock.trace(timestamp(event.get("at")), now)
            self.at(
                offered + self.opt.ring_delay_s, "accept", partial(self.accept, ix_id, agent_id)
            )
        elif kind == "interaction.timed_out" and c is not None:
            if c.result.status == "pending":
                ended = self.trace_time(c, timestamp(event.get("at")))
                c.result.status = "timed_out"
                c.result.ended_s = ended if ended is not None else now
                self.changed.set()
        elif kind == "callback.offered" and c is not None and isinstance(ix_id, str):
            c.result.callback_offered = True
            if c.result.call.callback_accept:
                self.at(now, "callback", partial(self.take_callback, ix_id))
        elif kind == "agent.state_changed" and event.get("reason") == "no_answer":
            who = event.get("agent_id")
            if isinstance(who, str) and who in self.on_shift:
                self.at(now, "login", partial(self.login, who))


async def replay(calls: Sequence[Call], roster: Roster, options: ReplayOptions) -> ReplayResult:
    """Play `calls` and `roster` against the service at `options.url`."""
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        return await Replayer(session, calls, roster, options).run()


def replay_report(result: ReplayResult) -> str:
    """The per-queue table of `simulate`, the run's cost, and the client's latencies and errors."""
    sim = result.sim
    head = run_title(sim)
    rows = [row(f) for f in run_figures(sim)]
    rate = sim.engine_calls / sim.wall_s if sim.wall_s else 0.0
    cost = (
        f"replayed in {sim.wall_s:.1f} s ({sim.engine_calls} requests, {rate:.0f}/s); "
        f"stopped: {result.stopped}"
    )
    lines = [head, table(COLUMNS, rows), cost]
    ratio = result.clock_ratio
    if ratio is not None and abs(ratio - 1) > CLOCK_RATIO_TOLERANCE:
        lines.append(
            f"WARNING: the service's clock ran at {ratio * result.speed:.3g}x, not "
            f"{result.speed:g}x: start it with --clock-speed {result.speed:g}"
        )
    late = result.stats.lateness_report(result.speed)
    ewt = ewt_report(ewt_figures(sim))
    return "\n".join([*lines, ewt, "", result.stats.report(), "", late])


def replay_html(
    result: ReplayResult, parameters: Mapping[str, object], charts: Mapping[str, str]
) -> str:
    """The HTML page of `simulate` (parameters, tables, charts) with the client's latencies and
    lateness."""
    extra = [
        ("Client-side latencies", result.stats.report()),
        ("Lateness against the schedule", result.stats.lateness_report(result.speed)),
    ]
    return html_page("Replay report", [result.sim], parameters, charts, extra)
