"""The configuration file: the demo loads, and every problem names the file and the field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from router.config import ApiKeyConfig, Role, WebhookConfig, load_config
from router.domain.models import EVENT_TYPES, Channel, Step, Strategy
from router.errors import ConfigError

DEMO = Path(__file__).resolve().parents[1] / "config" / "acd.toml"
DIGEST = "AB" * 32


def write(tmp_path: Path, text: str) -> Path:
    """A config file holding `text`."""
    path = tmp_path / "acd.toml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path, env: dict[str, str] | None = None) -> list[str]:
    """The lines of the ConfigError that loading `path` raises."""
    with pytest.raises(ConfigError) as raised:
        load_config(path, env={} if env is None else env)
    return str(raised.value).splitlines()


def test_demo_config_loads() -> None:
    config = load_config(DEMO, env={})
    assert [q.name for q in config.queues] == ["support_en", "billing", "vip", "chat"]
    support, billing, vip, chat = config.queues
    assert support.skills == {"support": 3, "lang:en": 3}
    assert [s.after_s for s in support.steps] == [30.0, 90.0]
    assert support.callback is not None
    assert billing.strategy is Strategy.BEST_SKILL
    assert vip.credit_s > 0
    assert vip.priority > support.priority
    assert chat.channel is Channel.CHAT
    assert {k.role for k in config.keys} == set(Role)
    assert config.service.config == str(DEMO)


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""), env={})
    assert (config.queues, config.keys, config.webhooks) == ((), (), ())
    assert config.service.namespace == "main"


def test_environment_overrides_service_settings(tmp_path: Path) -> None:
    path = write(tmp_path, '[service]\nlisten = "127.0.0.1:8080"\nnamespace = "a"\n')
    config = load_config(path, env={"ACD_LISTEN": "0.0.0.0:9000", "ACD_REDIS_URL": "redis://r"})
    assert config.service.listen == "0.0.0.0:9000"
    assert config.service.redis_url == "redis://r"
    assert config.service.namespace == "a"
    assert config.service.config == str(path)


@pytest.mark.parametrize("value", ["lots", "\u00b2", "9" * 5000])
def test_bad_environment_value_is_reported(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, "")
    assert problems(path, {"ACD_EVENT_LOG_MAX": value, "ACD_WORKERS": value}) == [
        f"{path}: env.event_log_max: must be an integer",
        f'{path}: env.workers: must be an integer 1..64 or "auto"',
    ]


def test_queues_keys_and_webhooks_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        [[keys]]
        name = "pbx"
        role = "platform"
        env = "ACD_KEY_PBX"

        [[keys]]
        name = "ops"
        role = "monitor"
        sha256 = "{DIGEST}"

        [[webhooks]]
        url = "https://crm.example.com/acd"
        secret_env = "ACD_WEBHOOK_SECRET"
        types = ["interaction.offered", "interaction.offered", "agent.state_changed"]

        [[webhooks]]
        url = "http://localhost:9000/events"
        secret_env = "HOOK"

        [[queues]]
        name = "support"
        skills = {{ support = 2 }}

        [[queues.steps]]
        after_s = 30
        skills = {{ support = 1 }}
        """,
    )
    config = load_config(path, env={})
    assert config.keys == (
        ApiKeyConfig(name="pbx", role=Role.PLATFORM, env="ACD_KEY_PBX"),
        ApiKeyConfig(name="ops", role=Role.MONITOR, sha256=DIGEST.lower()),
    )
    assert config.webhooks == (
        WebhookConfig(
            url="https://crm.example.com/acd",
            secret_env="ACD_WEBHOOK_SECRET",
            types=("interaction.offered", "agent.state_changed"),
        ),
        WebhookConfig(url="http://localhost:9000/events", secret_env="HOOK", types=EVENT_TYPES),
    )
    assert config.queues[0].steps == (Step(after_s=30.0, skills={"support": 1}),)


