"""Fixtures: one private redis-server per test session; a fresh namespace per test."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from router.clock import ManualClock
from router.settings import ServiceSettings
from router.store.engine import Engine
from router.store.server import RedisServer
from tests.store.center import Center

_namespaces = itertools.count()


@contextlib.asynccontextmanager
async def configured(redis: Redis, name: str, value: str) -> AsyncIterator[None]:
    """The store's setting `name` at `value` while the block runs."""
    before = str((await redis.config_get(name))[name])
    await redis.config_set(name, value)
    try:
        yield
    finally:
        await redis.config_set(name, before)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
def settings() -> ServiceSettings:
    """Settings with a namespace of the test's own, which isolates it from every other test."""
    return ServiceSettings(namespace=f"t{next(_namespaces)}", retention_s=3600)


@pytest.fixture
async def engine(redis: Redis, settings: ServiceSettings) -> Engine:
    eng = Engine(redis, settings)
    await eng.start()
    return eng


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def center(engine: Engine, clock: ManualClock) -> AsyncIterator[Center]:
    """A contact center on a fresh namespace; every invariant is checked when the test ends."""
    c = Center(engine, clock)
    yield c
    await c.check()
