"""The load tester's command line refuses bad input with a clear line and exit 2, never a
traceback or a run on nothing (what an audit of docs/loadtest.md found)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from loadtest.__main__ import main
from loadtest.trace import write_roster, write_trace
from tests.loadtest.test_simulate import CALLS, ROSTER

SAMPLES = Path(__file__).parents[2] / "loadtest" / "samples"


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["generate", "--hours", "1", "--patience", "0"], "argument --patience: must be > 0"),
        (["generate", "--hours", "-2"], "argument --hours: must be > 0"),
        (["generate", "--wrap-up", "-5"], "argument --wrap-up: must be >= 0"),
        (["generate", "--aht", "nan"], "argument --aht: must be > 0"),
        (["check_ewt", "--hours", "0"], "argument --hours: must be > 0"),
        (["check_calibration", "--replications", "0"], "argument --replications: must be > 0"),
    ],
)
def test_a_number_out_of_range_is_a_usage_error(
    argv: list[str], said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, *(["--out", str(tmp_path / "t.jsonl")] if argv[0] == "generate" else [])])
    assert exit_.value.code == 2
    assert said in capsys.readouterr().err


def test_what_ifs_out_of_range_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_trace(tmp_path / "t.jsonl", CALLS)
    write_roster(tmp_path / "r.json", ROSTER)
    config = tmp_path / "c.toml"
    config.write_text('[[queues]]\nname = "q"\nskills = { q = 1 }\n', "utf-8")
    argv = ["simulate", str(tmp_path / "t.jsonl"), "--roster", str(tmp_path / "r.json")]
    argv += ["--config", str(config)]
    for bad in (["--scale-agents", "-1"], ["--add-agents", "-3"], ["--ring-delay", "-5"]):
        with pytest.raises(SystemExit):
            main([*argv, *bad])
        assert "must be" in capsys.readouterr().err
    assert main([*argv, "--add-like", "a1"]) == 2
    assert "give --add-agents too" in capsys.readouterr().err


def test_a_trace_of_the_wrong_format_imports_nothing_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "t.jsonl")
    assert main(["import", "queue-log", str(SAMPLES / "anonymous_bank.txt"), "--out", out]) == 2
    assert "no call imported as queue-log (no call read)" in capsys.readouterr().err
    assert main(["import", "anonymous-bank", str(SAMPLES / "queue_log.txt"), "--out", out]) == 2
    assert "fields, expected 17" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\xff\xfe{}\n")
    assert main(["simulate", str(bad), "--roster", "r.json", "--config", "c.toml"]) == 2
    assert f"{bad}: not UTF-8 text" in capsys.readouterr().err


def test_a_replay_that_reaches_no_service_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_trace(tmp_path / "t.jsonl", CALLS)
    write_roster(tmp_path / "r.json", ROSTER)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # closed again: nothing listens there
    argv = ["replay", str(tmp_path / "t.jsonl"), "--roster", str(tmp_path / "r.json")]
    argv += ["--url", f"http://127.0.0.1:{port}", "--key", "k", "--speed", "60", "--quiet"]
    assert main(argv) == 2
    assert "no answer (ClientConnectorError" in capsys.readouterr().err
