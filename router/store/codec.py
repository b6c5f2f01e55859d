"""Conversions between the records the Lua scripts keep (router/store/records.py: ms, short
field names) and domain models, and the scripts' reply codes."""

from __future__ import annotations

import json
from typing import Any

import msgpack
from redis.exceptions import ResponseError

from router import errors
from router.domain.models import (
    MAX_REQUIREMENT_SKILLS,
    Activity,
    Agent,
    AgentState,
    Channel,
    Event,
    Interaction,
    InteractionStatus,
    QueueConfig,
    as_skills,
)
from router.domain.stats import service_levels, staffing
from router.store.records import AgentRecord, InteractionRecord, QueueFigures

ERRORS: dict[str, tuple[type[errors.RouterError], str | None, str]] = {
    "not_found": (errors.NotFound, None, "no such record"),
    "unknown_queue": (errors.ValidationError, "queue", "no such queue"),
    "channel_mismatch": (errors.ValidationError, "queue", "the queue serves another channel"),
    "too_many_skills": (
        errors.ValidationError,
        "skills",
        f"the requirement has over {MAX_REQUIREMENT_SKILLS} skills",
    ),
    "class_limit": (
        errors.ValidationError,
        "skills",
        "would exceed the service's max_routing_classes",
    ),
    "idempotency_conflict": (errors.IdempotencyConflict, None, "same id, different request"),
    "offer_expired": (errors.OfferExpired, None, "the offer expired or was withdrawn"),
    "not_offered": (errors.NotOffered, None, "the interaction is not offered to this agent"),
    "not_connected": (errors.NotConnected, None, "the interaction is not connected to this agent"),
    "queue_full": (errors.QueueFull, None, "the target queue is full"),
    "no_callback": (errors.Conflict, None, "no callback was offered to this interaction"),
    "not_waiting": (errors.Conflict, None, "the interaction is not waiting in its queue"),
    "callback_differs": (
        errors.IdempotencyConflict,
        None,
        "the callback was already accepted, with another `at`",
    ),
    "complete_differs": (
        errors.IdempotencyConflict,
        None,
        "the interaction was already completed by this agent, with other arguments",
    ),
    "reject_differs": (
        errors.IdempotencyConflict,
        None,
        "the offer was already refused by this agent, with other arguments",
    ),
    "bad_at": (
        errors.ValidationError,
        "at",
        "must be in the future, within the queue's max_schedule_ahead_s",
    ),
    "connected": (errors.Conflict, None, "connected; complete or transfer it first"),
    "ended": (errors.Conflict, None, "the interaction has already ended"),
    "logged_in": (errors.Conflict, None, "the agent must be logged out first"),
    "over_capacity": (
        errors.Conflict,
        None,
        "the new channels cannot hold the agent's current interactions; end them first",
    ),
    "not_empty": (errors.Conflict, None, "interactions are waiting in the queue"),
    "channel_change": (
        errors.Conflict,
        None,
        "interactions are waiting; the queue's channel cannot change",
    ),
}


def raise_for(code: str, field: str | None = None, about: object = None) -> None:
    """Raise the named error a script answered with (`field` overrides the default field)."""
    if code == "ok":
        return
    cls, default_field, message = ERRORS[code]
    if isinstance(about, str):  # a note of the script's: why, or what differs
        message = f"{message}: {about}"
    name = field or default_field
    if issubclass(cls, errors.ValidationError) and name:
        raise cls.of(name, message)
    raise cls(message)


def stats_view(figures: QueueFigures, queue: QueueConfig) -> dict[str, Any]:
    """The stats of a queue (§4) from the figures the scripts read."""
    window = _map(figures.get("window"))
    levels = service_levels(window)
    return {
        "waiting": figures["waiting"],
        "callbacks_waiting": figures["callbacks_waiting"],
        "oldest_wait_s": round(figures["oldest_wait_s"], 3),
        "ewt_s": round(figures["ewt_s"], 1),
        "agents_available": figures["agents_available"],
        "agents_staffed": figures["agents_staffed"],
        "service_level": {k: None if v is None else round(v, 4) for k, v in levels.items()},
        "agents_required": staffing(window, figures.get("aht_s"), queue.sla),
    }


