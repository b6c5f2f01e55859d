"""Calibration: fit the unavailability history does not record, then predict held-out days.

The model is `loadtest.unavailability`'s: after-call work W per queue (log-normal), and breaks B
(exponential) that fall due an exponential time of mean `every_s` of shift after the last one and
wait for the call in progress and its wrap-up. While a call an agent could take waits, the agent
is unavailable (a router offers waiting calls to available qualified agents at once), so each of
an agent's gaps between calls is an exact observation of W (+ B), right-censored where the waiting
stopped, or no information where nothing waited. The break after a call was taken with
probability 1 - exp(-(ring + handle + E[W]) / every_s). EM maximizes the likelihood of this
censored mixture. The method, its assumptions and the figures of `check_calibration` are in
docs/loadtest.md ("Calibration").
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray

from loadtest.progress import SILENT, Progress
from loadtest.report import ALL, QueueFigures, figures, table
from loadtest.simulate import CallResult, Scenario, SimOptions, simulate_scenarios
from loadtest.trace import Breaks, Call, Dist, Roster, merge_shifts
from router.domain.models import QueueConfig
from router.settings import ServiceSettings

DAY_S = 86_400.0
MIN_GAPS = 30
"""Gaps a queue needs for a wrap-up of its own (fewer: it shares the pooled one)."""
POOLED = "*"
QUADRATURE = 64
MIN_GAP_S = 0.5
Array = NDArray[np.float64]


def day_of(t: float) -> int:
    """The trace day of trace second `t`."""
    return int(t // DAY_S)


def parse_days(text: str) -> set[int]:
    """Trace days: `0,2,5-7`."""
    days: set[int] = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        try:
            a, b = int(first), int(last or first)
        except ValueError:
            raise ValueError(f"days must be like 0,2,5-7, not {text!r}") from None
        if a < 0 or b < a:
            raise ValueError(f"days must be like 0,2,5-7, not {text!r}")
        days.update(range(a, b + 1))
    return days


# Gaps -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gap:
    """An agent's unavailability after a call: `u_s` exactly, or more than `u_s` (censored)."""

    queue: str
    handle_s: float
    u_s: float
    exact: bool


class Coverage:
    """When a call that a set of queues serves was waiting: merged intervals."""

    def __init__(self, intervals: Iterable[tuple[float, float]]) -> None:
        merged = merge_shifts((s, e) for s, e in intervals if e > s)
        self.starts = [s for s, _ in merged]
        self.ends = [e for _, e in merged]

    def until(self, t: float) -> float | None:
        """The end of the waiting that covers `t` (None: nothing waited at `t`)."""
        i = bisect.bisect_right(self.starts, t) - 1
        return self.ends[i] if i >= 0 and self.ends[i] > t else None


def _gap_after(
    c: Call,
    nxt: Call | None,
    shifts: Sequence[tuple[float, float]],
    cover: Coverage,
    ring_delay_s: float,
) -> Gap | None:
    """The gap after the agent's call `c` (its next call `nxt`), if it tells anything."""
    end = c.arrival_s + (c.wait_s or 0.0) + c.handle_s
    shift_end = next((e for s, e in shifts if s <= end <= e), None)
    if shift_end is None:
        return None
    waited_until = cover.until(end)
    if waited_until is None:
        return None
    back = None if nxt is None else nxt.arrival_s + (nxt.wait_s or 0.0) - ring_delay_s
    if back is not None and back > shift_end:
        back = None  # the next call is on another shift
    limit = min(waited_until, shift_end)
    if back is not None and back < end:
        return None  # overlapping calls (several channels, or clock skew)
    if back is not None and back <= limit:
        return Gap(c.queue, c.handle_s, max(back - end, MIN_GAP_S), True)
    if limit > end:
        return Gap(c.queue, c.handle_s, limit - end, False)
    return None


