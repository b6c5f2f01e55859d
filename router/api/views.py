"""Models as the API shows them (§4): RFC 3339 UTC timestamps, seconds as numbers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from router.domain.models import Agent, Event, Interaction, QueueConfig


def rfc3339(ts: float | None) -> str | None:
    """Epoch seconds as an RFC 3339 UTC string with milliseconds."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def interaction_view(ix: Interaction, now: float) -> dict[str, Any]:
    """GET /v1/interactions/{id}."""
    return {
        "id": ix.id,
        "queue": ix.queue,
        "channel": ix.channel.value,
        "status": ix.status.value,
        "priority": ix.priority,
        "credit_s": ix.credit_s,
        "skills": ix.skills,
        "position": ix.position,
        "ewt_s": None if ix.ewt_s is None else round(ix.ewt_s, 1),
        "agent_id": ix.agent_id,
        "step": ix.step,
        "created_at": rfc3339(ix.created_at),
        "enqueued_at": rfc3339(ix.enqueued_at),
        "answered_at": rfc3339(ix.answered_at),
        "ended_at": rfc3339(ix.ended_at),
        "expires_at": rfc3339(ix.expires_at),
        "waited_s": round(ix.waited_s(now), 3),
        "outcome": ix.outcome,
        "preferred_agents": list(ix.preferred_agents),
        "callback_offered": ix.callback_offered,
        "callback": ix.callback,
        "scheduled_at": rfc3339(ix.scheduled_at),
        "attempts": ix.attempts,
        "data": ix.data,
    }


def agent_view(agent: Agent) -> dict[str, Any]:
    """GET /v1/agents/{id}."""
    return {
        "id": agent.id,
        "name": agent.name,
        "skills": agent.skills,
        "channels": agent.channels,
        "state": agent.state.value,
        "reason": agent.reason,
        "activity": agent.activity.value,
        "interactions": [
            {"id": ix_id, "status": status, "channel": agent.interaction_channels[ix_id]}
            for ix_id, status in sorted(agent.interactions.items())
        ],
        "idle_since": rfc3339(agent.idle_since),
        "state_since": rfc3339(agent.state_since),
        "wrap_up_until": rfc3339(agent.wrap_up_until),
    }


def queue_view(queue: QueueConfig) -> dict[str, Any]:
    """A queue's configuration as the config file spells it."""
    record = queue.to_record()
    if record["callback"] is None:
        del record["callback"]
    return record


def event_view(event: Event) -> dict[str, Any]:
    """An event's JSON (§4): id, type, at, then the fields of its kind."""
    body: dict[str, Any] = {"id": event.id, "type": event.type, "at": rfc3339(event.at)}
    for name, value in event.fields.items():
        body[name] = rfc3339(value) if name.endswith("_at") and value is not None else value
    return body
