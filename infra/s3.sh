#!/usr/bin/env bash
# An S3-compatible endpoint for the archive sink's tests: moto's standalone
# server (PyPI `moto[server]`, in the dev extra) from the project's venv,
# in-memory, on 127.0.0.1:9000.
# Usage: infra/s3.sh install|start|stop|status
set -euo pipefail
source "$(dirname "$0")/common.sh"

S3_PORT="${LLMOBS_S3_PORT:-9000}"
MOTO="$REPO_DIR/.venv/bin/moto_server"
PID_FILE="$LOCAL_DIR/run/s3.pid"
S3_URL="http://127.0.0.1:$S3_PORT"

install() {
  [[ -x $MOTO ]] || die "run 'make install' first: $MOTO is missing"
}

start() {
  install
  need_curl
  mkdir -p "$(dirname "$PID_FILE")"
  if curl -sf "$S3_URL/moto-api/" >/dev/null 2>&1; then
    say "s3 (moto) already running on :$S3_PORT"; return 0
  fi
  say "starting s3 (moto) on $S3_URL"
  nohup "$MOTO" -H 127.0.0.1 -p "$S3_PORT" >>"$LOG_DIR/s3.log" 2>&1 &
  echo $! >"$PID_FILE"
  wait_for "s3 (moto)" 60 curl -sf "$S3_URL/moto-api/"
  say "s3 (moto) ready"
}

# Only the server this script started (its pid file) is stopped.
stop() { stop_pid "$PID_FILE" s3; }

status() {
  if curl -sf "$S3_URL/moto-api/" >/dev/null 2>&1; then echo "s3 (moto): running on $S3_URL"
  else echo "s3 (moto): stopped"; return 1; fi
}

case "${1:-}" in
  install|start|stop|status) "$1" ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
