"""Loads the Lua scripts of router/lua/, splicing in their `--@include` libraries."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import msgpack
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

_INCLUDE = re.compile(r"^--@include (\w+)$", re.MULTILINE)


def _read(name: str) -> str:
    return resources.files("router").joinpath("lua", name).read_text(encoding="utf-8")


def script_source(operation: str) -> str:
    """The full source of one operation: its file with every include replaced by the library."""
    return _INCLUDE.sub(lambda m: _read(f"lib/{m.group(1)}.lua"), _read(f"{operation}.lua"))


def operations() -> list[str]:
    """The names of every operation script."""
    folder = resources.files("router").joinpath("lua")
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".lua"))


@dataclass
class Script:
    name: str
    source: str
    sha: str = ""


@dataclass
class ScriptRunner:
    """Every operation script, loaded once; called with one msgpack argument."""

    redis: Redis
    scripts: dict[str, Script] = field(default_factory=dict)

    async def load(self) -> None:
        """SCRIPT LOAD every operation (at startup, and again if Redis lost its script cache)."""
        for name in operations():
            script = self.scripts.get(name) or Script(name, script_source(name))
            script.sha = await self.redis.script_load(script.source)
            self.scripts[name] = script

    async def call(self, name: str, prefix: str, args: dict[str, Any]) -> list[Any]:
        """Run one operation; its reply is the unpacked list `[code, payload, payload]`."""
        packed = msgpack.packb(args, use_bin_type=False)
        script = self.scripts[name]
        try:
            raw = await self.redis.evalsha(script.sha, 1, prefix, packed)
        except NoScriptError:
            await self.load()
            raw = await self.redis.evalsha(script.sha, 1, prefix, packed)
        reply: list[Any] = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        return reply
