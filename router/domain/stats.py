"""Queue statistics (pure): service level in the four formulas of §6, and Erlang C staffing."""

from __future__ import annotations

from collections.abc import Mapping

from router.domain.erlang import agents_required
from router.domain.models import Sla

WINDOW_S = 900.0
"""The service-level and staffing window: the last 15 minutes (in whole minutes)."""

BUCKETS: dict[str, tuple[float, ...]] = {
    "acd_wait_seconds": (5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 1800, 3600),
    "acd_handle_seconds": (15, 30, 60, 120, 180, 300, 600, 900, 1200, 1800, 3600),
    "acd_ewt_error_seconds": (5, 10, 20, 30, 60, 120, 300, 600, 1200),
}
"""Histogram bucket bounds, seconds; the wait histogram adds each queue's SLA threshold."""

FORMULAS = ("answered", "abandons_failed", "abandons_excluded", "abandons_met")


def service_levels(window: Mapping[str, float]) -> dict[str, float | None]:
    """Each formula of §6 over a window's counts (None where its denominator is 0).

    `window` holds `answered`, `answered_sla` (within the threshold), `abandoned` and
    `abandoned_sla` (abandoned within the threshold).
    """
    answered, answered_sla = window.get("answered", 0), window.get("answered_sla", 0)
    abandoned, abandoned_sla = window.get("abandoned", 0), window.get("abandoned_sla", 0)

    def ratio(num: float, den: float) -> float | None:
        return num / den if den > 0 else None

    return {
        "answered": ratio(answered_sla, answered),
        "abandons_failed": ratio(answered_sla, answered + abandoned),
        "abandons_excluded": ratio(answered_sla, answered + abandoned - abandoned_sla),
        "abandons_met": ratio(answered_sla + abandoned_sla, answered + abandoned),
    }


def staffing(window: Mapping[str, float], aht_s: float | None, sla: Sla) -> int:
    """Agents needed (Erlang C) for the window's arrival rate and handle time at the SLA target.

    Handle time is the window's mean, else the queue's recent average, else none is needed yet.
    """
    handled = window.get("handle_n", 0)
    handle_s = window.get("handle_sum", 0) / handled if handled else aht_s
    if not handle_s:
        return 0
    rate = window.get("arrived", 0) / WINDOW_S
    return agents_required(rate, handle_s, sla.threshold_s, sla.target)
