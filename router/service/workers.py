"""`serve --workers N` (SPEC §8): N serving processes behind one listening port.

The parent binds one listening socket per worker on the same port (SO_REUSEPORT: the kernel
spreads new connections over them), starts each worker as a fresh interpreter (multiprocessing
`spawn`) with its socket, waits until every worker serves, then only supervises: it forwards
SIGTERM, SIGINT and SIGHUP to the workers (as SIGTERM) and waits for each one's graceful stop. A
worker has its own event loop, store connections and tick loop; the event log is read once, by the
parent (router/events/feed.py), which sends each worker what its streams want over a socket
pair; the embedded store, if any, is the parent's, started before the workers and stopped after
them.

A worker that dies after it served is reported and started again on the same socket (the
connections queued on it wait for the new worker rather than being refused). One that then fails
to start while another worker serves has that socket closed and is tried again every
RESTART_RETRY_S on a new one; one that fails at start, or when no other serves, stops every
worker, and `serve` exits 1.

Per-process metrics use prometheus-client's multiprocess mode: each worker writes its series to
files in a private folder the parent creates and removes (PROMETHEUS_MULTIPROC_DIR), and
`/metrics` of any worker reads them all (router/metrics/process.py).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import cast

from redis.exceptions import RedisError

from router.clock import Clock
from router.config import Config
from router.errors import StoreUnavailable
from router.events.feed import MachineReader
from router.metrics.process import MULTIPROC_ENV
from router.service.logs import setup_logging
from router.service.options import http_url, redact_url
from router.service.run import (
    EXIT_FAILURE,
    EXIT_OK,
    SHUTDOWN_TIMEOUT_S,
    STOP_SIGNALS,
    Interrupted,
    log_ready,
    run_app,
    run_loop,
)

log = logging.getLogger("router.service.workers")

RESTART_RETRY_S = 2.0
"""How long after a failed restart (the store unreachable, say) a worker is started again, while
another worker serves."""
BACKLOG = 128
"""Pending connections per worker's socket (aiohttp's default)."""
STOP_TIMEOUT_S = SHUTDOWN_TIMEOUT_S + 10.0
"""How long the parent waits for a worker's graceful stop before it kills it: in-flight
requests, then the background tasks' own bounded stops."""


@dataclass(frozen=True)
class Worker:
    """What every worker serves with: the configuration (the store's URL set), the clock (one
    origin, so that an accelerated clock agrees across workers) and the start-up options."""

    config: Config
    clock: Clock
    insecure: bool
    log_json: bool


def worker_main(
    worker: Worker, index: int, listener: socket.socket, feed: socket.socket, ready: Connection
) -> None:
    """A worker process: serve on `listener`, with events from the machine's reader at the
    other end of `feed`, until SIGTERM or until the parent is gone."""
    # A stop reaches workers from the parent, also when a Ctrl-C or a hang-up hits the group.
    for sig in STOP_SIGNALS:
        if sig != signal.SIGTERM:
            signal.signal(sig, signal.SIG_IGN)
    setup_logging(worker.log_json, worker=index)
    from router.api.app import create_app  # the API's modules load for serve only

    app = create_app(worker.config, worker.clock, worker.insecure, event_feed=feed)

    def on_ready(port: int) -> None:
        ready.send(os.getpid())
        ready.close()

    try:
        run_loop(run_app(app, listener, on_ready, (signal.SIGTERM,), parent=os.getppid()))
    except (RedisError, StoreUnavailable) as error:
        log.error("store %s: %s", redact_url(worker.config.service.redis_url), error)
        raise SystemExit(EXIT_FAILURE) from None
    raise SystemExit(EXIT_OK)


