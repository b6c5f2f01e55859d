"""`acd-router serve` (SPEC §8): settings, the embedded store, the app until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web
from redis.exceptions import RedisError

from router.clock import Clock
from router.config import Config, load_config
from router.errors import ConfigError, FieldError, StoreUnavailable
from router.settings import ServiceSettings
from router.store.server import RedisServer

log = logging.getLogger("router.service")

SHUTDOWN_TIMEOUT_S = 5.0
"""How long in-flight requests may run after a stop signal before they are cancelled."""
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
"""Exit status of a refusal to start: bad configuration, no API key, conflicting flags."""


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


# --- logging ----------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message (and exc for a traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        body: dict[str, str] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, ensure_ascii=False)


PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(json_lines: bool, stream: TextIO | None = None) -> None:
    """Route every log record to `stream` (stderr): plain text, or JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(PLAIN_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)


# --- settings ---------------------------------------------------------------------------------


def parse_listen(listen: str, where: str = "listen") -> tuple[str, int]:
    """`HOST:PORT` (or `[IPv6]:PORT`) as a host and a port, or a ConfigError naming `where`."""
    host, sep, port_text = listen.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        message = "must be HOST:PORT, e.g. 127.0.0.1:8080"
        raise ConfigError(f"{where}: {message}", [FieldError(where, message)])
    return host, int(port_text)


def build_config(options: ServeOptions, env: Mapping[str, str]) -> Config:
    """The configuration: the file (--config, else ACD_CONFIG, else none), ACD_* env, then flags.

    Without a file the service has default settings, no queues and no keys.
    """
    path = options.config or env.get("ACD_CONFIG") or None
    config = load_config(path, env) if path is not None else Config(ServiceSettings.from_env(env))
    service = config.service
    if options.listen is not None:
        service = replace(service, listen=options.listen)
    if options.redis_url is not None:
        service = replace(service, redis_url=options.redis_url)
    parse_listen(service.listen, "--listen" if options.listen is not None else "service.listen")
    if options.data_dir is not None and service.redis_url:
        message = "applies to the embedded store only, not with a Redis URL"
        raise ConfigError(f"--data-dir: {message}", [FieldError("--data-dir", message)])
    if not options.clock_speed > 0:
        message = "must be > 0"
        raise ConfigError(f"--clock-speed: {message}", [FieldError("--clock-speed", message)])
    return replace(config, service=service)


def redact_url(url: str) -> str:
    """A Redis URL fit for a log line: any password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit(parts._replace(netloc=netloc))


def http_url(host: str, port: int) -> str:
    """The base URL of a listening address."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


# --- embedded store ---------------------------------------------------------------------------


