"""The user docs (README.md, docs/) stay true to the code: event types and their fields, settings,
queue fields, routes, links; and self-contained (nothing outside the repository is cited)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import fields
from pathlib import Path

import pytest
from aiohttp import web

from router.api import handlers
from router.api.app import create_app
from router.api.openapi import build_document, event_schemas
from router.config import Config
from router.domain.models import EVENT_TYPES, CallbackPolicy, QueueConfig
from router.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
ROUTE_CHOICES = re.compile(r"\{(\w+):([\w|]+)\}")


def read(name: str) -> str:
    """The text of docs/<name>."""
    return (DOCS / name).read_text()


def table_rows(text: str, heading: str) -> dict[str, str]:
    """The rows of the first table under `heading`, keyed by their first cell (backticks off)."""
    section = text.split(f"\n{heading}\n", 1)[1]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        if line.startswith("#"):
            break
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        if cells and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = line
        elif rows and not line.startswith("|"):
            break
    return rows


def slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings."""
    return {
        slug(line.lstrip("#")) for line in page.read_text().splitlines() if line.startswith("#")
    }


def test_every_event_type_and_its_fields_are_documented() -> None:
    rows = table_rows(read("events.md"), "## Event types and fields")
    assert list(rows) == list(EVENT_TYPES)
    schemas = build_document()["components"]["schemas"]
    for kind, target in event_schemas().items():
        listed = rows[kind].split("|")[-2]  # the last cell: the fields
        own = set(schemas[target.rsplit("/", 1)[1]]["properties"]) - {"id", "type", "at"}
        for field in own:
            assert re.search(rf"`[^`]*\b{field}\b[^`]*`", listed), f"{kind}: no {field}"


def test_every_service_setting_and_its_variable_is_documented() -> None:
    text = read("configuration.md")
    settings = [f.name for f in fields(ServiceSettings) if f.name != "config"]  # not a setting
    assert list(table_rows(text, "## Service settings")) == settings
    for name in settings:
        assert f"`ACD_{name.upper()}`" in text, name


def test_every_queue_field_is_documented() -> None:
    text = read("configuration.md")
    rows = table_rows(text, "## Queues")
    assert list(rows) == list(QueueConfig.model_fields)
    callback = table_rows(text.split("`callback = {", 1)[1], "")
    assert list(callback) == list(CallbackPolicy.model_fields)


def served_routes() -> set[str]:
    """`METHOD /path` of every route the application serves, alternatives spelled out."""
    app = create_app(Config(ServiceSettings()), insecure=True)
    raw = {
        route.handler: route.path for route in handlers.routes if isinstance(route, web.RouteDef)
    }
    found = set()
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        path = raw.get(route.handler, route.resource.canonical)
        choice = ROUTE_CHOICES.search(path)
        options = choice[2].split("|") if choice else [""]
        for option in options:
            found.add(f"{route.method} {ROUTE_CHOICES.sub(option, path)}")
    return found


def test_every_route_is_documented() -> None:
    routes = served_routes()
    assert {"GET /v1/events", "GET /openapi.json", "POST /v1/interactions/{id}/accept"} <= routes
    text = read("api.md")
    missing = sorted(route for route in routes if f"`{route}`" not in text)
    assert not missing, f"routes missing from docs/api.md: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_relative_links_point_to_existing_files_and_headings(page: Path) -> None:
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.is_file(), f"{page.name}: {target} does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{page.name}: {target}: no such heading"


def test_the_readme_links_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text()
    for page in DOCS.glob("*.md"):
        assert f"](docs/{page.name})" in readme, page.name


def test_docs_cite_nothing_outside_the_repository() -> None:
    texts = {page.name: page.read_text() for page in PAGES}
    texts |= {p.name: p.read_text() for p in (ROOT / "config").rglob("*") if p.is_file()}
    texts["/openapi.json"] = json.dumps(build_document(metrics=True))
    for name, text in texts.items():
        for banned in ("shared/", "SPEC.md", "shared folder", "/work/"):
            assert banned not in text, f"{name} mentions {banned}"


def test_python_commands_name_the_venv() -> None:
    for page in PAGES:
        for line in page.read_text().splitlines():
            bare = re.findall(r"(?<![/\w])python3? -m", line)
            assert not bare or "activate" in line, f"{page.name}: {line.strip()}"


def test_paths_named_in_the_config_files_exist() -> None:
    # Seen: the alert rules' comment named config/prometheus/tests/acd.yml (acd_test.yml).
    named = {
        (path.name, found.rstrip(".,:;`"))
        for path in (ROOT / "config").rglob("*")
        if path.is_file() and path.suffix in (".yml", ".toml", ".conf", ".md")
        for found in re.findall(r"(?<![\w/])(?:config|docs)/[\w./-]+", path.read_text())
    }
    assert named
    missing = sorted(f"{name}: {found}" for name, found in named if not (ROOT / found).exists())
    assert not missing, missing


def test_the_documented_check_config_command_works_as_pasted() -> None:
    # Seen: the documented command exited 1 (the demo's key variables unset) instead of "ok".
    text = read("configuration.md")
    block = text.split("Check a file with\n\n", 1)[1].split("\n\n", 1)[0]
    command = block.replace("\\\n", " ")
    said = re.search(r"which prints `(ok: [^`]+)`", text)
    assert said is not None
    comment = [
        line.removeprefix("#").strip()
        for line in (ROOT / "config" / "acd.toml").read_text().splitlines()[:6]
    ]
    assert " ".join(command.split()) in " ".join(" ".join(comment).replace("\\", "").split())
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ACD_")}
    done = subprocess.run(
        ["bash", "-c", command], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout) == (0, said[1] + "\n"), done.stderr
