"""Time series of runs as SVG line charts: inline in the HTML report, or standalone files.

Every chart is plain SVG (no script, no external style), valid on its own. Runs are overlaid,
one color each; the time axis is trace time, ticked every 1, 2, 5, 10, 15 or 30 minutes, 1, 2,
3, 6 or 12 hours or 1, 2 or 7 days, whichever gives at most 9 steps over the span (`H:MM` on
trace day 0, `dN H:MM` on day N); percentages run from 0 to 100.
"""

from __future__ import annotations

import bisect
import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from loadtest.simulate import CallResult, SimResult
from router.domain.stats import service_levels

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
TARGET_COLOR = "#555"
CHART_NAMES = ("service-level", "queue-service-level", "waiting", "busy")
DAY_S = 86_400.0
TIME_STEPS_S: tuple[int, ...] = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600)
TIME_STEPS_S += (43_200, 86_400, 172_800, 604_800)
MAX_TIME_TICKS = 9


@dataclass(frozen=True)
class Series:
    """One line of a chart: (trace second, value) points."""

    label: str
    points: list[tuple[float, float]]


@dataclass(frozen=True)
class Panel:
    """One plot of a chart: its lines and labelled horizontal reference lines (targets)."""

    title: str
    series: Sequence[Series]
    targets: Sequence[tuple[str, float]] = ()


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


def sl_bucket_s(seconds: float) -> float:
    """The service-level window of a chart spanning `seconds`: 5 minutes up to 4 hours, 15
    minutes up to 3 days, an hour beyond."""
    return 300.0 if seconds <= 4 * 3600 else 900.0 if seconds <= 3 * DAY_S else 3600.0