def error_code(error: BaseException) -> str:
    """Redis's code of an error it answered (`NOGROUP`, `BUSY`, …), or "" for any other: the
    one part of its message that may be logged (the rest may quote keys)."""
    if not isinstance(error, ResponseError):
        return ""
    # redis-py 8 keeps the code that it strips from the message of the errors it has classes for
    # (OOM, ASK, …); earlier versions lose it (engine.refusal goes by those classes).
    status: object = getattr(error, "status_code", None)
    if isinstance(status, str) and status:
        return status
    # redis-py prefixes the error of a pipeline's command with "Command # <n> (<command>) ...".
    message = str(error).rpartition(" of pipeline caused error: ")[2]
    code = message.split(" ", 1)[0]
    return code if code.isalpha() and code.isupper() else ""


def text(value: bytes | str) -> str:
    """A Redis reply as text (the store's client does not decode replies)."""
    return value.decode() if isinstance(value, bytes) else value


def to_ms(seconds: float) -> int:
    """Seconds to the store's integer milliseconds (rounded half to even): every time and
    duration the scripts receive."""
    return round(seconds * 1000)


def _s(ms: float | None) -> float | None:
    return None if ms is None or ms is False else ms / 1000


def _map(value: Any) -> dict[str, Any]:
    """A map as Lua packs it: an empty one comes back as an empty list."""
    return dict(value) if value else {}


def _data(value: Any) -> Any:
    """An interaction's opaque data, kept as JSON text by the scripts."""
    return None if value is None else json.loads(value)


def interaction(rec: InteractionRecord) -> Interaction:
    """The interaction of a stored record (`position` added by the reader)."""
    return Interaction(
        id=rec["id"],
        queue=rec["queue"],
        channel=Channel(rec["channel"]),
        status=InteractionStatus(rec["status"]),
        priority=int(rec["priority"]),
        credit_s=rec["credit"] / 1000,
        skills=as_skills(rec.get("skills")),
        preferred_agents=tuple(rec.get("pref") or ()),
        agent_id=rec.get("agent"),
        created_at=rec["created"] / 1000,
        enqueued_at=rec["enq"] / 1000,
        step=int(rec.get("step", 0)),
        expires_at=_s(rec.get("exp")),
        excluded_agents=tuple(sorted(_map(rec.get("excl")))),
        callback_offered=bool(rec.get("cb_offered")),
        callback=bool(rec.get("cb")),
        scheduled_at=_s(rec.get("cb_at")),
        attempts=int(rec.get("attempts", 0)),
        answered_at=_s(rec.get("answered")),
        ended_at=_s(rec.get("ended")),
        outcome=rec.get("outcome"),
        data=_data(rec.get("data")),
        ewt_s=rec.get("ewt"),
        position=rec.get("position"),
    )


def agent(rec: AgentRecord) -> Agent:
    """The agent of a stored record, its activity derived as the scripts derive it."""
    act = _map(rec.get("act"))
    if rec.get("wrap_until"):
        activity = Activity.WRAP_UP
    elif any(a["st"] == "offered" for a in act.values()):
        activity = Activity.OFFERED
    elif act:
        activity = Activity.BUSY
    else:
        activity = Activity.IDLE
    return Agent(
        id=rec["id"],
        name=rec.get("name"),
        skills=as_skills(rec.get("skills")),
        channels={str(k): int(v) for k, v in _map(rec.get("channels")).items()},
        state=AgentState(rec["state"]),
        reason=rec.get("reason"),
        activity=activity,
        interactions={k: v["st"] for k, v in act.items()},
        interaction_channels={k: v["ch"] for k, v in act.items()},
        idle_since=_s(rec.get("idle_since")),
        state_since=rec["state_since"] / 1000,
        wrap_up_until=_s(rec.get("wrap_until")),
        missed_offers=int(rec.get("misses", 0)),
    )


NULLABLE_EVENT_FIELDS = {
    "agent.state_changed": ("reason",),
    "interaction.abandoned": ("agent_id",),
    "interaction.cancelled": ("agent_id",),
    "interaction.offered": ("data",),
}
"""Fields an event always carries, null when unset (the scripts' msgpack drops nil)."""


def event(entry_id: str, fields: dict[bytes, bytes]) -> Event:
    """An event of the log from its stream entry (`t` type, `at` ms, `d` packed fields)."""
    body = msgpack.unpackb(fields[b"d"], raw=False, strict_map_key=False)
    etype = fields[b"t"].decode()
    return Event(
        id=entry_id,
        type=etype,
        at=int(fields[b"at"]) / 1000,
        fields={
            **dict.fromkeys(NULLABLE_EVENT_FIELDS.get(etype, ())),
            **{k: _data(v) if k == "data" else v for k, v in _map(body).items()},
        },
    )
