"""`python -m loadtest.check_replay`: does `replay` at S x agree with `simulate`? (issue 6)

Generates a trace and an Erlang C sized roster for the configured queues, runs `simulate` on them
in virtual time, starts a real `acd-router serve --clock-speed S` (embedded redis-server,
throwaway API keys), replays the same trace against it with the same ring delay, and prints both
reports and, per queue side by side, offered, answered, abandoned, the service level of each
formula (PASS within 3 points of the simulation) and ASA (PASS within 15 %). Exit status 0 when
every queue passes, 1 otherwise, 2 on an error. It stops by itself: the replay at its drain bound
at the latest, the service in any case. About (trace length + last calls) / S of wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from loadtest.charts import CHART_NAMES, charts, write_chart, write_charts
from loadtest.generate import TraceSpec, config_roster, generate_trace, parse_mix, parse_rates
from loadtest.jsonout import document, replay_json, run_json, write_json
from loadtest.replay import ReplayError, ReplayOptions, ReplayResult, replay, replay_report
from loadtest.report import ALL, QueueFigures, run_figures, table, text_report
from loadtest.served import Served, clean_env, serve_args
from loadtest.simulate import Scenario, SimOptions, SimResult, check_queues, simulate_scenarios
from loadtest.trace import Call, Roster, TraceError, write_roster, write_trace
from router.config import Config, Role, load_config
from router.domain.stats import FORMULAS
from router.errors import ConfigError

SL_POINTS = 0.03
"""A service level agrees within this many (fraction) points of the simulation's."""
ASA_SHARE = 0.15
"""ASA agrees within this share of the simulation's."""
SL_NAMES = {
    "answered": "SL ans",
    "abandons_failed": "SL ab-fail",
    "abandons_excluded": "SL ab-excl",
    "abandons_met": "SL ab-met",
}


@dataclass(frozen=True)
class Verdict:
    """One figure of one queue in both runs; `ok` is None for a figure without a criterion."""

    queue: str
    figure: str
    replay: float | None
    simulate: float | None
    ok: bool | None

    @property
    def percent(self) -> bool:
        """A service level (a fraction shown in percent)."""
        return self.figure.startswith("SL")

    def show(self, value: float) -> str:
        """A value of this figure: a count, a percentage or seconds."""
        if self.ok is None:
            return f"{value:.0f}"
        return f"{100 * value:.1f}" if self.percent else f"{value:.2f}"

    def cells(self) -> list[str]:
        """Cells of its row: queue, figure, both values, the difference, the limit, the verdict."""
        diff = "-"
        if self.replay is not None and self.simulate is not None:
            d = self.replay - self.simulate
            diff = ("+" if d >= 0 else "-") + self.show(abs(d))
            if not self.percent and self.ok is not None and self.simulate:
                diff += f" ({100 * d / self.simulate:+.0f}%)"
        limit = f"{100 * SL_POINTS:.0f} pt" if self.percent else f"{100 * ASA_SHARE:.0f}%"
        return [
            self.queue,
            self.figure + (" %" if self.percent else ""),
            "-" if self.replay is None else self.show(self.replay),
            "-" if self.simulate is None else self.show(self.simulate),
            diff,
            "" if self.ok is None else limit,
            "" if self.ok is None else "PASS" if self.ok else "FAIL",
        ]


def within(replayed: float | None, simulated: float | None, limit: float) -> bool:
    """Both absent, or both present and at most `limit` apart."""
    if replayed is None or simulated is None:
        return replayed is None and simulated is None
    return abs(replayed - simulated) <= limit + 1e-9


