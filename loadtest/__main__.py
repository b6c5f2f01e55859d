"""`python -m loadtest SUBCOMMAND ...`: the command line of the load tester (see --help)."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest import generate as gen
from loadtest import importers
from loadtest.calibrate import calibrate, calibration_report, parse_days
from loadtest.charts import CHART_NAMES, charts, write_chart, write_charts
from loadtest.check_calibration import FORMATS, run_check
from loadtest.check_ewt import run_check as run_ewt_check
from loadtest.ewt import ewt_figures, ewt_report
from loadtest.jsonout import (
    calibration_json,
    comparison_json,
    document,
    replay_json,
    run_json,
    write_json,
)
from loadtest.page import html_page
from loadtest.progress import EVERY_S, Progress
from loadtest.replay import ReplayError, ReplayOptions, replay, replay_html, replay_report
from loadtest.report import compare_report, text_report
from loadtest.simulate import (
    Scenario,
    SimOptions,
    SimResult,
    add_agents,
    scale_roster,
    simulate_scenarios,
)
from loadtest.trace import TraceError, load_roster, load_trace, write_roster, write_trace
from router.config import load_config
from router.errors import ConfigError


def _bounded(kind: Callable[[str], Any], low: float, strict: bool) -> Callable[[str], Any]:
    """An argument type: a finite number of `kind` above `low` (at least `low` unless strict);
    anything else is argparse's usage error (exit 2), never a traceback further on."""

    def parse(text: str) -> Any:
        value = kind(text)
        if not math.isfinite(value) or value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low:g}")
        return value

    parse.__name__ = kind.__name__  # argparse's "invalid int value" for what is no number
    return parse


POSITIVE = _bounded(float, 0, strict=True)
NON_NEGATIVE = _bounded(float, 0, strict=False)
POSITIVE_INT = _bounded(int, 0, strict=True)


def parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    p = argparse.ArgumentParser(prog="python -m loadtest")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="a synthetic trace and an Erlang C sized roster")
    g.add_argument("--hours", type=POSITIVE_INT, default=24)
    g.add_argument("--rate-profile", default="400", help="calls/hour per hour: 120,300,... ")
    g.add_argument("--queues", default="support", help="queue mix: support=0.7,billing=0.3")
    g.add_argument("--aht", type=POSITIVE, default=180.0, help="mean handle time, s")
    g.add_argument(
        "--handle-cv", type=NON_NEGATIVE, default=1.0, help="log-normal CV of handle time"
    )
    g.add_argument("--handle-dist", choices=("lognormal", "exponential"), default="lognormal")
    g.add_argument("--patience", type=POSITIVE, help="mean exponential patience, s (none: never)")
    g.add_argument("--wrap-up", type=NON_NEGATIVE, help="wrap-up per call, s (none: the queue's)")
    g.add_argument("--config", help="queue skills, SLA and wrap-up for the roster")
    g.add_argument("--sla-threshold", type=POSITIVE, default=20.0)
    g.add_argument("--sla-target", type=POSITIVE, default=0.8)
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--out", required=True)
    g.add_argument("--roster-out")
    progress_options(g)

    i = sub.add_parser("import", help="a real trace to the trace format, with its roster")
    i.add_argument("format", choices=("anonymous-bank", "queue-log"))
    i.add_argument("source")
    i.add_argument("--out", required=True)
    i.add_argument("--roster-out")
    i.add_argument("--config-out", help="a configuration with one queue per queue seen")
    i.add_argument("--seed", type=int, default=1)
    i.add_argument(
        "--day",
        action="append",
        default=[],
        help="only this day, YYYY-MM-DD or a range YYYY-MM-DD..YYYY-MM-DD (repeatable)",
    )
    i.add_argument("--from", dest="start", default="00:00", help="each day from HH:MM")
    i.add_argument("--to", dest="end", default="24:00", help="each day until HH:MM (excluded)")
    progress_options(i)

    s = sub.add_parser("simulate", help="drive a trace through the engine in virtual time")
    s.add_argument("trace")
    s.add_argument("--roster", required=True)
    s.add_argument("--config", required=True)
    s.add_argument("--ring-delay", type=NON_NEGATIVE, default=0.0)
    s.add_argument("--seed", type=int, default=1, help="of the roster's wrap-up and breaks")
    s.add_argument("--scale-agents", type=POSITIVE, help="what-if: this many times the agents")
    s.add_argument("--add-agents", type=POSITIVE_INT, help="what-if: this many more agents")
    s.add_argument("--add-like", help="the agent the added ones copy (default: spread)")
    s.add_argument("--compare-config", help="what-if: this configuration instead")
    chart_options(s)
    json_option(s)
    progress_options(s)

    p_replay = sub.add_parser("replay", help="play a trace over HTTP against a running service")
    p_replay.add_argument("trace")
    p_replay.add_argument("--roster", required=True)
    p_replay.add_argument("--url", required=True, help="the service, e.g. http://127.0.0.1:8080")
    p_replay.add_argument("--key", help="API key (platform or admin); default: $ACD_KEY")
    p_replay.add_argument(
        "--speed", type=float, required=True, help="S x real time (serve --clock-speed S)"
    )
    p_replay.add_argument(
        "--ring-delay", type=NON_NEGATIVE, default=0.0, help="trace s before accepts"
    )
    p_replay.add_argument(
        "--drain", type=float, default=1800.0, help="trace s after the last arrival at most"
    )
    p_replay.add_argument("--id-prefix", default="", help="prepended to interaction ids")
    p_replay.add_argument("--seed", type=int, default=1, help="of the roster's wrap-up and breaks")
    p_replay.add_argument("--quiet", action="store_true", help="no progress line")
    chart_options(p_replay)
    json_option(p_replay)

    c = sub.add_parser("calibrate", help="fit unrecorded unavailability, predict held-out days")
    c.add_argument("trace", help="a trace with history (wait_s, outcome, agent_id)")
    c.add_argument("--roster", required=True)
    c.add_argument("--config", required=True)
    c.add_argument("--fit-days", help="trace days to fit on, e.g. 0-3 (default: all but the last)")
    c.add_argument("--predict-days", help="trace days to predict, e.g. 4 (default: the last)")
    c.add_argument("--ring-delay", type=NON_NEGATIVE, default=0.0, help="s from offer to answer")
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--replications", type=POSITIVE_INT, default=1, help="prediction runs averaged")
    c.add_argument("--interval", type=POSITIVE, default=60.0, help="report interval, minutes")
    c.add_argument("--roster-out", help="write the roster with the fitted figures here")
    json_option(c)
    progress_options(c)

    k = sub.add_parser("check_calibration", help="calibration on synthetic history: PASS/FAIL")
    k.add_argument(
        "--days", type=POSITIVE_INT, default=6, help="simulated days; the last is predicted"
    )
    k.add_argument("--seed", type=int, default=1)
    k.add_argument("--staffing", type=POSITIVE, default=0.5, help="x the Erlang C agents")
    k.add_argument("--format", choices=(*FORMATS, "all"), default="all")
    k.add_argument("--replications", type=POSITIVE_INT, default=2, help="prediction runs averaged")
    k.add_argument("--out", help="a folder for the imported histories and rosters")
    json_option(k)
    progress_options(k)

    e = sub.add_parser("check_ewt", help="the router's EWT vs Asterisk's: PASS/FAIL")
    e.add_argument("--hours", type=POSITIVE_INT, default=8)
    e.add_argument("--seed", type=int, default=1)
    json_option(e)
    progress_options(e)

    r = sub.add_parser("reference", help="simulate vs Erlang C, FIFO recursion and ciw")
    r.add_argument("--calls", type=int, default=50_000, help="calls without abandons")
    r.add_argument("--patience-calls", type=int, default=10_000, help="calls with abandons")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument(
        "--spread-seeds", type=int, default=100, help="seeds of the sampling spread (0: none)"
    )
    json_option(r)
    progress_options(r)
    return p


