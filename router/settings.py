"""Service settings: the `[service]` table of the configuration, overridden by `ACD_*` variables."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from router.domain.models import MAX_DURATION_S, Channel
from router.errors import ConfigError, FieldError

DURABILITIES = ("local", "replicated")


@dataclass(frozen=True)
class ServiceSettings:
    listen: str = "127.0.0.1:8080"
    redis_url: str = ""
    """Empty: start a private redis-server (the embedded default)."""
    namespace: str = "main"
    event_log_max: int = 1_000_000
    retention_s: float = 86_400.0
    """Finished interactions expire this long after their end; at most MAX_DURATION_S."""
    exclusive_channels: tuple[str, ...] = ("voice",)
    metrics_auth: bool = False
    max_routing_classes: int = 10_000
    class_fill_batch: int = 500
    """A new routing class is filled with the logged-in agents this many per script call."""
    store_timeout_s: float = 2.0
    """The longest a request waits on the store before it is answered 503."""
    max_streams_per_key: int = 100
    """Open event streams per API key in each process; past it a new stream is a 429."""
    durability: str = "local"
    """`local`: a change is acknowledged once the primary applied it; `replicated`: once a
    replica holds it too (§8)."""
    workers: int | str = 1
    """Serving processes behind the one listening port; `"auto"`: one per core (§8)."""
    config: str = ""
    """The configuration file these settings came from, if any."""

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], where: str = "service") -> ServiceSettings:
        """Settings from a `[service]` table, with errors naming the field."""
        return _valid(*cls.parse(table, where))

    @classmethod
    def parse(
        cls, table: Mapping[str, Any], where: str = "service"
    ) -> tuple[ServiceSettings, list[FieldError]]:
        """Settings from a `[service]` table, and every problem, each naming its field. A value
        of the wrong kind is left at its default: with problems, the settings are fit only for
        finding more problems (check-config), never to run with."""
        known = {f.name: f for f in fields(cls)}
        errors: list[FieldError] = []
        values: dict[str, Any] = {}
        for key, value in table.items():
            name = f"{where}.{key}"
            if key not in known or key == "config":
                errors.append(FieldError(name, "unknown setting"))
                continue
            default = getattr(cls(), key)
            coerced = parse_workers(value) if key == "workers" else _coerce(default, value)
            if coerced is None:
                kind = WORKERS_KIND if key == "workers" else _kind(default)
                errors.append(FieldError(name, f"must be {kind}"))
            else:
                values[key] = coerced
        settings = replace(cls(), **values)
        errors.extend(settings._errors(where))
        return settings, errors

    def with_env(self, env: Mapping[str, str] | None = None) -> ServiceSettings:
        """These settings with `ACD_<NAME>` environment variables applied over them."""
        return _valid(*self.parse_env(env))

    def parse_env(
        self, env: Mapping[str, str] | None = None
    ) -> tuple[ServiceSettings, list[FieldError]]:
        """These settings with `ACD_<NAME>` variables applied over them, and the problems of the
        variables (as `parse`)."""
        env = os.environ if env is None else env
        table = {
            f.name: env[f"ACD_{f.name.upper()}"]
            for f in fields(self)
            if f"ACD_{f.name.upper()}" in env and f.name != "config"
        }
        merged = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "config"}
        merged.update(table)
        settings, errors = ServiceSettings.parse(merged, "env")
        # A value the file set and the environment did not is the file's problem, named so.
        errors = [e for e in errors if e.field.removeprefix("env.") in table]
        return replace(settings, config=self.config), errors

    def worker_count(self) -> int:
        """The number of serving processes: `workers`, or the cores this process may use."""
        if self.workers == AUTO:
            return max(1, len(os.sched_getaffinity(0)))
        return int(self.workers)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServiceSettings:
        """Default settings overridden by the environment."""
        return cls().with_env(env)

    def _errors(self, where: str) -> list[FieldError]:
        errors = []
        if not self.namespace or any(c in self.namespace for c in "{}: "):
            errors.append(
                FieldError(f"{where}.namespace", "must be non-empty, without {}: or spaces")
            )
        for name, most in COUNT_LIMITS.items():
            if not 1 <= getattr(self, name) <= most:
                errors.append(FieldError(f"{where}.{name}", f"must be >= 1 and <= {most}"))
        # Comparisons that NaN fails: `not x <= 0` would let it through.
        if not 0 < self.retention_s <= MAX_DURATION_S:
            errors.append(
                FieldError(f"{where}.retention_s", f"must be > 0 and <= {MAX_DURATION_S}")
            )
        if not 0 < self.store_timeout_s <= 60:
            errors.append(FieldError(f"{where}.store_timeout_s", "must be > 0 and <= 60"))
        if self.durability not in DURABILITIES:
            errors.append(
                FieldError(f"{where}.durability", f"must be one of {', '.join(DURABILITIES)}")
            )
        if not set(self.exclusive_channels) <= set(Channel):
            names = ", ".join(Channel)
            errors.append(
                FieldError(f"{where}.exclusive_channels", f"must list channels ({names})")
            )
        return errors


def _valid(settings: ServiceSettings, errors: list[FieldError]) -> ServiceSettings:
    """`settings`, or a ConfigError listing `errors`."""
    if errors:
        raise ConfigError("; ".join(map(str, errors)), errors)
    return settings


COUNT_LIMITS = {
    "event_log_max": 1_000_000_000,
    "max_routing_classes": 1_000_000,
    "class_fill_batch": 100_000,
    "max_streams_per_key": 1_000_000,
}
"""The whole-number settings and their largest value (the store takes no larger number)."""

AUTO = "auto"
MAX_WORKERS = 64
WORKERS_KIND = f'an integer 1..{MAX_WORKERS} or "{AUTO}"'


_DIGITS = re.compile(r"[0-9]{1,18}")
"""An integer setting's digits: ASCII only (`isdigit` takes "²", which `int` refuses), and few
enough for `int` and for Redis's 64-bit integers."""


def parse_workers(value: Any) -> int | str | None:
    """A `workers` setting (an integer 1..MAX_WORKERS, or "auto"; from text too), or None."""
    if value == AUTO:
        return AUTO
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_WORKERS:
        return value
    return None


def _kind(default: Any) -> str:
    if isinstance(default, bool):
        return "a boolean"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a finite number"
    if isinstance(default, tuple):
        return "a list of strings"
    return "a string"


def _coerce(default: Any, value: Any) -> Any:
    """`value` converted to the type of `default` (strings from the environment too), or None."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        return None
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _DIGITS.fullmatch(value.strip().removeprefix("-")):
            return int(value)
        return None
    if isinstance(default, float):
        return _finite(value)
    if isinstance(default, tuple):
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return tuple(value)
        return None
    return value if isinstance(value, str) else None


def _finite(value: Any) -> float | None:
    """A number setting (from text too), or None; TOML and float() both read nan and inf, which
    no duration or timeout may be."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
