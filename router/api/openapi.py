"""GET /openapi.json: the whole HTTP API (SPEC §4, §5) as an OpenAPI 3.1 document."""

from __future__ import annotations

import functools
import importlib.metadata
import json
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

from aiohttp import web

from router import errors
from router.api import http
from router.api.handlers import MAX_PAGE
from router.config import Role
from router.domain.models import (
    EVENT_TYPES,
    MAX_CHANNEL_CAPACITY,
    MAX_LEVEL,
    MAX_PRIORITY,
    MAX_REQUIREMENT_SKILLS,
    Activity,
    AgentState,
    Channel,
    InteractionStatus,
    Outcome,
    QueueConfig,
    RejectReason,
    Strategy,
)
from router.domain.stats import FORMULAS
from router.domain.validation import (
    DISPLAY_NAME,
    ID,
    MAX_COUNT,
    MAX_CREDIT_S,
    MAX_DATA_BYTES,
    MAX_DATA_DEPTH,
    MAX_DURATION_S,
    MAX_PREFERRED_AGENTS,
    MAX_PREFERRED_WAIT_S,
    NAME,
    REASON,
    Text,
)
from router.events.sse import KEEPALIVE_S

Schema = dict[str, Any]

OPENAPI_VERSION = "3.1.0"
METRICS_PATH = "/metrics"
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
EVENT_STREAM = "text/event-stream"
ANY_ROLE = (Role.ADMIN, Role.PLATFORM, Role.MONITOR)
WRITERS = (Role.ADMIN, Role.PLATFORM)
ADMIN = (Role.ADMIN,)
_QUEUE_DEFAULTS = QueueConfig(name="defaults")


# JSON Schema building blocks


def ref(name: str, kind: str = "schemas") -> Schema:
    """A reference to `#/components/<kind>/<name>`."""
    return {"$ref": f"#/components/{kind}/{name}"}


def nullable(schema: Schema) -> Schema:
    """`schema` or null (a JSON null counts as an absent field in request bodies)."""
    kind = schema.get("type")
    if not isinstance(kind, str):
        return {"anyOf": [schema, {"type": "null"}]}
    widened = {**schema, "type": [kind, "null"]}
    if "enum" in schema:
        widened["enum"] = [*schema["enum"], None]
    return widened


def obj(
    properties: Mapping[str, Schema],
    required: Iterable[str] = (),
    *,
    closed: bool = False,
    description: str | None = None,
) -> Schema:
    """An object schema; `closed` rejects unknown fields, as every request body does."""
    schema: Schema = {"type": "object", "properties": dict(properties)}
    names = list(required)
    if names:
        schema["required"] = names
    if closed:
        schema["additionalProperties"] = False
    if description:
        schema["description"] = description
    return schema


def record(
    properties: Mapping[str, Schema], optional: Iterable[str] = (), description: str | None = None
) -> Schema:
    """An object the router writes: every property present but the `optional` ones."""
    skip = set(optional)
    required = [name for name in properties if name not in skip]
    return obj(properties, required, description=description)


def text(rule: Text, description: str | None = None) -> Schema:
    """A string that must match a validation rule of router/domain/validation.py in full."""
    schema: Schema = {"type": "string", "pattern": f"^(?:{rule.pattern.pattern})$"}
    if description:
        schema["description"] = description
    return schema


def integer(low: int, high: int, description: str | None = None, **extra: Any) -> Schema:
    """An integer in [low, high]."""
    schema: Schema = {"type": "integer", "minimum": low, "maximum": high, **extra}
    if description:
        schema["description"] = description
    return schema


def seconds(high: int, *, positive: bool = False, description: str | None = None) -> Schema:
    """A duration in seconds (fractional allowed) in [0, high], or (0, high] if `positive`."""
    bound = {"exclusiveMinimum": 0} if positive else {"minimum": 0}
    schema: Schema = {"type": "number", **bound, "maximum": high}
    if description:
        schema["description"] = description
    return schema


def choice(enum: type[StrEnum], *, exclude: Sequence[str] = (), **extra: Any) -> Schema:
    """One of the values of `enum`."""
    return {"type": "string", "enum": [m.value for m in enum if m.value not in exclude], **extra}


def timestamp(description: str | None = None) -> Schema:
    """An RFC 3339 UTC timestamp with milliseconds."""
    schema: Schema = {
        "type": "string",
        "format": "date-time",
        "examples": ["2024-04-05T12:00:00.000Z"],
    }
    if description:
        schema["description"] = description
    return schema


def skill_map(limit: int | None, description: str) -> Schema:
    """Skill names mapped to levels 1..MAX_LEVEL."""
    schema: Schema = {
        "type": "object",
        "propertyNames": text(NAME),
        "additionalProperties": integer(1, MAX_LEVEL),
        "description": description,
        "examples": [{"billing": 2, "lang:fi": 3}],
    }
    if limit is not None:
        schema["maxProperties"] = limit
    return schema


# Components: schemas


