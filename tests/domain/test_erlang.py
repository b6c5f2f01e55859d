"""Erlang C against published tables and an independent exact computation (pure, fast)."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.domain.erlang import (
    MAX_AGENTS,
    agents_required,
    asa,
    erlang_b,
    erlang_c,
    service_level,
)


def exact_erlang_c(traffic: int | Fraction, agents: int) -> float:
    """The textbook formula with factorials, in exact rational arithmetic (small N only)."""
    a = Fraction(traffic)
    below = sum(a**k / math.factorial(k) for k in range(agents))
    top = a**agents / math.factorial(agents) * agents / (agents - a)
    return float(top / (below + top))


def log_erlang_c(traffic: float, agents: int) -> float:
    """The same formula in log space with lgamma: independent, and fine for thousands of agents."""
    terms = [k * math.log(traffic) - math.lgamma(k + 1) for k in range(agents)]
    top = (
        agents * math.log(traffic) - math.lgamma(agents + 1) + math.log(agents / (agents - traffic))
    )
    peak = max([*terms, top])
    below = sum(math.exp(t - peak) for t in terms)
    return math.exp(top - peak) / (below + math.exp(top - peak))


# Published worked examples: 6 Erlangs (2 calls a minute, 180 s handle time) and 10 Erlangs
# (100 calls in 30 minutes, 180 s handle time), both with a 20 s threshold; values rounded as
# printed. Each row: traffic, agents, P(wait), service level within 20 s, ASA (s).
TABLE = [
    (6, 8, 0.357, 0.714, 32.1),
    (6, 9, 0.196, 0.860, 11.8),
    (10, 11, 0.682, 0.390, 122.8),
    (10, 12, 0.449, 0.640, 40.4),
    (10, 13, 0.285, 0.796, 17.1),
    (10, 14, 0.174, 0.888, 7.8),
]


@pytest.mark.parametrize(("traffic", "agents", "wait", "level", "speed"), TABLE)
def test_published_table(
    traffic: int, agents: int, wait: float, level: float, speed: float
) -> None:
    assert erlang_c(traffic, agents) == pytest.approx(exact_erlang_c(traffic, agents), rel=1e-12)
    assert round(erlang_c(traffic, agents), 3) == wait
    assert round(service_level(traffic, agents, 180, 20), 3) == level
    assert round(asa(traffic, agents, 180), 1) == speed


def test_six_erlangs_need_nine_agents_for_80_20() -> None:
    assert agents_required(2 / 60, 180, 20, 0.8) == 9
    assert agents_required(2 / 60, 180, 20, 0.714) == 8  # 8 agents reach 71.42 %


def test_ten_erlangs_need_fourteen_agents_for_80_20() -> None:
    # 13 agents give 79.6 %: just short of the target.
    assert agents_required(100 / 1800, 180, 20, 0.8) == 14
    assert agents_required(100 / 1800, 180, 20, 0.79) == 13


def test_large_agent_counts_are_stable() -> None:
    for traffic, agents in [(500.0, 520), (950.5, 1000), (4000.0, 4080)]:
        value = erlang_c(traffic, agents)
        assert 0 < value < 1
        assert value == pytest.approx(log_erlang_c(traffic, agents), rel=1e-9)
    assert erlang_c(0.5, 5000) == pytest.approx(0, abs=1e-300)


def test_agents_required_matches_service_level() -> None:
    rate, aht = 3.2, 240.0  # 768 Erlangs
    needed = agents_required(rate, aht, 15, 0.9)
    traffic = rate * aht
    assert service_level(traffic, needed, aht, 15) >= 0.9
    assert service_level(traffic, needed - 1, aht, 15) < 0.9
    assert needed - 1 > traffic


def test_no_traffic() -> None:
    assert erlang_c(0, 3) == 0
    assert erlang_b(0, 3) == 0
    assert service_level(0, 0, 180, 20) == 1
    assert asa(0, 0, 180) == 0
    for rate, aht in [(0, 180), (-1, 180), (2, 0), (2, -5)]:
        assert agents_required(rate, aht, 20, 0.8) == 0


def test_understaffed() -> None:
    assert erlang_c(6, 6) == 1
    assert erlang_c(6, 0) == 1
    assert erlang_b(6, 0) == 1
    assert service_level(6, 5, 180, 20) == 0
    assert asa(6, 6, 180) == math.inf


def test_threshold_zero_is_one_minus_wait_probability() -> None:
    assert service_level(6, 9, 180, 0) == pytest.approx(1 - erlang_c(6, 9))


def test_targets_at_the_edges() -> None:
    assert agents_required(2 / 60, 180, 20, 0) == 7  # the fewest agents above 6 Erlangs
    full = agents_required(2 / 60, 180, 20, 1.0)  # unreachable: searched as 99.9999 %
    assert full == agents_required(2 / 60, 180, 20, 0.999_999)
    assert 9 < full < 40
    assert service_level(6, full, 180, 20) >= 0.999_999


def test_huge_loads_are_capped() -> None:
    assert agents_required(1e6, 180, 20, 0.8) == MAX_AGENTS
    assert agents_required(1e300, 1e300, 20, 0.8) == MAX_AGENTS
    assert agents_required(9_990 / 180, 180, 20, 0.8) == MAX_AGENTS  # 9,990 Erlangs


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="traffic_erlangs"):
        erlang_c(math.nan, 3)
    with pytest.raises(ValueError, match="aht_s"):
        service_level(6, 9, 0, 20)
    with pytest.raises(ValueError, match="threshold_s"):
        service_level(6, 9, 180, -1)
    with pytest.raises(ValueError, match="aht_s"):
        asa(6, 9, math.inf)
    with pytest.raises(ValueError, match="target"):
        agents_required(1, 180, 20, 1.5)
    with pytest.raises(ValueError, match="threshold_s"):
        agents_required(1, 180, -1, 0.8)
    with pytest.raises(ValueError, match="arrival_rate_per_s"):
        agents_required(math.inf, 180, 20, 0.8)


@given(
    st.fractions(min_value=Fraction(1, 100), max_value=40, max_denominator=100),
    st.integers(min_value=1, max_value=60),
)
def test_matches_exact_formula(traffic: Fraction, extra: int) -> None:
    agents = math.floor(traffic) + extra
    assert erlang_c(float(traffic), agents) == pytest.approx(
        exact_erlang_c(traffic, agents), rel=1e-9, abs=1e-300
    )


@given(
    st.floats(min_value=0.01, max_value=2000, allow_nan=False),
    st.floats(min_value=1, max_value=3600),
    st.floats(min_value=0, max_value=600),
)
def test_monotonic_in_agents(traffic: float, aht: float, threshold: float) -> None:
    first = math.floor(traffic) + 1
    waits = [erlang_c(traffic, n) for n in range(first, first + 30)]
    levels = [service_level(traffic, n, aht, threshold) for n in range(first, first + 30)]
    speeds = [asa(traffic, n, aht) for n in range(first, first + 30)]
    assert all(0 <= w <= 1 for w in waits)
    assert all(0 <= s <= 1 for s in levels)
    assert all(a >= b for a, b in itertools.pairwise(waits))
    assert all(a <= b for a, b in itertools.pairwise(levels))
    assert all(a >= b for a, b in itertools.pairwise(speeds))


@given(
    st.floats(min_value=0.001, max_value=5),
    st.floats(min_value=1, max_value=600),
    st.floats(min_value=0, max_value=300),
    st.floats(min_value=0, max_value=0.999),
)
def test_agents_required_is_the_smallest(
    rate: float, aht: float, threshold: float, target: float
) -> None:
    needed = agents_required(rate, aht, threshold, target)
    traffic = rate * aht
    assert needed > traffic
    assert service_level(traffic, needed, aht, threshold) >= target
    if needed - 1 > traffic:
        assert service_level(traffic, needed - 1, aht, threshold) < target
