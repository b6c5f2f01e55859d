"""HTTP replay against the real `acd-router serve --clock-speed 20`, checked against `simulate`.

A generated single-queue trace (10 trace-minutes, about 50 calls, exponential handle times, nobody
abandons) is replayed at 20x (30 s of wall time) and simulated in virtual time on the same queue
configuration. Every call must be accounted for and answered in both runs.

Tolerance. The replay differs from the simulation only by timing noise: each step (event
delivery, accept, completion, arrival) lands a few to a few tens of milliseconds late in real
time, that is up to about 1 trace second at 20x, and a wait is made of a few such steps. So a
call's wait can move by about a second, and its service-level verdict can flip only when its
simulated wait lies near the threshold: the service levels may differ by at most the share of
calls whose simulated wait is within 2 s of the threshold (plus one call). ASA, a mean of waits
each off by about a second, must agree within 2 s or 15 %, whichever is larger.
"""

from __future__ import annotations

import io
import time
from dataclasses import replace
from pathlib import Path

from redis.asyncio import Redis

from loadtest.generate import TraceSpec, generate_trace
from loadtest.replay import ReplayOptions, replay, replay_html, replay_report
from loadtest.report import run_figures
from loadtest.simulate import simulate_on
from loadtest.trace import Call, Roster, RosterAgent
from router.config import load_config
from router.settings import ServiceSettings
from tests.e2e.serve import Served, clean_env, serve_args

KEY = "replay-test-key"
SPEED = 20.0
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
    tuple(RosterAgent(f"a{i}", {"q": 1 + i % 3}, {"voice": 1}, ((0.0, 3600.0),)) for i in range(4))
)


def trace() -> list[Call]:
    """About 50 calls over 10 trace-minutes, 3.75 Erlangs on 4 agents, no abandons."""
    spec = TraceSpec(hours=1, rates=(300.0,), mix={"q": 1.0}, aht_s=45.0, handle_dist="exponential")
    return [c for c in generate_trace(spec, seed=3) if c.arrival_s < 600.0]


async def test_replay_agrees_with_simulate(
    tmp_path: Path, redis: Redis, settings: ServiceSettings
) -> None:
    calls = trace()
    assert 40 <= len(calls) <= 70
    path = tmp_path / "acd.toml"
    path.write_text(CONFIG, encoding="utf-8")
    config = load_config(path, env={"ACD_KEY_PBX": KEY})

    simulated = await simulate_on(
        redis, replace(config.service, namespace=settings.namespace), calls, ROSTER, config.queues
    )
    [sim] = run_figures(simulated)

    args, _ = serve_args("--config", str(path), "--clock-speed", str(SPEED))
    served = Served(args, env=clean_env({"ACD_KEY_PBX": KEY}))
    try:
        url = served.wait_ready()
        progress = io.StringIO()
        start = time.monotonic()
        result = await replay(
            calls, ROSTER, ReplayOptions(url=url, key=KEY, speed=SPEED, progress=progress)
        )
        wall = time.monotonic() - start
    finally:
        served.kill()

    assert result.stopped == "all calls over"
    last_s = max(r.free_s or r.ended_s or 0.0 for r in simulated.calls)
    assert wall < last_s / SPEED + 10  # the trace's 30 s and its last calls, plus set-up
    assert "created" in progress.getvalue()
    [fig] = run_figures(result.sim)
    accounted = fig.answered + fig.abandoned + fig.timed_out + fig.blocked + fig.unanswered
    assert fig.offered == accounted == len(calls)
    assert fig.answered == sim.answered == len(calls)  # nobody abandons
    assert not result.stats.errors, result.stats.report()

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

    text = replay_report(result)
    assert "replay 20x" in text
    assert "p999 ms" in text
    assert "create" in text
    assert "<svg" in replay_html(result)
    print(
        f"\nreplay {wall:.1f} s: SL ab-excl {fig.service_level['abandons_excluded']} "
        f"vs {sim.service_level['abandons_excluded']}, ASA {fig.asa_s:.2f} vs {sim.asa_s:.2f}, "
        f"AHT {fig.aht_s:.2f} vs {sim.aht_s:.2f}, near threshold {near}\n{text}"
    )
