"""Property-based run over GET /openapi.json of the real service (SPEC §9): schemathesis finds no
server error and no answer that breaks the document, in JSON and msgpack.

Bounded: 25 examples an operation, every phase (examples, coverage, fuzzing, stateful), a fixed
seed (the same cases every run; `st run` with another seed explores more, see docs). Excluded:
the check `positive_data_acceptance`, which fails schema-valid requests that the service rightly
answers 404, 409 or 422 (unknown ids and queues, state conflicts, limits JSON Schema cannot
express: `data` size and depth, the routing-class limit, a body `name` other than the path's);
and GET /v1/events, an endless response (its own tests cover it).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.served import clean_env
from tests.e2e.serve import service_with

KEY = "schemathesis-admin-key"
CONFIG = """
[[keys]]
name = "admin"
role = "admin"
env = "ACD_KEY_ADMIN"

[[queues]]
name = "support"
skills = { support = 1 }

[[queues]]
name = "chat"
channel = "chat"
"""
EXCLUDED_CHECKS = "positive_data_acceptance"
EXAMPLES = 25
SEED = 20261203


@pytest.fixture
def service(tmp_path: Path) -> Iterator[str]:
    with service_with(CONFIG, tmp_path, {"ACD_KEY_ADMIN": KEY}) as url:
        yield url


def test_schemathesis_finds_no_server_error_and_no_answer_breaking_the_document(
    service: str, tmp_path: Path
) -> None:
    root = Path(__file__).resolve().parents[2]
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        f"{service}/openapi.json",
        "--header",
        f"Authorization: Bearer {KEY}",
        "--checks",
        "all",
        "--exclude-checks",
        EXCLUDED_CHECKS,
        "--exclude-operation-id",
        "streamEvents",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        str(SEED),
        "--request-timeout",
        "10",
        "--no-color",
    ]
    env = clean_env({"SCHEMATHESIS_HOOKS": "tests.api.schemathesis_hooks", "PYTHONPATH": str(root)})
    # In a temporary folder: schemathesis keeps a cache (.schemathesis/) in its working folder.
    run = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-8000:]
    found = re.search(r"(\d+) generated, (\d+) passed", report)
    assert found is not None, report[-2000:]
    generated, passed = map(int, found.groups())
    assert generated == passed >= 1000  # every operation really exercised, none failed
    assert "application/msgpack" not in report  # no "cannot serialize / validate" warning
