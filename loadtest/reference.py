"""Reference check: `simulate` against Erlang C, a FIFO M/M/c(+M) recursion and `ciw`.

`python -m loadtest reference [--calls N] [--seed S]` generates a single-queue FIFO trace
(exponential handle times, no ring delay, no wrap-up), simulates it through the engine, and
prints its service level and ASA next to the independent models.
"""

from __future__ import annotations

import heapq
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from loadtest.generate import TraceSpec, generate_trace
from loadtest.simulate import CallResult, SimResult, simulate_on
from loadtest.trace import Call, Roster, RosterAgent
from router.domain.erlang import asa, service_level
from router.domain.models import QueueConfig, Sla
from router.settings import ServiceSettings
from router.store.server import RedisServer

QUEUE = "support"
AHT_S = 180.0
THRESHOLD_S = 20.0
RATE_PER_H = 30.0
AGENTS = 3
"""1.5 Erlangs on 3 agents: Erlang C service level 80.0 % within 20 s, ASA 28.4 s. A small,
lightly loaded system mixes fast, so a trace of a few thousand calls estimates it well (over
seeds, the FIFO model's standard deviation at 10,000 calls is about 0.9 points and 10 % of ASA)."""
PATIENCE_S = 120.0
"""Mean exponential patience of the abandons variant."""


@dataclass(frozen=True)
class Figures:
    """Service level (answered within T over answered + abandoned after T) and ASA."""

    service_level: float
    asa_s: float
    abandoned: int = 0


def reference_trace(calls: int, seed: int, patience_s: float | None = None) -> list[Call]:
    """A single-queue trace of about `calls` calls at RATE_PER_H, exponential handle times."""
    hours = max(1, math.ceil(1.2 * calls / RATE_PER_H))
    spec = TraceSpec(
        hours=hours,
        rates=(RATE_PER_H,),
        mix={QUEUE: 1.0},
        aht_s=AHT_S,
        handle_dist="exponential",
        patience_s=patience_s,
    )
    return generate_trace(spec, seed)[:calls]


def reference_roster(agents: int, until_s: float) -> Roster:
    """`agents` agents on shift from 0 to `until_s`."""
    return Roster(
        tuple(
            RosterAgent(f"a{i:03d}", {QUEUE: 1}, {"voice": 1}, ((0.0, until_s),))
            for i in range(agents)
        )
    )


def figures_of(waits: Sequence[tuple[float, bool]], threshold_s: float | None = None) -> Figures:
    """Figures of (wait, answered) pairs, `abandons_excluded` formula (§6)."""
    threshold_s = THRESHOLD_S if threshold_s is None else threshold_s
    answered = [w for w, ok in waits if ok]
    abandoned_late = sum(1 for w, ok in waits if not ok and w > threshold_s + 5e-4)
    within = sum(1 for w in answered if w <= threshold_s + 5e-4)
    return Figures(
        within / (len(answered) + abandoned_late) if answered else 0.0,
        sum(answered) / len(answered) if answered else 0.0,
        sum(1 for _, ok in waits if not ok),
    )


def erlang_figures(agents: int = AGENTS) -> Figures:
    """Erlang C (M/M/c, no abandons) at the reference load."""
    traffic = RATE_PER_H / 3600 * AHT_S
    return Figures(service_level(traffic, agents, AHT_S, THRESHOLD_S), asa(traffic, agents, AHT_S))


def fifo_figures(calls: Sequence[Call], agents: int = AGENTS) -> Figures:
    """The exact FIFO M/M/c(+M) recursion on the trace: who abandons never takes an agent."""
    free = [0.0] * agents
    waits = []
    for call in sorted(calls, key=lambda c: c.arrival_s):
        start = max(call.arrival_s, free[0])
        wait = start - call.arrival_s
        if call.patience_s is not None and call.patience_s < wait:
            waits.append((call.patience_s, False))
            continue
        heapq.heapreplace(free, start + call.handle_s)
        waits.append((wait, True))
    return figures_of(waits)


