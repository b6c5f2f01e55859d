"""The event hub: one reader per process fanning the log out to every open stream (§4)."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import aiohttp
import msgpack
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from router.api.keys import EVENT_HUB
from router.domain.models import AgentState, Event
from router.events import sse
from router.events.sse import LogReader, StreamFanout, StreamId, event_json
from router.store import codec
from router.store.codec import text
from router.store.engine import Engine, Entry
from tests.events.conftest import Client, Sse, StartRouter, deliveries, eventually, own_hub
from tests.events.test_sse import open_stream, same
from tests.store.center import Center


def bad_entry() -> dict[Any, Any]:
    """The fields of a log entry that cannot be rendered (its data nests 100,000 levels)."""
    deep = "[" * 100_000 + '"secret-caller-number"' + "]" * 100_000
    return {"t": "interaction.offered", "at": 0, "d": msgpack.packb({"data": deep})}


async def good_events(engine: Engine, bad_id: str) -> list[Event]:
    return [
        codec.event(text(entry_id), fields)
        for entry_id, fields in await engine.read_log()
        if text(entry_id) != bad_id
    ]


async def test_an_event_that_cannot_be_rendered_is_skipped_not_fatal(
    start_router: StartRouter,
    center: Center,
    redis: Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Seen: one event whose rendering raised cut every live stream, lost the rest of its read
    # batch, and broke every resume from before it.
    client = await start_router()
    live = await open_stream(client)
    skipped = deliveries("sse", "skipped")
    await center.queue("support")
    await center.agent("ann", {"support": 1})
    bad_id = text(await redis.xadd(center.engine.keys.events, bad_entry()))
    await center.call("support", "i1")
    good = await good_events(center.engine, bad_id)
    assert len(good) == 3

    caplog.set_level(logging.ERROR, "router.events")
    same(await live.events(3), good)  # the stream goes on past it
    resumed = await open_stream(client, "?after=0")
    same(await resumed.events(3), good)
    assert deliveries("sse", "skipped") - skipped == 2  # once live, once in the catch-up
    logged = [r.getMessage() for r in caplog.records if bad_id in r.getMessage()]
    assert logged
    assert all("interaction.offered" in m and "secret" not in m for m in logged)


async def test_open_streams_hold_no_store_connection(
    start_router: StartRouter, center: Center, redis: Redis
) -> None:
    # Seen: each stream held a pooled connection; 5,000 idle streams took a router down, and it
    # kept 5,001 connections after they closed.
    client = await start_router()
    before = len(await redis.client_list())
    streams = [await open_stream(client, f"?agent_id=a{i}") for i in range(60)]
    await center.queue("support")
    await center.agent("a7", {"support": 1})
    assert (await streams[7].events(1))[0].json()["agent_id"] == "a7"
    during = len(await redis.client_list())
    assert during - before <= 2  # at most a request connection or two, however many streams
    for stream in streams:
        stream.response.close()
    hub = client.app[EVENT_HUB]
    await eventually(lambda: not hub._streams)  # the sweeper notices the clients left
    assert len(await redis.client_list()) <= during


async def catch_up_while_appending(center: Center, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """An agent with 11 events in the log, and a catch-up of many pages (2 entries each) that
    appends an event before each of its first 4 reads; the pages read so far (in a list)."""
    monkeypatch.setattr(sse, "READ_COUNT", 2)
    await center.queue("support")
    await center.agent("ann", {"support": 1})
    for i in range(5):
        await center.state("ann", AgentState.NOT_READY, reason=f"r{i}")
        await center.state("ann", AgentState.AVAILABLE)
    read_log = Engine.read_log
    pages = [0]

    async def read_and_append(self: Engine, after: str, until: str, count: int) -> list[Entry]:
        pages[0] += 1
        if pages[0] <= 4:  # events appended while the stream catches up
            await center.state("ann", AgentState.NOT_READY, reason=f"late{pages[0]}")
        return await read_log(self, after, until, count)

    monkeypatch.setattr(Engine, "read_log", read_and_append)
    return pages


async def test_the_hand_over_from_catch_up_to_live_loses_and_repeats_nothing(
    start_router: StartRouter,
    center: Center,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = await start_router()
    pages = await catch_up_while_appending(center, monkeypatch)
    stream = await open_stream(client, "?after=0")
    await asyncio.sleep(0.2)
    await center.state("ann", AgentState.AVAILABLE)  # live, after the hand-over
    events = await center.events()
    assert len(events) == 16
    same(await stream.until(events[-1].id), events)
    assert pages[0] > 4
    assert client.app[EVENT_HUB].position >= tuple(map(int, events[-1].id.split("-")))


async def append_state_changes(redis: Redis, center: Center, reasons: list[str]) -> None:
    """`agent.state_changed` entries written straight into the log, one per reason, at once (one
    read of the hub gets them all)."""
    async with redis.pipeline(transaction=True) as pipe:
        for reason in reasons:
            fields = {"agent_id": "ann", "state": "not_ready", "reason": reason}
            pipe.xadd(
                center.engine.keys.events,
                {"t": "agent.state_changed", "at": 0, "d": msgpack.packb(fields)},
            )
        await pipe.execute()


async def test_a_slow_client_is_dropped_and_resumes_by_last_event_id(
    start_router: StartRouter,
    center: Center,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sse, "BUFFER_EVENTS", 2)
    client = await start_router()
    await center.queue("support")
    await center.agent("ann", {"support": 1})
    first = await open_stream(client, "?after=0")
    [seen] = await first.events(1)
    # Five events in one read of the hub: more than the stream may hold for its client.
    await append_state_changes(redis, center, [f"r{i}" for i in range(5)])
    with pytest.raises(aiohttp.ClientPayloadError):  # cut: dropped
        async with asyncio.timeout(5):
            await first.response.content.read()
    resumed = await open_stream(client, **{"Last-Event-ID": seen.id or ""})
    events = await center.events()
    same(await resumed.events(5), events[1:])


def sample(name: str) -> float:
    """The value of an unlabelled metric of this process."""
    return REGISTRY.get_sample_value(name) or 0.0


async def test_a_client_that_takes_nothing_of_its_catch_up_is_dropped(
    start_router: StartRouter,
    center: Center,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Seen: such streams held their memory (3.4 MB each) and their key's slot for ever.
    monkeypatch.setattr(sse, "CATCH_UP_WRITE_S", 0.2)
    client = await start_router()
    # Far more than socket buffers hold.
    await append_state_changes(redis, center, [f"{i:05d}" + "x" * 20_000 for i in range(400)])
    dropped = sample("acd_event_streams_dropped_total")
    open_before = sample("acd_event_streams")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (client.host, client.port))
    try:
        await asyncio.get_running_loop().sock_sendall(
            sock, b"GET /v1/events?after=0 HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        await eventually(lambda: sample("acd_event_streams_dropped_total") == dropped + 1)
        assert sample("acd_event_streams") == open_before  # its key's slot is free again
    finally:
        sock.close()


async def test_streams_catching_up_at_once_read_one_page_at_a_time(
    start_router: StartRouter,
    center: Center,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Seen: 100 streams catching up at once kept the process's other requests waiting 0.2-1 s,
    # each behind every stream's page; one page at a time gives them a turn between pages.
    monkeypatch.setattr(sse, "READ_COUNT", 5)
    client = await start_router()
    await append_state_changes(redis, center, [f"r{i}" for i in range(40)])
    read_log = Engine.read_log
    reading, most = 0, 0

    async def counted(self: Engine, after: str, until: str, count: int) -> list[Entry]:
        nonlocal reading, most
        reading += 1
        most = max(most, reading)
        try:
            return await read_log(self, after, until, count)
        finally:
            reading -= 1

    monkeypatch.setattr(Engine, "read_log", counted)
    streams = await asyncio.gather(*(open_stream(client, "?after=0") for _ in range(5)))
    for stream in streams:
        assert [f.event for f in await stream.events(40)] == ["agent.state_changed"] * 40
    assert most == 1


async def only_below_the_ceiling(
    client: Client, center: Center, reader: LogReader, hub: StreamFanout
) -> None:
    """With `reader`'s ceiling at its position, then at the first event, then lifted, the
    streams of `client` (fed through `hub`) get only the events below it."""
    cap: StreamId = reader.position

    async def ceiling(last_read: StreamId) -> StreamId:
        return min(cap, last_read)

    reader.ceiling = ceiling
    stream = await open_stream(client)
    await center.queue("support")
    await center.agent("ann", {"support": 1})
    await center.state("ann", AgentState.NOT_READY, reason="r")
    first, second = await center.events()
    await asyncio.sleep(0.3)
    assert hub.position < sse.log_id(first.id or "")
    cap = sse.log_id(first.id or "")
    same(await stream.events(1), [first])
    late = await open_stream(client, "?after=0")  # a catch-up stops at the ceiling too
    same(await late.events(1), [first])
    cap = (2**64 - 1, 0)
    same(await stream.events(1), [second])
    same(await late.events(1), [second])


async def test_streams_get_only_events_below_the_ceiling(
    start_router: StartRouter, center: Center
) -> None:
    # The hook a replicated durability uses: deliver only what a replica holds.
    client = await start_router()
    hub = own_hub(client)
    await only_below_the_ceiling(client, center, hub, hub)


async def test_limit_ends_the_stream_after_n_events(
    start_router: StartRouter, center: Center
) -> None:
    client = await start_router()
    await center.queue("support")
    await center.agent("ann", {"support": 1})
    await center.call("support", "i1")
    response = await client.get("/v1/events?after=0&limit=2")
    async with asyncio.timeout(5):
        text = await response.text()
    events = await center.events()
    assert text == "".join(
        f"id: {e.id}\nevent: {e.type}\ndata: {event_json(e).decode()}\n\n" for e in events[:2]
    )


async def test_a_filtered_event_costs_only_the_streams_filed_under_it(
    start_router: StartRouter, center: Center, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await start_router()
    streams: list[Sse] = [await open_stream(client, f"?queue=q{i}") for i in range(20)]
    wanted = await open_stream(client, "?queue=support")
    checked = 0
    matches = sse.Filter.matches

    def counting(self: sse.Filter, event: Any) -> bool:
        nonlocal checked
        checked += 1
        return matches(self, event)

    monkeypatch.setattr(sse.Filter, "matches", counting)
    await center.queue("support")
    await center.agent("ann", {"support": 1})
    await center.call("support", "i1")
    [queued, offered] = await wanted.events(2)
    assert (queued.event, offered.event) == ("interaction.queued", "interaction.offered")
    assert checked <= 3  # the state change and the two support events: not 21 streams each
    assert streams  # kept open throughout


async def test_an_event_of_a_type_no_stream_wants_is_not_decoded(
    start_router: StartRouter, center: Center, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await start_router()
    offers = await open_stream(client, "?queue=support&types=interaction.offered")
    rendered: list[str] = []
    render = sse.render

    def counting(entry_id: str, fields: dict[bytes, bytes]) -> Any:
        rendered.append(fields[b"t"].decode())
        return render(entry_id, fields)

    monkeypatch.setattr(sse, "render", counting)
    await center.queue("support")
    await center.agent("ann", {"support": 1})
    await center.call("support", "i1")
    assert [e.event for e in await offers.events(1)] == ["interaction.offered"]
    assert rendered == ["interaction.offered"]  # not the agent's nor the queued event
    everything = await open_stream(client, "?queue=support")  # wants every type: decoded
    await center.engine.abandon("i1", center.now)
    assert [e.event for e in await everything.events(1)] == ["interaction.abandoned"]
    assert rendered[1:] == ["interaction.abandoned"]


async def xread_calls(redis: Redis) -> int:
    """XREADs the server has run so far (INFO commandstats)."""
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_xread", {}).get("calls", 0))


async def appended_while_parked(
    reader: LogReader, center: Center, redis: Redis
) -> tuple[list[Event], int]:
    """Once `reader` parks, three events appended: it reads none of them (no XREAD) and stays
    before them. The events, and the XREADs so far."""
    await eventually(lambda: reader._parked)
    reads = await xread_calls(redis)
    await center.queue("support")
    await center.agent("ann", {"support": 1})
    await center.call("support", "i1")
    assert await xread_calls(redis) == reads
    events = await center.events()
    assert len(events) == 3
    assert reader.position < sse.log_id(events[-1].id or "")
    return events, reads


async def test_with_no_stream_open_the_hub_reads_nothing_and_misses_nothing(
    start_router: StartRouter, center: Center, redis: Redis
) -> None:
    # A router whose clients use webhooks only, or a worker without streams, read and decoded
    # every event for nobody.
    client = await start_router()
    hub = own_hub(client)
    parked_events, reads = await appended_while_parked(hub, center, redis)
    last = sse.log_id(parked_events[-1].id or "")

    # The first stream moves the reader to the live end: the log since is its catch-up's.
    resumed = await open_stream(client, "?after=0")  # caught up from the log, then live
    assert hub.position == last
    live = await open_stream(client)  # from the live end: none of those
    await center.state("ann", AgentState.NOT_READY, reason="r")
    events = await center.events()
    same(await resumed.until(events[-1].id), events)
    same(await live.until(events[-1].id), events[3:])
    assert await xread_calls(redis) > reads

    for stream in (resumed, live):
        stream.response.close()
    await eventually(lambda: not hub._streams)  # the sweeper notices the clients left
    await center.state("ann", AgentState.AVAILABLE)  # ends the reader's blocking read
    await eventually(lambda: hub._parked)
    reads = await xread_calls(redis)
    await center.state("ann", AgentState.NOT_READY, reason="r2")
    assert await xread_calls(redis) == reads
    late = await open_stream(client, f"?after={events[-1].id}")
    more = (await center.events())[len(events) :]
    same(await late.until(more[-1].id), more)


async def test_a_parked_reader_moves_only_while_no_stream_is_joined(
    start_router: StartRouter,
) -> None:
    # A stream joined at the reader's position must get every event after it: a later stream's
    # resume may not move the reader past them before it has read them.
    client = await start_router()
    hub = own_hub(client)
    await eventually(lambda: hub._parked)
    start = hub.position
    joined = sse.Stream(sse.Filter(), start)
    hub.join(joined)  # the reader has not woken yet: still parked
    hub.resume((start[0] + 1000, 0))
    assert hub.position == start
    hub.leave(joined)