def problem_schemas() -> dict[str, Schema]:
    """RFC 9457 problem details, with the field errors of a 422."""
    types = sorted({cls.type for cls in _router_errors() if cls.type.startswith("/problems/")})
    return {
        "FieldError": obj(
            {
                "field": {
                    "type": "string",
                    "description": "The field's path: `skills.billing`, `preferred_agents[1]`, "
                    "`steps[0].after_s`; `body` for the body as a whole.",
                },
                "message": {"type": "string"},
            },
            ["field", "message"],
        ),
        "Problem": obj(
            {
                "type": {
                    "type": "string",
                    "format": "uri-reference",
                    "description": "The kind of problem: " + ", ".join(f"`{t}`" for t in types),
                },
                "title": {"type": "string"},
                "status": integer(400, 599),
                "detail": {"type": "string"},
                "errors": {
                    "type": "array",
                    "items": ref("FieldError"),
                    "description": "Validation problems (422): every invalid field, not only the "
                    "first.",
                },
                "interaction_id": {
                    "type": "string",
                    "description": "A create's 503: the id it tried. The create may have been "
                    "applied; retry with this id (in the body or `Idempotency-Key`).",
                },
            },
            ["type", "title", "status", "detail"],
            description="An error (RFC 9457), always sent as application/problem+json.",
        ),
    }


def _router_errors() -> list[type[errors.RouterError]]:
    """Every error class of the router (the API's modules are imported by then)."""
    found: list[type[errors.RouterError]] = []
    pending: list[type[errors.RouterError]] = [errors.RouterError]
    while pending:
        cls = pending.pop()
        if cls.__module__.startswith("router."):
            found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def request_schemas() -> dict[str, Schema]:
    """Request bodies, with the limits router/domain/validation.py enforces."""
    preferred = {"type": "array", "minItems": 1}
    return {
        "SkillRequirement": skill_map(
            MAX_REQUIREMENT_SKILLS, "Skill names mapped to minimum levels (1..5)."
        ),
        "NewInteraction": {
            **obj(
                {
                    "id": nullable(
                        text(
                            ID,
                            "Idempotency key: the same id and body again answers 200 with "
                            "the current record, a different body 409. Generated when absent.",
                        )
                    ),
                    "queue": text(NAME, "The queue to route in."),
                    "channel": nullable(
                        choice(Channel, description="Must be the queue's channel (else 422).")
                    ),
                    "priority": nullable(
                        integer(0, MAX_PRIORITY, "Higher goes first; default the queue's.")
                    ),
                    "credit_s": nullable(
                        seconds(
                            MAX_CREDIT_S,
                            description="Head start in the queue's order; default the queue's.",
                        )
                    ),
                    "skills": nullable(
                        {
                            **ref("SkillRequirement"),
                            "description": "Extra skills, merged with "
                            "every step's requirement (the higher minimum wins).",
                        }
                    ),
                    "preferred_agents": nullable(
                        {
                            "type": "array",
                            "items": text(ID),
                            "maxItems": MAX_PREFERRED_AGENTS,
                            "uniqueItems": True,
                            "description": "Agents offered the interaction first, in this "
                            "order, during `preferred_wait_s` (§3.7).",
                        }
                    ),
                    "preferred_wait_s": nullable(
                        seconds(
                            MAX_PREFERRED_WAIT_S,
                            description="Needed (> 0) with a "
                            "non-empty `preferred_agents`, and only with it.",
                        )
                    ),
                    "data": nullable(
                        {
                            "type": "object",
                            "description": f"Opaque JSON object, at most {MAX_DATA_BYTES} bytes "
                            f"as compact UTF-8 JSON, nesting at most {MAX_DATA_DEPTH} levels "
                            "(`data` itself is level 1), integers within signed 64 bits; "
                            "returned with the interaction and its offers.",
                        }
                    ),
                },
                ["queue"],
                closed=True,
            ),
            "if": {"properties": {"preferred_agents": preferred}, "required": ["preferred_agents"]},
            "then": {
                "properties": {"preferred_wait_s": {"type": "number", "exclusiveMinimum": 0}},
                "required": ["preferred_wait_s"],
            },
            "else": {"properties": {"preferred_wait_s": {"enum": [0, None]}}},
        },
        "AcceptBody": obj({"agent_id": text(ID)}, ["agent_id"], closed=True),
        "RejectBody": obj(
            {
                "agent_id": text(ID),
                "reason": choice(RejectReason, description="`no_answer` counts as a miss (§3.5)."),
            },
            ["agent_id", "reason"],
            closed=True,
        ),
        "CompleteBody": obj(
            {
                "agent_id": text(ID),
                "outcome": nullable(
                    choice(Outcome, exclude=[Outcome.AGENT_LOST], default=Outcome.RESOLVED.value)
                ),
                "wrap_up_s": nullable(
                    seconds(MAX_DURATION_S, description="Overrides the queue's `wrap_up_s`.")
                ),
            },
            ["agent_id"],
            closed=True,
        ),
        "TransferBody": obj(
            {
                "agent_id": text(ID, "The agent the interaction is connected to."),
                "queue": text(NAME, "The target queue, of the same channel."),
            },
            ["agent_id", "queue"],
            closed=True,
        ),
        "CallbackBody": obj(
            {
                "at": nullable(
                    timestamp(
                        "Schedule the callback for this time (at most the queue's "
                        "`max_schedule_ahead_s` ahead); absent: keep the caller's place now."
                    )
                ),
            },
            [],
            closed=True,
        ),
        "AgentProfile": obj(
            {
                "skills": skill_map(None, "Skill names mapped to proficiency levels (1..5)."),
                "channels": nullable(
                    {
                        "type": "object",
                        "propertyNames": choice(Channel),
                        "additionalProperties": integer(1, MAX_CHANNEL_CAPACITY),
                        "minProperties": 1,
                        "default": {"voice": 1},
                        "description": "Channel capacities.",
                    }
                ),
                "name": nullable(text(DISPLAY_NAME, "Display name.")),
            },
            ["skills"],
            closed=True,
        ),
        "StateChange": obj(
            {
                "state": choice(AgentState),
                "reason": nullable(text(REASON, "E.g. the reason of `not_ready`.")),
                "force": nullable(
                    {
                        "type": "boolean",
                        "default": False,
                        "description": "Log out even with connected interactions, which complete "
                        "with outcome `agent_lost` (role admin).",
                    }
                ),
            },
            ["state"],
            closed=True,
        ),
        "QueueInput": queue_schema(output=False),
    }


