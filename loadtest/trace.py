"""Trace and roster files: typed records, validated loading and writing.

**Trace** (JSON Lines, one interaction per line, in any order; times are seconds from the trace
start, fractional allowed):

| field | type | meaning |
|---|---|---|
| `id` | string | unique interaction id (`[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}`) |
| `arrival_s` | number >= 0 | when it enters the queue |
| `queue` | string | queue name of the configuration |
| `priority` | int 0..1000, optional | omitted: the queue's default |
| `credit_s` | number >= 0, optional | queue credit; omitted: the queue's default |
| `skills` | {skill: 1..5}, optional | extra skills required |
| `handle_s` | number >= 0 | talk time from the accept to the completion |
| `patience_s` | number >= 0 or null, optional | hangs up after this wait; null/omitted: never |
| `callback_accept` | bool, optional | accepts a callback offer (default false) |
| `wrap_up_s` | number >= 0, optional | after-call work; omitted: the roster's, else the queue's |

History, optional (what happened to the call in the source; importers fill it, `calibrate` needs it;
`simulate` and `replay` ignore it): `wait_s` (number >= 0, queue entry to the answer or the end)
and `outcome` (`answered`, `abandoned` or `timed_out`) go together; `agent_id` (who answered it)
only with `answered`.

    {"id": "c000001", "arrival_s": 3.52, "queue": "support", "handle_s": 171.4, "patience_s": 95.0}
    {"id": "c000002", "arrival_s": 9.1, "queue": "support", "handle_s": 80.0, "patience_s": 140.2,
     "wait_s": 12.0, "outcome": "answered", "agent_id": "a007"}

**Roster** (JSON `{"agents": [...]}` or TOML `[[agents]]`): each agent has `id`, `skills`
({skill: 1..5}), `channels` (optional, {channel: capacity}; default `{"voice": 1}`) and
`shifts`, a list of `[start_s, end_s]` in trace seconds (logged in, available, in between).

Unavailability the trace does not record, optional: `wrap_up` maps a queue to the distribution of
the after-call work of its calls, and `breaks` gives the agents' breaks (not ready): a break falls
due after an exponential time of mean `every_s` of shift from the end of the last one (or the
shift's start), and lasts a `duration` drawn from its distribution; a break due while the agent
is offered, on a call or in wrap-up starts when that ends. An agent's own `wrap_up` and `breaks`
replace the roster's. A distribution is `{"dist": "fixed"|"exponential"|"lognormal", "mean_s":
m, "cv": c}` (`cv` only for lognormal).

    {"agents": [{"id": "a001", "skills": {"support": 3}, "shifts": [[0, 28800]]}],
     "wrap_up": {"support": {"dist": "lognormal", "mean_s": 30, "cv": 0.5}},
     "breaks": {"every_s": 3600, "duration": {"dist": "exponential", "mean_s": 300}}}

Loading checks every field; errors name the file, the line (trace) or agent index (roster) and
the field: `day.jsonl:12: handle_s: must be a number >= 0`.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

from router.domain.fields import ID, NAME
from router.domain.models import MAX_CHANNEL_CAPACITY, MAX_LEVEL, MAX_PRIORITY, Channel

MAX_ERRORS = 20
"""Problems listed in one TraceError."""


class TraceError(ValueError):
    """A trace or roster file with problems; each names the file, line or agent, and field."""

    def __init__(self, problems: list[str]) -> None:
        shown = problems[:MAX_ERRORS]
        more = len(problems) - len(shown)
        super().__init__("\n".join(shown + ([f"... and {more} more"] if more else [])))
        self.problems = problems


@dataclass(frozen=True)
class Call:
    """One interaction of a trace."""

    id: str
    arrival_s: float
    queue: str
    handle_s: float
    priority: int | None = None
    credit_s: float | None = None
    skills: dict[str, int] = field(default_factory=dict)
    patience_s: float | None = None
    callback_accept: bool = False
    wrap_up_s: float | None = None
    wait_s: float | None = None
    """History: the observed wait."""
    outcome: str | None = None
    """History: `answered`, `abandoned` or `timed_out`."""
    agent_id: str | None = None
    """History: the agent who answered."""

    def to_json(self) -> dict[str, Any]:
        """The JSON object of the call, optional fields left out when unset."""
        out: dict[str, Any] = {
            "id": self.id,
            "arrival_s": round(self.arrival_s, 3),
            "queue": self.queue,
            "handle_s": round(self.handle_s, 3),
        }
        if self.priority is not None:
            out["priority"] = self.priority
        if self.credit_s is not None:
            out["credit_s"] = self.credit_s
        if self.skills:
            out["skills"] = dict(self.skills)
        out["patience_s"] = None if self.patience_s is None else round(self.patience_s, 3)
        if self.callback_accept:
            out["callback_accept"] = True
        if self.wrap_up_s is not None:
            out["wrap_up_s"] = self.wrap_up_s
        if self.outcome is not None:
            out["wait_s"] = None if self.wait_s is None else round(self.wait_s, 3)
            out["outcome"] = self.outcome
        if self.agent_id is not None:
            out["agent_id"] = self.agent_id
        return out


OUTCOMES = ("answered", "abandoned", "timed_out")
DIST_KINDS = ("fixed", "exponential", "lognormal")
_NORMAL = NormalDist()


@dataclass(frozen=True)
class Dist:
    """A distribution of durations: fixed, exponential, or log-normal with a coefficient of
    variation; drawn by inverse transform, so one uniform number gives one draw."""

    kind: str
    mean_s: float
    cv: float = 1.0

    def quantile(self, u: float) -> float:
        """The duration at cumulative probability `u` (0..1)."""
        u = min(max(u, 1e-12), 1 - 1e-12)
        if self.kind == "fixed" or self.mean_s == 0:
            return self.mean_s
        if self.kind == "exponential":
            return -self.mean_s * math.log1p(-u)
        sigma = math.sqrt(math.log1p(self.cv**2))
        return math.exp(math.log(self.mean_s) - sigma**2 / 2 + sigma * _NORMAL.inv_cdf(u))

    def to_json(self) -> dict[str, Any]:
        """The JSON object of the distribution."""
        out: dict[str, Any] = {"dist": self.kind, "mean_s": round(self.mean_s, 3)}
        if self.kind == "lognormal":
            out["cv"] = round(self.cv, 3)
        return out


@dataclass(frozen=True)
class Breaks:
    """Breaks (not ready): one falls due an exponential time of mean `every_s` of shift after
    the last ended, and lasts `duration`."""

    every_s: float
    duration: Dist

    def to_json(self) -> dict[str, Any]:
        """The JSON object of the breaks."""
        return {"every_s": round(self.every_s, 3), "duration": self.duration.to_json()}


@dataclass(frozen=True)
class RosterAgent:
    """An agent of the roster with the shifts it is logged in."""

    id: str
    skills: dict[str, int]
    channels: dict[str, int] = field(default_factory=lambda: {"voice": 1})
    shifts: tuple[tuple[float, float], ...] = ()
    wrap_up: Dist | None = None
    """The agent's after-call work, instead of its queues'."""
    breaks: Breaks | None = None
    """The agent's breaks, instead of the roster's."""

    def to_json(self) -> dict[str, Any]:
        """The JSON object of the agent."""
        out: dict[str, Any] = {
            "id": self.id,
            "skills": dict(self.skills),
            "channels": dict(self.channels),
            "shifts": [[round(s, 3), round(e, 3)] for s, e in self.shifts],
        }
        if self.wrap_up is not None:
            out["wrap_up"] = self.wrap_up.to_json()
        if self.breaks is not None:
            out["breaks"] = self.breaks.to_json()
        return out


@dataclass(frozen=True)
class Roster:
    """The agents of a run, with the unavailability the trace does not record."""

    agents: tuple[RosterAgent, ...]
    wrap_up: dict[str, Dist] = field(default_factory=dict)
    """Queue name to the after-call work of its calls."""
    breaks: Breaks | None = None


class _Checker:
    """Reads typed fields of one JSON object, collecting problems as `where: field: message`."""

    def __init__(self, obj: Any, where: str, problems: list[str]) -> None:
        self.obj: Mapping[str, Any] = obj if isinstance(obj, Mapping) else {}
        self.where = where
        self.problems = problems
        if not isinstance(obj, Mapping):
            self.fail("", "must be an object")

    def fail(self, name: str, message: str) -> None:
        """Record one problem."""
        self.problems.append(
            f"{self.where}: {name}: {message}" if name else f"{self.where}: {message}"
        )

    def unknown(self, known: Iterable[str]) -> None:
        """Flag fields that are not in `known`."""
        for name in sorted(set(self.obj) - set(known)):
            self.fail(name, "unknown field")

    def ident(self, name: str, rule: Any = ID) -> str:
        """A required string matching `rule`."""
        value = self.obj.get(name)
        if name not in self.obj:
            self.fail(name, "is required")
            return ""
        problem = rule.problem(value)
        if problem:
            self.fail(name, problem)
            return ""
        return str(value)

    def number(self, name: str, required: bool = False) -> float | None:
        """A finite number >= 0 (None when absent or null and not required)."""
        value = self.obj.get(name)
        if value is None:
            if required:
                self.fail(name, "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(name, "must be a number >= 0")
            return None
        if not math.isfinite(value) or value < 0:
            self.fail(name, "must be a number >= 0")
            return None
        return float(value)

    def integer(self, name: str, low: int, high: int) -> int | None:
        """An optional integer within [low, high]."""
        value = self.obj.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(name, f"must be an integer {low}..{high}")
            return None
        return value

    def dist(self, name: str) -> Dist | None:
        """An optional distribution `{"dist", "mean_s", "cv"?}`."""
        if self.obj.get(name) is None:
            return None
        d = _Checker(self.obj[name], f"{self.where}: {name}", self.problems)
        before = len(self.problems)
        d.unknown(("dist", "mean_s", "cv"))
        kind = d.obj.get("dist")
        if kind not in DIST_KINDS:
            d.fail("dist", f"must be one of {', '.join(DIST_KINDS)}")
        mean = d.number("mean_s", required=True)
        cv = d.number("cv", required=kind == "lognormal")
        if cv is not None and kind != "lognormal":
            d.fail("cv", "only for lognormal")
        if len(self.problems) > before or mean is None:
            return None
        return Dist(str(kind), mean, 1.0 if cv is None else cv)

    def breaks(self, name: str) -> Breaks | None:
        """Optional breaks `{"every_s", "duration"}`."""
        if self.obj.get(name) is None:
            return None
        b = _Checker(self.obj[name], f"{self.where}: {name}", self.problems)
        before = len(self.problems)
        b.unknown(("every_s", "duration"))
        every = b.number("every_s", required=True)
        if every == 0:
            b.fail("every_s", "must be > 0")
        if b.obj.get("duration") is None:
            b.fail("duration", "is required")
        duration = b.dist("duration")
        if len(self.problems) > before or every is None or duration is None:
            return None
        return Breaks(every, duration)

    def levels(self, name: str, high: int, key_rule: Any = NAME) -> dict[str, int]:
        """An optional map of names to integers 1..high."""
        value = self.obj.get(name)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(name, "must be an object")
            return {}
        out = {}
        for key, level in value.items():
            problem = key_rule.problem(key)
            if problem:
                self.fail(f"{name}.{key}", problem)
            elif isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= high:
                self.fail(f"{name}.{key}", f"must be an integer 1..{high}")
            else:
                out[str(key)] = level
        return out


CALL_FIELDS = (
    "id",
    "arrival_s",
    "queue",
    "priority",
    "credit_s",
    "skills",
    "handle_s",
    "patience_s",
    "callback_accept",
    "wrap_up_s",
    "wait_s",
    "outcome",
    "agent_id",
)


def parse_call(obj: Any, where: str, problems: list[str]) -> Call | None:
    """A call from its JSON object, or None with its problems recorded."""
    before = len(problems)
    c = _Checker(obj, where, problems)
    c.unknown(CALL_FIELDS)
    ix_id = c.ident("id")
    arrival = c.number("arrival_s", required=True)
    queue = c.ident("queue", NAME)
    handle = c.number("handle_s", required=True)
    priority = c.integer("priority", 0, MAX_PRIORITY)
    credit = c.number("credit_s")
    skills = c.levels("skills", MAX_LEVEL)
    patience = c.number("patience_s")
    wrap_up = c.number("wrap_up_s")
    accept = c.obj.get("callback_accept", False)
    if not isinstance(accept, bool):
        c.fail("callback_accept", "must be true or false")
    wait, outcome, agent = _history(c)
    if len(problems) > before or arrival is None or handle is None:
        return None
    return Call(
        ix_id,
        arrival,
        queue,
        handle,
        priority,
        credit,
        skills,
        patience,
        bool(accept),
        wrap_up,
        wait,
        outcome,
        agent,
    )


def _history(c: _Checker) -> tuple[float | None, str | None, str | None]:
    """The optional history fields: `wait_s` and `outcome` together, `agent_id` if answered."""
    wait = c.number("wait_s")
    outcome = c.obj.get("outcome")
    if outcome is not None and outcome not in OUTCOMES:
        c.fail("outcome", f"must be one of {', '.join(OUTCOMES)}")
        outcome = None
    if (wait is None) != (c.obj.get("outcome") is None):
        c.fail("wait_s" if wait is None else "outcome", "is required with outcome and wait_s")
    agent = c.ident("agent_id") if "agent_id" in c.obj else None
    if agent is not None and c.obj.get("outcome") != "answered":
        c.fail("agent_id", "only for an answered call")
    return wait, outcome, agent or None


def parse_trace(lines: Iterable[str], name: str = "trace") -> list[Call]:
    """Calls of JSON Lines text, sorted by arrival (then id); blank lines are skipped."""
    problems: list[str] = []
    calls: list[Call] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            obj = json.loads(line)
        except ValueError as error:
            problems.append(f"{where}: not JSON: {error}")
            continue
        call = parse_call(obj, where, problems)
        if call is None:
            continue
        if call.id in seen:
            problems.append(f"{where}: id: duplicate {call.id!r}")
        seen.add(call.id)
        calls.append(call)
    if problems:
        raise TraceError(problems)
    return sorted(calls, key=lambda c: (c.arrival_s, c.id))


def load_trace(path: str | Path) -> list[Call]:
    """The calls of a JSON Lines trace file."""
    try:
        with open(path, encoding="utf-8") as file:
            return parse_trace(file, str(path))
    except UnicodeDecodeError as error:
        raise TraceError(
            [f"{path}: not UTF-8 text ({error.reason} at byte {error.start})"]
        ) from None


def write_trace(path: str | Path, calls: Iterable[Call]) -> None:
    """Write calls as JSON Lines."""
    with open(path, "w", encoding="utf-8") as file:
        for call in calls:
            file.write(json.dumps(call.to_json(), separators=(",", ":")) + "\n")


def _shifts(c: _Checker) -> tuple[tuple[float, float], ...]:
    """The agent's valid shifts, merged."""
    value = c.obj.get("shifts", [])
    if not isinstance(value, list):
        c.fail("shifts", "must be a list of [start_s, end_s]")
        return ()
    out = []
    for i, shift in enumerate(value):
        ok = (
            isinstance(shift, list)
            and len(shift) == 2
            and all(not isinstance(t, bool) and isinstance(t, int | float) for t in shift)
            and all(math.isfinite(t) for t in shift)
            and 0 <= shift[0] < shift[1]
        )
        if not ok:
            c.fail(f"shifts[{i}]", "must be [start_s, end_s] with 0 <= start_s < end_s")
        else:
            out.append((float(shift[0]), float(shift[1])))
    return merge_shifts(out)