def listening_sockets(host: str, port: int, count: int, listen: bool = True) -> list[socket.socket]:
    """`count` sockets listening on one port (the first one's, when `port` is 0); with
    `listen` False only bound, for a worker to listen on once it serves."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            if listen:
                sock.listen(BACKLOG)
            address = sock.getsockname()  # the port the first one got
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class StartFailed(Exception):
    """A worker ended before it served."""


@dataclass
class Supervisor:
    """The parent: starts the workers, restarts one that dies, stops them all."""

    worker: Worker
    sockets: list[socket.socket]
    reader: MachineReader
    processes: dict[int, BaseProcess] = field(default_factory=dict)
    """The running worker of each index (1-based)."""
    serving: set[int] = field(default_factory=set)
    """The indexes whose worker said it serves."""
    address: tuple[str, int] = field(init=False)
    """The host and port the sockets listen on."""

    def __post_init__(self) -> None:
        host, port = self.sockets[0].getsockname()[:2]
        self.address = (host, port)

    def start(self, *indexes: int) -> None:
        """Start the workers `indexes` and wait until each serves; StartFailed if one ends
        first."""
        if not self.reader.alive():
            raise StartFailed("the machine's event reader is gone")
        context = multiprocessing.get_context("spawn")
        pipes: dict[int, Connection] = {}
        for index in indexes:
            ours, theirs = context.Pipe(duplex=False)
            feed, their_feed = socket.socketpair()
            process = context.Process(
                target=worker_main,
                args=(self.worker, index, self.sockets[index - 1], their_feed, theirs),
                name=f"acd-worker-{index}",
            )
            with stop_signals_deferred():  # one now would cut the start in two
                try:
                    process.start()
                except BaseException:
                    feed.close()
                    raise
                finally:
                    theirs.close()
                    their_feed.close()
                self.processes[index] = process
                pipes[index] = ours
                self.reader.attach(feed)
        for index, ours in pipes.items():
            started = self.processes[index]
            try:
                wait([ours, started.sentinel])
                pid = ours.recv() if ours.poll() else None
            except EOFError:
                pid = None
            finally:
                ours.close()
            if pid is None:
                started.join(STOP_TIMEOUT_S)
                raise StartFailed(f"worker {index} exited with {describe_exit(started)} at start")
            self.serving.add(index)
            with stop_signals_deferred():  # see `supervise`
                log.info("worker %d of %d serving (pid %d)", index, len(self.sockets), pid)

    def supervise(self) -> None:
        """Until a stop signal (Interrupted): restart each worker that dies. One that fails to
        start again while another worker serves has its socket closed (new connections go to
        the others rather than wait for it) and is tried again every RESTART_RETRY_S on a new
        one; with no worker serving, StartFailed."""
        retry_at: dict[int, float] = {}
        while True:
            sentinels = {p.sentinel: i for i, p in self.processes.items()}
            timeout = max(0.0, min(retry_at.values()) - time.monotonic()) if retry_at else None
            for sentinel in wait(list(sentinels), timeout):
                index = sentinels[cast(int, sentinel)]
                process = self._forget(index)
                retry_at[index] = 0.0
                # A stop signal raised inside logging would be swallowed by its error handler.
                with stop_signals_deferred():
                    log.error(
                        "worker %d (pid %s) exited with %s: starting it again",
                        index,
                        process.pid,
                        describe_exit(process),
                    )
            for index, at in sorted(retry_at.items()):
                if at > time.monotonic():
                    continue
                try:
                    self._listen_again(index)
                    self.start(index)
                except StartFailed as failed:
                    if index in self.processes:  # started, and ended before it served
                        self._forget(index)
                    if not self.serving:
                        raise
                    self.sockets[index - 1].close()
                    retry_at[index] = time.monotonic() + RESTART_RETRY_S
                    with stop_signals_deferred():
                        log.error("%s: trying again in %g s", failed, RESTART_RETRY_S)
                else:
                    del retry_at[index]

    def _listen_again(self, index: int) -> None:
        """A new socket for worker `index` if its own was closed after a failed restart: bound,
        not listening, so that it takes connections only once the worker serves (its server
        listens), never while it may still fail to start and reset them."""
        if self.sockets[index - 1].fileno() != -1:
            return
        try:
            self.sockets[index - 1] = listening_sockets(*self.address, 1, listen=False)[0]
        except OSError as error:
            raise StartFailed(f"worker {index} cannot listen again: {error}") from error

    def _forget(self, index: int) -> BaseProcess:
        """Take the ended worker `index` out of the records; the process."""
        process = self.processes.pop(index)
        process.join()
        forget(process)
        self.serving.discard(index)
        return process

    def stop(self) -> bool:
        """SIGTERM to every worker, then wait for each; whether all stopped cleanly."""
        clean = True
        for process in self.processes.values():
            if process.is_alive():
                process.terminate()
        for index, process in self.processes.items():
            process.join(STOP_TIMEOUT_S)
            if process.is_alive():
                log.error("worker %d (pid %s) did not stop in time: killed", index, process.pid)
                process.kill()
                process.join()
            if process.exitcode != 0 and not self._stopped_starting(index, process):
                clean = False
                log.warning("worker %d exited with %s", index, describe_exit(process))
            forget(process)
        return clean

    def _stopped_starting(self, index: int, process: BaseProcess) -> bool:
        """The stop's SIGTERM (or a Ctrl-C's SIGINT or a hang-up's SIGHUP to the process group)
        ended a worker still starting (a restart): before its handlers were in place, with
        nothing served and so nothing lost."""
        return index not in self.serving and process.exitcode in [-sig for sig in STOP_SIGNALS]


@contextlib.contextmanager
def stop_signals_deferred() -> Iterator[None]:
    """A stop signal that arrives in the block is raised (Interrupted) after it."""
    received: list[int] = []
    before = {
        sig: signal.signal(sig, lambda signum, _: received.append(signum)) for sig in STOP_SIGNALS
    }
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    if received:
        raise Interrupted(signal.Signals(received[0]).name)


def describe_exit(process: BaseProcess) -> str:
    """`status N` or `signal NAME`."""
    code = process.exitcode
    if code is not None and code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"status {code}"


def forget(process: BaseProcess) -> None:
    """Drop a dead worker's live gauges from the metrics folder (its counters stay)."""
    if process.pid is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(process.pid)  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def metrics_folder() -> Iterator[str]:
    """A private folder for the workers' metrics files, named in PROMETHEUS_MULTIPROC_DIR while
    the block runs (the workers inherit it), removed after."""
    folder = tempfile.mkdtemp(prefix="acd-metrics-")
    before = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = folder
    try:
        yield folder
    finally:
        if before is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = before
        shutil.rmtree(folder, ignore_errors=True)


