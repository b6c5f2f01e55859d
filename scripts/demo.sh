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

# Where serve will listen, for the examples below: a --listen argument (the last), else
# ACD_LISTEN, else the address of config/acd.toml.
listen="${ACD_LISTEN:-127.0.0.1:8080}"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --listen=*) listen="${args[i]#--listen=}" ;;
    --listen) if ((i + 1 < ${#args[@]})); then listen="${args[i + 1]}"; fi ;;
  esac
done

cat <<INFO
demo: API keys (Authorization: Bearer <key>):
  admin     ${ACD_KEY_ADMIN}
  platform  ${ACD_KEY_PBX}
  monitor   ${ACD_KEY_MONITOR}
demo: for example, once the service says "ready":
  curl -H 'Authorization: Bearer ${ACD_KEY_PBX}' http://${listen}/v1/queues
  curl -X PUT -H 'Authorization: Bearer ${ACD_KEY_PBX}' -H 'Content-Type: application/json' \\
       -d '{"skills": {"support": 3, "lang:en": 3}}' http://${listen}/v1/agents/ann
  curl -N -H 'Authorization: Bearer ${ACD_KEY_PBX}' http://${listen}/v1/events
demo: stop with Ctrl-C.
INFO

exec .venv/bin/acd-router serve --config config/acd.toml "$@"