def merge_shifts(shifts: Iterable[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """Shifts sorted, with overlapping or touching ones merged."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted(shifts):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return tuple(merged)


def parse_roster(document: Any, name: str = "roster") -> Roster:
    """A roster from its parsed JSON or TOML document."""
    problems: list[str] = []
    table = document if isinstance(document, Mapping) else {}
    items = table.get("agents")
    if not isinstance(items, list):
        raise TraceError([f"{name}: agents: must be a list of agents"])
    top = _Checker(table, name, problems)
    top.unknown(("agents", "wrap_up", "breaks"))
    wrap_up: dict[str, Dist] = {}
    by_queue = table.get("wrap_up") or {}
    if not isinstance(by_queue, Mapping):
        top.fail("wrap_up", "must map queue names to distributions")
        by_queue = {}
    wraps = _Checker(by_queue, f"{name}: wrap_up", problems)
    for queue in by_queue:
        problem = NAME.problem(queue)
        if problem:
            wraps.fail(str(queue), problem)
        elif (dist := wraps.dist(queue)) is not None:
            wrap_up[queue] = dist
    breaks = top.breaks("breaks")
    agents = []
    seen: set[str] = set()
    for i, obj in enumerate(items):
        before = len(problems)
        c = _Checker(obj, f"{name}: agents[{i}]", problems)
        c.unknown(("id", "skills", "channels", "shifts", "name", "wrap_up", "breaks"))
        agent_id = c.ident("id")
        skills = c.levels("skills", MAX_LEVEL)
        channels = (
            c.levels("channels", MAX_CHANNEL_CAPACITY, _CHANNEL) if "channels" in c.obj else {}
        )
        shifts = _shifts(c)
        agent_wrap, agent_breaks = c.dist("wrap_up"), c.breaks("breaks")
        if agent_id in seen:
            c.fail("id", f"duplicate {agent_id!r}")
        seen.add(agent_id)
        if len(problems) == before:
            agents.append(
                RosterAgent(
                    agent_id, skills, channels or {"voice": 1}, shifts, agent_wrap, agent_breaks
                )
            )
    if problems:
        raise TraceError(problems)
    return Roster(tuple(agents), wrap_up, breaks)


class _ChannelRule:
    """Channel names as a `Text`-like rule."""

    @staticmethod
    def problem(value: object) -> str | None:
        """Why `value` is not a channel, or None."""
        return None if value in {c.value for c in Channel} else "is not a channel"


_CHANNEL = _ChannelRule()


def load_roster(path: str | Path) -> Roster:
    """A roster from a `.toml` file, else JSON."""
    try:
        with open(path, "rb") as file:
            raw = file.read()
        document = tomllib.loads(raw.decode()) if str(path).endswith(".toml") else json.loads(raw)
    except (OSError, ValueError) as error:
        raise TraceError([f"{path}: {error}"]) from error
    return parse_roster(document, str(path))


def write_roster(path: str | Path, roster: Roster) -> None:
    """Write a roster as JSON, one agent a line, then its unavailability."""
    lines = [json.dumps(a.to_json(), separators=(", ", ": ")) for a in roster.agents]
    extra = ""
    if roster.wrap_up:
        wraps = {q: d.to_json() for q, d in sorted(roster.wrap_up.items())}
        extra += ',\n"wrap_up": ' + json.dumps(wraps, separators=(", ", ": "))
    if roster.breaks is not None:
        extra += ',\n"breaks": ' + json.dumps(roster.breaks.to_json(), separators=(", ", ": "))
    with open(path, "w", encoding="utf-8") as file:
        file.write('{"agents": [\n  ' + ",\n  ".join(lines) + "\n]" + extra + "}\n")
