#!/usr/bin/env bash
# Apache Kafka, single node in KRaft mode, jars resolved from Maven Central.
# Usage: infra/kafka.sh install|start|stop|status
set -euo pipefail
source "$(dirname "$0")/common.sh"

KAFKA_PORT="${LLMOBS_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${LLMOBS_KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_HOME="$LOCAL_DIR/kafka"
LIBS="$KAFKA_HOME/libs"
PID_FILE="$KAFKA_HOME/kafka.pid"
CONFIG="$KAFKA_HOME/server.properties"

JAVA_OPTS=(-Xms256m -Xmx1g -XX:+UseG1GC
  -Dlog4j2.configurationFile="$REPO_DIR/infra/kafka/log4j2.properties"
  -Dkafka.logs.dir="$LOG_DIR" -cp "$LIBS/*")

java_run() { java "${JAVA_OPTS[@]}" "$@"; }

install() {
  command -v java >/dev/null || die "java 17 is required"
  command -v mvn >/dev/null || apt_install maven
  if [[ -f $LIBS/.resolved ]] && [[ $LIBS/.resolved -nt $REPO_DIR/infra/kafka/pom.xml ]]; then
    return 0
  fi
  say "resolving Kafka jars from Maven Central"
  mvn -q -B -Dstyle.color=never -f "$REPO_DIR/infra/kafka/pom.xml" -Dlibs.dir="$LIBS" package
  touch "$LIBS/.resolved"
}

write_config() {
  mkdir -p "$KAFKA_HOME/data"
  cat > "$CONFIG" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$KAFKA_HOME/data
num.partitions=4
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
message.max.bytes=16777216
log.retention.hours=24
log.segment.bytes=268435456
PROPS
}

start() {
  install
  if pid_alive "$PID_FILE"; then say "kafka already running on :$KAFKA_PORT"; return 0; fi
  if port_open "$KAFKA_PORT"; then
    say "something else already listens on :$KAFKA_PORT; using it as the broker"
    return 0
  fi
  write_config
  if [[ ! -f $KAFKA_HOME/data/meta.properties ]]; then
    say "formatting KRaft storage"
    java_run kafka.tools.StorageTool format -t "$(java_run kafka.tools.StorageTool random-uuid)" \
      -c "$CONFIG" >"$LOG_DIR/kafka-format.log" 2>&1 || die "kafka storage format failed, see $LOG_DIR/kafka-format.log"
  fi
  say "starting kafka on 127.0.0.1:$KAFKA_PORT"
  nohup java "${JAVA_OPTS[@]}" kafka.Kafka "$CONFIG" >"$LOG_DIR/kafka.out" 2>&1 &
  echo $! >"$PID_FILE"
  wait_for "kafka" 90 port_open "$KAFKA_PORT"
  wait_for "kafka metadata" 60 grep -q "Kafka Server started" "$LOG_DIR/kafka.out" "$LOG_DIR/kafka.log"
  say "kafka ready"
}

stop() { stop_pid "$PID_FILE" kafka; }

status() {
  if pid_alive "$PID_FILE"; then echo "kafka: running (pid $(cat "$PID_FILE")) on 127.0.0.1:$KAFKA_PORT"
  else echo "kafka: stopped"; return 1; fi
}

case "${1:-}" in
  install|start|stop|status) "$1" ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
