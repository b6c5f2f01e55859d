"""Webhook delivery rate of one router process: `python -m loadtest.bench_webhooks`.

A redis-server on a free port holds a log of `--events` agent state changes; a webhook's delivery
loops (router/events/webhooks.py, as `serve` runs them: `--concurrency` of them, 1 and 4 by
default, each posting one event at a time) post them to a receiver in a child process that answers
204 after `--latency-ms` (0 and 5 by default). The baseline of the same run: as many loops of
sequential POSTs of one event's body from this process to the same receiver, with no store.
Printed: events/s, and the ratio to the baseline.
Traffic goes to 127.0.0.1 only; the run is bounded (`--timeout-s`); exits 1 on a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import time
from collections.abc import Sequence

import aiohttp
from aiohttp import web

from router.clock import ManualClock
from router.config import WebhookConfig
from router.domain.models import AgentProfile, AgentState, Channel
from router.events.sse import event_json
from router.events.webhooks import Delivery
from router.metrics.process import EVENT_DELIVERIES
from router.settings import ServiceSettings
from router.store.connection import blocking_client, request_client
from router.store.engine import Engine
from router.store.server import RedisServer, free_port

SECRET_ENV = "ACD_BENCH_WEBHOOK_SECRET"


def receive(port: int, latency_s: float) -> None:
    """The receiver (a child process): 204 to every POST, after `latency_s`."""

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        if latency_s:
            await asyncio.sleep(latency_s)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


async def wait_listening(port: int, timeout_s: float) -> None:
    """Until something accepts connections on `port`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the receiver did not listen on {port}") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return


def delivered() -> float:
    """Events the delivery loops of this process posted and had acknowledged."""
    return sum(
        sample.value
        for metric in EVENT_DELIVERIES.collect()
        for sample in metric.samples
        if sample.labels.get("result") == "delivered" and sample.name.endswith("_total")
    )


async def run(
    events: int, latency_ms: float, concurrency: int, timeout_s: float
) -> tuple[float, float]:
    """(webhook events/s, baseline POSTs/s) of `concurrency` loops, with a receiver answering
    after `latency_ms`."""
    port = free_port()
    receiver = multiprocessing.get_context("spawn").Process(
        target=receive, args=(port, latency_ms / 1000), daemon=True
    )
    receiver.start()
    server = RedisServer()
    server.start()
    try:
        await wait_listening(port, 10)
        url = f"http://127.0.0.1:{port}/hook"
        settings = ServiceSettings(redis_url=server.url)
        redis = request_client(settings)
        engine = Engine(redis, settings)
        await engine.start()
        clock = ManualClock()
        profile = AgentProfile(skills={}, channels={Channel.VOICE: 1})
        await engine.put_agent("ann", profile, clock.now())
        readers = [blocking_client(settings, 5, 1) for _ in range(concurrency)]
        async with aiohttp.ClientSession() as session:
            hook = WebhookConfig(url=url, secret_env=SECRET_ENV, concurrency=concurrency)
            deliveries = [
                Delivery(0, hook, b"bench", reader, engine, clock, f"bench:{k}", session)
                for k, reader in enumerate(readers)
            ]
            for delivery in deliveries:
                await delivery.ensure_group()
            states = (AgentState.AVAILABLE, AgentState.NOT_READY)
            for i in range(events):
                await engine.set_agent_state("ann", states[i % 2], clock.now())
            body = event_json((await engine.read_events(count=1))[0])

            started, before = time.perf_counter(), delivered()
            tasks = [asyncio.create_task(delivery.run()) for delivery in deliveries]
            try:
                async with asyncio.timeout(timeout_s):
                    while delivered() - before < events:  # noqa: ASYNC110  # a counter
                        await asyncio.sleep(0.01)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            webhook_rate = events / (time.perf_counter() - started)

            async def post(count: int) -> None:
                for _ in range(count):
                    async with session.post(url, data=body) as response:
                        assert response.status == 204

            started = time.perf_counter()
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*(post(events // concurrency) for _ in range(concurrency)))
            baseline_rate = events // concurrency * concurrency / (time.perf_counter() - started)
        for reader in readers:
            await reader.aclose()
        await redis.aclose()
        return webhook_rate, baseline_rate
    finally:
        server.stop()
        receiver.kill()
        receiver.join()


async def bench(
    events: int, latencies: Sequence[float], concurrencies: Sequence[int], timeout_s: float
) -> None:
    """Print a row per receiver latency and concurrency."""
    print(f"{events:,} events, receiver in another process; load {load()}")
    print("| receiver answers after | concurrency | webhook events/s | bare POSTs/s | ratio |")
    print("|---|---|---|---|---|")
    for latency_ms in latencies:
        for concurrency in concurrencies:
            webhook, bare = await run(events, latency_ms, concurrency, timeout_s)
            print(
                f"| {latency_ms:g} ms | {concurrency} | {webhook:,.0f} | {bare:,.0f} "
                f"| {webhook / bare:.2f} |"
            )


def load() -> str:
    """The machine's 1-minute load average."""
    return f"{os.getloadavg()[0]:.1f}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 1 on a timeout."""
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_webhooks", description=__doc__)
    parser.add_argument("--events", type=int, default=3_000, help="events per receiver latency")
    parser.add_argument(
        "--latency-ms", type=float, nargs="+", default=[0.0, 5.0], help="receiver latencies"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4], help="delivery loops")
    parser.add_argument("--timeout-s", type=float, default=120.0, help="bound of each phase")
    args = parser.parse_args(argv)
    os.environ.setdefault(SECRET_ENV, "bench")
    socket.setdefaulttimeout(30)
    try:
        asyncio.run(bench(args.events, args.latency_ms, args.concurrency, args.timeout_s))
    except TimeoutError as error:
        print(f"timeout: {error}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
