"""A miniature contact-center day over HTTP against the real `acd-router serve` (SPEC §3-§4).

Agents log in, calls arrive, offers come on the SSE stream, calls are accepted and completed;
one each of abandon, reject, no-answer (offer expiry), transfer, timeout and block happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from loadtest.served import Served, clean_env, port_open, serve_args

KEY = "e2e-platform-key"
CONFIG = """
[[keys]]
name = "pbx"
role = "platform"
env = "ACD_KEY_PBX"

[[queues]]
name = "support"
skills = { support = 1 }
offer_timeout_s = 1          # an unanswered offer expires after 1 s
max_no_answer = 1
wrap_up_s = 0

[[queues]]
name = "sales"               # the transfer target
skills = { sales = 1 }
wrap_up_s = 0

[[queues]]
name = "billing"             # nobody staffs it: one call times out, the next is blocked
skills = { billing = 1 }
max_wait_s = 2
max_waiting = 1
"""
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
WAIT_S = 6.0
"""The deadline of any one wait for an event (timers here are 1-2 s)."""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Served]:
    """The service on an embedded store, with the day's queues and one platform key."""
    path = tmp_path / "acd.toml"
    path.write_text(CONFIG)
    args, _ = serve_args("--config", str(path), data_dir=tmp_path / "data")
    served = Served(args, clean_env({"ACD_KEY_PBX": KEY}))
    try:
        served.wait_ready()
        yield served
    finally:
        served.kill()


class EventStream:
    """GET /v1/events read in the background: every event, in order, as parsed JSON."""

    def __init__(self) -> None:
        """No events yet."""
        self.events: list[dict[str, Any]] = []
        self.ended = False
        self._changed = asyncio.Condition()

    async def pump(self, response: aiohttp.ClientResponse) -> None:
        """Parse SSE frames (`id:`, `event:`, `data:`, blank line) until the stream ends."""
        frame: dict[str, str] = {}
        try:
            async for raw in response.content:
                line = raw.decode().rstrip("\r\n")
                if line.startswith(":"):
                    continue  # keep-alive comment
                if line:
                    name, _, value = line.partition(":")
                    frame[name] = value.removeprefix(" ")
                    continue
                if "data" in frame:
                    event = json.loads(frame["data"])
                    assert frame.get("event") == event["type"], frame
                    assert frame.get("id") == event["id"], frame
                    async with self._changed:
                        self.events.append(event)
                        self._changed.notify_all()
                frame = {}
        finally:
            async with self._changed:
                self.ended = True
                self._changed.notify_all()

    def find(self, type_: str, **fields: Any) -> dict[str, Any] | None:
        """The first event of `type_` whose fields include `fields`."""
        for event in self.events:
            if event["type"] == type_ and all(event.get(k) == v for k, v in fields.items()):
                return event
        return None

    async def wait(self, type_: str, **fields: Any) -> dict[str, Any]:
        """The first event of `type_` with `fields`, waiting up to WAIT_S for it."""
        async with asyncio.timeout(WAIT_S), self._changed:
            while (event := self.find(type_, **fields)) is None:
                assert not self.ended, f"stream ended before {type_} {fields}"
                await self._changed.wait()
        return event

    async def wait_end(self) -> None:
        """Wait up to WAIT_S for the server to end the stream."""
        async with asyncio.timeout(WAIT_S), self._changed:
            while not self.ended:
                await self._changed.wait()

    def index(self, event: dict[str, Any]) -> int:
        """The position of `event` in the stream."""
        return self.events.index(event)


