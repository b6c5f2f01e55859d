"""The /v1 endpoints (SPEC §4) and the operations routes: parse, call the engine, render."""

from __future__ import annotations

import re
from collections.abc import Iterable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from router.api.auth import authorize
from router.api.http import read_body, respond
from router.api.keys import CLOCK, ENGINE, PRINCIPAL
from router.api.operations import documented
from router.api.views import AgentPage, InteractionPage, agent_view, interaction_view, queue_view
from router.domain.fields import ID, NAME, Text, validate
from router.domain.models import (
    AcceptBody,
    AgentProfile,
    AgentState,
    CallbackBody,
    CompleteBody,
    Interaction,
    InteractionStatus,
    NewInteraction,
    QueueConfig,
    RejectBody,
    StateChange,
    TransferBody,
)
from router.domain.validation import validate_id, whole_number
from router.errors import NotFound, StoreUnavailable, ValidationError
from router.metrics.business import render
from router.metrics.process import exposition
from router.store.engine import Engine

routes = web.RouteTableDef()

MAX_PAGE = 500
DEFAULT_PAGE = 100
WAITING_SHOWN = 20
"""Waiting interactions a queue's detail shows without `?limit=`."""
LIVE_STATUSES = ("queued", "offered", "connected", "callback")
"""The statuses of an interaction not yet ended (GET /v1/interactions)."""
NOT_A_CURSOR = "must be the next_cursor of a previous page"
LIVE_CURSOR = Text(re.compile(r"\d{15}:" + ID.pattern.pattern), NOT_A_CURSOR)
AGENT_CURSOR_PREFIX = "after:"
AGENT_CURSOR = Text(re.compile(re.escape(AGENT_CURSOR_PREFIX) + ID.pattern.pattern), NOT_A_CURSOR)
"""The agents' next_cursor: the page's last id, marked, so that a cursor made up is a 422 (as on
GET /v1/interactions) rather than a page that starts anywhere."""


def _engine(request: web.Request) -> Engine:
    return request.app[ENGINE]


def _now(request: web.Request) -> float:
    return request.app[CLOCK].now()


def _id(request: web.Request, name: str = "id") -> str:
    return validate_id(request.match_info[name], name)


def _queue_name(request: web.Request) -> str:
    name = request.match_info["name"]
    problem = NAME.problem(name)
    if problem:
        raise ValidationError.of("name", problem)
    return name


def _interaction(request: web.Request, ix: Interaction, status: int = 200) -> web.Response:
    return respond(request, interaction_view(ix, _now(request)), status)


# Interactions


IDEMPOTENCY_KEY = "Idempotency-Key"


@routes.post("/v1/interactions")
@documented(
    "createInteraction",
    "Queue an interaction",
    {
        201: ("Created: `status` is queued, offered or blocked.", "Interaction"),
        200: ("A retry with the same id and body: the current record.", "Interaction"),
    },
    (409,),
    body=NewInteraction,
    params=("IdempotencyKey",),
    description="Routed at once; the answer has the `position` and `ewt_s` a GET shows. 409: the "
    "same `id` with a different body (a field given with what its absence means is the same, but "
    "for `priority` and `credit_s`, whose absence means the queue's default). A 503 names the "
    "`interaction_id` it tried: the create may have been applied, so retry with that id. 422 "
    "on `queue` (unknown queue), `channel` (another channel than the queue's) and `skills` (over "
    "16 skills merged, or the routing-class limit).",
)
async def create_interaction(request: web.Request) -> web.Response:
    """Queue an interaction; 201 when created, 200 for a retry with the same id and body.

    The id is the body's `id`, else the `Idempotency-Key` header, else generated; a 503 names
    it (`interaction_id`) so that the client can retry without creating it twice."""
    body = await read_body(request)
    key = request.headers.get(IDEMPOTENCY_KEY)
    if key is not None:
        validate_id(key, IDEMPOTENCY_KEY)
        if body.get("id") is None:
            body = {**body, "id": key}
        elif body["id"] != key:
            raise ValidationError.of("id", f"differs from the {IDEMPOTENCY_KEY} header")
    new = validate(NewInteraction, body)
    ix, created = await _engine(request).create_interaction(new, _now(request))
    return _interaction(request, ix, 201 if created else 200)


@routes.get("/v1/interactions/{id}")
@documented("getInteraction", "An interaction with its position", problems=(404,))
async def get_interaction(request: web.Request) -> web.Response:
    """An interaction with its position."""
    ix = await _engine(request).get_interaction(_id(request), _now(request))
    if ix is None:
        raise NotFound(f"no interaction {request.match_info['id']}")
    return _interaction(request, ix)