def serve_workers(worker: Worker, count: int, listen: tuple[str, int], banner: str) -> int:
    """Serve with `count` worker processes until a stop signal; the exit status."""
    host, port = listen
    try:
        sockets = listening_sockets(host, port, count)
    except OSError as error:
        log.error("cannot serve on %s: %s", worker.config.service.listen, error)
        return EXIT_FAILURE
    reader = MachineReader(worker.config.service)
    supervisor = Supervisor(worker, sockets, reader)
    received = ""
    try:
        reader.start()
        with metrics_folder():
            try:
                supervisor.start(*range(1, count + 1))
                bound = sockets[0].getsockname()[1]
                with stop_signals_deferred():  # see `Supervisor.supervise`
                    log_ready(http_url(host, bound), f"{banner}, {count} workers", worker.insecure)
                supervisor.supervise()
            except StartFailed as failed:
                log.error("%s: stopping every worker", failed)
                close(sockets)
                supervisor.stop()
                return EXIT_FAILURE
            except Interrupted as signalled:
                received = str(signalled)
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_IGN)  # the workers' stops are bounded: let them end
            log.info("%s received: stopping %d workers", received, count)
            close(sockets)
            clean = supervisor.stop()
    finally:
        close(sockets)
        reader.stop()
    log.info("stopped" if clean else "stopped; a worker did not stop cleanly")
    return EXIT_OK if clean else EXIT_FAILURE


def close(sockets: list[socket.socket]) -> None:
    """Close the parent's listening sockets: no worker is started on them again, and once each
    worker has closed its own, new connections are refused rather than left waiting."""
    for sock in sockets:
        sock.close()
