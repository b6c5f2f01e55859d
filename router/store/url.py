"""Store URLs (§8): one Redis, a primary watched by Sentinels, or a Redis Cluster.

    redis://[user:password@]host:port[/db]             (also rediss://, unix://)
    redis+sentinel://[user:password@]host:port[,host:port...]/<master name>[/db]
    redis+cluster://[user:password@]host:port[,host:port...]

The credentials are those of the Redis servers (primary, replicas, cluster nodes); Sentinels are
asked without any. A port left out is 26379 for a Sentinel and 6379 otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import unquote, urlsplit

from router.errors import ConfigError, FieldError


class StoreKind(StrEnum):
    REDIS = "redis"
    SENTINEL = "sentinel"
    CLUSTER = "cluster"


SCHEMES = {
    "redis": StoreKind.REDIS,
    "rediss": StoreKind.REDIS,
    "unix": StoreKind.REDIS,
    "redis+sentinel": StoreKind.SENTINEL,
    "redis+cluster": StoreKind.CLUSTER,
}
FORMS = (
    "redis://host:port[/db], redis+sentinel://host:port[,host:port...]/<master name>[/db] "
    "or redis+cluster://host:port[,host:port...]"
)
DEFAULT_PORT = {StoreKind.SENTINEL: 26379, StoreKind.CLUSTER: 6379}
_HOST = re.compile(r"(?:\[([0-9A-Fa-f:.]+)\]|([\w.-]+))(?::(\d{1,5}))?")
_MASTER = re.compile(r"[\w.-]{1,128}")

Address = tuple[str, int]


@dataclass(frozen=True)
class StoreUrl:
    """A parsed store URL."""

    kind: StoreKind
    url: str
    """The URL itself (for `redis://` the one redis-py reads)."""
    hosts: tuple[Address, ...] = ()
    """The Sentinels, or the cluster's seed nodes."""
    master: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse_store_url(url: str, where: str = "service.redis_url") -> StoreUrl:
    """The store URL `url`, or a ConfigError naming `where` with the forms it may take."""
    scheme, sep, rest = url.partition("://")
    kind = SCHEMES.get(scheme.lower()) if sep else None
    if kind is None:
        raise _bad(where, "unknown scheme")
    if kind is StoreKind.REDIS:
        return StoreUrl(kind, url)
    userinfo, _, location = rest.rpartition("@")
    netloc, _, path = location.partition("/")
    hosts = [_address(part, DEFAULT_PORT[kind]) for part in netloc.split(",")]
    segments = [unquote(s) for s in path.split("/")] if path else []
    master = segments.pop(0) if kind is StoreKind.SENTINEL and segments else ""
    if not all(hosts):
        raise _bad(where, "each host must be host:port")
    if kind is StoreKind.SENTINEL and not _MASTER.fullmatch(master):
        raise _bad(where, "the master name is missing or malformed")
    allowed = 1 if kind is StoreKind.SENTINEL else 0
    if len(segments) > allowed or not all(re.fullmatch(r"[0-9]{1,9}", s) for s in segments):
        raise _bad(where, "unexpected path")
    credentials = urlsplit(f"redis://{userinfo}@x") if userinfo else None
    return StoreUrl(
        kind,
        url,
        tuple(h for h in hosts if h is not None),
        master,
        int(segments[0]) if segments else 0,
        unquote(credentials.username) if credentials and credentials.username else None,
        unquote(credentials.password) if credentials and credentials.password else None,
    )


def _address(text: str, default_port: int) -> Address | None:
    found = _HOST.fullmatch(text)
    if found is None:
        return None
    port = int(found[3]) if found[3] else default_port
    return (found[1] or found[2], port) if 0 < port <= 65535 else None


def _bad(where: str, why: str) -> ConfigError:
    message = f"{why}; the forms are {FORMS}"
    return ConfigError(f"{where}: {message}", [FieldError(where, message)])
