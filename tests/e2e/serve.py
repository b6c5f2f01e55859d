"""Blocking HTTP helpers for tests of the real `acd-router serve` (loadtest.served runs it)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from loadtest.served import Served, clean_env, serve_args


def http(
    method: str,
    url: str,
    body: Any = None,
    key: str | None = None,
    timeout_s: float = 5.0,
) -> tuple[int, Any]:
    """One blocking HTTP request: the status and the decoded JSON body (None if empty)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            status: int = response.status
            raw = response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    return status, json.loads(raw) if raw else None


def eventually(check: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition") -> None:
    """Poll `check` until it holds; AssertionError at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout_s} s")
        time.sleep(0.02)


@contextmanager
def service_with(config: str, folder: Path, env: dict[str, str]) -> Iterator[str]:
    """The base URL of `acd-router serve` on configuration `config` (written into `folder`) with
    the variables `env`; the process is stopped after the block."""
    path = folder / "acd.toml"
    path.write_text(config)
    args, _ = serve_args("--config", str(path))
    served = Served(args, clean_env(env))
    try:
        yield served.wait_ready()
    finally:
        served.kill()
