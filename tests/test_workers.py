"""`acd-router serve --workers N` (SPEC §8): the real processes behind one port."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from http.client import HTTPConnection
from pathlib import Path

import pytest
import redis

from loadtest.served import Served, clean_env, port_open, serve_args
from router.errors import ConfigError
from router.service.options import ServeOptions, build_config
from router.settings import ServiceSettings
from tests.e2e.serve import eventually, http

KEY = "test-platform-key"
CONFIG = """
[service]
workers = 2
store_timeout_s = 0.5

[[keys]]
name = "pbx"
role = "platform"
env = "ACD_KEY_PBX"

[[queues]]
name = "support"
channel = "voice"
skills = { support = 1 }

[[queues]]
name = "billing"
channel = "voice"
skills = { billing = 1 }
"""
SERVING = re.compile(r"worker (\d) of 2 serving \(pid (\d+)\)")
CONNECTIONS = 16


def worker_pids(served: Served) -> dict[int, int]:
    """The pid of each worker, by index, from the latest `serving` line of each."""
    return {int(m[1]): int(m[2]) for m in SERVING.finditer(served.output)}


def children(pid: int) -> dict[int, str]:
    """The command name of each child of `pid`."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text.rsplit(")", 1)[1].split()[1]) == pid:
            found[int(stat.parent.name)] = text[text.index("(") + 1 : text.rindex(")")]
    return found


def established(pid: int, port: int) -> int:
    """How many established TCP connections to local `port` process `pid` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            local_port = int(cols[1].rsplit(":", 1)[1], 16)
            count += local_port == port and cols[3] == "01" and cols[9] in inodes
    return count


def metric(text: str, name: str) -> float:
    """The value of the series `name` (with its labels) in an exposition."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} in /metrics")


def scrape(url: str) -> str:
    """GET /metrics as text."""
    with ExitStack() as stack:
        conn = HTTPConnection(url.removeprefix("http://"), timeout=5)
        stack.callback(conn.close)
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        assert response.status == 200
        return response.read().decode()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """`serve` with two workers and the embedded store, stopped at teardown."""
    config = tmp_path / "acd.toml"
    config.write_text(CONFIG)
    args, _ = serve_args("--config", str(config))
    service = Served(args, clean_env({"ACD_KEY_PBX": KEY}))
    try:
        yield service
    finally:
        service.kill()


def test_two_workers_serve_one_port_one_store_one_scrape_and_stop_together(
    served: Served,
) -> None:
    url = served.wait_ready()
    port = int(url.rsplit(":", 1)[1])
    assert "2 workers" in served.output
    pids = worker_pids(served)
    assert sorted(pids) == [1, 2]
    # The embedded store is the parent's, started once; the workers start none.
    assert served.output.count("embedded store: redis-server on") == 1
    assert sorted(children(served.process.pid).values()).count("redis-server") == 1
    assert all("redis-server" not in children(pid).values() for pid in pids.values())

    # Both workers take connections on the one port (SO_REUSEPORT spreads them).
    with ExitStack() as stack:
        for _ in range(CONNECTIONS):
            conn = HTTPConnection(f"127.0.0.1:{port}", timeout=5)
            stack.callback(conn.close)
            conn.request("GET", "/healthz")
            assert conn.getresponse().read() == b'{"status":"ok"}'
        held = {index: established(pid, port) for index, pid in pids.items()}
    assert sum(held.values()) == CONNECTIONS
    assert all(held.values()), held
    # One scrape, whichever worker answers it, covers both.
    healthz = 'acd_http_requests_total{method="GET",route="/healthz",status="200"}'
    text = scrape(url)
    assert metric(text, healthz) == CONNECTIONS
    assert metric(text, "acd_store_up") == 1
    assert http("GET", f"{url}/v1/queues", key=KEY)[0] == 200

    # The store frozen: /metrics still answers, with the per-process series and the store down.
    store = next(p for p, name in children(served.process.pid).items() if name == "redis-server")
    os.kill(store, signal.SIGSTOP)
    try:
        frozen = scrape(url)
    finally:
        os.kill(store, signal.SIGCONT)
    assert metric(frozen, "acd_store_up") == 0
    assert metric(frozen, healthz) == CONNECTIONS
    assert "acd_queue_waiting" not in frozen  # the business metrics live in the store

    # A worker that dies is reported and started again; the service goes on.
    os.kill(pids[1], signal.SIGKILL)
    served.wait_for(re.compile(r"worker 1 \(pid \d+\) exited with signal SIGKILL: starting"))
    eventually(lambda: worker_pids(served)[1] != pids[1], what="worker 1 started again")
    assert http("GET", f"{url}/v1/queues", key=KEY)[0] == 200
    eventually(lambda: metric(scrape(url), "acd_store_up") == 1, what="the store up again")
    assert metric(scrape(url), healthz) == CONNECTIONS  # the dead worker's counts stay

    pids = worker_pids(served)
    assert served.stop() == 0
    assert "SIGTERM received: stopping 2 workers" in served.output
    for index in pids:
        assert f"[worker {index}]: SIGTERM received: stopping" in served.output
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids.values())
    assert not port_open(port)
    assert "Traceback" not in served.output