@dataclass
class EmbeddedStore:
    """A private redis-server, append-only, in `data_dir` or else in a temporary folder."""

    data_dir: Path | None = None
    server: RedisServer = field(init=False)
    folder: Path = field(init=False)
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        """Choose the folder and the port; nothing runs until start()."""
        if self.data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="acd-data-")
            self.folder = Path(self._tmp.name)
        else:
            self.folder = self.data_dir.resolve()
        # A data_dir makes RedisServer append-only: the temporary folder gets it too.
        self.server = RedisServer(data_dir=self.folder)

    @property
    def temporary(self) -> bool:
        """Whether the data is lost at exit."""
        return self._tmp is not None

    @property
    def url(self) -> str:
        """The redis:// URL the service connects to."""
        return self.server.url

    def start(self) -> None:
        """Start redis-server and wait until it answers; StoreUnavailable if it cannot."""
        try:
            self.server.start()
        except StoreUnavailable:
            self.cleanup()
            raise

    def stop(self) -> None:
        """Stop redis-server (its append-only file is flushed) and drop a temporary folder."""
        self.server.stop()
        self.cleanup()

    def cleanup(self) -> None:
        """Remove the temporary folder, if any."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def announce_store(store: EmbeddedStore) -> None:
    """Say where the embedded store keeps its data, and whether it survives the exit."""
    if store.temporary:
        log.warning(
            "embedded store: redis-server on 127.0.0.1:%d, append-only data in temporary folder "
            "%s; this data is LOST at exit (use --data-dir DIR to keep it)",
            store.server.port,
            store.folder,
        )
    else:
        log.info(
            "embedded store: redis-server on 127.0.0.1:%d, append-only data in %s "
            "(kept across restarts)",
            store.server.port,
            store.folder,
        )


# --- running ----------------------------------------------------------------------------------


INSECURE_WARNING = (
    "INSECURE MODE (--insecure): no API key is checked, every request acts as admin; "
    "local experiments only"
)


async def run_app(app: web.Application, host: str, port: int, banner: str, insecure: bool) -> str:
    """Serve `app` until SIGTERM or SIGINT, then shut down gracefully; the signal's name.

    Stop accepting, let in-flight requests finish (up to SHUTDOWN_TIMEOUT_S), then the app's
    cleanup contexts stop its background tasks and close the store client.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        if received:
            log.warning("%s: already stopping", sig.name)
            return
        received.append(sig.name)
        stop.set()

    from router.api.protocol import service_runner  # the API's modules load for serve only

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    runner = service_runner(app, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    try:
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            bound = bound_port(runner, port)
            if insecure:
                log.warning("ready: %s (%s) -- %s", http_url(host, bound), banner, INSECURE_WARNING)
            else:
                log.info("ready: %s (%s)", http_url(host, bound), banner)
            await stop.wait()
            log.info("%s received: stopping, finishing in-flight requests", received[0])
        finally:
            await runner.cleanup()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return received[0]


def bound_port(runner: web.AppRunner, requested: int) -> int:
    """The port the first listening socket got (differs from `requested` only when it is 0)."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2 and isinstance(address[1], int):
            return address[1]
    return requested


def describe(config: Config, store: EmbeddedStore | None) -> str:
    """The banner's summary: store, namespace, queues and keys (never a secret)."""
    service = config.service
    where = (
        f"embedded store in {store.folder}{' (temporary)' if store.temporary else ''}"
        if store is not None
        else f"store {redact_url(service.redis_url)}"
    )
    source = service.config or "no config file"
    return (
        f"{where}, namespace {service.namespace}, {source}: {len(config.queues)} queues, "
        f"{len(config.keys)} keys"
    )


class Interrupted(Exception):
    """A stop signal arrived outside the event loop (while starting or stopping the store)."""


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def interrupt_on_signals() -> None:
    """Outside the event loop, SIGTERM and SIGINT raise Interrupted so that cleanups run."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)


def serve(options: ServeOptions, env: Mapping[str, str]) -> int:
    """Run the service until a stop signal; the process exit status."""
    setup_logging(options.log_json)
    try:
        config = build_config(options, env)
    except ConfigError as error:
        print(f"acd-router serve: {error}", file=sys.stderr)
        return EXIT_CONFIG
    from router.api.app import create_app  # the API's modules load for serve only

    store: EmbeddedStore | None = None
    if not config.service.redis_url:
        data_dir = Path(options.data_dir) if options.data_dir is not None else None
        store = EmbeddedStore(data_dir)
        config = replace(config, service=replace(config.service, redis_url=store.url))
    try:
        app = create_app(config, Clock(speed=options.clock_speed), insecure=options.insecure)
    except ConfigError as error:
        if store is not None:
            store.cleanup()
        print(f"acd-router serve: {error}", file=sys.stderr)
        return EXIT_CONFIG
    log.info("acd-router %s starting (pid %d)", version(), os.getpid())
    announce(options)
    interrupt_on_signals()
    try:
        return run_with_store(app, config, store, options.insecure)
    except Interrupted as stopped:
        log.info("%s received while starting or stopping: stopped", stopped)
        return EXIT_OK
    finally:
        if store is not None:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_IGN)  # stopping the store is bounded: let it end
            store.stop()
            log.info("embedded store stopped")


def version() -> str:
    """The installed package's version."""
    try:
        return metadata.version("acd-router")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def announce(options: ServeOptions) -> None:
    """The loud start-up warnings: insecure mode, an accelerated clock."""
    if options.insecure:
        log.warning(INSECURE_WARNING)
    if options.clock_speed != 1:
        log.warning(
            "CLOCK SPEED %gx (--clock-speed, load testing only): timers, waits and metrics run "
            "%g times faster than real time",
            options.clock_speed,
            options.clock_speed,
        )


def run_with_store(
    app: web.Application, config: Config, store: EmbeddedStore | None, insecure: bool
) -> int:
    """Start the embedded store if any, then serve until a stop signal; the exit status."""
    if store is not None:
        announce_store(store)
        try:
            store.start()
        except StoreUnavailable as error:
            log.error(
                "no Redis URL is set (--redis-url, ACD_REDIS_URL or [service] redis_url) and the "
                "embedded store cannot start: %s",
                error,
            )
            return EXIT_FAILURE
    else:
        log.info("store: %s", redact_url(config.service.redis_url))
    host, port = parse_listen(config.service.listen)
    try:
        asyncio.run(run_app(app, host, port, describe(config, store), insecure))
    except (RedisError, StoreUnavailable) as error:
        log.error("store %s: %s", redact_url(config.service.redis_url), error)
        return EXIT_FAILURE
    except OSError as error:
        log.error("cannot serve on %s: %s", config.service.listen, error)
        return EXIT_FAILURE
    finally:
        interrupt_on_signals()  # closing the loop restored the default handlers
    log.info("stopped")
    return EXIT_OK
