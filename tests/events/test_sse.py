"""GET /v1/events: Server-Sent Events from the durable event log (§4)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace

import pytest
from redis.asyncio import Redis

from router.clock import ManualClock
from router.domain.models import AgentState, Event
from router.events import sse
from router.events.sse import event_json
from router.settings import ServiceSettings
from router.store.engine import Engine
from tests.events.conftest import Client, Frame, Sse, StartRouter, deliveries
from tests.store.center import Center

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


async def open_stream(client: Client, query: str = "", **headers: str) -> Sse:
    response = await client.get(f"/v1/events{query}", headers=headers)
    assert response.status == 200, await response.text()
    return Sse(response)


def same(frames: list[Frame], events: list[Event]) -> None:
    assert [(f.id, f.event, f.data) for f in frames] == [
        (e.id, e.type, event_json(e).decode()) for e in events
    ]


async def test_events_carry_id_type_and_the_fields_of_their_kind(
    start_router: StartRouter, center: Center
) -> None:
    client = await start_router()
    response = await client.get("/v1/events")
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    stream = Sse(response)
    sse_before = deliveries("sse", "delivered")

    await center.queue("support", skills={"support": 1})
    await center.agent("ann", {"support": 2})
    await center.call("support", "i1", data={"note": "x"})

    frames = await stream.events(3)
    same(frames, await center.events())
    changed, queued, offered = (f.json() for f in frames)
    assert [f.event for f in frames] == [
        "agent.state_changed",
        "interaction.queued",
        "interaction.offered",
    ]
    for frame in frames:
        body = frame.json()
        assert body["id"] == frame.id
        assert body["type"] == frame.event
        assert RFC3339.fullmatch(body["at"])
    assert changed["agent_id"] == "ann"
    assert changed["state"] == "available"
    assert changed["previous_state"] == "logged_out"
    assert queued["interaction_id"] == "i1"
    assert queued["queue"] == "support"
    assert offered["agent_id"] == "ann"
    assert RFC3339.fullmatch(offered["expires_at"])
    assert offered["callback"] is False
    assert offered["data"] == {"note": "x"}
    assert offered["routing"]["strategy"] == "longest_idle"
    assert offered["routing"]["qualified"] == 1
    assert deliveries("sse", "delivered") - sse_before == 3


async def test_without_a_resume_point_the_stream_starts_at_the_live_end(
    start_router: StartRouter, center: Center
) -> None:
    client = await start_router()
    await center.queue("support")
    await center.agent("ann", {"support": 1})
    stream = await open_stream(client)
    await center.state("ann", AgentState.NOT_READY, reason="lunch")

    [frame] = await stream.events(1)
    [latest] = (await center.events())[-1:]
    assert frame.id == latest.id
    assert frame.json()["reason"] == "lunch"


async def test_after_zero_starts_at_the_oldest_event_kept(
    start_router: StartRouter, center: Center
) -> None:
    client = await start_router()
    await center.queue("support")
    await center.agent("ann", {"support": 1})
    await center.call("support", "i1")

    stream = await open_stream(client, "?after=0")
    same(await stream.events(3), await center.events())


@pytest.mark.parametrize("query", ["?types=interaction.offered", "?queue=billing", "?agent_id=bob"])
async def test_filters_pass_exactly_the_matching_events(
    start_router: StartRouter, center: Center, query: str
) -> None:
    client = await start_router()
    stream = await open_stream(client, query)
    combined = await open_stream(
        client, "?types=interaction.queued,agent.state_changed&queue=support"
    )
    await center.queue("support", skills={"support": 1})
    await center.queue("billing", skills={"billing": 1})
    await center.agent("ann", {"support": 1})
    await center.agent("bob", {"billing": 1}, available=False)
    await center.call("support", "s1")
    await center.call("support", "s2")
    await center.call("billing", "b1")
    await center.state("bob", AgentState.AVAILABLE)  # b1 is offered to bob: every filter's last
    await center.call("support", "s3")

    events = await center.events()
    name, _, value = query[1:].partition("=")
    field = "type" if name == "types" else name
    wanted = [e for e in events if (e.type if field == "type" else e.fields.get(field)) == value]
    assert wanted[-1].type == "interaction.offered"
    same(await stream.until(wanted[-1].id), wanted)

    wanted = [
        e
        for e in events
        if e.type in ("interaction.queued", "agent.state_changed")
        and e.fields.get("queue") == "support"
    ]
    assert [e.fields["interaction_id"] for e in wanted] == ["s1", "s2", "s3"]
    same(await combined.until(wanted[-1].id), wanted)


async def check_a_transfer_reaches_both_queues_streams(client: Client, center: Center) -> None:
    """`?queue=` passes a transfer to the streams of the queue it left and of the one it joined."""
    left = await open_stream(client, "?queue=support")
    joined = await open_stream(client, "?queue=billing&types=interaction.transferred")
    await center.queue("support", skills={"support": 1})
    await center.queue("billing", skills={"billing": 1})
    await center.agent("ann", {"support": 1})
    await center.call("support", "s1")
    await center.engine.accept("s1", "ann", center.now)
    await center.engine.transfer("s1", "ann", "billing", center.now)

    [transferred] = await center.events("interaction.transferred")
    assert (transferred.fields["from_queue"], transferred.fields["queue"]) == ("support", "billing")
    of_support = [
        e
        for e in await center.events()
        if "support" in (e.fields.get("queue"), e.fields.get("from_queue"))
    ]
    assert of_support[-1] == transferred
    same(await left.until(transferred.id or ""), of_support)
    same(await joined.until(transferred.id or ""), [transferred])


async def test_a_queue_filter_passes_a_transfer_out_of_its_queue(
    start_router: StartRouter, center: Center
) -> None:
    await check_a_transfer_reaches_both_queues_streams(await start_router(), center)


@pytest.mark.parametrize("how", ["header", "query"])
async def test_a_client_resumes_with_nothing_lost_and_nothing_repeated(
    start_router: StartRouter, center: Center, how: str
) -> None:
    client = await start_router()
    await center.queue("support")
    stream = await open_stream(client)
    await center.agent("ann", {"support": 1})
    await center.call("support", "i1")
    seen = await stream.events(3)
    stream.response.close()

    await center.call("support", "i2")
    await center.call("support", "i3")
    await center.state("ann", AgentState.NOT_READY, reason="break")
    missed = (await center.events())[3:]
    assert len(missed) == 4  # two arrivals, the withdrawal of i1's offer, the state change

    last = seen[-1].id
    assert last is not None
    if how == "header":
        resumed = await open_stream(client, "?after=0", **{"Last-Event-ID": last})
    else:
        resumed = await open_stream(client, f"?after={last}")
    same(await resumed.events(4), missed)
    await center.state("ann", AgentState.AVAILABLE)
    [after] = await resumed.events(1)
    assert after.id == (await center.events())[7].id


async def test_resuming_from_a_trimmed_id_first_reports_the_gap(
    start_router: StartRouter,
    redis: Redis,
    settings: ServiceSettings,
    clock: ManualClock,
) -> None:
    engine = Engine(redis, replace(settings, event_log_max=100))
    await engine.start()
    center = Center(engine, clock)
    await center.queue("support")
    await center.agent("ann", {"support": 1})
    first = (await engine.read_events())[0].id
    for i in range(150):
        await center.state("ann", AgentState.NOT_READY, reason=f"r{i}")
        await center.state("ann", AgentState.AVAILABLE)
    kept = await engine.read_events()
    oldest = kept[0].id
    assert oldest != first, "the log was not trimmed"
    client = await start_router()

    stream = await open_stream(client, **{"Last-Event-ID": first})
    gap = await stream.frame()
    assert (gap.id, gap.event) == (None, "gap")
    assert gap.json() == {"oldest_id": oldest, "after": first}
    same(await stream.events(3), kept[:3])

    kept_stream = await open_stream(client, f"?after={kept[9].id}")
    same(await kept_stream.events(1), kept[10:11])


async def test_a_keep_alive_comment_is_sent_when_nothing_happens(
    start_router: StartRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sse, "KEEPALIVE_S", 0.05)
    client = await start_router()
    stream = await open_stream(client)
    assert (await stream.frame()).comment == "keep-alive"
    assert (await stream.frame()).comment == "keep-alive"


@pytest.mark.parametrize(
    ("query", "headers", "field"),
    [
        ("?after=99999999999999-0", {}, "after"),
        ("", {"Last-Event-ID": "99999999999999-0"}, "Last-Event-ID"),
    ],
)
async def test_a_resume_point_far_after_the_log_s_end_is_a_422(
    start_router: StartRouter,
    center: Center,
    query: str,
    headers: dict[str, str],
    field: str,
) -> None:
    # Seen: accepted, then every event appended after it was held back (its ids are lower).
    client = await start_router()
    await center.queue("support")
    await center.agent("ann", {"support": 1})
    async with client.get(f"/v1/events{query}", headers=headers) as response:
        assert response.status == 422
        assert [e["field"] for e in (await response.json())["errors"]] == [field]


async def test_an_id_resumes_after_the_store_lost_its_log(
    start_router: StartRouter, center: Center, redis: Redis
) -> None:
    # Refused once by comparing it with the router's clock, which `serve --clock-speed` may put
    # behind Redis's (the log's ids): a reconnecting EventSource would stop for good.
    client = await start_router()
    await center.queue("support")
    stream = await open_stream(client)
    await center.agent("ann", {"support": 1})
    [last] = await stream.events(1)
    assert last.id is not None
    await redis.delete(center.engine.keys.events)  # the store restarted without its data
    async with client.get("/v1/events", headers={"Last-Event-ID": last.id}) as resumed:
        assert resumed.status == 200


@pytest.mark.parametrize(
    ("query", "headers", "field"),
    [
        ("?types=interaction.queued,interaction.bogus", {}, "types"),
        ("?types=", {}, "types"),  # seen: it streamed every type
        ("?types=,", {}, "types"),
        ("?after=yesterday", {}, "after"),
        ("", {"Last-Event-ID": "1-2-3"}, "Last-Event-ID"),
        # Seen: read as <ms>-0, skipping the event <ms>-0 itself.
        ("?after=1796392626193", {}, "after"),
        ("", {"Last-Event-ID": "1796392626193"}, "Last-Event-ID"),
    ],
)
async def test_bad_parameters_are_a_422_problem(
    start_router: StartRouter, query: str, headers: dict[str, str], field: str
) -> None:
    client = await start_router()
    response = await client.get(f"/v1/events{query}", headers=headers)
    assert response.status == 422
    assert response.content_type == "application/problem+json"
    body = await response.json()
    assert [e["field"] for e in body["errors"]] == [field]


async def test_shutdown_ends_open_streams_without_waiting(
    start_router: StartRouter, center: Center
) -> None:
    client = await start_router()
    stream = await open_stream(client)
    await center.queue("support")
    await center.agent("ann", {"support": 1})
    await stream.events(1)
    # aiohttp would otherwise wait 60 s for the handler before cancelling it.
    await asyncio.wait_for(client.server.close(), 5)
    assert await stream.response.content.read() == b""  # ended cleanly
