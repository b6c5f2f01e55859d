"""Per-queue figures of a run (§6 formulas), text tables and side-by-side comparisons."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from loadtest.simulate import CallResult, SimResult
from router.domain.stats import FORMULAS, service_levels
from router.store.codec import to_ms

ALL = "(all)"
"""The all-queues row of a report (printed when the run has more than one queue)."""


@dataclass(frozen=True)
class QueueFigures:
    """A queue's figures over the whole run."""

    queue: str
    offered: int
    answered: int
    abandoned: int
    timed_out: int
    blocked: int
    unanswered: int
    service_level: dict[str, float | None]
    asa_s: float | None
    aht_s: float | None
    ewt_error_s: float | None
    """Mean |EWT at arrival - real wait| of answered calls."""
    ewt_bias_s: float | None
    """Mean (EWT at arrival - real wait): positive when the estimate is too high."""
    callbacks_offered: int


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def figures(
    queue: str, calls: Sequence[CallResult], threshold_s: Mapping[str, float]
) -> QueueFigures:
    """Figures of `calls` (of one queue, or several): each call is within the SLA by its own
    queue's `threshold_s`."""
    answered = [r for r in calls if r.status == "answered"]
    abandoned = [r for r in calls if r.status == "abandoned"]

    def within(r: CallResult) -> bool:
        return r.wait_s is not None and to_ms(r.wait_s) <= to_ms(threshold_s[r.call.queue])

    window = {
        "answered": len(answered),
        "answered_sla": sum(1 for r in answered if within(r)),
        "abandoned": len(abandoned),
        "abandoned_sla": sum(1 for r in abandoned if within(r)),
    }
    waits = [r.wait_s for r in answered if r.wait_s is not None]
    handles = [
        r.free_s - r.answered_s
        for r in answered
        if r.free_s is not None and r.answered_s is not None
    ]
    errors = [
        (r.ewt_s - r.wait_s) for r in answered if r.ewt_s is not None and r.wait_s is not None
    ]
    return QueueFigures(
        queue=queue,
        offered=len(calls),
        answered=len(answered),
        abandoned=len(abandoned),
        timed_out=sum(1 for r in calls if r.status == "timed_out"),
        blocked=sum(1 for r in calls if r.status == "blocked"),
        unanswered=sum(1 for r in calls if r.status == "unanswered"),
        service_level=service_levels(window),
        asa_s=_mean(waits),
        aht_s=_mean(handles),
        ewt_error_s=_mean([abs(e) for e in errors]),
        ewt_bias_s=_mean(errors),
        callbacks_offered=sum(1 for r in calls if r.callback_offered),
    )


def run_figures(result: SimResult) -> list[QueueFigures]:
    """Figures per queue of a run, by name, then all queues (`ALL`) when there are several."""
    threshold_s = {name: q.sla.threshold_s for name, q in result.queues.items()}
    by_queue: dict[str, list[CallResult]] = {}
    for r in result.calls:
        by_queue.setdefault(r.call.queue, []).append(r)
    rows = [figures(q, calls, threshold_s) for q, calls in sorted(by_queue.items())]
    if len(rows) > 1:
        rows.append(figures(ALL, result.calls, threshold_s))
    return rows


SHORT = {
    "answered": "SL ans",
    "abandons_failed": "SL ab-fail",
    "abandons_excluded": "SL ab-excl",
    "abandons_met": "SL ab-met",
}
COLUMNS = (
    "queue", "offered", "answered", "abandoned", "timed_out", "blocked", "unanswered",
    *(SHORT[f] for f in FORMULAS), "ASA s", "AHT s", "EWT err s",
)  # fmt: skip


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def row(f: QueueFigures) -> list[str]:
    """Cells of a queue's row."""
    return [
        f.queue,
        str(f.offered),
        str(f.answered),
        str(f.abandoned),
        str(f.timed_out),
        str(f.blocked),
        str(f.unanswered),
        *(_pct(f.service_level[k]) for k in FORMULAS),
        _num(f.asa_s),
        _num(f.aht_s),
        _num(f.ewt_error_s),
    ]


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain text table, the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def run_title(result: SimResult) -> str:
    """`label: N calls, M agents`."""
    return f"{result.label or 'run'}: {len(result.calls)} calls, {len(result.roster.agents)} agents"


def text_report(result: SimResult) -> str:
    """A run's per-queue table with its cost."""
    rows = [row(f) for f in run_figures(result)]
    rate = len(result.calls) / result.wall_s if result.wall_s else 0.0
    cost = (
        f"simulated in {result.wall_s:.1f} s ({rate:.0f} calls/s, "
        f"{result.engine_calls} engine operations)"
    )
    return "\n".join([run_title(result), table(COLUMNS, rows), cost, *result.notes])


COMPARED = (
    ("offered", "offered"),
    ("answered", "answered"),
    ("abandoned", "abandoned"),
    ("service_level.abandons_excluded", "SL ab-excl"),
    ("service_level.answered", "SL ans"),
    ("asa_s", "ASA s"),
    ("aht_s", "AHT s"),
)
"""The figures of the side-by-side comparison: (key in `--json`, column of the per-queue table)."""


def figure_of(f: QueueFigures, key: str) -> float | None:
    """A figure by its key: a field of `QueueFigures`, or `service_level.FORMULA`."""
    if key.startswith("service_level."):
        return f.service_level[key.partition(".")[2]]
    value: float | None = getattr(f, key)
    return value


@dataclass(frozen=True)
class ComparedFigure:
    """One figure of one queue in each of several runs (None: the run lacks the queue)."""

    queue: str
    figure: str
    """The key of `COMPARED`."""
    column: str
    values: list[float | None]
    cells: list[str]


def comparison(runs: Sequence[SimResult]) -> list[ComparedFigure]:
    """Key figures of several runs side by side, per queue (then all queues) and figure."""
    per_run = [{f.queue: f for f in run_figures(r)} for r in runs]
    queues = sorted({q for figs in per_run for q in figs}, key=lambda q: (q == ALL, q))
    return [
        ComparedFigure(
            q,
            key,
            column,
            [figure_of(figs[q], key) if q in figs else None for figs in per_run],
            [row(figs[q])[COLUMNS.index(column)] if q in figs else "-" for figs in per_run],
        )
        for q in queues
        for key, column in COMPARED
    ]


def comparison_table(runs: Sequence[SimResult]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the side-by-side comparison."""
    header = ["queue figure", *(r.label or f"run {i}" for i, r in enumerate(runs))]
    return header, [[f"{c.queue} {c.column}", *c.cells] for c in comparison(runs)]


def compare_report(runs: Sequence[SimResult]) -> str:
    """The side-by-side comparison as a text table."""
    return table(*comparison_table(runs))


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile `q` (0..1) of `values` (nan when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]
