"""scripts/demo.sh: its banner's examples name the address the service will listen on."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """The real demo.sh in a tree whose setup.sh does nothing and whose acd-router echoes."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "demo.sh", tmp_path / "scripts" / "demo.sh")
    (tmp_path / "scripts" / "setup.sh").write_text("exit 0\n")
    fake = tmp_path / ".venv" / "bin" / "acd-router"
    fake.parent.mkdir(parents=True)
    fake.write_text('#!/usr/bin/env bash\necho "acd-router $*"\n')
    fake.chmod(0o755)
    return tmp_path / "scripts" / "demo.sh"


@pytest.mark.parametrize(
    ("args", "env_listen", "shown"),
    [
        (["--listen", "127.0.0.1:18080"], None, "127.0.0.1:18080"),  # seen: showed 8080
        (["--data-dir", "d", "--listen=127.0.0.1:18081"], None, "127.0.0.1:18081"),
        ([], "127.0.0.1:18082", "127.0.0.1:18082"),
        (["--listen", "127.0.0.1:18083"], "127.0.0.1:18082", "127.0.0.1:18083"),
    ],
)
def test_the_banner_names_the_listening_address(
    demo: Path, args: list[str], env_listen: str | None, shown: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACD_")}
    if env_listen is not None:
        env["ACD_LISTEN"] = env_listen
    done = subprocess.run(
        ["bash", str(demo), *args], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    urls = {word for word in done.stdout.split() if word.startswith("http://")}
    assert urls == {f"http://{shown}/v1/{path}" for path in ("queues", "agents/ann", "events")}
    assert done.stdout.splitlines()[-1] == " ".join(
        ["acd-router serve --config config/acd.toml", *args]
    )
