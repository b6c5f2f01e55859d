"""Generator: reproducible Poisson traces and Erlang C sized rosters."""

from __future__ import annotations

import statistics

from loadtest.generate import (
    TraceSpec,
    config_roster,
    generate_trace,
    parse_mix,
    parse_rates,
    size_roster,
)
from router.domain.erlang import agents_required
from router.domain.models import Channel, QueueConfig, Sla

SPEC = TraceSpec(hours=3, rates=(600, 1200, 300), mix=parse_mix("a=3,b=1"), patience_s=60.0)


def test_reproducible_and_follows_the_profile() -> None:
    calls = generate_trace(SPEC, 5)
    assert calls == generate_trace(SPEC, 5)
    assert calls != generate_trace(SPEC, 6)
    per_hour = [sum(1 for c in calls if h * 3600 <= c.arrival_s < (h + 1) * 3600) for h in range(3)]
    assert all(abs(n - r) < 4 * r**0.5 for n, r in zip(per_hour, (600, 1200, 300), strict=True))
    share_a = sum(1 for c in calls if c.queue == "a") / len(calls)
    assert abs(share_a - 0.75) < 0.05
    assert abs(statistics.mean(c.handle_s for c in calls) / 180 - 1) < 0.1
    assert abs(statistics.mean(c.patience_s or 0 for c in calls) / 60 - 1) < 0.1


def test_parsers() -> None:
    assert parse_rates("1,2.5") == (1.0, 2.5)
    assert parse_mix("x") == {"x": 1.0}


def test_roster_sized_by_erlang_c_per_hour() -> None:
    roster = size_roster(SPEC, {"a": 20, "b": 20}, {"a": 0.8, "b": 0.8}, {}, {"a": 10})
    for h, rate in enumerate((600, 1200, 300)):
        on = [a for a in roster.agents if any(s <= h * 3600 < e for s, e in a.shifts)]
        need_a = agents_required(rate * 0.75 / 3600, 190, 20, 0.8)
        need_b = agents_required(rate * 0.25 / 3600, 180, 20, 0.8)
        assert sum(1 for a in on if a.skills == {"a": 3}) == need_a
        assert sum(1 for a in on if a.skills == {"b": 3}) == need_b


def test_roster_for_the_configured_queues() -> None:
    chat = QueueConfig(
        name="chat",
        channel=Channel.CHAT,
        skills={"chat": 1, "lang:en": 4},
        sla=Sla(threshold_s=10, target=0.9),
        wrap_up_s=15.0,
    )
    spec = TraceSpec(hours=1, rates=(240,), mix={"chat": 1, "other": 1})
    roster = config_roster(spec, [chat], threshold_s=30, target=0.5)
    chats = [a for a in roster.agents if a.id.startswith("chat-")]
    others = [a for a in roster.agents if a.id.startswith("other-")]
    assert len(chats) == agents_required(120 / 3600, 195, 10, 0.9)  # the queue's SLA and wrap-up
    assert len(others) == agents_required(120 / 3600, 180, 30, 0.5)  # not configured: defaults
    assert chats[0].skills == {"chat": 3, "lang:en": 4}  # level 3 at least
    assert chats[0].channels == {"chat": 1}
    assert (others[0].skills, others[0].channels) == ({"other": 3}, {"voice": 1})
