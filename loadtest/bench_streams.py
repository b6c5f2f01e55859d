"""Idle event streams and slow clients against one router (SPEC §9): `python -m
loadtest.bench_streams`.

The real `acd-router serve` (embedded redis-server) is the child; this process holds the idle
clients and times GET /v1/agents/{id} one after another, with:
  slow       300 idle event streams and 300 half-sent requests (a request head never finished),
             in 5 rounds, each after a baseline chunk with nothing open;
  streams    10,000 idle event streams spread over 100 keys (100 each, max_streams_per_key), the
             open-file limit raised for both processes; the baseline is timed before and after.
Targets: each GET p99 within 2x of the baseline measured around it (a machine shared with other
work shifts both). Traffic goes to
127.0.0.1 only; every phase is bounded in time. PASS/FAIL never changes the exit status (0); a
crash or timeout exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import aiohttp

from loadtest.report import percentile
from loadtest.served import Served, clean_env, serve_args
from router.service.run import raise_open_files

KEYS = 100
STREAMS = 10_000
SLOW_STREAMS = 300
HALF_SENT = 300
GETS = 3_000
"""Sequential GETs per segment."""
WARM_UP = 1_000
ROUNDS = 5
"""Slow-client rounds, each with a baseline chunk before it."""
OPEN_CONCURRENCY = 200
"""Streams being opened at once."""
OPEN_TIMEOUT_S = 120.0
TARGET_RATIO = 2.0
RELEASE_S = 3.0
"""Time for the router to notice that closed streams' clients left (its sweep is every 1 s)."""


def key(i: int) -> str:
    return f"bench-streams-key-{i:03d}"


def config_text(keys: int) -> str:
    """A contact center of one queue, and `keys` monitor keys (kept as digests)."""
    lines = ["[[queues]]", 'name = "support"', "skills = { support = 1 }", ""]
    for i in range(keys):
        digest = hashlib.sha256(key(i).encode()).hexdigest()
        lines += [
            "[[keys]]",
            f'name = "k{i:03d}"',
            'role = "admin"' if i == 0 else 'role = "monitor"',
        ]
        lines += [f'sha256 = "{digest}"', ""]
    return "\n".join(lines)


@dataclass
class Idle:
    """The idle connections of a segment."""

    writers: list[asyncio.StreamWriter]

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers.clear()


