# Background processes owned by the harness: started with a pid file, ended by that pid only.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PIDS="$KOMPILE_STATE/pids"
LOGS="$KOMPILE_STATE/logs"

# Is the process in the pid file alive and still the program we started?
running() {
  local name=$1 pidfile="$PIDS/$1.pid" pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [ -d "/proc/$pid" ] || return 1
  grep -qF -- "$(cat "$PIDS/$name.exe")" "/proc/$pid/cmdline" 2>/dev/null
}

start_process() { # name program args...
  local name=$1; shift
  mkdir -p "$PIDS" "$LOGS"
  if running "$name"; then
    # A rebuilt binary replaces the file under a running process, and a changed recipe changes
    # its flags: either way restart it, otherwise leave it be.
    if [[ "$(readlink "/proc/$(cat "$PIDS/$name.pid")/exe")" != *" (deleted)" ]] \
      && [ "$(cat "$PIDS/$name.cmd" 2>/dev/null)" = "$*" ]; then return 0; fi
    log "$name's binary or flags changed"
    stop_process "$name"
  fi
  echo "$1" >"$PIDS/$name.exe"
  echo "$*" >"$PIDS/$name.cmd"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! >"$PIDS/$name.pid"
  log "started $name (pid $!, log $LOGS/$name.log)"
}

stop_process() {
  local name=$1 pid
  if running "$name"; then
    pid=$(cat "$PIDS/$name.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
    [ -d "/proc/$pid" ] && kill -9 "$pid" 2>/dev/null || true
    log "stopped $name (pid $pid)"
  fi
  rm -f "$PIDS/$name.pid" "$PIDS/$name.exe" "$PIDS/$name.cmd"
}

wait_for() { # description seconds command...
  local what=$1 seconds=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.5
  done
  log "$what is up"
}
