"""max_streams_per_key (SPEC §4, §7): past it a new event stream is a 429 with Retry-After."""

from __future__ import annotations

import itertools

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from router.api.keys import EVENT_HUB
from router.config import Role
from router.settings import ServiceSettings
from tests.api.conftest import auth
from tests.events.conftest import eventually

Client = TestClient[web.Request, web.Application]
_namespaces = itertools.count()


@pytest.fixture
def settings() -> ServiceSettings:
    return ServiceSettings(namespace=f"limits{next(_namespaces)}", max_streams_per_key=2)


async def test_streams_past_max_streams_per_key_are_a_429(client: Client) -> None:
    first = await client.get("/v1/events", headers=auth())
    second = await client.get("/v1/events", headers=auth(Role.PLATFORM))
    assert (first.status, second.status) == (200, 200)
    async with client.get("/v1/events", headers=auth()) as refused:
        assert refused.status == 429
        assert refused.content_type == "application/problem+json"
        assert int(refused.headers["Retry-After"]) > 0
        assert (await refused.json())["type"] == "/problems/too-many-requests"
    other = await client.get("/v1/events", headers=auth(Role.MONITOR))  # per key
    assert other.status == 200
    first.close()
    hub = client.app[EVENT_HUB]
    await eventually(lambda: hub._per_key.get(Role.PLATFORM.value) == 1)
    again = await client.get("/v1/events", headers=auth())
    assert again.status == 200
    for response in (second, other, again):
        response.close()
