"""The real app on a real HTTP server (loopback), on the session's redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from router.api.app import create_app
from router.api.auth import digest
from router.api.protocol import service_runner
from router.clock import ManualClock
from router.config import ApiKeyConfig, Config, Role
from router.domain.models import Channel, QueueConfig, Step
from router.settings import ServiceSettings
from router.store.server import RedisServer

KEYS = {Role.ADMIN: "admin-key", Role.PLATFORM: "platform-key", Role.MONITOR: "monitor-key"}
QUEUES = (
    QueueConfig(
        name="support", skills={"support": 2}, steps=(Step(after_s=30, skills={"support": 1}),)
    ),
    QueueConfig(name="billing", skills={"billing": 1}, max_waiting=1),
    QueueConfig(name="chat", channel=Channel.CHAT, skills={"chat": 1}),
)


class ServiceTestServer(TestServer):
    """aiohttp's TestServer with the service's own runner (protocol errors as problems)."""

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        return service_runner(self.app, **kwargs)


def config_for(settings: ServiceSettings, url: str) -> Config:
    """The test contact center's configuration on the store at `url`."""
    return Config(
        service=replace(settings, redis_url=url),
        queues=QUEUES,
        keys=tuple(
            ApiKeyConfig(name=role.value, role=role, sha256=digest(key).hex())
            for role, key in KEYS.items()
        ),
    )


def auth(role: Role = Role.PLATFORM) -> dict[str, str]:
    """The Authorization header of the test key of `role`."""
    return {"Authorization": f"Bearer {KEYS[role]}"}


@pytest.fixture
async def client(
    redis_server: RedisServer, settings: ServiceSettings, clock: ManualClock
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    config = config_for(settings, redis_server.url)
    async with TestClient(ServiceTestServer(create_app(config, clock))) as test_client:
        yield test_client
