"""The command line: `check-config` exit codes and output."""

from __future__ import annotations

import hashlib
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


def refused(path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """check-config's lines on stderr for `path`, which it must refuse (exit 1, nothing on
    stdout)."""
    assert main(["check-config", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    return err.splitlines()


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
    assert refused(path, capsys) == [
        f"{path}: queues[0].sla.target: must be <= 1",
        f"{path}: queues[0].steps[0].after_s: must be > 0",
        f"{path}: no API key is configured; add [[keys]] or start with --insecure "
        "(local experiments only)",
    ]


def test_check_config_reports_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "missing.toml"
    [line] = refused(path, capsys)
    assert line.startswith(f"{path}: ")


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
    fields = [line.split(": ")[1] for line in refused(path, capsys)]
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


def test_check_config_reports_the_problems_of_every_stage_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seen: the file's problems alone, then, once fixed, the address's, then the keys'.
    path = tmp_path / "acd.toml"
    path.write_text(
        '[service]\nlisten = "nowhere"\nredis_url = "localhost:6379"\nretention_s = nan\n'
        '[[keys]]\nname = "pbx"\nrole = "platform"\nenv = "ACD_KEY_PBX"\n'
        '[[webhooks]]\nurl = "https://crm.example.com/in"\nsecret_env = "ACD_HOOK_SECRET"\n'
        '[[queues]]\nname = "Support"\n'
    )
    monkeypatch.setenv("ACD_STORE_TIMEOUT_S", "inf")
    assert refused(path, capsys) == [
        f"{path}: service.retention_s: must be a finite number",
        f"{path}: env.store_timeout_s: must be a finite number",
        f"{path}: queues[0].name: must match [a-z0-9][a-z0-9_.:-]{{0,63}}",
        f"{path}: service.listen: must be HOST:PORT, e.g. 127.0.0.1:8080",
        f"{path}: service.redis_url: unknown scheme; the forms are redis://host:port[/db], "
        "redis+sentinel://host:port[,host:port...]/<master name>[/db] or "
        "redis+cluster://host:port[,host:port...]",
        f"{path}: keys[0].env: variable ACD_KEY_PBX is not set",
        f"{path}: webhooks[0].secret_env: variable ACD_HOOK_SECRET is not set",
    ]


def test_a_bad_address_or_store_url_from_the_environment_names_the_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "acd.toml"
    path.write_text(
        '[service]\nlisten = "127.0.0.1:8080"\n'
        '[[keys]]\nname = "pbx"\nrole = "platform"\nenv = "ACD_KEY_PBX"\n'
    )
    monkeypatch.setenv("ACD_KEY_PBX", "secret")
    monkeypatch.setenv("ACD_LISTEN", "nowhere")
    monkeypatch.setenv("ACD_REDIS_URL", "localhost:6379")
    problems = refused(path, capsys)
    assert [p.split(": ", 2)[1] for p in problems] == ["env.listen", "env.redis_url"]


def test_check_config_skips_the_checks_of_entries_already_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The wrong key is left out: its variable, or "no API key is configured", would mislead.
    path = tmp_path / "acd.toml"
    path.write_text(
        '[[keys]]\nname = "pbx"\nrole = "root"\nenv = "ACD_KEY_PBX"\n'
        '[[webhooks]]\nurl = "https://crm.example.com/in"\nsecret_env = "ACD_HOOK_SECRET"\n'
    )
    assert refused(path, capsys) == [
        f"{path}: keys[0].role: must be one of admin, platform, monitor",
        f"{path}: webhooks[0].secret_env: variable ACD_HOOK_SECRET is not set",
    ]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("acd-router ")


def test_two_keys_with_one_secret_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seen: accepted silently; the shared secret then acted with the highest role.
    path = tmp_path / "acd.toml"
    same = hashlib.sha256(b"same").hexdigest()
    path.write_text(
        f'[[keys]]\nname = "ops"\nrole = "admin"\nsha256 = "{same}"\n'
        '[[keys]]\nname = "wall"\nrole = "monitor"\nenv = "ACD_KEY_WALL"\n'
        '[[keys]]\nname = "pbx"\nrole = "platform"\nenv = "ACD_KEY_PBX"\n'
        '[[keys]]\nname = "crm"\nrole = "platform"\nenv = "ACD_KEY_PBX"\n'
    )
    monkeypatch.setenv("ACD_KEY_WALL", "same")
    monkeypatch.setenv("ACD_KEY_PBX", "other")
    lines = refused(path, capsys)
    assert lines == [
        f"{path}: keys[1].env: is the same key as keys[0]; each key needs its own",
        f"{path}: keys[3].env: is the same key as keys[2]; each key needs its own",
    ]
    assert "same" not in "\n".join(lines).replace("the same key", "")  # never the secret
    monkeypatch.setenv("ACD_KEY_WALL", "its-own")
    path.write_text(path.read_text().rsplit("[[keys]]", 1)[0])
    assert main(["check-config", str(path)]) == 0
