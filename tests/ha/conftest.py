"""Real Redis topologies on loopback (loadtest/topology.py) and routers on them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from aiohttp import web

from loadtest.failover import KEY, KEY_ENV, config_text
from loadtest.topology import Cluster, SentinelSet
from router.api.app import create_app
from router.api.auth import digest
from router.config import ApiKeyConfig, Config, WebhookConfig, load_config
from tests.api.conftest import ServiceTestServer


@dataclass(frozen=True)
class Router:
    """A router under test: its app, served at `url`."""

    app: web.Application
    url: str


StartRouters = Callable[[Config, int], Awaitable[list[Router]]]


@pytest.fixture(scope="module")
def sentinels() -> Iterator[SentinelSet]:
    """A primary, two replicas and three Sentinels."""
    topology = SentinelSet()
    topology.start()
    yield topology
    topology.stop()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A Redis Cluster of three primaries."""
    topology = Cluster()
    topology.start()
    yield topology
    topology.stop()


def router_config(
    tmp_path: Path,
    namespace: str,
    url: str,
    durability: str = "local",
    webhooks: tuple[WebhookConfig, ...] = (),
    store_timeout_s: float = 1.0,
) -> Config:
    """The configuration loadtest/failover.py gives its routers, on the store at `url`."""
    path = tmp_path / f"{namespace}.toml"
    path.write_text(config_text(namespace, durability, store_timeout_s))
    config = load_config(str(path), {KEY_ENV: KEY})
    keys = tuple(
        ApiKeyConfig(name=k.name, role=k.role, sha256=digest(KEY).hex()) for k in config.keys
    )
    service = replace(config.service, redis_url=url)
    return replace(config, service=service, keys=keys, webhooks=webhooks)


@pytest.fixture
async def start_routers() -> AsyncIterator[StartRouters]:
    """Starts `count` routers of a configuration: apps on real HTTP servers on loopback."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(config: Config, count: int) -> list[Router]:
            routers = []
            for _ in range(count):
                server = ServiceTestServer(create_app(config), host="127.0.0.1")
                await stack.enter_async_context(server)
                routers.append(Router(server.app, str(server.make_url("")).rstrip("/")))
            return routers

        yield start
