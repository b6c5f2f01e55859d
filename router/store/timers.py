"""Timer kinds, read from their one declaration: `M.TIMERS` in router/lua/lib/timers.lua.

A timer is the member `<kind>:<id>` of the sorted set `timers` (router/store/keys.py), scored by
its due time in ms; `id` names a record of the kind's record type.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Literal, cast

Record = Literal["interaction", "agent", "class"]

_BLOCK = re.compile(r"^M\.TIMERS = \{\n(.*?)^\}", re.MULTILINE | re.DOTALL)
_KIND = re.compile(r"\s*\{'(\w+)',\s*'(interaction|agent|class)',\s*\w+\},(\s*--.*)?")


def _read_kinds() -> dict[str, Record]:
    source = resources.files("router").joinpath("lua", "lib", "timers.lua").read_text("utf-8")
    block = _BLOCK.search(source)
    if block is None:
        raise RuntimeError("lib/timers.lua declares no M.TIMERS table")
    kinds: dict[str, Record] = {}
    for line in block.group(1).splitlines():
        found = _KIND.fullmatch(line)
        if found is None:
            raise RuntimeError(f"lib/timers.lua: not one timer kind a line: {line!r}")
        kinds[found.group(1)] = cast(Record, found.group(2))
    return kinds


KINDS = _read_kinds()
"""Every timer kind -> the type of record its id names, in the declaration's order."""


def kinds_of(record: Record) -> tuple[str, ...]:
    """The kinds of timer a record of this type may have."""
    return tuple(kind for kind, of in KINDS.items() if of == record)


def declared(kind: str, record: Record) -> str:
    """`kind`, checked against the declaration: a kind that code expects by name."""
    if KINDS.get(kind) != record:
        raise RuntimeError(f"lib/timers.lua declares no timer kind {kind!r} of {record} records")
    return kind


def member(kind: str, record_id: str | int) -> str:
    """The member of one timer in the sorted set `timers`."""
    return f"{kind}:{record_id}"


def parse(timer: str) -> tuple[str, str]:
    """The kind and the record id of a timer's member."""
    kind, _, record_id = timer.partition(":")
    return kind, record_id
