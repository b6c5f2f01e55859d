"""Property test: random operations from two routers never break an invariant (SPEC §3).

Each example sets up a small contact center (2-3 queues on voice and chat, 3-5 agents) in a
fresh namespace, then plays a random sequence of steps against two `Engine`s on two Redis
clients (two router processes). A step is one operation from either engine, or two operations
sent at once (`asyncio.gather`) from both, or a clock advance followed by a tick from one
engine, from both at once, or by nothing (the next operation then applies the due timers
itself). Operations reference agents and interactions that exist, and also invalid ones: the
engine must answer those with a `RouterError`, never another exception.

After every step the namespace is checked at the time of the last engine call (every script
applies the timers due at its `now` first, so nothing may be overdue then): the invariant
checker (router/store/invariants.py), no interaction lost, ended interactions stay ended, and
the event log agrees with the records. At the end the clock's time is ticked and
`check_invariants` must answer `[]`.

Hypothesis runs a sync test; each example gets its own event loop, Redis clients and namespace
(pytest-asyncio's session loop is left alone), on a database of its own of the session server.
The examples are derandomized (the same 300 on every run); a failure prints the engine calls
of the shrunk example, ready to paste as a reproduction. Every violation found so far is kept as
an explicit regression example at the end of the file.
"""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, cast

from hypothesis import HealthCheck, event, example, given, note, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from redis.asyncio import Redis

from router.domain.models import (
    EVENT_TYPES,
    TERMINAL_STATUSES,
    AgentProfile,
    AgentState,
    CallbackPolicy,
    Channel,
    Event,
    InteractionStatus,
    NewInteraction,
    Outcome,
    QueueConfig,
    RejectReason,
    Step,
    Strategy,
)
from router.errors import RouterError, StoreUnavailable
from router.settings import ServiceSettings
from router.store.engine import Engine
from router.store.invariants import Snapshot, check_invariants, find_violations
from router.store.records import InteractionRecord, QueueRecord
from router.store.server import RedisServer

T0 = 1_800_000_000.0
EXCLUSIVE = {"voice"}
DB = 7
"""The Redis database of this test: its SCANs never see the other tests' keys."""

SKILLS = ("sales", "support", "lang:fi")
AGENT_IDS = tuple(f"a{i}" for i in range(6))
"""The setup creates the first 3-5; `put_agent` may create the others, the rest are unknown."""
QUEUES = ("sales", "support", "chat")
NO_QUEUE = "nowhere"
GHOST = "ghost"
"""An interaction id that never exists."""
MAX_AHEAD_S = 60.0
"""The max_schedule_ahead_s of every callback policy."""

_examples = itertools.count()
_loaded: list[bool] = []

# Steps ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ix:
    """A reference to an interaction, resolved against the state after the previous step.

    `live`: the n-th (modulo) of those the operation applies to (offered ones for accept and
    reject, connected ones for complete and transfer, waiting ones for abandon, queued ones for
    accept_callback), else of any; `cb`: the same, among callbacks first (for accept_callback:
    among those offered a callback and not yet one); `any`: the n-th of every interaction
    created so far; `ghost`: an id that never exists.
    """

    n: int
    among: str = "live"


@dataclass(frozen=True)
class PutAgent:
    agent: int
    skills: tuple[tuple[str, int], ...]
    channels: tuple[tuple[Channel, int], ...]


@dataclass(frozen=True)
class SetState:
    agent: int
    state: AgentState
    reason: str | None = None
    force: bool = False


@dataclass(frozen=True)
class DeleteAgent:
    agent: int


@dataclass(frozen=True)
class Create:
    queue: str
    channel: Channel | None = None
    priority: int | None = None
    credit_s: float | None = None
    skills: tuple[tuple[str, int], ...] = ()
    preferred: tuple[int, ...] = ()
    preferred_wait_s: float = 0.0
    twice: bool = False
    """Send the same arrival from both engines at once: one creates it, both get it."""


@dataclass(frozen=True)
class Recreate:
    """An arrival reusing an id: the same request (a retry) or another (a conflict)."""

    ix: Ix
    same: bool


@dataclass(frozen=True)
class Accept:
    ix: Ix
    agent: int | None = None
    """An agent (index into AGENT_IDS), or None for the interaction's agent now."""
    retry: bool = False
    """Repeat a successful call at once from the other engine: it must answer the same."""


@dataclass(frozen=True)
class Reject:
    ix: Ix
    reason: RejectReason
    agent: int | None = None
    retry: bool = False


@dataclass(frozen=True)
class Complete:
    ix: Ix
    agent: int | None = None
    outcome: Outcome = Outcome.RESOLVED
    wrap_up_s: float | None = None
    retry: bool = False


@dataclass(frozen=True)
class Transfer:
    ix: Ix
    queue: str
    agent: int | None = None


@dataclass(frozen=True)
class Abandon:
    ix: Ix
    retry: bool = False


@dataclass(frozen=True)
class AcceptCallback:
    """The caller accepts the callback offered to it (§3.10): now (`at` None) or scheduled
    `at` seconds from now (0 or less, or beyond max_schedule_ahead_s: invalid, a 422)."""

    ix: Ix
    at: float | None = None
    retry: bool = False


@dataclass(frozen=True)
class UpsertQueue:
    queue: str
    variant: int


@dataclass(frozen=True)
class DeleteQueue:
    queue: str


@dataclass(frozen=True)
class Advance:
    """Move the clock on; then tick from engine 0, 1, both at once, or not at all (None)."""

    seconds: float
    tick: int | None


Op = (
    PutAgent
    | SetState
    | DeleteAgent
    | Create
    | Recreate
    | Accept
    | Reject
    | Complete
    | Transfer
    | Abandon
    | AcceptCallback
    | UpsertQueue
    | DeleteQueue
    | Advance
)


@dataclass(frozen=True)
class Solo:
    op: Op
    engine: int


@dataclass(frozen=True)
class Together:
    """Two operations sent at once, the first from engine 0, the second from engine 1."""

    first: Op
    second: Op


Action = Solo | Together


@dataclass(frozen=True)
class QueueKnobs:
    offer_timeout_s: float
    max_waiting: int
    max_wait_s: float
    wrap_up_s: float
    max_no_answer: int
    first_step_s: float
    callback: CallbackPolicy | None = None


@dataclass(frozen=True)
class AgentSetup:
    skills: tuple[tuple[str, int], ...]
    channels: tuple[tuple[Channel, int], ...]
    state: AgentState


@dataclass(frozen=True)
class Setup:
    queues: tuple[tuple[str, QueueKnobs], ...]
    agents: tuple[AgentSetup, ...]
    arrivals: tuple[tuple[str, bool], ...] = ()
    """Interactions that arrive once the agents are in, and whether their first offer is
    accepted (a warm start: the sequences then begin with calls offered and connected)."""
    callbacks: tuple[tuple[str, float | None], ...] = ()
    """Then interactions that arrive and, if offered a callback, accept it: now (None) or
    scheduled that many seconds ahead (the sequences then begin with callbacks waiting)."""


def queue_config(name: str, knobs: QueueKnobs, variant: int = 0) -> QueueConfig:
    """The queue `name` as the setup creates it (variant 0) or as an admin later changes it."""
    base: dict[str, Any] = {
        "offer_timeout_s": knobs.offer_timeout_s,
        "max_waiting": knobs.max_waiting,
        "max_wait_s": knobs.max_wait_s,
        "wrap_up_s": knobs.wrap_up_s,
        "max_no_answer": knobs.max_no_answer,
        "callback": knobs.callback,
    }
    if name == "sales":
        config = QueueConfig(
            name=name,
            channel=Channel.VOICE,
            skills={"sales": 2},
            steps=(
                Step(after_s=knobs.first_step_s, skills={"sales": 1}),
                Step(after_s=knobs.first_step_s + 4, skills={}),
            ),
            **base,
        )
    elif name == "support":
        config = QueueConfig(
            name=name,
            channel=Channel.VOICE,
            skills={"support": 1},
            strategy=Strategy.BEST_SKILL,
            **base,
        )
    else:
        config = QueueConfig(
            name=name,
            channel=Channel.CHAT,
            skills={"lang:fi": 1},
            steps=(Step(after_s=knobs.first_step_s, skills={}),),
            **base,
        )
    if variant == 1:  # limits and timers change (callbacks: one attempt, a short retry wait)
        return QueueConfig(
            **{
                **config.__dict__,
                "max_waiting": 1,
                "max_wait_s": 3.0,
                "offer_timeout_s": 1.0,
                "wrap_up_s": 0.5,
                "callback": config.callback
                and config.callback.model_copy(update={"retry_after_s": 0.5, "max_attempts": 1}),
            }
        )
    if variant == 2:  # requirement and strategy change, no steps, no callback policy
        return QueueConfig(
            **{
                **config.__dict__,
                "skills": {"support": 2} if name != "chat" else {},
                "steps": (),
                "strategy": Strategy.BEST_SKILL
                if config.strategy == Strategy.LONGEST_IDLE
                else Strategy.LONGEST_IDLE,
                "max_waiting": 0,
                "max_wait_s": 0.0,
                "callback": None,
            }
        )
    if variant == 3:  # the other channel (a 409 while interactions wait)
        other = Channel.CHAT if config.channel == Channel.VOICE else Channel.VOICE
        return QueueConfig(**{**config.__dict__, "channel": other})
    return config