async def open_stream(host: str, port: int, api_key: str) -> asyncio.StreamWriter:
    """An event stream, open and idle: its answer's head read, then left alone."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"GET /v1/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {api_key}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        writer.close()
        raise RuntimeError(f"stream refused: {head.splitlines()[0]!r}")
    # Idle: the kernel keeps its keep-alive comments, so this load generator spends no time on
    # them (the router's writes still happen).
    cast(asyncio.Transport, writer.transport).pause_reading()
    return writer


async def half_sent(host: str, port: int) -> asyncio.StreamWriter:
    """A request whose head is never finished."""
    _, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET /v1/queues HTTP/1.1\r\nHost: {host}\r\nAuthoriz".encode())
    await writer.drain()
    return writer


async def open_many(host: str, port: int, streams: int, keys: int, half: int = 0) -> Idle:
    """`streams` idle streams over `keys` keys, and `half` half-sent requests."""
    limit = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def one(i: int) -> asyncio.StreamWriter:
        async with limit:
            if i < streams:
                return await open_stream(host, port, key(i % keys))
            return await half_sent(host, port)

    async with asyncio.timeout(OPEN_TIMEOUT_S):
        writers = await asyncio.gather(*(one(i) for i in range(streams + half)))
    return Idle(list(writers))


async def time_gets(session: aiohttp.ClientSession, url: str, count: int) -> list[float]:
    """Seconds each of `count` sequential GETs took (all must answer 200)."""
    took = []
    headers = {"Authorization": f"Bearer {key(0)}"}
    for _ in range(count):
        started = time.perf_counter()
        async with session.get(url, headers=headers) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"GET answered {response.status}")
        took.append(time.perf_counter() - started)
    return took


@dataclass
class Segment:
    name: str
    took: list[float]

    @property
    def p50_ms(self) -> float:
        return percentile(self.took, 0.5) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.took, 0.99) * 1000


@contextlib.asynccontextmanager
async def service(folder: Path) -> AsyncIterator[str]:
    config = folder / "acd.toml"
    config.write_text(config_text(KEYS))
    args, _ = serve_args("--config", str(config))
    served = Served(args, clean_env())
    try:
        yield served.wait_ready()
    finally:
        served.kill()


async def run(gets: int, streams: int) -> list[tuple[Segment, Segment]]:
    """(baseline, loaded) pairs: each loaded segment with the baseline measured around it."""
    with tempfile.TemporaryDirectory(prefix="acd-bench-streams-") as tmp:
        async with service(Path(tmp)) as base:
            host, port_text = base.removeprefix("http://").rsplit(":", 1)
            port = int(port_text)
            url = f"{base}/v1/agents/a1"
            timeout = aiohttp.ClientTimeout(total=30)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                admin = {"Authorization": f"Bearer {key(0)}"}
                async with session.put(url, json={"skills": {"support": 1}}, headers=admin) as r:
                    assert r.status in (200, 201), await r.text()
                await time_gets(session, url, WARM_UP)

                # Slow clients: rounds alternate with the baseline (cheap to open and close).
                name = f"{SLOW_STREAMS} idle streams + {HALF_SENT} half-sent requests"
                quiet, slow = Segment("baseline", []), Segment(name, [])
                for _ in range(ROUNDS):
                    quiet.took += await time_gets(session, url, gets // ROUNDS)
                    idle = await open_many(host, port, SLOW_STREAMS, KEYS, HALF_SENT)
                    slow.took += await time_gets(session, url, gets // ROUNDS)
                    idle.close()
                    await asyncio.sleep(RELEASE_S)  # the router notices the clients left
                print(f"  {name}: done", flush=True)

                # 10,000 streams: the baseline before and after them.
                name = f"{streams:,} idle streams over {KEYS} keys"
                around, loaded = Segment("baseline", []), Segment(name, [])
                around.took += await time_gets(session, url, gets // 2)
                started = time.perf_counter()
                idle = await open_many(host, port, streams, KEYS)
                opened_s = time.perf_counter() - started
                loaded.took += await time_gets(session, url, gets)
                refused = await refused_past_the_limit(session, base)
                idle.close()
                await asyncio.sleep(RELEASE_S)
                around.took += await time_gets(session, url, gets // 2)
                print(f"  {name}: opened in {opened_s:.1f} s; one more stream of a full key: "
                      f"{refused}", flush=True)  # fmt: skip
    return [(quiet, slow), (around, loaded)]


async def refused_past_the_limit(session: aiohttp.ClientSession, base: str) -> str:
    """The answer to one more stream of a key that holds max_streams_per_key of them."""
    headers = {"Authorization": f"Bearer {key(1)}"}
    async with session.get(f"{base}/v1/events", headers=headers) as response:
        return f"HTTP {response.status}, Retry-After {response.headers.get('Retry-After')}"


def report(pairs: list[tuple[Segment, Segment]]) -> None:
    print(f"\n  {'GET /v1/agents/{id}, sequential':<48} {'n':>6} {'p50 ms':>8} {'p99 ms':>8}")
    for pair in pairs:
        for segment in pair:
            print(
                f"  {segment.name:<48} {len(segment.took):>6} {segment.p50_ms:>8.2f} "
                f"{segment.p99_ms:>8.2f}"
            )
    print()
    for base, loaded in pairs:
        ratio = loaded.p99_ms / base.p99_ms
        verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
        print(f"  {verdict}  GET p99 with {loaded.name} / baseline: {ratio:.2f} (target <= 2)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_streams", description=__doc__)
    parser.add_argument("--gets", type=int, default=GETS, help="sequential GETs per segment")
    parser.add_argument("--streams", type=int, default=STREAMS, help="idle streams (<= 10,000)")
    args = parser.parse_args(argv)
    if not 1 <= args.streams <= KEYS * 100:
        parser.error(f"--streams must be 1..{KEYS * 100} (100 keys, 100 streams each)")
    limit = raise_open_files()
    print(f"bench_streams: open-file limit {limit}; {args.gets} GETs per segment", flush=True)
    if limit < args.streams + 500:  # each process holds one end of every stream
        print(f"bench_streams: the open-file limit {limit} is too low for {args.streams} streams")
        return 1
    try:
        pairs = asyncio.run(run(args.gets, args.streams))
    except (RuntimeError, TimeoutError, OSError, aiohttp.ClientError) as error:
        print(f"bench_streams: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    report(pairs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
