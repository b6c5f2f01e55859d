"""HTTP replay against the real `acd-router serve --clock-speed 20`, checked against `simulate`.

A generated single-queue trace (10 trace-minutes, about 50 calls, exponential handle times, nobody
abandons) is simulated in virtual time and replayed at 20x (30 s of wall time) on the same queue
configuration, through `loadtest.check_replay.run_check` (which starts and stops the service).
Every call must be accounted for and answered in both runs.

Tolerance. The replay differs from the simulation only by timing noise: each step (arrival,
accept, completion: each timed from the service's own timestamps) lands a few to a few tens of
milliseconds late in real time, that is up to about 1 trace second at 20x, and a wait is made
of a few such steps (the full check at 60x is `python -m loadtest.check_replay`). So a
call's wait can move by about a second, and its service-level verdict can flip only when its
simulated wait lies near the threshold: the service levels may differ by at most the share of
calls whose simulated wait is within 2 s of the threshold (plus one call). ASA, a mean of waits
each off by about a second, must agree within 2 s or 15 %, whichever is larger.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from loadtest.charts import charts
from loadtest.check_replay import SL_POINTS, comparison, main, run_check, throwaway_keys, verdicts
from loadtest.generate import TraceSpec, generate_trace
from loadtest.jsonout import finite, replay_json
from loadtest.replay import ServiceClock, replay_html, replay_report
from loadtest.report import run_figures
from loadtest.trace import Breaks, Call, Dist, Roster, RosterAgent
from loadtest.unavailability import Unavailability
from router.config import load_config
from router.errors import ConfigError

SPEED = 30.0
THRESHOLD_S = 20.0
CONFIG = f"""
[[keys]]
name = "pbx"
role = "platform"
env = "ACD_KEY_PBX"