def gaps(
    calls: Sequence[Call],
    roster: Roster,
    queues: Mapping[str, QueueConfig],
    ring_delay_s: float = 0.0,
) -> list[Gap]:
    """The agents' gaps after their calls that tell how long they were unavailable."""
    waiting: dict[str, list[tuple[float, float]]] = defaultdict(list)
    served: dict[str, list[Call]] = defaultdict(list)
    for c in calls:
        if c.wait_s is None:
            continue
        ring = ring_delay_s if c.outcome == "answered" else 0.0
        waiting[c.queue].append((c.arrival_s, c.arrival_s + c.wait_s - ring))
        if c.outcome == "answered" and c.agent_id is not None:
            served[c.agent_id].append(c)
    coverages: dict[frozenset[str], Coverage] = {}
    out: list[Gap] = []
    for agent in roster.agents:
        mine = sorted(served.get(agent.id, ()), key=lambda c: c.arrival_s + (c.wait_s or 0.0))
        can = frozenset(q for q in waiting if q in queues and queues[q].served_by(agent.skills))
        if not mine or not can:
            continue
        if can not in coverages:
            coverages[can] = Coverage(iv for q in can for iv in waiting[q])
        cover = coverages[can]
        for i, c in enumerate(mine):
            nxt = mine[i + 1] if i + 1 < len(mine) else None
            gap = _gap_after(c, nxt, agent.shifts, cover, ring_delay_s)
            if gap is not None:
                out.append(gap)
    return out


# The fit --------------------------------------------------------------------------------------


@dataclass
class Fit:
    """Fitted unavailability and what it rests on."""

    wrap_up: dict[str, Dist]
    """Per queue (queues with few gaps share `POOLED`)."""
    breaks: Breaks | None
    exact: int = 0
    censored: int = 0
    gaps: dict[str, int] = field(default_factory=dict)
    """Gaps per queue (or `POOLED`) fitted."""
    breaks_taken: float = 0.0
    """Expected breaks among the gaps."""
    iterations: int = 0
    notes: list[str] = field(default_factory=list)

    def wrap_up_of(self, queue: str) -> Dist | None:
        """A queue's fitted wrap-up (its own, else the pooled one)."""
        return self.wrap_up.get(queue) or self.wrap_up.get(POOLED)

    def on_break_share(self) -> float | None:
        """Share of shift time on break, about duration / (every + duration)."""
        if self.breaks is None:
            return None
        b = self.breaks.duration.mean_s
        return b / (self.breaks.every_s + b)


_NORMAL = NormalDist()
_Z = np.array([_NORMAL.inv_cdf((k + 0.5) / QUADRATURE) for k in range(QUADRATURE)])
_erfc = np.vectorize(math.erfc, otypes=[float])


def _upper_tail(x: Array) -> Array:
    """P(Z > x) of a standard normal."""
    return np.asarray(0.5 * _erfc(x / math.sqrt(2)), dtype=float)


def _best_every(gamma: Array, busy: Array, low: float = 10.0, high: float = 1e7) -> float:
    """The mean time between breaks that best explains which gaps held one (golden section
    on its logarithm)."""

    def score(log_e: float) -> float:
        e = math.exp(log_e)
        p = -np.expm1(-busy / e)
        return float(np.sum(gamma * np.log(np.maximum(p, 1e-300)) - (1 - gamma) * busy / e))

    a, b = math.log(low), math.log(high)
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(80):
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        if score(c) > score(d):
            b = d
        else:
            a = c
    return math.exp((a + b) / 2)


@dataclass
class _Expected:
    """The E-step: per gap, the probability it held a break, E[log W], E[log W ** 2], and
    E[B] given a break."""

    gamma: Array
    log_w: Array
    log_w2: Array
    b: Array


