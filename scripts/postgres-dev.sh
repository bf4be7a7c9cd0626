#!/usr/bin/env bash
# A throw-away PostgreSQL cluster on loopback: for trying the team tracking server on a laptop
# and for its end-to-end test. Trust authentication on 127.0.0.1 and no backups: a team runs a
# real PostgreSQL (a managed one, or Debian's `postgresql` service) instead.
#
#   scripts/postgres-dev.sh bindir                 the folder holding initdb and pg_ctl (exit 3: none)
#   scripts/postgres-dev.sh start DIR PORT DB...   create the cluster in DIR (once), start it on
#                                                  127.0.0.1:PORT, create the databases, print the
#                                                  first one's URI
#   scripts/postgres-dev.sh stop DIR
#
# PostgreSQL refuses to run as root: as root, the cluster runs as PG_OWNER (default: the
# `postgres` user Debian's package creates, else `nobody`), and DIR is handed to that user.
set -euo pipefail

DB_USER=imgclf

die() {
  echo "postgres-dev: $*" >&2
  exit 2
}

find_bindir() {
  local initdb dir
  if initdb=$(command -v initdb) && command -v pg_ctl >/dev/null; then
    dirname "$(readlink -f "$initdb")"
    return 0
  fi
  # Debian and Ubuntu keep the server programs off PATH, one folder per major version.
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
      echo "$dir"
      return 0
    fi
  done
  return 3
}

owner() {
  if [ -n "${PG_OWNER:-}" ]; then
    echo "$PG_OWNER"
  elif id -u postgres >/dev/null 2>&1; then
    echo postgres
  else
    echo nobody
  fi
}

# Run a command as the cluster's owner.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$(owner)" -- "$@"
  else
    "$@"
  fi
}

bindir_or_die() {
  find_bindir || die "no PostgreSQL server programs (initdb, pg_ctl) on PATH or in" \
    "/usr/lib/postgresql/*/bin: install them (Debian: apt-get install postgresql)"
}

start() {
  [ $# -ge 2 ] || die "usage: $0 start DIR PORT [DB...]"
  local dir port bin db out
  dir=$(readlink -m "$1")
  port=$2
  shift 2
  bin=$(bindir_or_die)
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then
    chown "$(owner)" "$dir"
    as_owner test -w "$dir" ||
      die "user $(owner) cannot write $dir (a parent folder is closed to it): choose another DIR"
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_owner "$bin/initdb" --pgdata "$dir/data" --username "$DB_USER" --auth trust \
      --encoding UTF8 --no-instructions >"$dir/initdb.log" 2>&1 ||
      die "initdb failed: $(tail -n 5 "$dir/initdb.log")"
  fi
  # TCP on loopback only; no Unix socket, whose path length limit long temp folders can exceed.
  if ! as_owner "$bin/pg_ctl" --pgdata "$dir/data" status >/dev/null 2>&1; then
    as_owner "$bin/pg_ctl" --pgdata "$dir/data" --log "$dir/server.log" --wait --timeout 60 \
      -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=''" start \
      >/dev/null || die "PostgreSQL did not start: $(tail -n 5 "$dir/server.log")"
  fi
  for db in "$@"; do
    if ! out=$(as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U "$DB_USER" "$db" 2>&1); then
      case "$out" in
        *"already exists"*) ;;
        *) die "createdb $db failed: $out" ;;
      esac
    fi
  done
  echo "postgresql://$DB_USER@127.0.0.1:$port/${1:-postgres}"
}

stop() {
  [ $# -eq 1 ] || die "usage: $0 stop DIR"
  local dir bin
  dir=$(readlink -m "$1")
  bin=$(bindir_or_die)
  as_owner "$bin/pg_ctl" --pgdata "$dir/data" --mode fast --wait stop >/dev/null
}

case "${1:-}" in
  bindir) find_bindir ;;
  start) shift && start "$@" ;;
  stop) shift && stop "$@" ;;
  *) die "usage: $0 {bindir | start DIR PORT [DB...] | stop DIR}" ;;
esac