def queue_schema(*, output: bool) -> Schema:
    """A queue as the config file spells it (§7): the PUT body, or the stored configuration."""
    d = _QUEUE_DEFAULTS

    def field(schema: Schema, default: Any) -> Schema:
        return schema if output else nullable({**schema, "default": default})

    def member(schema: Schema) -> Schema:
        """A field of a nested object: null counts as absent in a request body."""
        return schema if output else nullable(schema)

    sla = obj(
        {
            "threshold_s": member(seconds(MAX_DURATION_S, positive=True)),
            "target": member({"type": "number", "exclusiveMinimum": 0, "maximum": 1}),
        },
        ["threshold_s", "target"] if output else (),
        closed=not output,
        description="Service-level target: `target` of answers within `threshold_s`.",
    )
    callback = obj(
        {
            "offer_when_ewt_s": member(seconds(MAX_DURATION_S, positive=True)),
            "retry_after_s": member(seconds(MAX_DURATION_S, positive=True)),
            "max_attempts": member(integer(1, MAX_COUNT)),
            "max_schedule_ahead_s": member(seconds(MAX_DURATION_S, positive=True)),
        },
        ["offer_when_ewt_s", "retry_after_s", "max_attempts", "max_schedule_ahead_s"]
        if output
        else (),
        closed=not output,
        description="Callback policy (§3.10); absent: no callbacks.",
    )
    step = obj(
        {
            "after_s": seconds(MAX_DURATION_S, positive=True),
            "skills": ref("SkillRequirement"),
        },
        ["after_s", "skills"],
        closed=not output,
        description="From `after_s` of wait on, the queue requires `skills` (§3.1).",
    )
    properties: dict[str, Schema] = {
        "name": text(NAME, "Must equal the path's name when given (else 422)."),
        "channel": field(choice(Channel), d.channel.value),
        "skills": field(ref("SkillRequirement"), {}),
        "strategy": field(choice(Strategy), d.strategy.value),
        "priority": field(integer(0, MAX_PRIORITY), d.priority),
        "credit_s": field(seconds(MAX_CREDIT_S), d.credit_s),
        "sla": field(sla, {"threshold_s": d.sla.threshold_s, "target": d.sla.target}),
        "offer_timeout_s": field(seconds(MAX_DURATION_S, positive=True), d.offer_timeout_s),
        "max_no_answer": field(integer(1, MAX_COUNT), d.max_no_answer),
        "wrap_up_s": field(seconds(MAX_DURATION_S), d.wrap_up_s),
        "max_waiting": field(
            integer(0, MAX_COUNT, "Arrivals beyond it are blocked; 0: no limit."), d.max_waiting
        ),
        "max_wait_s": field(
            seconds(MAX_DURATION_S, description="Then timed_out; 0: no limit."), d.max_wait_s
        ),
        "callback": callback if output else nullable(callback),
        "steps": field(
            {
                "type": "array",
                "items": step,
                "description": "Escalation steps, in increasing `after_s`.",
            },
            [],
        ),
    }
    if output:
        required = [name for name in properties if name != "callback"]
        return obj(properties, required, description="A queue's configuration.")
    properties["name"] = nullable(properties["name"])
    return obj(
        properties,
        closed=True,
        description="A queue, validated like the config file; absent fields take the defaults.",
    )


