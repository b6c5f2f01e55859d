"""A client generated from GET /openapi.json of the real service by a well-kept generator
(openapi-python-client) drives one lifecycle: agent, queue, interaction, accept, complete, and the
events read back through the generated event models (SPEC §4: the document is for integrators)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from router.domain.models import EVENT_TYPES
from tests.e2e.serve import service_with

KEY = "sdk-admin-key"
CONFIG = """
[[keys]]
name = "admin"
role = "admin"
env = "ACD_KEY_ADMIN"
"""
PACKAGE = "acd_sdk"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[str]:
    with service_with(CONFIG, tmp_path, {"ACD_KEY_ADMIN": KEY}) as url:
        yield url


def generate(url: str, folder: Path) -> str:
    """Generate the client of the document at `url` into `folder`; the generator's report."""
    document = folder / "openapi.json"
    with urllib.request.urlopen(f"{url}/openapi.json", timeout=5) as response:
        document.write_bytes(response.read())
    bin_dir = str(Path(sys.executable).parent)  # the generator formats its output with ruff
    run = subprocess.run(
        [
            str(Path(bin_dir) / "openapi-python-client"),
            *("generate", "--path", str(document), "--output-path", str(folder / PACKAGE)),
            *("--meta", "none"),
        ],
        env={**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout + run.stderr


def module(name: str) -> Any:
    """A module of the generated client."""
    return importlib.import_module(f"{PACKAGE}.{name}")


def sse_events(stream: bytes) -> list[tuple[str, dict[str, Any]]]:
    """The (type, data) of each event frame of a text/event-stream body."""
    found = []
    for frame in stream.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
        if "event" in fields and "data" in fields:
            found.append((fields["event"], json.loads(fields["data"])))
    return found


def test_a_generated_client_drives_a_lifecycle(service: str, tmp_path: Path) -> None:
    report = generate(service, tmp_path)
    assert "will not be generated" not in report, report
    assert "Unable to process schema" not in report, report
    sys.path.insert(0, str(tmp_path))
    try:
        drive(service)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def drive(url: str) -> None:
    """One lifecycle through the generated client, every answer parsed into its model."""
    models = module("models")
    client = module("client").AuthenticatedClient(base_url=url, token=KEY, timeout=httpx.Timeout(5))

    def call(group: str, operation: str, *args: Any, **kw: Any) -> Any:
        answer = module(f"api.{group}.{operation}").sync_detailed(*args, client=client, **kw)
        assert answer.status_code < 300, (operation, answer.status_code, answer.content)
        return answer.parsed

    queue = models.QueueInput.from_dict({"channel": "voice", "skills": {"support": 1}})
    assert call("queues", "put_queue", "support", body=queue).name == "support"
    profile = models.AgentProfile.from_dict({"skills": {"support": 2}, "name": "Ann"})
    assert call("agents", "put_agent", "ann", body=profile).id == "ann"
    state = models.StateChange(state=models.AgentState.AVAILABLE)
    assert call("agents", "set_agent_state", "ann", body=state).state == "available"
    new = models.NewInteraction(queue="support", id="call-1", data=None)
    created = call("interactions", "create_interaction", body=new)
    assert (created.status, created.agent_id) == (models.InteractionStatus.OFFERED, "ann")
    accepted = call(
        "interactions", "accept_offer", "call-1", body=models.AcceptBody(agent_id="ann")
    )
    assert accepted.status == models.InteractionStatus.CONNECTED
    done = call("interactions", "complete_interaction", "call-1", body=models.CompleteBody("ann"))
    assert done.status == models.InteractionStatus.COMPLETED
    page = call("interactions", "list_interactions")
    assert page.interactions == []  # nothing left that has not ended

    # `?limit=` ends the stream (§4): the five events of the lifecycle, from the oldest kept.
    stream = module("api.events.stream_events").sync_detailed(client=client, after="0", limit=5)
    assert stream.status_code == 200
    kinds = {kind: getattr(models, schema_class(kind)) for kind in EVENT_TYPES}
    events = [kinds[kind].from_dict(data) for kind, data in sse_events(stream.content)]
    assert [e.type_ for e in events] == [
        "agent.state_changed",
        "interaction.queued",
        "interaction.offered",
        "interaction.connected",
        "interaction.completed",
    ]
    assert events[0].state == models.AgentState.AVAILABLE
    assert events[2].routing.strategy == models.Strategy.LONGEST_IDLE
    assert events[4].outcome == models.Outcome.RESOLVED


def schema_class(kind: str) -> str:
    """The generated model of an event type: `interaction.timed_out` -> InteractionTimedOutEvent."""
    return "".join(w.capitalize() for w in kind.replace(".", "_").split("_")) + "Event"