APPLIES_TO: dict[type, set[str]] = {
    Accept: {"offered"},
    Reject: {"offered"},
    Complete: {"connected"},
    Transfer: {"connected"},
    Abandon: {"queued", "offered", "callback"},
    AcceptCallback: {"queued"},
}
"""The statuses an operation applies to: where an `Ix` of `live` looks first."""


# Strategies ----------------------------------------------------------------------------------

skill_items = st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 5), max_size=3).map(
    lambda d: tuple(sorted(d.items()))
)
channel_items = st.sampled_from(
    [
        ((Channel.VOICE, 1),),
        ((Channel.CHAT, 2),),
        ((Channel.CHAT, 3),),
        ((Channel.CHAT, 2), (Channel.VOICE, 1)),
        ((Channel.CHAT, 3), (Channel.VOICE, 1)),
    ]
)
agent_refs = st.integers(0, len(AGENT_IDS) - 1)
holder_or_agent = st.one_of(st.none(), st.none(), agent_refs)
ix_refs = st.builds(Ix, st.integers(0, 40), st.sampled_from(["live"] * 5 + ["any", "ghost"]))
cb_refs = st.builds(Ix, st.integers(0, 40), st.sampled_from(["cb"] * 6 + ["live", "any", "ghost"]))
"""References that look for callbacks first (or, for accept_callback, for callback offers)."""
queue_names = st.sampled_from((*QUEUES, NO_QUEUE))
seconds = st.one_of(
    st.sampled_from([0.0, 0.001, 0.5, 1.0, 2.5, 4.0, 6.0, 20.0]),
    st.integers(0, 12_000).map(lambda ms: ms / 1000),
)

callback_policies = st.builds(
    CallbackPolicy,
    offer_when_ewt_s=st.sampled_from([1.0, 5.0, 30.0]),
    retry_after_s=st.sampled_from([1.0, 2.5, 5.0]),
    max_attempts=st.integers(1, 3),
    max_schedule_ahead_s=st.just(MAX_AHEAD_S),
)
queue_knobs = st.builds(
    QueueKnobs,
    offer_timeout_s=st.sampled_from([1.0, 2.5, 5.0]),
    max_waiting=st.sampled_from([0, 2, 4]),
    max_wait_s=st.sampled_from([0.0, 6.0, 15.0]),
    wrap_up_s=st.sampled_from([0.0, 1.5, 4.0]),
    max_no_answer=st.sampled_from([1, 2]),
    first_step_s=st.sampled_from([1.0, 3.0]),
    callback=st.one_of(st.none(), callback_policies, callback_policies),
)
setups = st.builds(
    Setup,
    queues=st.sampled_from(
        [("sales", "chat"), ("support", "chat"), ("sales", "support"), QUEUES, QUEUES]
    ).flatmap(lambda names: st.tuples(*(st.tuples(st.just(n), queue_knobs) for n in names))),
    agents=st.lists(
        st.builds(
            AgentSetup,
            skills=skill_items,
            channels=channel_items,
            state=st.sampled_from(
                [AgentState.AVAILABLE, AgentState.AVAILABLE, AgentState.NOT_READY]
            ),
        ),
        min_size=3,
        max_size=5,
    ).map(tuple),
    arrivals=st.lists(st.tuples(st.sampled_from(QUEUES), st.booleans()), max_size=4).map(tuple),
    callbacks=st.lists(
        st.tuples(st.sampled_from(QUEUES), st.sampled_from([None, None, 2.0, 8.0])), max_size=3
    ).map(tuple),
)

operations: st.SearchStrategy[Op] = st.one_of(
    st.builds(PutAgent, agent_refs, skill_items, channel_items),
    st.builds(
        SetState,
        agent_refs,
        st.sampled_from(AgentState),
        reason=st.sampled_from([None, "break"]),
        force=st.booleans(),
    ),
    st.builds(SetState, agent_refs, st.just(AgentState.AVAILABLE)),
    st.builds(DeleteAgent, agent_refs),
    st.builds(
        Create,
        queue_names,
        channel=st.sampled_from([None, None, Channel.VOICE, Channel.CHAT]),
        priority=st.sampled_from([None, 0, 7, 1000]),
        credit_s=st.sampled_from([None, 0.0, 3.5]),
        skills=skill_items.map(lambda items: tuple((s, min(lv, 3)) for s, lv in items)),
        preferred=st.lists(agent_refs, max_size=2, unique=True).map(tuple),
        preferred_wait_s=st.sampled_from([1.0, 4.0]),
        twice=st.booleans(),
    ),
    st.builds(Create, st.sampled_from(QUEUES)),
    st.builds(
        Create,
        st.sampled_from(QUEUES),
        priority=st.sampled_from([None, 7]),
        credit_s=st.sampled_from([None, 3.5]),
        preferred=st.lists(agent_refs, max_size=2, unique=True).map(tuple),
        preferred_wait_s=st.sampled_from([1.0, 4.0]),
    ),
    st.builds(Recreate, ix_refs, st.booleans()),
    st.builds(Accept, ix_refs, holder_or_agent, retry=st.booleans()),
    st.builds(Accept, ix_refs),
    st.builds(Accept, ix_refs),
    st.builds(Reject, ix_refs, st.sampled_from(RejectReason), holder_or_agent, st.booleans()),
    st.builds(
        Complete,
        ix_refs,
        holder_or_agent,
        st.sampled_from(Outcome),
        st.sampled_from([None, None, 0.0, 0.7, 3.0]),
        st.booleans(),
    ),
    st.builds(Complete, ix_refs),
    st.builds(Transfer, ix_refs, queue_names, holder_or_agent),
    st.builds(Transfer, ix_refs, st.sampled_from(["sales", "support"])),
    st.builds(Abandon, ix_refs, st.booleans()),
    # Callbacks (§3.10): accept an offer now, scheduled (valid or not), dial attempts that the
    # customer does not answer, callback offers refused, cancels, transfers.
    st.builds(AcceptCallback, cb_refs, retry=st.booleans()),
    st.builds(AcceptCallback, cb_refs),
    st.builds(
        AcceptCallback,
        cb_refs,
        st.sampled_from([0.5, 3.0, 10.0, MAX_AHEAD_S, 0.0, -1.0, MAX_AHEAD_S + 0.001]),
        st.booleans(),
    ),
    st.builds(Accept, cb_refs),
    st.builds(Complete, cb_refs, outcome=st.just(Outcome.CUSTOMER_NO_ANSWER), retry=st.booleans()),
    st.builds(Complete, ix_refs, outcome=st.just(Outcome.CUSTOMER_NO_ANSWER)),
    st.builds(Reject, cb_refs, st.sampled_from(RejectReason)),
    st.builds(Abandon, cb_refs, st.booleans()),
    st.builds(Transfer, cb_refs, st.sampled_from(QUEUES)),
    st.builds(UpsertQueue, st.sampled_from(QUEUES), st.integers(0, 3)),
    st.builds(DeleteQueue, st.sampled_from(QUEUES)),
    st.builds(Advance, seconds, st.sampled_from([None, 0, 1, 2])),
    st.builds(Advance, seconds, st.sampled_from([None, 0, 1, 2])),
)
steps: st.SearchStrategy[Action] = st.one_of(
    st.builds(Solo, operations, st.integers(0, 1)),
    st.builds(Solo, operations, st.integers(0, 1)),
    st.builds(Together, operations, operations),
)


