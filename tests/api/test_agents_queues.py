"""Agents, queues, auth and the operations routes over HTTP (SPEC §4, §5)."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from router.config import Role
from tests.api.conftest import auth
from tests.api.test_interactions import agent_on, call

Client = TestClient[web.Request, web.Application]


async def test_put_get_and_update_an_agent(client: Client) -> None:
    agent = await call(
        client,
        "PUT",
        "/v1/agents/ann",
        json={"skills": {"support": 3}, "channels": {"voice": 1, "chat": 2}, "name": "Ann"},
        expect=201,
    )
    assert (agent["state"], agent["activity"], agent["name"]) == ("logged_out", "idle", "Ann")
    agent = await call(client, "PUT", "/v1/agents/ann", json={"skills": {"support": 4}})
    assert agent["skills"] == {"support": 4}
    got = await call(client, "GET", "/v1/agents/ann")
    for field in (
        "id",
        "name",
        "skills",
        "channels",
        "state",
        "reason",
        "activity",
        "interactions",
        "idle_since",
        "state_since",
    ):
        assert field in got
    await call(client, "GET", "/v1/agents/nobody", expect=404)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "skills"),
        ({"skills": {"support": 6}}, "skills.support"),
        ({"skills": {"Bad Name": 1}}, "skills.Bad Name"),
        ({"skills": {}, "channels": {"fax": 1}}, "channels.fax"),
        ({"skills": {}, "channels": {"chat": 0}}, "channels.chat"),
        ({"skills": {}, "extra": 1}, "extra"),
    ],
)
async def test_invalid_agent_bodies(client: Client, body: dict[str, object], field: str) -> None:
    problem = await call(client, "PUT", "/v1/agents/ann", json=body, expect=422)
    assert field in [e["field"] for e in problem["errors"]]


async def test_agent_state_changes_and_force_logout(client: Client) -> None:
    await agent_on(client, "a1", {"support": 2})
    agent = await call(
        client, "POST", "/v1/agents/a1/state", json={"state": "not_ready", "reason": "lunch"}
    )
    assert (agent["state"], agent["reason"]) == ("not_ready", "lunch")
    await call(client, "POST", "/v1/agents/a1/state", json={"state": "away"}, expect=422)
    on_break = {"state": "available", "reason": "on_break"}  # a reason is not_ready's
    problem = await call(client, "POST", "/v1/agents/a1/state", json=on_break, expect=422)
    assert [e["field"] for e in problem["errors"]] == ["reason"]
    agent = await call(client, "POST", "/v1/agents/a1/state", json={"state": "available"})
    assert (agent["state"], agent["reason"]) == ("available", None)
    await call(
        client, "POST", "/v1/interactions", json={"id": "c1", "queue": "support"}, expect=201
    )
    await call(client, "POST", "/v1/interactions/c1/accept", json={"agent_id": "a1"})
    await call(client, "POST", "/v1/agents/a1/state", json={"state": "logged_out"}, expect=409)
    forced = {"state": "logged_out", "force": True}
    await call(client, "POST", "/v1/agents/a1/state", json=forced, expect=403)
    agent = await call(client, "POST", "/v1/agents/a1/state", json=forced, role=Role.ADMIN)
    assert agent["state"] == "logged_out"
    ix = await call(client, "GET", "/v1/interactions/c1")
    assert (ix["status"], ix["outcome"]) == ("completed", "agent_lost")
    await call(client, "POST", "/v1/agents/nobody/state", json={"state": "available"}, expect=404)


async def test_delete_an_agent(client: Client) -> None:
    await agent_on(client, "a1", {"support": 2})
    await call(client, "DELETE", "/v1/agents/a1", expect=409)
    await call(client, "POST", "/v1/agents/a1/state", json={"state": "logged_out"})
    await call(client, "DELETE", "/v1/agents/a1", expect=204)
    await call(client, "DELETE", "/v1/agents/a1", expect=404)


async def test_agent_listing_pages_and_filters(client: Client) -> None:
    for i in range(5):
        await call(client, "PUT", f"/v1/agents/a{i}", json={"skills": {"support": 2}}, expect=201)
    await call(client, "PUT", "/v1/agents/b0", json={"skills": {"billing": 1}}, expect=201)
    await call(client, "POST", "/v1/agents/a3/state", json={"state": "available"})
    page = await call(client, "GET", "/v1/agents?limit=2")
    assert [a["id"] for a in page["agents"]] == ["a0", "a1"]
    page = await call(client, "GET", f"/v1/agents?limit=2&cursor={page['next_cursor']}")
    assert [a["id"] for a in page["agents"]] == ["a2", "a3"]
    page = await call(client, "GET", f"/v1/agents?limit=2&cursor={page['next_cursor']}")
    assert [a["id"] for a in page["agents"]] == ["a4", "b0"]
    assert page["next_cursor"] is None
    page = await call(client, "GET", "/v1/agents?state=available")
    assert [a["id"] for a in page["agents"]] == ["a3"]
    page = await call(client, "GET", "/v1/agents?queue=billing")
    assert [a["id"] for a in page["agents"]] == ["b0"]
    # Seen: a made-up cursor answered 200 here and 422 on GET /v1/interactions.
    for cursor in ("garbage", "a1", "after:", "after:_x"):
        problem = await call(client, "GET", f"/v1/agents?cursor={cursor}", expect=422)
        assert problem["errors"] == [
            {"field": "cursor", "message": "must be the next_cursor of a previous page"}
        ]
    for query, field in (
        ("limit=0", "limit"),
        ("state=busy", "state"),
        ("queue=x", "queue"),
        ("sort=id", "sort"),
    ):
        problem = await call(client, "GET", f"/v1/agents?{query}", expect=422)
        assert problem["errors"][0]["field"] == field


async def test_queues_with_live_stats(client: Client) -> None:
    await agent_on(client, "a1", {"support": 1})
    await call(client, "PUT", "/v1/agents/a2", json={"skills": {"support": 3}}, expect=201)
    await call(client, "POST", "/v1/agents/a2/state", json={"state": "not_ready"})
    await call(
        client, "POST", "/v1/interactions", json={"id": "c1", "queue": "support"}, expect=201
    )
    listed = await call(client, "GET", "/v1/queues")
    assert [q["name"] for q in listed["queues"]] == ["billing", "chat", "support"]
    queue = await call(client, "GET", "/v1/queues/support")
    stats = queue["stats"]
    # a1 meets only step 1 (support >= 1), a2 both steps; a2 is not ready.
    assert (stats["waiting"], stats["agents_staffed"], stats["agents_available"]) == (1, 2, 1)
    assert [w["id"] for w in queue["waiting"]] == ["c1"]
    assert queue["waiting"][0]["position"] == 1
    await call(client, "GET", "/v1/queues/nowhere", expect=404)


async def test_queue_admin(client: Client) -> None:
    body = {"channel": "voice", "skills": {"sales": 1}, "sla": {"threshold_s": 30, "target": 0.9}}
    await call(client, "PUT", "/v1/queues/sales", json=body, expect=403)
    queue = await call(client, "PUT", "/v1/queues/sales", json=body, role=Role.ADMIN, expect=201)
    assert queue["sla"] == {"threshold_s": 30, "target": 0.9}
    await call(client, "PUT", "/v1/queues/sales", json=body, role=Role.ADMIN, expect=200)
    problem = await call(
        client,
        "PUT",
        "/v1/queues/sales",
        json={"steps": [{"after_s": 0, "skills": {}}]},
        role=Role.ADMIN,
        expect=422,
    )
    assert problem["errors"][0]["field"] == "steps[0].after_s"
    await call(client, "POST", "/v1/interactions", json={"id": "s1", "queue": "sales"}, expect=201)
    await call(client, "DELETE", "/v1/queues/sales", role=Role.ADMIN, expect=409)
    await call(client, "DELETE", "/v1/interactions/s1")
    await call(client, "DELETE", "/v1/queues/sales", role=Role.ADMIN, expect=204)
    await call(client, "DELETE", "/v1/queues/sales", role=Role.ADMIN, expect=404)


ROUTES = [
    ("POST", "/v1/interactions"),
    ("GET", "/v1/interactions/x"),
    ("DELETE", "/v1/interactions/x"),
    ("POST", "/v1/interactions/x/accept"),
    ("POST", "/v1/interactions/x/reject"),
    ("POST", "/v1/interactions/x/complete"),
    ("POST", "/v1/interactions/x/transfer"),
    ("POST", "/v1/interactions/x/callback"),
    ("PUT", "/v1/agents/x"),
    ("GET", "/v1/agents/x"),
    ("GET", "/v1/agents"),
    ("POST", "/v1/agents/x/state"),
    ("DELETE", "/v1/agents/x"),
    ("GET", "/v1/queues"),
    ("GET", "/v1/queues/x"),
    ("PUT", "/v1/queues/x"),
    ("DELETE", "/v1/queues/x"),
    ("GET", "/v1/events"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_every_route_needs_a_key(client: Client, method: str, path: str) -> None:
    async with client.request(method, path, json={}) as resp:
        assert resp.status == 401
        assert resp.content_type == "application/problem+json"
        # RFC 9110: a 401 says how to authenticate, in the scheme keys are sent with.
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="acd-router"'
    bad = {"Authorization": "Bearer not-a-key"}
    async with client.request(method, path, json={}, headers=bad) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == (
            'Bearer realm="acd-router", error="invalid_token"'
        )


@pytest.mark.parametrize(("method", "path"), [r for r in ROUTES if r[0] != "GET"])
async def test_a_monitor_key_may_not_write(client: Client, method: str, path: str) -> None:
    async with client.request(method, path, json={}, headers=auth(Role.MONITOR)) as resp:
        assert resp.status == 403


async def test_a_monitor_key_may_read(client: Client) -> None:
    await call(client, "GET", "/v1/queues", role=Role.MONITOR)


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_operations_routes_need_no_key(client: Client, path: str) -> None:
    async with client.get(path) as resp:
        assert resp.status == 200


async def test_unknown_route_and_method_are_problems(client: Client) -> None:
    async with client.get("/v1/nothing", headers=auth()) as resp:
        assert (resp.status, resp.content_type) == (404, "application/problem+json")
    async with client.patch("/v1/agents/x", headers=auth()) as resp:
        assert (resp.status, resp.content_type) == (405, "application/problem+json")
