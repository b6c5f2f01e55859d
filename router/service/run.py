"""`acd-router serve` (SPEC §8): the embedded store if any, the app until SIGTERM, SIGINT or
SIGHUP."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import replace
from importlib import metadata
from typing import Any, TypeVar

import uvloop
from aiohttp import web
from redis.exceptions import RedisError

from router.clock import Clock
from router.config import Config
from router.errors import ConfigError, StoreUnavailable
from router.service.embedded import EmbeddedStore, announce_store
from router.service.logs import setup_logging
from router.service.options import (
    ServeOptions,
    build_config,
    check_startable,
    http_url,
    parse_listen,
    prepare_data_dir,
    redact_url,
)

log = logging.getLogger("router.service")

SHUTDOWN_TIMEOUT_S = 5.0
"""How long in-flight requests may run after a stop signal before they are cancelled."""
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
"""Exit status of a refusal to start: bad configuration, no API key, conflicting flags."""


INSECURE_WARNING = (
    "INSECURE MODE (--insecure): no API key is checked, every request acts as admin; "
    "local experiments only"
)


T = TypeVar("T")
Listen = tuple[str, int] | socket.socket
"""Where to serve: a host and a port to bind, or a bound listening socket (a worker's)."""
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
"""The signals that stop `serve` gracefully. SIGHUP too: a closed terminal sends it, and its default
action would end the process without a shutdown, leaving the embedded redis-server running."""
PARENT_POLL_S = 1.0
"""How often a worker checks that its parent still runs."""


async def run_app(
    app: web.Application,
    listen: Listen,
    ready: Callable[[int], None],
    signals: tuple[signal.Signals, ...] = STOP_SIGNALS,
    parent: int | None = None,
) -> str:
    """Serve `app` until one of `signals` (or, given `parent`, until that process is gone),
    then shut down gracefully; the signal's name. `ready` is called with the bound port.

    Stop accepting, let in-flight requests finish (up to SHUTDOWN_TIMEOUT_S), then the app's
    cleanup contexts stop its background tasks and close the store client.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[str] = []

    def on_stop(name: str) -> None:
        if received:
            # A worker may get the same signal twice: from its parent, and from a signal sent to
            # the whole process group (a terminal's Ctrl-C, systemd's stop).
            log.log(logging.INFO if name == received[0] else logging.WARNING,
                    "%s: already stopping", name)  # fmt: skip
            return
        received.append(name)
        stop.set()

    from router.api.protocol import service_runner  # the API's modules load for serve only

    for sig in signals:
        loop.add_signal_handler(sig, on_stop, sig.name)
    watch = None if parent is None else asyncio.create_task(watch_parent(parent, on_stop))
    runner = service_runner(app, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    try:
        await runner.setup()
        try:
            if isinstance(listen, socket.socket):
                site: web.BaseSite = web.SockSite(runner, listen)
            else:
                site = web.TCPSite(runner, *listen)
            await site.start()
            ready(bound_port(runner))
            await stop.wait()
            log.info("%s received: stopping, finishing in-flight requests", received[0])
        finally:
            await runner.cleanup()
    finally:
        if watch is not None:
            watch.cancel()
        for sig in signals:
            loop.remove_signal_handler(sig)
    return received[0]


async def watch_parent(parent: int, on_stop: Callable[[str], None]) -> None:
    """Stop when the process `parent` is gone (a worker whose parent was killed)."""
    while True:
        await asyncio.sleep(PARENT_POLL_S)
        if os.getppid() != parent:
            break
    log.warning("the parent process %d is gone: stopping", parent)
    on_stop("parent gone")


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` on a uvloop event loop (docs/benchmarks.md, "Levers")."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def bound_port(runner: web.AppRunner) -> int:
    """The port the first listening socket got (the one asked for, unless that was 0)."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2 and isinstance(address[1], int):
            return address[1]
    raise OSError("no listening socket")


def log_ready(url: str, banner: str, insecure: bool) -> None:
    """The `ready:` line (with the insecure-mode warning when on)."""
    if insecure:
        log.warning("ready: %s (%s) -- %s", url, banner, INSECURE_WARNING)
    else:
        log.info("ready: %s (%s)", url, banner)


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
    """Outside the event loop, a stop signal raises Interrupted so that cleanups run."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _interrupt)


def serve(options: ServeOptions, env: Mapping[str, str]) -> int:
    """Run the service until a stop signal; the process exit status."""
    setup_logging(options.log_json)
    try:
        config = build_config(options, env)
        check_startable(config, env, options.insecure)
        # build_config refused --data-dir with a Redis URL: it is the embedded store's.
        data_dir = None if options.data_dir is None else prepare_data_dir(options.data_dir)
    except ConfigError as error:
        print(f"acd-router serve: {error}", file=sys.stderr)
        return EXIT_CONFIG
    from router.api.app import create_app  # the API's modules load for serve only

    store: EmbeddedStore | None = None
    if not config.service.redis_url:
        store = EmbeddedStore(data_dir)
        config = replace(config, service=replace(config.service, redis_url=store.url))
    clock = Clock(speed=options.clock_speed)
    try:
        app = create_app(config, clock, insecure=options.insecure)
    except ConfigError as error:
        if store is not None:
            store.cleanup()
        print(f"acd-router serve: {error}", file=sys.stderr)
        return EXIT_CONFIG
    log.info(
        "acd-router %s starting (pid %d, open files %d)", version(), os.getpid(), raise_open_files()
    )
    announce(options)
    interrupt_on_signals()
    try:
        return run_with_store(app, config, store, options, clock)
    except Interrupted as stopped:
        log.info("%s received while starting or stopping: stopped", stopped)
        return EXIT_OK
    finally:
        if store is not None:
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_IGN)  # stopping the store is bounded: let it end
            store.stop()
            log.info("embedded store stopped")


def version() -> str:
    """The installed package's version."""
    try:
        return metadata.version("acd-router")
    except metadata.PackageNotFoundError:
        return "(not installed)"


OPEN_FILES_UNLIMITED = 65_536
"""The soft open-file limit `serve` takes when the hard one is unlimited."""


def raise_open_files() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (the workers and the embedded store inherit
    it): every connection and event stream is a file, and the usual soft limit of 1,024 lets a
    crowd of idle clients lock everyone out. The limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, OPEN_FILES_UNLIMITED)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as error:
            log.warning("open files: cannot raise the limit of %d (%s)", soft, error)
            return soft
    return target


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
    app: web.Application,
    config: Config,
    store: EmbeddedStore | None,
    options: ServeOptions,
    clock: Clock,
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
    banner = describe(config, store)
    count = config.service.worker_count()
    try:
        if count > 1:
            from router.service.workers import Worker, serve_workers

            worker = Worker(config, clock, options.insecure, options.log_json)
            return serve_workers(worker, count, (host, port), banner)

        def ready(bound: int) -> None:
            log_ready(http_url(host, bound), banner, options.insecure)

        run_loop(run_app(app, (host, port), ready))
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