# A snapshot in one round trip ------------------------------------------------------------------

_DUMP = """
local out = {}
for _, key in ipairs(redis.call('KEYS', ARGV[1])) do
  local kind = redis.call('TYPE', key).ok
  local value = false
  if kind == 'string' then value = redis.call('GET', key)
  elseif kind == 'zset' then value = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  elseif kind == 'set' then value = redis.call('SMEMBERS', key)
  elseif kind == 'hash' then value = redis.call('HGETALL', key)
  end
  out[#out + 1] = {key, kind, value}
end
return out
"""


class Frozen:
    """The namespace as one script read it, behind the Redis calls `Snapshot.read` makes.

    `Snapshot.read` sends one command per key; after every step of every example that is most
    of the test's time. This view loads every key at once (atomically, too) and answers the
    reads it knows from memory; any other call goes to the real client.
    """

    def __init__(self, client: Redis, values: dict[str, tuple[str, Any]]) -> None:
        self._client = client
        self._values = values

    @classmethod
    async def load(cls, client: Redis, pattern: str) -> Frozen:
        rows = await client.eval(_DUMP, 0, pattern)
        return cls(client, {key.decode(): (kind.decode(), value) for key, kind, value in rows})

    def _of(self, key: str, kind: str) -> Any:
        found = self._values.get(key)
        return found[1] if found is not None and found[0] == kind else None

    async def scan_iter(self, match: str = "*", count: int | None = None) -> AsyncIterator[bytes]:
        for key in self._values:
            if fnmatch.fnmatchcase(key, match):
                yield key.encode()

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = self._of(key, "string")
        return value

    async def zrange(
        self, key: str, start: int, end: int, withscores: bool = False
    ) -> list[tuple[bytes, float]]:
        assert (start, end, withscores) == (0, -1, True)
        flat = self._of(key, "zset") or []
        return [(flat[i], float(flat[i + 1])) for i in range(0, len(flat), 2)]

    async def smembers(self, key: str) -> set[bytes]:
        return set(self._of(key, "set") or ())

    async def hgetall(self, key: str) -> dict[bytes, bytes]:
        flat = self._of(key, "hash") or []
        return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


async def snapshot(engine: Engine) -> Snapshot:
    """`Snapshot.read` of the engine's namespace, read in one round trip."""
    return (await snapshot_and_counters(engine))[0]


async def snapshot_and_counters(engine: Engine) -> tuple[Snapshot, dict[str, int]]:
    """The snapshot and the business counters (`field: value`), of the same read."""
    pattern = engine.keys.prefix.replace("{", "[{]") + "*"
    view = await Frozen.load(engine.redis, pattern)
    raw = await view.hgetall(engine.keys.metric_counters)
    counters = {k.decode(): int(v) for k, v in raw.items()}
    return await Snapshot.read(cast(Redis, view), engine.keys), counters


COUNTED = (
    "acd_callbacks_offered_total|",
    "acd_callbacks_accepted_total|",
    "acd_callbacks_cancelled_total|",
    "acd_callbacks_failed_total|",
    "acd_interactions_answered_total|",
    "acd_interactions_abandoned_total|",
)
"""The counters the events predict: each callback event counted once, a callback answered once
(§3.10) however many dial attempts, a cancel not an abandon."""


def step_in_force(queue: QueueRecord, enq_ms: int, now_ms: int) -> int:
    """The step of the queue's requirement at the wait `now - enq` (§3.1)."""
    steps = queue.get("steps") or []
    return max(
        (i for i, st in enumerate(steps, start=1) if st["after_s"] * 1000 <= now_ms - enq_ms),
        default=0,
    )


# The runner ----------------------------------------------------------------------------------


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"T0 + {value - T0:.3f}" if value > T0 / 2 else repr(value)
    return repr(value)


