#!/usr/bin/env bash
# Prepares a SoftHSM2 token for keywarden. Idempotent: safe to run on every container start.
#
#   hsm/init-token.sh <data-dir> [token-label]
#
# Creates <data-dir>/hsm/{tokens/,softhsm2.conf,user-pin,so-pin} and initialises the token
# (default label "keywarden") unless a token with that label already exists. Existing PIN files
# are never overwritten: they are the only copy of the PINs of an existing token.
# Prints the SOFTHSM2_CONF path on stdout (everything else goes to stderr).
#
# Run it as the user that will own the token: the one that runs `p11-kit server` for it
# (keywarden-hsm in the container and the systemd units; the same user as keywarden in the quick
# start), or as root on a data dir owned by that user (the files it creates are then handed to
# the dir's owner).
set -euo pipefail
umask 077

die() {
  echo "init-token: $*" >&2
  exit 1
}

[[ $# -ge 1 && $# -le 2 ]] || die "usage: $0 <data-dir> [token-label]"
data_dir=$1
label=${2:-keywarden}
# PKCS#11 token labels are 32 bytes, blank padded.
[[ ${#label} -ge 1 && ${#label} -le 32 ]] || die "token label must be 1..32 characters"

command -v softhsm2-util >/dev/null 2>&1 ||
  die "softhsm2-util not found; install SoftHSM2 (Debian/Ubuntu: apt-get install softhsm2)"

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
template="$script_dir/softhsm2.conf.template"
[[ -r $template ]] || die "missing $template"

mkdir -p "$data_dir"
data_dir=$(cd "$data_dir" && pwd)
hsm_dir="$data_dir/hsm"
token_dir="$hsm_dir/tokens"
conf="$hsm_dir/softhsm2.conf"
mkdir -p "$token_dir"
chmod 0700 "$hsm_dir" "$token_dir"

# The config is derived, so it is rewritten every run (the data dir may have moved).
tmp_conf=$(mktemp "$hsm_dir/.softhsm2.conf.XXXXXX")
sed "s|@TOKEN_DIR@|$token_dir|g" "$template" >"$tmp_conf"
chmod 0600 "$tmp_conf"
mv -f "$tmp_conf" "$conf"

# 24 random bytes as base64url-ish text: 32 characters, no shell-special characters.
new_pin() {
  head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'
}

write_pin_if_absent() {
  local file=$1
  if [[ -s $file ]]; then
    return
  fi
  local tmp
  tmp=$(mktemp "$file.XXXXXX")
  new_pin >"$tmp"
  chmod 0600 "$tmp"
  mv -f "$tmp" "$file"
}

export SOFTHSM2_CONF="$conf"

# Matches "Label: <label>" on an initialised token (softhsm2-util pads labels with blanks).
token_exists() {
  softhsm2-util --show-slots 2>/dev/null |
    KW_LABEL="$label" awk '
      BEGIN { want = ENVIRON["KW_LABEL"] }
      /^[[:space:]]*Label:/ {
        sub(/^[[:space:]]*Label:[[:space:]]*/, ""); sub(/[[:space:]]+$/, "")
        if ($0 == want) found = 1
      }
      END { exit found ? 0 : 1 }'
}

if token_exists; then
  [[ -s "$hsm_dir/user-pin" ]] ||
    die "token '$label' exists in $token_dir but $hsm_dir/user-pin is missing; restore it from backup"
  echo "init-token: token '$label' already initialised" >&2
else
  write_pin_if_absent "$hsm_dir/user-pin"
  write_pin_if_absent "$hsm_dir/so-pin"
  # softhsm2-util only takes PINs on the command line or from a terminal; the exposure is a
  # brief window in /proc/<pid>/cmdline during provisioning, on a host we control.
  softhsm2-util --init-token --free --label "$label" \
    --so-pin "$(<"$hsm_dir/so-pin")" --pin "$(<"$hsm_dir/user-pin")" >&2 ||
    die "softhsm2-util --init-token failed for label '$label'"
  token_exists || die "token '$label' was not found after initialisation"
fi
for f in "$hsm_dir/user-pin" "$hsm_dir/so-pin"; do
  [[ -e $f ]] && chmod 0600 "$f"
done

# As root on a data dir that belongs to the service user, hand everything to that user so
# the daemon can open its token.
if [[ $(id -u) -eq 0 ]]; then
  owner=$(stat -c '%u:%g' "$data_dir")
  if [[ $owner != "0:0" ]]; then
    chown -R "$owner" "$hsm_dir"
  fi
fi

echo "$conf"
