"""Virtual-time simulation through the real engine: outcomes, shifts, what-if and reports."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path
from xml.etree import ElementTree

import pytest
from redis.asyncio import Redis

from loadtest.__main__ import main
from loadtest.charts import charts, nice_step, write_chart
from loadtest.page import html_page
from loadtest.report import compare_report, run_figures, text_report
from loadtest.simulate import SimOptions, add_agents, scale_roster, simulate_on
from loadtest.trace import Call, Roster, RosterAgent, write_roster, write_trace
from router.domain.models import CallbackPolicy, QueueConfig, Sla
from router.settings import ServiceSettings

QUEUE = QueueConfig(name="q", skills={"q": 1}, sla=Sla(threshold_s=20, target=0.8), wrap_up_s=5.0)
ROSTER = Roster((RosterAgent("ann", {"q": 2}, {"voice": 1}, ((0.0, 100.0), (200.0, 400.0))),))
CALLS = [
    Call("c1", 0.0, "q", 50.0),  # answered at once; Ann free at 55 (wrap-up)
    Call("c2", 10.0, "q", 30.0, patience_s=20.0),  # hangs up at 30
    Call("c3", 20.0, "q", 40.0, wrap_up_s=0.0),  # answered at 55, done at 95
    Call("c4", 98.0, "q", 10.0, patience_s=200.0),  # answered at once; Ann's shift ends mid-call
    Call("c5", 150.0, "q", 10.0),  # waits for Ann's second shift at 200
]
_runs = itertools.count()


def fresh(settings: ServiceSettings) -> ServiceSettings:
    """A namespace of its own for each run of a test."""
    return replace(settings, namespace=f"{settings.namespace}s{next(_runs)}")


async def test_outcomes(redis: Redis, settings: ServiceSettings) -> None:
    result = await simulate_on(redis, fresh(settings), CALLS, ROSTER, [QUEUE])
    r = {c.call.id: c for c in result.calls}
    assert [r[i].status for i in ("c1", "c2", "c3", "c4", "c5")] == ["answered", "abandoned"] + [
        "answered"
    ] * 3
    assert r["c2"].wait_s == 20.0
    assert (r["c3"].answered_s, r["c3"].free_s) == (55.0, 95.0)
    assert r["c4"].answered_s == 98.0
    assert r["c5"].answered_s == 200.0
    [fig] = run_figures(result)
    assert (fig.offered, fig.answered, fig.abandoned) == (5, 4, 1)
    assert fig.service_level["answered"] == 0.5  # c1 and c4 within 20 s
    assert fig.service_level["abandons_met"] == 0.6  # and c2, abandoned at 20 s
    assert fig.asa_s == (0 + 35 + 0 + 50) / 4
    assert "c1" not in text_report(result)  # no ids in reports


async def test_deterministic_and_ring_delay(redis: Redis, settings: ServiceSettings) -> None:
    a = await simulate_on(redis, fresh(settings), CALLS, ROSTER, [QUEUE], SimOptions(3.0))
    b = await simulate_on(redis, fresh(settings), CALLS, ROSTER, [QUEUE], SimOptions(3.0))
    assert [(c.status, c.answered_s) for c in a.calls] == [
        (c.status, c.answered_s) for c in b.calls
    ]
    assert a.calls[0].answered_s == 3.0


async def test_what_if(redis: Redis, settings: ServiceSettings) -> None:
    base = await simulate_on(redis, fresh(settings), CALLS, ROSTER, [QUEUE])
    more = add_agents(ROSTER, 1)
    assert [a.id for a in more.agents] == ["ann", "ann+1"]
    assert len(scale_roster(more, 1.5).agents) == 3
    what_if = await simulate_on(redis, fresh(settings), CALLS, more, [QUEUE])
    base.label, what_if.label = "base", "+1"
    assert run_figures(what_if)[0].abandoned == 0
    text = compare_report([base, what_if])
    assert "q abandoned" in text
    assert "+1" in text
    page = html_page("Simulation report", [base, what_if], {"seed": 1}, charts([base, what_if]))
    assert page.count("<svg") == 4
    assert "<script" not in page


async def test_callback_accept(redis: Redis, settings: ServiceSettings) -> None:
    queue = QUEUE.model_copy(update={"callback": CallbackPolicy(offer_when_ewt_s=10.0)})
    calls = [
        Call("c1", 0.0, "q", 600.0),
        Call("c2", 1.0, "q", 10.0, patience_s=60.0, callback_accept=True),  # called back
        Call("c3", 2.0, "q", 10.0, patience_s=60.0),  # declines the callback: hangs up
    ]
    roster = Roster((RosterAgent("bob", {"q": 2}, {"voice": 1}, ((0.0, 3600.0),)),))
    result = await simulate_on(redis, fresh(settings), calls, roster, [queue])
    r = {c.call.id: c for c in result.calls}
    assert r["c2"].callback_offered
    assert r["c2"].callback
    assert r["c2"].status == "answered"
    assert r["c2"].answered_s == 605.0  # after c1 and its wrap-up
    assert r["c3"].status == "abandoned"


SVG = "{http://www.w3.org/2000/svg}"


def test_cli_writes_one_chart_as_a_standalone_svg(tmp_path: Path) -> None:
    write_trace(tmp_path / "t.jsonl", CALLS)
    write_roster(tmp_path / "r.json", ROSTER)
    config = tmp_path / "c.toml"
    config.write_text('[[queues]]\nname = "q"\nskills = { q = 1 }\nwrap_up_s = 5\n', "utf-8")
    out = tmp_path / "waiting.svg"
    files = [str(tmp_path / "t.jsonl"), "--roster", str(tmp_path / "r.json"), "--config"]
    argv = ["simulate", *files, str(config), "--add-agents", "1", "--svg", str(out)]
    assert main([*argv, "--chart", "waiting"]) == 0
    svg = ElementTree.parse(out).getroot()  # well-formed XML on its own
    assert svg.tag == f"{SVG}svg"
    assert svg.findtext(f"{SVG}text") == "Calls waiting"
    assert len(svg.findall(f"{SVG}polyline")) == 2  # the baseline and the what-if
    legend = [t.text for t in svg.findall(f"{SVG}text")]
    assert "baseline" in legend
    assert "+1 agents" in legend
    with pytest.raises(SystemExit):
        main([*argv, "--chart", "pie"])


async def test_chart_names_and_axis_steps(
    tmp_path: Path, redis: Redis, settings: ServiceSettings
) -> None:
    result = await simulate_on(redis, fresh(settings), CALLS, ROSTER, [QUEUE])
    rendered = charts([result])
    write_chart(tmp_path / "busy.svg", rendered, "busy")
    busy = ElementTree.parse(tmp_path / "busy.svg").getroot()
    assert len(busy.findall(f"{SVG}polyline")) == 2  # busy and on shift
    ticks = [t.text for t in busy.findall(f"{SVG}text") if t.get("text-anchor") == "end"]
    assert ticks[1:4] == ["0", "0.2", "0.4"]  # the unit, then one agent: steps of 0.2 to 1.2
    with pytest.raises(ValueError, match="chart must be one of"):
        write_chart(tmp_path / "x.svg", rendered, "pie")
    assert [nice_step(x) for x in (105, 45.15, 7.3, 2100)] == [20, 10, 2, 500]
