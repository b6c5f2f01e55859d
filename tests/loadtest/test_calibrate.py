"""Calibration: the gaps history shows, the fit on model data, a small end-to-end run."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path

import pytest
from redis.asyncio import Redis

from loadtest.__main__ import main
from loadtest.calibrate import (
    DAY_S,
    POOLED,
    Gap,
    calibrate,
    calibration_report,
    compared_rows,
    fit_gaps,
    gaps,
    on_days,
    parse_days,
    split_days,
)
from loadtest.check_calibration import imported, records_of
from loadtest.report import ALL
from loadtest.simulate import SimOptions, simulate_on
from loadtest.trace import (
    Breaks,
    Call,
    Dist,
    Roster,
    RosterAgent,
    load_roster,
    write_roster,
    write_trace,
)
from router.domain.models import QueueConfig, Sla
from router.settings import ServiceSettings

Q = QueueConfig(name="q", skills={"q": 1}, sla=Sla(threshold_s=20, target=0.8))
ANN = Roster((RosterAgent("ann", {"q": 1}, shifts=((0.0, 1000.0),)),))


def answered(call_id: str, arrival: float, wait: float, agent: str, handle: float = 100.0) -> Call:
    return Call(call_id, arrival, "q", handle, wait_s=wait, outcome="answered", agent_id=agent)


HISTORY = [
    answered("a1", 0.0, 0.0, "ann"),  # ann busy 0-100
    answered("w1", 50.0, 80.0, "ann"),  # waits from 50 until ann takes it at 130: busy to 230
    Call("x1", 220.0, "q", 60.0, wait_s=40.0, outcome="abandoned"),  # waits 220-260
    answered("a3", 300.0, 0.0, "ann"),  # busy 300-400; nothing waits at 400
    answered("a4", 600.0, 0.0, "ann"),  # busy 600-700, ann's last call
    answered("y1", 690.0, 50.0, "bob"),  # waits 690-740 (bob is not in the roster)
]


def test_gaps_are_exact_censored_or_unknown() -> None:
    assert gaps(HISTORY, ANN, {"q": Q}) == [
        Gap("q", 100.0, 30.0, True),  # w1 waited all along: unavailable 100-130
        Gap("q", 100.0, 30.0, False),  # x1 waited until 260: unavailable more than 30 s
        Gap("q", 100.0, 40.0, False),  # after the last call, y1 waited until 740
    ]
    # With a ring delay, w1 rang ann for its last 2 s: ann was back at 128.
    assert gaps(HISTORY, ANN, {"q": Q}, ring_delay_s=2.0)[0] == Gap("q", 100.0, 28.0, True)
    # An agent who cannot take the queue's calls tells nothing.
    other = QueueConfig(name="q", skills={"other": 1})
    assert gaps(HISTORY, ANN, {"q": other}) == []


def model_gaps(n: int, seed: int = 1) -> list[Gap]:
    """Gaps drawn from the model: log-normal wrap-up (30 s / 60 s, cv 0.5), a break (exponential
    400 s) due with probability 1 - exp(-(ring + handle + wrap-up) / 2400), censored where the
    waiting stops (exponential, mean 600 s)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        queue = "support" if rng.random() < 0.6 else "billing"
        mean = 30.0 if queue == "support" else 60.0
        s2 = math.log(1.25)
        wrap = math.exp(math.log(mean) - s2 / 2 + math.sqrt(s2) * rng.gauss(0, 1))
        handle = rng.expovariate(1 / 200)
        p = 1 - math.exp(-(2 + handle + wrap) / 2400)
        u = wrap + (rng.expovariate(1 / 400) if rng.random() < p else 0.0)
        waited = rng.expovariate(1 / 600)
        out.append(Gap(queue, handle, min(u, waited), u <= waited))
    return out


def test_fit_recovers_the_model_figures() -> None:
    fit = fit_gaps(model_gaps(6000), ring_delay_s=2.0)
    support, billing = fit.wrap_up_of("support"), fit.wrap_up_of("billing")
    assert support is not None
    assert billing is not None
    assert support.mean_s == pytest.approx(30.0, rel=0.05)
    assert billing.mean_s == pytest.approx(60.0, rel=0.05)
    assert support.cv == pytest.approx(0.5, rel=0.1)
    assert fit.breaks is not None
    assert fit.breaks.every_s == pytest.approx(2400.0, rel=0.15)
    assert fit.breaks.duration.mean_s == pytest.approx(400.0, rel=0.15)
    assert fit.wrap_up_of("unseen") is None  # no pooled group: every queue had enough gaps


def test_fit_needs_enough_gaps_and_pools_small_queues() -> None:
    few = fit_gaps([Gap("q", 100.0, 30.0, True)] * 5)
    assert (few.wrap_up, few.breaks) == ({}, None)
    assert "not enough history" in few.notes[0]
    mixed = fit_gaps(model_gaps(400) + [Gap("rare", 100.0, 20.0, True)] * 3)
    assert set(mixed.wrap_up) == {"billing", "support", POOLED}
    assert mixed.wrap_up_of("rare") == mixed.wrap_up[POOLED]