@dataclass
class Run:
    """Plays one example against two engines and checks the namespace after every step."""

    engines: tuple[Engine, Engine]
    setup: Setup
    now: float = T0
    applied_at: float = T0
    """The `now` of the last engine call: every timer due then has been applied."""
    created: list[str] = field(default_factory=list)
    requests: dict[str, NewInteraction] = field(default_factory=dict)
    ended: dict[str, str] = field(default_factory=dict)
    event_status: dict[str, str] = field(default_factory=dict)
    agent_state: dict[str, str] = field(default_factory=dict)
    last_event: str = "0"
    last_event_at: float = T0
    knobs: dict[str, QueueKnobs] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    fresh: itertools.count[int] = field(default_factory=itertools.count)
    status: dict[str, str] = field(default_factory=dict)
    holders: dict[str, str] = field(default_factory=dict)
    expires: dict[str, float] = field(default_factory=dict)
    """Status, agent and offer expiry of each interaction after the previous step (references
    resolve here)."""
    concurrent: bool = False
    """True while the two operations of a pair run: a retry may then meet the other's change."""
    cb: dict[str, bool] = field(default_factory=dict)
    cb_offered: dict[str, bool] = field(default_factory=dict)
    holds: dict[str, float] = field(default_factory=dict)
    """Callback flags and the end of a callback's hold (retry wait or schedule, ms) after the
    previous step."""
    policies: dict[str, CallbackPolicy | None] = field(default_factory=dict)
    """The callback policy of each queue as the last successful upsert set it."""
    # What the events say about callbacks (§3.10):
    ev_cb: set[str] = field(default_factory=set)
    ev_cb_offered: set[str] = field(default_factory=set)
    ev_attempts: Counter[str] = field(default_factory=Counter)
    scheduled: dict[str, float] = field(default_factory=dict)
    """Callbacks scheduled and not yet entered: their `at`."""
    entered: dict[str, float] = field(default_factory=dict)
    """Scheduled callbacks that entered their queue: their `enqueued_at` must be `at`."""
    answered: set[str] = field(default_factory=set)
    """Interactions answered since their arrival in their current queue."""
    counts: Counter[str] = field(default_factory=Counter)
    """The counters of COUNTED as the events predict them."""

    # Calls

    async def call(self, engine: int, name: str, *args: Any, **kw: Any) -> Any:
        """One engine call, logged; a RouterError is returned, anything else propagates."""
        shown = ", ".join([*map(_fmt, args), *(f"{k}={_fmt(v)}" for k, v in kw.items())])
        self.log.append(f"e{engine}.{name}({shown})")
        method: Callable[..., Awaitable[Any]] = getattr(self.engines[engine], name)
        self.applied_at = max(self.applied_at, self.now)
        try:
            result = await method(*args, **kw)
        except StoreUnavailable:
            raise
        except RouterError as error:
            failed = error
        else:
            if currently_in_test_context():
                event(f"{name}: ok")
            return result
        assert failed.status in (404, 409, 422), (name, failed)
        if currently_in_test_context():
            event(f"{name}: {type(failed).__name__}")
        self.log.append(f"  -> {type(failed).__name__}: {failed.detail}")
        return failed

    def advance(self, seconds: float) -> None:
        """Move the clock on, in whole milliseconds as the store keeps time (no float drift)."""
        self.now = (round(self.now * 1000) + round(seconds * 1000)) / 1000

    def ix_id(self, op: Op) -> str:
        """The interaction an operation refers to (see `Ix`)."""
        ref: Ix = getattr(op, "ix", Ix(0, "ghost"))
        if ref.among == "ghost" or not self.created:
            return GHOST
        pool = self.created
        if ref.among in ("live", "cb"):
            wanted = APPLIES_TO.get(type(op), set())
            live = [i for i in self.created if self.status.get(i) in wanted]
            if ref.among == "cb" and isinstance(op, AcceptCallback):
                live = [i for i in live if self.cb_offered.get(i) and not self.cb.get(i)] or live
            elif ref.among == "cb":
                live = [i for i in live if self.cb.get(i)] or live
            pool = live or pool
        return pool[ref.n % len(pool)]

    def agent_of(self, ix_id: str, ref: int | None) -> str:
        """The agent an operation names, or (None) the one the interaction is offered or
        connected to, as the previous step left it."""
        if ref is not None:
            return AGENT_IDS[ref]
        return self.holders.get(ix_id) or AGENT_IDS[0]

    # Setup

    async def start(self) -> None:
        for name, knobs in self.setup.queues:
            self.knobs[name] = knobs
            await self.call(0, "upsert_queue", queue_config(name, knobs), self.now)
            self.policies[name] = knobs.callback
        for aid, agent in zip(AGENT_IDS, self.setup.agents, strict=False):
            profile = AgentProfile(skills=dict(agent.skills), channels=dict(agent.channels))
            await self.call(0, "put_agent", aid, profile, self.now)
            await self.call(1, "set_agent_state", aid, agent.state, self.now)
        for i, (queue, answered) in enumerate(self.setup.arrivals):
            ix_id = await self.create(Create(queue), i % 2)
            if ix_id is not None and answered:
                found = await self.engines[0].get_interaction(ix_id, self.now)
                if found is not None and found.agent_id is not None:
                    await self.call(i % 2, "accept", ix_id, found.agent_id, self.now)
        for i, (queue, ahead) in enumerate(self.setup.callbacks):
            ix_id = await self.create(Create(queue), i % 2)
            if ix_id is None:
                continue
            found = await self.engines[0].get_interaction(ix_id, self.now)
            if found is not None and found.callback_offered:
                at = None if ahead is None else self.now + ahead
                await self.call(i % 2, "accept_callback", ix_id, self.now, at=at)
        await self.check()

    # Steps

    async def step(self, step: Action) -> None:
        if isinstance(step, Solo):
            self.log.append(f"# {step}")
            await self.prepare(step.op, step.engine)()
        else:
            self.log.append(f"# {step} (at once)")
            first = self.prepare(step.first, 0)
            second = self.prepare(step.second, 1)
            self.concurrent = True
            try:
                await asyncio.gather(first(), second())
            finally:
                self.concurrent = False
        await self.check()

    def prepare(self, op: Op, engine: int) -> Callable[[], Awaitable[None]]:
        """Resolve the references now, so that both operations of a pair see the same state."""
        if isinstance(op, Advance):
            # In a pair the clock moves first; both operations then run at the new time.
            self.advance(op.seconds)
            op = Advance(0.0, op.tick)
        ix_id = self.ix_id(op)
        agent = self.agent_of(ix_id, getattr(op, "agent", None))
        return lambda: self.apply(op, engine, ix_id, agent)

    async def apply(self, op: Op, e: int, ix_id: str, agent: str) -> None:
        """Run `op` on engine `e` and check its answer."""
        await self.APPLY[type(op)](self, op, e, ix_id, agent, self.now)

    async def _put_agent(self, op: PutAgent, e: int, ix_id: str, agent: str, now: float) -> None:
        profile = AgentProfile(skills=dict(op.skills), channels=dict(op.channels))
        res = await self.call(e, "put_agent", AGENT_IDS[op.agent], profile, now)
        if not isinstance(res, RouterError):
            assert res[0].skills == dict(op.skills)

    async def _set_state(self, op: SetState, e: int, ix_id: str, agent: str, now: float) -> None:
        res = await self.call(
            e,
            "set_agent_state",
            AGENT_IDS[op.agent],
            op.state,
            now,
            reason=op.reason,
            force=op.force,
        )
        if not isinstance(res, RouterError):
            assert res.state == op.state

    async def _delete_agent(
        self, op: DeleteAgent, e: int, ix_id: str, agent: str, now: float
    ) -> None:
        await self.call(e, "delete_agent", AGENT_IDS[op.agent], now)

    async def _create(self, op: Create, e: int, ix_id: str, agent: str, now: float) -> None:
        await self.create(op, e)

    async def _recreate(self, op: Recreate, e: int, ix_id: str, agent: str, now: float) -> None:
        await self.recreate(op, e, ix_id)

    async def _accept(self, op: Accept, e: int, ix_id: str, agent: str, now: float) -> None:
        expires = self.expires.get(ix_id, float("inf"))
        res = await self.call(e, "accept", ix_id, agent, now)
        if not isinstance(res, RouterError):
            assert (res.status, res.agent_id) == (InteractionStatus.CONNECTED, agent)
            # §3.5: an accept at or after expires_at is a 409, however late the timer runs
            # (in a pair the other operation may have made a new offer).
            assert self.concurrent or self.holders.get(ix_id) != agent or now < expires, (
                f"{ix_id} accepted at {_fmt(now)}, its offer expired at {_fmt(expires)}"
            )
            if op.retry:
                await self.retry(e, res, "accept", ix_id, agent, now)

    async def _reject(self, op: Reject, e: int, ix_id: str, agent: str, now: float) -> None:
        res = await self.call(e, "reject", ix_id, agent, op.reason, now)
        if not isinstance(res, RouterError):
            assert agent in res.excluded_agents
            if op.retry:
                await self.retry(e, None, "reject", ix_id, agent, op.reason, now)

    async def _complete(self, op: Complete, e: int, ix_id: str, agent: str, now: float) -> None:
        kw = {"outcome": op.outcome, "wrap_up_s": op.wrap_up_s}
        before = self.status.get(ix_id)
        res = await self.call(e, "complete", ix_id, agent, now, **kw)
        if not isinstance(res, RouterError):
            if before == "connected" and res.callback and op.outcome == "customer_no_answer":
                # §3.10: back in its place for another dial attempt, or failed.
                assert res.status in (InteractionStatus.CALLBACK, InteractionStatus.FAILED)
                assert res.attempts >= 1, res
                if not self.concurrent:
                    policy = self.policies.get(res.queue)
                    again = policy is not None and res.attempts < policy.max_attempts
                    assert (res.status == InteractionStatus.CALLBACK) == again, (res, policy)
            elif before == "connected" and not self.concurrent:
                assert res.status == InteractionStatus.COMPLETED, res
            if op.retry:
                await self.retry(e, res, "complete", ix_id, agent, now, **kw)

    async def _transfer(self, op: Transfer, e: int, ix_id: str, agent: str, now: float) -> None:
        res = await self.call(e, "transfer", ix_id, agent, op.queue, now)
        if not isinstance(res, RouterError):
            assert res.queue == op.queue
            assert res.status in (InteractionStatus.QUEUED, InteractionStatus.OFFERED)

    async def _abandon(self, op: Abandon, e: int, ix_id: str, agent: str, now: float) -> None:
        res = await self.call(e, "abandon", ix_id, now)
        if not isinstance(res, RouterError):
            # §3.10: DELETE cancels a callback; it is not an abandon.
            want = InteractionStatus.CANCELLED if res.callback else InteractionStatus.ABANDONED
            assert res.status == want, res
            if op.retry:
                await self.retry(e, res, "abandon", ix_id, now)

    async def _accept_callback(
        self, op: AcceptCallback, e: int, ix_id: str, agent: str, now: float
    ) -> None:
        await self.accept_callback(op, e, ix_id)

    async def _upsert_queue(
        self, op: UpsertQueue, e: int, ix_id: str, agent: str, now: float
    ) -> None:
        knobs = self.knobs.get(op.queue) or self.setup.queues[0][1]
        config = queue_config(op.queue, knobs, op.variant)
        res = await self.call(e, "upsert_queue", config, now)
        if not isinstance(res, RouterError):
            self.policies[op.queue] = config.callback

    async def _delete_queue(
        self, op: DeleteQueue, e: int, ix_id: str, agent: str, now: float
    ) -> None:
        res = await self.call(e, "delete_queue", op.queue, now)
        if not isinstance(res, RouterError):
            self.policies.pop(op.queue, None)

    async def _advance(self, op: Advance, e: int, ix_id: str, agent: str, now: float) -> None:
        self.advance(op.seconds)
        if op.tick is None:
            self.log.append(f"  (clock now {_fmt(self.now)}, no tick)")
        elif op.tick < 2:
            await self.call(op.tick, "tick", self.now)
        else:
            await asyncio.gather(self.call(0, "tick", self.now), self.call(1, "tick", self.now))

    APPLY: ClassVar[dict[type, Callable[..., Awaitable[None]]]] = {
        PutAgent: _put_agent,
        SetState: _set_state,
        DeleteAgent: _delete_agent,
        Create: _create,
        Recreate: _recreate,
        Accept: _accept,
        Reject: _reject,
        Complete: _complete,
        Transfer: _transfer,
        Abandon: _abandon,
        AcceptCallback: _accept_callback,
        UpsertQueue: _upsert_queue,
        DeleteQueue: _delete_queue,
        Advance: _advance,
    }

    async def accept_callback(self, op: AcceptCallback, e: int, ix_id: str) -> None:
        now = self.now
        at = None if op.at is None else (round(now * 1000) + round(op.at * 1000)) / 1000
        res = await self.call(e, "accept_callback", ix_id, now, at=at)
        was_callback = self.cb.get(ix_id, False)
        if isinstance(res, RouterError):
            return
        assert res.callback, res
        assert res.callback_offered, res
        if was_callback or self.concurrent:
            return  # a retry: the current record, whatever became of it
        # A new acceptance: a valid `at` (§3.10), and the callback waits (or is scheduled).
        assert op.at is None or 0 < op.at <= MAX_AHEAD_S, f"accepted {op.at} s ahead"
        assert res.status == InteractionStatus.CALLBACK, res
        assert res.scheduled_at == at, res
        assert (res.position is None) == (at is not None), res
        if op.retry:
            await self.retry(e, res, "accept_callback", ix_id, now, at=at)

    async def retry(self, e: int, first: Any, name: str, *args: Any, **kw: Any) -> None:
        """A platform's retry of a call that succeeded answers 200 with the current record."""
        res = await self.call(1 - e, name, *args, **kw)
        if self.concurrent:
            return
        assert not isinstance(res, RouterError), f"retry of {name} failed: {res!r}"
        if first is not None:
            assert (res.status, res.agent_id) == (first.status, first.agent_id)

    async def create(self, op: Create, e: int) -> str | None:
        """The arrival from one engine, or from both at once (`twice`); its id if created."""
        ix_id = f"i{next(self.fresh)}"
        request = NewInteraction(
            queue=op.queue,
            id=ix_id,
            channel=op.channel,
            priority=op.priority,
            credit_s=op.credit_s,
            skills=dict(op.skills),
            preferred_agents=tuple(AGENT_IDS[a] for a in op.preferred),
            preferred_wait_s=op.preferred_wait_s if op.preferred else None,
            data={"n": ix_id},
        )
        results: list[Any]
        if op.twice:
            results = [
                *await asyncio.gather(
                    self.call(e, "create_interaction", request, self.now),
                    self.call(1 - e, "create_interaction", request, self.now),
                )
            ]
        else:
            results = [await self.call(e, "create_interaction", request, self.now)]
        ok = [r for r in results if not isinstance(r, RouterError)]
        assert len(ok) in (0, len(results)), f"the same arrival answered {results}"
        if not ok:
            return None
        assert [created for _, created in ok].count(True) == 1, results
        assert len({(ix.id, ix.created_at, ix.queue) for ix, _ in ok}) == 1, results
        ix = ok[0][0]
        assert ix.status in (
            InteractionStatus.QUEUED,
            InteractionStatus.OFFERED,
            InteractionStatus.BLOCKED,
        )
        self.created.append(ix_id)
        self.requests[ix_id] = request
        return ix_id

    async def recreate(self, op: Recreate, e: int, ix_id: str) -> None:
        if ix_id == GHOST:
            return
        request = self.requests[ix_id]
        if not op.same:
            request = NewInteraction(**{**request.__dict__, "priority": 999})
        res = await self.call(e, "create_interaction", request, self.now)
        if op.same:
            assert not isinstance(res, RouterError), f"a retried arrival failed: {res!r}"
            assert res[1] is False
        else:
            assert isinstance(res, RouterError), "a conflicting arrival succeeded"

    # Checks

    async def events(self) -> list[Event]:
        found: list[Event] = []
        while batch := await self.engines[1].read_events(self.last_event):
            found.extend(batch)
            self.last_event = batch[-1].id
        return found

    def check_event(self, event: Event) -> None:
        assert event.type in EVENT_TYPES, event
        assert self.last_event_at <= event.at <= self.now, (event, self.now)
        self.last_event_at = event.at
        f = event.fields
        if event.type == "agent.state_changed":
            assert f["agent_id"] in AGENT_IDS, event
            assert f["state"] in set(AgentState), event
            assert f["previous_state"] in set(AgentState), event
            self.agent_state[f["agent_id"]] = f["state"]
            return
        ix_id, queue = f["interaction_id"], f["queue"]
        assert ix_id in self.requests, event
        assert queue in QUEUES, event
        before = self.event_status.get(ix_id)
        if event.type.startswith("callback."):
            self.check_callback_event(event, before)
            return
        self.check_interaction_event(event, before)

    def check_interaction_event(self, event: Event, before: str | None) -> None:
        f = event.fields
        ix_id, queue = f["interaction_id"], f["queue"]
        kind = event.type.partition(".")[2]
        cb = ix_id in self.ev_cb
        if kind in ("offered", "connected"):
            assert f["agent_id"] in AGENT_IDS, event
        if kind == "offered":
            self.check_offer(event, cb)
        if kind in ("connected", "abandoned"):
            assert f["waited_s"] >= 0, event
        if kind == "connected":
            if cb:
                self.ev_attempts[ix_id] += 1
            if ix_id not in self.answered:
                self.answered.add(ix_id)
                self.counts[f"acd_interactions_answered_total|{queue}"] += 1
        if kind == "transferred":
            # A new arrival in the target queue: a caller on the line, a callback no more.
            self.answered.discard(ix_id)
            self.entered.pop(ix_id, None)
            self.ev_cb.discard(ix_id)
            self.ev_cb_offered.discard(ix_id)
            self.ev_attempts.pop(ix_id, None)
        if kind == "abandoned":
            assert not cb, (event, "a callback is cancelled, not abandoned")
            self.counts[f"acd_interactions_abandoned_total|{queue}"] += 1
        self.check_callback_end(event, kind, before, cb)
        if kind in ("queued", "requeued", "offered", "connected") or kind in TERMINAL_STATUSES:
            if kind == "queued":
                status = "callback" if f.get("callback") else "queued"
            elif kind == "requeued":
                status = "callback" if cb else "queued"
            else:
                status = kind
            self.event_status[ix_id] = status

    def check_offer(self, event: Event, cb: bool) -> None:
        f = event.fields
        ix_id = f["interaction_id"]
        assert f["expires_at"] > event.at, event
        assert f["callback"] is cb, (event, "a callback" if cb else "not a callback")
        # A callback is routed only once its schedule or retry wait is over (§3.10).
        assert ix_id not in self.scheduled, (event, "offered before its scheduled time")
        hold = self.holds.get(ix_id)
        assert not hold or round(event.at * 1000) >= hold, (event, "offered in its hold")

    def check_callback_end(self, event: Event, kind: str, before: str | None, cb: bool) -> None:
        """A callback's dial attempt missed, its cancel, failure, or scheduled entry (§3.10)."""
        f = event.fields
        ix_id, queue = f["interaction_id"], f["queue"]
        if kind == "requeued":
            reasons = ("rejected", "no_answer", "expired", "withdrawn", "customer_no_answer")
            assert f["reason"] in reasons, event
            if f["reason"] == "customer_no_answer":
                assert cb, (event, "not a callback")
                assert before == "connected", (event, before)
                assert f["attempts"] == self.ev_attempts[ix_id], (event, self.ev_attempts[ix_id])
        if kind == "cancelled":
            assert cb, (event, "not a callback")
            assert before in ("callback", "offered"), (event, before)
            self.scheduled.pop(ix_id, None)
            self.counts[f"acd_callbacks_cancelled_total|{queue}"] += 1
        if kind == "failed":
            assert cb, (event, "not a callback")
            assert before == "connected", (event, before)
            assert f["attempts"] == self.ev_attempts[ix_id], (event, self.ev_attempts[ix_id])
            self.counts[f"acd_callbacks_failed_total|{queue}"] += 1
        if kind == "queued" and f.get("callback"):
            # A scheduled callback enters its queue at its time, `enqueued_at = at`.
            assert cb, (event, "not a callback")
            assert before == "callback", (event, before)
            assert ix_id in self.scheduled, (event, "not scheduled")
            at = self.scheduled.pop(ix_id)
            assert event.at >= at, (event, f"scheduled at {_fmt(at)}")
            self.entered[ix_id] = at

    def check_callback_event(self, event: Event, before: str | None) -> None:
        f = event.fields
        ix_id, queue = f["interaction_id"], f["queue"]
        if event.type == "callback.offered":
            # Offered once per interaction, to a caller waiting on the line (§3.10).
            assert before == "queued", (event, before)
            assert ix_id not in self.ev_cb_offered, (event, "offered a callback twice")
            assert f["ewt_s"] >= 0, event
            self.ev_cb_offered.add(ix_id)
            self.counts[f"acd_callbacks_offered_total|{queue}"] += 1
            return
        # callback.accepted or callback.scheduled: only by a queued caller offered one.
        assert before == "queued", (event, before)
        assert ix_id in self.ev_cb_offered, (event, "no callback was offered")
        assert ix_id not in self.ev_cb, (event, "already a callback")
        self.ev_cb.add(ix_id)
        self.event_status[ix_id] = "callback"
        self.counts[f"acd_callbacks_accepted_total|{queue}"] += 1
        if event.type == "callback.scheduled":
            at = f["scheduled_at"]
            assert event.at < at <= event.at + MAX_AHEAD_S, event
            self.scheduled[ix_id] = at

    async def check(self) -> None:
        engine = self.engines[0]
        snap, counters = await snapshot_and_counters(engine)
        now_ms = round(self.applied_at * 1000)
        bad = find_violations(snap, now_ms, EXCLUSIVE)
        for logged in await self.events():
            self.check_event(logged)
        counted = {k: v for k, v in counters.items() if k.startswith(COUNTED) and v}
        if counted != +self.counts:
            bad.append(f"counters {counted}; the events say {dict(+self.counts)}")
        for ix_id in self.created:
            rec = snap.interactions.get(ix_id)
            if rec is None:
                bad.append(f"{ix_id} lost")
                continue
            status = rec["status"]
            self.status[ix_id] = status
            self.holders[ix_id] = rec.get("agent") or ""
            self.expires[ix_id] = rec["exp"] / 1000 if rec.get("exp") else float("inf")
            if ix_id in self.ended and status != self.ended[ix_id]:
                bad.append(f"{ix_id} ended {self.ended[ix_id]}, now {status}")
            if status in TERMINAL_STATUSES:
                self.ended[ix_id] = status
            if self.event_status.get(ix_id) != status:
                bad.append(f"{ix_id} is {status}; its events say {self.event_status.get(ix_id)}")
            if status in ("offered", "connected"):
                if rec.get("agent") not in snap.agents:
                    bad.append(f"{ix_id} {status} to a missing agent {rec.get('agent')}")
                if status == "offered" and rec.get("agent") in (rec.get("excl") or {}):
                    bad.append(f"{ix_id} offered to {rec['agent']}, who refused it")
            bad.extend(self.check_callback(ix_id, rec, snap, now_ms))
        for aid, agent in snap.agents.items():
            if agent["state"] != self.agent_state.get(aid, "logged_out"):
                bad.append(f"agent {aid} is {agent['state']}; its events say otherwise")
        assert bad == [], bad

    def check_callback(
        self, ix_id: str, rec: InteractionRecord, snap: Snapshot, now_ms: int
    ) -> list[str]:
        """The record against the callback events (§3.10); the requirement in force (§3.1),
        the callback check (README) and the end of a preferred wait (§3.7) of whatever waits,
        callbacks included."""
        bad = []
        cb, cb_at = bool(rec.get("cb")), rec.get("cb_at")
        self.cb[ix_id] = cb
        self.cb_offered[ix_id] = bool(rec.get("cb_offered"))
        self.holds[ix_id] = rec.get("cb_hold") or 0
        if cb != (ix_id in self.ev_cb):
            bad.append(f"{ix_id} callback {cb}; its events say {ix_id in self.ev_cb}")
        if self.cb_offered[ix_id] != (ix_id in self.ev_cb_offered):
            bad.append(f"{ix_id} callback offered {self.cb_offered[ix_id]}; its events disagree")
        if int(rec.get("attempts") or 0) != self.ev_attempts[ix_id]:
            bad.append(f"{ix_id} {rec.get('attempts')} attempts; {self.ev_attempts[ix_id]} dialled")
        status = rec["status"]
        want_at = self.scheduled.get(ix_id)
        if status not in TERMINAL_STATUSES and (cb_at or None) != (
            None if want_at is None else round(want_at * 1000)
        ):
            bad.append(f"{ix_id} ({status}) scheduled at {cb_at}; its events say {want_at}")
        if ix_id in self.entered and rec["enq"] != round(self.entered[ix_id] * 1000):
            bad.append(f"{ix_id} entered at {self.entered[ix_id]} but enqueued at {rec['enq']}")
        queue = snap.queues.get(rec["queue"])
        if status not in ("queued", "offered", "callback") or cb_at or queue is None:
            return bad
        step = step_in_force(queue, rec["enq"], now_ms)
        if rec.get("step", 0) != step:
            bad.append(
                f"{ix_id} ({status}) at step {rec.get('step')} after {now_ms - rec['enq']} ms"
                f" of wait: the step in force is {step}"
            )
        if (
            status == "queued"
            and queue.get("callback")
            and not rec.get("cb_offered")
            and f"cbo:{ix_id}" not in snap.timers
        ):
            # README: the EWT of a caller waiting on the line is looked at again every 10 s
            # until it has been offered a callback.
            bad.append(f"{ix_id} waits on the line with no callback check (cbo) timer")
        if rec.get("pref_until") and rec["pref_until"] <= now_ms:
            bad.append(f"{ix_id} ({status}) in its preferred wait, over at {rec['pref_until']}")
        return bad

    async def finish(self) -> None:
        """Tick at the clock's time until no timer is due, then every invariant holds."""
        self.log.append("# final tick")
        while True:
            res = await self.call(0, "tick", self.now)
            if not res.applied:
                break
        self.applied_at = self.now
        await self.check()
        for i, ix_id in enumerate(self.created):  # every arrival reads back through the API
            found = await self.engines[i % 2].get_interaction(ix_id, self.now)
            assert found is not None, f"{ix_id} lost"
            assert found.status == self.status[ix_id], (found, self.status[ix_id])
            waiting = found.status in (InteractionStatus.QUEUED, InteractionStatus.OFFERED) or (
                found.status == InteractionStatus.CALLBACK and found.scheduled_at is None
            )
            assert (found.position is not None) == waiting, found
        for aid in AGENT_IDS:
            agent = await self.engines[0].get_agent(aid)
            assert agent is None or agent.state == self.agent_state.get(aid, "logged_out")
        engine = self.engines[1]
        violations = await check_invariants(engine.redis, engine.keys, self.now, EXCLUSIVE)
        assert violations == []
        # The one-round-trip snapshot of the checks after each step reads what the checker reads.
        assert await snapshot(engine) == await Snapshot.read(engine.redis, engine.keys)


