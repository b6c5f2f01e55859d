"""What the load tester shows: progress on stderr, the charts, the HTML report and `--json`."""

from __future__ import annotations

import io
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

import loadtest.__main__ as cli
from loadtest import check_calibration
from loadtest.charts import time_ticks
from loadtest.check_ewt import EwtScenario
from loadtest.check_ewt import run_check as run_ewt_check
from loadtest.generate import TraceSpec, generate_trace
from loadtest.progress import Progress, duration
from loadtest.reference import run_reference
from loadtest.simulate import simulate_scenarios
from loadtest.trace import Call, Roster, RosterAgent, write_roster, write_trace
from router.domain.stats import FORMULAS

SVG = "{http://www.w3.org/2000/svg}"
CONFIG = """
[[queues]]
name = "a"
skills = { a = 1 }
sla = { threshold_s = 20, target = 0.8 }

[[queues]]
name = "b"
skills = { b = 1 }
sla = { threshold_s = 30, target = 0.9 }
"""


def center(tmp_path: Path, calls: list[Call]) -> list[str]:
    """The trace, a roster of 2 agents per queue for an hour and the configuration, as the
    arguments of `simulate`."""
    agents = tuple(
        RosterAgent(f"{q}{i}", {q: 1}, {"voice": 1}, ((0.0, 3600.0),)) for q in "ab" for i in (1, 2)
    )
    write_trace(tmp_path / "t.jsonl", calls)
    write_roster(tmp_path / "r.json", Roster(agents))
    (tmp_path / "c.toml").write_text(CONFIG, encoding="utf-8")
    files = ["--roster", str(tmp_path / "r.json"), "--config", str(tmp_path / "c.toml")]
    return ["simulate", str(tmp_path / "t.jsonl"), *files]


def busy_hour() -> list[Call]:
    """About 100 calls in an hour on queues a and b (2 agents each: some wait, some abandon)."""
    spec = TraceSpec(hours=1, rates=(100.0,), mix={"a": 0.6, "b": 0.4}, aht_s=150.0)
    return [replace(c, patience_s=60.0) for c in generate_trace(spec, seed=4)]


def test_progress_line_names_the_phase_with_its_rate_and_time_left() -> None:
    now = [100.0]
    out = io.StringIO()
    progress = Progress(out, 5.0, clock=lambda: now[0])
    progress.start("simulate baseline", 200)
    now[0] = 110.0
    for _ in progress.track(range(50)):
        pass
    assert progress.line() == "[10s] simulate baseline: 50/200 calls (25%), 5 calls/s, ETA 30s"
    progress.context = "trace"
    progress.start("fit (EM)", None, "iterations")
    assert progress.line() == "[10s] trace: fit (EM): 0s"
    progress.advance(30)
    now[0] = 112.0
    progress.tick()
    assert out.getvalue() == "[12s] trace: fit (EM): 30 iterations, 15 iterations/s\n"
    assert [duration(s) for s in (42, 185, 3725)] == ["42s", "3m05s", "1h02m"]
    quiet = io.StringIO()
    with Progress(quiet, 60.0):  # over before the first line is due: nothing at all
        pass
    assert quiet.getvalue() == ""


def test_one_simulate_run_writes_progress_json_html_and_every_chart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = busy_hour()
    runs = []

    async def counted(*args: Any) -> Any:
        runs.append(args)
        return await simulate_scenarios(*args)

    monkeypatch.setattr("loadtest.__main__.simulate_scenarios", counted)
    html, charts = tmp_path / "report.html", tmp_path / "charts"
    argv = [*center(tmp_path, calls), "--add-agents", "1", "--seed", "3", "--ring-delay", "1"]
    outputs = ["--html", str(html), "--svg-dir", str(charts), "--json", "-"]
    assert cli.main([*argv, *outputs, "--progress-every", "0.01"]) == 0
    assert len(runs) == 1  # one simulation (both scenarios) for the page, the charts and JSON

    out, err = capsys.readouterr()
    doc = json.loads(out)  # stdout is the JSON document alone: progress went to stderr
    assert re.search(rf"^\[\d+s\] simulate baseline: \d+/{len(calls)} calls", err, re.M)
    assert re.search(r"^\[\d+s\] simulate \+1 agents: ", err, re.M)
    assert err.splitlines()[-1].endswith("] done")

    assert (doc["command"], doc["version"]) == ("simulate", 1)
    params = doc["parameters"]
    assert (params["seed"], params["ring_delay_s"], params["add_agents"]) == (3, 1.0, 1)
    assert (params["calls"], params["agents"], params["queues"]) == (len(calls), 4, 2)
    base, more = doc["runs"]
    assert (base["label"], more["label"], more["agents"]) == ("baseline", "+1 agents", 5)
    a, b, every = base["queues"]
    assert [a["queue"], b["queue"], every["queue"]] == ["a", "b", "(all)"]
    assert a["sla"] == {"threshold_s": 20.0, "target": 0.8}
    assert every["sla"] is None
    assert every["offered"] == a["offered"] + b["offered"] == len(calls)
    assert every["abandoned"] > 0
    for q in (a, b, every):
        done = ("answered", "abandoned", "timed_out", "blocked", "unanswered")
        assert sum(q[k] for k in done) == q["offered"]
        assert set(q["service_level"]) == set(FORMULAS)
    ewt = base["ewt"][-1]
    assert ewt["queue"] == "(all)"
    assert set(ewt["all_calls"]) == {"router", "asterisk", "zero"}
    assert ewt["ratio"]["all_calls"] == ewt["all_calls"]["router"] / ewt["all_calls"]["asterisk"]
    comparison = doc["comparison"]
    assert comparison["runs"] == ["baseline", "+1 agents"]
    by_key = {(r["queue"], r["figure"]): r["values"] for r in comparison["rows"]}
    assert by_key[("a", "abandoned")] == [a["abandoned"], more["queues"][0]["abandoned"]]
    sl = every["service_level"]["abandons_excluded"]
    assert by_key[("(all)", "service_level.abandons_excluded")][0] == sl

    page = html.read_text()
    for text in ("seed</td><td>3", "ring delay s</td><td>1.0", "baseline against +1 agents"):
        assert text in page
    assert page.count("EWT accuracy") == 2
    assert page.count("<svg") == 4
    assert "<script" not in page
    names = sorted(p.name for p in charts.iterdir())
    assert names == ["busy.svg", "queue-service-level.svg", "service-level.svg", "waiting.svg"]
    for name in names:
        assert ElementTree.parse(charts / name).getroot().tag == f"{SVG}svg"  # standalone


