#!/usr/bin/env bash
# Make a Docker daemon answer on this machine, for the docker runtime's tests (and `make docker`).
#
# - installs Debian's docker.io when dockerd is missing (no systemd here, so nothing starts it);
# - starts dockerd when none runs, after removing a stale pid file that a killed daemon leaves;
# - waits up to 60 s for `docker info` (a daemon killed with -9 leaves containers it stops first).
# With DOCKER_HOST pointing elsewhere (another daemon, Podman's socket) it only waits for that one.
# Exit 0 when a daemon answers; non-zero with one line on stderr when none can be had.
# --no-install: start an installed dockerd, never install one (what `make test` does).
set -uo pipefail

install=1
[ "${1:-}" = "--no-install" ] && install=0
log=${AIMA_DOCKERD_LOG:-/tmp/dockerd.log}
say() { echo "dockerd-up: $*" >&2; }

answers() { timeout 5 docker info >/dev/null 2>&1; }

if answers; then
  exit 0
fi
if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST#unix:///var/run/docker.sock}" = "$DOCKER_HOST" ]; then
  say "DOCKER_HOST=$DOCKER_HOST does not answer; start that daemon (this script only starts a local dockerd)"
  exit 1
fi
if ! command -v dockerd >/dev/null 2>&1; then
  if [ "$install" = 0 ]; then
    say "dockerd is not installed (scripts/dockerd-up.sh without --no-install installs Debian's docker.io)"
    exit 1
  fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "dockerd is not installed; install Docker (Debian: apt-get install docker.io)"
    exit 1
  fi
  say "installing docker.io (Debian)"
  start=$(date +%s)
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends docker.io >/tmp/dockerd-up-apt.log 2>&1; then
    apt-get update -q >>/tmp/dockerd-up-apt.log 2>&1
    apt-get install -y -q --no-install-recommends docker.io >>/tmp/dockerd-up-apt.log 2>&1 || {
      say "apt-get install docker.io failed (see /tmp/dockerd-up-apt.log)"; tail -5 /tmp/dockerd-up-apt.log >&2; exit 1; }
  fi
  say "installed docker.io in $(( $(date +%s) - start ))s"
fi
if ! command -v docker >/dev/null 2>&1; then
  say "no docker client on PATH"
  exit 1
fi
alive() {  # a process that is not a zombie (a killed one lingers as a zombie until reaped)
  case "$(ps -o stat= -p "$1" 2>/dev/null)" in Z*|"") return 1 ;; *) return 0 ;; esac
}
live_dockerd() {
  local p
  for p in $(pgrep -x dockerd); do
    alive "$p" && return 0
  done
  return 1
}
start_dockerd() {
  # A dockerd killed with -9 leaves its pid file behind, and the next one refuses to start.
  rm -f /var/run/docker.pid
  say "starting dockerd (log: $log)"
  nohup dockerd >>"$log" 2>&1 </dev/null &
  pid=$!
}
pid=""
if ! live_dockerd; then
  start_dockerd
fi
# Right after a dockerd was killed its containerd may still be going away, and a new dockerd then gives
# up on its own containerd ("timeout waiting for containerd to start"): start it again, three times at most.
tries=1
for _ in $(seq 1 120); do
  if answers; then
    say "dockerd is ready"
    exit 0
  fi
  if [ -n "$pid" ] && ! alive "$pid" && [ "$tries" -lt 3 ]; then
    tries=$((tries + 1))
    say "dockerd exited while starting; starting it again (try $tries)"
    sleep 1
    start_dockerd
  fi
  sleep 0.5
done
say "dockerd did not answer within 60 s; last lines of $log:"
tail -5 "$log" >&2 2>/dev/null
exit 1
