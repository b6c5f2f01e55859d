"""Validation of queue tables and request bodies into domain models (pure, no I/O).

Every parser collects all problems and raises one ValidationError whose `errors` name each
field by its path (`queues[2].steps[0].after_s`, `skills.billing`, `preferred_agents[1]`).
A JSON `null` counts as an absent field. Booleans are not numbers; an integer is fine where a
number is expected.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from router.domain.models import (
    MAX_CHANNEL_CAPACITY,
    MAX_LEVEL,
    MAX_PRIORITY,
    MAX_REQUIREMENT_SKILLS,
    AgentAction,
    AgentProfile,
    AgentState,
    CallbackPolicy,
    CallbackRequest,
    Channel,
    NewInteraction,
    Outcome,
    QueueConfig,
    RejectReason,
    Sla,
    StateChange,
    Step,
    Strategy,
)
from router.errors import FieldError, ValidationError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")
U = TypeVar("U", bound="DataclassInstance")

MAX_CREDIT_S = 86_400
MAX_PREFERRED_WAIT_S = 3_600
MAX_PREFERRED_AGENTS = 16
MAX_DATA_BYTES = 4_096
MAX_DATA_DEPTH = 16
"""Levels of nesting in `data`, which is level 1 itself (SPEC §4)."""
MAX_FIELD_DEPTH = MAX_DATA_DEPTH
"""Levels of nesting in any field of a body: `data` is the deepest a body may be."""
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_DURATION_S = 365 * 86_400
"""Bound on every other duration: a longer one is a mistake (and would overflow timestamps)."""
MAX_COUNT = 1_000_000_000
"""Bound on every other count, so that it fits the store's number types."""


@dataclass(frozen=True)
class Text:
    """A rule for a string field: a pattern it must match in full, and the message if not."""

    pattern: re.Pattern[str]
    message: str

    def problem(self, value: object) -> str | None:
        """Why `value` breaks the rule, or None."""
        if not isinstance(value, str):
            return "must be a string"
        return None if self.pattern.fullmatch(value) else self.message


_NAME_PATTERN = r"[a-z0-9][a-z0-9_.:-]{0,63}"
NAME = Text(re.compile(_NAME_PATTERN), f"must match {_NAME_PATTERN}")
"""Skill and queue names (SPEC §2)."""
ID = Text(
    re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}"),
    "must be 1..128 characters of A-Z a-z 0-9 _ . : @ + -, starting with a letter or digit",
)
"""Agent and interaction ids."""
DISPLAY_NAME = Text(
    re.compile(r"[^\x00-\x1f\x7f]{0,200}"), "must be at most 200 characters, no control characters"
)