def test_service_level_charts_have_targets_a_100_percent_top_and_clock_ticks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = center(tmp_path, busy_hour())
    assert cli.main([*argv, "--svg-dir", str(tmp_path / "svg"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""  # --quiet: no progress
    root = ElementTree.parse(tmp_path / "svg" / "queue-service-level.svg").getroot()
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert texts[0] == "Service level per 5 min per queue (abandons excluded)"
    assert {"a", "b", "target 80%", "target 90%"} <= set(texts)  # a panel per queue
    dashed = [line for line in root.iter(f"{SVG}line") if line.get("stroke-dasharray")]
    assert len(dashed) == 2
    numbers = [float(t) for t in texts if t and re.fullmatch(r"[\d.]+", t)]
    assert max(numbers) == 100  # the y axis stops at 100 %
    assert "0:10" in texts  # an hour: ticks every 10 minutes
    assert "1:00" in texts

    def labels(x0: float, x1: float) -> list[str]:
        return [label for _, label in time_ticks(x0, x1)]

    assert labels(0, 3600) == ["0:00", "0:10", "0:20", "0:30", "0:40", "0:50", "1:00"]
    assert labels(0, 86_400)[:3] == ["0:00", "3:00", "6:00"]
    assert labels(8 * 3600, 12 * 3600)[:2] == ["8:00", "8:30"]
    assert labels(86_400 + 9 * 3600, 86_400 + 11 * 3600)[:2] == ["d1 9:00", "d1 9:15"]
    assert labels(0, 7 * 86_400)[-1] == "day 7"


async def test_check_ewt_and_reference_figures_as_json() -> None:
    text, doc, ok = await run_ewt_check(1, 2, (EwtScenario("calm", 1.0),))
    [scenario] = doc["scenarios"]
    every = scenario["run"]["ewt"][-1]
    assert every["queue"] == "(all)"
    assert doc["ok"] is ok is scenario["ok"]
    assert ok == (every["ratio"]["all_calls"] <= 0.5 and every["ratio"]["queued_calls"] <= 0.7)
    assert f"{every['ratio']['all_calls']:.2f}" in text

    text, doc, ok = await run_reference(300, 1, 200, 2)
    no_abandons, with_patience = doc["variants"]
    assert (no_abandons["calls"], with_patience["patience_s"]) == (300, 120.0)
    names = [m["model"] for m in no_abandons["models"]]
    assert names[:3] == ["Erlang C (trace load)", "Erlang C (nominal)", "FIFO recursion (trace)"]
    assert no_abandons["spread"]["at_trace_load"]["seeds"] == 2
    engine = with_patience["engine"]
    for model in with_patience["models"]:
        sl_error = 100 * (engine["service_level"] - model["service_level"])
        assert model["sl_error_pt"] == pytest.approx(sl_error)
    assert doc["ok"] is ok is all(v["ok"] for v in doc["verdicts"])
    json.dumps(doc, allow_nan=False)


async def test_check_calibration_figures_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(check_calibration, "HOURS", (0,) * 8 + (12,) * 10 + (0,) * 6)
    text, doc, ok = await check_calibration.run_check(2, 1, 0.8, ("trace",), 1)
    assert doc["truth"]["days"] == 2
    assert doc["truth"]["wrap_up"]["billing"] == {"dist": "lognormal", "mean_s": 60.0, "cv": 0.5}
    [checked] = doc["formats"]
    assert checked["format"] == "trace"
    assert checked["ok"] is ok is doc["ok"]
    cal = checked["calibration"]
    assert (cal["fit_days"], cal["predict_days"]) == ([0], [1])
    assert [r["label"] for r in cal["queues"]] == ["billing", "support", "(all)"]
    names = [v["name"] for v in checked["verdicts"]]
    assert names[:2] == ["wrap-up billing mean s", "wrap-up support mean s"]
    for v in checked["verdicts"]:
        assert v["ok"] == (v["error"] is not None and abs(v["error"]) <= v["limit"])
    assert "check_calibration" in text