def verdicts(replayed: SimResult, simulated: SimResult) -> list[Verdict]:
    """Per queue: counts (no criterion), each service level (3 points) and ASA (15 %)."""
    mine = {f.queue: f for f in run_figures(replayed)}
    theirs = {f.queue: f for f in run_figures(simulated)}
    out: list[Verdict] = []
    for queue in [*mine, *(q for q in theirs if q not in mine)]:  # queues, then all queues
        r, s = mine.get(queue), theirs.get(queue)

        def get(f: QueueFigures | None, name: str) -> float | None:
            return None if f is None else float(getattr(f, name))

        for name in ("offered", "answered", "abandoned"):
            out.append(Verdict(queue, name, get(r, name), get(s, name), None))
        for formula in FORMULAS:
            a = None if r is None else r.service_level[formula]
            b = None if s is None else s.service_level[formula]
            out.append(Verdict(queue, SL_NAMES[formula], a, b, within(a, b, SL_POINTS)))
        a, b = (None if r is None else r.asa_s), (None if s is None else s.asa_s)
        out.append(Verdict(queue, "ASA s", a, b, within(a, b, ASA_SHARE * (b or 0.0))))
    return out


def comparison(rows: Sequence[Verdict]) -> str:
    """The side-by-side table and the overall verdict."""
    header = ["queue", "figure", "replay", "simulate", "diff", "within", "verdict"]
    failed = sorted({v.queue for v in rows if v.ok is False})
    queues = {v.queue for v in rows} - {ALL}
    last = f"FAIL: {', '.join(failed)}" if failed else f"PASS: all {len(queues)} queues"
    return "\n".join([table(header, [v.cells() for v in rows]), last])


def throwaway_keys(config: Config) -> tuple[dict[str, str], str]:
    """A fresh secret for every key variable of the configuration; and a platform (or admin)
    key's secret for the replay."""
    env = {k.env: secrets.token_urlsafe(18) for k in config.keys if k.env}
    for role in (Role.PLATFORM, Role.ADMIN):
        for k in config.keys:
            if k.role is role and k.env:
                return env, env[k.env]
    raise ConfigError("the configuration has no platform or admin key read from a variable", [])


@dataclass(frozen=True)
class Check:
    """The two runs, the replay's wall time, the machine's load average before and after it."""

    simulated: SimResult
    replayed: ReplayResult
    wall_s: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]


async def run_check(
    config_path: str,
    calls: Sequence[Call],
    roster: Roster,
    speed: float,
    ring_delay_s: float,
    progress: TextIO | None = None,
) -> Check:
    """`simulate`, then `replay` against a `serve --clock-speed speed` started and stopped here."""
    config = load_config(config_path, env={})
    scenario = Scenario("simulate", roster, config.queues, config.service)
    [simulated] = await simulate_scenarios(calls, [scenario], SimOptions(ring_delay_s=ring_delay_s))
    env, key = throwaway_keys(config)
    args, _ = serve_args("--config", config_path, "--clock-speed", f"{speed:g}", "--redis-url", "")
    served = Served(args, env=clean_env(env))
    try:
        url = await asyncio.to_thread(served.wait_ready)
        before = os.getloadavg()
        start = time.monotonic()
        options = ReplayOptions(
            url=url,
            key=key,
            speed=speed,
            ring_delay_s=ring_delay_s,
            progress=progress,
        )
        replayed = await replay(calls, roster, options)
        wall = time.monotonic() - start
        after = os.getloadavg()
    finally:
        await asyncio.to_thread(served.kill)
    return Check(simulated, replayed, wall, before, after)


