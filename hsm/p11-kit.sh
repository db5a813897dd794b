# shellcheck shell=bash
# SoftHSM2 in a process of its own: p11-kit's RPC server exports the token that hsm/init-token.sh
# made on a unix socket, and keywarden loads only p11-kit's client module
# (p11-kit-client.so), never libsofthsm2.so. The token, its keys and the module's memory stay out
# of keywarden's address space (DESIGN.md I3): a debugger or a core dump of the daemon finds
# neither. Sourced (not run) by scripts/quickstart.sh and the container's entrypoint:
#
#   source hsm/p11-kit.sh
#   p11kit_start <data-dir> [token-label]
#
# starts `p11-kit server` for the token (default label "keywarden") configured by
# <data-dir>/hsm/softhsm2.conf, on the socket <data-dir>/run/p11-kit/pkcs11, waits until it
# listens and sets P11KIT_PID. keywarden reaches it with config/default.yaml's moduleEnv
# (P11_KIT_SERVER_ADDRESS=unix:path=../data/run/p11-kit/pkcs11). Optional environment:
#   KEYWARDEN_HSM_USER          run the server as this user (the caller must be root); the socket
#                               and its directories then belong to that user
#   KEYWARDEN_HSM_CLIENT_GROUP  the group allowed to connect: the socket becomes 0660 and its
#                               directories 0710 with that group (the caller must be root).
#                               Without it only the server's user (and root) can connect.
#   SOFTHSM2_MODULE             libsofthsm2.so, when not at one of Debian's paths
#
# The server never outlives the process that called p11kit_start: it gets SIGTERM when that
# process ends (the kernel's parent-death signal, set with setpriv), also after the caller `exec`s
# keywarden in its place, and also when that process is killed with SIGKILL. It runs in a session
# of its own, so Ctrl-C in the terminal reaches keywarden (which drains its requests, still
# signing) and not the HSM. A server left from an earlier run on the same socket (e.g. after a
# reboot of the caller's shell) is stopped first, and a stale socket file is replaced.

p11kit_die() {
  echo "p11-kit: $*" >&2
  exit 1
}

# The SoftHSM2 module: SOFTHSM2_MODULE, else the first of the usual Debian/Ubuntu paths.
p11kit_softhsm_module() {
  local m
  for m in ${SOFTHSM2_MODULE:-} /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
    /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so /usr/lib/softhsm/libsofthsm2.so; do
    [[ -f $m ]] && {
      echo "$m"
      return 0
    }
  done
  return 1
}