async def play(url: str, setup: Setup, scenario: list[Action], log: list[str]) -> Run:
    namespace = f"prop{next(_examples)}"
    clients = (Redis.from_url(url), Redis.from_url(url))
    try:
        engines = tuple(Engine(c, ServiceSettings(namespace=namespace)) for c in clients)
        if not _loaded:  # by the first example: one library serves every namespace
            await engines[0].start()
            _loaded.append(True)
        run = Run((engines[0], engines[1]), setup, log=log)
        await run.start()
        for step in scenario:
            await run.step(step)
        await run.finish()
        return run
    finally:
        keys = [k async for k in clients[0].scan_iter(match=f"acd:[{{]{namespace}[}}]:*")]
        if keys:
            await clients[0].unlink(*keys)
        for client in clients:
            await client.aclose()


# Regressions -----------------------------------------------------------------------------------
# Minimal examples of engine bugs this test found (all fixed); explicit examples, run first.

_KNOBS = QueueKnobs(
    offer_timeout_s=5.0,
    max_waiting=0,
    max_wait_s=0.0,
    wrap_up_s=0.0,
    max_no_answer=1,
    first_step_s=1.0,
)
_VOICE = ((Channel.VOICE, 1),)
_IDLE = AgentSetup((), _VOICE, AgentState.NOT_READY)

