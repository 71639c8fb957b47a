# Shared helpers for the local-stack scripts. Sourced, never run.
# Everything a service writes (data, logs, pid files) lives under $LOCAL_DIR,
# which git ignores.

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL_DIR="${LLMOBS_LOCAL_DIR:-$REPO_DIR/.local}"
LOG_DIR="$LOCAL_DIR/logs"
mkdir -p "$LOG_DIR"

say() { printf '[infra] %s\n' "$*" >&2; }
die() { printf '[infra] error: %s\n' "$*" >&2; exit 1; }

# wait_for DESCRIPTION TIMEOUT_S COMMAND...: poll COMMAND until it succeeds.
wait_for() {
  local what=$1 timeout_s=$2; shift 2
  local deadline=$((SECONDS + timeout_s))
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS >= deadline )); then
      die "$what not ready after ${timeout_s}s (logs in $LOG_DIR)"
    fi
    sleep 0.5
  done
}

# port_open PORT: true when a process accepts connections on 127.0.0.1:PORT.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pid_alive FILE: true when FILE names a running process.
# A killed child nobody has reaped yet (a zombie) still answers kill -0, so
# the process state is read too.
pid_alive() {
  [[ -f $1 ]] || return 1
  local pid state
  pid=$(cat "$1")
  kill -0 "$pid" 2>/dev/null || return 1
  state=$(ps -o stat= -p "$pid" 2>/dev/null) || return 1
  [[ $state != Z* ]]
}

# stop_pid FILE NAME: TERM the process in FILE, KILL it after 30 s.
stop_pid() {
  local file=$1 name=$2 pid
  if ! pid_alive "$file"; then rm -f "$file"; return 0; fi
  pid=$(cat "$file")
  say "stopping $name (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$file"; return 0; }
    sleep 0.5
  done
  say "$name did not stop in 30s, killing it"
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$file"
}

# need_curl: health checks of HTTP services use curl.
need_curl() { command -v curl >/dev/null || apt_install curl; }

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  (( ${#missing[@]} == 0 )) && return 0
  say "installing ${missing[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
