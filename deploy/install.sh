#!/usr/bin/env bash
# carelb bare-metal installer for Debian 12 / Ubuntu 22.04+ (issue 7, "Bare-metal install").
#
# Run it as root from a built release tree (after `npm ci && npm run build`):
#
#   sudo bash deploy/install.sh                 install or update
#   sudo bash deploy/install.sh --uninstall     remove the program; keep config, logs and state
#   sudo bash deploy/install.sh --purge         remove everything, including the carelb user
#
# Options:
#   --prefix DIR   install the program under DIR (default /opt/carelb)
#   --node PATH    the Node.js 20 binary to run carelb with (default: `node` on PATH)
#   --skip-npm     do not run `npm ci`: link PREFIX/node_modules to this tree's node_modules
#                  (also CARELB_SKIP_NPM=1). For tests and development: the installed program
#                  then depends on this build tree staying where it is.
#   --offline      do not run `npm ci`: copy this tree's node_modules instead (servers without
#                  registry access; run `npm prune --omit=dev` in the tree first)
#
# DESTDIR=/some/root installs into a staging root instead of the live system: no user is
# created, no owner is changed and systemd is not touched (a staging root is not a system).
#
# Idempotent: running it again changes nothing unless the release changed. It never overwrites
# an existing /etc/carelb/carelb.yaml or /etc/carelb/admin.token.
set -euo pipefail

readonly PROG=carelb-install
readonly SERVICE_USER=carelb
readonly MARKER=.carelb-install
readonly WRAPPER_TAG='installed by carelb deploy/install.sh'

PREFIX=/opt/carelb
DESTDIR=${DESTDIR:-}
NODE_BIN=${CARELB_NODE:-}
DEPS=npm            # npm | link | copy
case "${CARELB_SKIP_NPM:-0}" in 1 | yes | true) DEPS='link' ;; esac
ACTION=install      # install | uninstall | purge

SRC_DIR=$(cd -P -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
readonly SRC_DIR

say() { printf '%s: %s\n' "$PROG" "$*"; }
die() {
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  exit 1
}
usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; PREFIX=$2; shift ;;
    --prefix=*) PREFIX=${1#--prefix=} ;;
    --node) [ $# -ge 2 ] || die "--node needs a path"; NODE_BIN=$2; shift ;;
    --node=*) NODE_BIN=${1#--node=} ;;
    --skip-npm) DEPS='link' ;;
    --offline) DEPS='copy' ;;
    --uninstall) ACTION=uninstall ;;
    --purge) ACTION=purge ;;
    -h | --help) usage; exit 0 ;;
    *) printf '%s: unknown option: %s\n\n' "$PROG" "$1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

# --- where things go ----------------------------------------------------------------------------

