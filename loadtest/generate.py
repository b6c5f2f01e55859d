"""Synthetic traces (Poisson arrivals by an hourly profile) and Erlang C sized rosters."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from loadtest.progress import SILENT, Progress
from loadtest.trace import Call, Roster, RosterAgent, merge_shifts
from router.domain.erlang import agents_required
from router.domain.models import QueueConfig

HOUR_S = 3600.0


@dataclass(frozen=True)
class TraceSpec:
    """What to generate: hours, calls per hour, queue mix, handle and patience distributions."""

    hours: int
    rates: tuple[float, ...]
    """Calls per hour for hour 0, 1, ...; cycled when shorter than `hours`."""
    mix: Mapping[str, float]
    """Queue name to weight (normalized)."""
    aht_s: float = 180.0
    handle_cv: float = 1.0
    """Coefficient of variation of the log-normal handle time."""
    handle_dist: str = "lognormal"
    """`lognormal` or `exponential` (mean `aht_s`)."""
    patience_s: float | None = None
    """Mean of the exponential patience; None: nobody abandons."""
    wrap_up_s: float | None = None
    aht_by_queue: Mapping[str, float] = field(default_factory=dict)

    def rate(self, hour: int) -> float:
        """Calls per hour in hour `hour`."""
        return self.rates[hour % len(self.rates)]

    def share(self, queue: str) -> float:
        """The queue's share of the arrivals."""
        return self.mix[queue] / sum(self.mix.values())

    def aht(self, queue: str) -> float:
        """Mean handle time of the queue."""
        return self.aht_by_queue.get(queue, self.aht_s)


def parse_rates(text: str) -> tuple[float, ...]:
    """`120,150,200` calls per hour (or one number for a flat profile)."""
    rates = tuple(float(x) for x in text.split(",") if x.strip())
    if not rates or any(not math.isfinite(r) or r < 0 for r in rates):
        raise ValueError(f"rate profile must be numbers >= 0, not {text!r}")
    return rates


def parse_mix(text: str) -> dict[str, float]:
    """`support=0.7,billing=0.3` (a bare name weighs 1)."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.strip().partition("=")
        if name:
            mix[name] = float(weight) if weight else 1.0
    if not mix or any(not math.isfinite(w) or w < 0 for w in mix.values()) or not sum(mix.values()):
        raise ValueError(f"queue mix must be name=weight,..., not {text!r}")
    return mix


def handle_time(spec: TraceSpec, queue: str, rng: random.Random) -> float:
    """One handle time: log-normal with the queue's mean and `handle_cv`, or exponential."""
    mean = spec.aht(queue)
    if spec.handle_dist == "exponential":
        return rng.expovariate(1 / mean)
    sigma2 = math.log1p(spec.handle_cv**2)
    return rng.lognormvariate(math.log(mean) - sigma2 / 2, math.sqrt(sigma2))


def generate_trace(spec: TraceSpec, seed: int, progress: Progress = SILENT) -> list[Call]:
    """Calls of a piecewise-constant Poisson process per queue, sorted by arrival."""
    rng = random.Random(seed)
    raw: list[tuple[float, str]] = []
    progress.start("arrivals", spec.hours * len(spec.mix), "queue-hours")
    for queue in sorted(spec.mix):
        for hour in progress.track(range(spec.hours)):
            rate = spec.rate(hour) * spec.share(queue) / HOUR_S
            if rate <= 0:
                continue
            t = hour * HOUR_S + rng.expovariate(rate)
            while t < (hour + 1) * HOUR_S:
                raw.append((t, queue))
                t += rng.expovariate(rate)
    raw.sort()
    calls = []
    width = max(6, len(str(len(raw))))
    progress.start("handle times and patience", len(raw))
    for n, (t, queue) in enumerate(progress.track(raw), start=1):
        patience = None if spec.patience_s is None else rng.expovariate(1 / spec.patience_s)
        calls.append(
            Call(
                id=f"c{n:0{width}d}",
                arrival_s=round(t, 3),
                queue=queue,
                handle_s=round(max(0.001, handle_time(spec, queue, rng)), 3),
                patience_s=None if patience is None else round(patience, 3),
                wrap_up_s=spec.wrap_up_s,
            )
        )
    return calls


def staircase(
    needed: Sequence[int], hour_s: float = HOUR_S
) -> list[tuple[tuple[float, float], ...]]:
    """Shifts of agents so that `needed[h]` are on in hour h: agent i works the hours i < needed."""
    agents = []
    for i in range(max(needed, default=0)):
        hours = [(h * hour_s, (h + 1) * hour_s) for h, n in enumerate(needed) if i < n]
        agents.append(merge_shifts(hours))
    return agents


def size_roster(
    spec: TraceSpec,
    threshold_s: Mapping[str, float],
    target: Mapping[str, float],
    skills: Mapping[str, Mapping[str, int]],
    wrap_up_s: Mapping[str, float],
    channels: Mapping[str, str] | None = None,
) -> Roster:
    """Dedicated agents per queue, as many per hour as Erlang C needs for the queue's target."""
    agents = []
    for queue in sorted(spec.mix):
        busy_s = spec.aht(queue) + (
            spec.wrap_up_s if spec.wrap_up_s is not None else wrap_up_s.get(queue, 0.0)
        )
        needed = [
            agents_required(
                spec.rate(h) * spec.share(queue) / HOUR_S,
                busy_s,
                threshold_s.get(queue, 20.0),
                target.get(queue, 0.8),
            )
            for h in range(spec.hours)
        ]
        for i, shifts in enumerate(staircase(needed), start=1):
            agent_skills = dict(skills.get(queue) or {queue: 3})
            channel = (channels or {}).get(queue, "voice")
            agents.append(RosterAgent(f"{queue}-{i:03d}", agent_skills, {channel: 1}, shifts))
    return Roster(tuple(agents))


def config_roster(
    spec: TraceSpec,
    queues: Sequence[QueueConfig] = (),
    threshold_s: float = 20.0,
    target: float = 0.8,
) -> Roster:
    """`size_roster` for the configured `queues`: their SLA, skills (level 3 at least), wrap-up
    and channel; queues of the mix not configured get `threshold_s` and `target`."""
    by_name = {q.name: q for q in queues}
    return size_roster(
        spec,
        {n: by_name[n].sla.threshold_s if n in by_name else threshold_s for n in spec.mix},
        {n: by_name[n].sla.target if n in by_name else target for n in spec.mix},
        {n: {s: max(lv, 3) for s, lv in q.skills.items()} for n, q in by_name.items()},
        {n: q.wrap_up_s for n, q in by_name.items()},
        {n: q.channel.value for n, q in by_name.items()},
    )
