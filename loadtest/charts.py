"""Time series of a run as SVG line charts: inline in the HTML report, or one standalone file."""

from __future__ import annotations

import bisect
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from loadtest.simulate import SimResult
from router.domain.stats import service_levels

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
SL_BUCKET_S = 900.0
CHART_NAMES = ("service-level", "waiting", "busy")


@dataclass(frozen=True)
class Series:
    """One line of a chart: (trace second, value) points."""

    label: str
    points: list[tuple[float, float]]


def level(intervals: Sequence[tuple[float, float]], times: Sequence[float]) -> list[float]:
    """How many intervals [start, end) hold each time."""
    starts = sorted(s for s, _ in intervals)
    ends = sorted(e for _, e in intervals)
    return [float(bisect.bisect_right(starts, t) - bisect.bisect_right(ends, t)) for t in times]


def span(result: SimResult) -> float:
    """The last arrival or end of the run, in trace seconds."""
    ends = [r.free_s or r.ended_s or r.call.arrival_s for r in result.calls]
    return max(ends, default=0.0)


def waiting_series(result: SimResult, times: Sequence[float]) -> list[float]:
    """Calls waiting (queued or ringing) at each time."""
    end = span(result)
    intervals = []
    for r in result.calls:
        if r.enqueued_s is None or r.status == "blocked":
            continue
        stop = r.answered_s if r.answered_s is not None else r.ended_s
        intervals.append((r.enqueued_s, end if stop is None else stop))
    return level(intervals, times)


def busy_series(result: SimResult, times: Sequence[float]) -> list[float]:
    """Agents talking or in wrap-up at each time (one per answered call)."""
    intervals = [
        (r.answered_s, r.free_s)
        for r in result.calls
        if r.answered_s is not None and r.free_s is not None
    ]
    return level(intervals, times)


def staffed_series(result: SimResult, times: Sequence[float]) -> list[float]:
    """Agents on shift at each time."""
    return level([s for a in result.roster.agents for s in a.shifts], times)


def sl_series(result: SimResult) -> list[tuple[float, float]]:
    """`abandons_excluded` service level per 15 minutes, by answer or abandon time."""
    buckets: dict[int, dict[str, float]] = {}
    for r in result.calls:
        wait = r.wait_s
        if wait is None or r.status not in ("answered", "abandoned"):
            continue
        at = r.answered_s if r.status == "answered" else r.ended_s
        b = buckets.setdefault(int((at or 0.0) // SL_BUCKET_S), {})
        within = wait <= result.queues[r.call.queue].sla.threshold_s + 5e-4
        kind = "answered" if r.status == "answered" else "abandoned"
        b[kind] = b.get(kind, 0) + 1
        b[kind + "_sla"] = b.get(kind + "_sla", 0) + within
    out = []
    for index, window in sorted(buckets.items()):
        value = service_levels(window)["abandons_excluded"]
        if value is not None:
            out.append(((index + 0.5) * SL_BUCKET_S, 100 * value))
    return out


def nice_step(span: float, ticks: int = 6) -> float:
    """The smallest 1, 2 or 5 times a power of ten that cuts `span` in at most `ticks` steps."""
    rough = max(span, 1e-9) / ticks
    power = 10.0 ** math.floor(math.log10(rough))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= rough * (1 - 1e-9))


def svg_chart(title: str, series: Sequence[Series], unit: str, w: int = 760, h: int = 220) -> str:
    """An SVG line chart with axes, hour ticks and a legend, on white (valid standalone too)."""
    left, right, top, bottom = 48, 12, 24, 28
    xs = [x for s in series for x, _ in s.points] or [0.0, 1.0]
    ys = [y for s in series for _, y in s.points] or [0.0, 1.0]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    step = nice_step(max(max(ys), 1.0) * 1.05)
    y1 = step * math.ceil(max(max(ys), 1.0) * 1.05 / step)

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (w - left - right)

    def py(y: float) -> float:
        return h - bottom - y / y1 * (h - top - bottom)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="{left}" y="14" font-size="13" font-weight="bold">{html.escape(title)}</text>',
        f'<line x1="{left}" y1="{py(0)}" x2="{w - right}" y2="{py(0)}" stroke="#888"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{py(0)}" stroke="#888"/>',
    ]
    for k in range(round(y1 / step) + 1):
        y = k * step
        parts.append(f'<text x="{left - 4}" y="{py(y) + 4:.1f}" text-anchor="end">{y:g}</text>')
        parts.append(
            f'<line x1="{left}" y1="{py(y):.1f}" x2="{w - right}" y2="{py(y):.1f}" stroke="#eee"/>'
        )
    hours = max(1, int((x1 - x0) / 3600 / 12) or 1)
    for hour in range(int(x0 // 3600), int(x1 // 3600) + 1, hours):
        x = hour * 3600.0
        if x0 <= x <= x1:
            parts.append(f'<text x="{px(x):.1f}" y="{h - 10}" text-anchor="middle">{hour}h</text>')
    parts.append(f'<text x="{w - right}" y="14" text-anchor="end">{html.escape(unit)}</text>')
    for i, s in enumerate(series):
        color = COLORS[i % len(COLORS)]
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s.points)
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}"/>'
        )
        lx = left + 10 + 180 * i
        parts.append(f'<rect x="{lx}" y="{top}" width="10" height="3" fill="{color}"/>')
        parts.append(f'<text x="{lx + 14}" y="{top + 5}">{html.escape(s.label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def charts(results: Sequence[SimResult]) -> dict[str, str]:
    """Service level, waiting and busy-agent charts of the runs, overlaid, by `CHART_NAMES`."""
    end = max((span(r) for r in results), default=0.0)
    step = max(60.0, end / 400)
    times = [k * step for k in range(int(end // step) + 1)]
    sl, waiting, busy = [], [], []
    for r in results:
        label = r.label or "run"
        sl.append(Series(label, sl_series(r)))
        waiting.append(Series(label, list(zip(times, waiting_series(r, times), strict=True))))
        busy.append(Series(f"{label} busy", list(zip(times, busy_series(r, times), strict=True))))
        busy.append(
            Series(f"{label} staffed", list(zip(times, staffed_series(r, times), strict=True)))
        )
    return {
        "service-level": svg_chart("Service level per 15 min (abandons excluded)", sl, "%"),
        "waiting": svg_chart("Calls waiting", waiting, "calls"),
        "busy": svg_chart("Agents busy (talk + wrap-up) and on shift", busy, "agents"),
    }


def write_chart(path: str | Path, results: Sequence[SimResult], name: str) -> None:
    """Chart `name` (one of `CHART_NAMES`) of the runs as a standalone SVG file."""
    if name not in CHART_NAMES:
        raise ValueError(f"chart must be one of {', '.join(CHART_NAMES)}, not {name!r}")
    Path(path).write_text(charts(results)[name] + "\n", encoding="utf-8")