def response_schemas() -> dict[str, Schema]:
    """What the endpoints answer (router/api/views.py)."""
    interaction = record(
        {
            "id": text(ID),
            "queue": text(NAME),
            "channel": choice(Channel),
            "status": choice(InteractionStatus),
            "priority": integer(0, MAX_PRIORITY),
            "credit_s": {"type": "number", "minimum": 0},
            "skills": skill_map(MAX_REQUIREMENT_SKILLS, "The extra skills."),
            "position": nullable(
                {
                    "type": "integer",
                    "minimum": 1,
                    "description": "1 + the interactions of the queue ahead of it (§3.2); "
                    "null when not waiting.",
                }
            ),
            "ewt_s": nullable({"type": "number", "minimum": 0, "description": "Estimated wait."}),
            "agent_id": nullable(text(ID, "The agent offered or connected.")),
            "step": {"type": "integer", "minimum": 0, "description": "Escalation step in force."},
            "created_at": timestamp(),
            "enqueued_at": timestamp("Start of the current wait (a transfer starts a new one)."),
            "answered_at": nullable(timestamp()),
            "ended_at": nullable(timestamp()),
            "expires_at": nullable(timestamp("Expiry of the pending offer.")),
            "waited_s": {
                "type": "number",
                "minimum": 0,
                "description": "From `enqueued_at` to the answer, the end, or now.",
            },
            "outcome": nullable(choice(Outcome)),
            "preferred_agents": {"type": "array", "items": text(ID)},
            "callback_offered": {"type": "boolean"},
            "callback": {"type": "boolean", "description": "The caller accepted a callback."},
            "scheduled_at": nullable(timestamp("When a scheduled callback enters the queue.")),
            "attempts": {"type": "integer", "minimum": 0, "description": "Callback dial attempts."},
            "data": {"description": "The opaque data given at arrival (null if none)."},
        },
    )
    agent = record(
        {
            "id": text(ID),
            "name": nullable({"type": "string"}),
            "skills": skill_map(None, "Skill names mapped to proficiency levels."),
            "channels": {
                "type": "object",
                "propertyNames": choice(Channel),
                "additionalProperties": integer(1, MAX_CHANNEL_CAPACITY),
            },
            "state": choice(AgentState),
            "reason": nullable({"type": "string"}),
            "activity": choice(Activity, description="Derived by the router (§3.6)."),
            "interactions": {
                "type": "array",
                "items": obj(
                    {
                        "id": text(ID),
                        "status": {"type": "string", "enum": ["offered", "connected"]},
                        "channel": choice(Channel),
                    },
                    ["id", "status", "channel"],
                ),
            },
            "idle_since": nullable(timestamp()),
            "state_since": timestamp(),
            "wrap_up_until": nullable(timestamp()),
        },
    )
    count = {"type": "integer", "minimum": 0}
    stats = record(
        {
            "waiting": {**count, "description": "On the line: queued or offered."},
            "callbacks_waiting": count,
            "oldest_wait_s": {"type": "number", "minimum": 0},
            "ewt_s": {
                "type": "number",
                "minimum": 0,
                "description": "Estimated wait of an arrival now (docs/metrics.md: EWT).",
            },
            "agents_available": count,
            "agents_staffed": count,
            "service_level": record(
                {
                    name: nullable({"type": "number", "minimum": 0, "maximum": 1})
                    for name in FORMULAS
                },
                description="Over the last 15 minutes, per formula of §6; null with no data.",
            ),
            "agents_required": {
                **count,
                "description": "Erlang C: agents to meet the SLA at the last 15 minutes' load.",
            },
        },
        description="Live figures of a queue (§4, §6).",
    )
    return {
        "Interaction": interaction,
        "Agent": agent,
        "AgentPage": record(
            {
                "agents": {"type": "array", "items": ref("Agent")},
                "next_cursor": nullable(
                    text(ID, "Pass as `cursor` for the next page; null on the last page.")
                ),
            },
        ),
        "Queue": queue_schema(output=True),
        "QueueStats": stats,
        "QueueWithStats": {
            "allOf": [ref("Queue"), obj({"stats": ref("QueueStats")}, ["stats"])],
        },
        "QueueDetail": {
            "allOf": [
                ref("Queue"),
                obj(
                    {
                        "stats": ref("QueueStats"),
                        "waiting": {
                            "type": "array",
                            "items": ref("Interaction"),
                            "maxItems": 20,
                            "description": "The first waiting interactions, with positions.",
                        },
                    },
                    ["stats", "waiting"],
                ),
            ],
        },
        "QueueList": obj({"queues": {"type": "array", "items": ref("QueueWithStats")}}, ["queues"]),
        "Health": obj({"status": {"const": "ok"}}, ["status"]),
        "Readiness": obj({"status": {"const": "ready"}}, ["status"]),
    }


# Components: events


def _event(description: str, fields: Mapping[str, Schema], optional: Iterable[str] = ()) -> Schema:
    """The fields of one kind of event (router/lua: the `M.emit` calls), after the common ones."""
    return record(fields, optional, description)


def event_kinds() -> dict[str, Schema]:
    """Each event type's own fields, as the Lua scripts emit them (§4)."""
    ix, agent, queue = text(ID), text(ID), text(NAME)
    about_ix = {"interaction_id": ix, "queue": queue}
    waited = {"type": "number", "minimum": 0}
    kinds = {
        "interaction.queued": _event(
            "Entered the line of `queue`: an arrival, or a transfer's target.",
            about_ix
            | {
                "priority": integer(0, MAX_PRIORITY),
                "step": {"type": "integer", "minimum": 0},
                "callback": {"const": True, "description": "A scheduled callback entering."},
            },
            ["callback"],
        ),
        "interaction.offered": _event(
            "Offered to `agent_id` until `expires_at`: ring the agent, then accept or reject.",
            about_ix
            | {
                "agent_id": agent,
                "expires_at": timestamp(),
                "callback": {"type": "boolean", "description": "The offer is a callback."},
                "data": {"description": "The interaction's data; absent when it has none."},
                "routing": ref("Routing"),
            },
            ["data"],
        ),
        "interaction.connected": _event(
            "The agent accepted the offer.",
            about_ix
            | {
                "agent_id": agent,
                "waited_s": {**waited, "description": "From `enqueued_at` to the accept."},
            },
        ),
        "interaction.completed": _event(
            "The agent finished (wrap-up follows), or a forced logout ended it with outcome "
            "`agent_lost` (then without `handle_s`).",
            about_ix
            | {
                "agent_id": agent,
                "outcome": choice(Outcome),
                "handle_s": {**waited, "description": "From the accept to the completion."},
            },
            ["handle_s"],
        ),
        "interaction.abandoned": _event(
            "The caller hung up while it waited; `agent_id` names the agent whose offer it "
            "withdrew, null when none.",
            about_ix | {"agent_id": nullable(agent), "waited_s": waited},
        ),
        "interaction.timed_out": _event("Waited `max_wait_s` on the line (§3.9).", about_ix),
        "interaction.blocked": _event(
            "Arrived at a queue holding `max_waiting` interactions; never queued (§3.9).", about_ix
        ),
        "interaction.escalated": _event(
            "The wait reached a new escalation step (§3.1).",
            about_ix | {"step": {"type": "integer", "minimum": 1}},
        ),
        "interaction.requeued": _event(
            "An offer ended without an accept; the interaction keeps its place (§3.5).",
            about_ix
            | {
                "agent_id": agent,
                "reason": {
                    "enum": ["rejected", "no_answer", "expired", "withdrawn", "customer_no_answer"]
                },
                "attempts": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "With `customer_no_answer`: dial attempts so far.",
                },
            },
            ["attempts"],
        ),
        "interaction.transferred": _event(
            "The connected agent sent it to `queue`; an `interaction.queued` follows (§3.9).",
            about_ix
            | {
                "agent_id": agent,
                "queue": text(NAME, "The target queue."),
                "from_queue": queue,
            },
        ),
        "interaction.failed": _event(
            "A callback's dial attempts are exhausted (§3.10).",
            about_ix | {"agent_id": agent, "attempts": {"type": "integer", "minimum": 1}},
        ),
        "interaction.cancelled": _event(
            "The platform cancelled a waiting callback (DELETE); not an abandon (§3.10).",
            about_ix | {"agent_id": nullable(agent)},
        ),
        "callback.offered": _event(
            "The caller's EWT exceeds the queue's `offer_when_ewt_s`: offer it a callback.",
            about_ix | {"ewt_s": waited},
        ),
        "callback.accepted": _event(
            "The caller accepted the callback; it waits off the line in its place.", about_ix
        ),
        "callback.scheduled": _event(
            "The caller chose a callback at `scheduled_at`; it enters the queue then.",
            about_ix | {"scheduled_at": timestamp()},
        ),
        "agent.state_changed": _event(
            "The agent's state changed, by request or by the router (`not_ready`, reason "
            "`no_answer`, after missed offers).",
            {
                "agent_id": agent,
                "state": choice(AgentState),
                "previous_state": choice(AgentState),
                "reason": nullable({"type": "string", "description": "Null when none."}),
            },
        ),
    }
    assert list(kinds) == list(EVENT_TYPES), "every event type needs its schema"
    return kinds


