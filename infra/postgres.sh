#!/usr/bin/env bash
# PostgreSQL from Debian's packages, one cluster under .local/postgres.
# TimescaleDB is used when its extension is installed; the schema code detects it.
# Usage: infra/postgres.sh install|start|stop|status
set -euo pipefail
source "$(dirname "$0")/common.sh"

PG_PORT="${LLMOBS_PG_PORT:-5432}"
PG_DB="${LLMOBS_PG_DB:-llmobs}"
PG_USER="${LLMOBS_PG_USER:-llmobs}"
PG_PASSWORD="${LLMOBS_PG_PASSWORD:-llmobs}"
PG_HOME="$LOCAL_DIR/postgres"
PG_DATA="$PG_HOME/data"
RUN_AS=postgres

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [[ -n $dir ]] || die "no PostgreSQL server binaries found"
  echo "$dir"
}

as_pg() {
  if [[ $(id -u) == 0 ]]; then runuser -u "$RUN_AS" -- "$@"; else "$@"; fi
}

install() {
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || apt_install postgresql postgresql-contrib
  [[ $(id -u) == 0 ]] || RUN_AS=$(id -un)
}

start() {
  install
  local bin; bin=$(pg_bin)
  mkdir -p "$PG_HOME"
  if [[ $(id -u) == 0 ]]; then chown "$RUN_AS" "$PG_HOME" "$LOG_DIR"; fi
  if [[ ! -f $PG_DATA/PG_VERSION ]]; then
    say "initialising PostgreSQL cluster in $PG_DATA"
    as_pg "$bin/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
      >"$LOG_DIR/postgres-initdb.log" 2>&1 || die "initdb failed, see $LOG_DIR/postgres-initdb.log"
    cat >>"$PG_DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_HOME'
max_connections = 200
shared_buffers = 256MB
synchronous_commit = on
CONF
    if ls /usr/share/postgresql/*/extension/timescaledb.control >/dev/null 2>&1; then
      echo "shared_preload_libraries = 'timescaledb'" >>"$PG_DATA/postgresql.conf"
    fi
  fi
  if as_pg "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
    say "postgres already running on :$PG_PORT"
  elif port_open "$PG_PORT"; then
    say "something else already listens on :$PG_PORT; using it as the server"
  else
    say "starting postgres on 127.0.0.1:$PG_PORT"
    as_pg "$bin/pg_ctl" -D "$PG_DATA" -l "$LOG_DIR/postgres.log" -w -t 60 start >/dev/null
  fi
  wait_for "postgres" 60 "$bin/pg_isready" -h 127.0.0.1 -p "$PG_PORT"
  psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'" | grep -q 1 ||
    psql_admin -c "CREATE ROLE $PG_USER LOGIN SUPERUSER PASSWORD '$PG_PASSWORD'" >/dev/null
  psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" | grep -q 1 ||
    psql_admin -c "CREATE DATABASE $PG_DB OWNER $PG_USER" >/dev/null
  say "postgres ready: postgresql://$PG_USER:***@127.0.0.1:$PG_PORT/$PG_DB"
}

psql_admin() { psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }

stop() {
  [[ -f $PG_DATA/PG_VERSION ]] || return 0
  local bin; bin=$(pg_bin)
  if as_pg "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
    say "stopping postgres"
    as_pg "$bin/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null
  fi
}

status() {
  local bin; bin=$(pg_bin)
  if [[ -f $PG_DATA/PG_VERSION ]] && as_pg "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
    echo "postgres: running on 127.0.0.1:$PG_PORT, database $PG_DB"
  else echo "postgres: stopped"; return 1; fi
}

case "${1:-}" in
  install|start|stop|status) "$1" ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
