"""Calibration: fit the unavailability history does not record, then predict held-out days.

**What is fitted.** The model of `loadtest.unavailability`: after each call the agent does
after-call work W (log-normal, per queue of the call), and takes breaks B (exponential) that fall
due an exponential time of mean `every_s` of shift after the last break, and start when the call
in progress (and its wrap-up) ends.

**Method.** History gives each answered call's start (`arrival_s + wait_s`), end (+ `handle_s`)
and agent, and every call's wait. A router offers a waiting call to an available qualified agent
at once, so while a call the agent could take is waiting (the queues its skills serve), the agent
is not available. After each of its calls, an agent's gap to its next call is therefore:
- *exact* when such a call waited during the whole gap (less the ring delay before its next
  answer): the agent was unavailable for the gap, U = W + (B if a break was taken);
- *right-censored* when the waiting stopped during the gap: U > (when it stopped) - (call end);
- no information when nothing waited as the call ended (the gap may be idle time).
A call's waiting counts until its answer less the ring delay (then it rings someone), or until it
was abandoned; gaps across shifts are not used. The break after a call was taken with
probability p = 1 - exp(-(ring + handle + wrap-up) / every_s) (a break due while the agent is
busy waits for the end of the call; the clock is memoryless). The likelihood of the gaps under
this mixture (W, or W + B with probability p) is maximized by expectation-maximization: W's
log-normal per queue (queues with fewer than `MIN_GAPS` gaps share one), B's mean, and
`every_s`, with W's distribution integrated by quantile quadrature.

**Assumptions.** The router routed work-conservingly (no call waited while a qualified agent was
available: true of this router, and of any ACD without idle-agent reservations); agents'
skills in the roster (imported: the queues they served) and the queues' requirements decide who
could take a call; wrap-up depends on the queue of the call, breaks on nothing (one clock for
every agent); the ring delay is known (default 0: an unknown ring time is counted as wrap-up);
sources with whole seconds floor a gap at 0.5 s.

**Prediction.** `simulate` runs the held-out days' calls (their patience as imported) with the
roster's shifts of those days and the fitted unavailability, and the report puts history and
prediction side by side per queue, per interval of the day and for all queues.
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
            end = c.arrival_s + (c.wait_s or 0.0) + c.handle_s
            shift_end = next((e for s, e in agent.shifts if s <= end <= e), None)
            if shift_end is None:
                continue
            waited_until = cover.until(end)
            if waited_until is None:
                continue
            nxt = mine[i + 1] if i + 1 < len(mine) else None
            back = None if nxt is None else nxt.arrival_s + (nxt.wait_s or 0.0) - ring_delay_s
            if back is not None and back > shift_end:
                back = None  # the next call is on another shift
            limit = min(waited_until, shift_end)
            if back is not None and back < end:
                continue  # overlapping calls (several channels, or clock skew)
            if back is not None and back <= limit:
                out.append(Gap(c.queue, c.handle_s, max(back - end, MIN_GAP_S), True))
            else:
                out.append(Gap(c.queue, c.handle_s, max(limit - end, 0.0), False))
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
    gaps_by_queue: dict[str, int] = field(default_factory=dict)
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


def fit_gaps(gaps_: Sequence[Gap], ring_delay_s: float = 0.0, max_iterations: int = 500) -> Fit:
    """Maximum likelihood (EM) of the wrap-up per queue, the break length and break interval."""
    counts: dict[str, int] = defaultdict(int)
    for g in gaps_:
        counts[g.queue] += 1
    fit = Fit({}, None, gaps_by_queue=dict(counts))
    fit.exact = sum(1 for g in gaps_ if g.exact)
    fit.censored = len(gaps_) - fit.exact
    if fit.exact < MIN_GAPS:
        fit.notes.append(
            f"not enough history: {fit.exact} gaps between calls while calls waited, need "
            f"{MIN_GAPS}; nothing fitted"
        )
        return fit
    group_names = sorted({g.queue if counts[g.queue] >= MIN_GAPS else POOLED for g in gaps_})
    index = {name: i for i, name in enumerate(group_names)}
    grp = np.array([index[g.queue if counts[g.queue] >= MIN_GAPS else POOLED] for g in gaps_])
    u = np.array([g.u_s for g in gaps_])
    handle = np.array([g.handle_s for g in gaps_])
    exact = np.array([g.exact for g in gaps_])
    cens = ~exact
    u_pos = np.maximum(u, MIN_GAP_S)

    # Start: wrap-up from the shorter half of the exact gaps, a break every hour of 10 minutes.
    n_groups = len(group_names)
    mu = np.zeros(n_groups)
    sigma = np.full(n_groups, 0.5)
    for k in range(n_groups):
        mine = u_pos[(grp == k) & exact]
        mu[k] = math.log(float(np.median(mine))) if mine.size else math.log(30.0)
    mean_b, every = 600.0, 3600.0
    gamma = np.zeros(len(gaps_))
    for iteration in range(1, max_iterations + 1):
        w = np.exp(mu[grp][:, None] + sigma[grp][:, None] * _Z[None, :])  # (n, K) quadrature
        lam = 1.0 / mean_b
        mean_w = np.exp(mu + sigma**2 / 2)
        p = -np.expm1(-(ring_delay_s + handle + mean_w[grp]) / every)
        log_u = np.log(u_pos)
        s = sigma[grp]
        m = mu[grp]
        # Exact gaps: density without a break (log-normal) and with one (W + exponential B).
        f0 = np.exp(-((log_u - m) ** 2) / (2 * s**2)) / (u_pos * s * math.sqrt(2 * math.pi))
        below = w < u[:, None]
        g1 = np.where(below, lam * np.exp(-lam * np.clip(u[:, None] - w, 0, None)), 0.0)
        f1 = g1.mean(axis=1)
        # Censored gaps: survival without a break and with one.
        c_pos = np.maximum(u, 1e-9)
        alpha = (np.log(c_pos) - m) / s
        s0 = np.where(u > 0, _upper_tail(alpha), 1.0)
        h1 = np.where(w >= u[:, None], 1.0, np.exp(-lam * np.clip(u[:, None] - w, 0, None)))
        s1 = h1.mean(axis=1)
        like0 = np.where(exact, f0, s0) * (1 - p)
        like1 = np.where(exact, f1, s1) * p
        total = like0 + like1
        gamma = np.where(total > 0, like1 / np.where(total > 0, total, 1.0), 1.0)
        # Expected log W and its square under each branch.
        log_w = np.log(w)
        weights1 = np.where(exact[:, None], g1, h1)
        norm1 = weights1.sum(axis=1)
        safe1 = np.where(norm1 > 0, norm1, 1.0)
        e1_log = np.where(norm1 > 0, (weights1 * log_w).sum(axis=1) / safe1, m)
        e1_log2 = np.where(norm1 > 0, (weights1 * log_w**2).sum(axis=1) / safe1, m**2 + s**2)
        tail = np.maximum(s0, 1e-300)
        mills = np.where(cens, np.exp(-(alpha**2) / 2) / math.sqrt(2 * math.pi) / tail, 0.0)
        mills = np.where(s0 > 1e-12, mills, np.maximum(alpha, 0.0))  # far tail: Mills ~ alpha
        e0_log = np.where(exact, log_u, m + s * mills)
        var0 = np.where(exact, 0.0, s**2 * np.clip(1 + alpha * mills - mills**2, 0, 1))
        e0_log2 = np.where(exact, log_u**2, var0 + e0_log**2)
        e_log = (1 - gamma) * e0_log + gamma * e1_log
        e_log2 = (1 - gamma) * e0_log2 + gamma * e1_log2
        # Expected B given a break: exact gaps u - E[W]; censored ones by memorylessness.
        e1_w = np.where(norm1 > 0, (weights1 * w).sum(axis=1) / safe1, mean_w[grp])
        over = np.where(w >= u[:, None], mean_b, u[:, None] - w + mean_b)
        e1_b = np.where(
            exact,
            np.maximum(u - e1_w, 0.0),
            np.where(norm1 > 0, (h1 * over).sum(axis=1) / safe1, u + mean_b),
        )
        new_mu = np.array([e_log[grp == k].mean() for k in range(n_groups)])
        new_var = np.array([e_log2[grp == k].mean() for k in range(n_groups)]) - new_mu**2
        new_sigma = np.sqrt(np.maximum(new_var, 0.01**2))
        taken = float(gamma.sum())
        new_b = max(float((gamma * e1_b).sum()) / taken, 1.0) if taken > 1e-9 else mean_b
        new_every = _best_every(gamma, ring_delay_s + handle + mean_w[grp])
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
    for k, name in enumerate(group_names):
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
        n = fit.gaps_by_queue.get(queue, sum(fit.gaps_by_queue.values()))
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
    fit = fit_gaps(gaps(fitting, roster, by_name, ring_delay_s), ring_delay_s)
    result = calibrated(roster, fit, {c.queue for c in calls})
    held_out = [c for c in calls if day_of(c.arrival_s) in set(predict_on)]
    shifts = on_days(result, set(predict_on))
    plain = replace(on_days(roster, set(predict_on)), wrap_up={}, breaks=None)
    predicted: list[CallResult] = []
    raw: list[CallResult] = []
    for n in range(replications):
        options = SimOptions(ring_delay_s=ring_delay_s, seed=seed + n)
        runs = [Scenario("calibrated", shifts, tuple(queues), settings)]
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