def event_schemas() -> dict[str, Schema]:
    """The events of the durable log (one schema per type, and their union) and `gap`."""
    schemas: dict[str, Schema] = {
        "EventBase": obj(
            {
                "id": {
                    "type": "string",
                    "pattern": r"^\d+-\d+$",
                    "description": "Position in the durable event log (the SSE `id`).",
                },
                "type": {"enum": list(EVENT_TYPES)},
                "at": timestamp("When it happened."),
                "interaction_id": text(ID),
                "agent_id": nullable(text(ID)),
                "queue": text(NAME),
            },
            ["id", "type", "at"],
            description="Fields every event has; then those of its type.",
        ),
        "Routing": record(
            {
                "step": {"type": "integer", "minimum": 0, "description": "Step in force."},
                "strategy": choice(Strategy),
                "score": {
                    "type": "number",
                    "description": "`longest_idle`: the agent's idle seconds; `best_skill`: the "
                    "sum of its levels over the required skills.",
                },
                "qualified": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Agents of the routing class able to take it at the time.",
                },
                "preferred": {"type": "boolean", "description": "Offered as a preferred agent."},
            },
            description="Why this agent was chosen.",
        ),
        "GapEvent": record(
            {
                "oldest_id": {"type": "string", "description": "The oldest event id kept."},
                "after": {"type": "string", "description": "The requested resume point."},
            },
            description="`event: gap` (no `id:`): the resume point was trimmed from the log "
            "(`event_log_max`); the events between it and `oldest_id` are lost.",
        ),
    }
    for kind, fields in event_kinds().items():
        own = {**fields, "properties": {"type": {"const": kind}, **fields["properties"]}}
        own["required"] = ["type", *fields.get("required", [])]
        schemas[event_schema_name(kind)] = {"allOf": [ref("EventBase"), own]}
    schemas["Event"] = {
        "oneOf": [ref(event_schema_name(kind)) for kind in EVENT_TYPES],
        "discriminator": {
            "propertyName": "type",
            "mapping": {
                kind: f"#/components/schemas/{event_schema_name(kind)}" for kind in EVENT_TYPES
            },
        },
        "description": "An event: the SSE `data` and the webhook body.",
    }
    return schemas


def event_schema_name(kind: str) -> str:
    """`interaction.timed_out` -> `InteractionTimedOutEvent`."""
    words = kind.replace(".", "_").split("_")
    return "".join(w.capitalize() for w in words) + "Event"


# Components: parameters, responses, security


def param(
    name: str, where: str, schema: Schema, description: str | None = None, **extra: Any
) -> Schema:
    """A parameter; path parameters are required."""
    found: Schema = {"name": name, "in": where, **extra, "schema": schema}
    if where == "path":
        found["required"] = True
    if description:
        found["description"] = description
    return found


def parameters() -> dict[str, Schema]:
    """Path, query and header parameters."""
    event_id = {"type": "string", "pattern": r"^\s*\d{1,20}(-\d{1,20})?\s*$"}
    return {
        "InteractionId": param("id", "path", text(ID)),
        "AgentId": param("id", "path", text(ID)),
        "QueueName": param("name", "path", text(NAME)),
        "AgentStateFilter": param("state", "query", choice(AgentState), "Agents in this state."),
        "AgentQueueFilter": param(
            "queue",
            "query",
            text(NAME),
            "Agents that meet a step's requirement of this queue (422 if there is none).",
        ),
        "Limit": param(
            "limit",
            "query",
            integer(1, MAX_PAGE, default=100),
            "Agents per page at most; a filtered page may hold fewer and have a `next_cursor`.",
        ),
        "Cursor": param(
            "cursor",
            "query",
            {"anyOf": [text(ID), {"const": ""}]},
            "The `next_cursor` of the previous page.",
        ),
        "LastEventId": param(
            "Last-Event-ID", "header", event_id, "Resume after this event id (wins over `after`)."
        ),
        "After": param(
            "after",
            "query",
            event_id,
            "Resume after this event id; `0` starts at the oldest kept. Without it (and without "
            "Last-Event-ID) the stream starts at the live end.",
        ),
        "Types": param(
            "types",
            "query",
            {"type": "array", "items": {"enum": list(EVENT_TYPES)}},
            "Only events of these types (comma-separated).",
            style="form",
            explode=False,
        ),
        "EventQueue": param("queue", "query", text(NAME), "Only events of this queue."),
        "EventAgent": param("agent_id", "query", text(ID), "Only events of this agent."),
        "EventLimit": param(
            "limit",
            "query",
            integer(1, 1_000_000),
            "End the stream after this many events (simple clients, tests).",
        ),
        "IdempotencyKey": param(
            "Idempotency-Key",
            "header",
            text(ID),
            "The interaction's id when the body has none (if both, they must be equal).",
        ),
    }


