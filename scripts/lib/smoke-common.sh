# shellcheck shell=bash
# Shared by scripts/container-smoke.sh and scripts/systemd-smoke.sh (sourced, not run): output
# helpers, Debian package installation, podman's configuration under a work dir, and the host's
# Debian mirror. The caller sets t0=$SECONDS first.

# shellcheck disable=SC2154 # t0 is set by the sourcing script
say() { printf '[%3ds] %s\n' "$((SECONDS - t0))" "$*"; }
fail() {
  printf '[%3ds] FAIL: %s\n' "$((SECONDS - t0))" "$*" >&2
  exit 1
}
ok() { say "ok: $*"; }

# The last line of a smoke test, from its EXIT trap: $1 its exit status, $2 its name, $3 where
# its logs are.
report_result() {
  if (($1 == 0)); then
    say "PASS: $2 ($((SECONDS - t0)) s)"
  else
    echo "$2 FAILED (exit $1); logs under $3" >&2
  fi
}

# Installs the Debian packages of "$@" that are missing (apt-get update only if needed).
install_packages() {
  local p missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]} > 0)) || return 0
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# Writes podman's storage and containers configuration under work dir $1 and exports them for
# this script's podman calls only. Further lines for the [engine] table may follow as "$@".
# Sets $nofile: the open-files limit containers get (an explicit --ulimit must repeat it).
configure_podman() {
  local work=$1
  shift
  mkdir -p "$work/conf" "$work/logs"
  nofile=$(ulimit -Hn)
  [[ $nofile == unlimited ]] && nofile=1048576
  cat >"$work/conf/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$work/storage"
runroot = "$work/run"
CONF
  # root here may lack CAP_SYS_RESOURCE: podman's default nofile request (above the hard limit)
  # would fail, so ask for what we have. crun rejects hybrid cgroup setups; runc copes.
  {
    printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=32768:32768"]\n\n[engine]\nruntime = "runc"\n' \
      "$nofile" "$nofile"
    local line
    for line in "$@"; do printf '%s\n' "$line"; done
  } >"$work/conf/containers.conf"
  export CONTAINERS_STORAGE_CONF="$work/conf/storage.conf"
  export CONTAINERS_CONF="$work/conf/containers.conf"
}

# The Debian mirror the host uses for suite $1 (deb822 or one-line sources), else $2.
apt_uri() {
  local suite=$1 f uri=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -r $f ]] || continue
    uri=$(awk -v s="$suite" '
      /^URIs:/ { u = $2 } /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) found = 1 }
      /^$/ { if (found && u != "") { print u; exit } found = 0; u = "" }
      END { if (found && u != "") print u }' "$f" | head -n1)
    [[ -n $uri ]] && break
  done
  if [[ -z $uri && -r /etc/apt/sources.list ]]; then
    uri=$(awk -v s="$suite" '$1 == "deb" && $3 == s { print $2; exit }' /etc/apt/sources.list)
  fi
  echo "${uri:-$2}"
}
