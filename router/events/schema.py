"""Each event type's fields (SPEC §4), declared once as TypedDicts: the API document's event
schemas (the SSE `data` and the webhook body) are generated from them, and the tests check every
event the Lua scripts emit against them. The docstring of each is its description."""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired, Union

from annotated_types import Ge
from pydantic import Field
from typing_extensions import TypedDict

from router.api.views import Seconds, Timestamp
from router.domain.fields import Doc, Integer
from router.domain.models import MAX_PRIORITY, AgentState, Id, Name, Outcome, Strategy

EventId = Annotated[
    str,
    Doc({"pattern": r"^\d+-\d+$"}),
    Field(description="Position in the durable event log (the SSE `id`)."),
]
Step = Annotated[int, Ge(0)]


class _Event(TypedDict):
    id: EventId
    at: Annotated[Timestamp, Field(description="When it happened.")]


class _AboutInteraction(_Event):
    interaction_id: Id
    queue: Name


class Routing(TypedDict):
    """Why this agent was chosen."""

    step: Annotated[Step, Field(description="Step in force.")]
    strategy: Strategy
    score: Annotated[
        float,
        Field(
            description="`longest_idle`: the agent's idle seconds; `best_skill`: the sum of its "
            "levels over the required skills."
        ),
    ]
    qualified: Annotated[
        int, Ge(0), Field(description="Agents of the routing class able to take it at the time.")
    ]
    preferred: Annotated[bool, Field(description="Offered as a preferred agent.")]


class InteractionQueuedEvent(_AboutInteraction):
    """Entered the line of `queue`: an arrival, or a transfer's target."""

    type: Literal["interaction.queued"]
    priority: Annotated[int, Integer(0, MAX_PRIORITY)]
    step: Step
    callback: NotRequired[
        Annotated[Literal[True], Field(description="A scheduled callback entering.")]
    ]


class InteractionOfferedEvent(_AboutInteraction):
    """Offered to `agent_id` until `expires_at`: ring the agent, then accept or reject."""

    type: Literal["interaction.offered"]
    agent_id: Id
    expires_at: Timestamp
    callback: Annotated[bool, Field(description="The offer is a callback.")]
    data: Annotated[
        dict[str, object] | None, Field(description="The interaction's data; null if none.")
    ]
    routing: Routing


class InteractionConnectedEvent(_AboutInteraction):
    """The agent accepted the offer."""

    type: Literal["interaction.connected"]
    agent_id: Id
    waited_s: Annotated[Seconds, Field(description="From `enqueued_at` to the accept.")]


class InteractionCompletedEvent(_AboutInteraction):
    """The agent finished (wrap-up follows), or a forced logout ended it with outcome
    `agent_lost` (then without `handle_s`)."""

    type: Literal["interaction.completed"]
    agent_id: Id
    outcome: Outcome
    handle_s: NotRequired[
        Annotated[Seconds, Field(description="From the accept to the completion.")]
    ]


class InteractionAbandonedEvent(_AboutInteraction):
    """The caller hung up while it waited; `agent_id` names the agent whose offer it withdrew,
    null when none."""

    type: Literal["interaction.abandoned"]
    agent_id: Id | None
    waited_s: Seconds


class InteractionTimedOutEvent(_AboutInteraction):
    """Waited `max_wait_s` on the line (§3.9)."""

    type: Literal["interaction.timed_out"]


class InteractionBlockedEvent(_AboutInteraction):
    """Arrived at a queue holding `max_waiting` interactions; never queued (§3.9)."""

    type: Literal["interaction.blocked"]


class InteractionEscalatedEvent(_AboutInteraction):
    """The wait reached a new escalation step (§3.1)."""

    type: Literal["interaction.escalated"]
    step: Annotated[int, Ge(1)]


class InteractionRequeuedEvent(_AboutInteraction):
    """An offer ended without an accept; the interaction keeps its place (§3.5)."""

    type: Literal["interaction.requeued"]
    agent_id: Id
    reason: Literal["rejected", "no_answer", "expired", "withdrawn", "customer_no_answer"]
    attempts: NotRequired[
        Annotated[int, Ge(1), Field(description="With `customer_no_answer`: dial attempts so far.")]
    ]


class InteractionTransferredEvent(_AboutInteraction):
    """The connected agent sent it to `queue`; an `interaction.queued` follows (§3.9)."""

    type: Literal["interaction.transferred"]
    agent_id: Id
    from_queue: Name


class InteractionFailedEvent(_AboutInteraction):
    """A callback's dial attempts are exhausted (§3.10)."""

    type: Literal["interaction.failed"]
    agent_id: Id
    attempts: Annotated[int, Ge(1)]


class InteractionCancelledEvent(_AboutInteraction):
    """The platform cancelled a callback, waiting, scheduled or offered (DELETE); not an abandon
    (§3.10)."""

    type: Literal["interaction.cancelled"]
    agent_id: Id | None


class CallbackOfferedEvent(_AboutInteraction):
    """The caller's EWT exceeds the queue's `offer_when_ewt_s`: offer it a callback."""

    type: Literal["callback.offered"]
    ewt_s: Seconds


class CallbackAcceptedEvent(_AboutInteraction):
    """The caller accepted the callback; it waits off the line in its place."""

    type: Literal["callback.accepted"]


class CallbackScheduledEvent(_AboutInteraction):
    """The caller chose a callback at `scheduled_at`; it enters the queue then."""

    type: Literal["callback.scheduled"]
    scheduled_at: Timestamp


class AgentStateChangedEvent(_Event):
    """The agent's state changed, by request or by the router (`not_ready`, reason
    `no_answer`, after missed offers)."""

    type: Literal["agent.state_changed"]
    agent_id: Id
    state: AgentState
    previous_state: AgentState
    reason: Annotated[str | None, Field(description="Null when none.")]


Event = Annotated[
    Union[  # noqa: UP007 (a runtime union of the tuple above, for the document)
        InteractionQueuedEvent,
        InteractionOfferedEvent,
        InteractionConnectedEvent,
        InteractionCompletedEvent,
        InteractionAbandonedEvent,
        InteractionTimedOutEvent,
        InteractionBlockedEvent,
        InteractionEscalatedEvent,
        InteractionRequeuedEvent,
        InteractionTransferredEvent,
        InteractionFailedEvent,
        InteractionCancelledEvent,
        CallbackOfferedEvent,
        CallbackAcceptedEvent,
        CallbackScheduledEvent,
        AgentStateChangedEvent,
    ],
    Field(discriminator="type", description="An event: the SSE `data` and the webhook body."),
]


class GapEvent(TypedDict):
    """`event: gap` (no `id:`): the resume point was trimmed from the log (`event_log_max`); the
    events between it and `oldest_id` are lost."""

    oldest_id: Annotated[str, Field(description="The oldest event id kept.")]
    after: Annotated[str, Field(description="The requested resume point.")]