_ERRORS: dict[int, str] = {
    400: "The body is not valid JSON or msgpack.",
    401: "No key, or an unknown key.",
    403: "The key's role lacks the permission (§5).",
    404: "No such record.",
    409: "State conflict.",
    413: f"The body exceeds {http.MAX_BODY_BYTES} bytes.",
    415: "The Content-Type is neither application/json nor application/msgpack.",
    422: "Validation failed: `errors` lists every invalid field.",
    429: "A limit that protects the service (event streams per key); retry after "
    "`Retry-After` seconds.",
    503: "The store did not answer within `store_timeout_s`, or cannot be reached: the outcome "
    "of a change is unknown. Retry the same request after `Retry-After` seconds (every change "
    "is safe to repeat; a create with the same id).",
}


def responses() -> dict[str, Schema]:
    """The error responses, one per status, every one application/problem+json."""
    found: dict[str, Schema] = {}
    for status, description in _ERRORS.items():
        response: Schema = {
            "description": description,
            "content": {http.PROBLEM: {"schema": ref("Problem")}},
        }
        if status in (429, 503):
            response["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before retrying.",
                    "schema": {"type": "integer", "minimum": 0},
                }
            }
        found[f"E{status}"] = response
    return found


def security_schemes() -> dict[str, Schema]:
    """API keys as bearer tokens (§5)."""
    return {
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key: `Authorization: Bearer <key>`. Roles: `admin` "
            "(everything), `platform` (interactions, agents, events, reads), `monitor` "
            "(GET only, and metrics).",
        }
    }


# Operations


def content(schema: Schema) -> Schema:
    """A body in both media types the API speaks."""
    return {http.JSON: {"schema": schema}, http.MSGPACK: {"schema": schema}}


OPTIONAL_BODIES = frozenset({"CallbackBody"})
"""Request bodies whose every field is optional: no body at all is fine."""


def body(name: str) -> Schema:
    """A request body of component schema `name`, required unless in OPTIONAL_BODIES."""
    return {
        "required": name not in OPTIONAL_BODIES,
        "description": "JSON (also without a Content-Type) or msgpack.",
        "content": content(ref(name)),
    }


def answer(description: str, name: str | None = None) -> Schema:
    """A success response (of component schema `name`; none: no content)."""
    response: Schema = {"description": description}
    if name is not None:
        response["content"] = content(ref(name))
    return response


def operation(
    op_id: str,
    tag: str,
    summary: str,
    roles: Sequence[Role],
    ok: Mapping[int, Schema],
    problems: Iterable[int] = (),
    *,
    request: str | None = None,
    params: Sequence[str] = (),
    description: str | None = None,
) -> Schema:
    """One operation: its `ok` answers, then every problem it can answer (role, body, store)."""
    statuses = set(problems) | ({400, 413, 415, 422} if request else set())
    if set(roles) != set(ANY_ROLE):
        statuses.add(403)
    responses: dict[str, Schema] = {str(status): resp for status, resp in ok.items()}
    for status in sorted(statuses | {401, 503}):
        assert status in _ERRORS, f"{op_id}: no error response {status}"
        responses[str(status)] = ref(f"E{status}", "responses")
    op: Schema = {
        "operationId": op_id,
        "tags": [tag],
        "summary": summary,
        "x-roles": [role.value for role in roles],
    }
    if description:
        op["description"] = description
    if params:
        op["parameters"] = [ref(p, "parameters") for p in params]
    if request:
        op["requestBody"] = body(request)
    op["responses"] = responses
    return op


