"""Typed keys of the aiohttp application: the shared resources every handler may use."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis

from router.api.auth import Authenticator, Principal
from router.clock import Clock
from router.config import Config
from router.store.engine import Engine

CONFIG = web.AppKey("config", Config)
CLOCK = web.AppKey("clock", Clock)
REDIS = web.AppKey("redis", Redis)
ENGINE = web.AppKey("engine", Engine)
AUTH = web.AppKey("auth", Authenticator)
PRINCIPAL = web.RequestKey("principal", Principal)