REGRESSION_BEST_SKILL_SCORE = {
    # Was: `M.agent_score` (router/lua/lib/base.lua, now lib/scores.lua) computes
    # `primary * IDLE_SPAN + idle - SCORE_BASE`; for best_skill the intermediate sum is above
    # 2^53, so the idle_since millisecond is rounded away: the class index score disagrees with
    # the checker's ("class N agent index disagrees with the agents: ['a0'] vs ['a0']"), and of
    # two agents with the same skill sum idle 1 ms apart the longest idle may lose to the id.
    "setup": Setup(
        queues=(("support", _KNOBS), ("chat", _KNOBS)),
        agents=(AgentSetup((("support", 1),), _VOICE, AgentState.NOT_READY), _IDLE, _IDLE),
    ),
    "scenario": [Solo(Advance(0.001, None), 0), Solo(SetState(0, AgentState.AVAILABLE), 0)],
}
REGRESSION_MAX_WAIT_ARMED_IN_THE_PAST = {
    # Was: queue_upsert.lua re-arms the max-wait timer of waiting interactions
    # at `enq + max_wait_s` even when that is already past, and leaves it overdue after the
    # operation ("timers overdue at now: ['mw:i0']"); the interaction stays `queued` although
    # its max wait has passed, until some later operation or tick applies the timer.
    "setup": Setup(
        queues=(("sales", _KNOBS), ("chat", _KNOBS)),
        agents=(_IDLE, _IDLE, _IDLE),
        arrivals=(("sales", False),),
    ),
    "scenario": [Solo(Advance(10.0, None), 0), Solo(UpsertQueue("sales", 1), 0)],
}
REGRESSION_CAPACITY_CUT_WHILE_HELD = {
    # Was: agent_put.lua accepts new channel capacities
    # below what the agent holds; an agent offered a voice call and updated to {"chat": 2}
    # holds a voice interaction with no voice capacity ("agent a0 over capacity on voice: 1"),
    # and the offer can still be accepted. §3.5: an agent never holds more than its capacity.
    "setup": Setup(
        queues=(("sales", _KNOBS), ("chat", _KNOBS)),
        agents=(AgentSetup((("sales", 2),), _VOICE, AgentState.AVAILABLE), _IDLE, _IDLE),
        arrivals=(("sales", False),),
    ),
    "scenario": [Solo(PutAgent(0, (("sales", 2),), ((Channel.CHAT, 2),)), 0)],
}
REGRESSION_REARMED_TIMER_DROPPED = {
    # Was: `M.apply_due` (router/lua/lib/timers.lua) reads the due timers
    # first, then ZREMs and fires each. Firing one can re-arm a later one of the batch for the
    # future (same member, new score); the loop still removes it and its `fire` is a no-op.
    # Here a0's first offer expires, the miss sets a0 not_ready, which withdraws i1 and
    # re-offers it to a1 with a new expiry timer, which the same tick then drops: "agent a1
    # reserved for i1 with no live offer (no expiry timer)". The offer never expires and a
    # late accept, minutes after expires_at, connects (§3.5: a 409). `apply_due_of` has the
    # same flaw.
    "setup": Setup(
        queues=(("chat", _KNOBS), ("sales", _KNOBS)),
        agents=(
            AgentSetup((("lang:fi", 1),), ((Channel.CHAT, 3),), AgentState.AVAILABLE),
            AgentSetup((("lang:fi", 1),), ((Channel.CHAT, 3),), AgentState.NOT_READY),
            _IDLE,
        ),
        arrivals=(("chat", False), ("chat", False)),
    ),
    "scenario": [Solo(SetState(1, AgentState.AVAILABLE), 0), Solo(Advance(6.0, 0), 0)],
}

