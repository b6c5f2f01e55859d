"""The EWT harness on hand-checkable cases: Asterisk's hold time, the errors, the router's EWT."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from loadtest.ewt import asterisk_estimates, ewt_figures, ewt_report
from loadtest.report import ALL
from loadtest.simulate import CallResult, SimOptions, SimResult, simulate_on
from loadtest.trace import Call, Roster, RosterAgent
from router.domain.models import QueueConfig, Sla
from router.metrics.business import render
from router.settings import ServiceSettings
from router.store.engine import Engine

Q = QueueConfig(name="q", skills={"q": 1}, sla=Sla(threshold_s=20, target=0.8))
R = QueueConfig(name="r", skills={"r": 1}, sla=Sla(threshold_s=20, target=0.8))


def result(
    call_id: str,
    arrival: float,
    answered: float | None,
    queue: str = "q",
    ewt: float | None = 0.0,
    queued: bool = True,
) -> CallResult:
    r = CallResult(Call(call_id, arrival, queue, 60.0), enqueued_s=arrival, ewt_s=ewt)
    r.queued = queued
    if answered is None:
        r.status, r.ended_s = "abandoned", arrival + 30
    else:
        r.status, r.answered_s = "answered", answered
    return r


def test_asterisk_hold_time_is_a_per_queue_integer_moving_average() -> None:
    calls = [
        result("a", 0.0, 10.4),  # wait 10 whole seconds: hold time (3*0 + 10) >> 2 = 2
        result("b", 5.0, None),  # arrives before a is answered: 0
        result("c", 12.0, 40.9),  # 2; answered after floor(40.9) - floor(12.0) = 28 s: 34 >> 2 = 8
        result("d", 40.9, 41.0),  # at c's answer, which does not count yet: 2
        result("e", 41.0, 41.0, queue="r"),  # another queue: its own hold time, 0
        result("f", 42.0, 43.0),  # d's answer at 41.0 after 41 - 40 = 1 s: (24 + 1) >> 2 = 6
    ]
    assert asterisk_estimates(calls) == {"a": 0, "b": 0, "c": 2, "d": 2, "e": 0, "f": 6}


def test_errors_of_each_predictor_on_all_and_on_queued_calls() -> None:
    calls = [
        result("a", 0.0, 40.0, ewt=30.0),  # wait 40: router 10, Asterisk 40, zero 40
        result("b", 50.0, 50.0, ewt=5.0, queued=False),  # offered at once: 5, 10, 0
        result("c", 60.0, 80.0, ewt=20.0),  # wait 20: 0, Asterisk (30 + 0) >> 2 = 7: 13, 20
        result("d", 70.0, None, ewt=99.0),  # abandoned: not counted
        result("e", 0.0, 8.0, queue="r", ewt=8.0),  # wait 8: 0, 8, 8
    ]
    sim = SimResult(calls, {"q": Q, "r": R}, Roster(()))
    rows = {f.queue: f for f in ewt_figures(sim)}
    q = rows["q"]
    assert (q.answered, q.queued) == (3, 2)
    assert q.all_calls == pytest.approx({"router": 5.0, "asterisk": 21.0, "zero": 20.0})
    assert q.queued_calls == pytest.approx({"router": 5.0, "asterisk": 26.5, "zero": 30.0})
    assert q.ratio() == pytest.approx(5 / 21)
    assert q.ratio(queued=True) == pytest.approx(5 / 26.5)
    everything = rows[ALL]
    assert everything.answered == 4
    assert everything.all_calls == pytest.approx(
        {"router": 15 / 4, "asterisk": 71 / 4, "zero": 68 / 4}
    )
    text = ewt_report(list(rows.values()))
    assert "(all)" in text
    assert "0.24" in text  # q's ratio on all calls


async def test_router_figure_is_the_one_its_metric_observes(
    redis: Redis, settings: ServiceSettings
) -> None:
    """Two agents, a ring delay, queued and offered-at-once calls: per call, the harness reads
    the EWT the router recorded at arrival, so its errors add up to `acd_ewt_error_seconds`."""
    roster = Roster(tuple(RosterAgent(a, {"q": 1}, shifts=((0.0, 600.0),)) for a in ("ann", "bob")))
    calls = [Call(f"c{i}", 10.0 * i, "q", 45.0) for i in range(8)]
    result_ = await simulate_on(redis, settings, calls, roster, [Q], SimOptions(ring_delay_s=2.0))
    answered = [r for r in result_.calls if r.status == "answered"]
    assert len(answered) == 8
    assert {r.queued for r in answered} == {True, False}
    assert all(r.ewt_s is not None for r in answered)
    [row] = ewt_figures(result_)
    text = await render(Engine(redis, settings), SimOptions().start + 10_000)
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }
    label = (("queue", "q"),)
    assert found[("acd_ewt_error_seconds_count", label)] == row.answered
    assert row.all_calls["router"] is not None
    metric_sum = found[("acd_ewt_error_seconds_sum", label)]
    assert row.all_calls["router"] * row.answered == pytest.approx(metric_sum, abs=1e-6)
