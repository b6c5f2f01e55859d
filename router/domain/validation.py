"""Validation at the edge (pure, no I/O): the limits every body meets before any field is read
(nesting, integer range, Unicode) and ids in paths and headers. Request bodies and configuration
tables are declared in router/domain/models.py (and router/config.py) and validated by
`router.domain.fields.validate`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, cast

from router.domain.fields import ID
from router.domain.models import MAX_DATA_DEPTH
from router.errors import FieldError, ValidationError

MAX_FIELD_DEPTH = MAX_DATA_DEPTH
"""Levels of nesting in any field of a body: `data` is the deepest a body may be."""
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


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


def whole_number(text: str, low: int, high: int) -> int | None:
    """`text` as an integer in low..high, or None: ASCII digits only (`isdigit` takes "²", which
    `int` refuses) and not longer than `high`'s (`int` refuses very long ones)."""
    if not text.isascii() or not text.isdigit() or len(text.lstrip("0")) > len(str(high)):
        return None
    value = int(text)
    return value if low <= value <= high else None


def json_nesting_problem(raw: bytes, max_field_depth: int = MAX_FIELD_DEPTH) -> FieldError | None:
    """Before the JSON parser (which recurses) sees `raw`: the field that nests deeper than
    `max_field_depth` levels (a field's value is level 1), or None. Strings are skipped whole."""
    if raw.count(b"{") + raw.count(b"[") <= max_field_depth + 1:
        return None  # too few brackets to nest too deep, wherever they are: no need to scan
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
