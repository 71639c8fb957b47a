#!/usr/bin/env bash
# Redis from Debian's packages, data and logs under .local/redis.
# Usage: infra/redis.sh install|start|stop|status
set -euo pipefail
source "$(dirname "$0")/common.sh"

REDIS_PORT="${LLMOBS_REDIS_PORT:-6379}"
REDIS_HOME="$LOCAL_DIR/redis"
PID_FILE="$REDIS_HOME/redis.pid"

install() { command -v redis-server >/dev/null || apt_install redis-server; }

start() {
  install
  mkdir -p "$REDIS_HOME"
  if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    say "redis already running on :$REDIS_PORT"; return 0
  fi
  say "starting redis on 127.0.0.1:$REDIS_PORT"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$REDIS_HOME" \
    --daemonize yes --pidfile "$PID_FILE" --logfile "$LOG_DIR/redis.log" \
    --appendonly yes --save ''
  wait_for "redis" 30 redis-cli -p "$REDIS_PORT" ping
  say "redis ready"
}

# Only the server this script started (its pid file) is stopped.
stop() { stop_pid "$PID_FILE" redis; }

status() {
  if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then echo "redis: running on 127.0.0.1:$REDIS_PORT"
  else echo "redis: stopped"; return 1; fi
}

case "${1:-}" in
  install|start|stop|status) "$1" ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
