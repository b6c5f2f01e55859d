"""Per-process Prometheus instruments (SPEC §6): each router process exports its own.

All live in prometheus_client's default REGISTRY. Labels never hold a customer identifier or
interaction data: routes are path templates, methods and statuses are bounded sets. No
`_created` series: they double the series count and no query of ours reads them.
"""

from __future__ import annotations

import os
import time
from collections import deque
from typing import ParamSpec, Protocol, TypeVar

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus-client

EVENT_DELIVERIES = Counter(
    "acd_event_deliveries_total",
    "Events written to a sink: sse (a client's stream) or webhook:<index>; result delivered, "
    "failed (one per failed webhook attempt), skipped (an event that could not be rendered) or "
    "lost (a webhook's event trimmed from the log before it was delivered).",
    ["sink", "result"],
)
"""Event deliveries by sink and result; `skipped`: an event that could not be rendered; `lost`: a
webhook's event trimmed from the log before it was delivered."""

EVENT_STREAMS = Gauge(
    "acd_event_streams", "Event streams (SSE) open on this process.", multiprocess_mode="livesum"
)
"""Open event streams."""

EVENT_STREAMS_DROPPED = Counter(
    "acd_event_streams_dropped_total",
    "Event streams ended because their client fell too far behind (it resumes by Last-Event-ID).",
)
"""Streams dropped for slow clients."""

DECISION_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
)
"""Seconds: 100 µs to 100 ms, where a routing decision's store round trip lies."""

ROUTING_DECISION = Histogram(
    "acd_routing_decision_seconds",
    "Seconds a state change that may route (create, accept, reject, complete, transfer, "
    "abandon, agent state, agent put) took from this process, store round trip included.",
    buckets=DECISION_BUCKETS,
)
"""Latency of engine calls whose script may run matching."""

HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Seconds: 0.5 ms to 5 s."""

HTTP_REQUESTS = Counter(
    "acd_http_requests_total",
    "HTTP requests answered, by route template (or unmatched), method and status; event "
    "streams are counted when they end.",
    ["route", "method", "status"],
)
"""HTTP requests by route template, method and status."""

HTTP_DURATION = Histogram(
    "acd_http_request_duration_seconds",
    "Seconds from a request's arrival to its answer, by route template; long-lived event "
    "streams are not observed.",
    ["route"],
    buckets=HTTP_BUCKETS,
)
"""HTTP request latency by route template (streams excluded)."""

TIMER_LAG = Gauge(
    "acd_timer_lag_seconds",
    "How late the due timers applied by this process's ticks were, the worst of the last 15 s.",
    multiprocess_mode="livemax",
)
"""Lag of the ticks' timers (observe_tick)."""

TIMER_LAG_HOLD_S = 15.0
"""How long the timer lag gauge holds the worst lag (the shipped scrape interval): a tick runs
about every 50 ms, and a late one must still be there when the next scrape comes."""

STORE_UP = Gauge(
    "acd_store_up",
    "1 while this process's store calls succeed, 0 while the store does not answer (timed out "
    "or unreachable) since the last call.",
    multiprocess_mode="livemin",
)
"""Whether the store answered this process's last call."""

STORE_REFUSALS = Counter(
    "acd_store_refusals_total",
    "Store calls that Redis refused before running them, so that nothing changed, by reason: "
    "out_of_memory (maxmemory reached), cannot_persist (MISCONF: it cannot write to disk), "
    "no_replicas (fewer than min-replicas-to-write), busy (another script runs too long), "
    "read_only (a redis:// store made a replica), moving (its cluster slot "
    "moves to another node), cluster_down (the cluster has a slot without a primary).",
    ["reason"],
)
"""Calls the store refused, by reason (router/store/engine.py, REFUSALS)."""

STORE_UNCONFIRMED = Counter(
    "acd_store_unconfirmed_total",
    "Changes under durability replicated answered 503 with their outcome unknown, by reason: "
    "no_replica (no replica confirmed them within the wait), failover (a Sentinel failover "
    "overlapped them).",
    ["reason"],
)
"""Changes a replica did not confirm (router/store/replication.py)."""
for _reason in ("no_replica", "failover"):
    STORE_UNCONFIRMED.labels(_reason)  # exposed at 0, so that increase() counts the first

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""Set (by `serve --workers`, router/service/workers.py): every worker writes its series to
files in that folder, and a scrape of any worker reads them all."""


def exposition() -> bytes:
    """The per-process series in the text format: this process's, or with several workers every
    live worker's gauges and every worker's counters and histograms summed."""
    folder = os.environ.get(MULTIPROC_ENV)
    if not folder:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, folder)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


P = ParamSpec("P")
R = TypeVar("R")


class TickOutcome(Protocol):
    """What `observe_tick` reads of a tick's result (router.store.engine.TickResult)."""

    @property
    def lag_s(self) -> float:
        """Seconds the latest-applied due timer was late."""
        ...


_recent_lags: deque[tuple[float, float]] = deque()
"""(monotonic time, lag) of the ticks of the last TIMER_LAG_HOLD_S that no later tick's lag
reaches: the first is the worst (a sliding-window maximum)."""


def observe_tick(result: TickOutcome, at: float | None = None) -> None:
    """Set `acd_timer_lag_seconds` from one tick's result at `at` (monotonic seconds; now when
    None): the worst lag of the ticks of the last TIMER_LAG_HOLD_S, in real time as scrapes come."""
    at = time.monotonic() if at is None else at
    lag_s = max(0.0, result.lag_s)
    if _recent_lags and _recent_lags[-1][0] > at:
        _recent_lags.clear()  # a clock gone back (tests)
    while _recent_lags and _recent_lags[-1][1] <= lag_s:
        _recent_lags.pop()  # this tick's lag reaches it: it can no longer be the worst
    _recent_lags.append((at, lag_s))
    while at - _recent_lags[0][0] >= TIMER_LAG_HOLD_S:
        _recent_lags.popleft()
    TIMER_LAG.set(_recent_lags[0][1])


def observe_decision(seconds: float) -> None:
    """Record one routing decision's duration in `acd_routing_decision_seconds`."""
    ROUTING_DECISION.observe(max(0.0, seconds))
