"""The configuration file (SPEC §7): service settings, API keys, webhooks and queues."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self, TypeVar

from pydantic import AfterValidator, field_validator, model_validator

from router.domain.fields import (
    Body,
    Integer,
    Matches,
    OneOf,
    Text,
    problem_at,
    problems_at,
    validate,
)
from router.domain.models import EVENT_TYPES, Name, QueueConfig
from router.errors import ConfigError, FieldError, ValidationError
from router.settings import ServiceSettings

ENV_NAME = Text(re.compile(r"[A-Za-z_][A-Za-z0-9_]*"), "must be an environment variable name")
SHA256 = Text(re.compile(r"[0-9a-fA-F]{64}"), "must be 64 hexadecimal digits")
HTTP_URL = Text(re.compile(r"https?://[^\s/?#]+\S*"), "must be an http:// or https:// URL")


class Role(StrEnum):
    ADMIN = "admin"
    PLATFORM = "platform"
    MONITOR = "monitor"


class ApiKeyConfig(Body):
    """An API key: its secret is read from the variable `env`, or known by its `sha256` digest."""

    name: Name
    role: Annotated[Role, OneOf(Role)]
    env: Annotated[str, Matches(ENV_NAME)] | None = None
    sha256: Annotated[str, Matches(SHA256), AfterValidator(str.lower)] | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> Self:
        if (self.env is None) == (self.sha256 is None):
            raise problem_at((), "needs exactly one of env or sha256", None)
        return self


MAX_WEBHOOK_CONCURRENCY = 32
"""Delivery loops of one webhook in one process: each holds a Redis connection."""


class WebhookConfig(Body):
    """A receiver of events, signed with the secret in the variable `secret_env`."""

    url: Annotated[str, Matches(HTTP_URL)]
    secret_env: Annotated[str, Matches(ENV_NAME)]
    types: tuple[str, ...] = EVENT_TYPES
    concurrency: Annotated[int, Integer(1, MAX_WEBHOOK_CONCURRENCY)] = 1

    @field_validator("types")
    @classmethod
    def _event_types(cls, types: tuple[str, ...]) -> tuple[str, ...]:
        if not types:
            raise problem_at((), "must name at least one event type", types)
        unknown = [((i,), "is not an event type", t) for i, t in enumerate(types)]
        unknown = [u for u in unknown if u[2] not in EVENT_TYPES]
        if unknown:
            raise problems_at(unknown)
        return tuple(dict.fromkeys(types))


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
    config, errors = read_config(path, env)
    if errors or config is None:
        raise config_error(path, errors)
    return config


def read_config(
    path: str | Path, env: Mapping[str, str] | None = None
) -> tuple[Config | None, list[FieldError]]:
    """The configuration in `path` as far as it is valid, and every problem of the file: an
    entry with a problem is left out, a setting left at its default. None when the file cannot
    be read or parsed (nothing else can be checked then). With problems, the configuration is
    fit only for finding more problems (check-config), never to run with."""
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except (OSError, ValueError) as error:
        # tomllib.TOMLDecodeError and UnicodeDecodeError are both ValueErrors.
        return None, [FieldError("", str(error))]
    errors: list[FieldError] = []
    for name in sorted(set(document) - TOP_LEVEL):
        errors.append(FieldError(name, "unknown field"))
    service = _service(document, env, errors)
    queue_tables = _tables(document, "queues", errors)
    key_tables = _tables(document, "keys", errors)
    queues = _valid(QueueConfig, queue_tables, errors)
    check_unique(_names(queue_tables), errors)
    keys = _valid(ApiKeyConfig, key_tables, errors)
    check_unique(_names(key_tables), errors)
    webhooks = _valid(WebhookConfig, _tables(document, "webhooks", errors), errors)
    return Config(replace(service, config=str(path)), queues, keys, webhooks), errors


Table = tuple[str, Any]
"""A table of the file and its path (`queues[2]`)."""
TOP_LEVEL = frozenset({"service", "queues", "keys", "webhooks"})

B = TypeVar("B", bound=Body)


def _tables(document: Mapping[str, Any], name: str, errors: list[FieldError]) -> list[Table]:
    """The (path, table) of each entry of the array of tables `name`."""
    found = document.get(name, [])
    if not isinstance(found, list):
        errors.append(FieldError(name, "must be a list"))
        return []
    return [(f"{name}[{i}]", table) for i, table in enumerate(found)]


def _valid(cls: type[B], tables: list[Table], errors: list[FieldError]) -> tuple[B, ...]:
    """Each table validated as a `cls`; the problems of the others go to `errors`."""
    found = []
    for where, table in tables:
        try:
            found.append(validate(cls, table, where))
        except ValidationError as error:
            errors.extend(error.errors)
    return tuple(found)


def check_unique(named: Iterable[tuple[str, object]], errors: list[FieldError]) -> None:
    """Report each (path, value) whose value an earlier one already has."""
    first: dict[object, str] = {}
    for path, value in named:
        if value in first:
            errors.append(FieldError(path, f"duplicates {first[value]}"))
        else:
            first[value] = path


def config_error(path: str | Path, errors: list[FieldError]) -> ConfigError:
    """One ConfigError of every problem of the file `path`, a line each, the file's name first."""
    return ConfigError("\n".join(f"{path}: {error}" for error in errors), errors)


def _names(tables: list[Table]) -> list[tuple[str, str]]:
    return [
        (f"{where}.name", table["name"])
        for where, table in tables
        if isinstance(table, Mapping) and isinstance(table.get("name"), str)
    ]


def _service(
    document: Mapping[str, Any], env: Mapping[str, str] | None, errors: list[FieldError]
) -> ServiceSettings:
    table = document.get("service", {})
    if not isinstance(table, Mapping):
        errors.append(FieldError("service", "must be a table"))
        table = {}
    settings, problems = ServiceSettings.parse(table, "service")
    errors.extend(problems)
    settings, problems = settings.parse_env(env)
    errors.extend(problems)
    return settings
