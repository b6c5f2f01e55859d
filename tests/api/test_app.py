"""The app's store client: settings that long-lived event streams depend on."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient

from router.api.keys import REDIS
from router.events.sse import KEEPALIVE_S


async def test_blocking_reads_outlast_the_keep_alive(
    client: TestClient[web.Request, web.Application],
) -> None:
    # redis-py's default socket timeout (5 s) would end every quiet event stream at 5 s.
    kwargs = client.app[REDIS].connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] > KEEPALIVE_S
