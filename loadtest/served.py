"""Run the real `acd-router serve` as a child process and read its log as it comes (load tests,
benchmarks and the end-to-end tests)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from router.store.server import free_port

READY = re.compile(r"ready: (http://\S+)")
STORE_PORT = re.compile(r"embedded store: redis-server on 127\.0\.0\.1:(\d+)")
STORE_SOCKET = re.compile(r"embedded store: redis-server on \S+ \(the service uses (\S+)\)")
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0


def command(checkout: Path | None = None) -> list[str]:
    """The installed `acd-router` script beside this interpreter, else `python -m router.cli`
    (always for another `checkout` of the project, which then goes first on PYTHONPATH)."""
    script = Path(sys.executable).with_name("acd-router")
    if script.exists() and checkout is None:
        return [str(script)]
    return [sys.executable, "-m", "router.cli"]


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without any ACD_* variable of the developer's shell, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACD_")}
    env.update(extra or {})
    return env


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Served:
    """A running `acd-router serve` child: its output lines (stdout and stderr) as they come."""

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        checkout: Path | None = None,
    ) -> None:
        """Start `acd-router <args>` with `env` (default: the clean environment); the code of
        another `checkout` of the project if given (to compare builds)."""
        self.args = list(args)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        env = dict(env) if env is not None else clean_env()
        if checkout is not None:
            env["PYTHONPATH"] = str(checkout.resolve())
        self.process = subprocess.Popen(
            [*command(checkout), *self.args],
            env=env,
            cwd=checkout,  # `python -m` looks in the working folder first
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = ""

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        """Everything printed so far."""
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(
        self, pattern: re.Pattern[str], timeout_s: float = START_TIMEOUT_S
    ) -> re.Match[str]:
        """The first line matching `pattern`, waiting for it; AssertionError at the deadline."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for line in self.lines:
                    if match := pattern.search(line):
                        return match
                if not self._reader.is_alive():
                    raise AssertionError(
                        f"exited before {pattern.pattern!r}:\n{self.output_locked}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {pattern.pattern!r} in time:\n{self.output_locked}")
                self._changed.wait(left)

    @property
    def output_locked(self) -> str:
        """Everything printed so far (the caller holds the lock)."""
        return "\n".join(self.lines)

    def wait_ready(self) -> str:
        """The service's base URL, once its log says it is ready."""
        self.url = self.wait_for(READY).group(1)
        return self.url

    def logged(self, pattern: re.Pattern[str]) -> str | None:
        """The first group of the first log line so far that `pattern` finds, if any."""
        with self._changed:
            for line in self.lines:
                if match := pattern.search(line):
                    return match.group(1)
        return None

    @property
    def store_port(self) -> int | None:
        """The embedded redis-server's port, from the start-up log."""
        port = self.logged(STORE_PORT)
        return None if port is None else int(port)

    @property
    def store_url(self) -> str | None:
        """The URL the service speaks to its embedded store at (its Unix socket), from the log."""
        path = self.logged(STORE_SOCKET)
        return None if path is None else f"unix://{path}?db=0"

    def alive(self) -> bool:
        """Whether the child still runs."""
        return self.process.poll() is None

    def wait_exit(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """The exit status, waiting for it; then the output is complete."""
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout_s} s:\n{self.output}") from None
        self._reader.join(timeout_s)
        return code

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout_s)

    def kill(self) -> None:
        """Make sure the child and its embedded redis-server are gone (test teardown)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        port = self.store_port
        if port is not None and port_open(port):  # orphaned by a crash: shut it down
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    s.sendall(b"SHUTDOWN NOSAVE\r\n")
                    s.recv(64)
            except OSError:
                pass
        self._reader.join(STOP_TIMEOUT_S)
        if self.process.stdout is not None:
            self.process.stdout.close()


def serve_args(
    *extra: str, port: int | None = None, data_dir: Path | None = None
) -> tuple[list[str], int]:
    """`serve --listen 127.0.0.1:<free port>` with `--data-dir` and `extra`; and the port."""
    port = port or free_port()
    args = ["serve", "--listen", f"127.0.0.1:{port}"]
    if data_dir is not None:
        args += ["--data-dir", str(data_dir)]
    return [*args, *extra], port