# Stops every `p11-kit server` whose socket (--name / -n) is $1: SIGTERM, then SIGKILL after 5 s.
p11kit_stop_stale() {
  local sock=$1 d pid comm args i
  local stale=()
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    { read -r comm <"$d/comm"; } 2>/dev/null || continue
    [[ $comm == p11-kit-server ]] || continue
    args=$(tr '\0' '\n' <"$d/cmdline" 2>/dev/null) || continue
    if grep -qxF -- "$sock" <<<"$args"; then stale+=("$pid"); fi
  done
  ((${#stale[@]} > 0)) || return 0
  echo "p11-kit: stopping a server left from an earlier run on $sock (pid ${stale[*]})" >&2
  kill -TERM "${stale[@]}" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "${stale[@]}" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "${stale[@]}" 2>/dev/null || true
}

p11kit_start() {
  local data_dir label conf module sock run_dir out err hsm_user client_group i
  [[ $# -ge 1 && $# -le 2 ]] || p11kit_die "usage: p11kit_start <data-dir> [token-label]"
  data_dir=$(cd "$1" && pwd) || p11kit_die "no data dir $1"
  label=${2:-keywarden}
  hsm_user=${KEYWARDEN_HSM_USER:-}
  client_group=${KEYWARDEN_HSM_CLIENT_GROUP:-}
  command -v p11-kit >/dev/null 2>&1 ||
    p11kit_die "p11-kit not found; install it (Debian/Ubuntu: apt-get install p11-kit p11-kit-modules)"
  command -v setpriv >/dev/null 2>&1 || p11kit_die "setpriv not found; install util-linux"
  module=$(p11kit_softhsm_module) ||
    p11kit_die "libsofthsm2.so not found; install SoftHSM2 (apt-get install softhsm2) or set SOFTHSM2_MODULE"
  conf="$data_dir/hsm/softhsm2.conf"
  [[ -e $conf ]] || p11kit_die "no SoftHSM2 config at $conf: run hsm/init-token.sh $data_dir first"
  if [[ -n $hsm_user || -n $client_group ]] && [[ $(id -u) -ne 0 ]]; then
    p11kit_die "KEYWARDEN_HSM_USER / KEYWARDEN_HSM_CLIENT_GROUP need root"
  fi

  run_dir="$data_dir/run/p11-kit"
  sock="$run_dir/pkcs11"
  # sockaddr_un holds 108 bytes; p11-kit would only print a precondition warning.
  ((${#sock} < 100)) || p11kit_die "socket path $sock is too long for a unix socket; use a shorter data dir"
  mkdir -p "$run_dir"
  if [[ -n $hsm_user ]]; then
    chown "$hsm_user:${client_group:-$(id -gn "$hsm_user")}" "$data_dir/run" "$run_dir"
  elif [[ -n $client_group ]]; then
    chgrp "$client_group" "$data_dir/run" "$run_dir"
  fi
  if [[ -n $client_group ]]; then chmod 0710 "$data_dir/run" "$run_dir"; else chmod 0700 "$data_dir/run" "$run_dir"; fi

  p11kit_stop_stale "$sock"
  rm -f "$sock"
  out="$run_dir/server.out"
  err="$run_dir/server.err"
  rm -f "$out" "$err"

  local drop=()
  if [[ -n $hsm_user ]]; then
    drop=(--reuid="$hsm_user" --regid="$(id -g "$hsm_user")" --clear-groups --no-new-privs --inh-caps=-all)
  fi
  # A clean environment: the server needs SOFTHSM2_CONF and nothing of the caller's (no PIN
  # variable reaches it). setpriv sets the parent-death signal after any uid change (a uid change
  # clears it, which is why the server's own --run-as-user is not used here). setsid gives it a
  # session of its own; it runs without forking because this subshell leads no process group
  # (a background job of a script), and a fork would lose the parent-death signal.
  (
    ulimit -c 0
    new_session=()
    [[ $(cut -d' ' -f5 "/proc/$BASHPID/stat") != "$BASHPID" ]] && new_session=(setsid)
    exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin SOFTHSM2_CONF="$conf" \
      setpriv --pdeathsig TERM "${drop[@]}" -- "${new_session[@]}" \
      p11-kit server --foreground --name "$sock" --provider "$module" "pkcs11:token=$label"
  ) >"$out" 2>"$err" &
  P11KIT_PID=$!

  # In the foreground the server prints its address once the socket listens.
  for ((i = 0; i < 100; i++)); do
    grep -q '^P11_KIT_SERVER_ADDRESS=' "$out" 2>/dev/null && break
    kill -0 "$P11KIT_PID" 2>/dev/null || p11kit_die "the server exited at start: $(tr '\n' ' ' <"$err")"
    sleep 0.1
  done
  [[ -S $sock ]] || p11kit_die "the server did not listen on $sock within 10 s: $(tr '\n' ' ' <"$err")"
  # p11-kit makes the socket 0711 (only its owner can connect): open it to the client group.
  if [[ -n $client_group ]]; then
    chgrp "$client_group" "$sock"
    chmod 0660 "$sock"
  fi
  echo "p11-kit: SoftHSM2 token '$label' served on $sock by pid $P11KIT_PID${hsm_user:+ as $hsm_user}" >&2
}
