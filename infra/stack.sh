#!/usr/bin/env bash
# The whole local stack: services (Kafka, PostgreSQL, Redis, Jaeger as the
# OTLP trace backend, a local S3 endpoint) and, with `up`, the pipeline
# processes (gateway, streams worker, PostgreSQL, Tempo and archive sinks).
# Usage: infra/stack.sh services|up|down|status
set -euo pipefail
source "$(dirname "$0")/common.sh"

INFRA="$REPO_DIR/infra"
LLMOBS="$REPO_DIR/.venv/bin/llmobs"
RUN_DIR="$LOCAL_DIR/run"
PROCESSES=(gateway streams sink sink-tempo sink-archive sink-metrics)
mkdir -p "$RUN_DIR"

services() {
  "$INFRA/kafka.sh" start
  "$INFRA/postgres.sh" start
  "$INFRA/redis.sh" start
  "$INFRA/jaeger.sh" start
  "$INFRA/s3.sh" start
  [[ -x $LLMOBS ]] || die "run 'make install' first: $LLMOBS is missing"
  "$LLMOBS" topics
  "$LLMOBS" migrate
}

start_process() {
  local name=$1; shift
  local pid_file="$RUN_DIR/$name.pid"
  if pid_alive "$pid_file"; then say "$name already running"; return 0; fi
  say "starting $name (log $LOG_DIR/$name.log)"
  nohup "$LLMOBS" "$name" "$@" >>"$LOG_DIR/$name.log" 2>&1 &
  echo $! >"$pid_file"
}

up() {
  services
  start_process gateway
  start_process streams --data-dir "$LOCAL_DIR/streams"
  start_process sink --metrics-address 127.0.0.1:6067
  # Kept traces go to Jaeger locally; to Tempo's distributor in production.
  start_process sink-tempo --otlp-endpoint http://127.0.0.1:24318 \
    --metrics-address 127.0.0.1:6068
  start_process sink-archive --archive-url "$LOCAL_DIR/archive" \
    --metrics-address 127.0.0.1:6069
  start_process sink-metrics --metrics-address 127.0.0.1:6070
  wait_for "gateway" 60 port_open 4318
  wait_for "streams worker" 90 port_open 6066
  for name in "${PROCESSES[@]}"; do
    pid_alive "$RUN_DIR/$name.pid" || die "$name exited, see $LOG_DIR/$name.log"
  done
  say "pipeline up: OTLP/HTTP :4318, OTLP/gRPC :4317, streams metrics :6066"
  say "traces in Jaeger http://127.0.0.1:16686, archive in $LOCAL_DIR/archive"
}

down() {
  for name in "${PROCESSES[@]}"; do stop_pid "$RUN_DIR/$name.pid" "$name"; done
  "$INFRA/s3.sh" stop
  "$INFRA/jaeger.sh" stop
  "$INFRA/redis.sh" stop
  "$INFRA/postgres.sh" stop
  "$INFRA/kafka.sh" stop
}

status() {
  local rc=0
  "$INFRA/kafka.sh" status || rc=1
  "$INFRA/postgres.sh" status || rc=1
  "$INFRA/redis.sh" status || rc=1
  "$INFRA/jaeger.sh" status || rc=1
  "$INFRA/s3.sh" status || rc=1
  for name in "${PROCESSES[@]}"; do
    if pid_alive "$RUN_DIR/$name.pid"; then echo "$name: running (pid $(cat "$RUN_DIR/$name.pid"))"
    else echo "$name: stopped"; fi
  done
  return $rc
}

case "${1:-}" in
  services|up|down|status) "$1" ;;
  *) echo "usage: $0 services|up|down|status" >&2; exit 2 ;;
esac
