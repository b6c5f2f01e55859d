"""The tick loop: due timers (offer expiry, wrap-up end, escalation, max wait, callbacks) applied
in the background; several routers may run it at once (SPEC §3.5, §3.9)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from router.clock import Clock
from router.errors import StoreUnavailable
from router.metrics.process import observe_tick
from router.store.engine import Engine

log = logging.getLogger("router.store.ticks")

TICK_INTERVAL_S = 0.05
"""Real seconds between ticks at most: the bound on the lag of a timer another router set."""
MIN_TICK_DELAY_S = 0.001
STOP_TIMEOUT_S = 5.0


async def run_ticks(engine: Engine, clock: Clock, stop: asyncio.Event) -> None:
    """Apply due timers until `stop`."""
    failing = False
    while not stop.is_set():
        try:
            await engine.write_unwritten()
            result = await engine.tick(clock.now())
        except StoreUnavailable as error:
            if not failing:  # once per outage, not once a second
                log.warning("ticks fail: %s", error.detail)
            result = None
        except Exception as error:
            log.error("tick failed: %s", type(error).__name__)
            result = None
        if failing and result is not None:
            log.info("ticks apply again")
        failing = result is None
        if result is not None:
            observe_tick(result)
            if result.applied:
                continue
        delay = tick_delay(result.next_due, clock) if result is not None else 1.0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)


def tick_delay(next_due: float | None, clock: Clock) -> float:
    """Real seconds until the next tick: when the next timer falls due (at the clock's speed),
    but at most `TICK_INTERVAL_S` (another router may set an earlier one meanwhile)."""
    if next_due is None:
        return TICK_INTERVAL_S
    return min(TICK_INTERVAL_S, max(MIN_TICK_DELAY_S, (next_due - clock.now()) / clock.speed))


@contextlib.asynccontextmanager
async def ticking(engine: Engine, clock: Clock) -> AsyncIterator[None]:
    """The tick loop in the background while the block runs, stopped and awaited after it."""
    # A stop event, not only cancel(): redis-py may swallow a CancelledError that lands during a
    # call, which would leave the loop running and the shutdown waiting for ever.
    stop = asyncio.Event()
    task = asyncio.create_task(run_ticks(engine, clock, stop), name="tick")
    try:
        yield
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, timeout=STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning("the tick loop did not stop in time")
