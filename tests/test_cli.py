"""The command line: `check-config` exit codes and output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from router.cli import main

DEMO = Path(__file__).resolve().parents[1] / "config" / "acd.toml"


@pytest.fixture(autouse=True)
def _no_acd_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # check-config applies ACD_* variables; a developer's shell must not change the outcome.
    for name in [name for name in os.environ if name.startswith("ACD_")]:
        monkeypatch.delenv(name)


DEMO_KEYS = ("ACD_KEY_ADMIN", "ACD_KEY_PBX", "ACD_KEY_MONITOR")


def test_check_config_accepts_the_demo(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in DEMO_KEYS:
        monkeypatch.setenv(name, f"key-of-{name}")
    assert main(["check-config", str(DEMO)]) == 0
    out, err = capsys.readouterr()
    assert out == "ok: 4 queues, 3 keys, 0 webhooks\n"
    assert err == ""


def test_check_config_reports_each_problem_on_its_own_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[[queues]]\nname = "a"\nsla = { target = 2 }\n'
        "[[queues.steps]]\nafter_s = -1\nskills = {}\n"
    )
    assert main(["check-config", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{path}: queues[0].sla.target: must be <= 1",
        f"{path}: queues[0].steps[0].after_s: must be > 0",
    ]


def test_check_config_reports_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "missing.toml"
    assert main(["check-config", str(path)]) == 1
    assert capsys.readouterr().err.startswith(f"{path}: ")


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


def test_check_config_checks_what_serve_needs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "acd.toml"
    path.write_text(
        '[service]\nlisten = "nowhere"\nredis_url = "localhost:6379"\n'
        '[[keys]]\nname = "pbx"\nrole = "platform"\nenv = "ACD_KEY_PBX"\n'
        '[[webhooks]]\nurl = "https://crm.example.com/in"\nsecret_env = "ACD_HOOK_SECRET"\n'
    )
    assert main(["check-config", str(path)]) == 1
    fields = [line.split(": ")[1] for line in capsys.readouterr().err.splitlines()]
    assert fields == [
        "service.listen",
        "service.redis_url",
        "keys[0].env",
        "webhooks[0].secret_env",
    ]
    monkeypatch.setenv("ACD_LISTEN", "127.0.0.1:0")
    monkeypatch.setenv("ACD_REDIS_URL", "redis://127.0.0.1:6399/0")
    monkeypatch.setenv("ACD_KEY_PBX", "secret")
    monkeypatch.setenv("ACD_HOOK_SECRET", "secret")
    assert main(["check-config", str(path)]) == 0  # the variables serve would read


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("acd-router ")
