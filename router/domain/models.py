"""Domain models: queues, agents, interactions and events (no I/O, no clock)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

Skills = dict[str, int]
"""A skill name mapped to a proficiency level (1..5) or, in a requirement, a minimum level."""

MAX_PRIORITY = 1000
MAX_LEVEL = 5
MAX_REQUIREMENT_SKILLS = 16
"""Skills in one requirement; bounds the best_skill score (store/records.py SKILL_SUM_MAX)."""
MAX_CHANNEL_CAPACITY = 32
"""Interactions an agent may hold on one channel; bounds the strategy score (ACTIVE_SLOTS)."""


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


@dataclass(frozen=True)
class Step:
    """An escalation step: from `after_s` of wait on, the queue requires `skills`."""

    after_s: float
    skills: Skills


@dataclass(frozen=True)
class Sla:
    threshold_s: float = 20.0
    target: float = 0.8


@dataclass(frozen=True)
class CallbackPolicy:
    offer_when_ewt_s: float = 120.0
    retry_after_s: float = 300.0
    max_attempts: int = 3
    max_schedule_ahead_s: float = 604800.0


@dataclass(frozen=True)
class QueueConfig:
    """A routing target as the admin configures it (SPEC §7)."""

    name: str
    channel: Channel = Channel.VOICE
    skills: Skills = field(default_factory=dict)
    strategy: Strategy = Strategy.LONGEST_IDLE
    priority: int = 0
    credit_s: float = 0.0
    sla: Sla = field(default_factory=Sla)
    offer_timeout_s: float = 15.0
    max_no_answer: int = 1
    wrap_up_s: float = 0.0
    max_waiting: int = 0
    max_wait_s: float = 0.0
    callback: CallbackPolicy | None = None
    steps: tuple[Step, ...] = ()

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
        """The plain map stored in Redis and read by the Lua scripts."""
        return {
            "name": self.name,
            "channel": self.channel.value,
            "skills": dict(self.skills),
            "strategy": self.strategy.value,
            "priority": self.priority,
            "credit_s": self.credit_s,
            "sla": {"threshold_s": self.sla.threshold_s, "target": self.sla.target},
            "offer_timeout_s": self.offer_timeout_s,
            "max_no_answer": self.max_no_answer,
            "wrap_up_s": self.wrap_up_s,
            "max_waiting": self.max_waiting,
            "max_wait_s": self.max_wait_s,
            "callback": None
            if self.callback is None
            else {
                "offer_when_ewt_s": self.callback.offer_when_ewt_s,
                "retry_after_s": self.callback.retry_after_s,
                "max_attempts": self.callback.max_attempts,
                "max_schedule_ahead_s": self.callback.max_schedule_ahead_s,
            },
            "steps": [{"after_s": s.after_s, "skills": dict(s.skills)} for s in self.steps],
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> QueueConfig:
        """Rebuild a queue from its stored map."""
        callback = record.get("callback")
        sla = record.get("sla") or {}
        return cls(
            name=record["name"],
            channel=Channel(record["channel"]),
            skills=as_skills(record.get("skills")),
            strategy=Strategy(record["strategy"]),
            priority=int(record["priority"]),
            credit_s=float(record["credit_s"]),
            sla=Sla(float(sla.get("threshold_s", 20.0)), float(sla.get("target", 0.8))),
            offer_timeout_s=float(record["offer_timeout_s"]),
            max_no_answer=int(record["max_no_answer"]),
            wrap_up_s=float(record["wrap_up_s"]),
            max_waiting=int(record["max_waiting"]),
            max_wait_s=float(record["max_wait_s"]),
            callback=None if not callback else CallbackPolicy(**callback),
            steps=tuple(
                Step(float(s["after_s"]), as_skills(s.get("skills")))
                for s in record.get("steps") or ()
            ),
        )


def as_skills(value: Any) -> Skills:
    """A skill map read back from msgpack, where Lua packs an empty map as an empty list."""
    if not value:
        return {}
    return {str(k): int(v) for k, v in value.items()}


@dataclass(frozen=True)
class NewInteraction:
    """A validated request to queue an interaction."""

    queue: str
    id: str | None = None
    channel: Channel | None = None
    priority: int | None = None
    credit_s: float | None = None
    skills: Skills = field(default_factory=dict)
    preferred_agents: tuple[str, ...] = ()
    preferred_wait_s: float = 0.0
    data: Any = None


@dataclass(frozen=True)
class AgentProfile:
    """A validated request to create or update an agent."""

    skills: Skills
    channels: dict[Channel, int] = field(default_factory=lambda: {Channel.VOICE: 1})
    name: str | None = None


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


@dataclass(frozen=True)
class AgentAction:
    """The body of accept, reject, complete and transfer: who acts, and how."""

    agent_id: str
    reason: RejectReason = RejectReason.REJECTED
    outcome: Outcome = Outcome.RESOLVED
    wrap_up_s: float | None = None
    queue: str = ""


@dataclass(frozen=True)
class CallbackRequest:
    """The body of POST /v1/interactions/{id}/callback: now, or scheduled `at` (epoch s)."""

    at: float | None = None


@dataclass(frozen=True)
class StateChange:
    """The body of POST /v1/agents/{id}/state."""

    state: AgentState
    reason: str | None = None
    force: bool = False