@routes.delete("/v1/interactions/{id}")
@documented(
    "abandonInteraction",
    "The caller hung up",
    problems=(404, 409),
    description="`queued`/`offered` -> `abandoned`; a waiting, scheduled or offered callback -> "
    "`cancelled`; a retry answers 200. 409 when connected or already ended.",
)
async def abandon_interaction(request: web.Request) -> web.Response:
    """The caller hung up: abandoned (or a callback cancelled)."""
    ix = await _engine(request).abandon(_id(request), _now(request))
    return _interaction(request, ix)


@routes.post("/v1/interactions/{id}/accept")
@documented(
    "acceptOffer",
    "Accept the offer: connected",
    problems=(404, 409),
    body=AcceptBody,
    description="409 when the offer expired or was withdrawn (`/problems/offer-expired`), or is "
    "not this agent's (`/problems/not-offered`). A retry answers 200.",
)
async def accept_offer(request: web.Request) -> web.Response:
    """The agent takes the offer: connected."""
    body = validate(AcceptBody, await read_body(request))
    ix = await _engine(request).accept(_id(request), body.agent_id, _now(request))
    return _interaction(request, ix)


@routes.post("/v1/interactions/{id}/reject")
@documented(
    "rejectOffer",
    "Reject or miss the offer: back in queue",
    problems=(404, 409),
    body=RejectBody,
    description="The agent is never offered it again; `no_answer` counts as a miss. 409 when not "
    "offered to this agent. A retry answers 200; a repeat with another `reason` is a 409 "
    "(`/problems/idempotency-conflict`).",
)
async def reject_offer(request: web.Request) -> web.Response:
    """The agent rejects or misses the offer: back in its place (§3.5)."""
    body = validate(RejectBody, await read_body(request))
    ix = await _engine(request).reject(_id(request), body.agent_id, body.reason, _now(request))
    return _interaction(request, ix)


@routes.post("/v1/interactions/{id}/complete")
@documented(
    "completeInteraction",
    "The agent finished: completed, wrap-up follows",
    problems=(404, 409),
    body=CompleteBody,
    description="409 when not connected to this agent. A retry answers 200; a repeat with another "
    "`outcome` or `wrap_up_s` is a 409 (`/problems/idempotency-conflict`).",
)
async def complete_interaction(request: web.Request) -> web.Response:
    """The agent finished: completed (or a callback's retry, §3.10), wrap-up follows."""
    body = validate(CompleteBody, await read_body(request))
    ix = await _engine(request).complete(
        _id(request), body.agent_id, _now(request), body.outcome, body.wrap_up_s
    )
    return _interaction(request, ix)


@routes.post("/v1/interactions/{id}/transfer")
@documented(
    "transferInteraction",
    "Send the connected interaction to another queue",
    problems=(404, 409),
    body=TransferBody,
    description="409 when not connected to this agent, or the target queue is full (it stays with "
    "the agent); 422 on `queue` for an unknown queue or one of another channel. An exact repeat "
    "(same agent and queue) answers 200 with the current record while it waits there unanswered.",
)
async def transfer_interaction(request: web.Request) -> web.Response:
    """The connected agent sends the interaction to another queue (§3.9)."""
    body = validate(TransferBody, await read_body(request))
    ix = await _engine(request).transfer(_id(request), body.agent_id, body.queue, _now(request))
    return _interaction(request, ix)


@routes.post("/v1/interactions/{id}/callback")
@documented(
    "acceptCallback",
    "The caller accepts the callback offered to it (§3.10)",
    problems=(404, 409),
    body=CallbackBody,
    body_required=False,
    description="409 when no callback was offered or the interaction is not queued (offered to an "
    "agent, connected or ended); 422 on `at` when it is past or too far ahead. A retry answers "
    "200; a repeat with another `at` is a 409 (`/problems/idempotency-conflict`).",
)
async def accept_callback(request: web.Request) -> web.Response:
    """The caller accepts the callback offered (§3.10): now, or scheduled `at`."""
    body = validate(CallbackBody, await read_body(request, required=False))
    ix = await _engine(request).accept_callback(_id(request), _now(request), body.at)
    return _interaction(request, ix)


# Agents


@routes.put("/v1/agents/{id}")
@documented(
    "putAgent",
    "Create or update an agent",
    {
        201: ("Created (logged out).", "Agent"),
        200: ("Updated (re-indexed at once if logged in).", "Agent"),
    },
    (409,),
    body=AgentProfile,
    description="Replaces the whole profile: an omitted `name` or `channels` returns to its "
    "default. 409 when the new channels cannot hold the interactions offered or connected to the "
    "agent now.",
)
async def put_agent(request: web.Request) -> web.Response:
    """Create (201) or replace (200) an agent's skills, channels and name."""
    profile = validate(AgentProfile, await read_body(request))
    agent, created = await _engine(request).put_agent(_id(request), profile, _now(request))
    return respond(request, agent_view(agent), 201 if created else 200)


