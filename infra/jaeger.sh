#!/usr/bin/env bash
# Jaeger v2 (cmd/jaeger, Apache-2.0) built from the Go module proxy: the real
# OTLP trace backend the Tempo sink is tested against. In-memory storage;
# OTLP on 24317 (gRPC) / 24318 (HTTP), query API on 16686.
# Usage: infra/jaeger.sh install|start|stop|status
set -euo pipefail
source "$(dirname "$0")/common.sh"

JAEGER_VERSION="v1.75.0"
JAEGER_MODULE="github.com/jaegertracing/jaeger"
JAEGER_BIN="$LOCAL_DIR/bin/jaeger"
JAEGER_CONFIG="$REPO_DIR/infra/jaeger/config.yaml"
PID_FILE="$LOCAL_DIR/run/jaeger.pid"
QUERY_URL="http://127.0.0.1:16686"
HEALTH_URL="http://127.0.0.1:13133/status"

# `go install module@version` refuses Jaeger because its go.mod carries
# replace directives, so the module is fetched from the proxy and built as
# the main module, which honours them. A cold Go cache takes minutes.
install() {
  [[ -x $JAEGER_BIN ]] && return 0
  command -v go >/dev/null || die "Go is needed to build Jaeger (go.dev/dl)"
  say "building jaeger $JAEGER_VERSION into $JAEGER_BIN (minutes on a cold Go cache)"
  local dir
  dir=$(cd /tmp && go mod download -json "$JAEGER_MODULE@$JAEGER_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -n $dir && -d $dir ]] || die "cannot download $JAEGER_MODULE@$JAEGER_VERSION"
  mkdir -p "$(dirname "$JAEGER_BIN")"
  (cd "$dir" && GOFLAGS=-buildvcs=false go build -trimpath -o "$JAEGER_BIN.tmp" ./cmd/jaeger) \
    >>"$LOG_DIR/jaeger-build.log" 2>&1 \
    || die "jaeger build failed, see $LOG_DIR/jaeger-build.log"
  mv "$JAEGER_BIN.tmp" "$JAEGER_BIN"
}

start() {
  install
  need_curl
  mkdir -p "$(dirname "$PID_FILE")"
  if curl -sf "$QUERY_URL/api/services" >/dev/null 2>&1; then
    say "jaeger already running on :16686"; return 0
  fi
  say "starting jaeger (OTLP :24317/:24318, query :16686)"
  nohup "$JAEGER_BIN" --config "$JAEGER_CONFIG" >>"$LOG_DIR/jaeger.log" 2>&1 &
  echo $! >"$PID_FILE"
  wait_for "jaeger" 60 curl -sf "$QUERY_URL/api/services"
  say "jaeger ready"
}

# Only the process this script started (its pid file) is stopped.
stop() { stop_pid "$PID_FILE" jaeger; }

status() {
  if curl -sf "$QUERY_URL/api/services" >/dev/null 2>&1; then
    echo "jaeger: running, OTLP/HTTP 127.0.0.1:24318, query $QUERY_URL"
  else echo "jaeger: stopped"; return 1; fi
}

case "${1:-}" in
  install|start|stop|status) "$1" ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