def sse_stream(port: int, query: str) -> HTTPConnection:
    """An open GET /v1/events (its headers read: every event appended after it reaches it)."""
    conn = HTTPConnection(f"127.0.0.1:{port}", timeout=5)
    conn.request("GET", f"/v1/events?{query}", headers={"Authorization": f"Bearer {KEY}"})
    response = conn.getresponse()
    assert response.status == 200
    conn.sock.settimeout(5)
    return conn


def sse_ids(conn: HTTPConnection, count: int) -> list[str]:
    """The interaction ids of the next `count` events of an open stream."""
    ids: list[str] = []
    assert conn.sock is not None
    reader = conn.sock.makefile("rb")
    while len(ids) < count:
        line = reader.readline()
        if line.startswith(b"data:"):
            ids.append(json.loads(line[5:])["interaction_id"])
    return ids


def test_the_workers_streams_are_fed_by_the_machines_one_reader_and_a_hang_up_stops_all(
    served: Served,
) -> None:
    url = served.wait_ready()
    port = int(url.rsplit(":", 1)[1])
    pids = worker_pids(served)
    assert served.store_url is not None
    store = redis.Redis.from_url(served.store_url)
    with ExitStack() as stack:
        # Streams on both workers (SO_REUSEPORT decides which takes each).
        streams: list[tuple[HTTPConnection, str]] = []
        while len(streams) < 40 and not all(established(pid, port) for pid in pids.values()):
            queue = ("support", "billing")[len(streams) % 2]
            conn = sse_stream(port, f"types=interaction.queued&queue={queue}")
            stack.callback(conn.close)
            streams.append((conn, queue))
        assert all(established(pid, port) for pid in pids.values())
        everything = sse_stream(port, "types=interaction.queued")
        stack.callback(everything.close)

        # The log is read once on the machine (the parent), not by each worker with streams.
        readers = [c for c in store.client_list() if c["cmd"] == "xread"]
        assert len(readers) == 1, readers

        for n in range(4):
            body = {"id": f"w{n}", "queue": ("support", "billing")[n % 2]}
            assert http("POST", f"{url}/v1/interactions", body, key=KEY)[0] == 201
        for conn, queue in streams:
            assert sse_ids(conn, 2) == (["w0", "w2"] if queue == "support" else ["w1", "w3"])
        assert sse_ids(everything, 4) == ["w0", "w1", "w2", "w3"]
        store.close()

        # Stopped with streams open (the machine's reader blocked on the log): once the workers
        # are gone, new connections are refused, not left waiting on the parent's sockets. By a
        # hang-up, which a closed terminal sends to the whole group: the workers' first (seen: it
        # ended serve at once, its redis-server left running).
        store_port = served.store_port
        assert store_port is not None
        for pid in [*pids.values(), served.process.pid]:
            os.kill(pid, signal.SIGHUP)
        eventually(
            lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids.values()),
            what="the workers gone",
        )
        assert not port_open(port)
        assert served.wait_exit() == 0
    assert "SIGHUP received: stopping 2 workers" in served.output
    for index in pids:
        assert f"[worker {index}]: SIGTERM received: stopping" in served.output
    assert "exited with" not in served.output
    assert not port_open(store_port)
    assert "Traceback" not in served.output


