"""The record schema: every field the Lua library stores, one commented line each.

Records are msgpack maps under the keys of router/store/keys.py, written by router/lua/ (which
cites the class of each) and read by the codec and the invariant checker. Times are integer ms
since the epoch, durations in a `_s` field are seconds. A field the scripts set to nil is absent,
and Lua packs an empty map as an empty list (`[]`), so readers take maps through a helper.
"""

from __future__ import annotations

from typing import Required, TypedDict

from router.domain.models import MAX_CHANNEL_CAPACITY, MAX_LEVEL, MAX_REQUIREMENT_SKILLS

# Interactions --------------------------------------------------------------------------------


class LastOffer(TypedDict):
    """The last offer of an interaction that ended without an accept."""

    agent: str  # the agent it was offered to
    reason: str  # rejected | no_answer | expired | withdrawn


class Completion(TypedDict, total=False):
    """What the last completion of an interaction asked for (interaction_complete)."""

    outcome: Required[str]  # the Outcome requested
    wrap: int  # the wrap_up_s requested, ms; absent: the queue's


class LastTransfer(TypedDict):
    """The last transfer of an interaction (interaction_transfer)."""

    agent: str  # the agent that transferred it
    queue: str  # the queue it was sent to


class InteractionRecord(TypedDict, total=False):
    """String `ix:<id>` (lib/records.lua, lib/interactions.lua): one interaction."""

    id: Required[str]  # the interaction id
    queue: Required[str]  # the queue it waits in (the target, once transferred)
    channel: Required[str]  # voice | chat | email (its queue's)
    status: Required[str]  # an InteractionStatus (router/domain/models.py)
    priority: Required[int]  # 0..1000, higher first
    credit: Required[int]  # queue credit, ms: it waits as if it had arrived this much earlier
    skills: Required[dict[str, int]]  # extra skills the request requires (merged with the queue's)
    pref: Required[list[str]]  # preferred agent ids, in order
    data: str  # the request's opaque data, as JSON text
    fp: Required[str]  # fingerprint of the create request (same id, other body: a conflict)
    created: Required[int]  # when it was created
    enq: Required[int]  # when it entered its queue (arrival, transfer, a scheduled callback's at)
    cls: Required[
        int
    ]  # the class it waits in (step requirement + extra skills); blocked: the queue's
    step: Required[int]  # the escalation step in force (0: the queue's own requirement)
    excl: Required[dict[str, str]]  # agents that refused it -> how; never offered to them again
    attempts: Required[int]  # dial attempts of a callback
    cb_offered: Required[bool]  # a callback was offered to the caller
    seq: int  # arrival sequence, the tie-break of equal scores (absent when blocked)
    m: str  # its member in the queue and class sets: '<seq, 15 digits>:<id>' (see member_id)
    score: float  # order score (lib/scores.lua): priority, then virtual start
    pref_until: int  # end of its preferred wait; absent outside one
    pref_wait: int  # a scheduled callback's preferred wait (ms), started again when it enters
    ewt0: float  # the EWT (s) at arrival, for the EWT error histogram
    agent: str  # the agent it is offered or connected to
    offered: int  # when its last offer was made (its ring time ends at the accept)
    exp: int  # when the offer expires
    no_answer_by: str  # the agent whose dial attempt the customer did not answer
    last_offer: LastOffer  # the last offer that ended without an accept
    cb: bool  # it is a callback (accepted by the caller)
    cb_at: int  # a scheduled callback's time, until it enters the queue
    cb_req: int  # the `at` its callback was accepted with; absent: accepted without one
    cb_hold: int  # a callback held back until then (scheduled, or a retry wait)
    answered: int  # when it was last connected
    answered_once: bool  # it was answered (counted once, however many dial attempts)
    ended: int  # when it reached a terminal status
    outcome: str  # an Outcome, once completed
    done: Completion  # the completion requested since the last accept: its repeat is a retry
    transfers: int  # how many times it was transferred
    xfer: LastTransfer  # the last transfer: its exact repeat answers the current record
    position: int  # reply only: 1 + those ahead of it in its queue
    ewt: float  # reply only (create, get, list): its EWT now, seconds


MEMBER_ID_AT = 16
"""Where the interaction id starts in a member ('<seq, 15 digits>:<id>')."""


def member_id(member: str) -> str:
    """The interaction id of a member of a queue or class sorted set."""
    return member[MEMBER_ID_AT:]


# Agents --------------------------------------------------------------------------------------