def test_days() -> None:
    assert parse_days("0,2,5-7") == {0, 2, 5, 6, 7}
    with pytest.raises(ValueError, match="days must be like"):
        parse_days("3-1")
    calls = [Call(f"c{d}", d * DAY_S + 60, "q", 1.0) for d in (0, 1, 3)]
    assert split_days(calls, None, None) == ([0, 1], [3])
    assert split_days(calls, {1}, {0}) == ([1], [0])
    assert split_days(calls[:1], None, None) == ([0], [0])  # one day: fitted and predicted
    with pytest.raises(ValueError, match=r"no calls on predict day\(s\) \[2\]"):
        split_days(calls, None, {2})
    roster = Roster((RosterAgent("a", {"q": 1}, shifts=((DAY_S - 60, DAY_S + 60),)),))
    assert on_days(roster, {1}).agents[0].shifts == ((DAY_S, DAY_S + 60),)
    assert on_days(roster, {2}).agents == ()


async def test_calibrate_end_to_end(
    tmp_path: Path, redis: Redis, settings: ServiceSettings
) -> None:
    """Two busy hours a day for two days, with hidden wrap-up and breaks: fit on day 0, predict
    day 1; the report compares per queue, for all queues and per interval."""
    rng = random.Random(3)
    queues = [Q, QueueConfig(name="r", skills={"r": 1}, sla=Sla(threshold_s=20, target=0.8))]
    calls: list[Call] = []
    for day in (0, 1):
        t = day * DAY_S + 9 * 3600 + rng.expovariate(1 / 20)
        while t < day * DAY_S + 11 * 3600:
            queue = "q" if rng.random() < 0.7 else "r"
            calls.append(Call(f"c{len(calls)}", t, queue, rng.expovariate(1 / 100), patience_s=90))
            t += rng.expovariate(1 / 20)
    shifts = tuple((d * DAY_S + 9 * 3600, d * DAY_S + 11 * 3600) for d in (0, 1))
    agents = tuple(RosterAgent(f"a{i}", {"q": 1, "r": 1}, shifts=shifts) for i in range(6))
    hidden = Roster(agents, {"q": Dist("fixed", 20.0)}, Breaks(1200.0, Dist("fixed", 120.0)))
    history = await simulate_on(redis, settings, calls, hidden, queues, SimOptions(2.0))
    data = imported(records_of(history), "trace", seed=1)
    assert {c.outcome for c in data.calls} == {"answered", "abandoned"}

    cal = await calibrate(data.calls, data.roster, queues, settings, ring_delay_s=2.0)
    assert (cal.fit_days, cal.predict_days) == ([0], [1])
    assert cal.fit.exact >= 30
    q_wrap = cal.fit.wrap_up_of("q")
    assert q_wrap is not None
    assert q_wrap.mean_s == pytest.approx(20.0, rel=0.2)
    assert set(cal.roster.wrap_up) == {"q", "r"}
    day1 = [c for c in data.calls if c.arrival_s >= DAY_S]
    assert len(cal.history) == len(cal.predicted) == len(cal.raw) == len(day1)
    rows = compared_rows(cal)
    assert [r.label for r in rows] == ["q", "r", ALL]
    assert rows[-1].history.offered == len(day1)
    assert [r.label for r in compared_rows(cal, "interval")] == ["09:00", "10:00"]
    text = calibration_report(cal)
    assert "wrap-up q" in text
    assert "SL hist" in text


def test_calibrate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace, roster, config = tmp_path / "h.jsonl", tmp_path / "r.json", tmp_path / "c.toml"
    write_trace(
        trace,
        [*HISTORY, *(replace(c, id=f"{c.id}+", arrival_s=c.arrival_s + DAY_S) for c in HISTORY)],
    )
    write_roster(roster, ANN)
    config.write_text('[[queues]]\nname = "q"\nskills = { q = 1 }\n')
    out = tmp_path / "calibrated.json"
    argv = ["calibrate", str(trace), "--roster", str(roster), "--config", str(config)]
    figures = tmp_path / "figures.json"
    assert main([*argv, "--interval", "30", "--roster-out", str(out), "--json", str(figures)]) == 0
    text = capsys.readouterr().out
    doc = json.loads(figures.read_text())
    assert (doc["command"], doc["parameters"]["interval_min"]) == ("calibrate", 30.0)
    assert (doc["fit_days"], doc["predict_days"], doc["interval_s"]) == ([0], [1], 1800.0)
    assert doc["fit"]["wrap_up"] == {}
    assert doc["fit"]["breaks"] is None
    assert "not enough history" in doc["fit"]["notes"][0]
    [queue] = doc["queues"]
    assert queue["label"] == "q"
    assert queue["history"]["offered"] == len(HISTORY)
    assert [r["label"] for r in doc["intervals"]] == sorted({r["label"] for r in doc["intervals"]})
    assert f"{figures}: figures as JSON" in text
    assert "not enough history" in text  # 6 gaps: nothing fitted, nothing invented
    assert "held-out day(s) 1" in text
    assert "00:00" in text  # 30-minute intervals
    assert load_roster(out) == ANN
    write_trace(trace, [replace(c, wait_s=None, outcome=None, agent_id=None) for c in HISTORY])
    assert main(argv) == 2
    assert "lack the history fields" in capsys.readouterr().err
