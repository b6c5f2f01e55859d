"""Domain models: queues, agents, interactions and events (no I/O, no clock)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from router.domain.fields import (
    DISPLAY_NAME,
    ID,
    NAME,
    REASON,
    Body,
    Doc,
    Integer,
    Matches,
    Number,
    OneOf,
    problem_at,
    problems_at,
)

Skills = dict[str, int]
"""A skill name mapped to a proficiency level (1..5) or, in a requirement, a minimum level."""

MAX_PRIORITY = 1000
MAX_LEVEL = 5
MAX_REQUIREMENT_SKILLS = 16
"""Skills in one requirement; bounds the best_skill score (store/records.py SKILL_SUM_MAX)."""
MAX_CHANNEL_CAPACITY = 32
"""Interactions an agent may hold on one channel; bounds the strategy score (ACTIVE_SLOTS)."""
MAX_CREDIT_S = 86_400
MAX_PREFERRED_WAIT_S = 3_600
MAX_PREFERRED_AGENTS = 16
MAX_STEPS = 16
"""Escalation steps of a queue: an arrival with extra skills takes a routing class per step."""
MAX_DATA_BYTES = 4_096
MAX_DATA_DEPTH = 16
"""Levels of nesting in `data`, which is level 1 itself (SPEC §4)."""
MAX_DURATION_S = 365 * 86_400
"""Bound on every other duration: a longer one is a mistake (and would overflow timestamps)."""
MAX_COUNT = 1_000_000_000
"""Bound on every other count, so that it fits the store's number types."""


class Channel(StrEnum):
    VOICE = "voice"
    CHAT = "chat"
    EMAIL = "email"


class Strategy(StrEnum):
    LONGEST_IDLE = "longest_idle"
    BEST_SKILL = "best_skill"


class AgentState(StrEnum):
    LOGGED_OUT = "logged_out"
    NOT_READY = "not_ready"
    AVAILABLE = "available"


class Activity(StrEnum):
    IDLE = "idle"
    OFFERED = "offered"
    BUSY = "busy"
    WRAP_UP = "wrap_up"