def _expected(
    u: Array,
    exact: NDArray[np.bool_],
    busy: Array,
    mu: Array,
    sigma: Array,
    mean_b: float,
    every: float,
) -> _Expected:
    """Expectations of the gaps `u` (exact or censored) under the current parameters; `mu`
    and `sigma` per gap, `busy` the span over which a break could fall due before the gap."""
    w = np.exp(mu[:, None] + sigma[:, None] * _Z[None, :])  # W's quadrature, per gap
    lam = 1.0 / mean_b
    p = -np.expm1(-busy / every)
    u_pos = np.maximum(u, MIN_GAP_S)
    log_u = np.log(u_pos)
    # Without a break: log-normal density (exact) or survival (censored, Mills ratio moments).
    f0 = np.exp(-((log_u - mu) ** 2) / (2 * sigma**2)) / (u_pos * sigma * math.sqrt(2 * math.pi))
    alpha = (log_u - mu) / sigma
    s0 = _upper_tail(alpha)
    # With one: W + exponential B, density (exact) or survival (censored), W by quadrature.
    rest = np.exp(-lam * np.clip(u[:, None] - w, 0, None))
    below = w < u[:, None]
    weights = np.where(exact[:, None], np.where(below, lam * rest, 0.0), np.where(below, rest, 1.0))
    like1 = weights.mean(axis=1)
    like0 = np.where(exact, f0, s0)
    total = (1 - p) * like0 + p * like1
    gamma = np.where(total > 0, p * like1 / np.where(total > 0, total, 1.0), 1.0)
    norm = weights.sum(axis=1)
    safe = np.where(norm > 0, norm, 1.0)
    log_w = np.log(w)
    e1_log = np.where(norm > 0, (weights * log_w).sum(axis=1) / safe, mu)
    e1_log2 = np.where(norm > 0, (weights * log_w**2).sum(axis=1) / safe, mu**2 + sigma**2)
    density = np.exp(-(alpha**2) / 2) / math.sqrt(2 * math.pi)
    mills = np.where(s0 > 1e-12, density / np.maximum(s0, 1e-300), alpha)  # far tail: ~ alpha
    e0_log = np.where(exact, log_u, mu + sigma * mills)
    var0 = np.where(exact, 0.0, sigma**2 * np.clip(1 + alpha * mills - mills**2, 0, 1))
    e0_log2 = np.where(exact, log_u**2, var0 + e0_log**2)
    # B given a break: the exact gap less W; censored, by memorylessness, the rest plus its mean.
    e1_w = np.where(norm > 0, (weights * w).sum(axis=1) / safe, np.exp(mu + sigma**2 / 2))
    over = np.where(w >= u[:, None], mean_b, u[:, None] - w + mean_b)
    e1_over = np.where(norm > 0, (weights * over).sum(axis=1) / safe, u + mean_b)
    e1_b = np.where(exact, np.maximum(u - e1_w, 0.0), e1_over)
    return _Expected(
        gamma,
        (1 - gamma) * e0_log + gamma * e1_log,
        (1 - gamma) * e0_log2 + gamma * e1_log2,
        e1_b,
    )


