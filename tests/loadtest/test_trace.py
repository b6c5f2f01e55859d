"""Trace and roster files: loading, validation messages, writing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from loadtest.trace import (
    Breaks,
    Call,
    Dist,
    Roster,
    RosterAgent,
    TraceError,
    load_roster,
    load_trace,
    parse_trace,
    write_roster,
    write_trace,
)


def test_round_trip(tmp_path: Path) -> None:
    calls = [
        Call("b", 5.0, "support", 100.0, priority=5, credit_s=90.0, skills={"lang:fi": 3}),
        Call("a", 1.5, "billing", 60.0, patience_s=30.0, callback_accept=True, wrap_up_s=5.0),
    ]
    write_trace(tmp_path / "t.jsonl", calls)
    assert load_trace(tmp_path / "t.jsonl") == sorted(calls, key=lambda c: c.arrival_s)


def test_errors_name_line_and_field() -> None:
    lines = [
        '{"id": "a", "arrival_s": 1, "queue": "q", "handle_s": 10}',
        "",
        '{"id": "b", "arrival_s": -1, "queue": "Q!", "handle_s": "x", "colour": 1}',
        "not json",
        '{"id": "a", "arrival_s": 2, "queue": "q", "handle_s": 1, "skills": {"s": 9}}',
    ]
    with pytest.raises(TraceError) as info:
        parse_trace(lines, "day.jsonl")
    problems = info.value.problems
    assert "day.jsonl:3: arrival_s: must be a number >= 0" in problems
    assert "day.jsonl:3: handle_s: must be a number >= 0" in problems
    assert "day.jsonl:3: colour: unknown field" in problems
    assert any(p.startswith("day.jsonl:3: queue: must match") for p in problems)
    assert any(p.startswith("day.jsonl:4: not JSON") for p in problems)
    assert "day.jsonl:5: skills.s: must be an integer 1..5" in problems


def test_null_patience_never_abandons() -> None:
    [call] = parse_trace(
        ['{"id": "a", "arrival_s": 0, "queue": "q", "handle_s": 1, "patience_s": null}']
    )
    assert call.patience_s is None


def test_roster_json_and_toml(tmp_path: Path) -> None:
    roster = Roster((RosterAgent("ann", {"support": 3}, {"voice": 1}, ((0.0, 10.0),)),))
    write_roster(tmp_path / "r.json", roster)
    assert load_roster(tmp_path / "r.json") == roster
    (tmp_path / "r.toml").write_text(
        '[[agents]]\nid = "ann"\nskills = { support = 3 }\nshifts = [[0, 5], [5, 10]]\n'
    )
    assert load_roster(tmp_path / "r.toml") == roster  # touching shifts merge


def test_roster_errors(tmp_path: Path) -> None:
    doc = {"agents": [{"id": "a", "skills": {}, "shifts": [[5, 1]], "channels": {"fax": 1}}]}
    (tmp_path / "r.json").write_text(json.dumps(doc))
    with pytest.raises(TraceError) as info:
        load_roster(tmp_path / "r.json")
    text = str(info.value)
    assert "agents[0]: shifts[0]: must be [start_s, end_s]" in text
    assert "agents[0]: channels.fax: is not a channel" in text


def test_history_fields_round_trip_and_errors(tmp_path: Path) -> None:
    calls = [
        Call("a", 1.0, "q", 60.0, wait_s=12.5, outcome="answered", agent_id="ann"),
        Call("b", 2.0, "q", 60.0, patience_s=30.0, wait_s=30.0, outcome="abandoned"),
        Call("c", 3.0, "q", 60.0, wait_s=0.0, outcome="timed_out"),
    ]
    write_trace(tmp_path / "t.jsonl", calls)
    assert load_trace(tmp_path / "t.jsonl") == calls
    lines = [
        '{"id": "a", "arrival_s": 1, "queue": "q", "handle_s": 1, "outcome": "lost", "wait_s": 1}',
        '{"id": "b", "arrival_s": 1, "queue": "q", "handle_s": 1, "wait_s": 3}',
        '{"id": "c", "arrival_s": 1, "queue": "q", "handle_s": 1, "outcome": "answered"}',
        '{"id": "d", "arrival_s": 1, "queue": "q", "handle_s": 1, "wait_s": 3,'
        ' "outcome": "abandoned", "agent_id": "ann"}',
        '{"id": "e", "arrival_s": 1, "queue": "q", "handle_s": 1, "wait_s": 3,'
        ' "outcome": "answered", "agent_id": "no spaces"}',
    ]
    with pytest.raises(TraceError) as info:
        parse_trace(lines, "h.jsonl")
    problems = info.value.problems
    assert "h.jsonl:1: outcome: must be one of answered, abandoned, timed_out" in problems
    assert "h.jsonl:2: outcome: is required with outcome and wait_s" in problems
    assert "h.jsonl:3: wait_s: is required with outcome and wait_s" in problems
    assert "h.jsonl:4: agent_id: only for an answered call" in problems
    assert any(p.startswith("h.jsonl:5: agent_id: must be 1..128") for p in problems)


def test_roster_unavailability_round_trip_and_errors(tmp_path: Path) -> None:
    roster = Roster(
        (
            RosterAgent("ann", {"q": 3}, {"voice": 1}, ((0.0, 10.0),)),
            RosterAgent(
                "bob",
                {"q": 3},
                {"voice": 1},
                ((0.0, 10.0),),
                wrap_up=Dist("fixed", 5.0),
                breaks=Breaks(600.0, Dist("lognormal", 120.0, 0.5)),
            ),
        ),
        wrap_up={"q": Dist("lognormal", 30.0, 0.5)},
        breaks=Breaks(3600.0, Dist("exponential", 300.0)),
    )
    write_roster(tmp_path / "r.json", roster)
    assert load_roster(tmp_path / "r.json") == roster
    (tmp_path / "r.toml").write_text(
        '[[agents]]\nid = "ann"\nskills = { q = 3 }\nshifts = [[0, 10]]\n'
        '[wrap_up.q]\ndist = "lognormal"\nmean_s = 30\ncv = 0.5\n'
        '[breaks]\nevery_s = 3600\nduration = { dist = "exponential", mean_s = 300 }\n'
    )
    assert load_roster(tmp_path / "r.toml") == Roster(
        roster.agents[:1], roster.wrap_up, roster.breaks
    )
    doc = {
        "agents": [
            {"id": "a", "skills": {}, "wrap_up": {"dist": "exponential", "mean_s": 5, "cv": 1}}
        ],
        "wrap_up": {"Q!": {"dist": "fixed", "mean_s": 1}, "q": {"dist": "gamma", "mean_s": -1}},
        "breaks": {"every_s": 0, "duration": {"dist": "lognormal", "mean_s": 60}},
        "colour": 1,
    }
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(TraceError) as info:
        load_roster(tmp_path / "bad.json")
    text = str(info.value)
    assert "bad.json: colour: unknown field" in text
    assert "agents[0]: wrap_up: cv: only for lognormal" in text
    assert "wrap_up: Q!: must match" in text
    assert "wrap_up: q: dist: must be one of fixed, exponential, lognormal" in text
    assert "wrap_up: q: mean_s: must be a number >= 0" in text
    assert "breaks: every_s: must be > 0" in text
    assert "breaks: duration: cv: is required" in text


def test_distribution_quantiles() -> None:
    assert Dist("fixed", 7.0).quantile(0.9) == 7.0
    assert Dist("exponential", 10.0).quantile(0.5) == pytest.approx(10 * math.log(2))
    lognormal = Dist("lognormal", 30.0, 0.5)
    draws = [lognormal.quantile((k + 0.5) / 20_000) for k in range(20_000)]
    assert sum(draws) / len(draws) == pytest.approx(30.0, rel=1e-3)
    assert lognormal.quantile(0.0) > 0
