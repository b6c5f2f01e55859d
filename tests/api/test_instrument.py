"""The HTTP metrics middleware: every request counted by route template, method and status."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from router.api.instrument import metrics_middleware
from router.config import Role
from router.metrics.process import observe_tick
from router.store.engine import TickResult
from tests.api.conftest import auth

Client = TestClient[web.Request, web.Application]
SECRETS = ("agent-secret-7", "ix-secret-3", "nowhere-secret-5", "queue-secret-2")
"""Identifiers sent in paths; none may become a label value."""


def requests(route: str, method: str, status: int) -> float:
    """The current value of acd_http_requests_total for one label set (0 when absent)."""
    labels = {"route": route, "method": method, "status": str(status)}
    return REGISTRY.get_sample_value("acd_http_requests_total", labels) or 0.0


def timed(route: str) -> float:
    """How many requests of `route` the duration histogram observed."""
    labels = {"route": route}
    return REGISTRY.get_sample_value("acd_http_request_duration_seconds_count", labels) or 0.0


def http_label_values() -> Iterator[str]:
    """Every label value of every acd_http_* sample."""
    for metric in REGISTRY.collect():
        if metric.name.startswith("acd_http_"):
            for sample in metric.samples:
                yield from sample.labels.values()


class Counts:
    """acd_http_requests_total before a test's requests, for deltas."""

    def __init__(self, *keys: tuple[str, str, int]) -> None:
        self.before = {key: requests(*key) for key in keys}

    def delta(self) -> dict[tuple[str, str, int], float]:
        """Each label set's increase since construction."""
        return {key: requests(*key) - value for key, value in self.before.items()}


async def test_requests_are_counted_by_route_template(client: Client) -> None:
    agent, interaction = "/v1/agents/{id}", "/v1/interactions/{id}/accept"
    counts = Counts(
        (agent, "PUT", 201),
        (agent, "PUT", 200),
        (agent, "GET", 200),
        (agent, "GET", 404),
        (interaction, "POST", 404),
        ("/v1/queues/{name}", "GET", 404),
        ("/v1/agents", "GET", 401),
        ("/healthz", "GET", 200),
    )
    timed_before = timed(agent)
    body = {"skills": {"support": 3}}
    admin = auth(Role.ADMIN)
    responses = [
        await client.put(f"/v1/agents/{SECRETS[0]}", json=body, headers=admin),
        await client.put(f"/v1/agents/{SECRETS[0]}", json=body, headers=admin),
        await client.get(f"/v1/agents/{SECRETS[0]}", headers=admin),
        await client.get(f"/v1/agents/{SECRETS[0]}", headers=admin),
        await client.get("/v1/agents/someone-else", headers=admin),
        await client.post(
            f"/v1/interactions/{SECRETS[1]}/accept", json={"agent_id": SECRETS[0]}, headers=admin
        ),
        await client.get(f"/v1/queues/{SECRETS[3]}", headers=admin),
        await client.get("/v1/agents"),
        await client.get("/healthz"),
    ]
    assert [r.status for r in responses] == [201, 200, 200, 200, 404, 404, 404, 401, 200]
    assert counts.delta() == {
        (agent, "PUT", 201): 1,
        (agent, "PUT", 200): 1,
        (agent, "GET", 200): 2,
        (agent, "GET", 404): 1,
        (interaction, "POST", 404): 1,
        ("/v1/queues/{name}", "GET", 404): 1,
        ("/v1/agents", "GET", 401): 1,
        ("/healthz", "GET", 200): 1,
    }
    assert timed(agent) - timed_before == 5


def request_counts() -> dict[tuple[str, str, str], float]:
    """Every acd_http_requests_total sample: (route, method, status) -> value."""
    return {
        (s.labels["route"], s.labels["method"], s.labels["status"]): s.value
        for metric in REGISTRY.collect()
        if metric.name == "acd_http_requests"
        for s in metric.samples
        if s.name == "acd_http_requests_total"
    }


async def test_each_agent_action_has_its_own_route_label(client: Client) -> None:
    # The actions sharing one route pattern (or having routes of their own) are told apart.
    before = request_counts()
    expected = {}
    for action in ("accept", "reject", "complete", "transfer", "callback"):
        answer = await client.post(
            f"/v1/interactions/{SECRETS[1]}/{action}", json={}, headers=auth(Role.ADMIN)
        )
        expected[(f"/v1/interactions/{{id}}/{action}", "POST", str(answer.status))] = 1
    after = request_counts()
    changed = {key: value - before.get(key, 0) for key, value in after.items()}
    assert {key: value for key, value in changed.items() if value} == expected


