"""Prometheus rules and scrape config, the Grafana dashboard, and every one of their queries
evaluated by a real Prometheus scraping the real `acd-router serve` under a scripted load (§6).

`promtool` and `prometheus` come from Debian's `prometheus` package, which scripts/setup.sh
installs when missing; these tests never skip for their absence, they fail and say so.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from loadtest.served import Served, clean_env, serve_args
from router.store.server import free_port
from tests.e2e.serve import http

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = ROOT / "config" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES = PROMETHEUS_DIR / "rules" / "acd.yml"
RULE_TESTS = PROMETHEUS_DIR / "tests" / "acd_test.yml"
GRAFANA = ROOT / "config" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "acd-router.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "acd.yml"
METRICS_DOC = ROOT / "docs" / "metrics.md"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
"""How every panel, target and query variable names its datasource: the `datasource` variable."""

JOB = "acd-router"
ALERTS = {
    "AcdServiceLevelBelowTarget",
    "AcdOldestWaitHigh",
    "AcdQueueWaitingWithNoAgentStaffed",
    "AcdQueueWaitingWithNoAgentAvailable",
    "AcdRouterDown",
    "AcdRouterNotReady",
    "AcdStoreDown",
    "AcdStoreRefusing",
    "AcdChangesUnconfirmed",
    "AcdHttpServerErrors",
    "AcdAbandonRateHigh",
    "AcdTimerLagHigh",
    "AcdWebhookDeliveryFailures",
    "AcdWebhookEventsLost",
}
ANNOTATION_LABELS = {"queue", "channel", "instance", "sink", "job", "reason"}
"""Labels an alert's annotations may quote: bounded sets, never customer data."""
BUSINESS = re.compile(
    r"\bacd_(queue_\w+|interactions_\w+|callbacks_\w+|offers_total|wait_seconds\w*"
    r"|handle_seconds\w*|ewt_error_seconds\w*|agents|agent_time_seconds_total)\b"
)
"""Business series (§6): identical on every router, aggregated with max, never summed."""
QUEUE_LABELLED = re.compile(
    r"\bacd_(queue_\w+|interactions_\w+|callbacks_\w+|offers_total|wait_seconds\w*"
    r"|handle_seconds\w*|ewt_error_seconds\w*)\b"
)
"""Business series with a `queue` label: the dashboard filters them by the `queue` variable."""
RECORDED = re.compile(r"\b\w*:[\w:]+")
"""The name of a recorded series (`level:metric:operations`)."""
METRIC_NAME = re.compile(r"\b(?:acd_\w+|up)\b(?!\s*\()")