# PREFIX is removed wholesale by --uninstall: accept only plain absolute paths, never "/" or "..".
[[ $PREFIX =~ ^(/[A-Za-z0-9._+-]+)+/?$ ]] || die "--prefix must be an absolute path of letters, digits and ._+- (got '$PREFIX')"
PREFIX=${PREFIX%/}
[[ /$PREFIX/ != */../* && /$PREFIX/ != */./* ]] || die "--prefix must not contain '.' or '..' (got '$PREFIX')"
case "$PREFIX" in /usr | /usr/local | /opt | /etc | /var | /home | /root | /srv) die "--prefix $PREFIX is a system directory: use a directory of carelb's own such as /opt/carelb" ;; esac

DESTDIR=${DESTDIR%/}
if [ -n "$DESTDIR" ]; then
  [[ $DESTDIR == /* ]] || die "DESTDIR must be an absolute path (got '$DESTDIR')"
  LIVE=0
else
  LIVE=1
  [ "$(id -u)" -eq 0 ] || die "run as root (sudo bash $0), or set DESTDIR to install into a staging root"
fi

readonly APP_DIR=$DESTDIR$PREFIX
readonly ETC_DIR=$DESTDIR/etc/carelb
readonly LOG_DIR=$DESTDIR/var/log/carelb
readonly STATE_DIR=$DESTDIR/var/lib/carelb
readonly UNIT_FILE=$DESTDIR/etc/systemd/system/carelb.service
readonly WRAPPER=$DESTDIR/usr/local/bin/carelb
readonly LOGROTATE_FILE=$DESTDIR/etc/logrotate.d/carelb

systemd_running() { [ "$LIVE" -eq 1 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

# --- helpers --------------------------------------------------------------------------------------

# chown only on the live system: in a staging root the carelb user does not exist.
owner() {
  if [ "$LIVE" -eq 1 ]; then chown "$1" "$2"; fi
}

# ensure_dir DIR MODE OWNER: create DIR if missing and set its mode (and owner when live).
ensure_dir() {
  local dir=$1 mode=$2 own=$3 state=exists
  if [ ! -d "$dir" ]; then
    mkdir -p -- "$dir"
    state=created
  fi
  chmod "$mode" "$dir"
  owner "$own" "$dir"
  say "directory $dir ($mode $own): $state"
}

# Set by put_file and sync_dir: 1 when they wrote something, 0 when it was already in place.
# (A status variable, not a return code: `f || x` would switch off set -e inside f.)
WROTE=0

# put_file SRC DEST MODE OWNER: install SRC as DEST unless DEST already has the same content.
put_file() {
  local src=$1 dest=$2 mode=$3 own=$4 state=unchanged
  WROTE=0
  mkdir -p -- "$(dirname -- "$dest")"
  if [ -L "$dest" ] || [ ! -f "$dest" ] || ! cmp -s -- "$src" "$dest"; then
    rm -f -- "$dest"
    cp -- "$src" "$dest.tmp.$$"
    mv -f -- "$dest.tmp.$$" "$dest"
    state=written
    WROTE=1
  fi
  chmod "$mode" "$dest"
  owner "$own" "$dest"
  say "file $dest ($mode): $state"
}

# sync_dir SRC DEST [EXCLUDED-SUBDIR...]: make DEST a copy of SRC, swapped in only if different.
sync_dir() {
  local src=$1 dest=$2 staged
  shift 2
  WROTE=0
  staged=$dest.new.$$
  rm -rf -- "$staged"
  cp -R -- "$src" "$staged"
  local excluded
  for excluded in "$@"; do rm -rf -- "${staged:?}/$excluded"; done
  # Normalise modes so the result does not depend on the build machine's umask.
  chmod -R u=rwX,go=rX "$staged"
  if [ -d "$dest" ] && [ ! -L "$dest" ] && diff -r -q --no-dereference -- "$staged" "$dest" >/dev/null 2>&1; then
    rm -rf -- "$staged"
    say "directory $dest: unchanged"
    return
  fi
  rm -rf -- "$dest.old.$$"
  if [ -e "$dest" ] || [ -L "$dest" ]; then mv -- "$dest" "$dest.old.$$"; fi
  mv -- "$staged" "$dest"
  rm -rf -- "$dest.old.$$"
  WROTE=1
  say "directory $dest: updated from $src"
}

# After put_file or sync_dir of a program file: remember that the running service is outdated.
program_wrote() {
  if [ "$WROTE" -eq 1 ]; then PROGRAM_CHANGED=1; fi
}

# --- install ------------------------------------------------------------------------------------

check_os() {
  local id='' id_like='' pretty=''
  if [ -r /etc/os-release ]; then
    # shellcheck disable=SC1091
    id=$(. /etc/os-release && printf '%s' "${ID:-}")
    # shellcheck disable=SC1091
    id_like=$(. /etc/os-release && printf '%s' "${ID_LIKE:-}")
    # shellcheck disable=SC1091
    pretty=$(. /etc/os-release && printf '%s' "${PRETTY_NAME:-unknown}")
  fi
  case " $id $id_like " in
    *" debian "* | *" ubuntu "*) say "system: $pretty" ;;
    *) say "warning: $pretty is not Debian or Ubuntu; carelb is only tested there" ;;
  esac
}

NODE_VERSION=''
check_node() {
  if [ -z "$NODE_BIN" ]; then
    NODE_BIN=$(command -v node || true)
    [ -n "$NODE_BIN" ] || die "Node.js 20 is required but 'node' is not on PATH: install Node.js 20 (see deploy/README.md), or pass --node /path/to/node"
  fi
  # It is written into the systemd unit and the wrapper: a plain absolute path only.
  [[ $NODE_BIN =~ ^(/[A-Za-z0-9._+-]+)+$ ]] || die "the node binary must be a plain absolute path (got '$NODE_BIN')"
  [ -x "$NODE_BIN" ] || die "Node.js 20 is required but $NODE_BIN is not an executable"
  NODE_VERSION=$("$NODE_BIN" -v 2>/dev/null || true)
  local major=${NODE_VERSION#v}
  major=${major%%.*}
  [ "$major" = 20 ] || die "Node.js 20 is required, but $NODE_BIN is ${NODE_VERSION:-not a working node} (carelb's native front end, uWebSockets.js, is built for Node 20)"
  say "node: $NODE_BIN $NODE_VERSION"
}

check_release() {
  local f
  for f in dist/src/cli.js package.json package-lock.json deploy/carelb.service deploy/logrotate/carelb deploy/examples/carelb.yaml; do
    [ -f "$SRC_DIR/$f" ] || die "$SRC_DIR is not a built release ($f is missing): run 'npm ci && npm run build' there first"
  done
  say "release: $SRC_DIR"
}

create_user() {
  if [ "$LIVE" -eq 0 ]; then
    say "user $SERVICE_USER: skipped (DESTDIR is set: a staging root has no users)"
    return
  fi
  if ! getent group "$SERVICE_USER" >/dev/null; then
    groupadd --system "$SERVICE_USER"
    say "group $SERVICE_USER: created"
  else
    say "group $SERVICE_USER: exists"
  fi
  if ! getent passwd "$SERVICE_USER" >/dev/null; then
    useradd --system --gid "$SERVICE_USER" --no-create-home --home-dir /var/lib/carelb \
      --shell /usr/sbin/nologin --comment 'carelb load balancer' "$SERVICE_USER"
    say "user $SERVICE_USER: created"
  else
    say "user $SERVICE_USER: exists"
  fi
}

PROGRAM_CHANGED=0
install_program() {
  ensure_dir "$APP_DIR" 0755 root:root
  # Compiled tests are not part of a server install.
  sync_dir "$SRC_DIR/dist" "$APP_DIR/dist" test
  program_wrote
  put_file "$SRC_DIR/package.json" "$APP_DIR/package.json" 0644 root:root
  program_wrote
  put_file "$SRC_DIR/package-lock.json" "$APP_DIR/package-lock.json" 0644 root:root
  program_wrote
  local version tmp
  version=$("$NODE_BIN" -p 'require(process.argv[1]).version' "$SRC_DIR/package.json")
  tmp=$(mktemp)
  printf 'carelb %s\n%s\n' "$version" "This directory is managed by deploy/install.sh; --uninstall removes it." >"$tmp"
  put_file "$tmp" "$APP_DIR/$MARKER" 0644 root:root
  rm -f -- "$tmp"
}

install_dependencies() {
  local modules=$APP_DIR/node_modules
  case "$DEPS" in
    link)
      [ -d "$SRC_DIR/node_modules" ] || die "--skip-npm links to $SRC_DIR/node_modules, which does not exist: run 'npm ci' there"
      if [ -L "$modules" ] && [ "$(readlink -- "$modules")" = "$SRC_DIR/node_modules" ]; then
        say "dependencies $modules -> $SRC_DIR/node_modules: unchanged (--skip-npm)"
      else
        rm -rf -- "$modules"
        ln -s -- "$SRC_DIR/node_modules" "$modules"
        PROGRAM_CHANGED=1
        say "dependencies $modules -> $SRC_DIR/node_modules: linked (--skip-npm; keep that tree in place)"
      fi
      ;;
    copy)
      [ -d "$SRC_DIR/node_modules" ] || die "--offline copies $SRC_DIR/node_modules, which does not exist: run 'npm ci --omit=dev' there"
      sync_dir "$SRC_DIR/node_modules" "$modules"
      program_wrote
      ;;
    npm)
      local npm_bin want stamp=$modules/.carelb-npm-ci
      npm_bin=$(dirname -- "$NODE_BIN")/npm
      [ -x "$npm_bin" ] || npm_bin=$(command -v npm || true)
      [ -n "$npm_bin" ] || die "npm is not installed (it comes with Node.js 20); or use --offline"
      want="$(sha256sum <"$APP_DIR/package-lock.json" | cut -d' ' -f1) $NODE_VERSION"
      # Never let npm ci delete through a link left by --skip-npm.
      if [ -L "$modules" ]; then rm -f -- "$modules"; fi
      if [ -f "$stamp" ] && [ "$(cat -- "$stamp")" = "$want" ]; then
        say "dependencies $modules: unchanged (package-lock.json and node version as installed)"
      else
        say "dependencies $modules: npm ci --omit=dev"
        (cd -- "$APP_DIR" && PATH=$(dirname -- "$NODE_BIN"):$PATH "$npm_bin" ci --omit=dev --no-audit --no-fund --loglevel=error)
        printf '%s\n' "$want" >"$stamp"
        PROGRAM_CHANGED=1
      fi
      ;;
  esac
}

install_config() {
  ensure_dir "$ETC_DIR" 0750 "root:$SERVICE_USER"
  ensure_dir "$ETC_DIR/tls" 0750 "root:$SERVICE_USER"
  if [ -e "$ETC_DIR/carelb.yaml" ]; then
    say "file $ETC_DIR/carelb.yaml: kept (an existing config is never overwritten)"
  else
    put_file "$SRC_DIR/deploy/examples/carelb.yaml" "$ETC_DIR/carelb.yaml" 0640 "root:$SERVICE_USER"
  fi
  # The current example sits beside the config, to compare with after an upgrade.
  put_file "$SRC_DIR/deploy/examples/carelb.yaml" "$ETC_DIR/carelb.yaml.example" 0640 "root:$SERVICE_USER"

  local token=$ETC_DIR/admin.token
  if [ -e "$token" ]; then
    say "file $token: kept (an existing admin token is never replaced)"
  else
    (umask 077 && "$NODE_BIN" -e 'process.stdout.write(require("node:crypto").randomBytes(32).toString("hex") + "\n")' >"$token.tmp.$$")
    mv -f -- "$token.tmp.$$" "$token"
    say "file $token: generated (32 random bytes, hex)"
  fi
  chmod 0600 "$token"
  owner "$SERVICE_USER:$SERVICE_USER" "$token"
}

install_runtime_dirs() {
  ensure_dir "$LOG_DIR" 0750 "$SERVICE_USER:$SERVICE_USER"
  ensure_dir "$STATE_DIR" 0750 "$SERVICE_USER:$SERVICE_USER"
}

install_wrapper() {
  local tmp
  tmp=$(mktemp)
  cat >"$tmp" <<EOF
#!/bin/sh
# carelb command line, $WRAPPER_TAG.
exec "$NODE_BIN" "$PREFIX/dist/src/cli.js" "\$@"
EOF
  put_file "$tmp" "$WRAPPER" 0755 root:root
  rm -f -- "$tmp"
}

UNIT_CHANGED=0
install_unit() {
  local tmp
  tmp=$(mktemp)
  sed -e "s|@NODE@|$NODE_BIN|g" -e "s|@PREFIX@|$PREFIX|g" "$SRC_DIR/deploy/carelb.service" >"$tmp"
  put_file "$tmp" "$UNIT_FILE" 0644 root:root
  UNIT_CHANGED=$WROTE
  rm -f -- "$tmp"
  put_file "$SRC_DIR/deploy/logrotate/carelb" "$LOGROTATE_FILE" 0644 root:root
}

reload_systemd() {
  if [ "$LIVE" -eq 0 ]; then
    say "systemd: skipped (DESTDIR is set)"
  elif ! systemd_running; then
    say "systemd: not running here; skipped daemon-reload"
  else
    systemctl daemon-reload
    say "systemd: daemon-reload"
    if systemctl is-active --quiet carelb.service && { [ "$PROGRAM_CHANGED" -eq 1 ] || [ "$UNIT_CHANGED" -eq 1 ]; }; then
      say "note: carelb is running the previous version: systemctl restart carelb"
    fi
  fi
}

do_install() {
  umask 022
  check_os
  check_node
  check_release
  create_user
  install_program
  install_dependencies
  install_config
  install_runtime_dirs
  install_wrapper
  install_unit
  reload_systemd
  say "done. Next: edit /etc/carelb/carelb.yaml; carelb check -c /etc/carelb/carelb.yaml; systemctl enable --now carelb"
}

# --- uninstall ----------------------------------------------------------------------------------

remove_path() {
  if [ -e "$1" ] || [ -L "$1" ]; then
    rm -rf -- "$1"
    say "removed $1"
  else
    say "absent $1"
  fi
}

do_uninstall() {
  if systemd_running && [ -f "$UNIT_FILE" ]; then
    systemctl disable --now carelb.service >/dev/null 2>&1 || true
    say "systemd: carelb.service stopped and disabled"
  fi
  if [ -e "$APP_DIR" ]; then
    [ -f "$APP_DIR/$MARKER" ] || die "refusing to remove $APP_DIR: it has no $MARKER file, so this installer did not create it"
    remove_path "$APP_DIR"
  else
    say "absent $APP_DIR"
  fi
  remove_path "$UNIT_FILE"
  if [ -f "$WRAPPER" ] && ! grep -q -- "$WRAPPER_TAG" "$WRAPPER"; then
    say "kept $WRAPPER: this installer did not write it"
  else
    remove_path "$WRAPPER"
  fi
  remove_path "$LOGROTATE_FILE"
  if systemd_running; then
    systemctl daemon-reload
    say "systemd: daemon-reload"
  fi

  if [ "$ACTION" = purge ]; then
    remove_path "$ETC_DIR"
    remove_path "$LOG_DIR"
    remove_path "$STATE_DIR"
    if [ "$LIVE" -eq 0 ]; then
      say "user $SERVICE_USER: skipped (DESTDIR is set)"
    else
      if getent passwd "$SERVICE_USER" >/dev/null; then
        userdel "$SERVICE_USER"
        say "user $SERVICE_USER: removed"
      fi
      if getent group "$SERVICE_USER" >/dev/null; then
        groupdel "$SERVICE_USER"
        say "group $SERVICE_USER: removed"
      fi
    fi
  else
    say "kept $ETC_DIR, $LOG_DIR and $STATE_DIR (remove them and the $SERVICE_USER user with --purge)"
  fi
  say "done"
}

case "$ACTION" in
  install) do_install ;;
  uninstall | purge) do_uninstall ;;
esac