def chart_options(p: argparse.ArgumentParser) -> None:
    """`--html`, `--svg FILE --chart NAME` and `--svg-dir DIR`: the report and charts of the one
    run."""
    p.add_argument("--html", help="write a self-contained HTML report with charts here")
    p.add_argument("--svg", help="write one chart (--chart) as a standalone SVG file here")
    p.add_argument("--chart", choices=CHART_NAMES, default="busy", help="the chart --svg writes")
    p.add_argument("--svg-dir", help="write every chart as DIR/NAME.svg")


def json_option(p: argparse.ArgumentParser) -> None:
    """`--json FILE`: every figure as JSON (`-`: on stdout, instead of the text report)."""
    p.add_argument(
        "--json", metavar="FILE", help="write every figure as JSON here (-: stdout, no text)"
    )


def progress_options(p: argparse.ArgumentParser) -> None:
    """`--quiet` and `--progress-every`: the progress lines on stderr."""
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument(
        "--progress-every",
        type=float,
        default=EVERY_S,
        metavar="S",
        help=f"a progress line on stderr every S seconds (default {EVERY_S:g})",
    )


@dataclass
class Outcome:
    """A command's text report, its figures for `--json`, and whether its check passed."""

    text: str
    doc: dict[str, Any] | None = None
    ok: bool = True
    files: list[str] = field(default_factory=list)
    """A line for each file written besides the trace or roster."""


def cmd_generate(a: argparse.Namespace, progress: Progress) -> Outcome:
    """Write a trace (and a roster)."""
    spec = gen.TraceSpec(
        hours=a.hours,
        rates=gen.parse_rates(a.rate_profile),
        mix=gen.parse_mix(a.queues),
        aht_s=a.aht,
        handle_cv=a.handle_cv,
        handle_dist=a.handle_dist,
        patience_s=a.patience,
        wrap_up_s=a.wrap_up,
    )
    calls = gen.generate_trace(spec, a.seed, progress)
    progress.start(f"write {a.out}", len(calls))
    write_trace(a.out, progress.track(calls))
    out = f"{a.out}: {len(calls)} calls over {a.hours} h"
    if a.roster_out:
        progress.start("roster (Erlang C)")
        queues = load_config(a.config).queues if a.config else ()
        roster = gen.config_roster(spec, queues, a.sla_threshold, a.sla_target)
        write_roster(a.roster_out, roster)
        out += f"\n{a.roster_out}: {len(roster.agents)} agents"
    return Outcome(out)


def cmd_import(a: argparse.Namespace, progress: Progress) -> Outcome:
    """Convert a real trace."""
    text = Path(a.source).read_text(encoding="utf-8", errors="replace").splitlines()
    reader = importers.anonymous_bank if a.format == "anonymous-bank" else importers.queue_log
    selection = importers.Selection(
        frozenset(d for text_day in a.day for d in importers.parse_day(text_day)),
        importers.parse_clock(a.start),
        importers.parse_clock(a.end),
    )
    if selection.end_s <= selection.start_s:
        raise ValueError("--to must be after --from")
    progress.start(f"read {a.source}", len(text), "lines")
    imported = reader(text, seed=a.seed, selection=selection, progress=progress)
    if not imported.calls:
        notes = "; ".join(imported.notes[:5]) + ("; ..." if len(imported.notes) > 5 else "")
        raise ValueError(f"{a.source}: no call imported as {a.format} ({notes or 'no line'})")
    progress.start(f"write {a.out}", len(imported.calls))
    write_trace(a.out, progress.track(imported.calls))
    lines = [f"{a.out}: {len(imported.calls)} calls", *imported.notes]
    if a.roster_out:
        write_roster(a.roster_out, imported.roster)
        lines.append(f"{a.roster_out}: {len(imported.roster.agents)} agents")
    if a.config_out:
        Path(a.config_out).write_text(importers.config_text(imported), encoding="utf-8")
        lines.append(f"{a.config_out}: {len({c.queue for c in imported.calls})} queues")
    return Outcome("\n".join(lines))


def chart_files(a: argparse.Namespace, runs: Sequence[SimResult]) -> dict[str, str]:
    """The runs' charts, rendered once, when an option writes any."""
    return charts(runs) if a.html or a.svg or a.svg_dir else {}


