"""Redis topologies on loopback, for the failover tests and the HA benchmarks: a primary with
replicas watched by Sentinels, and a Redis Cluster. Every process is a Debian `redis-server` on a
free 127.0.0.1 port, started and stopped here; nothing waits without a deadline."""

from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from redis import Redis
from redis.crc import key_slot
from redis.exceptions import RedisError

from router.store.server import RedisServer

MASTER = "acd"
"""The name the Sentinels monitor the primary under."""
DOWN_AFTER_MS = 1000
"""A Sentinel deems the primary down after this long without an answer."""
FAILOVER_TIMEOUT_MS = 3000
READY_TIMEOUT_S = 30.0
SETTLED_S = 3.0
"""How long the Sentinels must agree on a primary before it counts as the final one: a Sentinel
may deem a primary it just promoted down at once (down-after 1000 ms on a busy machine) and fail
over again."""
CLUSTER_BUS_OFFSET = 10000
"""A cluster node's bus port is its port + 10000."""

REPLICATION = ("--repl-diskless-sync-delay", "0")
"""A replica's first sync starts at once (by default the primary waits 5 s for more replicas)."""


def until(check: Callable[[], bool], what: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Poll `check` every 50 ms until it holds; TimeoutError naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        last: Exception | None = None
        try:
            if check():
                return
        except (OSError, RedisError) as error:  # not up yet
            last = error
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:g} s ({last!r})")
        time.sleep(0.05)


def _client(port: int) -> Redis:
    return Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)


def _info(port: int, section: str) -> dict[str, object]:
    with _client(port) as client:
        return dict(client.info(section))


