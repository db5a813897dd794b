#!/usr/bin/env bash
# Container entrypoint (PID 1 until it execs tini): no core dumps (a dump of a key-handling
# process is how the 2023 signing key leaked); with the default config, a SoftHSM2 token when
# none exists yet, served by p11-kit's RPC server in a process of its own (keywarden loads only
# p11-kit's client module, never libsofthsm2.so: DESIGN.md I3); then the keywarden command
# (default: serve) under tini.
#
# Started as root (the image's default), it runs two users: the HSM server as keywarden-hsm,
# which alone can read the token directory, and keywarden as node, which reaches the token only
# through the socket (0660, group node). No process stays root: the entrypoint execs tini as node.
# Started as another user (`--user node`), everything runs as that user, still as two processes.
set -euo pipefail
ulimit -c 0
trap 'exit 143' TERM INT

data=/app/data
hsm_user=keywarden-hsm
app_user=node
as_app=()
if [[ $(id -u) -eq 0 ]]; then
  as_app=(setpriv --reuid="$app_user" --regid="$app_user" --init-groups --no-new-privs --inh-caps=-all)
  export HOME=/home/node
fi

if [[ "${KEYWARDEN_SOFTHSM_INIT:-1}" == "1" && "${KEYWARDEN_CONFIG:-}" == "/app/config/default.yaml" ]]; then
  source /app/hsm/p11-kit.sh
  if [[ $(id -u) -eq 0 ]]; then
    # The data dir: node's (the store), traversable by the HSM's group only.
    chown "$app_user:$hsm_user" "$data"
    chmod 0710 "$data"
    # The HSM's files belong to its user (a volume made by an image before the split has them as
    # node's: hand them over once).
    mkdir -p "$data/hsm"
    [[ $(stat -c %U "$data/hsm") == "$hsm_user" ]] || chown -R "$hsm_user:$hsm_user" "$data/hsm"
    setpriv --reuid="$hsm_user" --regid="$hsm_user" --clear-groups --no-new-privs \
      bash /app/hsm/init-token.sh "$data" >/dev/null
    # keywarden reads the user PIN (its group may enter hsm/, not list it, not enter tokens/);
    # the SO PIN, the SoftHSM2 config and the token stay the HSM user's alone.
    chgrp "$app_user" "$data/hsm" "$data/hsm/user-pin"
    chmod 0710 "$data/hsm"
    chmod 0640 "$data/hsm/user-pin"
    KEYWARDEN_HSM_USER=$hsm_user KEYWARDEN_HSM_CLIENT_GROUP=$app_user p11kit_start "$data" keywarden
  else
    echo "keywarden-entrypoint: running as uid $(id -u), not root: the HSM server runs as the same user" \
      "(a process of its own, but that user can read the token); start the container as root to separate them" >&2
    bash /app/hsm/init-token.sh "$data" >/dev/null
    p11kit_start "$data" keywarden
  fi
fi
if [[ "${1:-serve}" == "serve" ]]; then
  "${as_app[@]}" /app/bin/keywarden init >/dev/null
fi
# tini becomes PID 1 (as node when started as root): it forwards signals to keywarden and reaps
# orphans. The HSM server started above gets SIGTERM when this process ends (hsm/p11-kit.sh).
exec "${as_app[@]}" /usr/bin/tini -- /app/bin/keywarden "$@"
