"""Wrap-up and breaks the trace does not record: seeded draws, and their play through the engine."""

from __future__ import annotations

import itertools
from dataclasses import replace

from redis.asyncio import Redis

from loadtest.simulate import SimOptions, simulate_on
from loadtest.trace import Breaks, Call, Dist, Roster, RosterAgent
from loadtest.unavailability import BREAK_REASON, BreakBook, Unavailability
from router.domain.models import QueueConfig, Sla
from router.settings import ServiceSettings
from router.store.engine import Engine

QUEUE = QueueConfig(name="q", skills={"q": 1}, sla=Sla(threshold_s=20, target=0.8), wrap_up_s=7.0)
_runs = itertools.count()


def fresh(settings: ServiceSettings) -> ServiceSettings:
    return replace(settings, namespace=f"{settings.namespace}u{next(_runs)}")


def test_wrap_up_precedence_and_determinism() -> None:
    roster = Roster(
        (
            RosterAgent("ann", {"q": 1}, shifts=((0.0, 10.0),)),
            RosterAgent("bob", {"q": 1}, shifts=((0.0, 10.0),), wrap_up=Dist("fixed", 3.0)),
        ),
        wrap_up={"q": Dist("exponential", 30.0)},
    )
    unav = Unavailability(roster, seed=4)
    call = Call("c1", 0.0, "q", 10.0)
    assert unav.wrap_up_s(replace(call, wrap_up_s=1.5), "ann") == 1.5  # the trace's first
    assert unav.wrap_up_s(call, "bob") == 3.0  # then the agent's
    drawn = unav.wrap_up_s(call, "ann")  # then the queue's, the same for the call in every run
    assert drawn is not None
    assert drawn > 0
    assert Unavailability(roster, seed=4).wrap_up_s(call, "ann") == drawn
    assert Unavailability(roster, seed=5).wrap_up_s(call, "ann") != drawn
    assert unav.wrap_up_s(replace(call, queue="other"), "ann") is None  # the queue's configured
    assert unav.breaks("ann") is None
    assert unav.until_due("ann") is None


def test_break_book_owes_a_break_until_the_call_ends() -> None:
    roster = Roster(
        (RosterAgent("ann", {"q": 1}, shifts=((0.0, 100.0),)),),
        breaks=Breaks(50.0, Dist("fixed", 20.0)),
    )
    book = BreakBook(Unavailability(roster))
    due = book.start("ann", 0.0)
    assert due is not None
    at, token = due
    assert book.due("ann", token, at, busy=True) is None  # on a call: owed
    assert book.completed("ann", 90.0, 5.0) == 90.0 + 5.0 + 20.0  # after the call and wrap-up
    assert book.completed("ann", 120.0, 5.0) is None  # owed once
    assert book.due("ann", token, 130.0, busy=False) == 150.0  # idle: at once
    book.stop("ann")
    assert not book.current("ann", token)
    assert book.due("ann", token, 140.0, busy=False) is None  # the shift ended


async def test_a_break_due_during_a_call_follows_its_wrap_up(
    redis: Redis, settings: ServiceSettings
) -> None:
    roster = Roster(
        (RosterAgent("ann", {"q": 1}, shifts=((0.0, 3600.0),)),),
        wrap_up={"q": Dist("fixed", 10.0)},
        breaks=Breaks(100.0, Dist("fixed", 50.0)),
    )
    first_due = Unavailability(roster, seed=1).until_due("ann")
    assert first_due is not None
    assert first_due < 1000  # during c1, so owed until c1 and its wrap-up end
    calls = [Call("c1", 0.0, "q", 1000.0), Call("c2", 1001.0, "q", 5000.0)]
    ns = fresh(settings)
    result = await simulate_on(redis, ns, calls, roster, [QUEUE], SimOptions(seed=1))
    r = {c.call.id: c for c in result.calls}
    assert r["c1"].free_s == 1010.0  # the roster's wrap-up, not the queue's 7 s
    assert r["c2"].answered_s == 1000.0 + 10.0 + 50.0  # back from the break
    engine = Engine(redis, ns)
    changes = [
        (e.at - SimOptions().start, e.fields["state"], e.fields["reason"])
        for e in await engine.read_events(count=10_000)
        if e.type == "agent.state_changed"
    ]
    assert (1000.0, "not_ready", BREAK_REASON) in changes  # before the call's end: no offer
    assert (1060.0, "available", None) in changes