# Callbacks (§3.10): found by the callback operations of this test. The setups: a voice queue
# whose callback policy offers one for any EWT over 1 s, agents with no skills (they never serve
# `sales` step 0, so a call there waits and its EWT, 180 s by default, gets it a callback offer
# at arrival).

_CALLBACKS = CallbackPolicy(
    offer_when_ewt_s=1.0, retry_after_s=1.0, max_attempts=2, max_schedule_ahead_s=MAX_AHEAD_S
)
_CB_KNOBS = replace(_KNOBS, callback=_CALLBACKS)
_BARE = AgentSetup((), _VOICE, AgentState.AVAILABLE)
_CB_SALES = Setup(
    queues=(("sales", _CB_KNOBS), ("chat", _KNOBS)),
    agents=(_BARE, _BARE, _BARE),
    arrivals=(("sales", False),),
)
_CB_DIALLED = Setup(
    queues=(("sales", _CB_KNOBS), ("chat", _KNOBS)),
    agents=(AgentSetup((("sales", 2),), _VOICE, AgentState.AVAILABLE), _BARE, _BARE),
    arrivals=(("sales", True),),
    callbacks=(("sales", None),),
)
"""a0, the one sales agent, is connected to i0; i1 then waits and accepts its callback."""

REGRESSION_CALLBACK_NEVER_ESCALATES = {
    # Was (fixed in 20c8657): the `esc` timer (`M.fire`, router/lua/lib/timers.lua) escalated
    # only `queued` and `offered` interactions: an accepted callback stayed at the step it had
    # when accepted. §3.1: the requirement at wait w is the last step's whose after_s <= w.
    # Here sales' step 2 (after 5 s) requires nothing, three idle agents qualify, and the
    # callback was never offered: "i0 (callback) at step 0 after 5000 ms of wait: the step in
    # force is 2" (the test's own check; the checker judges a callback by its stale class).
    "setup": _CB_SALES,
    "scenario": [Solo(AcceptCallback(Ix(0, "cb")), 0), Solo(Advance(5.0, 0), 0)],
}
REGRESSION_QUEUE_CHANGE_SKIPS_CALLBACKS = {
    # Was (fixed in 20c8657): queue_upsert.lua moved only `queued` and `offered` interactions
    # to the new requirement: a waiting callback kept the class of the old one, "i0 in a class
    # whose requirement is not its own" (the checker). With the callback at step 1 and the
    # steps removed, the checker itself crashed (IndexError in `_requirement`).
    "setup": _CB_SALES,
    "scenario": [Solo(AcceptCallback(Ix(0, "cb")), 0), Solo(UpsertQueue("sales", 2), 0)],
}
REGRESSION_CALLBACK_PREFERRED_WAIT_NEVER_ENDS = {
    # Was (fixed in 20c8657): the `pw` timer ended a preferred wait only for `queued` or
    # `offered` interactions: a callback accepted during its preferred wait stayed in it for
    # ever (`pref_until` set, no timer), offered only to its preferred agents. "i0 (callback) in
    # its preferred wait, over at ..." (the test's own check; the checker takes it as in force).
    "setup": Setup(
        queues=(("sales", _KNOBS), ("chat", replace(_CB_KNOBS, first_step_s=3.0))),
        agents=(_BARE, _BARE, _BARE),
    ),
    "scenario": [
        Solo(Create("chat", preferred=(0,), preferred_wait_s=1.0), 0),
        Solo(AcceptCallback(Ix(0, "cb")), 0),
        Solo(Advance(1.0, 0), 0),
    ],
}
REGRESSION_CALLBACK_CHECK_DROPPED_DURING_AN_OFFER = {
    # Was (fixed in 20c8657): the callback check (`cbo` timer, every 10 s) did nothing when it
    # fell while the caller was offered to an agent, and nothing re-armed it when the offer
    # ended: the caller then waited on the line and was never offered a callback, however long
    # its EWT (README: looked at again every 10 s until one has been offered). Here i0 arrives
    # with a0 free (EWT 0), is offered for 20 s, the check falls at 10 s, a0 rejects: "i0 waits
    # on the line with no callback check (cbo) timer" (the test's own check).
    "setup": Setup(
        queues=(("sales", replace(_CB_KNOBS, offer_timeout_s=20.0)), ("chat", _KNOBS)),
        agents=(AgentSetup((("sales", 2),), _VOICE, AgentState.AVAILABLE), _IDLE, _IDLE),
        arrivals=(("sales", False),),
    ),
    "scenario": [Solo(Advance(10.0, 0), 0), Solo(Reject(Ix(0), RejectReason.REJECTED), 0)],
}

