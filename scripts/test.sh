#!/usr/bin/env bash
# The test command: setup, then format and lint checks, strict typing, and the test suite
# (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff format --check .
.venv/bin/ruff check .
.venv/bin/mypy
# One pytest worker per core (pytest-xdist): each worker starts its own redis-server.
.venv/bin/pytest -n auto "$@"
