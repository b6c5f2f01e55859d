"""POST/GET/DELETE /v1/interactions and the agent actions on them (SPEC §4)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from router.api.keys import CLOCK
from router.clock import ManualClock
from router.config import Role
from tests.api.conftest import auth

Client = TestClient[web.Request, web.Application]


async def call(
    client: Client, method: str, path: str, role: Role = Role.PLATFORM, **kw: Any
) -> Any:
    """The JSON answer of a request, after checking its status (`expect`, default 200)."""
    expect = kw.pop("expect", 200)
    async with client.request(method, path, headers=auth(role), **kw) as resp:
        body: Any = await resp.json(content_type=None) if resp.status != 204 else None
        assert resp.status == expect, body
        if resp.status >= 400:
            assert resp.content_type == "application/problem+json"
            assert body["status"] == resp.status
        return body


async def agent_on(client: Client, agent_id: str, skills: dict[str, int]) -> None:
    await call(client, "PUT", f"/v1/agents/{agent_id}", json={"skills": skills}, expect=201)
    await call(client, "POST", f"/v1/agents/{agent_id}/state", json={"state": "available"})


async def test_create_offer_accept_complete(client: Client) -> None:
    await agent_on(client, "a1", {"support": 2})
    ix = await call(
        client,
        "POST",
        "/v1/interactions",
        json={"id": "c1", "queue": "support", "data": {"k": 1}},
        expect=201,
    )
    assert (ix["status"], ix["agent_id"], ix["data"]) == ("offered", "a1", {"k": 1})
    assert ix["created_at"].endswith("Z")
    got = await call(client, "GET", "/v1/interactions/c1")
    for field in (
        "id",
        "queue",
        "channel",
        "status",
        "priority",
        "credit_s",
        "position",
        "ewt_s",
        "agent_id",
        "created_at",
        "enqueued_at",
        "waited_s",
        "callback_offered",
        "attempts",
        "data",
    ):
        assert field in got
    assert got["position"] == 1
    ix = await call(client, "POST", "/v1/interactions/c1/accept", json={"agent_id": "a1"})
    assert ix["status"] == "connected"
    ix = await call(client, "POST", "/v1/interactions/c1/complete", json={"agent_id": "a1"})
    assert (ix["status"], ix["outcome"]) == ("completed", "resolved")
    again = await call(client, "POST", "/v1/interactions/c1/complete", json={"agent_id": "a1"})
    assert again == ix
    other = {"agent_id": "a1", "wrap_up_s": 10}
    differs = await call(client, "POST", "/v1/interactions/c1/complete", json=other, expect=409)
    assert differs["type"] == "/problems/idempotency-conflict"
    assert differs["detail"].endswith("with other arguments: wrap_up_s was not given")


async def test_the_create_answer_has_the_position_and_ewt_a_get_shows(client: Client) -> None:
    for ix_id in ("c1", "c2"):
        created = await call(
            client, "POST", "/v1/interactions", json={"id": ix_id, "queue": "support"}, expect=201
        )
        got = await call(client, "GET", f"/v1/interactions/{ix_id}")
        assert created["status"] == "queued"
        assert (created["position"], created["ewt_s"]) == (got["position"], got["ewt_s"])
        assert created["ewt_s"] is not None
    assert created["position"] == 2
    retried = await call(
        client, "POST", "/v1/interactions", json={"id": "c2", "queue": "support"}, expect=200
    )
    assert (retried["position"], retried["ewt_s"]) == (got["position"], got["ewt_s"])


async def test_an_offered_create_has_the_position_and_ewt_a_get_shows(client: Client) -> None:
    await agent_on(client, "a1", {"support": 2})
    created = await call(
        client, "POST", "/v1/interactions", json={"id": "c1", "queue": "support"}, expect=201
    )
    got = await call(client, "GET", "/v1/interactions/c1")
    assert (created["status"], created["agent_id"]) == ("offered", "a1")
    assert (created["position"], created["ewt_s"]) == (got["position"], got["ewt_s"])
    assert created["position"] == 1
    assert created["ewt_s"] is not None


async def test_create_is_idempotent_by_id(client: Client) -> None:
    body = {"id": "c1", "queue": "support", "priority": 5}
    first = await call(client, "POST", "/v1/interactions", json=body, expect=201)
    again = await call(client, "POST", "/v1/interactions", json=body, expect=200)
    assert (again["id"], again["enqueued_at"]) == (first["id"], first["enqueued_at"])
    problem = await call(
        client, "POST", "/v1/interactions", json={**body, "priority": 6}, expect=409
    )
    assert problem["type"] == "/problems/idempotency-conflict"


async def test_a_retry_that_spells_out_what_absence_means_is_the_same_create(
    client: Client,
) -> None:
    # Seen: a retry that added `"channel": "voice"` (the queue's) answered 409.
    bare = {"id": "c1", "queue": "support"}
    await call(client, "POST", "/v1/interactions", json=bare, expect=201)
    spelt: dict[str, Any] = {
        **bare,
        "channel": "voice",
        "skills": {},
        "preferred_agents": [],
        "data": None,
    }
    await call(client, "POST", "/v1/interactions", json=spelt, expect=200)
    await call(client, "POST", "/v1/interactions", json={**spelt, "id": "c2"}, expect=201)
    await call(client, "POST", "/v1/interactions", json={**bare, "id": "c2"}, expect=200)
    # What absence means is the queue's default, which a queue may change: so a difference.
    differences: list[dict[str, Any]] = [
        {"priority": 0},
        {"credit_s": 0},
        {"data": {}},
        {"channel": "chat"},
    ]
    for differs in differences:
        problem = await call(
            client, "POST", "/v1/interactions", json={**bare, **differs}, expect=409
        )
        assert problem["type"] == "/problems/idempotency-conflict"


async def test_create_without_id_gets_one(client: Client) -> None:
    ix = await call(client, "POST", "/v1/interactions", json={"queue": "support"}, expect=201)
    assert len(ix["id"]) == 32


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"queue": "nowhere"}, "queue"),
        ({}, "queue"),
        ({"queue": "support", "priority": "high"}, "priority"),
        ({"queue": "support", "priority": 1001}, "priority"),
        ({"queue": "support", "credit_s": -1}, "credit_s"),
        ({"queue": "support", "skills": {"billing": 9}}, "skills.billing"),
        ({"queue": "support", "colour": "red"}, "colour"),
        ({"queue": "support", "channel": "chat"}, "channel"),
        ({"queue": "support", "channel": "fax"}, "channel"),
        ({"queue": "support", "preferred_agents": ["a1"]}, "preferred_wait_s"),
        ({"queue": "support", "data": {"s": "x" * 5000}}, "data"),
        ({"queue": "support", "id": "has space"}, "id"),
    ],
)
async def test_invalid_arrivals_name_the_field(
    client: Client, body: dict[str, Any], field: str
) -> None:
    problem = await call(client, "POST", "/v1/interactions", json=body, expect=422)
    assert field in [e["field"] for e in problem["errors"]]


async def test_malformed_oversize_and_wrong_media_type(client: Client) -> None:
    headers = {**auth(), "Content-Type": "application/json"}
    async with client.post("/v1/interactions", data=b"{nope", headers=headers) as resp:
        assert resp.status == 400
        assert resp.content_type == "application/problem+json"
    big = b'{"queue": "support", "data": "' + b"x" * 70_000 + b'"}'
    async with client.post("/v1/interactions", data=big, headers=headers) as resp:
        assert resp.status == 413
        assert resp.content_type == "application/problem+json"
    plain = {**auth(), "Content-Type": "text/plain"}
    async with client.post("/v1/interactions", data=b"queue=support", headers=plain) as resp:
        assert resp.status == 415
    async with client.post("/v1/interactions", json=[1, 2], headers=auth()) as resp:
        assert resp.status == 422


async def test_msgpack_in_and_out(client: Client) -> None:
    headers = {**auth(), "Content-Type": "application/msgpack", "Accept": "application/msgpack"}
    body = msgpack.packb({"id": "m1", "queue": "support"})
    async with client.post("/v1/interactions", data=body, headers=headers) as resp:
        assert resp.status == 201
        assert resp.content_type == "application/msgpack"
        ix = msgpack.unpackb(await resp.read())
    assert ix["id"] == "m1"
    async with client.post("/v1/interactions", data=b"\xc1", headers=headers) as resp:
        assert resp.status == 400


async def test_get_and_delete_errors(client: Client) -> None:
    await call(client, "GET", "/v1/interactions/nope", expect=404)
    await call(client, "DELETE", "/v1/interactions/nope", expect=404)
    await agent_on(client, "a1", {"support": 2})
    await call(
        client, "POST", "/v1/interactions", json={"id": "c1", "queue": "support"}, expect=201
    )
    await call(client, "POST", "/v1/interactions/c1/accept", json={"agent_id": "a1"})
    problem = await call(client, "DELETE", "/v1/interactions/c1", expect=409)
    assert problem["type"] == "/problems/conflict"


async def test_abandon_is_idempotent(client: Client) -> None:
    await call(
        client, "POST", "/v1/interactions", json={"id": "c1", "queue": "support"}, expect=201
    )
    first = await call(client, "DELETE", "/v1/interactions/c1")
    again = await call(client, "DELETE", "/v1/interactions/c1")
    assert first["status"] == again["status"] == "abandoned"


async def test_agent_actions_errors(client: Client) -> None:
    await agent_on(client, "a1", {"support": 2})
    await call(
        client, "POST", "/v1/interactions", json={"id": "c1", "queue": "support"}, expect=201
    )
    problem = await call(
        client, "POST", "/v1/interactions/c1/accept", json={"agent_id": "zz"}, expect=409
    )
    assert problem["type"] == "/problems/not-offered"
    problem = await call(client, "POST", "/v1/interactions/c1/accept", json={}, expect=422)
    assert problem["errors"][0]["field"] == "agent_id"
    problem = await call(
        client,
        "POST",
        "/v1/interactions/c1/reject",
        json={"agent_id": "a1", "reason": "bored"},
        expect=422,
    )
    assert problem["errors"][0]["field"] == "reason"
    await call(client, "POST", "/v1/interactions/c1/complete", json={"agent_id": "a1"}, expect=409)
    await call(client, "POST", "/v1/interactions/nope/accept", json={"agent_id": "a1"}, expect=404)
    ix = await call(
        client, "POST", "/v1/interactions/c1/reject", json={"agent_id": "a1", "reason": "no_answer"}
    )
    assert ix["status"] == "queued"
    agent = await call(client, "GET", "/v1/agents/a1")
    assert (agent["state"], agent["reason"]) == ("not_ready", "no_answer")


async def test_transfer_and_its_errors(client: Client) -> None:
    await agent_on(client, "a1", {"support": 2})
    await call(
        client, "POST", "/v1/interactions", json={"id": "c1", "queue": "support"}, expect=201
    )
    await call(client, "POST", "/v1/interactions/c1/accept", json={"agent_id": "a1"})
    for queue in ("nowhere", "chat"):
        problem = await call(
            client,
            "POST",
            "/v1/interactions/c1/transfer",
            json={"agent_id": "a1", "queue": queue},
            expect=422,
        )
        assert problem["errors"][0]["field"] == "queue"
    await call(
        client, "POST", "/v1/interactions", json={"id": "b1", "queue": "billing"}, expect=201
    )
    problem = await call(
        client,
        "POST",
        "/v1/interactions/c1/transfer",
        json={"agent_id": "a1", "queue": "billing"},
        expect=409,
    )
    assert problem["type"] == "/problems/queue-full"
    await call(client, "DELETE", "/v1/interactions/b1")
    ix = await call(
        client, "POST", "/v1/interactions/c1/transfer", json={"agent_id": "a1", "queue": "billing"}
    )
    assert (ix["queue"], ix["status"]) == ("billing", "queued")
    # An exact repeat (a retry after a lost answer) is the current record, not a 409 (§4).
    again = await call(
        client, "POST", "/v1/interactions/c1/transfer", json={"agent_id": "a1", "queue": "billing"}
    )
    assert again == ix
    for agent_id in ("a1", "a2"):  # another target, or another agent: not a repeat
        body = {"agent_id": agent_id, "queue": "support"}
        await call(client, "POST", "/v1/interactions/c1/transfer", json=body, expect=409)


async def test_the_interactions_not_yet_ended_page_oldest_first_and_filter(
    client: Client,
) -> None:
    await agent_on(client, "a1", {"support": 2})
    clock = client.app[CLOCK]
    assert isinstance(clock, ManualClock)
    for ix_id, queue in (
        ("c1", "support"),
        ("c2", "support"),
        ("b1", "billing"),
        ("c3", "support"),
    ):
        await call(
            client, "POST", "/v1/interactions", json={"id": ix_id, "queue": queue}, expect=201
        )
        clock.advance(1)  # oldest first by created_at (ties: by id)
    await call(client, "POST", "/v1/interactions/c1/accept", json={"agent_id": "a1"})
    await call(client, "DELETE", "/v1/interactions/c2")  # abandoned: ended, no longer listed
    page = await call(client, "GET", "/v1/interactions", Role.MONITOR)
    assert [(ix["id"], ix["status"]) for ix in page["interactions"]] == [
        ("c1", "connected"),
        ("b1", "queued"),
        ("c3", "queued"),
    ]
    assert page["next_cursor"] is None
    got = await call(client, "GET", "/v1/interactions/c3")
    assert page["interactions"][2] == got  # each as GET shows it, position and EWT included

    async def ids(query: str) -> list[str]:
        found = await call(client, "GET", f"/v1/interactions?{query}")
        return [ix["id"] for ix in found["interactions"]]

    assert await ids("queue=support") == ["c1", "c3"]
    assert await ids("status=queued") == ["b1", "c3"]
    assert await ids("agent_id=a1") == ["c1"]
    assert await ids("queue=support&status=queued") == ["c3"]
    first = await call(client, "GET", "/v1/interactions?limit=2")
    assert [ix["id"] for ix in first["interactions"]] == ["c1", "b1"]
    rest = await call(client, "GET", f"/v1/interactions?limit=2&cursor={first['next_cursor']}")
    assert ([ix["id"] for ix in rest["interactions"]], rest["next_cursor"]) == (["c3"], None)
    await call(client, "POST", "/v1/interactions/c1/complete", json={"agent_id": "a1"})
    assert await ids("") == ["b1", "c3"]
    for query, field in (
        ("status=completed", "status"),
        ("limit=0", "limit"),
        ("cursor=c3", "cursor"),
        ("queue=Support", "queue"),
        ("colour=blue", "colour"),
    ):
        problem = await call(client, "GET", f"/v1/interactions?{query}", expect=422)
        assert problem["errors"][0]["field"] == field


async def test_the_queue_detail_shows_limit_waiting(client: Client) -> None:
    for ix_id in ("c1", "c2", "c3"):
        await call(
            client, "POST", "/v1/interactions", json={"id": ix_id, "queue": "support"}, expect=201
        )
    detail = await call(client, "GET", "/v1/queues/support?limit=2")
    assert [(ix["id"], ix["position"]) for ix in detail["waiting"]] == [("c1", 1), ("c2", 2)]
    assert len((await call(client, "GET", "/v1/queues/support"))["waiting"]) == 3
    problem = await call(client, "GET", "/v1/queues/support?limit=501", expect=422)
    assert problem["errors"][0]["field"] == "limit"