def parser() -> argparse.ArgumentParser:
    """Options: the trace to generate, the configuration, the speed and ring delay, outputs."""
    p = argparse.ArgumentParser(prog="python -m loadtest.check_replay", description=__doc__)
    p.add_argument("--config", default="config/acd.toml")
    p.add_argument("--hours", type=int, default=1)
    p.add_argument("--rate-profile", default="600", help="calls/hour per hour")
    p.add_argument("--queues", default="support_en=0.6,billing=0.3,vip=0.1", help="queue mix")
    p.add_argument("--aht", type=float, default=180.0, help="mean handle time, s")
    p.add_argument("--patience", type=float, default=180.0, help="mean patience, s")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--speed", type=float, default=60.0)
    p.add_argument("--ring-delay", type=float, default=2.0, help="trace s before each accept")
    p.add_argument("--out", help="a folder for trace.jsonl and roster.json (to rerun by hand)")
    p.add_argument("--svg", help="write a chart of both runs as a standalone SVG file here")
    p.add_argument("--chart", choices=CHART_NAMES, default="busy", help="the chart --svg writes")
    p.add_argument("--svg-dir", help="write every chart of both runs as DIR/NAME.svg")
    p.add_argument("--json", metavar="FILE", help="write every figure as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def report(check: Check) -> str:
    """Both reports, the replay's wall time and the machine load, then the comparison."""
    load = "/".join(f"{x:.2f}" for x in check.load_before)
    load_after = "/".join(f"{x:.2f}" for x in check.load_after)
    return "\n\n".join(
        [
            text_report(check.simulated),
            replay_report(check.replayed),
            f"replay wall time {check.wall_s:.1f} s at {check.replayed.speed:g}x; load average "
            f"(1/5/15 min) {load} before, {load_after} after, on {os.cpu_count()} CPUs",
            comparison(verdicts(check.replayed.sim, check.simulated)),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Generate, simulate, serve, replay, compare; 0 when every queue passes."""
    a = parser().parse_args(argv)
    try:
        if not a.speed > 0:
            raise ValueError("--speed must be > 0")
        spec = TraceSpec(
            hours=a.hours,
            rates=parse_rates(a.rate_profile),
            mix=parse_mix(a.queues),
            aht_s=a.aht,
            patience_s=a.patience,
        )
        config = load_config(a.config, env={})
        throwaway_keys(config)  # fail before generating anything
        calls = generate_trace(spec, a.seed)
        check_queues(calls, {q.name: q for q in config.queues})
        roster = config_roster(spec, config.queues)
        if a.out:
            Path(a.out).mkdir(parents=True, exist_ok=True)
            write_trace(Path(a.out) / "trace.jsonl", calls)
            write_roster(Path(a.out) / "roster.json", roster)
        if a.json != "-":
            print(f"{len(calls)} calls over {a.hours} h, {len(roster.agents)} agents", flush=True)
        check = asyncio.run(
            run_check(
                a.config, calls, roster, a.speed, a.ring_delay, None if a.quiet else sys.stderr
            )
        )
        return 0 if outputs(a, check) else 1
    except (TraceError, ConfigError, ReplayError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except AssertionError as error:  # the service did not start (loadtest.served.Served)
        print(f"error: acd-router serve: {error}", file=sys.stderr)
        return 2


def outputs(a: argparse.Namespace, check: Check) -> bool:
    """The report (unless `--json -`), the charts and the JSON; whether every queue passed."""
    lines = [report(check)]
    rendered = charts([check.replayed.sim, check.simulated]) if a.svg or a.svg_dir else {}
    if a.svg:
        write_chart(a.svg, rendered, a.chart)
        lines.append(f"{a.svg}: {a.chart} chart")
    if a.svg_dir:
        lines += [f"{path}: chart" for path in write_charts(a.svg_dir, rendered)]
    rows = verdicts(check.replayed.sim, check.simulated)
    ok = not any(v.ok is False for v in rows)
    if a.json:
        skip = ("json", "svg", "chart", "svg_dir", "quiet")
        doc = document(
            "check_replay",
            {k: v for k, v in vars(a).items() if k not in skip},
            simulated=run_json(check.simulated),
            replayed=replay_json(check.replayed),
            wall_s=check.wall_s,
            comparison=[{**asdict(v), "ok": v.ok} for v in rows],
            ok=ok,
        )
        write_json(a.json, doc)
        lines.append(f"{a.json}: figures as JSON")
    if a.json != "-":
        print("\n\n".join(lines))
    return ok


if __name__ == "__main__":
    sys.exit(main())
