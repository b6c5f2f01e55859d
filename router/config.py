"""The configuration file (SPEC §7): service settings, API keys, webhooks and queues."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from router.domain.fields import NAME, Text, validate
from router.domain.models import EVENT_TYPES, QueueConfig
from router.domain.validation import Fields, check_unique
from router.errors import ConfigError, FieldError, ValidationError
from router.settings import ServiceSettings

ENV_NAME = Text(re.compile(r"[A-Za-z_][A-Za-z0-9_]*"), "must be an environment variable name")
SHA256 = Text(re.compile(r"[0-9a-fA-F]{64}"), "must be 64 hexadecimal digits")
HTTP_URL = Text(re.compile(r"https?://[^\s/?#]+\S*"), "must be an http:// or https:// URL")


class Role(StrEnum):
    ADMIN = "admin"
    PLATFORM = "platform"
    MONITOR = "monitor"


@dataclass(frozen=True)
class ApiKeyConfig:
    """An API key: its secret is read from the variable `env`, or known by its `sha256` digest."""

    name: str
    role: Role
    env: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class WebhookConfig:
    """A receiver of events, signed with the secret in the variable `secret_env`."""

    url: str
    secret_env: str
    types: tuple[str, ...] = EVENT_TYPES


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    service: ServiceSettings
    queues: tuple[QueueConfig, ...] = ()
    keys: tuple[ApiKeyConfig, ...] = ()
    webhooks: tuple[WebhookConfig, ...] = ()


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """The configuration in TOML file `path`, with `ACD_*` variables of `env` over `[service]`.

    Every problem, the file's name first on each line, goes into one ConfigError.
    """
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except (OSError, ValueError) as error:
        # tomllib.TOMLDecodeError and UnicodeDecodeError are both ValueErrors.
        raise _config_error(path, [FieldError("", str(error))]) from error
    errors: list[FieldError] = []
    top = Fields(document, "", errors, Config)
    service = _service(top, env)
    queue_tables, key_tables = top.items("queues"), top.items("keys")
    queues = []
    for where, table in queue_tables:
        try:
            queues.append(validate(QueueConfig, table, where))
        except ValidationError as error:
            errors.extend(error.errors)
    check_unique(_names(queue_tables), errors)
    keys = [_key(top, where, table) for where, table in key_tables]
    check_unique(_names(key_tables), errors)
    webhooks = [_webhook(top, where, table) for where, table in top.items("webhooks")]
    if errors or service is None:
        raise _config_error(path, errors)
    return Config(
        replace(service, config=str(path)),
        tuple(queues),
        tuple(k for k in keys if k is not None),
        tuple(w for w in webhooks if w is not None),
    )


def _config_error(path: str | Path, errors: list[FieldError]) -> ConfigError:
    return ConfigError("\n".join(f"{path}: {error}" for error in errors), errors)


def _names(tables: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    return [
        (f"{where}.name", table["name"])
        for where, table in tables
        if isinstance(table, Mapping) and isinstance(table.get("name"), str)
    ]


def _service(top: Fields[Config], env: Mapping[str, str] | None) -> ServiceSettings | None:
    table = top.table.get("service", {})
    if not isinstance(table, Mapping):
        top.fail("service", "must be a table")
        return None
    try:
        return ServiceSettings.from_mapping(table, "service").with_env(env)
    except ConfigError as error:
        top.errors.extend(error.errors)
        return None


def _key(top: Fields[Config], where: str, table: object) -> ApiKeyConfig | None:
    key = Fields(table, where, top.errors, ApiKeyConfig)
    key.required("name", "role")
    key.text("name", NAME)
    key.choice("role", Role)
    key.text("env", ENV_NAME)
    key.text("sha256", SHA256)
    if isinstance(table, Mapping) and key.given("env") == key.given("sha256"):
        top.errors.append(FieldError(where, "needs exactly one of env or sha256"))
    if "sha256" in key.values:
        key.values["sha256"] = key.values["sha256"].lower()
    return key.build()


def _webhook(top: Fields[Config], where: str, table: object) -> WebhookConfig | None:
    hook = Fields(table, where, top.errors, WebhookConfig)
    hook.required("url", "secret_env")
    hook.text("url", HTTP_URL)
    hook.text("secret_env", ENV_NAME)
    if hook.given("types"):
        types = hook.items("types")
        if hook.table["types"] == []:
            hook.fail("types", "must name at least one event type")
        for path, type_ in types:
            if type_ not in EVENT_TYPES:
                top.errors.append(FieldError(path, "is not an event type"))
        hook.values["types"] = tuple(dict.fromkeys(t for _, t in types if t in EVENT_TYPES))
    return hook.build()
