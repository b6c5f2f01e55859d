"""`python -m loadtest check_calibration`: calibration on synthetic history whose truth is known.

A contact center with two queues (one with priority), dedicated and shared agents on daily
shifts, staffed short like a stressed center, and hidden unavailability: log-normal wrap-up per
queue and exponential breaks. Its days are simulated with the hidden figures; the history that
comes out (each call's wait, outcome and agent) is imported — as a trace with history fields, or
written in the Anonymous Bank or Asterisk `queue_log` format and read back by their importers
(whole seconds; patience estimated by Kaplan-Meier, roster inferred from who served when), as
real history would be. `calibrate` then fits on the first days and predicts the last.

PASS when every fitted figure (wrap-up mean per queue, mean time between breaks, mean break) is
within 20 % of the truth and the prediction of the held-out day is within 5 points of service
level (the headline formula) and 20 % of ASA, per queue and for all queues; exit status 1 on
FAIL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from loadtest import generate as gen
from loadtest import importers
from loadtest.calibrate import (
    DAY_S,
    Calibration,
    Compared,
    calibrate,
    calibration_report,
    compared_rows,
)
from loadtest.importers import Imported, Record
from loadtest.jsonout import calibration_json
from loadtest.progress import SILENT, Progress
from loadtest.report import table
from loadtest.simulate import Scenario, SimOptions, SimResult, simulate_scenarios
from loadtest.trace import Breaks, Call, Dist, Roster, RosterAgent, write_roster, write_trace
from router.domain.erlang import agents_required
from router.domain.models import QueueConfig, Sla
from router.settings import ServiceSettings

FORMATS = ("trace", "anonymous-bank", "queue-log")
FIGURE_SHARE = 0.20
SL_POINTS = 5.0
ASA_SHARE = 0.20
HOURS = (0,) * 8 + (160, 280, 320, 300, 240, 260, 300, 280, 220, 160) + (0,) * 6
"""Calls per hour of each day: 08:00 to 18:00."""
MIX = {"support": 0.6, "billing": 0.4}
AHT_S = 200.0
PATIENCE_S = 240.0
RING_DELAY_S = 2.0
TRUTH_WRAP_UP = {"support": Dist("lognormal", 30.0, 0.5), "billing": Dist("lognormal", 60.0, 0.5)}
TRUTH_BREAKS = Breaks(2400.0, Dist("exponential", 400.0))
FIRST_DAY = date(2024, 3, 4)
SHARED_EVERY = 3
"""Every third agent serves both queues."""
EARLY, LATE = (8, 16), (10, 18)
"""Shifts, hours of the day."""


def queues() -> tuple[QueueConfig, ...]:
    """The two queues: billing before support (priority), 80 % in 20 s, no configured wrap-up."""
    common = {"sla": Sla(threshold_s=20.0, target=0.8), "offer_timeout_s": 30.0, "wrap_up_s": 0.0}
    return (
        QueueConfig(name="support", skills={"support": 1}, **common),  # type: ignore[arg-type]
        QueueConfig(name="billing", skills={"billing": 1}, priority=5, **common),  # type: ignore[arg-type]
    )


def truth(days: int, seed: int, staffing: float) -> tuple[list[Call], Roster]:
    """The trace of `days` days and the roster with the hidden unavailability: every day an
    early (08-16) and a late (10-18) shift, as many agents per queue as Erlang C needs each hour
    for handle time plus wrap-up, times `staffing` (breaks not planned for); every third agent
    serves both queues."""
    spec = gen.TraceSpec(
        hours=24 * days, rates=HOURS, mix=MIX, aht_s=AHT_S, handle_cv=0.8, patience_s=PATIENCE_S
    )
    calls = gen.generate_trace(spec, seed)
    agents: list[RosterAgent] = []
    for queue in MIX:
        busy = (AHT_S + TRUTH_WRAP_UP[queue].mean_s) * staffing
        need = [agents_required(r * MIX[queue] / 3600, busy, 20.0, 0.8) for r in HOURS]
        early = max(need[8:10])
        late = max(*need[16:18], max(need[10:16]) - early)
        for name, count, (start, end) in (("e", early, EARLY), ("l", late, LATE)):
            for i in range(count):
                shifts = tuple(
                    (d * DAY_S + start * 3600, d * DAY_S + end * 3600) for d in range(days)
                )
                agents.append(RosterAgent(f"{queue}-{name}{i + 1:02d}", {queue: 3}, shifts=shifts))
    shared = tuple(
        replace(a, skills=dict.fromkeys(MIX, 3)) if i % SHARED_EVERY == 0 else a
        for i, a in enumerate(agents)
    )
    return calls, Roster(shared, dict(TRUTH_WRAP_UP), TRUTH_BREAKS)


def records_of(result: SimResult) -> list[Record]:
    """The history of a run as a source records it."""
    return [
        Record(
            id=r.call.id,
            arrival_s=r.call.arrival_s,
            queue=r.call.queue,
            wait_s=r.wait_s or 0.0,
            handle_s=r.call.handle_s if r.status == "answered" else None,
            abandoned=r.status == "abandoned",
            agent=r.agent_id if r.status == "answered" else None,
        )
        for r in result.calls
        if r.status in ("answered", "abandoned")
    ]


def _clock(t: float) -> str:
    t = round(t) % int(DAY_S)
    return f"{t // 3600}:{t // 60 % 60:02d}:{t % 60:02d}"


def bank_lines(records: Sequence[Record]) -> list[str]:
    """The history in the Anonymous Bank format (whole seconds)."""
    lines = ["\t".join(importers.BANK_COLUMNS)]
    for n, r in enumerate(sorted(records, key=lambda r: r.arrival_s), start=1):
        arrival, wait = round(r.arrival_s), round(r.wait_s)
        day = FIRST_DAY + timedelta(days=int(arrival // DAY_S))
        answered = r.handle_s is not None
        handle = round(r.handle_s) if r.handle_s is not None else 0
        start = arrival + wait
        cells = [
            "AA0101", str(n), "0", "0", r.queue.upper(), day.strftime("%y%m%d"),
            _clock(arrival - 5), _clock(arrival), "5", _clock(arrival), _clock(start), str(wait),
            "AGENT" if answered else "HANG",
            _clock(start) if answered else "0:00:00",
            _clock(start + handle) if answered else "0:00:00",
            str(handle), r.agent or "NO_SERVER",
        ]  # fmt: skip
        lines.append("\t".join(cells))
    return lines


def queue_log_lines(records: Sequence[Record]) -> list[str]:
    """The history as an Asterisk `queue_log` (whole seconds; days in UTC)."""
    origin = datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, tzinfo=UTC).timestamp()
    events: list[tuple[int, int, str]] = []
    for n, r in enumerate(records):
        enter, wait = int(origin) + round(r.arrival_s), round(r.wait_s)
        callid, q = f"{enter}.{n}", r.queue
        events.append((enter, 0, f"{enter}|{callid}|{q}|NONE|ENTERQUEUE||+358400000000|1"))
        if r.handle_s is not None and r.agent is not None:
            handle = round(r.handle_s)
            at, agent = enter + wait, r.agent
            events.append((at, 1, f"{at}|{callid}|{q}|{agent}|CONNECT|{wait}|{callid}.1|0"))
            done = f"{at + handle}|{callid}|{q}|{agent}|COMPLETECALLER|{wait}|{handle}|1"
            events.append((at + handle, 2, done))
        else:
            at = enter + wait
            events.append((at, 2, f"{at}|{callid}|{q}|NONE|ABANDON|1|1|{wait}"))
    return [line for _, _, line in sorted(events)]


def imported(records: list[Record], fmt: str, seed: int) -> Imported:
    """History imported as from a real source: straight to a trace, or through a format."""
    if fmt == "trace":
        return importers.finish(records, [], seed)
    if fmt == "anonymous-bank":
        return importers.anonymous_bank(bank_lines(records), seed=seed)
    return importers.queue_log(queue_log_lines(records), seed=seed)


def export(out: Path, fmt: str, data: Imported) -> None:
    """Write the imported history and roster (to calibrate them by hand)."""
    out.mkdir(parents=True, exist_ok=True)
    write_trace(out / f"history-{fmt}.jsonl", data.calls)
    write_roster(out / f"roster-{fmt}.json", data.roster)


@dataclass(frozen=True)
class Verdict:
    """One checked figure."""

    name: str
    truth: float | None
    got: float | None
    error: float | None
    """Relative error (figures, ASA) or points (service level)."""
    limit: float
    points: bool = False

    @property
    def ok(self) -> bool:
        """Within the limit."""
        return self.error is not None and abs(self.error) <= self.limit

    def cells(self) -> list[str]:
        """Its table row."""

        def num(x: float | None) -> str:
            return "-" if x is None else f"{x:.1f}"

        if self.points:
            err = "-" if self.error is None else f"{self.error:+.1f} pt"
            lim = f"{self.limit:g} pt"
        else:
            err = "-" if self.error is None else f"{100 * self.error:+.1f}%"
            lim = f"{100 * self.limit:.0f}%"
        return [
            self.name,
            num(self.truth),
            num(self.got),
            err,
            lim,
            "PASS" if self.ok else "FAIL",
        ]


def _share(got: float | None, want: float) -> float | None:
    return None if got is None else got / want - 1


def figure_verdicts(cal: Calibration) -> list[Verdict]:
    """Each fitted figure against the truth."""
    out = []
    for queue, dist in sorted(TRUTH_WRAP_UP.items()):
        fitted = cal.fit.wrap_up_of(queue)
        got = None if fitted is None else fitted.mean_s
        out.append(
            Verdict(
                f"wrap-up {queue} mean s", dist.mean_s, got, _share(got, dist.mean_s), FIGURE_SHARE
            )
        )
    breaks = cal.fit.breaks
    every = None if breaks is None else breaks.every_s
    mean = None if breaks is None else breaks.duration.mean_s
    want_every, want_mean = TRUTH_BREAKS.every_s, TRUTH_BREAKS.duration.mean_s
    out.append(
        Verdict("breaks every s", want_every, every, _share(every, want_every), FIGURE_SHARE)
    )
    out.append(Verdict("break mean s", want_mean, mean, _share(mean, want_mean), FIGURE_SHARE))
    return out


def prediction_verdicts(rows: Sequence[Compared]) -> list[Verdict]:
    """Service level and ASA of the held-out days, per queue and for all queues."""
    out = []
    for r in rows:
        sl_hist, sl_pred = r.sl(r.history), r.sl(r.predicted)
        out.append(
            Verdict(
                f"{r.label} SL %",
                None if sl_hist is None else 100 * sl_hist,
                None if sl_pred is None else 100 * sl_pred,
                r.sl_error(),
                SL_POINTS,
                points=True,
            )
        )
        out.append(
            Verdict(
                f"{r.label} ASA s",
                r.history.asa_s,
                r.predicted.asa_s,
                r.asa_error(),
                ASA_SHARE,
            )
        )
    return out


def verdict_table(verdicts: Sequence[Verdict]) -> str:
    """The checked figures, truth (or history) against fitted (or predicted)."""
    header = ["figure", "truth/history", "fitted/predicted", "error", "within", "verdict"]
    return table(header, [v.cells() for v in verdicts])


async def run_check(
    days: int = 6,
    seed: int = 1,
    staffing: float = 0.5,
    formats: Sequence[str] = FORMATS,
    replications: int = 2,
    out: Path | None = None,
    progress: Progress = SILENT,
) -> tuple[str, dict[str, Any], bool]:
    """Generate, simulate the truth, import, calibrate and predict; the report, its figures
    (`--json`'s `truth`, `formats`, `ok`) and whether it passed."""
    if days < 2:
        raise ValueError("--days must be at least 2: fit on some, predict the last")
    calls, hidden = truth(days, seed, staffing)
    settings = ServiceSettings(namespace="check")
    options = SimOptions(RING_DELAY_S, seed=seed, progress=progress)
    [history] = await simulate_scenarios(
        calls, [Scenario("truth", hidden, queues(), settings)], options
    )
    records = records_of(history)
    head = (
        f"truth: {len(calls)} calls over {days} days, {len(hidden.agents)} agents "
        f"(1 in {SHARED_EVERY} in both queues), staffing x{staffing:g}, ring delay "
        f"{RING_DELAY_S:g} s; wrap-up "
        + ", ".join(
            f"{q} log-normal mean {d.mean_s:g} s cv {d.cv:g}" for q, d in TRUTH_WRAP_UP.items()
        )
        + f"; breaks every {TRUTH_BREAKS.every_s:g} s of shift, exponential mean "
        f"{TRUTH_BREAKS.duration.mean_s:g} s"
    )
    parts, ok = [head], True
    checked: list[dict[str, Any]] = []
    for fmt in formats:
        progress.context = fmt
        progress.start("import")
        data = imported(records, fmt, seed)
        if out is not None:
            export(out, fmt, data)
        cal = await calibrate(
            data.calls,
            data.roster,
            queues(),
            settings,
            fit_days=set(range(days - 1)),
            predict_days={days - 1},
            ring_delay_s=RING_DELAY_S,
            seed=seed,
            replications=replications,
            progress=progress,
        )
        verdicts = figure_verdicts(cal) + prediction_verdicts(compared_rows(cal))
        passed = all(v.ok for v in verdicts)
        ok = ok and passed
        parts += [
            f"== {fmt}: {len(data.calls)} calls imported, "
            f"{len(data.roster.agents)} agents inferred",
            calibration_report(cal),
            verdict_table(verdicts),
            f"{fmt}: {'PASS' if passed else 'FAIL'}",
        ]
        checked.append(
            {
                "format": fmt,
                "calls": len(data.calls),
                "agents": len(data.roster.agents),
                "calibration": calibration_json(cal, DAY_S / 24),
                "verdicts": [{**asdict(v), "ok": v.ok} for v in verdicts],
                "ok": passed,
            }
        )
    progress.context = ""
    parts.append(f"check_calibration: {'PASS' if ok else 'FAIL'}")
    doc = {
        "truth": {
            "calls": len(calls),
            "days": days,
            "agents": len(hidden.agents),
            "staffing": staffing,
            "ring_delay_s": RING_DELAY_S,
            "wrap_up": {q: d.to_json() for q, d in TRUTH_WRAP_UP.items()},
            "breaks": TRUTH_BREAKS.to_json(),
        },
        "formats": checked,
        "ok": ok,
    }
    return "\n\n".join(parts), doc, ok