def test_queue_error_names_the_file_and_the_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[queues]]
        name = "a"
        [[queues]]
        name = "b"
        [[queues]]
        name = "c"
        [[queues.steps]]
        after_s = 0
        skills = {}
        """,
    )
    assert problems(path) == [f"{path}: queues[2].steps[0].after_s: must be > 0"]


def test_every_problem_is_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        colour = "blue"

        [service]
        port = 80
        exclusive_channels = ["phone"]
        durability = "paranoid"

        [[keys]]
        name = "pbx"
        role = "root"
        env = "ACD_KEY_PBX"

        [[webhooks]]
        url = "ftp://example.com"
        secret_env = "S"

        [[queues]]
        name = "a"
        priority = -1

        [[queues]]
        name = "b"
        channel = "fax"
        """,
    )
    assert problems(path) == [
        f"{path}: colour: unknown field",
        f"{path}: service.port: unknown setting",
        f"{path}: service.durability: must be one of local, replicated",
        f"{path}: service.exclusive_channels: must list channels (voice, chat, email)",
        f"{path}: queues[0].priority: must be >= 0",
        f"{path}: queues[1].channel: must be one of voice, chat, email",
        f"{path}: keys[0].role: must be one of admin, platform, monitor",
        f"{path}: webhooks[0].url: must be an http:// or https:// URL",
    ]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("service = 5", "service: must be a table"),
        ("queues = 5", "queues: must be a list"),
        ("queues = [5]", "queues[0]: must be an object"),
        (
            '[[queues]]\nname = "a"\n[[queues]]\nname = "a"',
            "queues[1].name: duplicates queues[0].name",
        ),
        ('[[keys]]\nrole = "admin"\nenv = "K"', "keys[0].name: is required"),
        ('[[keys]]\nname = "k"\nenv = "K"', "keys[0].role: is required"),
        ('[[keys]]\nname = "k"\nrole = "admin"', "keys[0]: needs exactly one of env or sha256"),
        (
            f'[[keys]]\nname = "k"\nrole = "admin"\nenv = "K"\nsha256 = "{DIGEST}"',
            "keys[0]: needs exactly one of env or sha256",
        ),
        (
            '[[keys]]\nname = "k"\nrole = "admin"\nsha256 = "abc"',
            "keys[0].sha256: must be 64 hexadecimal digits",
        ),
        (
            '[[keys]]\nname = "k"\nrole = "admin"\nenv = "MY-KEY"',
            "keys[0].env: must be an environment variable name",
        ),
        (
            '[[keys]]\nname = "k"\nrole = "admin"\nenv = "K"\nrole_2 = "x"',
            "keys[0].role_2: unknown field",
        ),
        (
            '[[keys]]\nname = "k"\nrole = "admin"\nenv = "A"\n'
            '[[keys]]\nname = "k"\nrole = "monitor"\nenv = "B"',
            "keys[1].name: duplicates keys[0].name",
        ),
        ('[[webhooks]]\nsecret_env = "S"', "webhooks[0].url: is required"),
        ('[[webhooks]]\nurl = "https://x"', "webhooks[0].secret_env: is required"),
        (
            '[[webhooks]]\nurl = "https://x"\nsecret_env = "S"\ntypes = []',
            "webhooks[0].types: must name at least one event type",
        ),
        (
            '[[webhooks]]\nurl = "https://x"\nsecret_env = "S"\n'
            'types = ["interaction.queued", "interaction.ringing"]',
            "webhooks[0].types[1]: is not an event type",
        ),
        (
            '[[webhooks]]\nurl = "https://x"\nsecret_env = "S"\ntypes = "interaction.queued"',
            "webhooks[0].types: must be a list",
        ),
        (
            '[[webhooks]]\nurl = "https://x"\nsecret_env = "S"\nconcurrency = 33',
            "webhooks[0].concurrency: must be <= 32",
        ),
    ],
)
def test_rejects(tmp_path: Path, text: str, error: str) -> None:
    path = write(tmp_path, text)
    assert problems(path) == [f"{path}: {error}"]


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[[queues]\nname = ")
    [line] = problems(path)
    assert line.startswith(f"{path}: ")
    assert "line 1" in line


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    [line] = problems(path)
    assert line.startswith(f"{path}: ")
    assert "No such file" in line


def test_file_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'name = "caf\xe9"\n')
    [line] = problems(path)
    assert line.startswith(f"{path}: ")


YEAR = "must be > 0 and <= 31536000"


@pytest.mark.parametrize(
    ("text", "env", "error"),
    [
        ("[service]\nretention_s = nan", {}, "service.retention_s: must be a finite number"),
        ("[service]\nretention_s = inf", {}, "service.retention_s: must be a finite number"),
        ("[service]\nretention_s = -inf", {}, "service.retention_s: must be a finite number"),
        ("[service]\nretention_s = 1e20", {}, f"service.retention_s: {YEAR}"),
        ("", {"ACD_RETENTION_S": "nan"}, "env.retention_s: must be a finite number"),
        ("", {"ACD_RETENTION_S": "inf"}, "env.retention_s: must be a finite number"),
        ("", {"ACD_RETENTION_S": "1e20"}, f"env.retention_s: {YEAR}"),
        ("", {"ACD_RETENTION_S": "1e400"}, "env.retention_s: must be a finite number"),
        (
            "[service]\nstore_timeout_s = nan",
            {},
            "service.store_timeout_s: must be a finite number",
        ),
        ("", {"ACD_STORE_TIMEOUT_S": "inf"}, "env.store_timeout_s: must be a finite number"),
        ('[[queues]]\nname = "q"\noffer_timeout_s = nan', {}, "queues[0].offer_timeout_s: "),
        ('[[queues]]\nname = "q"\nwrap_up_s = inf', {}, "queues[0].wrap_up_s: "),
        ('[[queues]]\nname = "q"\nmax_wait_s = 1e20', {}, "queues[0].max_wait_s: "),
        ("[service]\nevent_log_max = 100000000000000000000", {}, "service.event_log_max: "),
        ("", {"ACD_MAX_ROUTING_CLASSES": "1000001"}, "env.max_routing_classes: "),
        ("[service]\nclass_fill_batch = 0", {}, "service.class_fill_batch: must be >= 1 and"),
        ("[service]\nmax_streams_per_key = 9223372036854775807", {}, "service.max_streams_"),
    ],
)
def test_numeric_settings_are_finite_and_bounded(
    tmp_path: Path, text: str, env: dict[str, str], error: str
) -> None:
    # Seen: check-config said ok to nan, inf, 1e20 and 10^20 events, then serve crashed with a
    # traceback (packing the count for Redis, for one).
    path = write(tmp_path, text)
    [line] = problems(path, env)
    assert line.startswith(f"{path}: {error}")


def test_the_longest_retention_is_a_year(tmp_path: Path) -> None:
    path = write(tmp_path, "[service]\nretention_s = 31536000")
    assert load_config(path, env={}).service.retention_s == 365 * 86_400