def fit_gaps(
    gaps_: Sequence[Gap],
    ring_delay_s: float = 0.0,
    max_iterations: int = 500,
    progress: Progress = SILENT,
) -> Fit:
    """Maximum likelihood (EM) of the wrap-up per queue, the break length and break interval."""
    counts: dict[str, int] = defaultdict(int)
    for g in gaps_:
        counts[g.queue] += 1
    fit = Fit({}, None)
    fit.exact = sum(1 for g in gaps_ if g.exact)
    fit.censored = len(gaps_) - fit.exact
    if fit.exact < MIN_GAPS:
        fit.notes.append(
            f"not enough history: {fit.exact} gaps between calls while calls waited, need "
            f"{MIN_GAPS}; nothing fitted"
        )
        return fit
    groups = [g.queue if counts[g.queue] >= MIN_GAPS else POOLED for g in gaps_]
    for group in groups:
        fit.gaps[group] = fit.gaps.get(group, 0) + 1
    names = sorted(fit.gaps)
    grp = np.array([names.index(group) for group in groups])
    u = np.array([g.u_s for g in gaps_])
    handle = np.array([g.handle_s for g in gaps_])
    exact = np.array([g.exact for g in gaps_])
    # Start: each wrap-up at its exact gaps' median, a break of 10 minutes every hour.
    mu = np.array(
        [
            math.log(float(np.median(np.maximum(u[(grp == k) & exact], MIN_GAP_S))))
            if np.any((grp == k) & exact)
            else math.log(30.0)
            for k in range(len(names))
        ]
    )
    sigma = np.full(len(names), 0.5)
    mean_b, every = 600.0, 3600.0
    gamma = np.zeros(len(gaps_))
    progress.start(f"fit on {len(gaps_)} gaps (EM)", None, "iterations")
    for iteration in progress.track(range(1, max_iterations + 1)):
        busy = ring_delay_s + handle + np.exp(mu + sigma**2 / 2)[grp]
        e = _expected(u, exact, busy, mu[grp], sigma[grp], mean_b, every)
        gamma = e.gamma
        new_mu = np.array([e.log_w[grp == k].mean() for k in range(len(names))])
        new_var = np.array([e.log_w2[grp == k].mean() for k in range(len(names))]) - new_mu**2
        new_sigma = np.sqrt(np.maximum(new_var, 0.01**2))
        taken = float(gamma.sum())
        new_b = max(float((gamma * e.b).sum()) / taken, 1.0) if taken > 1e-9 else mean_b
        new_every = _best_every(gamma, busy)
        change = max(
            float(np.max(np.abs(new_mu - mu))),
            float(np.max(np.abs(new_sigma - sigma))),
            abs(math.log(new_b / mean_b)),
            abs(math.log(new_every / every)),
        )
        mu, sigma, mean_b, every = new_mu, new_sigma, new_b, new_every
        fit.iterations = iteration
        if change < 1e-6:
            break
    fit.breaks_taken = float(gamma.sum())
    for k, name in enumerate(names):
        mean = math.exp(mu[k] + sigma[k] ** 2 / 2)
        fit.wrap_up[name] = Dist("lognormal", mean, math.sqrt(math.expm1(sigma[k] ** 2)))
    if fit.breaks_taken >= 3:
        fit.breaks = Breaks(every, Dist("exponential", mean_b))
    else:
        fit.notes.append(f"no breaks found ({fit.breaks_taken:.1f} expected among the gaps)")
    return fit


def calibrated(roster: Roster, fit: Fit, queues: Iterable[str]) -> Roster:
    """The roster with the fitted unavailability (every queue gets its wrap-up)."""
    wraps = {q: d for q in sorted(queues) if (d := fit.wrap_up_of(q)) is not None}
    return replace(roster, wrap_up=wraps, breaks=fit.breaks)


def fit_report(fit: Fit) -> str:
    """The fitted figures, one a line."""
    lines = [
        f"fitted on {fit.exact} exact and {fit.censored} censored gaps after calls "
        f"({fit.iterations} EM iterations)"
    ]
    for queue, dist in sorted(fit.wrap_up.items()):
        n = fit.gaps.get(queue, 0)
        lines.append(
            f"  wrap-up {queue:<12} mean {dist.mean_s:7.1f} s  cv {dist.cv:4.2f}  "
            f"(log-normal; {n} gaps)"
        )
    if fit.breaks is not None:
        share = fit.on_break_share() or 0.0
        every, mean = fit.breaks.every_s, fit.breaks.duration.mean_s
        lines.append(
            f"  breaks  every {every:7.0f} s of shift, mean {mean:6.1f} s (exponential), about "
            f"{100 * share:.1f} % of shift time; {fit.breaks_taken:.0f} taken after calls"
        )
    lines.extend(f"  {n}" for n in fit.notes)
    return "\n".join(lines)


# Prediction -----------------------------------------------------------------------------------


def history_results(calls: Iterable[Call]) -> list[CallResult]:
    """What happened to the calls, from their history fields, as a run's outcomes."""
    out = []
    for c in calls:
        if c.outcome is None or c.wait_s is None:
            continue
        r = CallResult(c, status=c.outcome, enqueued_s=c.arrival_s, agent_id=c.agent_id)
        if c.outcome == "answered":
            r.answered_s = c.arrival_s + c.wait_s
            r.ended_s = r.answered_s + c.handle_s
        else:
            r.ended_s = c.arrival_s + c.wait_s
        out.append(r)
    return out


def on_days(roster: Roster, days: set[int]) -> Roster:
    """The roster's shifts within `days` (agents without any are left out)."""
    agents = []
    for agent in roster.agents:
        shifts = tuple(
            (max(s, d * DAY_S), min(e, (d + 1) * DAY_S))
            for s, e in agent.shifts
            for d in range(day_of(s), day_of(e) + 1)
            if d in days and min(e, (d + 1) * DAY_S) > max(s, d * DAY_S)
        )
        if shifts:
            agents.append(replace(agent, shifts=merge_shifts(shifts)))
    return replace(roster, agents=tuple(agents))


