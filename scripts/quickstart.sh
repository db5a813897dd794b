#!/usr/bin/env bash
# Quick start: installs everything, creates a SoftHSM2 token under ./data, serves it from a
# process of its own (p11-kit's RPC server; keywarden loads only p11-kit's client module, so the
# token is never in the daemon's address space), migrates the SQLite store, creates the demo
# scope's first key, and runs the daemon on 127.0.0.1:8080.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash hsm/init-token.sh data >/dev/null
# No core dumps, ever: a dump of a key-handling process is how the 2023 key leaked.
ulimit -c 0
# The HSM server ends with this process, i.e. with the daemon exec'd below (Ctrl-C, a crash,
# SIGKILL alike); a server or socket left by an earlier run is replaced. See hsm/p11-kit.sh.
source hsm/p11-kit.sh
p11kit_start data keywarden
bin/keywarden init
echo
echo "keywarden is starting on http://127.0.0.1:8080 (Ctrl-C stops it). Try, in another shell:"
echo "  curl http://127.0.0.1:8080/scopes/demo/.well-known/jwks.json"
echo "  bin/keywarden sign --scope demo --claims '{\"sub\":\"alice\",\"aud\":\"demo-api\"}'"
echo
exec bin/keywarden serve