@routes.get("/v1/agents/{id}")
@documented(
    "getAgent", "An agent with its state and activity", {200: ("The agent.", "Agent")}, (404,)
)
async def get_agent(request: web.Request) -> web.Response:
    """An agent with its state and activity."""
    agent = await _engine(request).get_agent(_id(request))
    if agent is None:
        raise NotFound(f"no agent {request.match_info['id']}")
    return respond(request, agent_view(agent))


def _page(request: web.Request, cursor_rule: Text) -> tuple[str, int]:
    """The cursor and limit of a page request; a 422 on a bad value."""
    limit = _limit(request, DEFAULT_PAGE)
    cursor = _query_text(request, "cursor", cursor_rule) or ""
    return cursor, limit


def _limit(request: web.Request, default: int) -> int:
    """The `limit` query parameter (1..MAX_PAGE)."""
    limit = whole_number(request.query.get("limit", str(default)), 1, MAX_PAGE)
    if limit is None:
        raise ValidationError.of("limit", f"must be an integer 1..{MAX_PAGE}")
    return limit


def _choice(request: web.Request, name: str, allowed: Iterable[str]) -> str | None:
    """Query parameter `name`, one of `allowed`, or None when absent."""
    value = request.query.get(name)
    names = list(allowed)
    if value is not None and value not in names:
        raise ValidationError.of(name, "must be one of " + ", ".join(names))
    return value


def _query_text(request: web.Request, name: str, rule: Text) -> str | None:
    """Query parameter `name`, following `rule`, or None when absent."""
    value = request.query.get(name)
    if value is not None and (problem := rule.problem(value)):
        raise ValidationError.of(name, problem)
    return value


@routes.get("/v1/interactions")
@documented(
    "listInteractions",
    "A page of the interactions not yet ended, oldest first",
    {200: ("A page; `next_cursor` continues.", "InteractionPage")},
    params=(
        "InteractionQueueFilter",
        "InteractionStatusFilter",
        "InteractionAgentFilter",
        "Limit",
        "InteractionCursor",
    ),
    description="Queued, offered, connected and waiting callbacks, oldest first (by `created_at`), "
    "each as GET shows it: a platform that restarts finds what it was handling. Filters read at "
    "most 10 x `limit` interactions per page, so a page may hold fewer and still have a "
    "`next_cursor`.",
)
async def list_interactions(request: web.Request) -> web.Response:
    """A page of the interactions not yet ended, oldest first, filtered by `queue`, `status` and
    `agent_id`; `next_cursor` continues (a platform that restarts finds what it handled)."""
    cursor, limit = _page(request, LIVE_CURSOR)
    status = _choice(request, "status", LIVE_STATUSES)
    now = _now(request)
    found, next_cursor = await _engine(request).page_interactions(
        cursor,
        limit,
        now,
        queue=_query_text(request, "queue", NAME),
        status=None if status is None else InteractionStatus(status),
        agent_id=_query_text(request, "agent_id", ID),
    )
    page: InteractionPage = {
        "interactions": [interaction_view(ix, now) for ix in found],
        "next_cursor": next_cursor,
    }
    return respond(request, page)


@routes.get("/v1/agents")
@documented(
    "listAgents",
    "A page of agents in id order",
    {200: ("A page; `next_cursor` continues.", "AgentPage")},
    params=("AgentStateFilter", "AgentQueueFilter", "Limit", "AgentCursor"),
)
async def list_agents(request: web.Request) -> web.Response:
    """A page of agents in id order, filtered by `state` and `queue`; `next_cursor` continues."""
    cursor, limit = _page(request, AGENT_CURSOR)
    state = _choice(request, "state", AgentState)
    name = _query_text(request, "queue", NAME)
    engine = _engine(request)
    queue = None
    if name is not None:
        queue = await engine.get_queue(name)
        if queue is None:
            raise ValidationError.of("queue", "no such queue")
    agents, last = await engine.page_agents(
        cursor.removeprefix(AGENT_CURSOR_PREFIX),
        limit,
        None if state is None else AgentState(state),
        queue,
    )
    page: AgentPage = {
        "agents": [agent_view(a) for a in agents],
        "next_cursor": None if last is None else AGENT_CURSOR_PREFIX + last,
    }
    return respond(request, page)


