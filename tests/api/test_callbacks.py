"""A callback over HTTP from offer to completion, its events checked against the document."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient

from router.api.keys import CLOCK, ENGINE
from router.api.openapi import build_document
from router.api.views import event_view, rfc3339
from router.clock import ManualClock
from router.config import Role
from tests.api.test_interactions import call
from tests.api.test_openapi import assert_valid, component

Client = TestClient[web.Request, web.Application]
POLICY = {"offer_when_ewt_s": 60, "retry_after_s": 300, "max_attempts": 1}


async def test_a_callback_from_offer_to_completion(client: Client) -> None:
    body = {"skills": {"cb": 1}, "callback": POLICY}
    await call(client, "PUT", "/v1/queues/callbacks", json=body, role=Role.ADMIN, expect=201)
    ix = await call(
        client, "POST", "/v1/interactions", json={"id": "c1", "queue": "callbacks"}, expect=201
    )
    assert ix["callback_offered"] is True  # nobody serves the queue: a long wait
    await call(client, "POST", "/v1/interactions/c1/callback", json={"at": "yesterday"}, expect=422)
    ix = await call(client, "POST", "/v1/interactions/c1/callback", json={})
    assert (ix["status"], ix["callback"], ix["position"]) == ("callback", True, 1)
    await call(client, "PUT", "/v1/agents/a1", json={"skills": {"cb": 1}}, expect=201)
    await call(client, "POST", "/v1/agents/a1/state", json={"state": "available"})
    ix = await call(client, "GET", "/v1/interactions/c1")
    assert (ix["status"], ix["agent_id"]) == ("offered", "a1")
    await call(client, "POST", "/v1/interactions/c1/accept", json={"agent_id": "a1"})
    clock = client.app[CLOCK]
    assert isinstance(clock, ManualClock)
    clock.advance(300)  # the queue learns a handle time of 300 s
    ix = await call(client, "POST", "/v1/interactions/c1/complete", json={"agent_id": "a1"})
    assert (ix["status"], ix["attempts"]) == ("completed", 1)

    # A scheduled one, cancelled by the platform; another whose customer never answers.
    await call(client, "POST", "/v1/agents/a1/state", json={"state": "logged_out"})
    for ix_id in ("c2", "c3"):
        new = {"id": ix_id, "queue": "callbacks"}
        await call(client, "POST", "/v1/interactions", json=new, expect=201)
    at = rfc3339(clock.now() + 600)
    ix = await call(client, "POST", "/v1/interactions/c2/callback", json={"at": at})
    assert (ix["scheduled_at"], ix["position"]) == (at, None)
    ix = await call(client, "DELETE", "/v1/interactions/c2")
    assert ix["status"] == "cancelled"
    await call(client, "POST", "/v1/interactions/c3/callback", json={})
    await call(client, "POST", "/v1/agents/a1/state", json={"state": "available"})
    await call(client, "POST", "/v1/interactions/c3/accept", json={"agent_id": "a1"})
    ix = await call(
        client,
        "POST",
        "/v1/interactions/c3/complete",
        json={"agent_id": "a1", "outcome": "customer_no_answer"},
    )
    assert ix["status"] == "failed"  # max_attempts 1

    document = build_document()
    events = await client.app[ENGINE].read_events()
    for event in events:
        assert_valid(document, component("Event"), event_view(event))
    seen = {e.type for e in events}
    assert {"callback.offered", "callback.accepted", "callback.scheduled"} <= seen
    assert {"interaction.cancelled", "interaction.failed"} <= seen
    offers = [e for e in events if e.type == "interaction.offered"]
    assert all(e.fields["callback"] is True for e in offers)