class Platform:
    """The telephony platform's side of the API: one key, JSON in and out."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        """Requests go to `url` with the platform key."""
        self.session = session
        self.url = url

    async def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, expect: int = 200
    ) -> dict[str, Any]:
        """One request; asserts the status and returns the JSON body."""
        timeout = aiohttp.ClientTimeout(total=WAIT_S)
        async with self.session.request(
            method, self.url + path, json=body, timeout=timeout
        ) as response:
            payload: dict[str, Any] = await response.json(content_type=None)
            assert response.status == expect, (method, path, response.status, payload)
            return payload

    async def status(self, interaction_id: str) -> str:
        """GET /v1/interactions/{id} → its status."""
        record = await self.call("GET", f"/v1/interactions/{interaction_id}")
        status: str = record["status"]
        return status


@contextlib.asynccontextmanager
async def open_day(url: str) -> AsyncIterator[tuple[Platform, EventStream]]:
    """A client session and the event stream from the start of the log, read concurrently."""
    headers = {"Authorization": f"Bearer {KEY}"}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None, sock_connect=5)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        response = await session.get(f"{url}/v1/events", params={"after": "0"})
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        stream = EventStream()
        reader = asyncio.create_task(stream.pump(response))
        try:
            yield Platform(session, url), stream
        finally:
            response.close()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await reader


async def test_a_day_at_the_contact_center(server: Served) -> None:
    async with open_day(server.url) as (api, events):
        # Opening: billing is unstaffed. The first caller waits, the second finds it full.
        b1 = await api.call("POST", "/v1/interactions", {"id": "b1", "queue": "billing"}, 201)
        assert b1["status"] == "queued"
        assert b1["position"] == 1
        b2 = await api.call("POST", "/v1/interactions", {"id": "b2", "queue": "billing"}, 201)
        assert b2["status"] == "blocked"
        await events.wait("interaction.queued", interaction_id="b1", queue="billing")
        await events.wait("interaction.blocked", interaction_id="b2", queue="billing")

        # Agents are created and log in: ann first, so she has been idle longest.
        for agent_id, skills in (("ann", {"support": 3}), ("bob", {"support": 2})):
            created = await api.call("PUT", f"/v1/agents/{agent_id}", {"skills": skills}, 201)
            assert created["state"] == "logged_out"
        await api.call("PUT", "/v1/agents/sam", {"skills": {"sales": 2}}, 201)
        for agent_id in ("ann", "bob", "sam"):
            agent = await api.call("POST", f"/v1/agents/{agent_id}/state", {"state": "available"})
            assert (agent["state"], agent["activity"]) == ("available", "idle")
            changed = await events.wait("agent.state_changed", agent_id=agent_id)
            assert (changed["state"], changed["previous_state"]) == ("available", "logged_out")

        # c1: offered to ann (longest idle), accepted, later completed.
        c1 = await api.call(
            "POST", "/v1/interactions", {"id": "c1", "queue": "support", "data": {"n": 1}}, 201
        )
        assert (c1["status"], c1["agent_id"]) == ("offered", "ann")
        queued = await events.wait("interaction.queued", interaction_id="c1")
        offered = await events.wait("interaction.offered", interaction_id="c1")
        assert offered["agent_id"] == "ann"
        assert offered["queue"] == "support"
        assert offered["callback"] is False
        assert offered["data"] == {"n": 1}
        assert RFC3339.fullmatch(offered["expires_at"])
        assert offered["routing"]["strategy"] == "longest_idle"
        assert offered["routing"]["qualified"] == 2  # ann and bob
        connected = await api.call("POST", "/v1/interactions/c1/accept", {"agent_id": "ann"})
        assert connected["status"] == "connected"
        await events.wait("interaction.connected", interaction_id="c1", agent_id="ann")

        # c2: offered to bob, who rejects it; nobody else is free, so it waits.
        c2 = await api.call("POST", "/v1/interactions", {"id": "c2", "queue": "support"}, 201)
        assert (c2["status"], c2["agent_id"]) == ("offered", "bob")
        rejected = await api.call(
            "POST", "/v1/interactions/c2/reject", {"agent_id": "bob", "reason": "rejected"}
        )
        assert rejected["status"] == "queued"
        await events.wait(
            "interaction.requeued", interaction_id="c2", agent_id="bob", reason="rejected"
        )
        assert (await api.call("GET", "/v1/agents/bob"))["state"] == "available"

        # ann completes c1 and is offered c2 at once; she does not answer, the offer expires,
        # c2 goes back to its place and ann is set not_ready (max_no_answer = 1).
        completed = await api.call("POST", "/v1/interactions/c1/complete", {"agent_id": "ann"})
        assert completed["status"] == "completed"
        done = await events.wait("interaction.completed", interaction_id="c1")
        assert events.index(queued) < events.index(offered) < events.index(done)
        await events.wait("interaction.offered", interaction_id="c2", agent_id="ann")
        await events.wait(
            "interaction.requeued", interaction_id="c2", agent_id="ann", reason="expired"
        )
        missed = await events.wait("agent.state_changed", agent_id="ann", state="not_ready")
        assert (missed["previous_state"], missed["reason"]) == ("available", "no_answer")
        assert await api.status("c2") == "queued"
        ann = await api.call("GET", "/v1/agents/ann")
        assert (ann["state"], ann["reason"]) == ("not_ready", "no_answer")

        # The c2 caller hangs up.
        abandoned = await api.call("DELETE", "/v1/interactions/c2")
        assert abandoned["status"] == "abandoned"
        await events.wait("interaction.abandoned", interaction_id="c2", queue="support")

        # c3: bob answers and transfers it to sales, where sam takes it.
        c3 = await api.call("POST", "/v1/interactions", {"id": "c3", "queue": "support"}, 201)
        assert (c3["status"], c3["agent_id"]) == ("offered", "bob")
        await api.call("POST", "/v1/interactions/c3/accept", {"agent_id": "bob"})
        moved = await api.call(
            "POST", "/v1/interactions/c3/transfer", {"agent_id": "bob", "queue": "sales"}
        )
        assert moved["queue"] == "sales"
        assert (moved["status"], moved["agent_id"]) == ("offered", "sam")
        transferred = await events.wait("interaction.transferred", interaction_id="c3")
        assert (transferred["from_queue"], transferred["queue"]) == ("support", "sales")
        assert transferred["agent_id"] == "bob"
        await events.wait("interaction.offered", interaction_id="c3", agent_id="sam", queue="sales")
        await api.call("POST", "/v1/interactions/c3/accept", {"agent_id": "sam"})
        await api.call("POST", "/v1/interactions/c3/complete", {"agent_id": "sam"})
        await events.wait("interaction.completed", interaction_id="c3", queue="sales")
        final = await api.call("GET", "/v1/interactions/c3")
        assert (final["status"], final["queue"], final["agent_id"]) == ("completed", "sales", "sam")

        # Meanwhile nobody took b1: after max_wait_s it goes to voicemail.
        await events.wait("interaction.timed_out", interaction_id="b1", queue="billing")
        assert await api.status("b1") == "timed_out"
        assert await api.status("b2") == "blocked"

        # Every event has its id, type and RFC 3339 time; ids grow along the stream.
        for event in events.events:
            assert {"id", "type", "at"} <= set(event)
            assert RFC3339.fullmatch(event["at"]), event
        ids = [tuple(map(int, e["id"].split("-"))) for e in events.events]
        assert ids == sorted(ids)

        # SIGTERM with the event stream still open: the service ends it and exits cleanly.
        store_port = server.store_port
        assert await asyncio.to_thread(server.stop) == 0
        await events.wait_end()
    assert store_port is not None
    assert not port_open(store_port)
