"""GET /openapi.json: the whole HTTP API (SPEC §4, §5) as an OpenAPI 3.1 document.

Its schemas are generated (pydantic's JSON Schema, the dialect of OpenAPI 3.1) from the one
declaration of each request body (router/domain/models.py), view (router/api/views.py) and event
(router/events/schema.py); this module adds the operations, parameters and error answers.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any

from aiohttp import web
from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode

from router import errors
from router.api import http
from router.api.handlers import (
    DEFAULT_PAGE,
    LIVE_CURSOR,
    LIVE_STATUSES,
    MAX_PAGE,
    WAITING_SHOWN,
)
from router.api.http import ProblemView
from router.api.views import (
    AgentPage,
    AgentView,
    Health,
    InteractionPage,
    InteractionView,
    QueueDetail,
    QueueList,
    QueueStats,
    QueueWithStats,
    Readiness,
)
from router.config import Role
from router.domain.fields import Integer
from router.domain.models import (
    EVENT_TYPES,
    AcceptBody,
    AgentProfile,
    CallbackRequest,
    CompleteBody,
    Id,
    Name,
    NewInteraction,
    QueueConfig,
    RejectBody,
    StateChange,
    TransferBody,
)
from router.events.schema import Event, GapEvent
from router.events.sse import KEEPALIVE_S

Schema = dict[str, Any]

OPENAPI_VERSION = "3.1.0"
METRICS_PATH = "/metrics"
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
EVENT_STREAM = "text/event-stream"
ANY_ROLE = (Role.ADMIN, Role.PLATFORM, Role.MONITOR)
WRITERS = (Role.ADMIN, Role.PLATFORM)
ADMIN = (Role.ADMIN,)
REF = "#/components/schemas/{model}"


def ref(name: str, kind: str = "schemas") -> Schema:
    """A reference to `#/components/<kind>/<name>`."""
    return {"$ref": f"#/components/{kind}/{name}"}


# Components: schemas, generated from the declarations

REQUESTS: dict[str, Any] = {
    "NewInteraction": NewInteraction,
    "AcceptBody": AcceptBody,
    "RejectBody": RejectBody,
    "CompleteBody": CompleteBody,
    "TransferBody": TransferBody,
    "CallbackBody": CallbackRequest,
    "AgentProfile": AgentProfile,
    "StateChange": StateChange,
    "QueueInput": QueueConfig,
}
"""Request bodies by component name (validation mode: a null counts as absent)."""
ANSWERS: dict[str, Any] = {
    "Interaction": InteractionView,
    "InteractionPage": InteractionPage,
    "Agent": AgentView,
    "AgentPage": AgentPage,
    "Queue": QueueConfig,
    "QueueStats": QueueStats,
    "QueueWithStats": QueueWithStats,
    "QueueDetail": QueueDetail,
    "QueueList": QueueList,
    "Health": Health,
    "Readiness": Readiness,
    "Problem": ProblemView,
    "Event": Event,
    "GapEvent": GapEvent,
}
"""What the service sends, by component name (serialization mode)."""


class _Generator(GenerateJsonSchema):
    """pydantic's JSON Schema without a title on every property (the name says it)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        """Never: a property's title would only repeat its name."""
        return False

    def dict_schema(self, schema: Any) -> Schema:
        """A map whose keys follow a pattern: `propertyNames`, the values' schema for all."""
        found: Schema = super().dict_schema(schema)
        patterns = found.pop("patternProperties", None)
        if patterns:
            ((pattern, values),) = patterns.items()
            found["propertyNames"] = {"type": "string", "pattern": pattern}
            found["additionalProperties"] = values
        return found


@functools.cache
def component_schemas() -> dict[str, Schema]:
    """Every component schema: the REQUESTS and ANSWERS under their names, and what they use
    (`X-Input`/`X-Output`, a model that differs by direction, become `XInput`/`X`)."""
    directions: tuple[tuple[dict[str, Any], JsonSchemaMode], ...] = (
        (REQUESTS, "validation"),
        (ANSWERS, "serialization"),
    )
    inputs: list[tuple[tuple[str, JsonSchemaMode], JsonSchemaMode, Any]] = [
        ((name, mode), mode, TypeAdapter(declared).core_schema)
        for table, mode in directions
        for name, declared in table.items()
    ]
    tops, defs = _Generator(ref_template=REF).generate_definitions(inputs)
    names: dict[str, str] = {}
    schemas: dict[str, Schema] = {}
    for ((component, _), _direction), top in tops.items():
        if set(top) == {"$ref"}:
            names[top["$ref"].rsplit("/", 1)[1]] = component
        else:
            schemas[component] = dict(top)
    final = {found: names.get(found) or _component_name(found) for found in defs}
    for found, schema in defs.items():
        schemas[final[found]] = {**schema, "title": final[found]} if "title" in schema else schema
    targets = {REF.format(model=old): REF.format(model=new) for old, new in final.items()}
    renamed: dict[str, Schema] = _retarget(schemas, targets)
    kinds = sorted({cls.type for cls in _router_errors() if cls.type.startswith("/problems/")})
    renamed["Problem"]["properties"]["type"]["description"] = "The kind of problem: " + ", ".join(
        f"`{kind}`" for kind in kinds
    )
    return renamed


