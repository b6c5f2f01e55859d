"""Importers on hand-written sample lines: Anonymous Bank and Asterisk queue_log."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from loadtest.check_calibration import bank_lines, queue_log_lines
from loadtest.importers import (
    DAY_S,
    Record,
    Selection,
    anonymous_bank,
    config_text,
    fit_patience,
    parse_clock,
    parse_day,
    queue_log,
)

SAMPLES = Path(__file__).parents[2] / "loadtest" / "samples"


def test_anonymous_bank() -> None:
    imported = anonymous_bank((SAMPLES / "anonymous_bank.txt").read_text().splitlines())
    calls = {c.id: c for c in imported.calls}
    # PHANTOM (33120) and the never-queued hang-up (33118) are left out.
    assert sorted(calls) == [f"AA0101-{n}" for n in (33116, 33117, 33119, 33121, 33122)]
    assert "skipped 1 PHANTOM" in imported.notes
    assert "skipped 1 hung up before queueing" in imported.notes
    served = calls["AA0101-33116"]
    assert (served.arrival_s, served.queue, served.handle_s) == (42339.0, "ps", 243.0)
    assert served.credit_s == 90.0  # priority 2
    assert served.patience_s is not None
    assert served.patience_s > 79
    never_queued = calls["AA0101-33117"]
    assert never_queued.arrival_s == 11 * 3600 + 49 * 60 + 50
    abandoned = calls["AA0101-33119"]
    assert abandoned.patience_s == 90.0
    assert abandoned.credit_s is None
    assert calls["AA0101-33122"].arrival_s == 86400 + 9 * 3600 + 10 * 60 + 5  # next day
    agents = {a.id: a for a in imported.roster.agents}
    assert agents["DORIT"].skills == {"nw": 3, "ps": 3}
    # Service starts at queue entry + q_time (11:46:58 here; the record's ser_start says :57).
    assert agents["DORIT"].shifts == ((42418.0, 54156.0), (86400 + 33015.0, 86400 + 33135.0))
    assert "YITZ" in agents
    assert anonymous_bank((SAMPLES / "anonymous_bank.txt").read_text().splitlines()) == imported


def test_queue_log() -> None:
    imported = queue_log((SAMPLES / "queue_log.txt").read_text().splitlines())
    calls = {c.id: c for c in imported.calls}
    assert sorted(calls) == [
        "1366720340.1", "1366720400.3", "1366720500.4", "1366720700.6", "1366720900.7"
    ]  # fmt: skip
    origin = 1366720340 // 86400 * 86400
    first = calls["1366720340.1"]
    assert (first.arrival_s, first.queue, first.handle_s) == (1366720340 - origin, "support", 120)
    assert first.patience_s is not None
    assert first.patience_s > 20
    assert calls["1366720400.3"].patience_s == 45.0
    assert calls["1366720500.4"].handle_s == 95.0  # TRANSFER: calltime
    timed_out = calls["1366720700.6"]
    assert timed_out.patience_s is None or timed_out.patience_s > 120
    agents = {a.id: a for a in imported.roster.agents}
    assert agents["SIP-8008"].skills == {"support": 3}
    assert agents["Agent-1001"].skills == {"sales": 3}
    assert "queues]]" in config_text(imported)


def test_kaplan_meier_samples_above_the_wait() -> None:
    fit = fit_patience([(10, True), (20, False), (30, True), (40, True), (50, False)])
    assert fit.survival == pytest.approx((0.8, 0.8 * 2 / 3, 0.8 * 2 / 3 * 1 / 2))
    rng = random.Random(1)
    draws = [fit.sample_above(25.0, rng) for _ in range(200)]
    assert all(d is not None and d > 25 for d in draws)
    assert {30.0, 40.0} <= set(draws)
    assert fit_patience([(5, False)]).sample_above(5, rng) is None


def test_history_fields() -> None:
    bank = {
        c.id: c
        for c in anonymous_bank(
            SAMPLES.joinpath("anonymous_bank.txt").read_text().splitlines()
        ).calls
    }
    assert (bank["AA0101-33116"].wait_s, bank["AA0101-33116"].outcome) == (79.0, "answered")
    assert bank["AA0101-33116"].agent_id == "DORIT"
    assert (bank["AA0101-33117"].wait_s, bank["AA0101-33117"].agent_id) == (0.0, "YITZ")
    assert (bank["AA0101-33119"].outcome, bank["AA0101-33119"].agent_id) == ("abandoned", None)
    log = {
        c.id: c for c in queue_log(SAMPLES.joinpath("queue_log.txt").read_text().splitlines()).calls
    }
    assert (log["1366720340.1"].wait_s, log["1366720340.1"].agent_id) == (20.0, "SIP-8008")
    assert (log["1366720400.3"].outcome, log["1366720400.3"].wait_s) == ("abandoned", 45.0)
    assert (log["1366720700.6"].outcome, log["1366720700.6"].wait_s) == ("timed_out", 120.0)


def test_day_and_time_window() -> None:
    lines = SAMPLES.joinpath("anonymous_bank.txt").read_text().splitlines()
    second = anonymous_bank(lines, selection=Selection(frozenset(parse_day("1999-09-02"))))
    [call] = second.calls
    assert call.arrival_s == 9 * 3600 + 10 * 60 + 5  # day 1 of the file is trace day 0
    assert "trace day 0: 1999-09-02 (1 call)" in second.notes
    assert [a.shifts for a in second.roster.agents] == [((33015.0, 33135.0),)]
    morning = anonymous_bank(
        lines, selection=Selection(start_s=parse_clock("11:00"), end_s=parse_clock("12:00"))
    )
    assert sorted(c.id for c in morning.calls) == ["AA0101-33116", "AA0101-33117"]
    assert (
        anonymous_bank(lines, selection=Selection(frozenset(parse_day("2000-01-01")))).calls == []
    )
    log = queue_log(
        SAMPLES.joinpath("queue_log.txt").read_text().splitlines(),
        selection=Selection(frozenset(parse_day("2013-04-23..2013-04-24"))),
    )
    assert len(log.calls) == 5
    assert parse_day("1999-12-31..2000-01-02")[-1].isoformat() == "2000-01-02"
    assert parse_clock("24:00") == 86400.0
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        parse_day("1999-9-1x")
    with pytest.raises(ValueError, match="ends before it starts"):
        parse_day("2000-01-02..2000-01-01")
    with pytest.raises(ValueError, match="HH:MM"):
        parse_clock("25:00")


def test_synthetic_history_reads_back_through_both_formats() -> None:
    records = [
        Record("c1", 8 * 3600 + 0.4, "support", 12.2, 100.6, False, "ann"),
        Record("c2", 8 * 3600 + 30.0, "billing", 45.0, None, True),
        Record("c3", DAY_S + 9 * 3600, "support", 0.0, 60.0, False, "bob"),
    ]
    for data in (anonymous_bank(bank_lines(records)), queue_log(queue_log_lines(records))):
        got = sorted((c.arrival_s, c.queue, c.wait_s, c.outcome, c.agent_id) for c in data.calls)
        assert got == [
            (8 * 3600.0, "support", 12.0, "answered", "ann"),
            (8 * 3600 + 30.0, "billing", 45.0, "abandoned", None),
            (DAY_S + 9 * 3600, "support", 0.0, "answered", "bob"),
        ]
        assert sorted(c.handle_s for c in data.calls if c.outcome == "answered") == [60.0, 101.0]
