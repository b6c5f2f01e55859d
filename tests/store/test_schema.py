"""The storage schema has one home each: keys (keys.py = lib/keys.lua), timer kinds
(lib/timers.lua, read by timers.py) and the library's files (scripts.LIBRARY_FILES)."""

from __future__ import annotations

import inspect
import re
from importlib import resources
from pathlib import Path
from typing import Any, get_type_hints

import msgpack
from redis.asyncio import Redis

from router.settings import ServiceSettings
from router.store import timers
from router.store.engine import call_settings
from router.store.keys import ClassId, Keys
from router.store.scripts import LIBRARY_FILES, lib_source

ROUTER = Path(str(resources.files("router")))
SAMPLES: dict[Any, Any] = {str: "q:1", ClassId: 7, int: 29_000_000}
"""An argument of each type a builder takes (a colon in ids must pass through)."""


async def run_library(redis: Redis, prefix: str, body: str, *args: bytes) -> Any:
    """Runs `body` after the library's files and M.begin, as one EVAL; unpacks its reply."""
    cfg = msgpack.packb(call_settings(ServiceSettings()), use_bin_type=False)
    begin = msgpack.packb({"now": 0, "cfg": cfg}, use_bin_type=False)
    source = f"{lib_source()}M.begin(KEYS, ARGV)\n{body}"
    return msgpack.unpackb(await redis.eval(source, 1, prefix, begin, *args), raw=False)


def python_keys(keys: Keys) -> tuple[dict[str, str], dict[str, list[Any]]]:
    """Every key keys.py builds (with SAMPLES as arguments), and the arguments per builder."""
    built: dict[str, str] = {}
    samples: dict[str, list[Any]] = {}
    for name, member in inspect.getmembers(Keys):
        if name.startswith("_") or name in ("prefix", "namespace"):
            continue
        if isinstance(member, property):
            built[name] = getattr(keys, name)
        else:
            hints = get_type_hints(member)
            params = list(inspect.signature(member).parameters)[1:]
            samples[name] = [SAMPLES[hints[p]] for p in params]
            built[name] = member(keys, *samples[name])
    return built, samples


async def test_lua_builds_every_key_as_keys_py_does(redis: Redis) -> None:
    keys = Keys("schema:test")
    expected, samples = python_keys(keys)
    body = """
local samples = cmsgpack.unpack(ARGV[2])
local out = {}
for name, key in pairs(M.keys) do
  if type(key) == 'function' then
    out[name] = samples[name] and key(unpack(samples[name])) or 'no builder in keys.py'
  else
    out[name] = key
  end
end
return cmsgpack.pack(out)
"""
    built = await run_library(redis, keys.prefix, body, msgpack.packb(samples, use_bin_type=False))
    assert built == expected
    assert len(built) > 30


def test_no_key_is_named_outside_the_key_schema() -> None:
    keys = Keys("n")
    built, samples = python_keys(keys)
    tags = set()  # what a key's name starts with, before its first argument
    for name, key in built.items():
        suffix = key.removeprefix(keys.prefix)
        if name in samples:
            suffix = suffix[: suffix.index(str(samples[name][0]))]
        if ":" in suffix:
            tags.add(suffix)
    literal = re.compile("[\"']({})".format("|".join(re.escape(t) for t in sorted(tags))))
    sources = [*ROUTER.glob("lua/**/*.lua"), *ROUTER.glob("**/*.py")]
    homes = {ROUTER / "lua/lib/keys.lua", ROUTER / "store/keys.py"}
    found = [
        f"{path.relative_to(ROUTER)}:{n}: {line.strip()}"
        for path in sources
        if path not in homes
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert {"ag:", "qw:", "m:c", "m:w:"} <= tags
    assert found == []


async def test_the_timer_kinds_python_reads_are_the_library_s(redis: Redis) -> None:
    body = """
local kinds = {}
for i, t in ipairs(M.TIMERS) do kinds[i] = {t[1], t[2], type(t[3])} end
return cmsgpack.pack(kinds)
"""
    declared = await run_library(redis, Keys("t").prefix, body)
    assert declared == [[k, record, "function"] for k, record in timers.KINDS.items()]
    assert timers.kinds_of("interaction") == ("esc", "mw", "pw", "off", "cbo", "cbd", "cbr")
    assert timers.kinds_of("agent") == ("wu",)


def test_the_library_lists_each_of_its_files_once() -> None:
    files = {p.stem for p in (ROUTER / "lua" / "lib").glob("*.lua")}
    assert sorted(LIBRARY_FILES) == sorted(files)
    assert LIBRARY_FILES[:2] == ("call", "keys")  # M.on_call, then the keys every file uses