def interaction_paths() -> dict[str, Schema]:
    """Interactions (§4): arrival, reads, the caller's hang-up and the agent's actions."""
    ok = {200: answer("The interaction.", "Interaction")}
    paths: dict[str, Schema] = {
        "/v1/interactions": {
            "post": operation(
                "createInteraction",
                "interactions",
                "Queue an interaction",
                WRITERS,
                {
                    201: answer("Created: `status` is queued, offered or blocked.", "Interaction"),
                    200: answer(
                        "A retry with the same id and body: the current record.", "Interaction"
                    ),
                },
                [409],
                request="NewInteraction",
                params=["IdempotencyKey"],
                description="Routed at once. 409: the same `id` with a different body. A 503 "
                "names the `interaction_id` it tried: the create may have been applied, so "
                "retry with that id. 422 on "
                "`queue` (unknown queue), `channel` (another channel than the queue's) and "
                "`skills` (over 16 skills merged, or the routing-class limit).",
            ),
        },
        "/v1/interactions/{id}": {
            "parameters": [ref("InteractionId", "parameters")],
            "get": operation(
                "getInteraction",
                "interactions",
                "An interaction with its position",
                ANY_ROLE,
                ok,
                [404, 422],
            ),
            "delete": operation(
                "abandonInteraction",
                "interactions",
                "The caller hung up",
                WRITERS,
                ok,
                [404, 409, 422],
                description="`queued`/`offered` -> `abandoned`; a waiting callback -> "
                "`cancelled`; a retry answers 200. 409 when connected or already ended.",
            ),
        },
    }
    actions = {
        "accept": (
            "acceptOffer",
            "Accept the offer: connected",
            "AcceptBody",
            "409 when the offer expired or was withdrawn (`/problems/offer-expired`), or "
            "is not this agent's (`/problems/not-offered`). A retry answers 200.",
        ),
        "reject": (
            "rejectOffer",
            "Reject or miss the offer: back in queue",
            "RejectBody",
            "The agent is never offered it again; `no_answer` counts as a miss. 409 when "
            "not offered to this agent.",
        ),
        "complete": (
            "completeInteraction",
            "The agent finished: completed, wrap-up follows",
            "CompleteBody",
            "409 when not connected to this agent. A retry answers 200.",
        ),
        "transfer": (
            "transferInteraction",
            "Send the connected interaction to another queue",
            "TransferBody",
            "409 when not connected to this agent, or the target "
            "queue is full (it stays with the agent); 422 on `queue` for an unknown "
            "queue or one of another channel.",
        ),
        "callback": (
            "acceptCallback",
            "The caller accepts the callback offered to it (§3.10)",
            "CallbackBody",
            "409 when no callback was offered or the interaction is not queued (offered to an "
            "agent, connected or ended); 422 on `at` when it is past or too far ahead. A retry "
            "answers 200.",
        ),
    }
    for action, (op_id, summary, request, description) in actions.items():
        paths[f"/v1/interactions/{{id}}/{action}"] = {
            "parameters": [ref("InteractionId", "parameters")],
            "post": operation(
                op_id,
                "interactions",
                summary,
                WRITERS,
                ok,
                [404, 409],
                request=request,
                description=description,
            ),
        }
    return paths


def agent_paths() -> dict[str, Schema]:
    """Agents (§4): profile, reads, listing, state."""
    agent = answer("The agent.", "Agent")
    return {
        "/v1/agents": {
            "get": operation(
                "listAgents",
                "agents",
                "A page of agents in id order",
                ANY_ROLE,
                {200: answer("A page; `next_cursor` continues.", "AgentPage")},
                [422],
                params=["AgentStateFilter", "AgentQueueFilter", "Limit", "Cursor"],
                description="An unknown query parameter is a 422.",
            ),
        },
        "/v1/agents/{id}": {
            "parameters": [ref("AgentId", "parameters")],
            "put": operation(
                "putAgent",
                "agents",
                "Create or update an agent",
                WRITERS,
                {
                    201: answer("Created (logged out).", "Agent"),
                    200: answer("Updated (re-indexed at once if logged in).", "Agent"),
                },
                request="AgentProfile",
            ),
            "get": operation(
                "getAgent",
                "agents",
                "An agent with its state and activity",
                ANY_ROLE,
                {200: agent},
                [404, 422],
            ),
            "delete": operation(
                "deleteAgent",
                "agents",
                "Remove a logged-out agent",
                WRITERS,
                {204: answer("Removed.")},
                [404, 409, 422],
                description="409 unless the agent is logged out.",
            ),
        },
        "/v1/agents/{id}/state": {
            "parameters": [ref("AgentId", "parameters")],
            "post": operation(
                "setAgentState",
                "agents",
                "Set an agent's state",
                WRITERS,
                {200: agent},
                [404, 409],
                request="StateChange",
                description="Leaving `available` withdraws pending offers (§3.5). `logged_out` "
                "with a connected interaction is a 409 unless `force: true` (role admin, else "
                "403), which completes them with outcome `agent_lost`.",
            ),
        },
    }


def queue_paths() -> dict[str, Schema]:
    """Queues (§4): reads with live stats; changes need role admin."""
    return {
        "/v1/queues": {
            "get": operation(
                "listQueues",
                "queues",
                "Every queue with its live stats",
                ANY_ROLE,
                {200: answer("The queues, by name.", "QueueList")},
            ),
        },
        "/v1/queues/{name}": {
            "parameters": [ref("QueueName", "parameters")],
            "get": operation(
                "getQueue",
                "queues",
                "A queue's configuration, stats and first waiting",
                ANY_ROLE,
                {200: answer("The queue.", "QueueDetail")},
                [404, 422],
            ),
            "put": operation(
                "putQueue",
                "queues",
                "Create or replace a queue",
                ADMIN,
                {201: answer("Created.", "Queue"), 200: answer("Replaced.", "Queue")},
                [409],
                request="QueueInput",
                description="Validated like the config file (§7); waiting interactions move to "
                "the requirement in force. 409 when interactions wait and the channel would "
                "change; 422 on `name` when it differs from the path.",
            ),
            "delete": operation(
                "deleteQueue",
                "queues",
                "Remove a queue with nothing waiting",
                ADMIN,
                {204: answer("Removed.")},
                [404, 409, 422],
                description="409 when interactions are waiting.",
            ),
        },
    }