@dataclass
class Node:
    """One redis-server of a topology, with signals for fault injection."""

    server: RedisServer

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def pid(self) -> int:
        assert self.server.process is not None
        return self.server.process.pid

    def client(self) -> Redis:
        """A blocking client (closed by `with`)."""
        return _client(self.port)

    def kill(self) -> None:
        """SIGKILL, as a host dying would: nothing flushed, nothing said to anyone."""
        if self.server.process is not None and self.server.process.poll() is None:
            self.server.process.kill()
            self.server.process.wait()

    def freeze(self) -> None:
        """SIGSTOP: the process stops reading its sockets."""
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT."""
        os.kill(self.pid, signal.SIGCONT)

    @property
    def alive(self) -> bool:
        return self.server.process is not None and self.server.process.poll() is None


@dataclass
class SentinelSet:
    """A primary, `replicas` replicas and `sentinels` Sentinels (quorum 2) on loopback."""

    replicas: int = 2
    sentinels: int = 3
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="acd-ha-")))
    nodes: list[Node] = field(default_factory=list)
    """The primary first, then the replicas (who is primary changes with a failover)."""
    watchers: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The router's store URL."""
        hosts = ",".join(f"127.0.0.1:{w.port}" for w in self.watchers)
        return f"redis+sentinel://{hosts}/{MASTER}"

    def start(self) -> None:
        """Start every process and wait until the Sentinels know every replica and each other."""
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            primary = Node(RedisServer(options=REPLICATION))
            primary.server.start()
            self.nodes = [primary]
            for _ in range(self.replicas):
                replica = Node(
                    RedisServer(
                        options=(*REPLICATION, "--replicaof", "127.0.0.1", str(primary.port))
                    )
                )
                replica.server.start()
                self.nodes.append(replica)
            until(lambda: self.confirmed(primary), "replicas in sync")
            # Each Sentinel told of the replicas and the other Sentinels up front: none waits
            # for the other's hello messages (every 2 s) or the primary's INFO (every 10 s).
            self.watchers = [
                Node(RedisServer(options=("--sentinel",))) for _ in range(self.sentinels)
            ]
            ids = [secrets.token_hex(20) for _ in self.watchers]
            for i, watcher in enumerate(self.watchers):
                conf = self.folder / f"sentinel-{i}.conf"
                lines = [
                    f"sentinel myid {ids[i]}",
                    f"sentinel monitor {MASTER} 127.0.0.1 {primary.port} 2",
                    f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}",
                    f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}",
                    f"sentinel parallel-syncs {MASTER} {self.replicas}",
                    *(
                        f"sentinel known-replica {MASTER} 127.0.0.1 {n.port}"
                        for n in self.nodes[1:]
                    ),
                    *(
                        f"sentinel known-sentinel {MASTER} 127.0.0.1 {other.port} {ids[j]}"
                        for j, other in enumerate(self.watchers)
                        if j != i
                    ),
                ]
                conf.write_text("\n".join(lines) + "\n")
                watcher.server.config_file = conf
                watcher.server.start()
            until(self.watched, "every Sentinel sees every replica and the other Sentinels")
        except BaseException:
            self.stop()
            raise

    def confirmed(self, primary: Node) -> bool:
        """Whether every replica streams from `primary` and confirms a write at once (a replica
        just put online may take a second to acknowledge its first)."""
        if self.online_replicas(primary) < self.replicas:
            return False
        with primary.client() as client:
            client.set("topology:probe", 1)
            return int(client.wait(self.replicas, 100)) >= self.replicas

    def online_replicas(self, node: Node) -> int:
        """Replicas that `node` (a primary) streams to."""
        info = _info(node.port, "replication")
        return sum(
            1
            for key, value in info.items()
            if key.startswith("slave") and isinstance(value, dict) and value["state"] == "online"
        )

    def watched(self) -> bool:
        """Whether each live Sentinel knows the primary, every replica and the other Sentinels."""
        for watcher in self.watchers:
            if not watcher.alive:
                continue
            with watcher.client() as client:
                master = client.sentinel_master(MASTER)
                replicas = client.sentinel_slaves(MASTER)
            if int(master["num-other-sentinels"]) < self.sentinels - 1:
                return False
            up = [r for r in replicas if not (r["is_sdown"] or r["is_odown"])]
            if len(up) < self.replicas:
                return False
        return True

    def primary(self) -> Node:
        """The node the Sentinels name as the primary now."""
        for watcher in self.watchers:
            if not watcher.alive:
                continue
            with watcher.client() as client:
                _, port = client.sentinel_get_master_addr_by_name(MASTER)
            return next(n for n in self.nodes if n.port == int(port))
        raise LookupError("no live Sentinel")

    def agreed(self) -> Node | None:
        """The node every live Sentinel names as the primary, up, with no failover under way;
        None while they differ (redis-py takes any Sentinel's word)."""
        ports = set()
        for watcher in self.watchers:
            if not watcher.alive:
                continue
            with watcher.client() as client:
                state = client.sentinel_master(MASTER)
            if state["is_sdown"] or state["is_odown"] or "failover_in_progress" in state["flags"]:
                return None
            ports.add(int(state["port"]))
        return next((n for n in self.nodes if {n.port} == ports), None)

    def settled(self, timeout_s: float = READY_TIMEOUT_S) -> Node:
        """The primary, once every Sentinel has named it for SETTLED_S on end while it answered as
        a primary with a replica streaming from it (a second failover may replace the first)."""
        named_since: list[tuple[Node, float]] = []

        def ready() -> bool:
            node = self.agreed()
            if (
                node is None
                or _info(node.port, "replication")["role"] != "master"
                or self.online_replicas(node) == 0
            ):
                named_since.clear()
                return False
            if not named_since or named_since[0][0] is not node:
                named_since[:] = [(node, time.monotonic())]
            return time.monotonic() - named_since[0][1] >= SETTLED_S

        until(ready, "every Sentinel names one primary, streaming to a replica", timeout_s)
        return named_since[0][0]

    def wait_failover(self, old: Node, timeout_s: float = READY_TIMEOUT_S) -> Node:
        """The new primary, once the Sentinels have promoted one and it answers as a primary."""

        def promoted() -> bool:
            node = self.primary()
            return node is not old and _info(node.port, "replication")["role"] == "master"

        until(promoted, "a replica promoted", timeout_s)
        return self.primary()

    def restart_killed(self) -> None:
        """Start every killed node again, as a replica of the primary; wait until the Sentinels
        see every replica again."""
        primary = self.primary()
        for node in self.nodes:
            if not node.alive:
                node.server.stop()  # its folder goes: it syncs from the primary
                node.server.options = (*REPLICATION, "--replicaof", "127.0.0.1", str(primary.port))
                node.server.start()
        until(lambda: self.confirmed(primary), "replicas in sync")
        until(self.watched, "every Sentinel sees every replica again")

    @contextmanager
    def cut_off(self) -> Iterator[None]:
        """The replicas frozen and their replication links cut: what the primary acknowledges
        meanwhile reaches no replica (a lag, as on a slow or partitioned network)."""
        primary = self.primary()
        replicas = [n for n in self.nodes if n is not primary and n.alive]
        for node in replicas:
            node.freeze()
        try:
            with primary.client() as client:
                client.client_kill_filter(_type="replica")
            yield
        finally:
            for node in replicas:
                node.thaw()

    def stop(self) -> None:
        """Stop every process (thawing any frozen one first) and remove the folder."""
        for node in [*self.watchers, *self.nodes]:
            if node.alive:
                with suppress(ProcessLookupError):
                    node.thaw()
            node.server.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too and at most 65535."""
    for _ in range(200):
        port = random.randint(20000, 45000)
        if all(_free(p) for p in (port, port + CLUSTER_BUS_OFFSET)):
            return port
    raise OSError("no free pair of ports for a cluster node")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Cluster:
    """A Redis Cluster of `primaries` primaries (no replicas), slots spread evenly."""

    primaries: int = 3
    nodes: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The router's store URL."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> None:
        """Start the nodes, join them with `redis-cli --cluster create` and wait until it is ok."""
        try:
            for _ in range(self.primaries):
                node = Node(
                    RedisServer(
                        port=cluster_port(),
                        options=("--cluster-enabled", "yes", "--cluster-node-timeout", "2000"),
                    )
                )
                node.server.start()
                self.nodes.append(node)
            binary = shutil.which("redis-cli") or "redis-cli"
            subprocess.run(
                [
                    binary,
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{n.port}" for n in self.nodes),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=READY_TIMEOUT_S,
            )

            def ok() -> bool:
                return all(_info_cluster(n.port).get("cluster_state") == "ok" for n in self.nodes)

            until(ok, "cluster state ok")
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def slot(key: str) -> int:
        """The hash slot of `key`."""
        return key_slot(key.encode())

    def ranges(self) -> list[tuple[int, int, Node]]:
        """The slot ranges and the primary that serves each."""
        with self.nodes[0].client() as client:
            found = client.execute_command("CLUSTER", "SLOTS")
        by_port = {n.port: n for n in self.nodes}
        return [(start, end, by_port[port]) for start, end, (_, port, *_), *_ in found]

    def node_of(self, key: str) -> Node:
        """The primary that serves the slot of `key`."""
        slot = self.slot(key)
        return next(node for start, end, node in self.ranges() if start <= slot <= end)

    def move_slot(self, key: str, target: Node) -> None:
        """Move the slot of `key` with its keys to `target`, as a resharding does."""
        slot, source = self.slot(key), self.node_of(key)
        with source.client() as src, target.client() as dst:
            src_id = src.execute_command("CLUSTER", "MYID").decode()
            dst_id = dst.execute_command("CLUSTER", "MYID").decode()
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
            while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
        for node in [target, source, *self.nodes]:
            with node.client() as client:
                client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)

    def stop(self) -> None:
        """Stop every node (its nodes.conf goes with its temporary folder)."""
        for node in self.nodes:
            node.server.stop()


def _info_cluster(port: int) -> dict[str, str]:
    with _client(port) as client:
        raw = client.execute_command("CLUSTER", "INFO")
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return dict(line.split(":", 1) for line in text.split() if ":" in line)
