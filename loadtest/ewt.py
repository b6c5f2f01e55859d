"""EWT accuracy of a run: the router's EWT at arrival against Asterisk's estimate and zero.

For every answered call the error of a predictor is |its estimate at the arrival - the real wait|
(queue entry to the answer, as `acd_ewt_error_seconds` measures it). Three predictors:

- **router**: the EWT the router gave at arrival (`CallResult.ewt_s`);
- **Asterisk**: `app_queue`'s per-queue hold time. On every answer Asterisk updates
  `holdtime = (3 * holdtime + wait) >> 2` (integer seconds, `wait = now - qe->start` of
  `time()` values, starting from 0; `recalc_holdtime`), and announces to a caller who has waited
  `w` the minutes of `holdtime + 30 - w` (`say_position`): the queue's hold time, not multiplied
  by the caller's position. At arrival `w = 0`, so its estimate is `holdtime` as it stands when
  the call arrives (answers at the same instant not yet counted). The unrounded seconds are
  compared, which is kinder to Asterisk than the minutes it announces;
- **zero**: always 0 (the error is the wait itself).

Figures are given on all answered calls and on those that queued (not offered at once).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from loadtest.report import ALL, table
from loadtest.simulate import CallResult, SimResult

PREDICTORS = ("router", "asterisk", "zero")


def asterisk_estimates(calls: Sequence[CallResult]) -> dict[str, float]:
    """Asterisk's estimate at the arrival of every call that entered a queue, by call id."""
    events: list[tuple[float, int, int]] = []
    for i, r in enumerate(calls):
        if r.enqueued_s is None or r.status == "blocked":
            continue
        events.append((r.enqueued_s, 0, i))
        if r.answered_s is not None:
            events.append((r.answered_s, 1, i))
    holdtime: dict[str, int] = {}
    out: dict[str, float] = {}
    for _, kind, i in sorted(events):  # arrivals before answers of the same instant
        r = calls[i]
        queue = r.call.queue
        if kind == 0:
            out[r.call.id] = float(holdtime.get(queue, 0))
        else:
            assert r.answered_s is not None
            assert r.enqueued_s is not None
            wait = max(0, math.floor(r.answered_s) - math.floor(r.enqueued_s))
            holdtime[queue] = (3 * holdtime.get(queue, 0) + wait) >> 2
    return out


@dataclass(frozen=True)
class EwtFigures:
    """Mean |estimate - wait| of each predictor, on answered calls and on those that queued."""

    queue: str
    answered: int
    queued: int
    all_calls: dict[str, float | None]
    queued_calls: dict[str, float | None]

    def ratio(self, queued: bool = False) -> float | None:
        """The router's error over Asterisk's."""
        errors = self.queued_calls if queued else self.all_calls
        router, asterisk = errors["router"], errors["asterisk"]
        if router is None or not asterisk:
            return None
        return router / asterisk


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _figures(queue: str, calls: Sequence[CallResult], asterisk: dict[str, float]) -> EwtFigures:
    answered = [
        r for r in calls if r.status == "answered" and r.wait_s is not None and r.ewt_s is not None
    ]
    estimate: dict[str, Callable[[CallResult], float]] = {
        "router": lambda r: r.ewt_s or 0.0,
        "asterisk": lambda r: asterisk.get(r.call.id, 0.0),
        "zero": lambda r: 0.0,
    }

    def errors(group: Sequence[CallResult]) -> dict[str, float | None]:
        return {
            name: _mean([abs(f(r) - (r.wait_s or 0.0)) for r in group])
            for name, f in estimate.items()
        }

    queued = [r for r in answered if r.queued]
    return EwtFigures(queue, len(answered), len(queued), errors(answered), errors(queued))


def ewt_figures(result: SimResult) -> list[EwtFigures]:
    """Per queue, by name, then all queues (when there are several)."""
    asterisk = asterisk_estimates(result.calls)
    by_queue: dict[str, list[CallResult]] = {}
    for r in result.calls:
        by_queue.setdefault(r.call.queue, []).append(r)
    rows = [_figures(q, calls, asterisk) for q, calls in sorted(by_queue.items())]
    if len(rows) > 1:
        rows.append(_figures(ALL, result.calls, asterisk))
    return rows


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


EWT_NOTE = (
    "mean |EWT at arrival - wait| of answered calls, then of those that queued (not offered\n"
    "at once); Asterisk: its moving-average hold time; ratio = router / Asterisk"
)


def ewt_table(rows: Sequence[EwtFigures]) -> tuple[list[str], list[list[str]]]:
    """Header and cells: answered, then each predictor's mean error and the router/Asterisk
    ratio, on all answered calls and on those that queued."""
    header = [
        "EWT |error| s", "answered", "router", "Asterisk", "zero", "ratio",
        "queued", "router", "Asterisk", "zero", "ratio",
    ]  # fmt: skip
    cells = [
        [
            f.queue,
            str(f.answered),
            *(_num(f.all_calls[p]) for p in PREDICTORS),
            _ratio(f.ratio()),
            str(f.queued),
            *(_num(f.queued_calls[p]) for p in PREDICTORS),
            _ratio(f.ratio(queued=True)),
        ]
        for f in rows
    ]
    return header, cells


def ewt_report(rows: Sequence[EwtFigures]) -> str:
    """The table of `ewt_table` and what it shows."""
    return "\n".join([table(*ewt_table(rows)), EWT_NOTE])
