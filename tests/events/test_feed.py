"""The machine's one reader under `serve --workers` (router/events/feed.py): workers' streams fed
over socket pairs, in one event loop here (tests/test_workers.py runs the real processes)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import msgpack
import pytest
from redis.asyncio import Redis

from router.api.keys import EVENT_HUB
from router.domain.models import AgentState
from router.events import sse
from router.events.feed import FeedServer
from router.events.sse import FedHub, Filter, Stream, log_id, reader_client
from router.settings import ServiceSettings
from router.store.codec import text
from router.store.engine import Entry
from router.store.server import RedisServer
from tests.events.conftest import Client, StartRouter, eventually
from tests.events.test_hub import (
    appended_while_parked,
    catch_up_while_appending,
    good_events,
    only_below_the_ceiling,
    xread_calls,
)
from tests.events.test_sse import check_a_transfer_reaches_both_queues_streams, open_stream, same
from tests.store.center import Center

Attach = Callable[[], socket.socket]
QUEUED = "interaction.queued"


@pytest.fixture(autouse=True)
def lost(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Each time a worker's feed ended while it served (in a worker process: its graceful
    stop), recorded instead; set up first, undone last."""
    ended: list[bool] = []
    monkeypatch.setattr(sse, "stop_this_process", lambda: ended.append(True))
    return ended


@pytest.fixture
async def machine(
    redis_server: RedisServer, settings: ServiceSettings
) -> AsyncIterator[FeedServer]:
    """The machine's reader, running; torn down after the workers that use it."""
    service = replace(settings, redis_url=redis_server.url)
    redis = reader_client(service)
    server = FeedServer(service, redis)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(server.run(stop))]
    await server.started.wait()
    try:
        yield server
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await redis.aclose()


@pytest.fixture
async def attach(machine: FeedServer) -> AsyncIterator[Attach]:
    """A new worker's end of a feed from the machine's reader."""
    tasks: list[asyncio.Task[None]] = []

    def new() -> socket.socket:
        ours, theirs = socket.socketpair()
        tasks.append(asyncio.create_task(machine.serve(ours)))
        return theirs

    yield new
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def received(monkeypatch: pytest.MonkeyPatch) -> dict[int, list[str]]:
    """The types of the entries each fed hub (by id) is sent, recorded from now on."""
    found: dict[int, list[str]] = {}
    deliver = FedHub.deliver

    def record(self: FedHub, entries: list[Entry]) -> None:
        found.setdefault(id(self), []).extend(f[b"t"].decode() for _, f in entries)
        deliver(self, entries)

    monkeypatch.setattr(FedHub, "deliver", record)
    return found


async def worker(start_router: StartRouter, attach: Attach) -> tuple[Client, FedHub]:
    client = await start_router(feed=attach())
    hub = client.app[EVENT_HUB]
    assert isinstance(hub, FedHub)
    return client, hub