class InteractionStatus(StrEnum):
    QUEUED = "queued"
    OFFERED = "offered"
    CONNECTED = "connected"
    COMPLETED = "completed"
    ABANDONED = "abandoned"
    TIMED_OUT = "timed_out"
    BLOCKED = "blocked"
    CALLBACK = "callback"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        """True once the interaction can never be routed again."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {
        InteractionStatus.COMPLETED,
        InteractionStatus.ABANDONED,
        InteractionStatus.TIMED_OUT,
        InteractionStatus.BLOCKED,
        InteractionStatus.CANCELLED,
        InteractionStatus.FAILED,
    }
)


class RejectReason(StrEnum):
    REJECTED = "rejected"
    NO_ANSWER = "no_answer"


class Outcome(StrEnum):
    RESOLVED = "resolved"
    CUSTOMER_NO_ANSWER = "customer_no_answer"
    AGENT_LOST = "agent_lost"


EVENT_TYPES = (
    "interaction.queued",
    "interaction.offered",
    "interaction.connected",
    "interaction.completed",
    "interaction.abandoned",
    "interaction.timed_out",
    "interaction.blocked",
    "interaction.escalated",
    "interaction.requeued",
    "interaction.transferred",
    "interaction.failed",
    "interaction.cancelled",
    "callback.offered",
    "callback.accepted",
    "callback.scheduled",
    "agent.state_changed",
)
"""Every type of the durable event log (SPEC §4)."""


Name = Annotated[str, Matches(NAME)]
"""A skill or queue name (SPEC §2)."""
Id = Annotated[str, Matches(ID)]
"""An agent or interaction id."""
Level = Annotated[int, Integer(1, MAX_LEVEL)]
SkillRequirement = Annotated[
    dict[Name, Level],
    Field(max_length=MAX_REQUIREMENT_SKILLS),
    Doc(
        {
            "description": "Skill names mapped to minimum levels (1..5).",
            "examples": [{"billing": 2, "lang:fi": 3}],
        }
    ),
]
MIN_POSITIVE_S = 0.001
"""The shortest positive duration: the store keeps times in whole ms, and a shorter one would
count as none (an offer timeout of 1e-300 s expired every offer at once)."""
Duration = Annotated[float, Number(0, MAX_DURATION_S)]
PositiveDuration = Annotated[float, Number(0, MAX_DURATION_S, above=True, least=MIN_POSITIVE_S)]


class Step(Body):
    """From `after_s` of wait on, the queue requires `skills` (§3.1)."""

    after_s: PositiveDuration
    skills: SkillRequirement


class Sla(Body):
    """Service-level target: `target` of answers within `threshold_s`."""

    threshold_s: PositiveDuration = 20.0
    target: Annotated[float, Number(0, 1, above=True)] = 0.8


class CallbackPolicy(Body):
    """Callback policy (§3.10); absent: no callbacks."""

    offer_when_ewt_s: PositiveDuration = 120.0
    retry_after_s: PositiveDuration = 300.0
    max_attempts: Annotated[int, Integer(1, MAX_COUNT)] = 3
    max_schedule_ahead_s: PositiveDuration = 604800.0

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> CallbackPolicy:
        """The policy of a stored queue, as stored (QueueConfig.from_record)."""
        default = cls()
        return cls.model_construct(
            offer_when_ewt_s=float(record.get("offer_when_ewt_s", default.offer_when_ewt_s)),
            retry_after_s=float(record.get("retry_after_s", default.retry_after_s)),
            max_attempts=int(record.get("max_attempts", default.max_attempts)),
            max_schedule_ahead_s=float(
                record.get("max_schedule_ahead_s", default.max_schedule_ahead_s)
            ),
        )


class QueueConfig(Body):
    """A queue as the config file spells it (§7); absent fields take the defaults."""

    named_by_path = "name"

    name: Annotated[Name, Field(description="In a PUT, must equal the path's name (else 422).")]
    channel: Annotated[Channel, OneOf(Channel)] = Channel.VOICE
    skills: SkillRequirement = Field(default_factory=dict)
    strategy: Annotated[Strategy, OneOf(Strategy)] = Strategy.LONGEST_IDLE
    priority: Annotated[int, Integer(0, MAX_PRIORITY)] = 0
    credit_s: Annotated[float, Number(0, MAX_CREDIT_S)] = 0.0
    sla: Sla = Sla()
    offer_timeout_s: PositiveDuration = 15.0
    max_no_answer: Annotated[int, Integer(1, MAX_COUNT)] = 1
    wrap_up_s: Duration = 0.0
    max_waiting: Annotated[
        int,
        Integer(0, MAX_COUNT),
        Field(description="Arrivals beyond it are blocked; 0: no limit."),
    ] = 0
    max_wait_s: Annotated[Duration, Field(description="Then timed_out; 0: no limit.")] = 0.0
    callback: CallbackPolicy | None = Field(default=None, exclude_if=lambda v: v is None)
    steps: Annotated[
        tuple[Step, ...],
        Field(description="Escalation steps, in increasing `after_s`.", max_length=MAX_STEPS),
    ] = ()

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: tuple[Step, ...]) -> tuple[Step, ...]:
        found = [
            ((i, "after_s"), "must be greater than the previous step's after_s", step.after_s)
            for i, step in enumerate(steps)
            if i and step.after_s <= steps[i - 1].after_s
        ]
        if found:
            raise problems_at(found)
        return steps

    def step_skills(self, step: int) -> Skills:
        """The requirement of step `step` (0: the queue's own skills)."""
        return self.skills if step == 0 else self.steps[step - 1].skills

    def served_by(self, skills: Skills) -> bool:
        """Whether an agent with `skills` meets any step's requirement (staffs the queue)."""
        return any(
            all(skills.get(s, 0) >= level for s, level in self.step_skills(i).items())
            for i in range(len(self.steps) + 1)
        )

    def to_record(self) -> dict[str, Any]:
        """The plain map stored in Redis and read by the Lua scripts (`callback` nil if none)."""
        record = self.model_dump(mode="json")
        return {**record, "callback": record.get("callback")}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> QueueConfig:
        """Rebuild a queue from its stored map, as stored: not checked again, so that a queue an
        earlier version accepted (e.g. before a bound was tightened) still reads."""
        callback = record.get("callback")
        sla = record.get("sla") or {}
        return cls.model_construct(
            name=record["name"],
            channel=Channel(record["channel"]),
            skills=as_skills(record.get("skills")),
            strategy=Strategy(record["strategy"]),
            priority=int(record["priority"]),
            credit_s=float(record["credit_s"]),
            sla=Sla.model_construct(
                threshold_s=float(sla.get("threshold_s", 20.0)),
                target=float(sla.get("target", 0.8)),
            ),
            offer_timeout_s=float(record["offer_timeout_s"]),
            max_no_answer=int(record["max_no_answer"]),
            wrap_up_s=float(record["wrap_up_s"]),
            max_waiting=int(record["max_waiting"]),
            max_wait_s=float(record["max_wait_s"]),
            callback=None if not callback else CallbackPolicy.from_record(callback),
            steps=tuple(
                Step.model_construct(after_s=float(s["after_s"]), skills=as_skills(s.get("skills")))
                for s in record.get("steps") or ()
            ),
        )


def as_skills(value: Any) -> Skills:
    """A skill map read back from msgpack, where Lua packs an empty map as an empty list."""
    if not value:
        return {}
    return {str(k): int(v) for k, v in value.items()}


def data_problem(data: dict[str, Any]) -> str | None:
    """Why `data` cannot be stored: too deep, too large as compact JSON, or not JSON at all."""
    if nesting(data) > MAX_DATA_DEPTH:  # before json.dumps, which recurses
        return f"must nest at most {MAX_DATA_DEPTH} levels"
    try:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        size = len(text.encode())
    except (TypeError, ValueError):  # lone surrogates fail only at encode()
        return "must be a JSON value"
    if size > MAX_DATA_BYTES:
        return f"must be at most {MAX_DATA_BYTES} bytes as compact JSON"
    return None


class NewInteraction(Body):
    """POST /v1/interactions: an interaction to queue (§4)."""

    model_config = ConfigDict(
        json_schema_extra={
            "if": {
                "properties": {"preferred_agents": {"type": "array", "minItems": 1}},
                "required": ["preferred_agents"],
            },
            "then": {
                "properties": {"preferred_wait_s": {"type": "number"}},
                "required": ["preferred_wait_s"],
            },
            "else": {"properties": {"preferred_wait_s": {"type": "null"}}},
        }
    )

    queue: Annotated[Name, Field(description="The queue to route in.")]
    id: Annotated[
        Id | None,
        Field(
            description="Idempotency key: the same id and body again answers 200 with the "
            "current record, a different body 409. Generated when absent."
        ),
    ] = None
    channel: Annotated[
        Annotated[Channel, OneOf(Channel)] | None,
        Field(description="Must be the queue's channel (else 422)."),
    ] = None
    priority: Annotated[
        Annotated[int, Integer(0, MAX_PRIORITY)] | None,
        Field(description="Higher goes first; default the queue's."),
    ] = None
    credit_s: Annotated[
        Annotated[float, Number(0, MAX_CREDIT_S)] | None,
        Field(description="Head start in the queue's order; default the queue's."),
    ] = None
    skills: Annotated[
        SkillRequirement,
        Field(
            description="Extra skills, merged with every step's requirement (the higher "
            "minimum wins)."
        ),
    ] = Field(default_factory=dict)
    preferred_agents: Annotated[
        tuple[Id, ...],
        Field(
            max_length=MAX_PREFERRED_AGENTS,
            description="Agents offered the interaction first, in this order, during "
            "`preferred_wait_s` (§3.7).",
        ),
        Doc({"uniqueItems": True}),
    ] = ()
    preferred_wait_s: Annotated[
        Annotated[float, Number(0, MAX_PREFERRED_WAIT_S, above=True, least=MIN_POSITIVE_S)] | None,
        Field(description="Needed with a non-empty `preferred_agents`, and only with it."),
    ] = None
    data: Annotated[
        dict[str, Any] | None,
        Field(
            description=f"Opaque JSON object, at most {MAX_DATA_BYTES} bytes as compact UTF-8 "
            f"JSON, nesting at most {MAX_DATA_DEPTH} levels (`data` itself is level 1), "
            "integers within signed 64 bits; returned with the interaction and its offers."
        ),
    ] = None

    @field_validator("preferred_agents")
    @classmethod
    def _unique(cls, agents: tuple[str, ...]) -> tuple[str, ...]:
        first: dict[str, int] = {}
        found = []
        for i, agent in enumerate(agents):
            if agent in first:
                found.append(((i,), f"duplicates preferred_agents[{first[agent]}]", agent))
            first.setdefault(agent, i)
        if found:
            raise problems_at(found)
        return agents

    @field_validator("data")
    @classmethod
    def _storable(cls, data: dict[str, Any] | None) -> dict[str, Any] | None:
        problem = None if data is None else data_problem(data)
        if problem:
            raise problem_at((), problem, data)
        return data

    @model_validator(mode="after")
    def _preferred_wait(self) -> Self:
        """A non-empty `preferred_agents` needs a wait, and a wait needs the list."""
        wait = self.preferred_wait_s
        if self.preferred_agents and wait is None:
            raise problem_at(("preferred_wait_s",), "is required", None)
        if not self.preferred_agents and wait is not None:
            raise problem_at(("preferred_wait_s",), "needs preferred_agents", wait)
        return self


def _some_channel(channels: dict[Channel, int]) -> dict[Channel, int]:
    if not channels:
        raise PydanticCustomError("rule", "must have at least one channel")
    return channels


class AgentProfile(Body):
    """PUT /v1/agents/{id}: an agent's skills, channel capacities and name."""

    skills: Annotated[
        dict[Name, Level],
        Doc(
            {
                "description": "Skill names mapped to proficiency levels (1..5).",
                "examples": [{"billing": 2, "lang:fi": 3}],
            }
        ),
    ]
    channels: Annotated[
        dict[
            Annotated[Channel, OneOf(Channel)],
            Annotated[int, Integer(1, MAX_CHANNEL_CAPACITY)],
        ],
        AfterValidator(_some_channel),
        Doc({"minProperties": 1}),
        Field(description="Channel capacities; default one voice interaction."),
    ] = Field(default_factory=lambda: {Channel.VOICE: 1})
    name: Annotated[
        Annotated[str, Matches(DISPLAY_NAME)] | None, Field(description="Display name.")
    ] = None


@dataclass(frozen=True)
class Agent:
    id: str
    name: str | None
    skills: Skills
    channels: dict[str, int]
    state: AgentState
    reason: str | None
    activity: Activity
    interactions: dict[str, str]
    """Interaction id mapped to `offered` or `connected`."""
    interaction_channels: dict[str, str]
    idle_since: float | None
    state_since: float
    wrap_up_until: float | None
    missed_offers: int


@dataclass(frozen=True)
class Interaction:
    id: str
    queue: str
    channel: Channel
    status: InteractionStatus
    priority: int
    credit_s: float
    skills: Skills
    preferred_agents: tuple[str, ...]
    agent_id: str | None
    created_at: float
    enqueued_at: float
    step: int
    expires_at: float | None
    excluded_agents: tuple[str, ...]
    callback_offered: bool
    callback: bool
    scheduled_at: float | None
    attempts: int
    answered_at: float | None
    ended_at: float | None
    outcome: str | None
    data: Any
    position: int | None = None
    ewt_s: float | None = None

    def waited_s(self, now: float) -> float:
        """Seconds from `enqueued_at` to the answer, the end, or `now` while it waits."""
        end = next((t for t in (self.answered_at, self.ended_at) if t is not None), now)
        return max(0.0, end - self.enqueued_at)


@dataclass(frozen=True)
class Event:
    """One entry of the durable event log (SPEC §4)."""

    id: str
    type: str
    at: float
    fields: dict[str, Any]


class AcceptBody(Body):
    """POST /v1/interactions/{id}/accept: the agent takes the offer."""

    agent_id: Id


class RejectBody(Body):
    """POST /v1/interactions/{id}/reject: the agent rejects or misses the offer."""

    agent_id: Id
    reason: Annotated[
        RejectReason,
        OneOf(RejectReason),
        Field(description="`no_answer` counts as a miss (§3.5)."),
    ]


class CompleteBody(Body):
    """POST /v1/interactions/{id}/complete: the agent finished."""

    agent_id: Id
    outcome: Annotated[
        Outcome,
        OneOf(
            Outcome, excluded=(Outcome.AGENT_LOST,), why="agent_lost is set by a forced logout only"
        ),
    ] = Outcome.RESOLVED
    wrap_up_s: Annotated[
        Duration | None, Field(description="Overrides the queue's `wrap_up_s`.")
    ] = None


class TransferBody(Body):
    """POST /v1/interactions/{id}/transfer: the connected agent sends it to another queue."""

    agent_id: Annotated[Id, Field(description="The agent the interaction is connected to.")]
    queue: Annotated[Name, Field(description="The target queue, of the same channel.")]


_BAD_TIME = "must be an RFC 3339 time with a zone, e.g. 2026-11-23T09:30:00Z"


def _epoch(value: object) -> float:
    """An RFC 3339 time with a zone as epoch seconds."""
    try:
        if not isinstance(value, str):
            raise ValueError
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PydanticCustomError("time", _BAD_TIME) from None
    if moment.tzinfo is None:
        raise PydanticCustomError("time", _BAD_TIME)
    return moment.timestamp()


class CallbackBody(Body):
    """POST /v1/interactions/{id}/callback: the caller accepts the callback offered (§3.10)."""

    at: Annotated[
        float | None,
        BeforeValidator(_epoch),
        Doc({"type": "string", "format": "date-time"}, replace=True),
        Field(
            description="Schedule the callback for this time (at most the queue's "
            "`max_schedule_ahead_s` ahead); absent: keep the caller's place now."
        ),
    ] = None
    """Epoch seconds once validated."""


class StateChange(Body):
    """POST /v1/agents/{id}/state."""

    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"state": {"const": "available"}}, "required": ["state"]},
            "then": {"properties": {"reason": {"enum": [None]}}},
        }
    )

    state: Annotated[AgentState, OneOf(AgentState)]
    reason: Annotated[
        Annotated[str, Matches(REASON)] | None,
        Field(
            description="Why the agent is `not_ready` or `logged_out` (cleared on `available`, "
            "with which it is a 422)."
        ),
    ] = None
    force: Annotated[
        bool,
        Strict(),
        Field(
            description="Log out even with connected interactions, which complete with outcome "
            "`agent_lost` (role admin)."
        ),
    ] = False

    @model_validator(mode="after")
    def _reason_of_unavailable(self) -> Self:
        """A reason says why the agent is not available: none with `available`."""
        if self.state == AgentState.AVAILABLE and self.reason is not None:
            raise problem_at(("reason",), "only with not_ready or logged_out", self.reason)
        return self


def nesting(value: object) -> int:
    """Levels of nesting of a parsed value: 0 for a scalar, 1 for a flat object or list."""
    deepest = 0
    pending: list[tuple[object, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, Mapping):
            children: Iterable[object] = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        pending.extend((child, depth) for child in children)
    return deepest
