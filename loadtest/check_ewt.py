"""`python -m loadtest check_ewt`: the router's EWT against Asterisk's on multi-queue traces.

Synthetic days of a contact center where queues compete for shared agents: `sales` and
`support` (support with 60 s of queue credit) have agents of their own, and flexible agents serve
both and `vip`, a queue with priority, which only they serve. Agents take log-normal wrap-up per
queue and exponential breaks, and answer after a ring delay. Each scenario is simulated through
the real engine and `loadtest.ewt` compares, on answered calls, the router's EWT at arrival with
Asterisk's moving-average hold time and with zero.

Targets (for the all-queues row of every scenario): the router's mean error at most 0.5 of
Asterisk's on all answered calls, and at most 0.7 of it on calls that queued (not offered at
once). PASS/FAIL; exit status 1 on FAIL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from loadtest import generate as gen
from loadtest.ewt import EwtFigures, ewt_figures, ewt_report
from loadtest.jsonout import run_json
from loadtest.progress import SILENT, Progress
from loadtest.report import ALL, text_report
from loadtest.simulate import Scenario, SimOptions, simulate_scenarios
from loadtest.trace import Breaks, Call, Dist, Roster
from router.domain.models import QueueConfig, Sla
from router.settings import ServiceSettings

ALL_TARGET = 0.5
QUEUED_TARGET = 0.7
MIX = {"sales": 0.45, "support": 0.4, "vip": 0.15}
AHT_S = {"sales": 240.0, "support": 300.0, "vip": 360.0}
WRAP_UP = {
    "sales": Dist("lognormal", 20.0, 0.6),
    "support": Dist("lognormal", 40.0, 0.6),
    "vip": Dist("lognormal", 30.0, 0.6),
}
BREAKS = Breaks(3600.0, Dist("exponential", 300.0))
RATE = 300.0
"""Calls per hour."""
PATIENCE_S = 300.0
RING_DELAY_S = 3.0
FLEX_EVERY = 4
"""Every fourth sales or support agent is flexible too."""


@dataclass(frozen=True)
class EwtScenario:
    """A load of the contact center: agents sized by Erlang C times `staffing`."""

    name: str
    staffing: float


SCENARIOS = (EwtScenario("busy", 0.75), EwtScenario("calm", 1.0))


def queues() -> tuple[QueueConfig, ...]:
    """sales, support (60 s credit) and vip (priority 10), each its own skill."""
    common = {"sla": Sla(threshold_s=20.0, target=0.8), "offer_timeout_s": 30.0, "wrap_up_s": 0.0}
    return (
        QueueConfig(name="sales", skills={"sales": 1}, **common),  # type: ignore[arg-type]
        QueueConfig(name="support", skills={"support": 1}, credit_s=60.0, **common),  # type: ignore[arg-type]
        QueueConfig(name="vip", skills={"vip": 1}, priority=10, **common),  # type: ignore[arg-type]
    )


def center(hours: int, seed: int, staffing: float) -> tuple[list[Call], Roster]:
    """The trace and the roster of one scenario."""
    spec = gen.TraceSpec(
        hours=hours,
        rates=(RATE,),
        mix=MIX,
        aht_s=AHT_S["sales"],
        aht_by_queue=AHT_S,
        handle_cv=0.8,
        patience_s=PATIENCE_S,
    )
    calls = gen.generate_trace(spec, seed)
    sizing = replace(spec, aht_by_queue={q: (AHT_S[q] + WRAP_UP[q].mean_s) * staffing for q in MIX})
    sized = gen.size_roster(sizing, dict.fromkeys(MIX, 20.0), dict.fromkeys(MIX, 0.8), {}, {})
    flex = dict.fromkeys(MIX, 3)
    agents = tuple(
        replace(a, skills=flex) if a.id.startswith("vip") or i % FLEX_EVERY == 0 else a
        for i, a in enumerate(sized.agents)
    )
    return calls, Roster(agents, dict(WRAP_UP), BREAKS)


def verdict(row: EwtFigures) -> tuple[bool, str]:
    """Whether the all-queues row meets both targets, and the line that says so."""
    on_all, on_queued = row.ratio(), row.ratio(queued=True)
    ok = (
        on_all is not None
        and on_all <= ALL_TARGET
        and on_queued is not None
        and on_queued <= QUEUED_TARGET
    )

    def show(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    line = (
        f"router / Asterisk: {show(on_all)} on all calls (target <= {ALL_TARGET}), "
        f"{show(on_queued)} on calls that queued (target <= {QUEUED_TARGET}): "
        f"{'PASS' if ok else 'FAIL'}"
    )
    return ok, line


async def run_check(
    hours: int = 8,
    seed: int = 1,
    scenarios: Sequence[EwtScenario] = SCENARIOS,
    progress: Progress = SILENT,
) -> tuple[str, dict[str, Any], bool]:
    """Simulate each scenario; the reports, their figures (`--json`'s `targets`, `scenarios`,
    `ok`) and whether all passed."""
    parts: list[str] = []
    checked: list[dict[str, Any]] = []
    ok = True
    settings = ServiceSettings(namespace="ewt")
    for sc in scenarios:
        calls, roster = center(hours, seed, sc.staffing)
        [result] = await simulate_scenarios(
            calls,
            [Scenario(sc.name, roster, queues(), settings)],
            SimOptions(RING_DELAY_S, seed=seed, progress=progress),
        )
        rows = ewt_figures(result)
        passed, line = verdict(next(r for r in rows if r.queue == ALL))
        ok = ok and passed
        parts.append(
            "\n".join(
                [
                    f"== {sc.name}: staffing x{sc.staffing:g} of Erlang C, {hours} h at "
                    f"{RATE:g} calls/h, ring delay {RING_DELAY_S:g} s",
                    text_report(result),
                    ewt_report(rows),
                    line,
                ]
            )
        )
        checked.append(
            {"name": sc.name, "staffing": sc.staffing, "run": run_json(result), "ok": passed}
        )
    parts.append(f"check_ewt: {'PASS' if ok else 'FAIL'}")
    doc = {
        "targets": {"all_calls": ALL_TARGET, "queued_calls": QUEUED_TARGET},
        "scenarios": checked,
        "ok": ok,
    }
    return "\n\n".join(parts), doc, ok
