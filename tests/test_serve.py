"""`acd-router serve` (SPEC §8): the real process, its embedded store, keys, logs and signals."""

from __future__ import annotations

import json
import re
import resource
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from redis import Redis

from loadtest.served import Served, clean_env, port_open, serve_args
from router.cli import build_parser, serve_options
from router.errors import ConfigError
from router.service.options import (
    ServeOptions,
    build_config,
    parse_listen,
    prepare_data_dir,
    redact_url,
)
from tests.e2e.serve import eventually, http

KEY = "test-platform-key"
CONFIG = """
[[keys]]
name = "pbx"
role = "platform"
env = "ACD_KEY_PBX"

[[queues]]
name = "support"
channel = "voice"
skills = { support = 1 }
"""

LOW_OPEN_FILES = 512
"""A soft open-file limit as low as many systems' default."""


@pytest.fixture
def launch() -> Iterator[list[Served]]:
    """Children started by a test, each stopped (and its redis-server gone) at teardown."""
    started: list[Served] = []
    yield started
    for served in started:
        served.kill()


def start(started: list[Served], args: Sequence[str], **env: str) -> Served:
    """Start `acd-router <args>` with the clean environment plus `env`."""
    served = Served(args, clean_env(env))
    started.append(served)
    return served


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A configuration with one queue and one platform key read from ACD_KEY_PBX."""
    path = tmp_path / "acd.toml"
    path.write_text(CONFIG)
    return path


def test_serves_with_an_embedded_store_and_stops_on_sigterm(
    launch: list[Served], config_file: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    args, _ = serve_args("--config", str(config_file), data_dir=data)
    soft_before, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW_OPEN_FILES, hard))  # the child inherits it
    try:
        served = start(launch, args, ACD_KEY_PBX=KEY)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft_before, hard))
    url = served.wait_ready()
    assert str(data) in served.output  # the start-up log names the data folder
    # Raised to the hard limit: every connection is a file.
    limits = Path(f"/proc/{served.process.pid}/limits").read_text()
    found = re.search(r"Max open files\s+(\d+)\s+(\d+)", limits)
    assert found is not None
    assert int(found[1]) == int(found[2]) > LOW_OPEN_FILES
    assert f"open files {found[1]})" in served.output
    assert "kept across restarts" in served.output
    store_port = served.store_port
    assert store_port is not None
    assert port_open(store_port)

    assert http("GET", f"{url}/healthz")[0] == 200
    assert http("GET", f"{url}/readyz")[0] == 200
    status, problem = http("GET", f"{url}/v1/queues")
    assert status == 401
    assert problem["status"] == 401
    status, body = http("GET", f"{url}/v1/queues", key=KEY)
    assert status == 200
    assert "support" in json.dumps(body)
    assert KEY not in served.output  # keys are never logged
    # The service speaks to its store over the Unix socket the log names (CLIENT LIST flag U).
    named = re.search(r"the service uses (\S+)\)", served.output)
    assert named is not None
    socket_path = Path(named.group(1))
    assert socket_path.is_socket()
    with Redis(port=store_port) as admin:
        flags = [client["flags"] for client in admin.client_list()]
    assert sum("U" in f for f in flags) >= 1

    assert served.stop() == 0
    assert "SIGTERM received" in served.output
    assert not port_open(store_port)
    assert not socket_path.parent.exists()
    assert (data / "appendonlydir").is_dir()


def test_a_restart_on_the_same_data_dir_keeps_the_agents(
    launch: list[Served], config_file: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    args, _ = serve_args(data_dir=data)  # the file comes from ACD_CONFIG this time
    env = {"ACD_KEY_PBX": KEY, "ACD_CONFIG": str(config_file)}
    first = start(launch, args, **env)
    url = first.wait_ready()
    status, agent = http("PUT", f"{url}/v1/agents/ann", {"skills": {"support": 2}}, key=KEY)
    assert status == 201, agent
    assert first.stop() == 0

    second = start(launch, args, **env)
    url = second.wait_ready()
    status, agent = http("GET", f"{url}/v1/agents/ann", key=KEY)
    assert status == 200, agent
    assert agent["skills"] == {"support": 2}
    assert second.stop() == 0


def test_refuses_to_start_without_keys(launch: list[Served], tmp_path: Path) -> None:
    path = tmp_path / "nokeys.toml"
    path.write_text('[[queues]]\nname = "support"\n')
    args, port = serve_args("--config", str(path))
    served = start(launch, args)
    assert served.wait_exit() == 2
    assert "--insecure" in served.output
    assert "no API key" in served.output
    assert not port_open(port)


def test_refuses_to_start_when_a_key_variable_is_unset(
    launch: list[Served], config_file: Path
) -> None:
    args, _ = serve_args("--config", str(config_file))
    served = start(launch, args)  # ACD_KEY_PBX unset
    assert served.wait_exit() == 2
    assert "ACD_KEY_PBX" in served.output


def test_a_redis_url_without_a_scheme_is_a_one_line_refusal(launch: list[Served]) -> None:
    args, port = serve_args("--insecure", "--redis-url", "localhost:6379")
    served = start(launch, args)
    assert served.wait_exit() == 2
    assert "Traceback" not in served.output
    [line] = [line for line in served.output.splitlines() if "--redis-url" in line]
    assert "--redis-url: unknown scheme; the forms are redis://host:port[/db]" in line
    assert "redis+sentinel://" in line
    assert not port_open(port)


def test_a_data_dir_that_is_a_file_is_a_one_line_refusal(
    launch: list[Served], tmp_path: Path
) -> None:
    # Seen: a Python traceback from the folder's creation, after the start-up lines.
    taken = tmp_path / "taken"
    taken.write_text("")
    args, port = serve_args("--insecure", data_dir=taken)
    served = start(launch, args)
    assert served.wait_exit() == 2
    assert "Traceback" not in served.output
    assert (
        served.output.strip()
        == f"acd-router serve: --data-dir: exists and is not a folder ({taken})"
    )
    assert not port_open(port)


def test_insecure_json_logs_a_temporary_folder_and_a_hang_up_stops(launch: list[Served]) -> None:
    args, _ = serve_args("--insecure", "--log-json", "--clock-speed", "10")
    served = start(launch, args)
    url = served.wait_ready()
    status, _ = http("GET", f"{url}/v1/queues")  # no key needed in insecure mode
    assert status == 200
    store_port = served.store_port
    assert store_port is not None
    # Seen: a closed terminal's SIGHUP ended serve at once, its redis-server and folder left.
    served.process.send_signal(signal.SIGHUP)
    assert served.wait_exit() == 0
    assert not port_open(store_port)

    records = [json.loads(line) for line in served.lines]
    assert records, "no log lines"
    for record in records:
        assert set(record) >= {"ts", "level", "logger", "message"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["ts"])
    assert any(r["message"].startswith("SIGHUP received: stopping") for r in records)
    warnings = [r["message"] for r in records if r["level"] == "WARNING"]
    assert any(m.startswith("INSECURE MODE") for m in warnings)
    assert any(m.startswith("ready: ") and "INSECURE MODE" in m for m in warnings)  # banner too
    assert any("CLOCK SPEED 10x" in m for m in warnings)
    lost = next(m for m in warnings if "LOST at exit" in m)
    found = re.search(r"temporary folder (\S+?);", lost)
    assert found is not None
    folder = Path(found.group(1))
    eventually(lambda: not folder.exists(), what="the temporary folder removed")


def test_plain_logs_are_not_json_and_sigint_also_stops(launch: list[Served]) -> None:
    args, _ = serve_args("--insecure")
    served = start(launch, args)
    served.wait_ready()
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO router\.service: ", served.lines[0])
    served.process.send_signal(signal.SIGINT)  # as Ctrl-C
    assert served.wait_exit() == 0
    assert "SIGINT received" in served.output


# --- settings, in process -----------------------------------------------------------------------


def options(argv: list[str]) -> ServeOptions:
    """ServeOptions from a `serve` command line, through the real parser."""
    return serve_options(build_parser().parse_args(["serve", *argv]))


def test_flags_win_over_the_environment_which_wins_over_the_file(config_file: Path) -> None:
    config_file.write_text('[service]\nlisten = "127.0.0.1:1111"\nnamespace = "file"\n' + CONFIG)
    env = {"ACD_CONFIG": str(config_file), "ACD_LISTEN": "127.0.0.1:2222", "ACD_NAMESPACE": "env"}
    config = build_config(options([]), env)
    assert (config.service.listen, config.service.namespace) == ("127.0.0.1:2222", "env")
    assert config.service.config == str(config_file)
    assert [q.name for q in config.queues] == ["support"]
    config = build_config(options(["--listen", "0.0.0.0:3333", "--redis-url", "redis://r/1"]), env)
    assert (config.service.listen, config.service.redis_url) == ("0.0.0.0:3333", "redis://r/1")


def test_without_a_file_there_are_defaults_and_no_queues() -> None:
    config = build_config(options([]), {})
    assert config.queues == ()
    assert config.keys == ()
    assert config.service.redis_url == ""  # the embedded store


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--listen", "8080"], "--listen"),
        (["--listen", "host:port"], "--listen"),
        (["--redis-url", "redis://r/0", "--data-dir", "d"], "--data-dir"),
        (["--redis-url", "sentinel://h:26379/acd"], "--redis-url"),
        (["--redis-url", "redis+sentinel://h:26379"], "--redis-url"),
        (["--clock-speed", "0"], "--clock-speed"),
        (["--clock-speed", "nan"], "--clock-speed"),
        (["--clock-speed", "inf"], "--clock-speed"),
        (["--clock-speed", "1e20"], "--clock-speed"),
    ],
)
def test_bad_flags_are_config_errors(argv: list[str], field: str) -> None:
    with pytest.raises(ConfigError) as raised:
        build_config(options(argv), {})
    assert raised.value.errors[0].field == field


def test_a_data_dir_is_created_or_a_config_error(tmp_path: Path) -> None:
    assert prepare_data_dir(str(tmp_path / "new" / "data")) == tmp_path / "new" / "data"
    assert (tmp_path / "new" / "data").is_dir()
    assert prepare_data_dir(str(tmp_path)) == tmp_path  # an existing folder
    (tmp_path / "file").write_text("")
    for bad, message in (
        (tmp_path / "file", "exists and is not a folder"),
        (tmp_path / "file" / "sub", "cannot be created: Not a directory"),
        (Path("/proc/nope"), "cannot be created: No such file or directory"),
    ):
        with pytest.raises(ConfigError) as raised:
            prepare_data_dir(str(bad))
        assert [(e.field, e.message) for e in raised.value.errors] == [("--data-dir", message)]


def test_listen_addresses() -> None:
    assert parse_listen("0.0.0.0:8080") == ("0.0.0.0", 8080)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    assert parse_listen("localhost:0") == ("localhost", 0)


def test_passwords_never_reach_the_log() -> None:
    assert redact_url("redis://:s3cret@redis:6379/0") == "redis://:***@redis:6379/0"
    assert redact_url("rediss://user:s3cret@[::1]/0") == "rediss://user:***@[::1]/0"
    assert redact_url("redis://redis:6379/0") == "redis://redis:6379/0"
    assert redact_url("redis+sentinel://:pw@s1:1,s2:2/acd") == "redis+sentinel://:***@s1:1,s2:2/acd"
    assert redact_url("redis+cluster://u:pw@n1:1,n2:2") == "redis+cluster://u:***@n1:1,n2:2"


def test_a_file_with_problems_is_refused_with_the_start_up_checks_too(tmp_path: Path) -> None:
    # One run names everything to fix, as check-config does: the file's problem and the key's.
    path = tmp_path / "acd.toml"
    path.write_text(
        '[[queues]]\nname = "a"\nsla = { target = 2 }\n'
        '[[keys]]\nname = "pbx"\nrole = "platform"\nenv = "ACD_TEST_UNSET_KEY"\n'
    )
    with pytest.raises(ConfigError) as raised:
        build_config(options(["--config", str(path), "--listen", "127.0.0.1:1"]), {})
    assert [e.field for e in raised.value.errors] == ["queues[0].sla.target", "keys[0].env"]
    assert str(raised.value).splitlines()[1] == (
        f"{path}: keys[0].env: variable ACD_TEST_UNSET_KEY is not set"
    )