def tool(name: str) -> str:
    """The path of a Prometheus binary; fails (never skips) when it is missing."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else "")
    if not path:
        pytest.fail(
            f"`{name}` is not installed: run `bash scripts/setup.sh`, which installs Debian's "
            "prometheus package (prometheus and promtool)"
        )
    return path


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """`promtool <args>`, its output captured."""
    return subprocess.run(
        [tool("promtool"), *args], capture_output=True, text=True, timeout=60, check=False
    )


def load_yaml(path: Path) -> Any:
    """A YAML file, parsed."""
    return yaml.safe_load(path.read_text())


def rules() -> list[dict[str, Any]]:
    """Every rule (alerting and recording) of the project's rules file."""
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    """The dashboard JSON."""
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, expr) of every target of every panel, as written in the dashboard."""
    return [
        (panel["title"], target["expr"])
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def substitute(expr: str, queues: str) -> str:
    """A panel query as Grafana sends it: `$queue` a regex of `queues`, intervals fixed."""
    done = (
        expr.replace("${queue}", queues)
        .replace("$queue", queues)
        .replace("$__rate_interval", "15s")
        .replace("$__interval", "15s")
    )
    assert "$" not in done, f"unsubstituted variable in {expr!r}"
    return done


OPERATOR = re.compile(r"==|!=|>=|<=|>|<|\b(?:and|or|unless)\b")
MODIFIERS = re.compile(
    r"\s*(?:bool\b)?\s*(?:(?:on|ignoring)\s*\([^)]*\))?"
    r"\s*(?:(?:group_left|group_right)\b\s*(?:\([^)]*\))?)?"
)
"""What may follow a binary operator: `bool`, `on (…)` or `ignoring (…)`, `group_left (…)`."""


def operands(expr: str) -> list[str]:
    """The operands of an expression's top-level comparisons and set operators.

    `a > 0 and b == 0` gives `a` and `b`: the selectors an alert's condition is made of, each of
    which must return data for the condition to be meaningful. Number literals and vector
    matching modifiers are dropped; parentheses, braces, brackets and strings are not split.
    """
    parts: list[str] = []
    depth, start, i, quote = 0, 0, 0, ""
    while i < len(expr):
        char = expr[i]
        if quote:
            if char == "\\":
                i += 2
                continue
            if char == quote:
                quote = ""
        elif char in "\"'`":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0:
            match = OPERATOR.match(expr, i)
            if match and (match.group()[0].isalpha() or expr[i - 1 : i] not in "=!~"):
                parts.append(expr[start:i])
                modifiers = MODIFIERS.match(expr, match.end())
                i = start = modifiers.end() if modifiers else match.end()
                continue
        i += 1
    parts.append(expr[start:])
    cleaned = [part.strip() for part in parts]
    return [part for part in cleaned if part and not re.fullmatch(r"[-+]?[\d.e]+", part)]


# --- (a) promtool -----------------------------------------------------------------------------


def test_promtool_checks_the_rules() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout + checked.stderr


def test_promtool_checks_the_compose_scrape_config() -> None:
    # rule_files is relative to the config file, so the project's file is checked in place.
    config = load_yaml(PROMETHEUS_CONFIG)
    assert config["rule_files"] == ["rules/acd.yml"]
    assert [job["job_name"] for job in config["scrape_configs"]] == [JOB]
    checked = promtool("check", "config", str(PROMETHEUS_CONFIG))
    output = checked.stdout + checked.stderr
    assert checked.returncode == 0, output
    assert "SUCCESS: 1 rule files found" in output
    assert str(RULES.relative_to(ROOT)) in output or "acd.yml" in output


def test_alerts_have_a_for_severity_and_annotations_without_customer_data() -> None:
    alerts = {rule["alert"]: rule for rule in rules() if "alert" in rule}
    assert set(alerts) == ALERTS
    for name, rule in alerts.items():
        assert re.fullmatch(r"\d+m", rule["for"]), name  # never on one bad evaluation
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        annotations = rule["annotations"]
        assert set(annotations) >= {"summary", "description"}, name
        for text in annotations.values():
            for label in re.findall(r"\$labels\.(\w+)", text):
                assert label in ANNOTATION_LABELS, (name, label)
    assert "acd_queue_sla_target_ratio" in alerts["AcdServiceLevelBelowTarget"]["expr"]
    assert 'formula="abandons_excluded"' in alerts["AcdServiceLevelBelowTarget"]["expr"]
    assert alerts["AcdServiceLevelBelowTarget"]["for"] == "10m"
    assert alerts["AcdRouterDown"]["expr"].strip() == f'up{{job="{JOB}"}} == 0'


def test_promtool_unit_tests_pass_and_cover_every_rule() -> None:
    tested = promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    document = load_yaml(RULE_TESTS)
    assert [(RULE_TESTS.parent / f).resolve() for f in document["rule_files"]] == [RULES]
    cases = [case for test in document["tests"] for case in test.get("alert_rule_test", [])]
    exprs = {
        case["expr"] for test in document["tests"] for case in test.get("promql_expr_test", [])
    }
    for name in ALERTS:
        seen = [bool(case["exp_alerts"]) for case in cases if case["alertname"] == name]
        assert True in seen, f"{name}: no test where it fires"
        assert False in seen, f"{name}: no test where it does not fire"
    for rule in rules():
        if "record" in rule:
            assert rule["record"] in exprs, f"{rule['record']}: its values are not tested"


def test_every_alert_is_documented_with_its_for() -> None:
    text = METRICS_DOC.read_text()
    for rule in rules():
        if "alert" in rule:
            row = next((line for line in text.splitlines() if f"`{rule['alert']}`" in line), "")
            assert row.startswith("|"), f"{rule['alert']}: no row in docs/metrics.md"
            assert f"| {rule['for']} |" in row, f"{rule['alert']}: its for is not documented"


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    # promtool parses the PromQL of rules without a server: each query as a recording rule.
    queries = [substitute(expr, "(a|b)") for _, expr in panel_queries()]
    check = tmp_path / "panels.yml"
    records = [{"record": f"panel:q{i}", "expr": q} for i, q in enumerate(queries)]
    check.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": records}]}))
    checked = promtool("check", "rules", str(check))
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- (b) the dashboard ------------------------------------------------------------------------


def test_provisioning_points_at_the_dashboards_and_a_prometheus_datasource() -> None:
    (source,) = load_yaml(DATASOURCES)["datasources"]
    assert source["type"] == "prometheus"
    assert source["isDefault"] is True  # what the datasource variable starts on
    (provider,) = load_yaml(PROVIDERS)["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"]
    assert list((GRAFANA / "dashboards").glob("*.json")) == [DASHBOARD]


def datasource_references(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(where, value) of every `datasource` key anywhere in a dashboard."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield f"{path}.{key}", value
            yield from datasource_references(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from datasource_references(item, f"{path}[{index}]")


def test_dashboard_picks_its_prometheus_through_a_datasource_variable() -> None:
    # The same file imports into any Grafana and provisions as is: no `__inputs` to fill (file
    # provisioning never fills them), no fixed datasource uid.
    board = dashboard()
    assert "__inputs" not in board
    variables = {v["name"]: v for v in board["templating"]["list"]}
    variable = variables["datasource"]
    assert variable["type"] == "datasource"
    assert variable["query"] == "prometheus"
    assert not variable.get("current")  # starts on the default Prometheus of the Grafana
    references = dict(datasource_references(board))
    for where, value in references.items():
        if where.startswith(".annotations"):
            assert value == {"type": "grafana", "uid": "-- Grafana --"}, where
        else:
            assert value == DATASOURCE, where
    for index, panel in enumerate(board["panels"]):
        assert f".panels[{index}].datasource" in references, panel["title"]
        for number in range(len(panel["targets"])):
            assert f".panels[{index}].targets[{number}].datasource" in references, panel["title"]


def test_dashboard_panels_are_well_formed() -> None:
    board = dashboard()
    assert board["uid"] == "acd-router"
    assert board["schemaVersion"] >= 39
    panels = board["panels"]
    assert panels
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        title = panel["title"]
        targets = panel["targets"]
        assert targets, title
        assert len({target["refId"] for target in targets}) == len(targets), title
        for target in targets:
            assert target["expr"].strip(), title
        grid = panel["gridPos"]
        assert grid["x"] >= 0, title
        assert grid["x"] + grid["w"] <= 24, title


def test_every_variable_the_dashboard_uses_is_defined() -> None:
    board = dashboard()
    defined = {v["name"] for v in board["templating"]["list"]}
    used = set(re.findall(r"\$\{?(\w+)", json.dumps(board)))
    assert not {name for name in used - defined if not name.startswith("__")}  # __: Grafana's


def test_dashboard_has_a_multi_queue_variable() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert list(variables) == ["datasource", "queue"]  # the queue variable reads the datasource
    queue = variables["queue"]
    assert queue["type"] == "query"
    assert queue["datasource"] == DATASOURCE
    assert queue["definition"] == "label_values(acd_queue_waiting, queue)"
    assert queue["query"]["query"] == "label_values(acd_queue_waiting, queue)"
    assert queue["multi"] is True
    assert queue["includeAll"] is True


def test_dashboard_covers_the_issue_and_never_sums_business_series() -> None:
    exprs = [expr for _, expr in panel_queries()]
    text = "\n".join(exprs)
    for needed in (
        'acd_queue_service_level_ratio{queue=~"$queue", formula="abandons_excluded"}',
        "acd_queue_sla_target_ratio",
        "acd_queue_waiting",
        "acd_queue_oldest_wait_seconds",
        "acd_queue_ewt_seconds",
        "max by (state, activity) (acd_agents)",
        "acd_queue_agents_required",
        "acd_queue_agents_staffed",
        "acd_queue_agents_available",
        "increase(acd_interactions_arrived_total",
        "increase(acd_interactions_answered_total",
        "increase(acd_interactions_abandoned_total",
        'acd_wait_seconds_sum{queue=~"$queue", outcome="answered"}',
        "acd_handle_seconds_sum",
        "acd_offers_total",
        "histogram_quantile(0.99, sum by (le) (rate(acd_routing_decision_seconds_bucket[5m])))",
        'acd_http_requests_total{status=~"5..|4.."}',
        "acd_agent_time_seconds_total",
    ):
        assert needed in text, needed
    formulas = [e for e in exprs if e.startswith("max by (queue, formula) (acd_queue_service")]
    assert formulas, "a panel with the four formulas side by side"
    for expr in exprs + [rule["expr"] for rule in rules()]:
        if BUSINESS.search(RECORDED.sub("", expr)):  # recorded series are aggregated already
            assert not re.search(r"\bsum\b", expr), f"business series summed: {expr}"
            assert re.search(r"\bmax\b", expr), f"business series not deduplicated: {expr}"
    for expr in exprs:
        if QUEUE_LABELLED.search(expr):
            assert 'queue=~"$queue"' in expr, f"not filtered by the queue variable: {expr}"


def test_operands_split_conditions_only_at_the_top_level() -> None:
    assert operands('up{job="x"} == 0') == ['up{job="x"}']
    assert operands('max by (q) (a{f!="x", g=~"y"}) > 0 and max by (q) (b) == 0') == [
        'max by (q) (a{f!="x", g=~"y"})',
        "max by (q) (b)",
    ]
    assert operands("sum(rate(x[5m])) >= bool 0.5") == ["sum(rate(x[5m]))"]
    assert operands("a / (b + c)") == ["a / (b + c)"]
    assert operands("max by (q) (a) > on (q) group_left (c) b and c >= 20") == [
        "max by (q) (a)",
        "b",
        "c",
    ]
    assert operands("a < ignoring (x) group_right b unless on () c") == ["a", "b", "c"]


# --- (c) a real Prometheus scraping the real service ------------------------------------------

KEY = "observability-platform-key"
QUEUES = ("support", "billing")
QUEUE_REGEX = "(" + "|".join(QUEUES) + ")"
SERVICE_CONFIG = """
[[keys]]
name = "pbx"
role = "platform"
env = "ACD_KEY_PBX"

