"""Business metrics (§6): read from the store, identical whichever router renders them.

Counters and histograms are kept by the Lua scripts (router/lua/lib/metrics.lua); the
time-dependent gauges come from the one shared snapshot (`metrics_snapshot`), and the in-progress
agent time is computed at the snapshot's time, so two routers scraped together export the same
values. A scrape reads everything asynchronously first, then renders.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest

from router.domain.models import QueueConfig, Sla
from router.domain.stats import BUCKETS, service_levels, staffing
from router.store.codec import text
from router.store.engine import Engine
from router.store.records import MetricsSnapshot

SNAPSHOT_MAX_AGE_S = 5.0
"""How old the shared snapshot may be before a scrape recomputes it."""

COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "acd_interactions_arrived_total": ("Interactions that arrived (blocked included).", ("queue",)),
    "acd_interactions_answered_total": ("Interactions answered (first accept).", ("queue",)),
    "acd_interactions_answered_within_sla_total": (
        "Interactions answered within the queue's SLA threshold.",
        ("queue",),
    ),
    "acd_interactions_abandoned_total": ("Callers who hung up while waiting.", ("queue",)),
    "acd_interactions_abandoned_within_sla_total": (
        "Callers who hung up within the SLA threshold.",
        ("queue",),
    ),
    "acd_interactions_blocked_total": ("Arrivals refused by max_waiting.", ("queue",)),
    "acd_interactions_timed_out_total": ("Interactions that waited max_wait_s.", ("queue",)),
    "acd_interactions_transferred_total": ("Interactions transferred out.", ("queue",)),
    "acd_callbacks_offered_total": ("Callbacks offered to callers.", ("queue",)),
    "acd_callbacks_accepted_total": ("Callbacks accepted by callers.", ("queue",)),
    "acd_callbacks_cancelled_total": ("Waiting callbacks cancelled.", ("queue",)),
    "acd_callbacks_failed_total": ("Callbacks failed after max_attempts.", ("queue",)),
    "acd_offers_total": ("Offers to agents by result.", ("queue", "result")),
}
HISTOGRAMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "acd_wait_seconds": ("Waits until answered or abandoned.", ("queue", "outcome")),
    "acd_handle_seconds": ("Handle time, connected to the end of wrap-up.", ("queue",)),
    "acd_ewt_error_seconds": ("|EWT at arrival - real wait| of answered.", ("queue",)),
}
NOT_BUCKETS = ("sum_ms", "sum", "count")
"""Fields of a histogram's series in `m:h` that are no bucket (`sum` and `count`: written by
earlier versions)."""
ACTIVITIES = ("idle", "offered", "busy", "wrap_up")
OFFER_RESULTS = ("accepted", "rejected", "no_answer", "withdrawn")
WAIT_OUTCOMES = ("answered", "abandoned")
_Gauge = Literal[
    "waiting", "callbacks_waiting", "oldest_wait_s", "ewt_s", "agents_available", "agents_staffed"
]
"""The queue figures (router/store/records.py QueueFigures) exported as gauges as they are."""


@dataclass(frozen=True, eq=False)  # a collector is registered by identity
class StoreMetrics:
    """Everything one scrape needs, read from the store."""

    counters: dict[str, float]
    histograms: dict[str, float]
    agents: dict[str, float]
    snapshot: MetricsSnapshot
    queues: dict[str, QueueConfig]

    @classmethod
    async def read(cls, engine: Engine, now: float) -> StoreMetrics:
        """Read the counters and the shared snapshot (recomputed by whichever router is first)."""
        snapshot = await engine.metrics_snapshot(now, SNAPSHOT_MAX_AGE_S)
        keys = engine.keys
        # Not a MULTI: at maxmemory Redis refuses every command queued in one, and the metrics
        # must answer then. A scrape may see one script's counts before another's; the next
        # scrape has both.
        async with engine.redis.pipeline(transaction=False) as pipe:
            for key in (keys.metric_counters, keys.metric_histograms, keys.agents_by_state):
                pipe.hgetall(key)
            replies = await pipe.execute()
        counters, histograms, agents = (
            {text(k): float(v) for k, v in reply.items()} for reply in replies
        )
        queues = {q.name: q for q in await engine.list_queues()}
        return cls(counters, histograms, agents, snapshot, queues)

    def collect(self) -> Iterator[Metric]:
        """The metric families of §6."""
        yield from self._counters()
        yield from self._histograms()
        yield self._agent_time()
        yield self._agents()
        yield from self._queue_gauges()

    def _zero_series(self, labels: tuple[str, ...]) -> list[tuple[str, ...]]:
        """Every series a family has from the start, so that rate() sees its first increase."""
        series: list[tuple[str, ...]] = [(q,) for q in sorted(self.queues)]
        for extra, values in (("result", OFFER_RESULTS), ("outcome", WAIT_OUTCOMES)):
            if extra in labels:
                series = [(*s, v) for s in series for v in values]
        return series

    def _counters(self) -> Iterator[Metric]:
        series = _split(self.counters)
        for name, (doc, labels) in COUNTERS.items():
            family = CounterMetricFamily(name, doc, labels=labels)
            values = dict.fromkeys(self._zero_series(labels), 0.0) | series.get(name, {})
            for label_values, value in sorted(values.items()):
                family.add_metric(list(label_values), value)
            yield family

    def _histograms(self) -> Iterator[Metric]:
        series: dict[str, dict[tuple[str, ...], dict[str, float]]] = defaultdict(
            lambda: defaultdict(dict)
        )
        for field, value in self.histograms.items():
            name, *values, part = field.split("|")
            series[name][tuple(values)][part] = value
        for name, (doc, label_names) in HISTOGRAMS.items():
            family = HistogramMetricFamily(name, doc, labels=label_names)
            known: dict[tuple[str, ...], dict[str, float]] = {
                labels: {} for labels in self._zero_series(label_names)
            }
            for labels, parts in sorted((known | series.get(name, {})).items()):
                # Bucket counts are not cumulative; their sum is the count (a `count` field
                # written by earlier versions is the same sum). The sum is in whole ms, plus
                # the seconds of a `sum` field written by earlier versions.
                buckets = {le: n for le, n in parts.items() if le not in NOT_BUCKETS}
                counts = {float(le): n for le, n in buckets.items() if le != "+Inf"}
                bounds = set(BUCKETS[name]) | set(counts)
                queue = self.queues.get(labels[0])
                if name == "acd_wait_seconds" and queue is not None:
                    bounds.add(queue.sla.threshold_s)
                cumulative, total = [], 0.0
                for bound in sorted(bounds):
                    total += counts.get(bound, 0.0)
                    cumulative.append((repr(float(bound)), total))
                cumulative.append(("+Inf", sum(buckets.values(), 0.0)))
                observed = parts.get("sum", 0.0) + parts.get("sum_ms", 0.0) / 1000
                family.add_metric(list(labels), cumulative, observed)
            yield family

    def _agent_time(self) -> Metric:
        family = CounterMetricFamily(
            "acd_agent_time_seconds_total",
            "Agent-seconds by activity (idle only while available).",
            labels=("activity",),
        )
        # Computed with the snapshot, at its time (lua/lib/metrics.lua, M.agent_seconds).
        seconds = self.snapshot["agent_seconds"]
        for activity in ACTIVITIES:
            family.add_metric([activity], float(seconds.get(activity, 0.0)))
        return family

    def _agents(self) -> Metric:
        family = GaugeMetricFamily(
            "acd_agents", "Agents by state and activity.", labels=("state", "activity")
        )
        for field, value in sorted(self.agents.items()):
            if value:
                family.add_metric(field.split("|"), value)
        return family

    def _queue_gauges(self) -> Iterable[Metric]:
        gauges: dict[str, tuple[str, _Gauge]] = {
            "acd_queue_waiting": ("Interactions on the line (queued or offered).", "waiting"),
            "acd_queue_callbacks_waiting": ("Callbacks waiting off the line.", "callbacks_waiting"),
            "acd_queue_oldest_wait_seconds": ("Oldest wait on the line.", "oldest_wait_s"),
            "acd_queue_ewt_seconds": ("Estimated wait of an arrival now.", "ewt_s"),
            "acd_queue_agents_available": (
                "Agents who could take an offer now.",
                "agents_available",
            ),
            "acd_queue_agents_staffed": ("Logged-in agents who serve the queue.", "agents_staffed"),
        }
        families = {
            name: GaugeMetricFamily(name, doc, labels=("queue",))
            for name, (doc, _) in gauges.items()
        }
        required = GaugeMetricFamily(
            "acd_queue_agents_required",
            "Erlang C: agents needed for the SLA at the last 15 minutes' load.",
            labels=("queue",),
        )
        level = GaugeMetricFamily(
            "acd_queue_service_level_ratio",
            "Service level over the last 15 minutes, per formula (0..1).",
            labels=("queue", "formula"),
        )
        target = GaugeMetricFamily(
            "acd_queue_sla_target_ratio",
            "The queue's service-level target (0..1).",
            labels=("queue",),
        )
        for name, figures in sorted(self.snapshot["queues"].items()):
            for metric, (_, field) in gauges.items():
                families[metric].add_metric([name], figures[field])
            window = dict(figures.get("window") or {})
            queue = self.queues.get(name)
            sla = queue.sla if queue else Sla()
            required.add_metric([name], staffing(window, figures.get("aht_s"), sla))
            for formula, value in service_levels(window).items():
                if value is not None:
                    level.add_metric([name, formula], value)
            target.add_metric([name], sla.target)
        return [*families.values(), required, level, target, self._queue_info()]

    def _queue_info(self) -> Metric:
        family = InfoMetricFamily(
            "acd_queue", "A configured queue and its channel, for joins.", labels=("queue",)
        )
        for name, queue in sorted(self.queues.items()):
            family.add_metric([name], {"channel": queue.channel.value})
        return family


def _split(flat: dict[str, float]) -> dict[str, dict[tuple[str, ...], float]]:
    series: dict[str, dict[tuple[str, ...], float]] = defaultdict(dict)
    for field, value in flat.items():
        name, *labels = field.split("|")
        series[name][tuple(labels)] = value
    return series


async def render(engine: Engine, now: float) -> bytes:
    """The business metrics in the Prometheus text format."""
    metrics = await StoreMetrics.read(engine, now)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    return generate_latest(registry)
