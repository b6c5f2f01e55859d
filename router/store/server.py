"""A private redis-server process: the embedded store of `serve`, and the tests' store."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from router.errors import StoreUnavailable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RedisServer:
    """Starts `redis-server` on a free loopback port; append-only when `data_dir` is given."""

    data_dir: Path | None = None
    port: int = field(default_factory=free_port)
    options: tuple[str, ...] = ()
    """More command-line options, e.g. `("--replicaof", "127.0.0.1", "6380")`."""
    config_file: Path | None = None
    """A configuration file read first (a Sentinel needs one it may rewrite)."""
    unix_socket: bool = False
    """Listen on a Unix socket too (`socket_url`), in a folder of its own under the system's
    temporary folder (a socket's path is limited to about 100 bytes), chosen at once and kept
    across restarts; the folder goes when this object does."""
    die_with_parent: bool = False
    """The server gets SIGTERM when the process (thread) that started it dies, even killed with
    SIGKILL (Linux, util-linux's `setpriv --pdeathsig`; nothing where it is missing): no
    redis-server is left running alone."""
    process: subprocess.Popen[bytes] | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    _socket_dir: tempfile.TemporaryDirectory[str] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.unix_socket:
            self._socket_dir = tempfile.TemporaryDirectory(prefix="acd-sock-")

    @property
    def url(self) -> str:
        """The redis:// URL of the server."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def socket_path(self) -> Path | None:
        """The Unix socket (with `unix_socket`)."""
        return None if self._socket_dir is None else Path(self._socket_dir.name) / "redis.sock"

    @property
    def socket_url(self) -> str:
        """The unix:// URL of the server (started with `unix_socket`)."""
        if self.socket_path is None:
            raise StoreUnavailable("redis-server is not set to listen on a Unix socket")
        return f"unix://{self.socket_path}?db=0"

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise StoreUnavailable(
                "redis-server is not installed (Debian: apt-get install redis-server)"
            )
        if self.data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="acd-redis-")
            directory = Path(self._tmp.name)
        else:
            directory = self.data_dir
            directory.mkdir(parents=True, exist_ok=True)
        unix: list[str] = []
        if self.socket_path is not None:
            unix = ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        orphaned = ["setpriv", "--pdeathsig", "TERM", "--"]
        args = [
            *(orphaned if self.die_with_parent and shutil.which("setpriv") else []),
            binary,
            *([str(self.config_file)] if self.config_file is not None else []),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(directory),
            "--save", "",
            "--appendonly", "yes" if self.data_dir is not None else "no",
            "--daemonize", "no",
            "--loglevel", "warning",
            *unix,
            *self.options,
        ]  # fmt: skip
        # Its own session: a Ctrl-C meant for the service must not stop the store first.
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise StoreUnavailable(f"redis-server exited: {err.strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise StoreUnavailable(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        """Stop the server (it writes its append-only file on the way out)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
