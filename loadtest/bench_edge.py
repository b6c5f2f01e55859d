"""The API's own work per request, without HTTP or store: `python -m loadtest.bench_edge`.

For each of four requests (create, accept, put agent, put queue) it times the edge checks (nesting
on the raw bytes, JSON parse, integer range and Unicode), the validation into the declared body
type, and the JSON rendering of the view the handler answers with; it prints microseconds per
request (best of five rounds, each the mean of many requests). Compare two builds in one run:
the figures move with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from router.api.views import agent_view, interaction_view, queue_view
from router.domain.fields import validate
from router.domain.models import (
    AcceptBody,
    Activity,
    Agent,
    AgentProfile,
    AgentState,
    Channel,
    Interaction,
    InteractionStatus,
    NewInteraction,
    QueueConfig,
)
from router.domain.validation import body_problems, json_nesting_problem

NOW = 1_700_000_000.0
CREATE = {
    "id": "call-1",
    "queue": "support_en",
    "priority": 5,
    "skills": {"lang:en": 3},
    "data": {"ani": "+358401234567", "crm": {"id": 123, "tags": ["gold", "renewal"]}},
}
PROFILE = {"skills": {"support": 3, "lang:en": 3, "billing": 2}, "channels": {"voice": 1}}
QUEUE = {
    "channel": "voice",
    "skills": {"support": 2, "lang:en": 3},
    "sla": {"threshold_s": 20, "target": 0.8},
    "wrap_up_s": 10,
    "steps": [{"after_s": 30, "skills": {"support": 1}}],
}
INTERACTION = Interaction(
    id="call-1", queue="support_en", channel=Channel.VOICE, status=InteractionStatus.OFFERED,
    priority=5, credit_s=0.0, skills={"lang:en": 3}, preferred_agents=(), agent_id="ann",
    created_at=NOW, enqueued_at=NOW, step=0, expires_at=NOW + 15, excluded_agents=(),
    callback_offered=False, callback=False, scheduled_at=None, attempts=0, answered_at=None,
    ended_at=None, outcome=None, data=CREATE["data"], position=None, ewt_s=None,
)  # fmt: skip
AGENT = Agent(
    id="ann", name="Ann", skills=PROFILE["skills"], channels={"voice": 1},
    state=AgentState.AVAILABLE, reason=None, activity=Activity.OFFERED,
    interactions={"call-1": "offered"}, interaction_channels={"call-1": "voice"},
    idle_since=NOW, state_since=NOW, wrap_up_until=None, missed_offers=0,
)  # fmt: skip


def edge(raw: bytes) -> dict[str, Any]:
    """What read_body does to a JSON body before any field is read."""
    assert json_nesting_problem(raw) is None
    body: dict[str, Any] = json.loads(raw)
    assert not body_problems(body)
    return body


def render(view: object) -> bytes:
    """What respond() does to a view."""
    return json.dumps(view, separators=(",", ":")).encode()


def create(raw: bytes) -> bytes:
    """POST /v1/interactions."""
    validate(NewInteraction, edge(raw))
    return render(interaction_view(INTERACTION, NOW))


def accept(raw: bytes) -> bytes:
    """POST /v1/interactions/{id}/accept."""
    validate(AcceptBody, edge(raw))
    return render(interaction_view(INTERACTION, NOW))


def put_agent(raw: bytes) -> bytes:
    """PUT /v1/agents/{id}."""
    validate(AgentProfile, edge(raw))
    return render(agent_view(AGENT))


def put_queue(raw: bytes) -> bytes:
    """PUT /v1/queues/{name}."""
    queue = validate(QueueConfig, {**edge(raw), "name": "support_en"})
    return render(queue_view(queue))


REQUESTS: dict[str, tuple[Callable[[bytes], bytes], dict[str, Any]]] = {
    "create": (create, CREATE),
    "accept": (accept, {"agent_id": "ann"}),
    "put_agent": (put_agent, PROFILE),
    "put_queue": (put_queue, QUEUE),
}


def per_request_us(handle: Callable[[bytes], bytes], raw: bytes, count: int) -> float:
    """The best of five rounds of `count` calls, in microseconds per call."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(count):
            handle(raw)
        best = min(best, (time.perf_counter() - started) / count)
    return best * 1e6


def main(argv: list[str] | None = None) -> int:
    """Print the cost of each request's edge, validation and rendering."""
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_edge", description=__doc__)
    parser.add_argument("--count", type=int, default=5_000, help="requests per round")
    args = parser.parse_args(argv)
    total = 0.0
    for name, (handle, body) in REQUESTS.items():
        cost = per_request_us(handle, json.dumps(body).encode(), args.count)
        total += cost
        print(f"{name:10s} {cost:8.1f} us/request (edge + validation + rendering)")
    print(f"{'sum':10s} {total:8.1f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