async def test_each_worker_is_sent_only_what_its_streams_may_want(
    machine: FeedServer,
    start_router: StartRouter,
    attach: Attach,
    center: Center,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent = received(monkeypatch)
    (a, hub_a), (b, hub_b) = [await worker(start_router, attach) for _ in range(2)]
    support = await open_stream(a, "?queue=support&types=interaction.queued")
    everything = await open_stream(a)
    billing = await open_stream(b, "?queue=billing")
    offers = await open_stream(b, "?types=interaction.offered")
    await center.queue("support")
    await center.queue("billing")
    await center.agent("ann", {"support": 1})
    await center.call("support", "s1")
    await center.call("billing", "b1")
    events = await center.events()
    queued = [e for e in events if (e.type, e.fields.get("queue")) == (QUEUED, "support")]
    same(await support.until(queued[-1].id or ""), queued)
    same(await everything.until(events[-1].id or ""), events)
    of_billing = [e for e in events if e.fields.get("queue") == "billing"]
    same(await billing.until(of_billing[-1].id or ""), of_billing)
    offered = [e for e in events if e.type == "interaction.offered"]
    same(await offers.until(offered[-1].id or ""), offered)

    # Worker a has a stream of everything: it is sent every entry. Worker b only the billing
    # queue's and the offers, not the support queue's other events nor the agents'.
    assert sent[id(hub_a)] == [e.type for e in events]
    assert sent[id(hub_b)] == [e.type for e in events if e in of_billing or e in offered]
    assert len(sent[id(hub_b)]) < len(events)

    # A stream gone: its keys are given up, and the worker is sent none of their events.
    for stream in (billing, offers):
        stream.response.close()
    await eventually(lambda: not hub_b._streams and not hub_b._keys)
    await eventually(lambda: sorted(len(s.keys) for s in machine.subscribers) == [0, 2])
    before = len(sent[id(hub_b)])
    await center.call("billing", "b2")
    last = (await center.events())[-1]
    await everything.until(last.id or "")
    assert len(sent[id(hub_b)]) == before


async def test_the_hand_over_to_the_feed_loses_and_repeats_nothing(
    start_router: StartRouter,
    attach: Attach,
    center: Center,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, _ = await worker(start_router, attach)
    pages = await catch_up_while_appending(center, monkeypatch)
    stream = await open_stream(client, "?after=0&agent_id=ann")
    live = await open_stream(client, "?agent_id=ann")  # its key is taken already
    await center.state("ann", AgentState.AVAILABLE)  # live, after the hand-over
    events = await center.events()
    assert len(events) == 16
    same(await stream.until(events[-1].id or ""), events)
    assert pages[0] > 4
    tail = await live.until(events[-1].id or "")
    assert tail
    assert [f.id for f in tail] == [e.id for e in events[-len(tail) :]]


async def test_with_no_stream_open_the_machine_reads_nothing_and_misses_nothing(
    machine: FeedServer,
    start_router: StartRouter,
    attach: Attach,
    center: Center,
    redis: Redis,
) -> None:
    client, hub = await worker(start_router, attach)
    parked, reads = await appended_while_parked(machine, center, redis)

    resumed = await open_stream(client, "?after=0")  # caught up from the log, then live
    assert machine.position == hub.position == log_id(parked[-1].id or "")
    await center.state("ann", AgentState.NOT_READY, reason="r")
    events = await center.events()
    same(await resumed.until(events[-1].id or ""), events)
    assert await xread_calls(redis) > reads


async def test_a_key_asked_for_a_moment_ago_is_waited_for(attach: Attach) -> None:
    # A second stream of a key whose answer is on its way would catch up only to the hub's
    # older position and miss what came between.
    hub = FedHub(attach(), 10, on_lost=lambda: None)
    await hub.start()
    first, second = (Stream(Filter(queue="support"), (0, 0)) for _ in range(2))
    asking = asyncio.create_task(hub.prepare(first, (1, 0)))
    await asyncio.sleep(0)  # its message is sent; the answer is not read (no reader runs)
    waiting = asyncio.create_task(hub.prepare(second, (1, 0)))
    await asyncio.sleep(0.05)
    assert not asking.done()
    assert not waiting.done()
    stop = asyncio.Event()
    running = asyncio.create_task(hub.run(stop))
    await asyncio.wait_for(asyncio.gather(asking, waiting), 5)
    assert hub.position >= (1, 0)
    stop.set()
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    await hub.aclose()


async def test_a_worker_whose_feed_ends_ends_its_streams_and_stops(
    machine: FeedServer, start_router: StartRouter, attach: Attach, lost: list[bool]
) -> None:
    client, hub = await worker(start_router, attach)
    stream = await open_stream(client)
    for subscriber in list(machine.subscribers):
        subscriber.writer.transport.abort()  # as when the worker fell too far behind
    await eventually(lambda: bool(lost))
    assert hub.closing
    assert await stream.response.content.read() == b""  # ended; the client resumes elsewhere
    late = await client.get("/v1/events?queue=support")  # until the worker has stopped
    assert late.status == 503


async def test_a_key_asked_for_while_the_reader_parks_wakes_it(
    machine: FeedServer,
    start_router: StartRouter,
    attach: Attach,
    center: Center,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The reader found nothing wanted and parks; a stream's keys arriving during the park's
    # close must still wake it.
    client, hub = await worker(start_router, attach)
    await center.queue("support")
    await center.agent("ann", {"support": 1})
    first = await open_stream(client)
    closing = asyncio.Event()
    close = machine.reads.close

    async def slow_close() -> None:
        closing.set()
        await asyncio.sleep(0.2)
        await close()

    monkeypatch.setattr(machine.reads, "close", slow_close)
    first.response.close()
    await eventually(lambda: not hub._keys)  # the sweeper noticed; its key given up
    await center.state("ann", AgentState.NOT_READY, reason="r")  # the reader wakes: idle
    async with asyncio.timeout(5):
        await closing.wait()
    second = await open_stream(client)
    await center.state("ann", AgentState.AVAILABLE)
    last = (await center.events())[-1]
    same(await second.events(1), [last])


async def test_an_entry_that_cannot_be_decoded_does_not_end_a_feed(
    start_router: StartRouter, attach: Attach, center: Center, redis: Redis
) -> None:
    client, _ = await worker(start_router, attach)
    stream = await open_stream(client, "?queue=support")
    await center.queue("support")
    bad = {"t": b"\xff", "at": 0, "d": msgpack.packb({"queue": "support"})}
    bad_id = text(await redis.xadd(center.engine.keys.events, bad))  # type: ignore[arg-type]
    await center.call("support", "i1")
    queued = [e for e in await good_events(center.engine, bad_id) if e.type == QUEUED]
    same(await stream.events(1), queued)


async def test_workers_get_only_what_is_below_the_machines_ceiling(
    machine: FeedServer, start_router: StartRouter, attach: Attach, center: Center
) -> None:
    # Durability `replicated`: the machine's reader sends only what a replica holds.
    client, hub = await worker(start_router, attach)
    await only_below_the_ceiling(client, center, machine, hub)


async def test_a_worker_is_sent_a_transfer_out_of_a_queue_its_streams_filter_on(
    start_router: StartRouter, attach: Attach, center: Center
) -> None:
    client, _ = await worker(start_router, attach)
    await check_a_transfer_reaches_both_queues_streams(client, center)