def test_a_worker_that_cannot_start_again_is_retried_while_another_serves(served: Served) -> None:
    # Seen: a worker dying while the store was down took the whole service down with it.
    url = served.wait_ready()
    pids = worker_pids(served)
    store = next(p for p, name in children(served.process.pid).items() if name == "redis-server")
    os.kill(store, signal.SIGSTOP)
    try:
        os.kill(pids[1], signal.SIGKILL)
        served.wait_for(re.compile(r"worker 1 exited with status 1 at start: trying again in"))
        # Its socket closed meanwhile, and each retry's listening only once its worker serves:
        # every new connection reaches worker 2, during the next failed retry too (seen: retries
        # whose sockets listened at once, which reset the connections they took).
        statuses = []
        deadline = time.monotonic() + 20
        while served.output.count("trying again in") < 2 and time.monotonic() < deadline:
            statuses.append(http("GET", f"{url}/healthz")[0])
        assert served.output.count("trying again in") >= 2
        assert len(statuses) >= CONNECTIONS
        assert set(statuses) == {200}
        assert served.alive()
    finally:
        os.kill(store, signal.SIGCONT)
    eventually(lambda: worker_pids(served)[1] != pids[1], timeout_s=10, what="worker 1 again")
    with ExitStack() as stack:
        for _ in range(CONNECTIONS):  # both take connections again
            conn = HTTPConnection(url.removeprefix("http://"), timeout=5)
            stack.callback(conn.close)
            conn.request("GET", "/healthz")
            assert conn.getresponse().status == 200
        held = [
            established(pid, int(url.rsplit(":", 1)[1])) for pid in worker_pids(served).values()
        ]
    assert all(held), held
    assert served.stop() == 0


@pytest.mark.parametrize("when", ["at once", "once the new worker runs"])
def test_a_stop_while_a_worker_starts_again_is_a_clean_stop(served: Served, when: str) -> None:
    served.wait_ready()
    pids = worker_pids(served)
    before = set(children(served.process.pid))
    os.kill(pids[1], signal.SIGKILL)
    served.wait_for(re.compile(r"worker 1 \(pid \d+\) exited with signal SIGKILL: starting"))
    if when != "at once":
        # Started, not serving yet: the stop's SIGTERM may end it before its handler is in.
        eventually(lambda: bool(set(children(served.process.pid)) - before), what="a new worker")
        assert worker_pids(served)[1] == pids[1]
    assert served.stop() == 0, served.output
    assert "did not stop cleanly" not in served.output
    assert "Traceback" not in served.output, served.output


# --- the setting --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "env", "flag", "expected"),
    [
        ({}, {}, None, 1),
        ({"workers": 3}, {}, None, 3),
        ({"workers": 3}, {"ACD_WORKERS": "2"}, None, 2),
        ({"workers": 3}, {"ACD_WORKERS": "2"}, "4", 4),
        ({}, {"ACD_WORKERS": "auto"}, None, "auto"),
        ({"workers": "auto"}, {}, None, "auto"),
    ],
)
def test_workers_come_from_the_file_the_environment_and_the_flag(
    tmp_path: Path,
    table: dict[str, object],
    env: dict[str, str],
    flag: str | None,
    expected: object,
) -> None:
    path = tmp_path / "acd.toml"
    path.write_text(
        "".join(f"[service]\nworkers = {v!r}\n".replace("'", '"') for v in table.values())
    )
    config = build_config(ServeOptions(config=str(path), workers=flag), env)
    assert config.service.workers == expected
    count = config.service.worker_count()
    assert count == (len(os.sched_getaffinity(0)) if expected == "auto" else expected)


@pytest.mark.parametrize("value", [0, 65, -1, "many", "2.5", True, 1.5])
def test_a_bad_workers_value_names_the_field(value: object) -> None:
    with pytest.raises(ConfigError) as raised:
        ServiceSettings.from_mapping({"workers": value})
    assert str(raised.value) == 'service.workers: must be an integer 1..64 or "auto"'
    with pytest.raises(ConfigError) as raised:
        build_config(ServeOptions(workers=str(value)), {})
    assert raised.value.errors[0].field == "--workers"
