"""Reference check: `simulate` on a single-queue FIFO trace against independent models.

The engine is checked call for call against the exact FIFO recursion, and in figures against
`ciw`, on traces it simulates in seconds. Erlang C's steady state is checked through the
recursion (equal to the engine, as the first tests show) on a trace of the default size, 50,000
calls, which the engine would take some 3 minutes over (`python -m loadtest reference` does).
"""

from __future__ import annotations

import math
from dataclasses import replace

from redis.asyncio import Redis

from loadtest.reference import (
    CALLS,
    PATIENCE_CALLS,
    PATIENCE_S,
    ciw_figures,
    engine_figures,
    erlang_figures,
    fifo_figures,
    fifo_spread,
    fifo_waits,
    meets,
    reference_trace,
    sim_figures,
    trace_load,
)
from loadtest.simulate import SimResult
from router.settings import ServiceSettings


def same_path(result: SimResult, want: dict[str, tuple[float, bool]]) -> None:
    """Every call of the simulation waited as long as in `want` (to the ms) with the same fate."""
    got = {r.call.id: (r.wait_s, r.status == "answered") for r in result.calls}
    assert got.keys() == want.keys()
    for call_id, (wait, answered) in want.items():
        got_wait, got_answered = got[call_id]
        assert got_wait is not None, call_id
        assert abs(got_wait - wait) <= 0.0015, call_id
        assert got_answered == answered, call_id


async def test_engine_is_the_fifo_queue_without_abandons(
    redis: Redis, settings: ServiceSettings
) -> None:
    trace = reference_trace(3000, seed=2)
    got, result = await engine_figures(
        redis, replace(settings, namespace=settings.namespace + "r"), trace
    )
    want = fifo_waits(trace)
    assert sum(1 for wait, _ in want.values() if wait > 20) > 200  # a path with queueing in it
    same_path(result, want)
    assert sim_figures(result.calls) == got
    assert meets(got, fifo_figures(trace), 0.0005, 0.001)
    assert meets(got, ciw_figures(trace), 0.0005, 0.001)


async def test_engine_is_ciw_with_patience(redis: Redis, settings: ServiceSettings) -> None:
    trace = reference_trace(2000, seed=3, patience_s=PATIENCE_S)
    got, result = await engine_figures(
        redis, replace(settings, namespace=settings.namespace + "p"), trace
    )
    assert got.abandoned > 50
    same_path(result, fifo_waits(trace))
    assert meets(got, ciw_figures(trace), 0.0005, 0.001)
    assert meets(got, fifo_figures(trace), 0.0005, 0.001)


def test_erlang_c_and_ciw_at_the_default_sizes() -> None:
    trace = reference_trace(CALLS, seed=1)
    assert len(trace) == CALLS
    load = trace_load(trace)
    assert abs(load.erlangs / 1.5 - 1) < 0.02
    # The bounds (2 points, 10 %) against Erlang C at the trace's own load; at this size
    # they sit at 7.0 and 3.1 standard deviations of the sampling noise (see the next test).
    assert meets(fifo_figures(trace), erlang_figures(load))
    with_patience = reference_trace(PATIENCE_CALLS, seed=1, patience_s=PATIENCE_S)
    fifo = fifo_figures(with_patience)
    assert fifo.abandoned > 300
    assert meets(ciw_figures(with_patience), fifo, 0.0005, 0.001)


def test_no_bias_against_erlang_c_and_noise_within_the_bounds() -> None:
    """Over 40 seeds of 10,000 calls the mean error is within 3 standard errors of zero, and the
    noise, scaled by 1/sqrt(calls) to the default size, puts the bounds near 3 sd or beyond."""
    at_trace, at_nominal = fifo_spread(10_000, seeds=40)
    for spread in (at_trace, at_nominal):
        assert spread.seeds == 40
        assert abs(spread.sl_mean_pt) <= 3 * spread.sl_sd_pt / math.sqrt(spread.seeds)
        assert abs(spread.asa_mean_pct) <= 3 * spread.asa_sd_pct / math.sqrt(spread.seeds)
    # The trace's own load explains part of the noise: comparing with it narrows the spread.
    assert at_trace.sl_sd_pt < 0.8 * at_nominal.sl_sd_pt
    assert at_trace.asa_sd_pct < at_nominal.asa_sd_pct
    scale = math.sqrt(CALLS / 10_000)
    sl_k, asa_k = at_trace.sigmas()
    assert sl_k * scale > 5
    assert asa_k * scale > 2.7