@dataclass
class Calibration:
    """A fit on some days and its prediction of others, with the history of those."""

    fit: Fit
    roster: Roster
    """The roster with the fitted unavailability."""
    fit_days: list[int]
    predict_days: list[int]
    history: list[CallResult]
    predicted: list[CallResult]
    """Every replication's outcomes, pooled."""
    raw: list[CallResult]
    """The prediction without unavailability (the roster as given), pooled likewise."""
    threshold_s: dict[str, float]
    replications: int


def split_days(
    calls: Sequence[Call], fit_days: set[int] | None, predict_days: set[int] | None
) -> tuple[list[int], list[int]]:
    """The days to fit and to predict (default: all but the last; the last)."""
    days = sorted({day_of(c.arrival_s) for c in calls})
    if not days:
        raise ValueError("the trace has no calls")
    predict = sorted(predict_days) if predict_days else days[-1:]
    fit = sorted(fit_days) if fit_days else ([d for d in days if d not in predict] or predict)
    for name, chosen in (("fit", fit), ("predict", predict)):
        missing = sorted(set(chosen) - set(days))
        if missing:
            raise ValueError(f"no calls on {name} day(s) {missing}; the trace has days {days}")
    return fit, predict


async def calibrate(
    calls: Sequence[Call],
    roster: Roster,
    queues: Sequence[QueueConfig],
    settings: ServiceSettings,
    fit_days: set[int] | None = None,
    predict_days: set[int] | None = None,
    ring_delay_s: float = 0.0,
    seed: int = 1,
    replications: int = 1,
    progress: Progress = SILENT,
) -> Calibration:
    """Fit on `fit_days`, then simulate `predict_days` with and without the fitted figures."""
    lacking = sum(1 for c in calls if c.outcome is None)
    if lacking:
        raise ValueError(
            f"{lacking} calls lack the history fields wait_s and outcome (the importers fill "
            "them): calibrate compares with history"
        )
    by_name = {q.name: q for q in queues}
    fit_on, predict_on = split_days(calls, fit_days, predict_days)
    fitting = [c for c in calls if day_of(c.arrival_s) in set(fit_on)]
    progress.start(f"gaps between calls, {len(fitting)} calls")
    fit = fit_gaps(gaps(fitting, roster, by_name, ring_delay_s), ring_delay_s, progress=progress)
    result = calibrated(roster, fit, {c.queue for c in calls})
    held_out = [c for c in calls if day_of(c.arrival_s) in set(predict_on)]
    shifts = on_days(result, set(predict_on))
    given = on_days(roster, set(predict_on))
    plain = Roster(tuple(replace(a, wrap_up=None, breaks=None) for a in given.agents))
    predicted: list[CallResult] = []
    raw: list[CallResult] = []
    for n in range(replications):
        options = SimOptions(ring_delay_s=ring_delay_s, seed=seed + n, progress=progress)
        label = f"calibrated, run {n + 1} of {replications}" if replications > 1 else "calibrated"
        runs = [Scenario(label, shifts, tuple(queues), settings)]
        if n == 0:
            runs.append(Scenario("as given", plain, tuple(queues), settings))
        results = await simulate_scenarios(held_out, runs, options)
        predicted.extend(results[0].calls)
        if n == 0:
            raw = results[1].calls
    return Calibration(
        fit,
        result,
        fit_on,
        predict_on,
        history_results(held_out),
        predicted,
        raw,
        {q.name: q.sla.threshold_s for q in queues},
        replications,
    )


# Report ---------------------------------------------------------------------------------------

HEADLINE = "abandons_excluded"