def sl_series(
    result: SimResult, bucket_s: float, calls: Iterable[CallResult] | None = None
) -> list[tuple[float, float]]:
    """`abandons_excluded` service level (%) of `calls` (default: all the run's) per `bucket_s`
    window, by answer or abandon time; each call against its own queue's threshold."""
    buckets: dict[int, dict[str, float]] = {}
    for r in result.calls if calls is None else calls:
        wait = r.wait_s
        if wait is None or r.status not in ("answered", "abandoned"):
            continue
        at = r.answered_s if r.status == "answered" else r.ended_s
        b = buckets.setdefault(int((at or 0.0) // bucket_s), {})
        within = wait <= result.queues[r.call.queue].sla.threshold_s + 5e-4
        kind = "answered" if r.status == "answered" else "abandoned"
        b[kind] = b.get(kind, 0) + 1
        b[kind + "_sla"] = b.get(kind + "_sla", 0) + within
    out = []
    for index, window in sorted(buckets.items()):
        value = service_levels(window)["abandons_excluded"]
        if value is not None:
            out.append(((index + 0.5) * bucket_s, 100 * value))
    return out


def nice_step(span: float, ticks: int = 6) -> float:
    """The smallest 1, 2 or 5 times a power of ten that cuts `span` in at most `ticks` steps."""
    rough = max(span, 1e-9) / ticks
    power = 10.0 ** math.floor(math.log10(rough))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= rough * (1 - 1e-9))


def time_step(seconds: float) -> int:
    """The smallest of `TIME_STEPS_S` that cuts `seconds` in at most `MAX_TIME_TICKS` steps."""
    return next((s for s in TIME_STEPS_S if seconds / s <= MAX_TIME_TICKS), TIME_STEPS_S[-1])


def time_ticks(x0: float, x1: float) -> list[tuple[float, str]]:
    """Ticks of the time axis from `x0` to `x1` (trace s): `H:MM` on trace day 0, `dN H:MM` on
    day N, `day N` for steps of days."""
    step = time_step(x1 - x0)
    ticks = []
    for k in range(math.ceil(x0 / step - 1e-9), math.floor(x1 / step + 1e-9) + 1):
        day, rest = divmod(k * step, int(DAY_S))
        clock = f"{rest // 3600}:{rest % 3600 // 60:02d}"
        label = f"day {day}" if step >= DAY_S else f"d{day} {clock}" if day else clock
        ticks.append((float(k * step), label))
    return ticks


def svg_chart(
    title: str,
    panels: Sequence[Panel],
    unit: str,
    x_range: tuple[float, float],
    y_max: float | None = None,
    w: int = 760,
    panel_h: int = 180,
) -> str:
    """An SVG chart: a title, a legend (the first panel's series: every panel has the same
    runs), then one or more panels stacked, sharing the time axis and the y scale (up to
    `y_max`, default the highest value), each with its target lines; on white."""
    left, right, head = 48, 12, 40
    x0, x1 = x_range[0], max(x_range[1], x_range[0] + 60)
    ys = [y for p in panels for s in p.series for _, y in s.points]
    ys += [y for p in panels for _, y in p.targets]
    if y_max is None:
        top = max(max(ys, default=1.0), 1.0) * 1.05
        step = nice_step(top)
        y1 = step * math.ceil(top / step)
    else:
        step, y1 = nice_step(y_max), y_max
    titled = len(panels) > 1
    ph = panel_h + (16 if titled else 0)
    h = head + len(panels) * ph

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (w - left - right)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="{left}" y="14" font-size="13" font-weight="bold">{html.escape(title)}</text>',
        f'<text x="{w - right}" y="14" text-anchor="end">{html.escape(unit)}</text>',
    ]
    for i, s in enumerate(panels[0].series if panels else ()):
        lx = left + 180 * i
        parts.append(f'<rect x="{lx}" y="25" width="10" height="3" fill="{color(i)}"/>')
        parts.append(f'<text x="{lx + 14}" y="30">{html.escape(s.label)}</text>')
    for n, panel in enumerate(panels):
        base = head + n * ph
        y_top, y_bottom = base + (24 if titled else 8), base + ph - 24

        def py(y: float, y_top: float = y_top, y_bottom: float = y_bottom) -> float:
            return y_bottom - min(y, y1) / y1 * (y_bottom - y_top)

        if titled:
            parts.append(
                f'<text x="{left}" y="{base + 10}" font-weight="bold">'
                f"{html.escape(panel.title)}</text>"
            )
        parts.append(
            f'<line x1="{left}" y1="{y_bottom}" x2="{w - right}" y2="{y_bottom}" stroke="#888"/>'
        )
        parts.append(f'<line x1="{left}" y1="{y_top}" x2="{left}" y2="{y_bottom}" stroke="#888"/>')
        for k in range(round(y1 / step) + 1):
            y = k * step
            parts.append(f'<text x="{left - 4}" y="{py(y) + 4:.1f}" text-anchor="end">{y:g}</text>')
            parts.append(
                f'<line x1="{left}" y1="{py(y):.1f}" x2="{w - right}" y2="{py(y):.1f}" '
                'stroke="#eee"/>'
            )
        for x, label in time_ticks(x0, x1):
            parts.append(
                f'<text x="{px(x):.1f}" y="{y_bottom + 14}" text-anchor="middle">{label}</text>'
            )
        for _, y in panel.targets:
            parts.append(
                f'<line x1="{left}" y1="{py(y):.1f}" x2="{w - right}" y2="{py(y):.1f}" '
                f'stroke="{TARGET_COLOR}" stroke-dasharray="5,3"/>'
            )
        for i, s in enumerate(panel.series):
            points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s.points)
            parts.append(
                f'<polyline fill="none" stroke="{color(i)}" stroke-width="1.5" points="{points}"/>'
            )
        for label, y in panel.targets:  # on top of the lines, on a white halo
            at = f'x="{w - right - 2}" y="{py(y) - 3:.1f}" text-anchor="end"'
            parts.append(f'<text {at} stroke="white" stroke-width="3">{html.escape(label)}</text>')
            parts.append(f'<text {at} fill="{TARGET_COLOR}">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def color(i: int) -> str:
    """The color of the `i`-th series."""
    return COLORS[i % len(COLORS)]


def _target(percent: float) -> tuple[str, float]:
    return f"target {percent:g}%", percent


def charts(results: Sequence[SimResult]) -> dict[str, str]:
    """The charts of the runs (overlaid), by `CHART_NAMES`: service level of all queues and per
    queue with its target, calls waiting, agents busy and on shift."""
    first = min((r.call.arrival_s for res in results for r in res.calls), default=0.0)
    start = first // 3600 * 3600  # from the hour of the first arrival
    end = max((span(r) for r in results), default=0.0)
    x_range = (start, max(end, start + 60))
    step = max(60.0, (x_range[1] - start) / 400)
    times = [start + k * step for k in range(int((x_range[1] - start) // step) + 1)]
    bucket = sl_bucket_s(x_range[1] - start)
    every = f"{bucket / 60:g} min"
    labels = [r.label or "run" for r in results]
    targets = {q.sla.target for r in results for q in r.queues.values()}
    sl = Panel(
        "",
        [Series(label, sl_series(r, bucket)) for label, r in zip(labels, results, strict=True)],
        [_target(100 * targets.pop())] if len(targets) == 1 else [],
    )
    per_queue = []
    for queue in sorted({c.call.queue for r in results for c in r.calls}):
        series = [
            Series(label, sl_series(r, bucket, (c for c in r.calls if c.call.queue == queue)))
            for label, r in zip(labels, results, strict=True)
        ]
        goals = sorted({r.queues[queue].sla.target for r in results if queue in r.queues})
        per_queue.append(Panel(queue, series, [_target(100 * t) for t in goals]))
    waiting = Panel(
        "",
        [
            Series(label, list(zip(times, waiting_series(r, times), strict=True)))
            for label, r in zip(labels, results, strict=True)
        ],
    )
    busy = Panel(
        "",
        [
            Series(f"{label} {what}", list(zip(times, values(r, times), strict=True)))
            for label, r in zip(labels, results, strict=True)
            for what, values in (("busy", busy_series), ("staffed", staffed_series))
        ],
    )
    return {
        "service-level": svg_chart(
            f"Service level per {every}, all queues (abandons excluded)", [sl], "%", x_range, 100
        ),
        "queue-service-level": svg_chart(
            f"Service level per {every} per queue (abandons excluded)",
            per_queue,
            "%",
            x_range,
            100,
        ),
        "waiting": svg_chart("Calls waiting", [waiting], "calls", x_range),
        "busy": svg_chart("Agents busy (talk + wrap-up) and on shift", [busy], "agents", x_range),
    }


def write_chart(path: str | Path, rendered: dict[str, str], name: str) -> None:
    """Chart `name` (one of `CHART_NAMES`) of rendered `charts` as a standalone SVG file."""
    if name not in CHART_NAMES:
        raise ValueError(f"chart must be one of {', '.join(CHART_NAMES)}, not {name!r}")
    Path(path).write_text(rendered[name] + "\n", encoding="utf-8")


def write_charts(folder: str | Path, rendered: dict[str, str]) -> list[Path]:
    """Every chart as `folder/NAME.svg` (the folder is created); the files written."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.svg" for name in rendered]
    for path, name in zip(paths, rendered, strict=True):
        write_chart(path, rendered, name)
    return paths
