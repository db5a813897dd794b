#!/usr/bin/env bash
# Installs what keywarden needs on a fresh Debian 12 machine (run as root):
#   system packages (SoftHSM2 and friends; with --test also PostgreSQL, gdb and systemd for
#   systemd-analyze),
#   npm packages (npm ci, skipped when node_modules already matches package-lock.json),
#   and the compiled output (dist/).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(softhsm2 opensc util-linux ca-certificates python3 make g++)
if [[ "${1:-}" == "--test" ]]; then packages+=(postgresql gdb openssl procps openssh-client systemd); fi

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

lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ! -f node_modules/.keywarden-lock-hash || "$(cat node_modules/.keywarden-lock-hash)" != "$lock_hash" ]]; then
  echo "installing npm packages (npm ci; better-sqlite3 and pkcs11js compile from source)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" > node_modules/.keywarden-lock-hash
fi

echo "building (tsc)"
npm run --silent build
