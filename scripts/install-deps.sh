#!/usr/bin/env bash
# Installs what keywarden needs on a fresh Debian 12 machine (run as root):
#   system packages (SoftHSM2, p11-kit's RPC server and client module, and friends; with --test
#   also PostgreSQL, gdb, systemd for systemd-analyze, and gcc for the fault-injecting module;
#   with --bench also wrk, the load generator `npm run bench` runs in its own process),
#   npm packages (npm ci, skipped when node_modules already matches package-lock.json; native
#   modules compile against the installed Node's own headers: the npm registry is the only thing
#   reached, nothing is downloaded from GitHub or nodejs.org; scripts/offline-install-check.sh
#   proves it in a network namespace with only the npm cache),
#   and the compiled output (dist/).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(softhsm2 p11-kit p11-kit-modules opensc util-linux ca-certificates curl python3 make g++)
# --test: gcc + libc6-dev because the tests compile a fault-injecting PKCS#11 module
# (test/helpers/fault-pkcs11/).
case "${1:-}" in
  --test) packages+=(postgresql gdb openssl procps openssh-client systemd gcc libc6-dev) ;;
  --bench) packages+=(wrk postgresql openssl procps git) ;;
  "") ;;
  *)
    echo "usage: $0 [--test|--bench]" >&2
    exit 2
    ;;
esac

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} > 0)); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing Debian packages: ${missing[*]} (run as root, or install them first)" >&2
    exit 1
  fi
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# better-sqlite3 and pkcs11js compile from source against the headers of the Node that runs this
# script (<prefix>/include/node, shipped with every Node build), as the Dockerfile does: node-gyp
# would otherwise download headers from nodejs.org and prebuild-install try GitHub. The caller's
# own npm_config_nodedir (environment) is kept; a nodedir in ~/.npmrc is overridden.
if ! command -v node >/dev/null 2>&1; then
  echo "node (Node.js 20) is not on the PATH" >&2
  exit 1
fi
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
  echo "keywarden needs Node.js 20.19 or later (package.json engines); this is $(node --version)" >&2
  exit 1
fi
node_prefix=$(node -p 'require("path").resolve(process.execPath, "..", "..")')
if [[ -z ${npm_config_nodedir:-} ]]; then
  node_major=$(node -p 'process.versions.node.split(".")[0]')
  header_major=$(sed -n 's/^#define NODE_MAJOR_VERSION \([0-9]*\).*/\1/p' "$node_prefix/include/node/node_version.h" 2>/dev/null || true)
  if [[ $header_major != "$node_major" ]]; then
    echo "the headers of this Node ($(node --version), $node_prefix/include/node) are missing or of another" \
      "version; install Node with its headers, or set npm_config_nodedir to the directory that has include/node" >&2
    exit 1
  fi
  export npm_config_nodedir=$node_prefix
fi
# Always from source, whatever the caller's environment or ~/.npmrc says: prebuild-install (better-
# sqlite3's first step) then skips its GitHub download instead of trying it and timing out.
export npm_config_build_from_source=true
export npm_config_update_notifier=${npm_config_update_notifier:-false}

lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ! -f node_modules/.keywarden-lock-hash || "$(cat node_modules/.keywarden-lock-hash)" != "$lock_hash" ]]; then
  echo "installing npm packages (npm ci; better-sqlite3 and pkcs11js compile from source)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" > node_modules/.keywarden-lock-hash
fi

echo "building (tsc)"
npm run --silent build
