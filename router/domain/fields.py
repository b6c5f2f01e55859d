"""Field types of request bodies and views, each declared once: pydantic validates with them, and
the API document's JSON Schema (OpenAPI 3.1) is generated from the same declarations.

A failed validation becomes one ValidationError listing every problem, each named by its path
(`queues[2].steps[0].after_s`, `skills.billing`, `preferred_agents[1]`) with the project's own
wording (`must be <= 5`). In a request body a JSON `null` counts as an absent field; booleans are
not numbers; an integer is fine where a number is expected, and an integral number (`5.0`) where
an integer is (JSON Schema's `integer`).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

from annotated_types import Ge, GroupedMetadata, Gt, Le
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    Strict,
    model_validator,
)
from pydantic import ValidationError as PydanticError
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import InitErrorDetails, PydanticCustomError, core_schema

from router.errors import FieldError, ValidationError

B = TypeVar("B", bound=BaseModel)


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

    def check(self, value: object) -> object:
        """`value`, or a validation error with the rule's message (a pydantic validator)."""
        problem = self.problem(value)
        if problem:
            raise PydanticCustomError("text", problem)
        return value

    @property
    def json_pattern(self) -> str:
        """The pattern as JSON Schema writes it (anchored: JSON Schema searches)."""
        return f"^(?:{self.pattern.pattern})$"


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
REASON = Text(re.compile(r"[\w .:-]{1,64}"), "must be 1..64 letters, digits, spaces or _.:-")


@dataclass(frozen=True, eq=False)  # hashed by identity: a Union of annotated types hashes them
class Doc:
    """Annotation metadata: keywords added to a type's JSON Schema (never to its validation)."""

    keywords: Mapping[str, Any]
    replace: bool = False
    """The keywords are the whole schema (the type's own is dropped)."""

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The type's schema with `keywords`."""
        return dict(self.keywords) if self.replace else {**handler(schema), **self.keywords}


@dataclass(frozen=True)
class Matches(GroupedMetadata):
    """A string that matches `rule` in full: `Annotated[str, Matches(NAME)]`."""

    rule: Text

    def __iter__(self) -> Iterator[object]:
        yield BeforeValidator(self.rule.check)
        yield Doc({"pattern": self.rule.json_pattern})


def _integral(value: object) -> object:
    """An integral float (`5.0`) as an int; anything else unchanged."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


@dataclass(frozen=True)
class Integer(GroupedMetadata):
    """An integer in [low, high]; `5.0` counts as 5, a boolean is no integer."""

    low: int
    high: int

    def __iter__(self) -> Iterator[object]:
        yield Ge(self.low)
        yield Le(self.high)
        yield Strict()
        yield BeforeValidator(_integral)


@dataclass(frozen=True)
class Number(GroupedMetadata):
    """A finite number in [low, high], or (low, high] if `above`, and at least `least` if given
    (checked after the bounds, so that a value at `low` is told those); a boolean is no number:
    `Annotated[float, …]`."""

    low: float
    high: float
    above: bool = False
    least: float | None = None

    def __iter__(self) -> Iterator[object]:
        yield Gt(self.low) if self.above else Ge(self.low)
        yield Le(self.high)
        yield Field(allow_inf_nan=False)
        yield Strict()
        if self.least is not None:
            yield AfterValidator(functools.partial(_at_least, self.least))
            yield Field(json_schema_extra={"minimum": self.least})  # the document says it too


def _at_least(least: float, value: float) -> float:
    if value < least:
        raise PydanticCustomError("greater_than_equal", "must be >= {ge}", {"ge": least})
    return value


@dataclass(frozen=True)
class OneOf(GroupedMetadata):
    """One of the values of `enum`, but the `excluded` ones, which fail with `why`:
    `Annotated[Channel, OneOf(Channel)]`."""

    enum: type[StrEnum]
    excluded: tuple[str, ...] = ()
    why: str = ""

    def check(self, value: object) -> object:
        """`value`, or a validation error naming the values allowed."""
        if isinstance(value, str) and value in self.excluded:
            raise PydanticCustomError("choice", self.why)
        if isinstance(value, str) and value in self.allowed:
            return value
        # Only what is accepted: naming an excluded value would invite a second refusal.
        raise PydanticCustomError("choice", "must be one of " + ", ".join(self.allowed))

    @property
    def allowed(self) -> list[str]:
        """The values accepted."""
        return [m.value for m in self.enum if m.value not in self.excluded]

    def __iter__(self) -> Iterator[object]:
        yield BeforeValidator(self.check)
        if self.excluded:
            yield Doc({"type": "string", "enum": self.allowed}, replace=True)


def problem_at(loc: tuple[str | int, ...], message: str, value: object) -> PydanticError:
    """A validation error at `loc` (relative to the validator's value), for checks across fields."""
    return problems_at([(loc, message, value)])


def problems_at(found: Sequence[tuple[tuple[str | int, ...], str, object]]) -> PydanticError:
    """Validation errors at several places (relative to the validator's value)."""
    details = [
        InitErrorDetails(type=PydanticCustomError("rule", message), loc=loc, input=value)
        for loc, message, value in found
    ]
    return PydanticError.from_exception_data("body", details)


class Body(BaseModel):
    """A request body or a configuration table: unknown fields are refused, a `null` counts as
    absent, the value is immutable. In the document, every optional field may be null."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_serialization_defaults_required=True,
        regex_engine="python-re",
    )
    named_by_path: ClassVar[str | None] = None
    """A required field that a request's path gives, so that its body may leave it out."""

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, value: Any) -> Any:
        # Only a known field's null: an unknown field is refused whatever its value.
        if isinstance(value, Mapping):
            known = cls.model_fields
            return {k: item for k, item in value.items() if item is not None or k not in known}
        return value

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The model's schema; in a request (validation mode) each optional field is nullable."""
        found = handler(schema)
        if handler.mode != "validation":
            return found
        target = handler.resolve_ref_schema(found)
        if cls.named_by_path in target.get("required", ()):
            target["required"].remove(cls.named_by_path)
        required = set(target.get("required", ()))
        for name, prop in target.get("properties", {}).items():
            if name not in required:
                target["properties"][name] = nullable(prop)
        return found


