"""Trace and roster files: loading, validation messages, writing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.trace import (
    Call,
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
