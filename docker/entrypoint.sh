#!/usr/bin/env bash
# Container entrypoint: no core dumps (a dump of a key-handling process is how the 2023
# signing key leaked), a SoftHSM2 token for the demo config when none exists yet, then the
# keywarden command (default: serve).
set -euo pipefail
ulimit -c 0
if [[ "${KEYWARDEN_SOFTHSM_INIT:-1}" == "1" && "${KEYWARDEN_CONFIG:-}" == "/app/config/default.yaml" ]]; then
  bash /app/hsm/init-token.sh /app/data >/dev/null
fi
if [[ "${1:-serve}" == "serve" ]]; then
  /app/bin/keywarden init >/dev/null
fi
exec /app/bin/keywarden "$@"