[[queues]]
name = "q"
skills = {{ q = 1 }}
wrap_up_s = 5
offer_timeout_s = 15
sla = {{ threshold_s = {THRESHOLD_S}, target = 0.8 }}
"""
ROSTER = Roster(
    tuple(RosterAgent(f"a{i}", {"q": 1 + i % 3}, {"voice": 1}, ((0.0, 3600.0),)) for i in range(4)),
    wrap_up={"q": Dist("exponential", 5.0)},  # drawn per call, sent in each completion
    breaks=Breaks(400.0, Dist("fixed", 15.0)),  # not_ready, then available, over HTTP
)


def trace() -> list[Call]:
    """About 50 calls over 10 trace-minutes, 3.75 Erlangs on 4 agents, no abandons."""
    spec = TraceSpec(hours=1, rates=(300.0,), mix={"q": 1.0}, aht_s=45.0, handle_dist="exponential")
    return [c for c in generate_trace(spec, seed=3) if c.arrival_s < 600.0]


async def test_replay_agrees_with_simulate(tmp_path: Path) -> None:
    calls = trace()
    assert 40 <= len(calls) <= 70
    path = tmp_path / "acd.toml"
    path.write_text(CONFIG, encoding="utf-8")
    progress = io.StringIO()

    check = await run_check(str(path), calls, ROSTER, SPEED, 0.0, progress)
    simulated, result = check.simulated, check.replayed
    [sim] = run_figures(simulated)

    assert result.stopped == "all calls over"
    last_s = max(r.free_s or r.ended_s or 0.0 for r in simulated.calls)
    assert check.wall_s < last_s / SPEED + 10  # the trace's 30 s and its last calls, plus set-up
    assert "created" in progress.getvalue()
    [fig] = run_figures(result.sim)
    accounted = fig.answered + fig.abandoned + fig.timed_out + fig.blocked + fig.unanswered
    assert fig.offered == accounted == len(calls)
    assert fig.answered == sim.answered == len(calls)  # nobody abandons
    assert not result.stats.errors, result.stats.report()
    # Breaks over HTTP: each is a not_ready and an available besides the log-ins and -outs.
    unav = Unavailability(ROSTER)
    first_breaks = [unav.until_due(a.id) or 3600.0 for a in ROSTER.agents]
    assert min(first_breaks) < 300  # at least one falls due while calls come in
    state_changes = len(result.stats.latencies["agent_state"])
    assert state_changes >= 2 * len(ROSTER.agents) + 2

    waits = [r.wait_s for r in simulated.calls if r.wait_s is not None]
    near = sum(1 for w in waits if abs(w - THRESHOLD_S) <= 2.0)
    for formula, level in fig.service_level.items():
        expected = sim.service_level[formula]
        assert level is not None
        assert expected is not None
        assert abs(level - expected) <= (near + 1) / len(calls), (formula, level, expected)
    assert fig.asa_s is not None
    assert sim.asa_s is not None
    assert abs(fig.asa_s - sim.asa_s) <= max(2.0, 0.15 * sim.asa_s), (fig.asa_s, sim.asa_s)
    assert fig.aht_s is not None
    assert sim.aht_s is not None
    assert abs(fig.aht_s - sim.aht_s) <= max(2.0, 0.05 * sim.aht_s), (fig.aht_s, sim.aht_s)

    # Every arrival, accept and completion was scheduled and its lateness measured; the service's
    # clock ran at the replay's speed.
    late = result.stats.lateness
    assert len(late["arrival"]) == len(late["accept"]) == len(late["complete"]) == len(calls)
    assert "abandon" not in late  # nobody has a patience
    assert all(x >= 0 for values in late.values() for x in values)
    assert result.clock_ratio is not None
    assert abs(result.clock_ratio - 1) < 0.02, result.clock_ratio

    # The side-by-side verdicts: the same figures, PASS exactly when within 3 points / 15 %.
    rows = {v.figure: v for v in verdicts(result.sim, simulated)}
    assert (rows["offered"].replay, rows["offered"].simulate) == (len(calls), len(calls))
    assert rows["SL ab-excl"].replay == fig.service_level["abandons_excluded"]
    assert rows["SL ab-excl"].simulate == sim.service_level["abandons_excluded"]
    answered, expected_answered = fig.service_level["answered"], sim.service_level["answered"]
    assert answered is not None
    assert expected_answered is not None
    assert rows["SL ans"].ok == (abs(answered - expected_answered) <= SL_POINTS + 1e-9)
    assert rows["ASA s"].ok == (abs(fig.asa_s - sim.asa_s) <= 0.15 * sim.asa_s + 1e-9)
    table = comparison(list(rows.values()))
    assert table.splitlines()[-1] in ("PASS: all 1 queues", "FAIL: q")

    text = replay_report(result)
    assert f"replay {SPEED:g}x" in text
    assert "p999 ms" in text
    assert "create" in text
    assert "late by" in text
    assert "EWT |error| s" in text
    assert "WARNING" not in text  # the clocks agree
    page = replay_html(result, {"speed": SPEED}, charts([result.sim]))
    assert "<svg" in page
    assert "Client-side latencies" in page
    doc = json.loads(json.dumps(finite(replay_json(result)), allow_nan=False))
    assert doc["run"]["queues"][0]["answered"] == fig.answered
    requests = doc["client"]["requests"]
    assert [r["request"] for r in requests] == sorted(result.stats.latencies)
    assert sum(r["count"] for r in requests) == result.stats.requests
    assert [r["action"] for r in doc["client"]["lateness"]] == sorted(late)
    print(
        f"\nreplay {check.wall_s:.1f} s: SL ab-excl {fig.service_level['abandons_excluded']} "
        f"vs {sim.service_level['abandons_excluded']}, ASA {fig.asa_s:.2f} vs {sim.asa_s:.2f}, "
        f"AHT {fig.aht_s:.2f} vs {sim.aht_s:.2f}, near threshold {near}\n{text}\n{table}"
    )


def test_service_clock_keeps_the_tightest_offset() -> None:
    clock = ServiceClock()
    assert clock.trace(1000.0, default=7.0) == 7.0  # nothing seen yet
    clock.observe(1010.0, received=12.0)  # stamped at most 12 s in: offset >= 998
    clock.observe(1020.5, received=21.0)  # a faster answer: offset >= 999.5
    clock.observe(None, received=30.0)
    clock.observe(1030.0, received=35.0)  # a slow one teaches nothing
    assert clock.offset == 999.5
    assert clock.trace(1100.0, default=0.0) == 100.5
    assert clock.speed_ratio() == (1030.0 - 1010.0) / (35.0 - 12.0)
    assert ServiceClock().speed_ratio() is None


def test_check_keys_and_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "acd.toml"
    path.write_text(CONFIG, encoding="utf-8")
    env, key = throwaway_keys(load_config(path, env={}))
    assert env == {"ACD_KEY_PBX": key}
    assert len(key) >= 20
    path.write_text('[[keys]]\nname = "g"\nrole = "monitor"\nenv = "ACD_KEY_G"\n', "utf-8")
    with pytest.raises(ConfigError, match="no platform or admin key"):
        throwaway_keys(load_config(path, env={}))
    assert main(["--config", str(path), "--speed", "0"]) == 2
    assert "--speed must be > 0" in capsys.readouterr().err
    assert main(["--config", str(path), "--quiet"]) == 2  # before starting anything
    assert "no platform or admin key" in capsys.readouterr().err
