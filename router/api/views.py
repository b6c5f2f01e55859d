"""Models as the API shows them (§4), each view declared once as a TypedDict: the view functions
build them (mypy checks every key) and the API document's schemas are generated from them.
Timestamps are RFC 3339 UTC strings, durations seconds."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from annotated_types import Ge
from pydantic import Field
from typing_extensions import TypedDict

from router.domain.fields import Doc, Integer
from router.domain.models import (
    MAX_CHANNEL_CAPACITY,
    MAX_PRIORITY,
    Activity,
    Agent,
    AgentState,
    Channel,
    Event,
    Id,
    Interaction,
    InteractionStatus,
    Name,
    Outcome,
    QueueConfig,
    SkillRequirement,
)

Timestamp = Annotated[str, Doc({"format": "date-time", "examples": ["2024-04-05T12:00:00.000Z"]})]
"""An RFC 3339 UTC timestamp with milliseconds."""
Seconds = Annotated[float, Ge(0)]
Count = Annotated[int, Ge(0)]


def rfc3339(ts: float | None) -> str | None:
    """Epoch seconds as an RFC 3339 UTC string with milliseconds (None stays None)."""
    return None if ts is None else _rfc3339(ts)


@functools.lru_cache(maxsize=4096)
def _rfc3339(ts: float) -> str:
    # Cached: the views of one interaction, and its events, repeat the same few times.
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class InteractionView(TypedDict):
    """An interaction (GET /v1/interactions/{id})."""

    id: Id
    queue: Name
    channel: Channel
    status: InteractionStatus
    priority: Annotated[int, Integer(0, MAX_PRIORITY)]
    credit_s: Seconds
    skills: Annotated[SkillRequirement, Field(description="The extra skills.")]
    position: Annotated[
        Annotated[int, Ge(1)] | None,
        Field(
            description="1 + the interactions of the queue ahead of it (§3.2); null when not "
            "waiting, or for a callback scheduled later."
        ),
    ]
    ewt_s: Annotated[Seconds | None, Field(description="Estimated wait; null when not waiting.")]
    agent_id: Annotated[Id | None, Field(description="The agent offered or connected.")]
    step: Annotated[Count, Field(description="Escalation step in force.")]
    created_at: Timestamp
    enqueued_at: Annotated[
        Timestamp, Field(description="Start of the current wait (a transfer starts a new one).")
    ]
    answered_at: Timestamp | None
    ended_at: Timestamp | None
    expires_at: Annotated[Timestamp | None, Field(description="Expiry of the pending offer.")]
    waited_s: Annotated[
        Seconds, Field(description="From `enqueued_at` to the answer, the end, or now.")
    ]
    outcome: Outcome | None
    preferred_agents: list[Id]
    callback_offered: bool
    callback: Annotated[bool, Field(description="The caller accepted a callback.")]
    scheduled_at: Annotated[
        Timestamp | None, Field(description="When a scheduled callback enters the queue.")
    ]
    attempts: Annotated[Count, Field(description="Callback dial attempts.")]
    data: Annotated[
        dict[str, Any] | None, Field(description="The opaque data given at arrival (null if none).")
    ]


def interaction_view(ix: Interaction, now: float) -> InteractionView:
    """GET /v1/interactions/{id}."""
    return {
        "id": ix.id,
        "queue": ix.queue,
        "channel": ix.channel,
        "status": ix.status,
        "priority": ix.priority,
        "credit_s": ix.credit_s,
        "skills": ix.skills,
        "position": ix.position,
        "ewt_s": None if ix.ewt_s is None else round(ix.ewt_s, 1),
        "agent_id": ix.agent_id,
        "step": ix.step,
        "created_at": _rfc3339(ix.created_at),
        "enqueued_at": _rfc3339(ix.enqueued_at),
        "answered_at": rfc3339(ix.answered_at),
        "ended_at": rfc3339(ix.ended_at),
        "expires_at": rfc3339(ix.expires_at),
        "waited_s": round(ix.waited_s(now), 3),
        "outcome": None if ix.outcome is None else Outcome(ix.outcome),
        "preferred_agents": list(ix.preferred_agents),
        "callback_offered": ix.callback_offered,
        "callback": ix.callback,
        "scheduled_at": rfc3339(ix.scheduled_at),
        "attempts": ix.attempts,
        "data": ix.data,
    }


class AgentInteraction(TypedDict):
    """An interaction an agent holds."""

    id: Id
    status: Literal["offered", "connected"]
    channel: Channel


class AgentView(TypedDict):
    """An agent with its state and activity (GET /v1/agents/{id})."""

    id: Id
    name: str | None
    skills: Annotated[
        dict[Name, int], Field(description="Skill names mapped to proficiency levels.")
    ]
    channels: dict[Channel, Annotated[int, Integer(1, MAX_CHANNEL_CAPACITY)]]
    state: AgentState
    reason: str | None
    activity: Annotated[Activity, Field(description="Derived by the router (§3.6).")]
    interactions: list[AgentInteraction]
    idle_since: Timestamp | None
    state_since: Timestamp
    wrap_up_until: Timestamp | None


def agent_view(agent: Agent) -> AgentView:
    """GET /v1/agents/{id}."""
    return {
        "id": agent.id,
        "name": agent.name,
        "skills": agent.skills,
        "channels": {Channel(name): capacity for name, capacity in agent.channels.items()},
        "state": agent.state,
        "reason": agent.reason,
        "activity": agent.activity,
        "interactions": [
            {
                "id": ix_id,
                "status": "offered" if status == "offered" else "connected",
                "channel": Channel(agent.interaction_channels[ix_id]),
            }
            for ix_id, status in sorted(agent.interactions.items())
        ],
        "idle_since": rfc3339(agent.idle_since),
        "state_since": _rfc3339(agent.state_since),
        "wrap_up_until": rfc3339(agent.wrap_up_until),
    }


NextCursor = Annotated[
    str | None,
    Field(description="Opaque: pass as `cursor` for the next page; null on the last page."),
]


class AgentPage(TypedDict):
    """A page of agents (GET /v1/agents)."""

    agents: list[AgentView]
    next_cursor: NextCursor


class InteractionPage(TypedDict):
    """A page of the interactions not yet ended, oldest first (GET /v1/interactions)."""

    interactions: list[InteractionView]
    next_cursor: NextCursor


class ServiceLevel(TypedDict):
    """Over the last 15 minutes, per formula of §6; null with no data."""

    answered: Annotated[float, Ge(0), Field(le=1)] | None
    abandons_failed: Annotated[float, Ge(0), Field(le=1)] | None
    abandons_excluded: Annotated[float, Ge(0), Field(le=1)] | None
    abandons_met: Annotated[float, Ge(0), Field(le=1)] | None


class QueueStats(TypedDict):
    """Live figures of a queue (§4, §6)."""

    waiting: Annotated[Count, Field(description="On the line: queued or offered.")]
    callbacks_waiting: Count
    oldest_wait_s: Seconds
    ewt_s: Annotated[
        Seconds, Field(description="Estimated wait of an arrival now (docs/metrics.md: EWT).")
    ]
    agents_available: Count
    agents_staffed: Count
    service_level: ServiceLevel
    agents_required: Annotated[
        Count, Field(description="Erlang C: agents to meet the SLA at the last 15 minutes' load.")
    ]


class QueueWithStats(QueueConfig):
    """A queue's configuration and its live stats (GET /v1/queues)."""

    stats: QueueStats


class QueueDetail(QueueWithStats):
    """A queue's configuration, stats and first waiting interactions (GET /v1/queues/{name})."""

    waiting: Annotated[
        list[InteractionView],
        Field(description="The first waiting interactions, with positions, oldest first."),
    ]


class QueueList(TypedDict):
    """Every queue (GET /v1/queues), by name."""

    queues: list[QueueWithStats]


class Health(TypedDict):
    """The process is alive."""

    status: Literal["ok"]


class Readiness(TypedDict):
    """The store answers and the scripts are loaded."""

    status: Literal["ready"]


def queue_view(queue: QueueConfig) -> dict[str, Any]:
    """A queue's configuration as the config file spells it."""
    return queue.model_dump(mode="json")


def event_view(event: Event) -> dict[str, Any]:
    """An event's JSON (§4): id, type, at, then the fields of its kind."""
    body: dict[str, Any] = {"id": event.id, "type": event.type, "at": rfc3339(event.at)}
    for name, value in event.fields.items():
        body[name] = rfc3339(value) if name.endswith("_at") and value is not None else value
    return body
