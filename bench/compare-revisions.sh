#!/usr/bin/env bash
# Sign rate of two keywarden revisions, paired round by round, with wrk in its own process.
#
#   bash bench/compare-revisions.sh [--rounds N] [--seconds S] [--workers W] [--module PATH] REV_A REV_B
#
# Each revision is checked out in a git worktree under .tmp/bench/revisions/ (node_modules shared
# with this checkout, built with `npm run build`), gets its own SoftHSM2 token and SQLite store,
# `keywarden init`, an API client, and `keywarden serve --workers W` on its own port. Then, round
# by round and alternating which goes first (A B, B A, ...), Debian's wrk (-t1 -c32, a separate
# C process, so the generator's cost does not land in Node's event loop) POSTs the same sign
# request to each for S seconds. It prints each round's rates and B÷A, the median of the per-round
# ratios with their spread, and each server's CPU milliseconds per 1,000 responses (from
# /proc: a figure that depends less on how busy the machine is). Both daemons stay up during all
# rounds, so each round pays the same background cost.
#
# Used for "the sign rate through the sealed path is unchanged" (docs/benchmarks.md §9). The
# revisions must share the config format this script writes (988b6e8 and later do) and know the CLI's
# --local and admin.socket (the admin API's merge, 06d2d8f, and later: older revisions refuse them). The worktrees
# stay for the next run; `rm -rf .tmp/bench/revisions && git worktree prune` removes them.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ROUNDS=8 SECONDS_PER=8 WORKERS=1 MODULE=/usr/lib/softhsm/libsofthsm2.so
while [ $# -gt 2 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) SECONDS_PER=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --module) MODULE=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ $# -eq 2 ] || { sed -n 2,4p "$0" >&2; exit 2; }
for n in "$ROUNDS" "$SECONDS_PER" "$WORKERS"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "rounds, seconds and workers are positive integers" >&2; exit 2; }
done
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }
for tool in softhsm2-util curl git pgrep; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install softhsm2 curl git procps)" >&2; exit 2; }
done

WORK=$ROOT/.tmp/bench/revisions
mkdir -p "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# prepare LABEL REV PORT: worktree, build, token, config, init, client; sets SECRET_<LABEL>, PID_<LABEL>.
prepare() {
  local label=$1 rev=$2 port=$3
  local sha tree dir
  sha=$(git rev-parse --verify "$rev^{commit}")
  tree=$WORK/tree-$sha
  if [ ! -d "$tree" ]; then
    git worktree add --detach "$tree" "$sha" >/dev/null
    ln -s "$ROOT/node_modules" "$tree/node_modules"
  fi
  echo "$label = $rev ($sha): building" >&2
  (cd "$tree" && npm run --silent build >/dev/null)
  dir=$(mktemp -d "$WORK/run-$label-XXXX")
  local conf
  conf=$(bash "$ROOT/hsm/init-token.sh" "$dir" bench)
  cat >"$dir/keywarden.json" <<EOF
{
  "dataDir": "$dir",
  "logLevel": "warn",
  "store": { "url": "sqlite:keywarden.db" },
  "server": { "host": "127.0.0.1", "port": $port, "keyRefreshSeconds": 2 },
  "admin": { "socket": { "path": "admin.sock", "group": null } },
  "backends": {
    "hsm": {
      "type": "pkcs11", "module": "$MODULE", "tokenLabel": "bench",
      "pin": { "file": "$dir/hsm/user-pin" },
      "moduleEnv": { "SOFTHSM2_CONF": "$conf" },
      "sessions": 4
    }
  },
  "scopes": [{
    "name": "es256", "issuer": "http://127.0.0.1:$port/scopes/es256", "audiences": ["es256-api"],
    "alg": "ES256", "backend": "hsm", "schedule": "*/5 * * * *", "production": false,
    "policy": { "jwksMaxAge": "5m", "prepublish": "10m", "activeFor": "1d", "verifyGrace": "1h",
                "maxTokenTtl": "5m", "destroyAfter": "1d", "maxKeyLifetime": "2d" }
  }]
}
EOF
  local kw=("$tree/bin/keywarden" -c "$dir/keywarden.json")
  "${kw[@]}" init >/dev/null
  local secret
  # --local: the store directly (no daemon runs yet; since the admin API the CLI asks the daemon by default).
  secret=$("${kw[@]}" --local --json clients add bench --grant es256:sign | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).secret))')
  UV_THREADPOOL_SIZE=16 "${kw[@]}" serve --workers "$WORKERS" >"$dir/serve.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then break; fi
    sleep 0.2
  done
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$dir/serve.log" >&2; exit 1; }
  printf -v "SECRET_$label" '%s' "$secret"
  printf -v "PID_$label" '%s' "$pid"
  printf -v "DIR_$label" '%s' "$dir"
}

