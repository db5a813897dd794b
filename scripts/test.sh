#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine (run as root): installs what it needs,
# and builds, then lint, the layering rules, typecheck, and every mocha test (unit, contract,
# integration, e2e) on
# real SoftHSM2 tokens and a real PostgreSQL server that the tests create themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --test
echo "== lint"
npm run --silent lint
echo "== layering (dependency-cruiser: DESIGN.md §3)"
npm run --silent deps
echo "== typecheck"
npm run --silent typecheck
echo "== tests"
ulimit -c 0
npx mocha "$@"
