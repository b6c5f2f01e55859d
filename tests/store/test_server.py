"""The embedded store's redis-server (router/service/embedded.py, router/store/server.py): it does
not outlive the process that started it, even one killed with SIGKILL (what an audit of `serve`
saw left running)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

EMBEDDED = """
import time
from router.service.embedded import EmbeddedStore
store = EmbeddedStore()
store.start()
print(store.server.process.pid, flush=True)
time.sleep(60)
"""
PLAIN = """
import time
from router.store.server import RedisServer
server = RedisServer()
server.start()
print(server.process.pid, flush=True)
time.sleep(60)
"""


def started_by_a_killed_process(program: str) -> int:
    """The pid of a redis-server started by a child process, once that child is SIGKILLed."""
    child = subprocess.Popen(
        [sys.executable, "-c", program],
        stdout=subprocess.PIPE,
        cwd="/",
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert child.stdout is not None
    pid = int(child.stdout.readline())
    child.kill()
    child.wait()
    return pid


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie of another parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_the_embedded_store_stops_when_its_service_is_killed() -> None:
    pid = started_by_a_killed_process(EMBEDDED)
    assert gone_within(pid, 10)


def test_without_it_a_server_outlives_its_starter() -> None:
    # What the embedded store did before: the check above would pass for any server otherwise.
    pid = started_by_a_killed_process(PLAIN)
    try:
        assert not gone_within(pid, 0.5)
    finally:
        os.kill(pid, signal.SIGKILL)  # no child of this process: nothing to wait for
