#!/usr/bin/env bash
# The run command: prepares a fresh Debian machine (scripts/setup.sh), then runs the service with
# the demo contact center of config/acd.toml on a private redis-server. Extra arguments go to
# `acd-router serve`, e.g. `bash scripts/demo.sh --listen 0.0.0.0:8080 --data-dir run/data`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

# Demo API keys, unless the caller set their own. Anyone who can reach the port can use these.
export ACD_KEY_ADMIN="${ACD_KEY_ADMIN:-demo-admin-key}"
export ACD_KEY_PBX="${ACD_KEY_PBX:-demo-platform-key}"
export ACD_KEY_MONITOR="${ACD_KEY_MONITOR:-demo-monitor-key}"

cat <<INFO
demo: API keys (Authorization: Bearer <key>):
  admin     ${ACD_KEY_ADMIN}
  platform  ${ACD_KEY_PBX}
  monitor   ${ACD_KEY_MONITOR}
demo: for example, once the service says "ready" (default address 127.0.0.1:8080):
  curl -H 'Authorization: Bearer ${ACD_KEY_PBX}' http://127.0.0.1:8080/v1/queues
  curl -X PUT -H 'Authorization: Bearer ${ACD_KEY_PBX}' -H 'Content-Type: application/json' \\
       -d '{"skills": {"support": 3, "lang:en": 3}}' http://127.0.0.1:8080/v1/agents/ann
  curl -N -H 'Authorization: Bearer ${ACD_KEY_PBX}' http://127.0.0.1:8080/v1/events
demo: stop with Ctrl-C.
INFO

exec .venv/bin/acd-router serve --config config/acd.toml "$@"
