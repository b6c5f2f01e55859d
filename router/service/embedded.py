"""The embedded store: a private redis-server when no Redis URL is set (SPEC §8)."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from router.errors import StoreUnavailable
from router.store.server import RedisServer

log = logging.getLogger("router.service.embedded")


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
        # The service connects over a Unix socket: a call costs both sides less than over TCP
        # on loopback (docs/benchmarks.md); the port stays open for redis-cli and tools.
        self.server = RedisServer(data_dir=self.folder, unix_socket=True, die_with_parent=True)

    @property
    def temporary(self) -> bool:
        """Whether the data is lost at exit."""
        return self._tmp is not None

    @property
    def url(self) -> str:
        """The unix:// URL the service connects to."""
        return self.server.socket_url

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
            "embedded store: redis-server on 127.0.0.1:%d (the service uses %s), append-only data "
            "in temporary folder %s; this data is LOST at exit (use --data-dir DIR to keep it)",
            store.server.port,
            store.server.socket_path,
            store.folder,
        )
    else:
        log.info(
            "embedded store: redis-server on 127.0.0.1:%d (the service uses %s), append-only data "
            "in %s (kept across restarts)",
            store.server.port,
            store.server.socket_path,
            store.folder,
        )
