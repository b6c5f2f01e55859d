"""Query parameters: every documented operation takes those it declares, each at most once."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import ClientTimeout, web
from aiohttp.test_utils import TestClient

from router.api.openapi import build_document
from router.config import Role
from tests.api.conftest import auth

Client = TestClient[web.Request, web.Application]

DOCUMENT = build_document()
API = [
    (method.upper(), re.sub(r"\{\w+\}", "support", path), operation)
    for path, item in DOCUMENT["paths"].items()
    if path.startswith("/v1/")
    for method, operation in item.items()
    if method != "parameters"
]


def query_names(operation: dict[str, Any]) -> list[str]:
    """The names of an operation's query parameters in the document."""
    components = DOCUMENT["components"]["parameters"]
    found = [components[p["$ref"].rsplit("/", 1)[1]] for p in operation.get("parameters", [])]
    return [p["name"] for p in found if p["in"] == "query"]


async def problem(client: Client, method: str, url: str, role: Role = Role.ADMIN) -> Any:
    """The 422 problem of a request."""
    # Bounded: a stream that ignored the query would never end.
    timeout = ClientTimeout(total=5)
    async with client.request(method, url, headers=auth(role), timeout=timeout) as resp:
        assert resp.status == 422, await resp.text()
        assert resp.content_type == "application/problem+json"
        return await resp.json()


@pytest.mark.parametrize(("method", "path", "operation"), API, ids=[f"{m} {p}" for m, p, _ in API])
async def test_an_unknown_query_parameter_is_a_422(
    client: Client, method: str, path: str, operation: dict[str, Any]
) -> None:
    found = await problem(client, method, f"{path}?bogus=1")
    assert found["errors"] == [{"field": "bogus", "message": "unknown query parameter"}]
    assert "422" in operation["responses"]


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [(method, path, name) for method, path, op in API for name in query_names(op)],
)
async def test_a_query_parameter_given_twice_is_a_422(
    client: Client, method: str, path: str, name: str
) -> None:
    found = await problem(client, method, f"{path}?{name}=1&{name}=2")
    assert found["errors"] == [{"field": name, "message": "given more than once"}]


async def test_the_reviews_cases(client: Client) -> None:
    # Seen: `type` (singular) streamed every event unfiltered; the second `state` was ignored.
    found = await problem(client, "GET", "/v1/events?type=interaction.offered", Role.MONITOR)
    assert found["errors"] == [{"field": "type", "message": "unknown query parameter"}]
    found = await problem(client, "GET", "/v1/agents?state=available&state=logged_out")
    assert found["errors"] == [{"field": "state", "message": "given more than once"}]
    found = await problem(client, "GET", "/v1/agents/a1?limit=5&limit=5&sort=id&x")
    assert [e["field"] for e in found["errors"]] == ["limit", "sort", "x"]
    assert found["detail"] == (
        "limit: unknown query parameter; sort: unknown query parameter; x: unknown query parameter"
    )
    async with client.get("/v1/queues/support?limit=1", headers=auth()) as resp:
        assert resp.status == 200
    async with client.get("/healthz?anything=1") as resp:
        assert resp.status == 200  # an operations route, not an API operation


async def test_the_key_is_checked_first(client: Client) -> None:
    async with client.get("/v1/queues?bogus=1") as resp:
        assert resp.status == 401
    async with client.get("/v1/queues?bogus=1", headers=auth(Role.MONITOR)) as resp:
        assert resp.status == 422
    async with client.put("/v1/queues/q?bogus=1", headers=auth(Role.MONITOR)) as resp:
        assert resp.status == 403
