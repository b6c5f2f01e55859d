"""The configuration `serve` runs with: the file, ACD_* variables, then the command line."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from router.config import Config, config_error, read_config
from router.errors import ConfigError, FieldError
from router.settings import WORKERS_KIND, ServiceSettings, parse_workers
from router.store.url import parse_store_url

MAX_CLOCK_SPEED = 1000
"""The fastest `--clock-speed`: load tests replay at tens of times real time; far faster clocks
would push timestamps past what the store's numbers hold."""


@dataclass(frozen=True)
class ServeOptions:
    """The command-line options of `serve`; None means "not given"."""

    config: str | None = None
    listen: str | None = None
    redis_url: str | None = None
    data_dir: str | None = None
    clock_speed: float = 1.0
    insecure: bool = False
    log_json: bool = False
    workers: str | None = None


def parse_listen(listen: str, where: str = "listen") -> tuple[str, int]:
    """`HOST:PORT` (or `[IPv6]:PORT`) as a host and a port, or a ConfigError naming `where`."""
    host, sep, port_text = listen.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not re.fullmatch(r"[0-9]{1,5}", port_text) or int(port_text) > 65535:
        message = "must be HOST:PORT, e.g. 127.0.0.1:8080"
        raise ConfigError(f"{where}: {message}", [FieldError(where, message)])
    return host, int(port_text)


def build_config(options: ServeOptions, env: Mapping[str, str]) -> Config:
    """The configuration: the file (--config, else ACD_CONFIG, else none), ACD_* env, then flags.

    Without a file the service has default settings, no queues and no keys.
    """
    path = options.config or env.get("ACD_CONFIG") or None
    if path is None:
        config = Config(ServiceSettings.from_env(env))
    else:
        read, errors = read_config(path, env)
        if errors or read is None:
            more = startable_problems_of(read, errors, env, options.insecure, options)
            raise config_error(path, errors + more)
        config = read
    service = config.service
    if options.listen is not None:
        service = replace(service, listen=options.listen)
    if options.redis_url is not None:
        check_redis_url(options.redis_url, "--redis-url")
        service = replace(service, redis_url=options.redis_url)
    parse_listen(service.listen, "--listen" if options.listen is not None else "service.listen")
    if options.data_dir is not None and service.redis_url:
        message = "applies to the embedded store only, not with a Redis URL"
        raise ConfigError(f"--data-dir: {message}", [FieldError("--data-dir", message)])
    if options.workers is not None:
        workers = parse_workers(options.workers)
        if workers is None:
            raise ConfigError(
                f"--workers: must be {WORKERS_KIND}",
                [FieldError("--workers", f"must be {WORKERS_KIND}")],
            )
        service = replace(service, workers=workers)
    if not 0 < options.clock_speed <= MAX_CLOCK_SPEED:  # NaN fails both comparisons
        message = f"must be > 0 and <= {MAX_CLOCK_SPEED}"
        raise ConfigError(f"--clock-speed: {message}", [FieldError("--clock-speed", message)])
    return replace(config, service=service)


def prepare_data_dir(data_dir: str) -> Path:
    """The embedded store's folder of `--data-dir`, created when missing; a ConfigError naming
    the flag when it is not a folder or cannot be created."""
    folder = Path(data_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # something other than a folder has the name
        message = "exists and is not a folder"
    except OSError as error:
        message = f"cannot be created: {error.strerror or error}"
    else:
        return folder.resolve()
    raise ConfigError(f"--data-dir: {message} ({data_dir})", [FieldError("--data-dir", message)])


def check_startable(config: Config, env: Mapping[str, str], insecure: bool = False) -> None:
    """A ConfigError naming every problem of `startable_problems`, checked before anything
    starts, so that check-config's "ok" means serve starts."""
    errors = startable_problems(config, env, insecure)
    if errors:
        raise ConfigError("; ".join(map(str, errors)), errors)


def startable_problems(
    config: Config, env: Mapping[str, str], insecure: bool = False, skip: Collection[str] = ()
) -> list[FieldError]:
    """What `serve` needs beyond a valid file: the listening address, the Redis URL's form,
    every key's and webhook secret's variable set, no two keys alike. `skip` names the parts
    ("keys", "webhooks") whose entries the file's check already found wrong: their checks would
    name entries by the wrong index (the wrong ones are left out), or say that no key is
    configured."""
    from router.api.auth import Authenticator  # the API's modules load for these checks only
    from router.events.webhooks import webhook_secrets

    errors: list[FieldError] = []
    service = config.service

    def where(name: str) -> str:
        """The setting's name as its value came: from an `ACD_*` variable, or the file."""
        from_env = env.get(f"ACD_{name.upper()}") == getattr(service, name)
        return f"env.{name}" if from_env else f"service.{name}"

    checks: list[tuple[str, Callable[[], object]]] = [
        ("service", lambda: parse_listen(service.listen, where("listen"))),
        ("service", lambda: check_redis_url(service.redis_url, where("redis_url"))),
        ("keys", lambda: Authenticator.from_config(config.keys, insecure, env)),
        ("webhooks", lambda: webhook_secrets(config.webhooks, env)),
    ]
    for part, check in checks:
        if part in skip:
            continue
        try:
            check()
        except ConfigError as error:
            errors.extend(error.errors or [FieldError("", error.detail)])
    return errors


def startable_problems_of(
    config: Config | None,
    errors: list[FieldError],
    env: Mapping[str, str],
    insecure: bool,
    options: ServeOptions | None = None,
) -> list[FieldError]:
    """The start-up checks of a file read with `errors`, so that one run names every problem:
    none when the file could not be read; a wrong setting is left at its default, which the
    address and URL checks accept; a wrong key or webhook entry is left out, and the checks of its
    part are skipped. With serve's `options`, its flags' address and URL in place of the file's."""
    if config is None:
        return []
    service = config.service
    if options is not None and options.listen is not None:
        service = replace(service, listen=options.listen)
    if options is not None and options.redis_url is not None:
        service = replace(service, redis_url=options.redis_url)
    wrong = {error.field.split("[")[0] for error in errors} & {"keys", "webhooks"}
    return startable_problems(replace(config, service=service), env, insecure, skip=wrong)


def check_redis_url(url: str, where: str = "service.redis_url") -> None:
    """A ConfigError unless `url` is empty (the embedded store) or a store URL: one Redis, a
    primary watched by Sentinels, or a Redis Cluster (router/store/url.py)."""
    if url:
        parse_store_url(url, where)


def redact_url(url: str) -> str:
    """A store URL fit for a log line: any password replaced by ***."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{hosts}{slash}{path}"


def http_url(host: str, port: int) -> str:
    """The base URL of a listening address."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
