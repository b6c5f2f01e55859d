"""Builds router/lua/ into one Redis Functions library and calls its operations with FCALL."""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import msgpack
from redis.asyncio import Redis
from redis.exceptions import ResponseError

_INCLUDE = re.compile(r"^--@include (\w+)$", re.MULTILINE)
_NAME = "{library}"
"""Where the library's name goes in its source: it is known only once the source is hashed."""


def _read(name: str) -> str:
    return resources.files("router").joinpath("lua", name).read_text(encoding="utf-8")


def operation_source(operation: str) -> str:
    """One operation's file: its header, `--@include` lines and body."""
    return _read(f"{operation}.lua")


def operations() -> list[str]:
    """The names of every operation script."""
    folder = resources.files("router").joinpath("lua")
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".lua"))


@dataclass(frozen=True)
class Library:
    """The Functions library: `name` carries a hash of `source`, so that routers of different
    versions on one Redis each load and call their own."""

    name: str
    source: str

    def function(self, operation: str) -> str:
        """The registered name of one operation."""
        return f"{self.name}_{operation}"


@functools.cache
def library() -> Library:
    """Every lib file included by an operation, defined once, then each operation's file wrapped
    as the body of its function (`--@include` lines are Lua comments and stay)."""
    bodies = {op: operation_source(op) for op in operations()}
    libs = list(dict.fromkeys(m for body in bodies.values() for m in _INCLUDE.findall(body)))
    parts = [f"#!lua name={_NAME}\n"]
    parts += [f"-- lib/{lib}.lua\n{_read(f'lib/{lib}.lua')}\n" for lib in libs]
    for op, body in bodies.items():
        parts.append(
            f"redis.register_function('{_NAME}_{op}', function(KEYS, ARGV)\n"
            f"M.begin(KEYS, ARGV)\n{body}\nend)\n"
        )
    template = "".join(parts)
    name = "acd_" + hashlib.sha1(template.encode()).hexdigest()[:16]
    return Library(name, template.replace(_NAME, name))


def _missing(exc: ResponseError) -> bool:
    return str(exc).startswith("Function not found")


@dataclass
class ScriptRunner:
    """Every operation, loaded once as one library; called with one msgpack argument."""

    redis: Redis

    @property
    def library(self) -> Library:
        """The library this process calls."""
        return library()

    async def load(self) -> None:
        """FUNCTION LOAD the library (at startup, and again if Redis lost its functions)."""
        await self.redis.function_load(self.library.source, replace=True)

    async def loaded(self) -> bool:
        """Whether Redis holds the library."""
        found = await self.redis.function_list(library=self.library.name)
        return bool(found)

    async def call(self, name: str, prefix: str, args: dict[str, Any]) -> list[Any]:
        """Run one operation; its reply is the unpacked list `[code, payload, payload]`."""
        packed = msgpack.packb(args, use_bin_type=False)
        function = self.library.function(name)
        try:
            raw = await self.redis.fcall(function, 1, prefix, packed)
        except ResponseError as exc:
            if not _missing(exc):
                raise
            await self.load()
            raw = await self.redis.fcall(function, 1, prefix, packed)
        reply: list[Any] = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        return reply
