"""Typed keys of the aiohttp application: the shared resources every handler may use."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from aiohttp import web
from redis.asyncio import Redis

from router.api.auth import Authenticator, Principal
from router.clock import Clock
from router.config import Config
from router.store.engine import Engine

if TYPE_CHECKING:
    from router.events.sse import StreamFanout

CONFIG = web.AppKey("config", Config)
CLOCK = web.AppKey("clock", Clock)
REDIS = web.AppKey("redis", Redis)
ENGINE = web.AppKey("engine", Engine)
AUTH = web.AppKey("auth", Authenticator)
EVENT_HUB: web.AppKey[StreamFanout] = web.AppKey("event_hub")
"""The event log's reader and the open event streams of this process."""
EVENT_FEED = web.AppKey("event_feed", socket.socket)
"""A worker's end of the socket pair to the machine's event reader (`serve --workers`)."""
PRINCIPAL = web.RequestKey("principal", Principal)
