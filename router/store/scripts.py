"""Builds router/lua/ into one Redis Functions library and calls its operations with FCALL."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import msgpack
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from router.store.connection import FunctionCalls, load_library
from router.store.replication import fcall_replicated

_NAME = "{library}"
"""Where the library's name goes in its source: it is known only once the source is hashed."""

LIBRARY_FILES = (
    "call",  # M.begin, the per-call hooks, replies
    "keys",  # one builder per key (router/store/keys.py is the reference)
    "tables",  # counting and sorting Lua tables
    "records",  # loading and saving queues, interactions and agents (router/store/records.py)
    "events",  # the durable event log
    "timers",  # every timer kind: its record and handler; arming, firing, applying due ones
    "scores",  # the order of waiting interactions and the strategy score of agents
    "requirements",  # skill requirements: merging, meeting, escalation steps
    "classes",  # routing classes: the memo, creation, joining
    "class_fill",  # the batched fill of a new class, and routing what a batch indexed
    "agents",  # capacity, the class indexes of agents, staffed sets, state changes
    "routing",  # placing waiting interactions and matching them with agents
    "offers",  # an offer: making it, and its end without an accept
    "interactions",  # an interaction's arrival and end
    "escalation",  # escalation steps of a waiting interaction
    "preferred",  # preferred waits
    "callbacks",  # callback offers, scheduled callbacks, retry waits
    "metrics",  # business metrics and the live figures of queues
    "ewt",  # the estimated wait, and the competition between classes it reads
    "webhooks",  # a webhook's consumer group: its position, and its count of entries read or lost
)
"""The files of router/lua/lib/, in the order the library defines them: each runs once, at load,
in a block of its own (`do ... end`), so that a file shares nothing with another but the module
table `M`."""


READ_OPERATIONS = frozenset(
    {
        "interaction_get",
        "interaction_list",
        "queue_stats",
        "metrics_snapshot",
        "webhook_group",
        "webhook_next",
        "webhook_touch",
    }
)
"""Operations that change nothing a client sees (at most a cache: the class memo's token, the
metrics snapshot; a webhook's read position in the log): registered `allow-oom`, so that they
still answer while Redis is at its maxmemory and refuses every change (webhooks deliver on)."""


def _read(name: str) -> str:
    return resources.files("router").joinpath("lua", name).read_text(encoding="utf-8")


def operation_source(operation: str) -> str:
    """One operation's file: its header (KEYS, ARGV, returns) and body."""
    return _read(f"{operation}.lua")


def operations() -> list[str]:
    """The names of every operation script."""
    folder = resources.files("router").joinpath("lua")
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".lua"))


def lib_source() -> str:
    """The module table `M` and every file of LIBRARY_FILES, each in its own block."""
    parts = ["local M = {}  -- the module table: the one name the files share\n"]
    parts += [f"do  -- lib/{lib}.lua\n{_read(f'lib/{lib}.lua')}\nend\n" for lib in LIBRARY_FILES]
    return "".join(parts)


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
    """The lib files (`lib_source`), then each operation's file wrapped as the body of its
    function, which M.begin opens."""
    parts = [f"#!lua name={_NAME}\n", lib_source()]
    for op in operations():
        flags = "{'allow-oom'}" if op in READ_OPERATIONS else "{}"
        parts.append(
            f"redis.register_function{{function_name = '{_NAME}_{op}', flags = {flags},\n"
            f"callback = function(KEYS, ARGV)\nM.begin(KEYS, ARGV)\n{operation_source(op)}\nend}}\n"
        )
    template = "".join(parts)
    name = "acd_" + hashlib.sha1(template.encode()).hexdigest()[:16]
    return Library(name, template.replace(_NAME, name))


_IN_RELOAD: ContextVar[bool] = ContextVar("acd_in_reload", default=False)
"""True in the task that runs `ScriptRunner.reloaded`."""


def _missing(exc: ResponseError) -> bool:
    return str(exc).startswith("Function not found")


@dataclass
class ScriptRunner:
    """Every operation, loaded once as one library; called with one msgpack argument."""

    redis: Redis
    wait_ms: int = 0
    """Durability `replicated`: each call then waits up to this long for a replica to hold it
    (router/store/replication.py); 0: `local`."""
    calls: FunctionCalls = field(init=False)
    _reloading: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)
    reloaded: Callable[[], Awaitable[None]] | None = None
    """Run after the library was found missing and loaded again (the store lost its data):
    what the router writes at start is written again."""

    def __post_init__(self) -> None:
        self.calls = FunctionCalls(self.redis)

    @property
    def library(self) -> Library:
        """The library this process calls."""
        return library()

    async def load(self) -> None:
        """FUNCTION LOAD the library (at startup, and again if Redis lost its functions)."""
        await load_library(self.redis, self.library.source)

    async def reload(self) -> None:
        """Load the library again, then run `reloaded`: one call of this process at a time, the
        others waiting, then finding it loaded. If `reloaded` fails, the library is deleted again,
        so that the next call finds it missing and does both anew."""
        async with self._reloading:
            if await self.loaded():
                return
            await self.load()
            if self.reloaded is None:
                return
            inside = _IN_RELOAD.set(True)
            try:
                await self.reloaded()
            except BaseException:
                with contextlib.suppress(RedisError, OSError):
                    await self.redis.function_delete(self.library.name)
                raise
            finally:
                _IN_RELOAD.reset(inside)

    async def loaded(self) -> bool:
        """Whether Redis holds the library."""
        found = await self.redis.function_list(library=self.library.name)
        return bool(found)

    async def call(self, name: str, prefix: str, args: dict[str, Any]) -> list[Any]:
        """Run one operation; its reply is the unpacked list `[code, payload, payload]`."""
        packed = msgpack.packb(args, use_bin_type=False)
        function = self.library.function(name)
        raw = await self._loaded(lambda: self._fcall(function, prefix, packed))
        reply: list[Any] = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        return reply

    async def call_on(self, redis: Redis, name: str, prefix: str, args: dict[str, Any]) -> Any:
        """Run one operation on the client `redis` (a caller's own connection, outside the
        durability wait); the reply as Redis sent it: for operations whose reply holds binary
        data, which msgpack text would not carry (the webhooks')."""
        packed = msgpack.packb(args, use_bin_type=False)
        function = self.library.function(name)
        return await self._loaded(lambda: redis.fcall(function, 1, prefix, packed))

    async def _loaded(self, fcall: Callable[[], Awaitable[Any]]) -> Any:
        """`fcall`, run again once the library is loaded again if Redis had lost it."""
        try:
            return await fcall()
        except ResponseError as exc:
            # A call of `reloaded` finding it missing (deleted again meanwhile) fails that reload.
            if not _missing(exc) or _IN_RELOAD.get():
                raise
            await self.reload()
            return await fcall()

    async def _fcall(self, function: str, prefix: str, packed: bytes) -> Any:
        if self.wait_ms:
            return await fcall_replicated(self.redis, function, prefix, packed, self.wait_ms)
        return await self.calls.fcall(function, prefix, packed)
