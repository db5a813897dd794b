#!/usr/bin/env bash
# Checks that scripts/install-deps.sh installs keywarden with no network at all but a populated npm
# cache: native modules (better-sqlite3, pkcs11js) compile against the headers of the Node that
# runs it, and nothing tries to download a prebuilt binary (GitHub) or Node's headers (nodejs.org).
#
# Run as root on Debian 12 from a checkout, with the Debian packages install-deps.sh names already
# installed (they come from the Debian mirror, which this check does not cover). It:
#   1. copies the checkout's files (tracked and new, not node_modules/dist) to a temp dir;
#   2. fills the npm cache from the registry for package-lock.json (`npm ci --ignore-scripts
#      --prefer-offline`, network allowed: the registry is the one source an install may use), then
#      removes that node_modules again;
#   3. runs install-deps.sh in a new network namespace (`unshare --net`: no interface but a
#      loopback that is down) with npm_config_offline=true, under `strace -e connect`;
#   4. checks: it exited 0; no process made an AF_INET/AF_INET6 connect() (a download attempt, even
#      one a fallback hides, or a DNS lookup); both native modules were built here and load; dist/
#      was built. A negative control first shows that a download attempt in the namespace is seen.
# Not part of scripts/test.sh or CI: it compiles better-sqlite3 (minutes on 2 shared cores).
# Prints one line per check, `FAIL:` and exit 1 at the first failure. KEEP=1 keeps the temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
[[ $(id -u) -eq 0 ]] || fail "run as root (unshare --net needs it)"
for tool in unshare strace git node npm; do
  command -v "$tool" >/dev/null || fail "$tool is not installed"
done

work=$(mktemp -d /tmp/kw-offline-install-XXXXXX)
[[ ${KEEP:-0} == 1 ]] || trap 'rm -rf "$work"' EXIT
echo "work dir: $work"

git -C "$root" ls-files -z --cached --others --exclude-standard |
  grep -zv -e '^node_modules' -e '^dist/' |
  tar -C "$root" --null -T - -cf - | tar -C "$work/" -xf -
[[ -f $work/scripts/install-deps.sh && -f $work/package-lock.json ]] || fail "copying the checkout"
echo "ok: checkout copied ($(git -C "$root" rev-parse --short HEAD), with uncommitted changes)"

(cd "$work" && npm ci --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error >/dev/null) ||
  fail "filling the npm cache from the registry"
rm -rf "$work/node_modules"
echo "ok: npm cache holds every package of package-lock.json"

# strace writes one file per process (-ff); connect() calls to anything but unix sockets count.
inet_connects() { cat "$1".* 2>/dev/null | grep -E 'connect\(.*(AF_INET|AF_INET6)' || true; }

# Negative control: a download attempt inside the namespace is seen by this check.
unshare --net -- strace -f -ff -qq -e trace=connect -o "$work/control" \
  node -e 'require("https").get("https://github.com/", () => {}).on("error", () => {})' || true
[[ -n $(inet_connects "$work/control") ]] || fail "the control's download attempt was not seen"
echo "ok: control: a download attempt in the namespace is detected"

start=$(date +%s)
set +e
(
  cd "$work" &&
    unshare --net -- env npm_config_offline=true \
      strace -f -ff -qq -e trace=connect -o "$work/install" \
      nice -n 10 bash scripts/install-deps.sh
) >"$work/install.log" 2>&1
status=$?
set -e
seconds=$(($(date +%s) - start))
[[ $status -eq 0 ]] || {
  tail -40 "$work/install.log" >&2
  fail "install-deps.sh exited $status without network (log: $work/install.log)"
}
echo "ok: install-deps.sh succeeded with no network in ${seconds}s"

attempts=$(inet_connects "$work/install")
[[ -z $attempts ]] || {
  echo "$attempts" | head -20 >&2
  fail "install-deps.sh tried to reach the network (above)"
}
echo "ok: no process tried an IP connection (no prebuilt download, no header download, no DNS)"

for binary in node_modules/better-sqlite3/build/Release/better_sqlite3.node node_modules/pkcs11js/build/Release/pkcs11.node; do
  [[ -f $work/$binary ]] || fail "$binary was not built"
done
(cd "$work" && node -e '
  const Database = require("better-sqlite3");
  const db = new Database(":memory:");
  if (db.prepare("select 41 + 1 as n").get().n !== 42) process.exit(1);
  const { PKCS11 } = require("pkcs11js");
  new PKCS11();
') || fail "the native modules do not load"
echo "ok: better-sqlite3 and pkcs11js compiled here and load"
[[ -f $work/dist/src/cli/main.js ]] || fail "dist/ was not built"
echo "ok: dist/ built"
echo "offline install: passed (${seconds}s)"