[[webhooks]]                   # nothing listens there: every delivery attempt fails
url = "http://127.0.0.1:{hook_port}/acd-events"
secret_env = "ACD_WEBHOOK_SECRET"
types = ["interaction.completed"]

[[queues]]
name = "support"
skills = {{ support = 1 }}
sla = {{ threshold_s = 20, target = 0.8 }}
offer_timeout_s = 1            # an unanswered offer expires after 1 s
max_no_answer = 3
wrap_up_s = 0

[[queues]]
name = "billing"
skills = {{ billing = 1 }}
sla = {{ threshold_s = 30, target = 0.9 }}
offer_timeout_s = 1
wrap_up_s = 0
"""
TEST_BUDGET_S = 45.0
"""The whole real-Prometheus test, start-up to the last query."""


@dataclass
class Deadline:
    """One deadline for every wait of the test."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """A deadline `seconds` from now."""
        return cls(time.monotonic() + seconds)

    @property
    def left(self) -> float:
        """Seconds left (negative once passed)."""
        return self.at - time.monotonic()

    def until(self, check: Callable[[], bool], every_s: float = 0.2) -> bool:
        """Call `check` until it holds (true) or the deadline passes (false)."""
        while not check():
            if self.left <= 0:
                return False
            time.sleep(min(every_s, max(self.left, 0.0)))
        return True

    def poll(self, check: Callable[[], bool], what: str, every_s: float = 0.2) -> None:
        """Call `check` until it holds; AssertionError when the deadline passes first."""
        if not self.until(check, every_s):
            raise AssertionError(f"{what}: not within the test's time budget")


class Prometheus:
    """Debian's `prometheus` binary on a loopback port, storage and log in a folder."""

    def __init__(self, config: Path, folder: Path) -> None:
        """Start it with `config`; `folder` holds the TSDB and the log."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "prometheus.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [
                    tool("prometheus"),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={folder / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def get(self, path: str, **params: str) -> Any:
        """GET an API path; the decoded JSON (an error answer's too)."""
        url = f"{self.url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            return json.loads(error.read())

    def query(self, expr: str) -> dict[str, Any]:
        """An instant query at the current time: the API's whole answer."""
        answer: dict[str, Any] = self.get("/api/v1/query", query=expr)
        return answer

    def values(self, expr: str) -> list[float]:
        """The sample values of an instant query (empty on no data or an error)."""
        answer = self.query(expr)
        if answer.get("status") != "success":
            return []
        return [float(item["value"][1]) for item in answer["data"]["result"]]

    def ready(self) -> bool:
        """Whether /-/ready answers 200 (false while it starts)."""
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{self.log.read_text()}") from None
            return False

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def scrape_config(service_port: int, folder: Path) -> Path:
    """The project's prometheus.yml, scraping the test's service every second, with the
    project's rules file: written to `folder`."""
    config = load_yaml(PROMETHEUS_CONFIG)
    config["global"] = {
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "evaluation_interval": "1s",
    }
    config["rule_files"] = [str(RULES)]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{service_port}"]}]
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def deadline() -> Deadline:
    return Deadline.after(TEST_BUDGET_S)


@pytest.fixture
def stack(tmp_path: Path, deadline: Deadline) -> Iterator[tuple[Served, Prometheus]]:
    """The service (embedded store, two queues, a failing webhook) and Prometheus scraping it,
    started together; both stopped at teardown, whatever happened."""
    service_config = tmp_path / "acd.toml"
    service_config.write_text(SERVICE_CONFIG.format(hook_port=free_port()))
    args, port = serve_args("--config", str(service_config))
    env = clean_env({"ACD_KEY_PBX": KEY, "ACD_WEBHOOK_SECRET": "observability-secret"})
    served = Served(args, env)
    prometheus: Prometheus | None = None
    try:
        prometheus = Prometheus(scrape_config(port, tmp_path), tmp_path)
        served.wait_ready()
        deadline.poll(prometheus.ready, "prometheus ready")
        yield served, prometheus
    finally:
        if prometheus is not None:
            prometheus.stop()
        served.kill()


class Platform:
    """The scripted load: the telephony platform's requests, each status checked."""

    def __init__(self, url: str) -> None:
        """Requests go to `url` with the platform key."""
        self.url = url

    def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        """One request; asserts the status; the JSON body."""
        status, answer = http(method, self.url + path, body, key=KEY)
        assert status == expect, (method, path, status, answer)
        return answer

    def arrive(self, interaction_id: str, queue: str) -> dict[str, Any]:
        """POST an interaction; its record."""
        record: dict[str, Any] = self.call(
            "POST", "/v1/interactions", {"id": interaction_id, "queue": queue}, 201
        )
        return record

    def answer(self, interaction_id: str, agent_id: str, complete: bool = True) -> None:
        """The agent accepts the offer, and completes the call unless told not to."""
        body = {"agent_id": agent_id}
        self.call("POST", f"/v1/interactions/{interaction_id}/accept", body)
        if complete:
            self.call("POST", f"/v1/interactions/{interaction_id}/complete", body)

    def offered_to(self, interaction_id: str) -> str:
        """The agent an interaction is offered to now ('' when it is not offered)."""
        record = self.call("GET", f"/v1/interactions/{interaction_id}")
        return str(record["agent_id"]) if record["status"] == "offered" else ""


def answered_calls(api: Platform, tag: str, per_queue: int) -> int:
    """`per_queue` calls in each queue, each offered at once, accepted and completed."""
    for n in range(per_queue):
        for queue in QUEUES:
            call = api.arrive(f"{queue}-{tag}-{n}", queue)
            assert call["status"] == "offered", call
            api.answer(call["id"], call["agent_id"])
    return per_queue * len(QUEUES)


def abandoned_call(api: Platform, tag: str) -> int:
    """Both support agents take a call; the next caller waits, hangs up; the two complete."""
    busy = [api.arrive(f"support-{tag}-busy-{n}", "support") for n in range(2)]
    for call in busy:
        api.answer(call["id"], call["agent_id"], complete=False)
    waiting = api.arrive(f"support-{tag}-abandoned", "support")
    assert waiting["status"] == "queued", waiting
    abandoned = api.call("DELETE", f"/v1/interactions/{waiting['id']}")
    assert abandoned["status"] == "abandoned"
    for call in busy:
        api.call("POST", f"/v1/interactions/{call['id']}/complete", {"agent_id": call["agent_id"]})
    return 3


def first_phase(api: Platform, deadline: Deadline) -> int:
    """Agents log in; calls answered in both queues; in support, one offer rejected (the other
    agent answers), one left to expire (likewise) and one caller abandoning. Every series the
    queries read exists afterwards. The number of arrivals."""
    for agent_id, skills in (
        ("ann", {"support": 2}),
        ("bob", {"support": 2}),
        ("cat", {"billing": 2}),
    ):
        api.call("PUT", f"/v1/agents/{agent_id}", {"skills": skills}, 201)
        api.call("POST", f"/v1/agents/{agent_id}/state", {"state": "available"})
    arrived = answered_calls(api, "a", 2)

    call = api.arrive("support-rejected", "support")
    first = call["agent_id"]
    api.call(
        "POST",
        "/v1/interactions/support-rejected/reject",
        {"agent_id": first, "reason": "rejected"},
    )
    second = api.offered_to("support-rejected")
    assert second, "the rejected call is offered again"
    assert second != first
    api.answer("support-rejected", second)

    call = api.arrive("support-expired", "support")  # the offer expires after 1 s
    first = call["agent_id"]
    deadline.poll(
        lambda: api.offered_to("support-expired") not in ("", first), "the expired offer moved on"
    )
    api.answer("support-expired", api.offered_to("support-expired"))

    return arrived + 2 + abandoned_call(api, "a")


def second_phase(api: Platform) -> int:
    """After Prometheus has scraped the first phase: more answered calls and an abandon, so that
    every rate and increase sees change; a 404; then billing's only agent logs out and a caller
    is left waiting there with nobody staffed. The number of arrivals."""
    arrived = answered_calls(api, "b", 6) + abandoned_call(api, "b")
    api.call("GET", "/v1/interactions/no-such-call", expect=404)
    api.call("POST", "/v1/agents/cat/state", {"state": "logged_out"})
    assert api.arrive("billing-waiting", "billing")["status"] == "queued"
    return arrived + 1


FINITE = (
    "acd_queue_service_level_ratio",
    "acd_wait_seconds_sum",
    "acd_handle_seconds_sum",
    "acd_ewt_error_seconds_sum",
    "increase(acd_interactions_abandoned_total[15m])",
    'acd_agent_time_seconds_total{activity="busy"}',
    "acd_routing_decision_seconds_bucket",
    "queue:acd_",
    "acd:agent_occupancy_ratio",
)
"""Queries whose every series must be a number, not NaN, once the second phase is scraped:
service level, ASA, AHT, EWT error, abandonment rate, occupancy, decision p99 (and the
recording rules of the same)."""


def acceptable(expr: str, values: list[float]) -> bool:
    """Whether a query's sample values are what the scripted load must produce."""
    if not values:
        return False
    if any(part in expr for part in FINITE):
        return all(math.isfinite(value) for value in values)
    return True


def dashboard_variable_query() -> str:
    """The metric of the `queue` variable's label_values(metric, queue)."""
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    found = re.fullmatch(r"label_values\((\w+),\s*queue\)", variables["queue"]["definition"])
    assert found is not None
    return found.group(1)


def queries_to_evaluate() -> list[tuple[str, str]]:
    """(what, PromQL) of every panel query, rule expression, operand of an alert's condition
    and recorded series name."""
    queries = [
        (f"panel {title!r}", substitute(expr, QUEUE_REGEX)) for title, expr in panel_queries()
    ]
    for rule in rules():
        name = rule.get("alert") or rule["record"]
        expr = " ".join(rule["expr"].split())
        if "record" in rule:
            queries.append((f"recording rule {name}", expr))
            queries.append((f"recorded series {name}", name))
        queries += [(f"alert {name} operand", operand) for operand in operands(expr)]
    return queries


def fetch(url: str) -> tuple[int, str]:
    """One GET: the status and the body as text."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def missing_names(prometheus: Prometheus, expr: str) -> list[str]:
    """The metric names an expression reads that Prometheus has never scraped."""
    known = set(prometheus.get("/api/v1/label/__name__/values")["data"])
    return sorted({name for name in METRIC_NAME.findall(expr) if name not in known})


def assert_conventions(families: list[Metric]) -> None:
    """No `_created` series; a gauge is named `_ratio` exactly when it is a 0..1 fraction."""
    created = sorted({s.name for f in families for s in f.samples if s.name.endswith("_created")})
    assert not created, created
    gauges = {f.name: f.documentation for f in families if f.type == "gauge"}
    assert {"acd_queue_service_level_ratio", "acd_queue_sla_target_ratio"} <= set(gauges)
    for name, documentation in gauges.items():
        assert name.endswith("_ratio") == ("(0..1)" in documentation), (name, documentation)


def test_every_panel_and_rule_query_returns_data_from_a_real_prometheus(
    stack: tuple[Served, Prometheus], deadline: Deadline
) -> None:
    served, prometheus = stack
    status, exposition = fetch(f"{served.url}/metrics")  # no key: metrics_auth is off
    assert status == 200, f"GET /metrics: {status} {exposition[:500]}\n{served.output[-3000:]}"
    families = list(text_string_to_metric_families(exposition))
    assert_conventions(families)

    # The load in two phases, each seen by a scrape: the first creates every series, the
    # second moves them, so that rates, increases and ratios are numbers.
    api = Platform(served.url)
    total = f'sum(max by (queue) (acd_interactions_arrived_total{{queue=~"{QUEUE_REGEX}"}}))'
    arrived = first_phase(api, deadline)
    deadline.poll(lambda: prometheus.values(total) == [float(arrived)], "first phase scraped")
    arrived += second_phase(api)
    deadline.poll(lambda: prometheus.values(total) == [float(arrived)], "second phase scraped")
    # The queue gauges come from a shared snapshot a few seconds old at most: billing's waiting
    # caller with nobody staffed shows once it is refreshed.
    deadline.poll(
        lambda: (
            prometheus.values('max(acd_queue_waiting{queue="billing"})') == [1.0]
            and prometheus.values('max(acd_queue_agents_staffed{queue="billing"})') == [0.0]
        ),
        "billing's waiting caller and empty staff scraped",
    )
    deadline.poll(
        lambda: (
            prometheus.values(f'min_over_time(up{{job="{JOB}"}}[1m])') == [1.0]
            and prometheus.values(f'count_over_time(up{{job="{JOB}"}}[1m]) >= 5') != []
        ),
        "five successful scrapes",
    )

    # The queue variable lists the test's queues.
    values = prometheus.get(
        "/api/v1/label/queue/values", **{"match[]": dashboard_variable_query()}
    )["data"]
    assert set(values) >= set(QUEUES), values

    # Each agent action has its own route label.
    routes = set(prometheus.get("/api/v1/label/route/values")["data"])
    actions = {f"/v1/interactions/{{id}}/{action}" for action in ("accept", "reject", "complete")}
    assert actions <= routes, routes
    assert not [route for route in routes if "{action}" in route], routes

    # Every query returns data (the KPIs numbers, not NaN): polled until the deadline (recording
    # rules need an evaluation after the last scrape), then every failing one is reported with
    # its values and the metric names it reads that were never scraped.
    pending = dict.fromkeys(queries_to_evaluate(), "")
    errors: dict[tuple[str, str], str] = {}

    def all_have_data() -> bool:
        for item in list(pending):
            answer = prometheus.query(item[1])
            if answer.get("status") != "success":
                errors[item] = str(answer.get("error"))
                continue
            values = [float(sample["value"][1]) for sample in answer["data"]["result"]]
            if acceptable(item[1], values):
                del pending[item]
            else:
                pending[item] = str(values)
        return not pending or bool(errors)

    deadline.until(all_have_data, every_s=0.5)
    assert not errors, errors
    report = [
        f"{what}: {expr}  values {values or '[]'}; never scraped: "
        f"{', '.join(missing_names(prometheus, expr)) or '-'}"
        for (what, expr), values in pending.items()
    ]
    assert not report, "queries without the data the load must give:\n" + "\n".join(report)

    # Every rule loaded and evaluated without error.
    def rules_healthy() -> bool:
        groups = prometheus.get("/api/v1/rules")["data"]["groups"]
        loaded = [rule for group in groups for rule in group["rules"]]
        return len(loaded) == len(rules()) and all(rule["health"] == "ok" for rule in loaded)

    deadline.poll(rules_healthy, "every rule loaded with health ok")

    # The scenario's conditions: billing waits with nobody staffed, and the webhook fails;
    # no queue is under target, no caller has waited 5 minutes, the router is up.
    alerts = {rule["alert"]: " ".join(rule["expr"].split()) for rule in rules() if "alert" in rule}
    expected = {"AcdQueueWaitingWithNoAgentStaffed", "AcdWebhookDeliveryFailures"}

    def firing() -> set[str]:
        return {name for name, expr in alerts.items() if prometheus.values(expr)}

    deadline.until(lambda: firing() == expected)
    assert firing() == expected
    no_agent = prometheus.query(alerts["AcdQueueWaitingWithNoAgentStaffed"])["data"]["result"]
    assert [item["metric"]["queue"] for item in no_agent] == ["billing"]
