"""Importers on hand-written sample lines: Anonymous Bank and Asterisk queue_log."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from loadtest.importers import anonymous_bank, config_text, fit_patience, queue_log

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
