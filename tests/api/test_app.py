"""The app's store clients (the request client's bounds, the event reader's longer reads) and
tick loop."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from router.api.keys import CONFIG, EVENT_HUB, REDIS
from router.clock import ManualClock
from router.events.sse import READ_BLOCK_S, EventHub
from router.store.ticks import MIN_TICK_DELAY_S, TICK_INTERVAL_S, tick_delay


async def test_requests_wait_store_timeout_s_while_the_event_reader_outlasts_its_block(
    client: TestClient[web.Request, web.Application],
) -> None:
    timeout = client.app[CONFIG].service.store_timeout_s
    requests = client.app[REDIS].connection_pool.connection_kwargs
    assert requests["socket_connect_timeout"] == timeout
    # Reads and writes are bounded by the engine's timeout around each call (test_store_faults).
    assert requests["socket_timeout"] is None
    assert client.app[REDIS].connection_pool.timeout is None  # type: ignore[attr-defined]
    # A reader cut at store_timeout_s would end its XREAD BLOCK early, again and again.
    hub = client.app[EVENT_HUB]
    assert isinstance(hub, EventHub)
    reader = hub.redis.connection_pool
    assert reader.connection_kwargs["socket_timeout"] > READ_BLOCK_S
    # Two connections, however many streams are open: one kept by the reads, one for the rest.
    assert reader.max_connections == 2


def test_the_tick_loop_wakes_when_the_next_timer_falls_due() -> None:
    # At --clock-speed 60 a timer 1.2 s (service time) ahead falls due 20 ms (real) from now: the
    # loop sleeps that long, not the whole poll interval (3 s of service time late at 60x).
    fast = ManualClock(speed=60.0)
    assert tick_delay(fast.t + 1.2, fast) == pytest.approx(0.02)
    assert tick_delay(fast.t + 60.0, fast) == TICK_INTERVAL_S  # polls meanwhile
    assert tick_delay(fast.t - 5.0, fast) == MIN_TICK_DELAY_S  # overdue: at once, never a spin
    assert tick_delay(None, fast) == TICK_INTERVAL_S  # no timer at all
    real = ManualClock()
    assert tick_delay(real.t + 0.01, real) == pytest.approx(0.01)