async def test_unmatched_requests_and_odd_methods(client: Client) -> None:
    counts = Counts(("unmatched", "GET", 404), ("unmatched", "DELETE", 405))
    other = Counts(("unmatched", "other", 405))
    admin = auth(Role.ADMIN)
    assert (await client.get(f"/v1/{SECRETS[2]}/x", headers=admin)).status == 404
    assert (await client.delete("/healthz", headers=admin)).status == 405
    assert (await client.request("PROPFIND", "/healthz", headers=admin)).status == 405
    assert counts.delta() == {("unmatched", "GET", 404): 1, ("unmatched", "DELETE", 405): 1}
    assert other.delta() == {("unmatched", "other", 405): 1}


async def test_no_label_holds_an_identifier(client: Client) -> None:
    admin = auth(Role.ADMIN)
    await client.put(f"/v1/agents/{SECRETS[0]}", json={"skills": {"x": 1}}, headers=admin)
    await client.delete(f"/v1/interactions/{SECRETS[1]}", headers=admin)
    await client.get(f"/v1/{SECRETS[2]}", headers=admin)
    await client.put(f"/v1/queues/{SECRETS[3]}", json={"skills": "bad"}, headers=admin)
    values = set(http_label_values())
    assert "/v1/interactions/{id}" in values
    assert not [v for v in values if any(secret in v for secret in SECRETS)]
    assert not [v for v in values if v.startswith("/") and "{" not in v and v.count("/") > 2]


async def test_event_streams_are_counted_when_they_end_but_not_timed(client: Client) -> None:
    # The test server cancels a handler whose client leaves (499); `serve` lets it return (200).
    counts = Counts(("/v1/events", "GET", 200), ("/v1/events", "GET", 499))
    timed_before = timed("/v1/events")
    admin = auth(Role.ADMIN)
    stream = await client.get("/v1/events", headers=admin)
    assert stream.status == 200
    stream.close()
    # Were the handler not cancelled, an event would wake its read, which sees the client gone.
    await client.put("/v1/agents/streamer", json={"skills": {"support": 1}}, headers=admin)
    await client.post("/v1/agents/streamer/state", json={"state": "available"}, headers=admin)
    async with asyncio.timeout(5):
        while sum(counts.delta().values()) < 1:  # noqa: ASYNC110 - the server's task counts it
            await asyncio.sleep(0.02)
    assert sum(counts.delta().values()) == 1
    assert timed("/v1/events") == timed_before == 0


async def raises(request: web.Request) -> web.StreamResponse:
    """A handler failing unexpectedly."""
    raise RuntimeError("boom")


async def redirects(request: web.Request) -> web.StreamResponse:
    """A handler answering by raising an HTTPException."""
    raise web.HTTPFound("/elsewhere")


async def test_raised_errors_are_counted_with_their_status() -> None:
    app = web.Application(middlewares=[metrics_middleware])
    app.router.add_get("/boom/{id}", raises)
    app.router.add_get("/moved/{id}", redirects)
    counts = Counts(("/boom/{id}", "GET", 500), ("/moved/{id}", "GET", 302))
    async with TestClient(TestServer(app)) as test_client:
        assert (await test_client.get("/boom/1")).status == 500
        assert (await test_client.get("/moved/1", allow_redirects=False)).status == 302
    assert counts.delta() == {("/boom/{id}", "GET", 500): 1, ("/moved/{id}", "GET", 302): 1}


def decisions() -> float:
    """How many routing decisions the histogram observed."""
    return REGISTRY.get_sample_value("acd_routing_decision_seconds_count") or 0.0


async def test_engine_calls_that_route_are_timed(client: Client) -> None:
    before = decisions()
    await client.put("/v1/agents/a1", json={"skills": {}}, headers=auth())  # agent_put routes
    await client.get("/v1/agents/a1", headers=auth())  # a read is no decision
    assert decisions() - before == 1


def test_the_timer_lag_holds_the_worst_tick_until_a_scrape_has_seen_it() -> None:
    def lag_after(lag_s: float, at: float) -> float | None:
        observe_tick(TickResult(applied=1, lag_s=lag_s, next_due=None), at)
        return REGISTRY.get_sample_value("acd_timer_lag_seconds")

    start = 1e9  # later than any tick other tests observed
    assert lag_after(3.0, start) == 3.0  # one late tick between two scrapes
    assert lag_after(0.0, start + 0.05) == 3.0
    assert lag_after(2.0, start + 10.0) == 3.0  # a second late tick, smaller
    assert lag_after(0.5, start + 14.9) == 3.0
    assert lag_after(0.0, start + 15.0) == 2.0  # the worst of the last TIMER_LAG_HOLD_S
    assert lag_after(0.0, start + 25.0) == 0.5
    assert lag_after(0.25, start + 30.0) == 0.25