def write_chart_files(a: argparse.Namespace, rendered: dict[str, str]) -> list[str]:
    """`--svg` and `--svg-dir`; a line for each file written."""
    lines = []
    if a.svg:
        write_chart(a.svg, rendered, a.chart)
        lines.append(f"{a.svg}: {a.chart} chart")
    if a.svg_dir:
        lines += [f"{path}: chart" for path in write_charts(a.svg_dir, rendered)]
    return lines


def cmd_simulate(a: argparse.Namespace, progress: Progress) -> Outcome:
    """Run the trace (and the what-if) and report."""
    calls = load_trace(a.trace)
    roster = load_roster(a.roster)
    config = load_config(a.config)
    runs = [Scenario("baseline", roster, config.queues, config.service)]
    changed = roster
    what: list[str] = []
    if a.scale_agents is not None:
        changed = scale_roster(changed, a.scale_agents)
        what.append(f"agents x{a.scale_agents:g}")
    if a.add_like and not a.add_agents:
        raise ValueError("--add-like names the agent the added ones copy: give --add-agents too")
    if a.add_agents:
        changed = add_agents(changed, a.add_agents, a.add_like)
        what.append(f"+{a.add_agents} agents")
    other = load_config(a.compare_config) if a.compare_config else config
    if a.compare_config:
        what.append(Path(a.compare_config).name)
    if what:
        runs.append(Scenario(", ".join(what), changed, other.queues, other.service))
    options = SimOptions(ring_delay_s=a.ring_delay, seed=a.seed, progress=progress)
    results = asyncio.run(simulate_scenarios(calls, runs, options))
    params = {
        "trace": a.trace,
        "roster": a.roster,
        "config": a.config,
        "seed": a.seed,
        "ring_delay_s": a.ring_delay,
        "scale_agents": a.scale_agents,
        "add_agents": a.add_agents,
        "add_like": a.add_like,
        "compare_config": a.compare_config,
        "calls": len(calls),
        "agents": len(roster.agents),
        "queues": len({c.queue for c in calls}),
    }
    parts = [text_report(r) + "\n" + ewt_report(ewt_figures(r)) for r in results]
    if len(results) > 1:
        parts.append(compare_report(results))
    progress.start("charts and report")
    rendered = chart_files(a, results)
    files = []
    if a.html:
        page = html_page("Simulation report", results, params, rendered)
        Path(a.html).write_text(page, encoding="utf-8")
        files.append(f"{a.html}: HTML report")
    files += write_chart_files(a, rendered)
    doc = document(
        "simulate",
        params,
        runs=[run_json(r) for r in results],
        comparison=comparison_json(results) if len(results) > 1 else None,
    )
    return Outcome("\n\n".join(parts), doc, files=files)


def cmd_replay(a: argparse.Namespace, progress: Progress) -> Outcome:
    """Replay the trace against the service and report (with progress of its own)."""
    if not a.speed > 0:
        raise ValueError("--speed must be > 0")
    options = ReplayOptions(
        url=a.url,
        key=a.key or os.environ.get("ACD_KEY"),
        speed=a.speed,
        ring_delay_s=a.ring_delay,
        drain_s=a.drain,
        id_prefix=a.id_prefix,
        seed=a.seed,
        progress=None if a.quiet else sys.stderr,
    )
    calls, roster = load_trace(a.trace), load_roster(a.roster)
    result = asyncio.run(replay(calls, roster, options))
    params = {
        "trace": a.trace,
        "roster": a.roster,
        "url": a.url,
        "speed": a.speed,
        "ring_delay_s": a.ring_delay,
        "drain_s": a.drain,
        "id_prefix": a.id_prefix or None,
        "seed": a.seed,
        "calls": len(calls),
        "agents": len(roster.agents),
        "queues": len({c.queue for c in calls}),
    }
    rendered = chart_files(a, [result.sim])
    files = []
    if a.html:
        Path(a.html).write_text(replay_html(result, params, rendered), encoding="utf-8")
        files.append(f"{a.html}: HTML report")
    files += write_chart_files(a, rendered)
    doc = document("replay", params, **replay_json(result))
    return Outcome(replay_report(result), doc, files=files)


