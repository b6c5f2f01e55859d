"""The real app on a real HTTP server (loopback), on the session's redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from router.api.app import create_app
from router.api.auth import digest
from router.clock import ManualClock
from router.config import ApiKeyConfig, Config, Role
from router.domain.models import Channel, QueueConfig, Step
from router.settings import ServiceSettings
from router.store.server import RedisServer

KEYS = {Role.ADMIN: "admin-key", Role.PLATFORM: "platform-key", Role.MONITOR: "monitor-key"}
QUEUES = (
    QueueConfig(name="support", skills={"support": 2}, steps=(Step(30, {"support": 1}),)),
    QueueConfig(name="billing", skills={"billing": 1}, max_waiting=1),
    QueueConfig(name="chat", channel=Channel.CHAT, skills={"chat": 1}),
)


def auth(role: Role = Role.PLATFORM) -> dict[str, str]:
    """The Authorization header of the test key of `role`."""
    return {"Authorization": f"Bearer {KEYS[role]}"}


@pytest.fixture
async def client(
    redis_server: RedisServer, settings: ServiceSettings, clock: ManualClock
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    config = Config(
        service=replace(settings, redis_url=redis_server.url),
        queues=QUEUES,
        keys=tuple(
            ApiKeyConfig(name=role.value, role=role, sha256=digest(key).hex())
            for role, key in KEYS.items()
        ),
    )
    async with TestClient(TestServer(create_app(config, clock))) as test_client:
        yield test_client
