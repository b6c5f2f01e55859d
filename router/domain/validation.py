"""Validation at the edge and of configuration tables (pure, no I/O).

Request bodies and queue tables are declared once in router/domain/models.py and validated by
`router.domain.fields.validate`; here: the limits every body meets before any field is read
(nesting, integer range, Unicode), ids in paths and headers, and the `Fields` reader of the
configuration file's own tables. A JSON `null` counts as an absent field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from router.domain.fields import ID, Text
from router.domain.models import MAX_DATA_DEPTH
from router.errors import FieldError, ValidationError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")

MAX_FIELD_DEPTH = MAX_DATA_DEPTH
"""Levels of nesting in any field of a body: `data` is the deepest a body may be."""
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


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

    def items(self, key: str) -> list[tuple[str, Any]]:
        """The (path, item) pairs of list field `key`; none if it is missing or not a list."""
        value = self.table.get(key)
        if value is None:
            return []
        if not isinstance(value, list | tuple):
            self.fail(key, "must be a list")
            return []
        return [(f"{self.path(key)}[{i}]", item) for i, item in enumerate(value)]

    @property
    def ok(self) -> bool:
        """True if nothing in this object (nested objects included) had a problem."""
        return len(self.errors) == self._errors_before

    def build(self) -> T | None:
        """The dataclass built from `values`, or None if there was a problem."""
        return cast(Callable[..., T], self.cls)(**self.values) if self.ok else None


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