def cmd_calibrate(a: argparse.Namespace, progress: Progress) -> Outcome:
    """Fit, write the roster, predict and compare."""
    if a.replications < 1 or not a.interval > 0:
        raise ValueError("--replications must be >= 1 and --interval > 0")
    config = load_config(a.config)
    calls = load_trace(a.trace)
    result = asyncio.run(
        calibrate(
            calls,
            load_roster(a.roster),
            config.queues,
            config.service,
            parse_days(a.fit_days) if a.fit_days else None,
            parse_days(a.predict_days) if a.predict_days else None,
            a.ring_delay,
            a.seed,
            a.replications,
            progress,
        )
    )
    files = []
    if a.roster_out:
        write_roster(a.roster_out, result.roster)
        files.append(f"{a.roster_out}: the roster with the fitted wrap-up and breaks")
    params = {
        "trace": a.trace,
        "roster": a.roster,
        "config": a.config,
        "fit_days": a.fit_days,
        "predict_days": a.predict_days,
        "ring_delay_s": a.ring_delay,
        "seed": a.seed,
        "replications": a.replications,
        "interval_min": a.interval,
        "roster_out": a.roster_out,
        "calls": len(calls),
    }
    doc = document("calibrate", params, **calibration_json(result, a.interval * 60))
    return Outcome(calibration_report(result, a.interval * 60), doc, files=files)


def cmd_check_calibration(a: argparse.Namespace, progress: Progress) -> Outcome:
    """Calibration on synthetic history."""
    formats = FORMATS if a.format == "all" else (a.format,)
    text, figures, ok = asyncio.run(
        run_check(
            a.days,
            a.seed,
            a.staffing,
            formats,
            a.replications,
            Path(a.out) if a.out else None,
            progress,
        )
    )
    params = {
        "days": a.days,
        "seed": a.seed,
        "staffing": a.staffing,
        "format": a.format,
        "replications": a.replications,
        "out": a.out,
    }
    return Outcome(text, document("check_calibration", params, **figures), ok)


def cmd_check_ewt(a: argparse.Namespace, progress: Progress) -> Outcome:
    """The router's EWT against Asterisk's."""
    text, figures, ok = asyncio.run(run_ewt_check(a.hours, a.seed, progress=progress))
    params = {"hours": a.hours, "seed": a.seed}
    return Outcome(text, document("check_ewt", params, **figures), ok)


def cmd_reference(a: argparse.Namespace, progress: Progress) -> Outcome:
    """The engine against queueing models."""
    from loadtest.reference import run_reference

    text, figures, ok = asyncio.run(
        run_reference(a.calls, a.seed, a.patience_calls, a.spread_seeds, progress)
    )
    params = {
        "calls": a.calls,
        "patience_calls": a.patience_calls,
        "seed": a.seed,
        "spread_seeds": a.spread_seeds,
    }
    return Outcome(text, document("reference", params, **figures), ok)


COMMANDS: dict[str, Callable[[argparse.Namespace, Progress], Outcome]] = {
    "generate": cmd_generate,
    "import": cmd_import,
    "simulate": cmd_simulate,
    "replay": cmd_replay,
    "calibrate": cmd_calibrate,
    "check_calibration": cmd_check_calibration,
    "check_ewt": cmd_check_ewt,
    "reference": cmd_reference,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run a subcommand: its report on stdout (or its JSON with `--json -`), progress on stderr;
    errors go to stderr with exit status 2, a failed check gives 1."""
    a = parser().parse_args(argv)
    every = getattr(a, "progress_every", None)  # replay has a progress line of its own
    json_to = getattr(a, "json", None)
    try:
        if every is not None and not every > 0:
            raise ValueError("--progress-every must be > 0")
        stream = None if every is None or a.quiet else sys.stderr
        with Progress(stream, every or EVERY_S) as progress:
            out = COMMANDS[a.command](a, progress)
        if json_to and out.doc is not None:
            write_json(json_to, out.doc)
            out.files.append(f"{json_to}: figures as JSON")
        if json_to != "-":
            print("\n\n".join([out.text, "\n".join(out.files)]) if out.files else out.text)
    except (TraceError, ConfigError, ReplayError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0 if out.ok else 1


if __name__ == "__main__":
    sys.exit(main())