class ActiveRecord(TypedDict):
    """One interaction an agent holds."""

    ch: str  # its channel
    st: str  # offered | connected


class HandleRecord(TypedDict):
    """A handle time that ends with the agent's wrap-up."""

    q: str  # the queue that answered it
    a: int  # when it was answered


class AgentRecord(TypedDict, total=False):
    """String `ag:<id>` (lib/records.lua, lib/agents.lua): one agent."""

    id: Required[str]  # the agent id
    name: str  # display name
    skills: Required[dict[str, int]]  # skill -> level 1..5
    channels: Required[dict[str, int]]  # channel -> capacity (interactions at once)
    state: Required[str]  # an AgentState: logged_out | not_ready | available
    reason: str  # the reason given with the state
    state_since: Required[int]  # when the state was set
    act: Required[dict[str, ActiveRecord]]  # interaction id -> what it holds
    misses: Required[int]  # offers missed in a row (no-answer, expiry)
    idle_since: int  # when it last became free (the longest_idle key)
    wrap_until: int  # end of its wrap-up
    switch_at: int  # when a late-ended wrap-up switched its activity (never stored)
    handles: list[HandleRecord]  # handle times ending with the current wrap-up
    m_by: str  # '<state>|<activity>' it is counted under in agents_by_state
    m_act: str  # the activity its time counts under in agent_time; absent: none
    m_since: int  # since when its time counts under m_act


# Queues and routing classes ------------------------------------------------------------------


class SlaRecord(TypedDict):
    threshold_s: float  # answered within this counts as within the SLA
    target: float  # the service level aimed at, 0..1


class CallbackRecord(TypedDict):
    offer_when_ewt_s: float  # a callback is offered once the EWT exceeds this
    retry_after_s: float  # wait after a dial attempt the customer missed
    max_attempts: int  # dial attempts before it fails
    max_schedule_ahead_s: float  # how far ahead a callback may be scheduled


class StepRecord(TypedDict):
    after_s: float  # from this wait on (exactly: not rounded to ms)
    skills: dict[str, int]  # the requirement of the step


class QueueRecord(TypedDict, total=False):
    """Field <name> of the hash `queues` (lib/records.lua): QueueConfig.to_record."""

    name: Required[str]  # the queue name
    channel: Required[str]  # the channel it serves
    skills: Required[dict[str, int]]  # the requirement of step 0
    strategy: Required[str]  # longest_idle | best_skill
    priority: Required[int]  # default priority of its interactions
    credit_s: Required[float]  # default queue credit
    sla: Required[SlaRecord]  # service-level threshold and target
    offer_timeout_s: Required[float]  # how long an offer rings
    max_no_answer: Required[int]  # misses in a row before the agent is set not_ready
    wrap_up_s: Required[float]  # wrap-up after completing
    max_waiting: Required[int]  # interactions on the line before arrivals are blocked (0: none)
    max_wait_s: Required[float]  # wait before timing out (0: none)
    callback: CallbackRecord  # the callback policy; absent: no callbacks
    steps: Required[list[StepRecord]]  # escalation steps, by after_s


class ClassRecord(TypedDict):
    """String `cls:<id>` (lib/classes.lua): a routing class, never changed once created."""

    id: int  # the class id, never reused
    channel: str  # its queues' channel
    strategy: str  # its queues' strategy
    skills: dict[str, int]  # the requirement


FILL_STATE = "<SSCAN cursor>:<agents scanned>"
"""The value of a class in the hash `clsfill` while it is filled (lib/class_fill.lua)."""

# Scores (lib/scores.lua), sent with every call in CallSettings.scores -----------------------

IDLE_SPAN_MS = 2**42
"""The time part of every score: 2^42 ms (about 139 years)."""
SCORE_BASE = 2**53
"""Strategy scores run from -2^53 up."""
SKILL_SUM_MAX = MAX_REQUIREMENT_SKILLS * MAX_LEVEL
"""The highest level sum of a requirement (16 skills x level 5): best_skill scores by the rest."""
ACTIVE_SLOTS = MAX_CHANNEL_CAPACITY + 1
"""How many values the active count of an agent on a channel takes (0..32)."""


class ScoreConstants(TypedDict):
    idle_span: int  # IDLE_SPAN_MS
    base: int  # SCORE_BASE
    skill_sum: int  # SKILL_SUM_MAX
    active_slots: int  # ACTIVE_SLOTS


SCORES = ScoreConstants(
    idle_span=IDLE_SPAN_MS, base=SCORE_BASE, skill_sum=SKILL_SUM_MAX, active_slots=ACTIVE_SLOTS
)