def events_path() -> dict[str, Schema]:
    """GET /v1/events: Server-Sent Events of the durable log."""
    frames = {
        "x-sse-events": {"gap": ref("GapEvent")}
        | {kind: ref(event_schema_name(kind)) for kind in EVENT_TYPES},
    }
    stream: Schema = {
        "description": "An endless stream of frames `id: <event id>`, `event: <type>`, "
        "`data: <Event as JSON>`, each ended by a blank line.",
        "headers": {"Cache-Control": {"schema": {"const": "no-cache"}}},
        "content": {
            EVENT_STREAM: {
                "schema": {"type": "string", "description": "text/event-stream frames."},
                "example": "id: 1712345678901-0\nevent: interaction.queued\ndata: "
                '{"id":"1712345678901-0","type":"interaction.queued",'
                '"at":"2024-04-05T19:34:38.901Z","interaction_id":"c1","queue":"support",'
                '"priority":0,"step":0}\n\n: keep-alive\n\n',
                **frames,
            }
        },
    }
    description = (
        "Server-Sent Events: `event:` the type, `id:` the event's position in the durable log, "
        "`data:` the JSON of an `Event` (components/schemas/Event; the same JSON is the webhook "
        "body). `Last-Event-ID` (or `?after=`) resumes with nothing lost. If the resume point "
        "has been trimmed from the log (`event_log_max`), the stream first sends `event: gap` "
        "whose data (`GapEvent`) names the oldest id kept. Without a resume point the stream "
        "starts at the live end. A comment line `: keep-alive` is sent after "
        f"{KEEPALIVE_S:g} s without a write. `types`, `queue` and `agent_id` filter; an unknown "
        "type or a malformed id is a 422. A client that falls too far behind is dropped (the "
        "stream ends) and resumes by `Last-Event-ID`. Each key may hold `max_streams_per_key` "
        "streams open on each router process; past it a 429."
    )
    return {
        "/v1/events": {
            "get": operation(
                "streamEvents",
                "events",
                "The event stream",
                ANY_ROLE,
                {200: stream},
                [422, 429],
                params=["LastEventId", "After", "Types", "EventQueue", "EventAgent", "EventLimit"],
                description=description,
            ),
        },
    }


def operations_paths(*, metrics: bool) -> dict[str, Schema]:
    """The operations routes: health, readiness, this document, and metrics when served."""

    def public(op_id: str, summary: str, ok: Mapping[int, Schema]) -> Schema:
        return {
            "operationId": op_id,
            "tags": ["operations"],
            "summary": summary,
            "security": [],  # no key needed
            "responses": {str(status): resp for status, resp in ok.items()},
        }

    paths: dict[str, Schema] = {
        "/healthz": {
            "get": public("healthz", "The process is alive", {200: answer("Alive.", "Health")})
        },
        "/readyz": {
            "get": public(
                "readyz",
                "The store answers and the scripts are loaded",
                {
                    200: answer("Ready.", "Readiness"),
                    503: ref("E503", "responses"),
                },
            )
        },
        "/openapi.json": {
            "get": public(
                "openapi",
                "This document (OpenAPI 3.1)",
                {
                    200: {
                        "description": "The document.",
                        "content": {http.JSON: {"schema": {"type": "object"}}},
                    }
                },
            )
        },
    }
    if metrics:
        op = public(
            "metrics",
            "Prometheus metrics (§6)",
            {
                200: {
                    "description": "Prometheus text exposition format.",
                    "content": {PROMETHEUS: {"schema": {"type": "string"}}},
                },
                401: ref("E401", "responses"),
            },
        )
        op["security"] = [{}, {"bearerAuth": []}]
        op["description"] = (
            "Open unless the service's `metrics_auth` is on; then any valid key (e.g. role "
            "`monitor`). Documented only when the application serves the route."
        )
        paths[METRICS_PATH] = {"get": op}
    return paths


# The document


@functools.cache
def build_document(*, metrics: bool = False) -> dict[str, Any]:
    """The OpenAPI document; `metrics` adds GET /metrics (served by the metrics module)."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "ACD Router API",
            "version": package_version(),
            "summary": "Real-time automatic call distribution: skills-based routing in Redis.",
            "description": "JSON by default; `application/msgpack` is accepted and returned when "
            "the client sends it in `Content-Type` / `Accept`. Every error is "
            "`application/problem+json` (RFC 9457); an unknown route is a 404 and a wrong "
            "method a 405, both as problems. Timestamps are RFC 3339 UTC strings, durations "
            "seconds. The operation extension `x-roles` lists the roles allowed.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [
            {"name": "interactions"},
            {"name": "agents"},
            {"name": "queues"},
            {"name": "events"},
            {"name": "operations"},
        ],
        "security": [{"bearerAuth": []}],
        "paths": interaction_paths()
        | agent_paths()
        | queue_paths()
        | events_path()
        | operations_paths(metrics=metrics),
        "components": {
            "schemas": problem_schemas() | request_schemas() | response_schemas() | event_schemas(),
            "parameters": parameters(),
            "responses": responses(),
            "securitySchemes": security_schemes(),
        },
    }


def package_version() -> str:
    """The installed package's version, or 0.0.0 from a bare source tree."""
    try:
        return importlib.metadata.version("acd-router")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def serves_metrics(app: web.Application) -> bool:
    """Whether `app` has the GET /metrics route."""
    return any(
        route.method == "GET"
        and route.resource is not None
        and route.resource.canonical == METRICS_PATH
        for route in app.router.routes()
    )


def document_for(app: web.Application) -> dict[str, Any]:
    """The document of `app`'s routes."""
    return build_document(metrics=serves_metrics(app))


@functools.cache
def _encoded(metrics: bool) -> str:
    return json.dumps(build_document(metrics=metrics), separators=(",", ":"))


async def serve(request: web.Request) -> web.Response:
    """GET /openapi.json (no key needed)."""
    return web.Response(text=_encoded(serves_metrics(request.app)), content_type=http.JSON)
