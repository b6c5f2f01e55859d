"""The store frozen, thawed and restarted under one router (SPEC §9): `python -m
loadtest.store_freeze`.

The real `acd-router serve` runs on a redis-server this process controls (append-only, on
127.0.0.1). Phases:
  frozen     redis-server SIGSTOPped: a burst of requests (reads and creates) must each be
             answered 503 with Retry-After within store_timeout_s + 0.5 s;
  thawed     SIGCONT, /readyz ready again: the creates answered 503 are retried with the
             `interaction_id` their 503 named (none may be created twice), then a burst of 50
             must answer with 0 failures;
  restarted  redis-server killed (-9) and started again on its append-only file: as soon as it
             answers PING, a burst of 50 must answer with 0 failures (no stale connection).
PASS/FAIL never changes the exit status (0); a crash or timeout exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from loadtest.report import percentile
from loadtest.served import Served, clean_env, serve_args
from router.store.server import RedisServer

KEY = "store-freeze-key"
KEY_ENV = "ACD_FREEZE_KEY"
CONFIG = f"""
[[keys]]
name = "admin"
role = "admin"
env = "{KEY_ENV}"

[[queues]]
name = "chat"
channel = "chat"
"""
BURST = 50
MARGIN_S = 0.5
HEADERS = {"Authorization": f"Bearer {KEY}"}


@dataclass
class Answer:
    status: int
    seconds: float
    body: dict[str, object]


async def request(
    session: aiohttp.ClientSession, method: str, url: str, body: object = None
) -> Answer:
    started = time.perf_counter()
    async with session.request(method, url, json=body, headers=HEADERS) as response:
        raw = await response.read()
        status = response.status
        if status == 503 and "Retry-After" not in response.headers:
            status = -503  # a 503 without Retry-After counts as a failure
    parsed = json.loads(raw) if raw else {}
    return Answer(status, time.perf_counter() - started, parsed if isinstance(parsed, dict) else {})


async def burst(session: aiohttp.ClientSession, base: str, count: int) -> list[Answer]:
    """`count` parallel requests: reads of an agent and creates in chat, alternating."""

    def one(i: int) -> Awaitable[Answer]:
        if i % 2:
            return request(session, "GET", f"{base}/v1/agents/a1")
        return request(session, "POST", f"{base}/v1/interactions", {"queue": "chat"})

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("the store did not come back")
        await asyncio.sleep(0.05)


def verdict(ok: bool, text: str) -> None:
    print(f"  {'PASS' if ok else 'FAIL'}  {text}")


async def run(store_timeout_s: float, folder: Path) -> None:
    store = RedisServer(data_dir=folder / "redis")
    store.start()
    config = folder / "acd.toml"
    config.write_text(CONFIG)
    args, _ = serve_args("--config", str(config), "--redis-url", store.url)
    env = clean_env({KEY_ENV: KEY, "ACD_STORE_TIMEOUT_S": str(store_timeout_s)})
    served = Served(args, env)
    try:
        base = served.wait_ready()
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await request(session, "PUT", f"{base}/v1/agents/a1", {"skills": {}})
            await burst(session, base, BURST)  # a pool of connections in use before

            assert store.process is not None
            os.kill(store.process.pid, signal.SIGSTOP)
            try:
                frozen = await burst(session, base, BURST)
                ready = await request(session, "GET", f"{base}/readyz")
            finally:
                os.kill(store.process.pid, signal.SIGCONT)
            bound = store_timeout_s + MARGIN_S
            slowest = max(a.seconds for a in [*frozen, ready])
            print(f"frozen: {BURST} requests and /readyz, store_timeout_s {store_timeout_s:g}")
            print(
                f"  statuses {sorted({a.status for a in frozen})}, /readyz {ready.status}; "
                f"seconds p50 {percentile([a.seconds for a in frozen], 0.5):.3f}, "
                f"max {slowest:.3f}"
            )
            all_503 = all(a.status == 503 for a in [*frozen, ready])
            verdict(all_503 and slowest <= bound, f"every answer a 503 within {bound:g} s")

            async def is_ready() -> bool:
                return (await request(session, "GET", f"{base}/readyz")).status == 200

            await until(is_ready)
            tried = [str(a.body["interaction_id"]) for a in frozen if "interaction_id" in a.body]
            retried = await asyncio.gather(
                *(
                    request(session, "POST", f"{base}/v1/interactions", {"id": i, "queue": "chat"})
                    for i in tried
                )
            )
            applied_while_frozen = sum(a.status == 200 for a in retried)
            retry_failed = sum(a.status not in (200, 201) for a in retried)
            thawed = await burst(session, base, BURST)
            failed = sum(a.status not in (200, 201) for a in thawed)
            print(
                f"thawed: {len(tried)} creates answered 503 retried with their interaction_id: "
                f"{applied_while_frozen} had been applied (200), "
                f"{len(tried) - applied_while_frozen - retry_failed} created now (201), "
                f"{retry_failed} failed"
            )
            verdict(retry_failed == 0, "every retried create answered 200 or 201, none twice")
            verdict(failed == 0, f"a burst of {BURST} after SIGCONT: {failed} failed")

            store.process.kill()
            store.process.wait()
            started = time.perf_counter()
            store.start()  # returns once it answers PING
            down_s = time.perf_counter() - started
            restarted = await burst(session, base, BURST)
            failed = sum(a.status not in (200, 201) for a in restarted)
            print(f"restarted: redis-server killed and back in {down_s:.2f} s")
            verdict(failed == 0, f"a burst of {BURST} once it answers PING: {failed} failed")
    finally:
        served.kill()
        store.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.store_freeze", description=__doc__)
    parser.add_argument(
        "--store-timeout-s", type=float, default=2.0, help="the service's store_timeout_s"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="acd-store-freeze-") as tmp:
        try:
            asyncio.run(asyncio.wait_for(run(args.store_timeout_s, Path(tmp)), 180))
        except (AssertionError, TimeoutError, OSError, aiohttp.ClientError) as error:
            print(f"store_freeze: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