# CPU ticks (user + system) of a process and all its descendants.
cpu_ticks() {
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    if [ -r "/proc/$p/stat" ]; then
      total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    fi
  done
  echo "$total"
}

# round LABEL PORT: prints "rate responses cpu_ms".
round() {
  local label=$1 port=$2 secret pid dir before after
  secret=SECRET_$label pid=PID_$label dir=DIR_$label
  cat >"${!dir}/sign.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer ${!secret}"
wrk.body = '{"claims":{"sub":"user-1","aud":"es256-api","scope":"read"}}'
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d\n", summary.requests, summary.duration,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout, latency:percentile(99)))
end
EOF
  before=$(cpu_ticks "${!pid}")
  local out
  out=$(wrk -t1 -c32 -d"${SECONDS_PER}s" -s "${!dir}/sign.lua" "http://127.0.0.1:$port/v1/scopes/es256/sign" | grep '^RESULT')
  after=$(cpu_ticks "${!pid}")
  read -r _ reqs micros errors p99 <<<"$out"
  [ "$errors" -eq 0 ] || echo "warning: $label had $errors failed requests" >&2
  local hz
  hz=$(getconf CLK_TCK)
  echo "$(( reqs * 1000000 / micros )) $reqs $(( (after - before) * 1000 / hz )) $p99"
}

A=$1 B=$2
PORT_A=$((20000 + RANDOM % 20000))
PORT_B=$((PORT_A + 1))
prepare A "$A" "$PORT_A"
prepare B "$B" "$PORT_B"

echo "warm-up (one round each, not counted)" >&2
round A "$PORT_A" >/dev/null
round B "$PORT_B" >/dev/null

echo
echo "\`bash bench/compare-revisions.sh --rounds $ROUNDS --seconds $SECONDS_PER --workers $WORKERS $A $B\`, $(date -u +%FT%TZ), load before $(cut -d' ' -f1 /proc/loadavg), wrk -t1 -c32, ES256 sign, $WORKERS worker(s), module $MODULE"
echo
echo "| round | order | A tokens/s | B tokens/s | B ÷ A | A CPU ms/1k | B CPU ms/1k | A p99 | B p99 |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
RATIOS=()
CPU_A=() CPU_B=()
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then
    read -r ra na ca pa <<<"$(round A "$PORT_A")"
    read -r rb nb cb pb <<<"$(round B "$PORT_B")"
    order="A B"
  else
    read -r rb nb cb pb <<<"$(round B "$PORT_B")"
    read -r ra na ca pa <<<"$(round A "$PORT_A")"
    order="B A"
  fi
  ratio=$(awk -v a="$ra" -v b="$rb" 'BEGIN{printf "%.3f", b/a}')
  cpa=$(awk -v c="$ca" -v n="$na" 'BEGIN{printf "%.1f", c*1000/n}')
  cpb=$(awk -v c="$cb" -v n="$nb" 'BEGIN{printf "%.1f", c*1000/n}')
  RATIOS+=("$ratio") CPU_A+=("$cpa") CPU_B+=("$cpb")
  echo "| $r | $order | $ra | $rb | $ratio | $cpa | $cpb | $((pa / 1000)) ms | $((pb / 1000)) ms |"
done

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END{m = NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2; printf "%.3f\n", m}'; }
minmax() { printf '%s\n' "$@" | sort -g | awk 'NR==1{lo=$1} {hi=$1} END{print lo "–" hi}'; }
echo
echo "B ÷ A sign rate: median of per-round ratios **$(median "${RATIOS[@]}")**, spread $(minmax "${RATIOS[@]}")"
echo "server CPU ms per 1,000 tokens: A median $(median "${CPU_A[@]}"), B median $(median "${CPU_B[@]}")"