# Metrics (lib/metrics.lua) -------------------------------------------------------------------
# Hashes of counters, with fields named after the metric and its label values:
#   metric_counters    '<metric>|<label values>' -> count
#   metric_histograms  '<metric>|<label values>|<le>' -> observations in that bucket (not
#                      cumulative; their sum is the count); '<metric>|<label values>|sum_ms'
#                      the sum of the observations in whole ms ('|sum', seconds: versions
#                      before it, added to it)
#   agent_time         'total_ms|<activity>' agent-ms closed ('total|<activity>', seconds:
#                      versions before it, added to it), 'since|<activity>' the sum of the
#                      start times (ms) of the agents in it now (how many: agents_by_state)
#   agents_by_state    '<state>|<activity>' -> agents


class QueueAverages(TypedDict, total=False):
    """Hash `qs:<queue>`: recent times of the queue's interactions, seconds, as moving averages
    (EMA, 0.1 on the newest) for the EWT (§3.11; docs/metrics.md)."""

    aht: float  # handle time: accept -> end of wrap-up
    talk: float  # accept -> complete
    wrap: float  # the wrap-up that a completion starts
    ring: float  # offer -> accept


EWT_REFRESH_MS = 5_000
"""How old the competition hash `m:ewt` may grow before `tick` recomputes it (lib/ewt.lua)."""

COMPETITION_AT = "at"
"""Field of the hash `m:ewt` (lib/ewt.lua): when it was computed (ms). Every other field is a
class id, its value a msgpack list `[class, weight, class, weight, ...]`: the classes with
interactions waiting whose agents the class shares, and the weight of each waiting interaction
ahead in them, |S(R) ∩ S(c)|² / (|S(R)| · |S(c)|) (S: the agents that qualify)."""


class MetricsWindow(TypedDict, total=False):
    """Hash `m:w:<queue>:<minute>`: one minute of a queue's figures (expires after 20 min)."""

    arrived: int  # arrivals, blocked included
    answered: int  # first accepts
    answered_sla: int  # of which within the SLA threshold
    abandoned: int  # callers who hung up while waiting
    abandoned_sla: int  # of which within the SLA threshold
    handle_ms: int  # handle times ended, whole ms (queue_figures returns them as handle_sum)
    handle_sum: float  # the same in seconds, from versions before handle_ms
    handle_n: int  # how many


class QueueFigures(TypedDict, total=False):
    """A queue's live figures: the reply of queue_stats, and in metrics_snapshot."""

    waiting: Required[int]  # on the line (queued or offered)
    callbacks_waiting: Required[int]  # callbacks waiting off the line
    oldest_wait_s: Required[float]  # the oldest wait on the line
    ewt_s: Required[float]  # the EWT of an arrival now
    agents_available: Required[int]  # agents who could take an offer now
    agents_staffed: Required[int]  # logged-in agents who serve the queue
    aht_s: float  # the average handle time (QueueAverages.aht); absent: none yet
    window: Required[dict[str, float]]  # MetricsWindow's fields summed over the last 15 minutes,
    # handle_ms and handle_sum as handle_sum (seconds)


class MetricsSnapshot(TypedDict):
    """String `m:snap`: the one snapshot of time-dependent figures all routers export."""

    at: int  # when it was computed
    queues: dict[str, QueueFigures]  # queue name -> figures
    agent_seconds: dict[str, float]  # agent time by activity until `at` (never less than before)


# Calls and events ----------------------------------------------------------------------------


class CallSettings(TypedDict):
    """`cfg` of every call (lib/call.lua): the service's settings, packed apart."""

    retention_ms: int  # how long an ended interaction is kept
    log_max: int  # about how many entries the event log keeps
    exclusive: dict[str, bool]  # channels an agent serves alone
    max_classes: int  # max_routing_classes
    max_skills: int  # skills in one requirement (MAX_REQUIREMENT_SKILLS)
    fill_batch: int  # agents a routing call classifies into a new class (class_fill_batch)
    due_batch: int  # due timers every operation applies first
    buckets: dict[str, list[float]]  # histogram bounds (router/domain/stats.py BUCKETS)
    scores: ScoreConstants  # the constants of the scores
    ewt_refresh_ms: int  # EWT_REFRESH_MS


class EventEntry(TypedDict):
    """An entry of the stream `events` (lib/events.lua)."""

    t: str  # the event type (§4)
    at: int  # when
    d: bytes  # msgpack map: interaction_id, agent_id, queue and the fields of the type