REGRESSION_NO_ANSWER_RETRY_IS_409 = {
    # Was: interaction_complete.lua answered a repeated complete with 200 only when the record
    # was `completed` by that agent. A complete with outcome customer_no_answer of a callback
    # leaves it `callback` (a retry wait) or `failed`, and the platform's retry of the very
    # same call was a 409 not_connected: "retry of complete failed: NotConnected(...)". §3.5:
    # complete repeated with the same arguments answers 200 with the current record.
    #   e0.complete('i0', 'a0', now)                    # a0 free: i1's callback offered to a0
    #   e0.accept('i1', 'a0', now)                      # dial attempt 1
    #   e0.complete('i1', 'a0', now, outcome=CUSTOMER_NO_ANSWER)   # -> callback, attempts 1
    #   e1.complete('i1', 'a0', now, outcome=CUSTOMER_NO_ANSWER)   # -> 409, not 200
    "setup": _CB_DIALLED,
    "scenario": [
        Solo(Complete(Ix(0)), 0),
        Solo(Accept(Ix(0)), 0),
        Solo(Complete(Ix(0, "cb"), outcome=Outcome.CUSTOMER_NO_ANSWER, retry=True), 0),
    ],
}
REGRESSION_CALLBACK_STEP_FROZEN_AFTER_A_DIAL_ATTEMPT = {
    # Was: an accept disarms every timer of the interaction, escalation included; a complete
    # with customer_no_answer put the callback back in its place (interaction_complete.lua)
    # without re-arming `esc`, nor did `M.end_callback_hold` when its retry wait ended: the
    # callback stayed at the step of its dial attempt for ever (§3.1). i1 is accepted at step 0, its
    # retry wait ends at 1 s, when sales' step 1 is in force: "i1 (offered) at step 0 after
    # 1000 ms of wait: the step in force is 1" (the test's own check); at 5 s step 2 (no
    # skills: every agent) would never apply either.
    "setup": _CB_DIALLED,
    "scenario": [
        Solo(Complete(Ix(0)), 0),
        Solo(Accept(Ix(0)), 0),
        Solo(Complete(Ix(0, "cb"), outcome=Outcome.CUSTOMER_NO_ANSWER), 0),
        Solo(Advance(1.0, 0), 0),
    ],
}

_CB_CHAT_SCHEDULED = Setup(
    queues=(("sales", _KNOBS), ("chat", _CB_KNOBS)),
    agents=(AgentSetup((("lang:fi", 1),), _VOICE, AgentState.AVAILABLE), _BARE, _BARE),
    arrivals=(("chat", False),),
)
"""Nobody serves chat: i0 waits, accepts its callback (scheduled in 2 s by the scenarios)."""

REGRESSION_QUEUE_DELETED_UNDER_A_SCHEDULED_CALLBACK = {
    # Was: queue_delete.lua refused only a queue whose order (`qw:`) was not empty; a scheduled
    # callback is not in it, so its queue could be deleted (now the `qcb:` set counts too). At
    # `at` the `cbd` timer fired and `M.enter_scheduled_callback` indexed the missing queue: a
    # Lua error, "ResponseError: user_script:...: attempt to index local 'q' (a nil value)",
    # from the tick (or from whatever operation applies the due timers: a 500). The timer was
    # already removed, so the callback was stranded `callback` with no timer ("i0 held back
    # as a callback with no cbd timer"): never routed, never ended.
    #   e0.accept_callback('i0', now, at=now + 2)
    #   e0.delete_queue('chat', now)                    # 200, not 409
    #   e0.tick(now + 2)                                # ResponseError
    "setup": _CB_CHAT_SCHEDULED,
    "scenario": [
        Solo(AcceptCallback(Ix(0, "cb"), 2.0), 0),
        Solo(DeleteQueue("chat"), 0),
        Solo(Advance(2.0, 0), 0),
    ],
}
REGRESSION_QUEUE_CHANNEL_CHANGED_UNDER_A_SCHEDULED_CALLBACK = {
    # Was: queue_upsert.lua refused a channel change while interactions waited, but counted only
    # the queue's order (`qw:`), without the scheduled callbacks. chat becomes a voice queue with
    # the chat callback i0 scheduled; at `at` it enters a voice class and is offered to a
    # voice-only agent: "agent a0 over capacity on chat: 1" (the checker).
    "setup": _CB_CHAT_SCHEDULED,
    "scenario": [
        Solo(AcceptCallback(Ix(0, "cb"), 2.0), 0),
        Solo(UpsertQueue("chat", 3), 0),
        Solo(Advance(2.0, 0), 0),
    ],
}
REGRESSION_QUEUE_CHANGE_SKIPS_SCHEDULED_CALLBACKS = {
    # Was: queue_upsert.lua moved to the new requirement what is in the queue's order (`qw:`)
    # and `M.in_order`: a scheduled callback is neither and kept the class of the old
    # requirement until its time: "i0 in a class whose requirement is not its own" (the
    # checker). (It is re-classed when it enters; the channel change above is the harmful case.)
    "setup": _CB_CHAT_SCHEDULED,
    "scenario": [Solo(AcceptCallback(Ix(0, "cb"), 2.0), 0), Solo(UpsertQueue("chat", 2), 0)],
}
REGRESSION_TRANSFERRED_CALLBACK_HALF_A_CALLBACK = {
    # Was: interaction_transfer.lua enqueued the interaction in the target as a new arrival
    # (`M.enqueue`: status `queued`, on the line, max wait armed) but left `cb` set: a record
    # that is both a caller on the line and a callback. "i1: on the line index of sales is
    # True" (the checker). Its offers then say `callback: true`, a re-queue makes it `callback`
    # while it is still on the line, a DELETE cancels it and customer_no_answer retries it.
    # Now a transferred callback is a caller on the line, a callback no more (README).
    #   e0.complete('i0', 'a0', now)                    # a0 free: i1's callback offered to a0
    #   e0.accept('i1', 'a0', now)
    #   e0.transfer('i1', 'a0', 'sales', now)           # i1 queued, on the line, cb still true
    "setup": _CB_DIALLED,
    "scenario": [
        Solo(Complete(Ix(0)), 0),
        Solo(Accept(Ix(0)), 0),
        Solo(Transfer(Ix(0), "sales"), 0),
    ],
}


@example(**REGRESSION_TRANSFERRED_CALLBACK_HALF_A_CALLBACK)
@example(**REGRESSION_QUEUE_DELETED_UNDER_A_SCHEDULED_CALLBACK)
@example(**REGRESSION_QUEUE_CHANNEL_CHANGED_UNDER_A_SCHEDULED_CALLBACK)
@example(**REGRESSION_QUEUE_CHANGE_SKIPS_SCHEDULED_CALLBACKS)
@example(**REGRESSION_NO_ANSWER_RETRY_IS_409)
@example(**REGRESSION_CALLBACK_STEP_FROZEN_AFTER_A_DIAL_ATTEMPT)
@example(**REGRESSION_CALLBACK_NEVER_ESCALATES)
@example(**REGRESSION_QUEUE_CHANGE_SKIPS_CALLBACKS)
@example(**REGRESSION_CALLBACK_PREFERRED_WAIT_NEVER_ENDS)
@example(**REGRESSION_CALLBACK_CHECK_DROPPED_DURING_AN_OFFER)
@example(**REGRESSION_REARMED_TIMER_DROPPED)
@example(**REGRESSION_BEST_SKILL_SCORE)
@example(**REGRESSION_MAX_WAIT_ARMED_IN_THE_PAST)
@example(**REGRESSION_CAPACITY_CUT_WHILE_HELD)
@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(setup=setups, scenario=st.lists(steps, min_size=6, max_size=25))
def test_random_operations_from_two_routers_keep_every_invariant(
    redis_server: RedisServer, setup: Setup, scenario: list[Action]
) -> None:
    url = redis_server.url.rsplit("/", 1)[0] + f"/{DB}"
    log: list[str] = []
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(play(url, setup, scenario, log))
    finally:
        loop.close()
        note("\n".join(log))
