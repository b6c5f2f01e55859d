"""Erlang C staffing (SPEC §6 `acd_queue_agents_required`): pure functions, no I/O, no clock.

The M/M/N model: calls arrive at random (Poisson) at a steady rate, handle times are exponential
with mean AHT, callers wait for ever and are answered in arrival order. With traffic
A = arrival rate * AHT (Erlangs) and N agents:

- C(A, N), the probability that a call waits, from the Erlang B recurrence
  B(0) = 1, B(n) = A·B(n-1) / (n + A·B(n-1)) and C = N·B / (N - A·(1 - B)); every step stays in
  [0, 1], so the result is stable for any N (no factorials, no powers);
- service level P(wait ≤ T) = 1 - C·exp(-(N - A)·T / AHT);
- average speed of answer ASA = C·AHT / (N - A).

With N ≤ A the queue grows without bound: every call waits (C = 1), the service level is 0 and
the ASA infinite. No traffic (A ≤ 0) means no call waits: C = 0, service level 1, ASA 0.
Non-finite inputs, a negative threshold and a target outside [0, 1] are errors (ValueError).

`agents_required` reads no arrivals or no handle time (≤ 0) as no traffic (0 agents), searches a
target above MAX_TARGET as MAX_TARGET (100 % is unreachable) and answers at most MAX_AGENTS.
"""

from __future__ import annotations

import math

MAX_AGENTS = 10_000
"""The largest staffing `agents_required` answers; a load needing more answers this."""
MAX_TARGET = 0.999_999
"""The highest service level target searched for: a target of 1 (every call answered within the
threshold) is unreachable in Erlang C, so targets above this one are read as this one."""


def _finite(name: str, value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return float(value)


def _erlang_b_step(traffic: float, n: int, blocking: float) -> float:
    """B(n) from B(n-1) = `blocking`."""
    load = traffic * blocking
    return load / (n + load)


def _erlang_c_from_b(traffic: float, agents: int, blocking: float) -> float:
    """C(A, N) from B(A, N), for N > A > 0."""
    return min(1.0, agents * blocking / (agents - traffic * (1.0 - blocking)))


def erlang_b(traffic_erlangs: float, agents: int) -> float:
    """Probability that a call finds every one of `agents` busy in a loss system (Erlang B)."""
    traffic = _finite("traffic_erlangs", traffic_erlangs)
    if traffic <= 0:
        return 0.0
    if agents <= 0:
        return 1.0
    blocking = 1.0
    for n in range(1, agents + 1):
        blocking = _erlang_b_step(traffic, n, blocking)
    return blocking


def erlang_c(traffic_erlangs: float, agents: int) -> float:
    """Probability that a call waits with `agents` serving `traffic_erlangs` (Erlang C)."""
    traffic = _finite("traffic_erlangs", traffic_erlangs)
    if traffic <= 0:
        return 0.0
    if agents <= traffic:
        return 1.0
    return _erlang_c_from_b(traffic, agents, erlang_b(traffic, agents))


def _service_level(traffic: float, agents: int, wait_prob: float, aht: float, t: float) -> float:
    value = 1.0 - wait_prob * math.exp(-(agents - traffic) * t / aht)
    return min(1.0, max(0.0, value))


def _check_times(aht_s: float, threshold_s: float | None = None) -> None:
    if _finite("aht_s", aht_s) <= 0:
        raise ValueError(f"aht_s must be positive, not {aht_s!r}")
    if threshold_s is not None and _finite("threshold_s", threshold_s) < 0:
        raise ValueError(f"threshold_s must be at least 0, not {threshold_s!r}")


def service_level(traffic: float, agents: int, aht_s: float, threshold_s: float) -> float:
    """Probability that a call is answered within `threshold_s` seconds (0 when N ≤ A)."""
    traffic = _finite("traffic", traffic)
    if traffic <= 0:
        return 1.0
    _check_times(aht_s, threshold_s)
    if agents <= traffic:
        return 0.0
    return _service_level(traffic, agents, erlang_c(traffic, agents), aht_s, threshold_s)


def asa(traffic: float, agents: int, aht_s: float) -> float:
    """Average speed of answer in seconds over all calls (infinite when N ≤ A)."""
    traffic = _finite("traffic", traffic)
    if traffic <= 0:
        return 0.0
    _check_times(aht_s)
    if agents <= traffic:
        return math.inf
    return erlang_c(traffic, agents) * aht_s / (agents - traffic)


def agents_required(
    arrival_rate_per_s: float, aht_s: float, threshold_s: float, target: float
) -> int:
    """The fewest agents N > A meeting `target` within `threshold_s`; 0 without traffic."""
    # No arrivals or no handle time (<= 0) is no traffic. Targets above MAX_TARGET are searched
    # as MAX_TARGET; a load needing more than MAX_AGENTS answers MAX_AGENTS. One pass of the
    # Erlang B recurrence up to the answer: O(answer) steps, a few microseconds each.
    rate = _finite("arrival_rate_per_s", arrival_rate_per_s)
    aht = _finite("aht_s", aht_s)
    if _finite("threshold_s", threshold_s) < 0:
        raise ValueError(f"threshold_s must be at least 0, not {threshold_s!r}")
    if not 0 <= _finite("target", target) <= 1:
        raise ValueError(f"target must be within [0, 1], not {target!r}")
    traffic = rate * aht
    if rate <= 0 or aht <= 0 or traffic <= 0:
        return 0
    if traffic >= MAX_AGENTS:
        return MAX_AGENTS
    goal = min(target, MAX_TARGET)
    blocking = 1.0
    for n in range(1, MAX_AGENTS + 1):
        blocking = _erlang_b_step(traffic, n, blocking)
        if n <= traffic:
            continue
        wait_prob = _erlang_c_from_b(traffic, n, blocking)
        if _service_level(traffic, n, wait_prob, aht, threshold_s) >= goal:
            return n
    return MAX_AGENTS