@dataclass(frozen=True)
class Compared:
    """One row: history, prediction and the prediction without unavailability."""

    label: str
    history: QueueFigures
    predicted: QueueFigures
    raw: QueueFigures

    def sl(self, which: QueueFigures, formula: str = HEADLINE) -> float | None:
        """A service level of one of the three."""
        return which.service_level[formula]

    def sl_error(self, formula: str = HEADLINE) -> float | None:
        """Prediction - history, in points."""
        a, b = self.predicted.service_level[formula], self.history.service_level[formula]
        return None if a is None or b is None else 100 * (a - b)

    def asa_error(self) -> float | None:
        """Prediction / history - 1."""
        a, b = self.predicted.asa_s, self.history.asa_s
        return None if a is None or not b else a / b - 1


def _per_call(figs: QueueFigures, replications: int) -> QueueFigures:
    """Counts of a pooled prediction back to one day's scale."""
    if replications == 1:
        return figs
    return replace(
        figs,
        offered=round(figs.offered / replications),
        answered=round(figs.answered / replications),
        abandoned=round(figs.abandoned / replications),
    )


def compared_rows(
    cal: Calibration, key: str = "queue", interval_s: float = 3600.0
) -> list[Compared]:
    """History against prediction per queue (`key="queue"`, then all queues) or per interval
    of the day (`key="interval"`, all queues)."""

    def group(results: Sequence[CallResult]) -> dict[str, list[CallResult]]:
        out: dict[str, list[CallResult]] = defaultdict(list)
        for r in results:
            if key == "queue":
                out[r.call.queue].append(r)
                out[ALL].append(r)
            else:
                start = (r.call.arrival_s % DAY_S) // interval_s * interval_s
                out[f"{int(start // 3600):02d}:{int(start % 3600 // 60):02d}"].append(r)
        return out

    hist, pred, raw = group(cal.history), group(cal.predicted), group(cal.raw)
    labels = sorted(hist, key=lambda name: (name == ALL, name))
    if key == "queue" and len(labels) == 2:
        labels = labels[:1]  # one queue: its row is the all-queues row
    t = cal.threshold_s
    return [
        Compared(
            label,
            figures(label, hist[label], t),
            _per_call(figures(label, pred.get(label, []), t), cal.replications),
            figures(label, raw.get(label, []), t),
        )
        for label in labels
    ]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _signed(value: float | None, scale: float = 1.0, unit: str = "") -> str:
    return "-" if value is None else f"{scale * value:+.1f}{unit}"


def comparison_table(rows: Sequence[Compared], first: str) -> str:
    """History, prediction and prediction without unavailability side by side."""
    header = [
        first, "calls", "SL hist", "SL pred", "diff pt", "SL raw",
        "ASA hist", "ASA pred", "diff", "ASA raw", "aband% hist", "pred", "raw",
    ]  # fmt: skip

    def aband(f: QueueFigures) -> str:
        done = f.answered + f.abandoned
        return "-" if not done else f"{100 * f.abandoned / done:.1f}"

    cells = [
        [
            r.label,
            str(r.history.offered),
            _pct(r.sl(r.history)),
            _pct(r.sl(r.predicted)),
            _signed(r.sl_error()),
            _pct(r.sl(r.raw)),
            _num(r.history.asa_s),
            _num(r.predicted.asa_s),
            _signed(r.asa_error(), 100, "%"),
            _num(r.raw.asa_s),
            aband(r.history),
            aband(r.predicted),
            aband(r.raw),
        ]
        for r in rows
    ]
    return table(header, cells)


def calibration_report(cal: Calibration, interval_s: float = 3600.0) -> str:
    """The fitted figures, then history vs prediction per queue and per interval."""
    days = ", ".join(map(str, cal.predict_days))
    if set(cal.predict_days) & set(cal.fit_days):
        days += " (in-sample: fitted on too)"
    reps = f", mean of {cal.replications} runs" if cal.replications > 1 else ""
    return "\n\n".join(
        [
            f"fit on trace day(s) {', '.join(map(str, cal.fit_days))}\n" + fit_report(cal.fit),
            f"held-out day(s) {days}: history vs prediction (pred: calibrated{reps}; raw: the "
            f"roster as given, without unavailability); SL = {HEADLINE} service level %",
            comparison_table(compared_rows(cal), "queue"),
            comparison_table(compared_rows(cal, "interval", interval_s), "interval"),
        ]
    )
