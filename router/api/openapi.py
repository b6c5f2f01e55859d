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
from router.api import handlers, http
from router.api.auth import roles_for
from router.api.handlers import (
    AGENT_CURSOR,
    DEFAULT_PAGE,
    LIVE_CURSOR,
    LIVE_STATUSES,
    MAX_PAGE,
    WAITING_SHOWN,
)
from router.api.http import ProblemView
from router.api.operations import Operation, operation_of
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
    Id,
    Name,
    QueueConfig,
)
from router.events.schema import Event, GapEvent
from router.events.sse import KEEPALIVE_S, stream_events

Schema = dict[str, Any]

OPENAPI_VERSION = "3.1.0"
METRICS_PATH = "/metrics"
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
EVENT_STREAM = "text/event-stream"
ANY_ROLE = tuple(Role)
REF = "#/components/schemas/{model}"


def ref(name: str, kind: str = "schemas") -> Schema:
    """A reference to `#/components/<kind>/<name>`."""
    return {"$ref": f"#/components/{kind}/{name}"}


# Components: schemas, generated from the declarations

REQUEST_NAMES: dict[Any, str] = {QueueConfig: "QueueInput"}
"""Request bodies named otherwise than their type (the stored `Queue` is its answer)."""


def documented_routes() -> list[tuple[str, str, Operation]]:
    """(method, path, operation) of every handler that declares one (router/api/handlers.py)."""
    found = []
    for route in handlers.routes:
        if isinstance(route, web.RouteDef) and (op := operation_of(route.handler)) is not None:
            found.append((route.method, route.path, op))
    return found


def request_name(body: Any) -> str:
    """The component name of a request body type."""
    return REQUEST_NAMES.get(body) or str(body.__name__)


def requests() -> dict[str, Any]:
    """Request bodies by component name (validation mode: a null counts as absent)."""
    return {
        request_name(op.body): op.body for _, _, op in documented_routes() if op.body is not None
    }


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
        (requests(), "validation"),
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
    event_id = {"type": "string", "pattern": r"^\s*(\d{1,20}-\d{1,20}|0)\s*$"}
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
        "AgentCursor": param(
            "cursor",
            "query",
            {"anyOf": [{"type": "string", "pattern": AGENT_CURSOR.json_pattern}, {"const": ""}]},
            "The `next_cursor` of the previous page.",
        ),
        "LastEventId": param(
            "Last-Event-ID", "header", event_id, "Resume after this event id (wins over `after`)."
        ),
        "After": param(
            "after",
            "query",
            event_id,
            "Resume after this event id (`<ms>-<seq>`, whole); `0` starts at the oldest kept. "
            "Without it (and without Last-Event-ID) the stream starts at the live end.",
        ),
        "Types": param(
            "types",
            "query",
            {"type": "array", "items": {"enum": list(EVENT_TYPES)}, "minItems": 1},
            "Only events of these types (comma-separated; present but empty is a 422).",
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


@functools.cache
def query_names(params: tuple[str, ...]) -> frozenset[str]:
    """The names of the query parameters among the parameter components `params`."""
    found = parameters()
    return frozenset(found[p]["name"] for p in params if found[p]["in"] == "query")


_ERRORS: dict[int, str] = {
    400: "The body is not valid JSON or msgpack.",
    408: f"The body did not arrive whole within {http.BODY_TIMEOUT_S:g} s; the connection is "
    "closed.",
    401: "No key, or an unknown key.",
    403: "The key's role lacks the permission (§5).",
    404: "No such record.",
    409: "State conflict.",
    413: f"The body exceeds {http.MAX_BODY_BYTES} bytes.",
    415: "The Content-Type is neither application/json nor application/msgpack, or the body is "
    "compressed (a Content-Encoding).",
    422: "Validation failed: `errors` lists every invalid field, and every query parameter that "
    "the operation does not take or that is given more than once.",
    429: "A limit that protects the service (event streams per key); retry after "
    "`Retry-After` seconds.",
    503: "The store did not answer within `store_timeout_s`, or cannot be reached: the outcome "
    "of a change is unknown (`/problems/store-unavailable`); or it refused the request, which "
    "changed nothing, and `reason` says why (`/problems/store-refused`: out_of_memory, "
    "cannot_persist, no_replicas, busy, read_only). Retry the same request after `Retry-After` "
    "seconds (every change is safe to repeat; a create with the same id).",
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
        if status == 401:
            response["headers"] = {
                "WWW-Authenticate": {
                    "description": 'The scheme keys are sent with: `Bearer realm="acd-router"`, '
                    'with `error="invalid_token"` for an unknown key (RFC 6750).',
                    "schema": {"type": "string"},
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


def body(name: str, required: bool = True) -> Schema:
    """A request body of component schema `name`."""
    return {
        "required": required,
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
    body_required: bool = True,
    params: Sequence[str] = (),
    description: str | None = None,
) -> Schema:
    """One operation: its `ok` answers, then every problem it can answer (role, query, body,
    store)."""
    statuses = set(problems) | {422} | ({400, 408, 413, 415} if request else set())
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
        op["requestBody"] = body(request, body_required)
    op["responses"] = responses
    return op


PATH_PARAMETERS = {
    "/v1/interactions/{id}": "InteractionId",
    "/v1/agents/{id}": "AgentId",
    "/v1/queues/{name}": "QueueName",
}
"""The path parameter of each family of paths (a path that starts with the key)."""


def api_paths() -> dict[str, Schema]:
    """Interactions, agents and queues (§4): one operation per documented handler."""
    paths: dict[str, Schema] = {}
    for method, path, op in documented_routes():
        item = paths.setdefault(path, {})
        for prefix, name in PATH_PARAMETERS.items():
            if path.startswith(prefix):
                item["parameters"] = [ref(name, "parameters")]
        answers = {status: answer(text, view) for status, (text, view) in op.answers.items()}
        item[method.lower()] = operation(
            op.op_id,
            path.split("/")[2],
            op.summary,
            roles_for(method, path),
            answers,
            op.problems,
            request=None if op.body is None else request_name(op.body),
            body_required=op.body_required,
            params=op.params,
            description=op.description,
        )
    return paths


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
        "type, an empty `types` or a malformed id is a 422. A client that falls too far behind "
        "is dropped (the stream ends) and resumes by `Last-Event-ID`. Each key may hold "
        "`max_streams_per_key` streams open on each router process; past it a 429."
    )
    op = operation_of(stream_events)
    assert op is not None
    return {
        "/v1/events": {
            "get": operation(
                op.op_id,
                "events",
                op.summary,
                ANY_ROLE,
                {200: stream},
                op.problems,
                params=op.params,
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
                403: ref("E403", "responses"),
            },
        )
        op["security"] = [{}, {"bearerAuth": []}]
        op["description"] = (
            "Open unless the service's `metrics_auth` is on; then a key of role `monitor` or "
            "`admin` (another role: 403). Documented only when the application serves the route."
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
            "method a 405, both as problems. A query parameter that the operation does not "
            "take, or one given more than once, is a 422 naming it. Timestamps are RFC 3339 UTC "
            "strings, durations seconds. The operation extension `x-roles` lists the roles "
            "allowed.",
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
        "paths": api_paths() | events_path() | operations_paths(metrics=metrics),
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