def _component_name(found: str) -> str:
    """A declaration's component name: `Sla-Output` -> `Sla`, `Sla-Input` -> `SlaInput`,
    `FieldErrorView` -> `FieldError`."""
    return found.replace("-Output", "").replace("-Input", "Input").removesuffix("View")


def _retarget(value: Any, targets: Mapping[str, str]) -> Any:
    """`value` with every `$ref` and discriminator mapping in `targets` pointed at its new name."""
    if isinstance(value, dict):
        return {
            k: targets.get(v, v) if isinstance(v, str) else _retarget(v, targets)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_retarget(item, targets) for item in value]
    return value


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


def event_schemas() -> dict[str, str]:
    """Each event type's schema reference, in the order of EVENT_TYPES."""
    mapping: dict[str, str] = component_schemas()["Event"]["discriminator"]["mapping"]
    return {kind: mapping[kind] for kind in EVENT_TYPES}


def _json_schema(declared: Any) -> Schema:
    """The schema of an annotated type, inline (parameters)."""
    return dict(TypeAdapter(declared).json_schema(schema_generator=_Generator))


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
        "InteractionId": param("id", "path", _json_schema(Id)),
        "AgentId": param("id", "path", _json_schema(Id)),
        "QueueName": param("name", "path", _json_schema(Name)),
        "AgentStateFilter": param("state", "query", ref("AgentState"), "Agents in this state."),
        "AgentQueueFilter": param(
            "queue",
            "query",
            _json_schema(Name),
            "Agents that meet a step's requirement of this queue (422 if there is none).",
        ),
        "Limit": param(
            "limit",
            "query",
            _json_schema(Annotated[int, Integer(1, MAX_PAGE)]) | {"default": DEFAULT_PAGE},
            "Records per page at most; a filtered page may hold fewer and have a `next_cursor`.",
        ),
        "WaitingLimit": param(
            "limit",
            "query",
            _json_schema(Annotated[int, Integer(1, MAX_PAGE)]) | {"default": WAITING_SHOWN},
            "Waiting interactions shown at most, from the head of the queue.",
        ),
        "InteractionQueueFilter": param(
            "queue", "query", _json_schema(Name), "Interactions now in this queue."
        ),
        "InteractionStatusFilter": param(
            "status",
            "query",
            {"type": "string", "enum": list(LIVE_STATUSES)},
            "Interactions in this status.",
        ),
        "InteractionAgentFilter": param(
            "agent_id",
            "query",
            _json_schema(Id),
            "Interactions offered or connected to this agent.",
        ),
        "InteractionCursor": param(
            "cursor",
            "query",
            {"anyOf": [{"type": "string", "pattern": LIVE_CURSOR.json_pattern}, {"const": ""}]},
            "The `next_cursor` of the previous page.",
        ),
        "Cursor": param(
            "cursor",
            "query",
            {"anyOf": [_json_schema(Id), {"const": ""}]},
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
        "EventQueue": param("queue", "query", _json_schema(Name), "Only events of this queue."),
        "EventAgent": param("agent_id", "query", _json_schema(Id), "Only events of this agent."),
        "EventLimit": param(
            "limit",
            "query",
            _json_schema(Annotated[int, Integer(1, 1_000_000)]),
            "End the stream after this many events (simple clients, tests).",
        ),
        "IdempotencyKey": param(
            "Idempotency-Key",
            "header",
            _json_schema(Id),
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
            "get": operation(
                "listInteractions",
                "interactions",
                "A page of the interactions not yet ended, oldest first",
                ANY_ROLE,
                {200: answer("A page; `next_cursor` continues.", "InteractionPage")},
                [422],
                params=[
                    "InteractionQueueFilter",
                    "InteractionStatusFilter",
                    "InteractionAgentFilter",
                    "Limit",
                    "InteractionCursor",
                ],
                description="Queued, offered, connected and waiting callbacks, oldest first (by "
                "`created_at`), each as GET shows it: a platform that restarts finds what it was "
                "handling. Filters read at most 10 x `limit` interactions per page, so a page may "
                "hold fewer and still have a `next_cursor`. An unknown query parameter is a 422.",
            ),
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
                params=["WaitingLimit"],
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
        | {kind: {"$ref": target} for kind, target in event_schemas().items()},
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
            "schemas": component_schemas(),
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