def nullable(schema: JsonSchemaValue) -> JsonSchemaValue:
    """`schema` or null, its annotations (description, default) kept outside the choice."""
    notes = {k: v for k, v in schema.items() if k in ("description", "default", "examples")}
    inner = {k: v for k, v in schema.items() if k not in notes}
    if "$ref" in inner:  # an object's default beside a choice of types trips SDK generators
        notes.pop("default", None)
    if inner.get("type") == "null" or {"type": "null"} in inner.get("anyOf", ()):
        return schema
    return {"anyOf": [inner, {"type": "null"}], **notes}


# Errors: pydantic's, in the project's wording


def _bound(value: object) -> str:
    """A bound as the messages write it: `86400`, not `86400.0`."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_MESSAGES: dict[str, Callable[[dict[str, Any]], str]] = {
    "missing": lambda ctx: "is required",
    "extra_forbidden": lambda ctx: "unknown field",
    "int_type": lambda ctx: "must be an integer",
    "int_from_float": lambda ctx: "must be an integer",
    "float_type": lambda ctx: "must be a number",
    "finite_number": lambda ctx: "must be a finite number",
    "bool_type": lambda ctx: "must be a boolean",
    "string_type": lambda ctx: "must be a string",
    "model_type": lambda ctx: "must be an object",
    "model_attributes_type": lambda ctx: "must be an object",
    "dict_type": lambda ctx: "must be an object",
    "list_type": lambda ctx: "must be a list",
    "tuple_type": lambda ctx: "must be a list",
    "greater_than_equal": lambda ctx: f"must be >= {_bound(ctx['ge'])}",
    "greater_than": lambda ctx: f"must be > {_bound(ctx['gt'])}",
    "less_than_equal": lambda ctx: f"must be <= {_bound(ctx['le'])}",
    "too_long": lambda ctx: f"must have at most {ctx['max_length']} entries",
    "too_short": lambda ctx: f"must have at least {ctx['min_length']} entries",
}


def field_path(where: str, loc: tuple[str | int, ...]) -> str:
    """The path of a pydantic error location: `steps[0].after_s`, `skills.billing`."""
    path = where
    for part in loc:
        if part == "[key]":
            continue  # the key's own problem: the path already names the key
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path or "body"


def field_errors(error: PydanticError, where: str = "") -> list[FieldError]:
    """Every problem of a pydantic error as a FieldError, in the project's wording."""
    found = []
    for detail in error.errors(include_url=False, include_input=False):
        wording = _MESSAGES.get(detail["type"])
        message = wording(detail.get("ctx") or {}) if wording else detail["msg"]
        found.append(FieldError(field_path(where, detail["loc"]), message))
    return list(dict.fromkeys(found))


def validate(cls: type[B], value: object, where: str = "") -> B:
    """`value` as a `cls`, or a ValidationError listing every problem (paths start at `where`)."""
    try:
        return cls.model_validate(value)
    except PydanticError as error:
        errors = field_errors(error, where)
        raise ValidationError("; ".join(map(str, errors)), errors) from None