def as_integer(value: object) -> object:
    """`value` as an int when it is a float with an integral value (`5.0`, as JSON Schema's
    `integer` allows), else unchanged."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def number_problem(
    value: object, low: int, high: int, *, above: bool = False, integer: bool = False
) -> str | None:
    """Why `value` is not a number (an integer if `integer`) in [low, high], or (low, high]."""
    if integer:
        value = as_integer(value)
    wrong_kind = isinstance(value, bool) or (integer and isinstance(value, float))
    if wrong_kind or not isinstance(value, int | float):
        return "must be an integer" if integer else "must be a number"
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    if value < low or (above and value == low):
        return f"must be {'>' if above else '>='} {low}"
    if value > high:
        return f"must be <= {high}"
    return None


def choice_problem(value: object, enum: type[StrEnum]) -> str | None:
    """Why `value` is not a value of `enum`, or None."""
    names = [member.value for member in enum]
    if isinstance(value, str) and value in names:
        return None
    return f"must be one of {', '.join(names)}"


def check_unique(named: Iterable[tuple[str, object]], errors: list[FieldError]) -> None:
    """Report each (path, value) whose value an earlier one already has."""
    first: dict[object, str] = {}
    for path, value in named:
        if value in first:
            errors.append(FieldError(path, f"duplicates {first[value]}"))
        else:
            first[value] = path


class Fields(Generic[T]):
    """The fields of one object for dataclass `cls`, read into `values`; problems go to `errors`."""

    def __init__(self, value: object, where: str, errors: list[FieldError], cls: type[T]) -> None:
        self.where = where
        self.errors = errors
        self.cls = cls
        self.values: dict[str, Any] = {}
        self._errors_before = len(errors)
        self.is_object = isinstance(value, Mapping)
        self.table: Mapping[Any, Any] = value if isinstance(value, Mapping) else {}
        if not self.is_object:
            errors.append(FieldError(where or "body", "must be an object"))
        known = {f.name for f in fields(cls)}
        for key in self.table:
            if key not in known:
                self.fail(str(key), "unknown field")

    def path(self, key: str) -> str:
        """The path of field `key`."""
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, message: str) -> None:
        """Report a problem with field `key`."""
        self.errors.append(FieldError(self.path(key), message))

    def given(self, key: str) -> bool:
        """Whether field `key` is present and not null."""
        return self.table.get(key) is not None

    def required(self, *keys: str) -> None:
        """Report each of `keys` that is missing (unless the whole object is)."""
        for key in keys:
            if self.is_object and not self.given(key):
                self.fail(key, "is required")

    def number(
        self, key: str, low: int, high: int, *, above: bool = False, integer: bool = False
    ) -> None:
        """Read a number in [low, high] (or (low, high] if `above`), a float unless `integer`."""
        value = self.table.get(key)
        if value is None:
            return
        problem = number_problem(value, low, high, above=above, integer=integer)
        if problem:
            self.fail(key, problem)
        else:
            self.values[key] = as_integer(value) if integer else float(value)

    def text(self, key: str, rule: Text) -> None:
        """Read a string that follows `rule`."""
        value = self.table.get(key)
        if value is None:
            return
        problem = rule.problem(value)
        if problem:
            self.fail(key, problem)
        else:
            self.values[key] = value

    def choice(self, key: str, enum: type[StrEnum]) -> None:
        """Read a value of `enum`."""
        value = self.table.get(key)
        if value is None:
            return
        problem = choice_problem(value, enum)
        if problem:
            self.fail(key, problem)
        else:
            self.values[key] = enum(value)

    def int_map(
        self,
        key: str,
        key_problem: Callable[[object], str | None],
        high: int,
        limit: int | None = None,
    ) -> dict[Any, int] | None:
        """Read a map of names (checked by `key_problem`) to integers 1..high."""
        value = self.table.get(key)
        if value is None:
            return None
        path = self.path(key)
        if not isinstance(value, Mapping):
            self.fail(key, "must be an object")
            return None
        if limit is not None and len(value) > limit:
            self.fail(key, f"must have at most {limit} entries")
        for name, level in value.items():
            problem = key_problem(name) or number_problem(level, 1, high, integer=True)
            if problem:
                self.errors.append(FieldError(f"{path}.{name}", problem))
        result = {name: cast(int, as_integer(level)) for name, level in value.items()}
        self.values[key] = result
        return result

    def skills(self, key: str, limit: int | None = MAX_REQUIREMENT_SKILLS) -> None:
        """Read a skill map: names to levels 1..MAX_LEVEL, at most `limit` of them."""
        self.int_map(key, NAME.problem, MAX_LEVEL, limit)

    def items(self, key: str) -> list[tuple[str, Any]]:
        """The (path, item) pairs of list field `key`; none if it is missing or not a list."""
        value = self.table.get(key)
        if value is None:
            return []
        if not isinstance(value, list | tuple):
            self.fail(key, "must be a list")
            return []
        return [(f"{self.path(key)}[{i}]", item) for i, item in enumerate(value)]

    def child(self, key: str, cls: type[U]) -> Fields[U] | None:
        """The fields of the object in field `key`, if present."""
        value = self.table.get(key)
        return None if value is None else Fields(value, self.path(key), self.errors, cls)

    @property
    def ok(self) -> bool:
        """True if nothing in this object (nested objects included) had a problem."""
        return len(self.errors) == self._errors_before

    def build(self) -> T | None:
        """The dataclass built from `values`, or None if there was a problem."""
        return cast(Callable[..., T], self.cls)(**self.values) if self.ok else None

    def result(self) -> T:
        """The dataclass built from `values`, or a ValidationError listing every problem."""
        raise_errors(self.errors)
        return cast(Callable[..., T], self.cls)(**self.values)


def raise_errors(errors: list[FieldError]) -> None:
    """Raise a ValidationError listing `errors`, if there are any."""
    if errors:
        raise ValidationError("; ".join(map(str, errors)), errors)


def validate_id(value: object, field: str) -> str:
    """`value` if it is a valid agent or interaction id, else a ValidationError about `field`."""
    problem = "is required" if value is None else ID.problem(value)
    if problem:
        raise ValidationError.of(field, problem)
    return cast(str, value)


def parse_queue(table: Mapping[str, Any], where: str = "") -> QueueConfig:
    """A queue from its config table or PUT body (SPEC §7); field paths start with `where`."""
    f = Fields(table, where, [], QueueConfig)
    f.required("name")
    f.text("name", NAME)
    f.choice("channel", Channel)
    f.skills("skills")
    f.choice("strategy", Strategy)
    f.number("priority", 0, MAX_PRIORITY, integer=True)
    f.number("credit_s", 0, MAX_CREDIT_S)
    if sla := f.child("sla", Sla):
        sla.number("threshold_s", 0, MAX_DURATION_S, above=True)
        sla.number("target", 0, 1, above=True)
        f.values["sla"] = sla.build()
    f.number("offer_timeout_s", 0, MAX_DURATION_S, above=True)
    f.number("max_no_answer", 1, MAX_COUNT, integer=True)
    f.number("wrap_up_s", 0, MAX_DURATION_S)
    f.number("max_waiting", 0, MAX_COUNT, integer=True)
    f.number("max_wait_s", 0, MAX_DURATION_S)
    if callback := f.child("callback", CallbackPolicy):
        for key in ("offer_when_ewt_s", "retry_after_s", "max_schedule_ahead_s"):
            callback.number(key, 0, MAX_DURATION_S, above=True)
        callback.number("max_attempts", 1, MAX_COUNT, integer=True)
        f.values["callback"] = callback.build()
    f.values["steps"] = tuple(_steps(f))
    return f.result()


def _steps(queue: Fields[QueueConfig]) -> list[Step]:
    steps = []
    previous: float | None = None
    for path, item in queue.items("steps"):
        step = Fields(item, path, queue.errors, Step)
        step.required("after_s", "skills")
        step.number("after_s", 0, MAX_DURATION_S, above=True)
        step.skills("skills")
        after = step.values.get("after_s")
        if after is not None:
            if previous is not None and after <= previous:
                step.fail("after_s", "must be greater than the previous step's after_s")
            previous = after
        if (built := step.build()) is not None:
            steps.append(built)
    return steps


def parse_new_interaction(body: Mapping[str, Any]) -> NewInteraction:
    """A new interaction from a POST /v1/interactions body (SPEC §4).

    `preferred_agents` and `preferred_wait_s` go together: a non-empty list needs a wait > 0
    (the seconds during which only those agents are offered the interaction), and a wait > 0
    needs the list. Without them (wait 0, the default) any qualified agent may take it at once.
    """
    f = Fields(body, "", [], NewInteraction)
    f.required("queue")
    f.text("id", ID)
    f.text("queue", NAME)
    f.choice("channel", Channel)
    f.number("priority", 0, MAX_PRIORITY, integer=True)
    f.number("credit_s", 0, MAX_CREDIT_S)
    f.skills("skills")
    agents = f.items("preferred_agents")
    if len(agents) > MAX_PREFERRED_AGENTS:
        f.fail("preferred_agents", f"must have at most {MAX_PREFERRED_AGENTS} entries")
    valid = []
    for path, agent in agents:
        problem = ID.problem(agent)
        if problem:
            f.errors.append(FieldError(path, problem))
        else:
            valid.append((path, agent))
    check_unique(valid, f.errors)
    f.values["preferred_agents"] = tuple(agent for _, agent in valid)
    listed = bool(f.table.get("preferred_agents"))
    if listed:
        f.required("preferred_wait_s")
    f.number("preferred_wait_s", 0, MAX_PREFERRED_WAIT_S, above=listed)
    if not listed and f.values.get("preferred_wait_s", 0) > 0:
        f.fail("preferred_wait_s", "needs preferred_agents")
    if f.given("data"):
        _check_data(f)
    return f.result()


def _check_data(f: Fields[NewInteraction]) -> None:
    data = f.table["data"]
    if not isinstance(data, Mapping):
        f.fail("data", "must be an object")
        return
    if nesting(data) > MAX_DATA_DEPTH:  # before json.dumps, which recurses
        f.fail("data", f"must nest at most {MAX_DATA_DEPTH} levels")
        return
    try:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        size = len(text.encode())
    except (TypeError, ValueError):  # lone surrogates fail only at encode()
        f.fail("data", "must be a JSON value")
        return
    if size > MAX_DATA_BYTES:
        f.fail("data", f"must be at most {MAX_DATA_BYTES} bytes as compact JSON")
    else:
        f.values["data"] = data


def parse_agent_profile(body: Mapping[str, Any]) -> AgentProfile:
    """An agent profile from a PUT /v1/agents/{id} body (SPEC §4)."""
    f = Fields(body, "", [], AgentProfile)
    f.required("skills")
    f.skills("skills", limit=None)
    channels = f.int_map("channels", lambda key: choice_problem(key, Channel), MAX_CHANNEL_CAPACITY)
    if channels is not None:
        if not channels:
            f.fail("channels", "must have at least one channel")
        f.values["channels"] = {
            Channel(k): v for k, v in channels.items() if choice_problem(k, Channel) is None
        }
    f.text("name", DISPLAY_NAME)
    return f.result()


REASON = Text(re.compile(r"[\w .:-]{1,64}"), "must be 1..64 letters, digits, spaces or _.:-")
_ACTION_FIELDS = {
    "accept": ("agent_id",),
    "reject": ("agent_id", "reason"),
    "complete": ("agent_id", "outcome", "wrap_up_s"),
    "transfer": ("agent_id", "queue"),
}


def parse_agent_action(action: str, body: Mapping[str, Any]) -> AgentAction:
    """The body of POST /v1/interactions/{id}/<action> (accept, reject, complete, transfer)."""
    f = Fields(body, "", [], AgentAction)
    allowed = _ACTION_FIELDS[action]
    for key in f.table:
        if key not in allowed and key in {x.name for x in fields(AgentAction)}:
            f.fail(str(key), "unknown field")
    f.required(*(k for k in allowed if k in ("agent_id", "reason", "queue")))
    f.text("agent_id", ID)
    f.choice("reason", RejectReason)
    if f.given("outcome") and f.table["outcome"] == Outcome.AGENT_LOST:
        f.fail("outcome", "agent_lost is set by a forced logout only")
    f.choice("outcome", Outcome)
    f.number("wrap_up_s", 0, MAX_DURATION_S)
    f.text("queue", NAME)
    return f.result()


def parse_state_change(body: Mapping[str, Any]) -> StateChange:
    """The body of POST /v1/agents/{id}/state."""
    f = Fields(body, "", [], StateChange)
    f.required("state")
    f.choice("state", AgentState)
    f.text("reason", REASON)
    if f.given("force"):
        if isinstance(f.table["force"], bool):
            f.values["force"] = f.table["force"]
        else:
            f.fail("force", "must be a boolean")
    return f.result()


def parse_callback(body: Mapping[str, Any]) -> CallbackRequest:
    """The body of POST /v1/interactions/{id}/callback: `at`, an RFC 3339 time, optional."""
    f = Fields(body, "", [], CallbackRequest)
    if f.given("at"):
        value = f.table["at"]
        try:
            if not isinstance(value, str):
                raise ValueError
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                raise ValueError
            f.values["at"] = moment.timestamp()
        except ValueError:
            f.fail("at", "must be an RFC 3339 time with a zone, e.g. 2026-11-23T09:30:00Z")
    return f.result()


# The edge: limits every body meets before any parser of a field sees it (SPEC §4)

_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*+"|"|[\[\]{}:]')
"""A whole string (possessive: linear time), a quote that starts no whole string, a bracket."""


def json_nesting_problem(raw: bytes, max_field_depth: int = MAX_FIELD_DEPTH) -> FieldError | None:
    """Before the JSON parser (which recurses) sees `raw`: the field that nests deeper than
    `max_field_depth` levels (a field's value is level 1), or None. Strings are skipped whole."""
    depth = 0
    key: str | None = None
    last_string = b""
    for found in _JSON_TOKEN.finditer(raw):
        token = found[0]
        if token == b'"':
            return None  # an unterminated string: the parser stops there, as malformed
        if token[0] == 0x22:  # a string
            last_string = token
        elif token == b":":
            if depth == 1:
                key = _key(last_string)
        elif token in (b"{", b"["):
            depth += 1
            if depth > max_field_depth + 1:
                field = key if key is not None and depth > 1 else "body"
                return FieldError(field, f"must nest at most {max_field_depth} levels")
        else:
            depth -= 1
            if depth == 1:
                key = None
    return None


def _key(token: bytes) -> str | None:
    try:
        name = json.loads(token)
    except ValueError:
        return None
    return name if isinstance(name, str) else None


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


def body_problems(body: Mapping[Any, Any]) -> list[FieldError]:
    """What no field of a parsed body may hold, whatever it is: nesting deeper than
    MAX_FIELD_DEPTH, integers beyond signed 64 bits, strings that are not valid Unicode (lone
    surrogates, which cannot be stored). Checked without recursion."""
    errors: list[FieldError] = []
    pending: list[tuple[object, str, int]] = [(body, "", 0)]
    while pending:
        item, path, depth = pending.pop()
        if isinstance(item, Mapping):
            if depth > MAX_FIELD_DEPTH:
                errors.append(FieldError(_top(path), f"must nest at most {MAX_FIELD_DEPTH} levels"))
                continue
            for name, child in item.items():
                child_path = f"{path}.{name}" if path else str(name)
                if isinstance(name, str) and not _valid_unicode(name):
                    errors.append(FieldError(path or "body", "has a key that is not valid Unicode"))
                pending.append((child, child_path, depth + 1))
        elif isinstance(item, list | tuple):
            if depth > MAX_FIELD_DEPTH:
                errors.append(FieldError(_top(path), f"must nest at most {MAX_FIELD_DEPTH} levels"))
                continue
            pending.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))
        elif isinstance(item, int) and not isinstance(item, bool):
            if not INT64_MIN <= item <= INT64_MAX:
                errors.append(FieldError(path, "must be an integer within signed 64 bits"))
        elif isinstance(item, str) and not _valid_unicode(item):
            errors.append(FieldError(path, "must be valid Unicode (no lone surrogates)"))
    return sorted(set(errors), key=lambda e: e.field)


def _top(path: str) -> str:
    """The top-level field of a path: `data` of `data.a[2].b`."""
    return re.split(r"[.\[]", path, maxsplit=1)[0] or "body"


def _valid_unicode(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