@routes.post("/v1/agents/{id}/state")
@documented(
    "setAgentState",
    "Set an agent's state",
    {200: ("The agent.", "Agent")},
    (404, 409),
    body=StateChange,
    description="Leaving `available` withdraws pending offers (§3.5). `logged_out` with a "
    "connected interaction is a 409 unless `force: true` (role admin, else 403), which completes "
    "them with outcome `agent_lost`.",
)
async def set_agent_state(request: web.Request) -> web.Response:
    """Set an agent's state; a forced logout (`force: true`) needs role admin."""
    change = validate(StateChange, await read_body(request))
    if change.force:
        authorize(request[PRINCIPAL], request.method, request.path, admin_only=True)
    agent = await _engine(request).set_agent_state(
        _id(request), change.state, _now(request), change.reason, change.force
    )
    return respond(request, agent_view(agent))


@routes.delete("/v1/agents/{id}")
@documented(
    "deleteAgent",
    "Remove a logged-out agent",
    {204: ("Removed.", None)},
    (404, 409),
    description="409 unless the agent is logged out.",
)
async def delete_agent(request: web.Request) -> web.Response:
    """Remove a logged-out agent."""
    await _engine(request).delete_agent(_id(request), _now(request))
    return web.Response(status=204)


# Queues


@routes.get("/v1/queues")
@documented(
    "listQueues", "Every queue with its live stats", {200: ("The queues, by name.", "QueueList")}
)
async def list_queues(request: web.Request) -> web.Response:
    """Every queue with its live stats."""
    engine, now = _engine(request), _now(request)
    queues = []
    for queue in await engine.list_queues():
        stats = await engine.queue_stats(queue, now)
        queues.append({**queue_view(queue), "stats": stats})
    return respond(request, {"queues": queues})


@routes.get("/v1/queues/{name}")
@documented(
    "getQueue",
    "A queue's configuration, stats and first waiting",
    {200: ("The queue.", "QueueDetail")},
    (404,),
    params=("WaitingLimit",),
)
async def get_queue(request: web.Request) -> web.Response:
    """A queue's configuration, stats and first waiting interactions with their positions."""
    engine, now = _engine(request), _now(request)
    name, limit = _queue_name(request), _limit(request, WAITING_SHOWN)
    queue = await engine.get_queue(name)
    if queue is None:
        raise NotFound(f"no queue {request.match_info['name']}")
    waiting = await engine.first_waiting(queue.name, limit)
    return respond(
        request,
        {
            **queue_view(queue),
            "stats": await engine.queue_stats(queue, now),
            "waiting": [interaction_view(ix, now) for ix in waiting],
        },
    )


@routes.put("/v1/queues/{name}")
@documented(
    "putQueue",
    "Create or replace a queue",
    {201: ("Created.", "Queue"), 200: ("Replaced.", "Queue")},
    (409,),
    body=QueueConfig,
    description="Validated like the config file (§7); waiting interactions move to the "
    "requirement in force. 409 when interactions wait and the channel would change; 422 on "
    "`name` when it differs from the path.",
)
async def put_queue(request: web.Request) -> web.Response:
    """Create (201) or replace (200) a queue, validated like the config file (role admin)."""
    name = _queue_name(request)
    body = await read_body(request)
    if body.get("name", name) != name:
        raise ValidationError.of("name", "must match the path")
    queue = validate(QueueConfig, {**body, "name": name})
    created = await _engine(request).upsert_queue(queue, _now(request))
    return respond(request, queue_view(queue), 201 if created else 200)


@routes.delete("/v1/queues/{name}")
@documented(
    "deleteQueue",
    "Remove a queue with nothing waiting",
    {204: ("Removed.", None)},
    (404, 409),
    description="409 when interactions are waiting.",
)
async def delete_queue(request: web.Request) -> web.Response:
    """Remove a queue with nothing waiting (role admin)."""
    await _engine(request).delete_queue(_queue_name(request), _now(request))
    return web.Response(status=204)


# Operations


METRICS_STORE_TIMEOUT_S = 5.0
"""How long a scrape waits for the store at most, whatever `store_timeout_s` is: half Prometheus's
default scrape timeout (10 s), so that a scrape during an outage still gets `acd_store_up` 0."""


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus: the business metrics (the same from every router) and this process's own;
    while the store does not answer, this process's own only (`acd_store_up` 0)."""
    engine = _engine(request)
    try:
        async with engine.bounded(min(engine.settings.store_timeout_s, METRICS_STORE_TIMEOUT_S)):
            business = await render(engine, _now(request))
    except StoreUnavailable:
        business = b""
    return web.Response(body=business + exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """The process is alive."""
    return respond(request, {"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """The store answers and the scripts are loaded."""
    if ENGINE not in request.app or not await request.app[ENGINE].ready():
        raise StoreUnavailable("the store is not ready")
    return respond(request, {"status": "ready"})