def ciw_figures(calls: Sequence[Call], agents: int = AGENTS) -> Figures:
    """`ciw` on the same trace (arrivals, handle times and patience of each call)."""
    import ciw  # type: ignore[import-untyped]  # a dev dependency, for this check only

    ordered = sorted(calls, key=lambda c: c.arrival_s)

    class PerCall(ciw.dists.Distribution):  # type: ignore[misc]
        """The value of the call the individual is (ids count arrivals from 1)."""

        def __init__(self, values: Sequence[float]) -> None:
            self.values = list(values)

        def sample(self, t: float | None = None, ind: Any = None) -> float:
            """The individual's own value."""
            return float(self.values[ind.id_number - 1])

    arrivals = [c.arrival_s for c in ordered]
    gaps = [b - a for a, b in zip([0.0, *arrivals], arrivals, strict=False)]
    params: dict[str, Any] = {
        "arrival_distributions": [ciw.dists.Sequential([*gaps, 10**12])],
        "service_distributions": [PerCall([c.handle_s for c in ordered])],
        "number_of_servers": [agents],
    }
    if any(c.patience_s is not None for c in ordered):
        patience = [c.patience_s if c.patience_s is not None else 10**12 for c in ordered]
        params["reneging_time_distributions"] = [PerCall(patience)]
    ciw.seed(0)
    sim = ciw.Simulation(ciw.create_network(**params))
    sim.simulate_until_max_customers(len(ordered), method="Finish")
    waits = []
    for rec in sim.get_all_records():
        if rec.record_type == "service":
            waits.append((rec.waiting_time, True))
        elif rec.record_type == "renege":
            waits.append((rec.exit_date - rec.arrival_date, False))
    return figures_of(waits)


def fifo_spread(calls: int, seeds: int = 100) -> tuple[float, float, float, float]:
    """Mean and standard deviation of the FIFO recursion's SL and ASA over seeds (no abandons)."""
    runs = [fifo_figures(reference_trace(calls, 10_000 + s)) for s in range(seeds)]
    sl = [r.service_level for r in runs]
    waits = [r.asa_s for r in runs]
    return (
        statistics.mean(sl),
        statistics.stdev(sl),
        statistics.mean(waits),
        statistics.stdev(waits),
    )


def sim_figures(results: Sequence[CallResult]) -> Figures:
    """Figures of a simulation's calls."""
    return figures_of([(r.wait_s, r.status == "answered") for r in results if r.wait_s is not None])


async def engine_figures(
    redis: Redis, settings: ServiceSettings, calls: Sequence[Call], agents: int = AGENTS
) -> tuple[Figures, SimResult]:
    """The trace simulated through the engine on the reference queue."""
    queue = QueueConfig(
        name=QUEUE, skills={QUEUE: 1}, sla=Sla(THRESHOLD_S, 0.8), offer_timeout_s=60.0
    )
    until = max((c.arrival_s for c in calls), default=0.0) + 10 * 86_400.0
    result = await simulate_on(redis, settings, calls, reference_roster(agents, until), [queue])
    return sim_figures(result.calls), result


def compare(name: str, got: Figures, want: Figures) -> str:
    """One line: a model's figures and how far the engine is from them."""
    d_sl = 100 * (got.service_level - want.service_level)
    d_asa = 100 * (got.asa_s / want.asa_s - 1) if want.asa_s else 0.0
    return (
        f"{name:<22} SL {100 * want.service_level:6.2f}%  ASA {want.asa_s:7.2f} s  "
        f"abandoned {want.abandoned:5d}   engine - model: SL {d_sl:+.2f} pt, ASA {d_asa:+.1f} %"
    )


async def run_reference(calls: int, seed: int) -> str:
    """Both variants on a private redis-server; the report text."""
    server = RedisServer()
    server.start()
    redis = Redis.from_url(server.url)
    lines = []
    try:
        for n, patience in enumerate((None, PATIENCE_S)):
            trace = reference_trace(calls, seed, patience)
            settings = ServiceSettings(namespace=f"ref{n}")
            got, result = await engine_figures(redis, settings, trace)
            kind = "no abandons" if patience is None else f"patience exp({patience:g} s)"
            lines.append(
                f"{len(trace)} calls, {AGENTS} agents, {RATE_PER_H:g}/h, AHT {AHT_S:g} s, "
                f"T {THRESHOLD_S:g} s, {kind}, seed {seed}: simulated in {result.wall_s:.1f} s"
            )
            lines.append(compare("engine (simulate)", got, got))
            if patience is None:
                lines.append(compare("Erlang C", got, erlang_figures()))
                sl, sl_sd, wait, wait_sd = fifo_spread(len(trace))
                lines.append(
                    f"{'  sampling spread':<22} FIFO recursion over 100 other seeds of "
                    f"{len(trace)} calls: SL {100 * sl:.2f}% sd {100 * sl_sd:.2f} pt, "
                    f"ASA {wait:.2f} s sd {wait_sd:.2f} s ({100 * wait_sd / wait:.1f} %)"
                )
            lines.append(compare("FIFO recursion (trace)", got, fifo_figures(trace)))
            try:
                lines.append(compare("ciw (same trace)", got, ciw_figures(trace)))
            except ImportError:
                lines.append("ciw: not installed (pip install ciw)")
    finally:
        await redis.aclose()
        server.stop()
    return "\n".join(lines)
