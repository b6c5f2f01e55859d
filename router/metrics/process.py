"""Per-process Prometheus instruments (SPEC §6): each router process exports its own."""

from __future__ import annotations

from prometheus_client import Counter

EVENT_DELIVERIES = Counter(
    "acd_event_deliveries_total",
    "Events written to a sink: sse (a client's stream) or webhook:<index>; result delivered or "
    "failed (one per failed webhook attempt).",
    ["sink", "result"],
)
"""Event deliveries by sink and result."""
