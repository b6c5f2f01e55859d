"""Store URLs (§8): one Redis, a primary watched by Sentinels, a Redis Cluster."""

from __future__ import annotations

import pytest

from router.errors import ConfigError
from router.store.url import StoreKind, StoreUrl, parse_store_url


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("redis://h:6380/2", StoreUrl(StoreKind.REDIS, "redis://h:6380/2")),
        ("unix:///run/redis.sock", StoreUrl(StoreKind.REDIS, "unix:///run/redis.sock")),
        (
            "redis+sentinel://s1:26380,s2,[::1]:26381/acd",
            StoreUrl(
                StoreKind.SENTINEL,
                "redis+sentinel://s1:26380,s2,[::1]:26381/acd",
                (("s1", 26380), ("s2", 26379), ("::1", 26381)),
                "acd",
            ),
        ),
        (
            "redis+sentinel://user:p%40ss@s1:26379/main-store/3",
            StoreUrl(
                StoreKind.SENTINEL,
                "redis+sentinel://user:p%40ss@s1:26379/main-store/3",
                (("s1", 26379),),
                "main-store",
                3,
                "user",
                "p@ss",
            ),
        ),
        (
            "redis+cluster://:pw@n1:7000,n2",
            StoreUrl(
                StoreKind.CLUSTER,
                "redis+cluster://:pw@n1:7000,n2",
                (("n1", 7000), ("n2", 6379)),
                password="pw",
            ),
        ),
    ],
)
def test_store_urls(url: str, parsed: StoreUrl) -> None:
    assert parse_store_url(url) == parsed


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("localhost:6379", "unknown scheme"),
        ("sentinel://h:26379/acd", "unknown scheme"),
        ("redis+sentinel://h:26379", "the master name is missing or malformed"),
        ("redis+sentinel://h:26379/a b", "the master name is missing or malformed"),
        ("redis+sentinel://h:26379/acd/x", "unexpected path"),
        ("redis+sentinel://h:99999/acd", "each host must be host:port"),
        ("redis+sentinel://h:1,,h:2/acd", "each host must be host:port"),
        ("redis+cluster://n1:7000/0", "unexpected path"),
        ("redis+cluster://", "each host must be host:port"),
    ],
)
def test_bad_store_urls_name_the_field_in_one_line(url: str, why: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_store_url(url, "--redis-url")
    assert [e.field for e in raised.value.errors] == ["--redis-url"]
    assert str(raised.value).startswith(f"--redis-url: {why}; the forms are redis://")
    assert "\n" not in str(raised.value)
