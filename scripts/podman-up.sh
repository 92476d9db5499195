#!/usr/bin/env bash
# Make Podman's Docker-compatible API answer on a socket, for tests/runtimes/test_podman.py.
#
# - installs Debian's podman, runc and catatonit when podman is missing (apt would pick crun, which fails
#   on a host with hybrid cgroups; catatonit is the init that Docker's `init: true` needs under Podman);
# - writes its own containers.conf (CONTAINERS_CONF, nothing under /etc is changed): runc, and ulimits
#   this host can grant (Podman as root raises nofile/nproc, which fails without CAP_SYS_RESOURCE);
# - starts `podman system service` on the socket when nothing answers there.
# Prints the socket's path on stdout; exit 0 when the API answers, non-zero with one line on stderr when
# it cannot. --no-install: never install. Where: $AIMA_PODMAN_DIR (default /tmp/aima-podman).
set -uo pipefail

install=1
[ "${1:-}" = "--no-install" ] && install=0
dir=${AIMA_PODMAN_DIR:-/tmp/aima-podman}
sock=$dir/podman.sock
say() { echo "podman-up: $*" >&2; }

answers() { [ -S "$sock" ] && timeout 5 podman --remote --url "unix://$sock" version >/dev/null 2>&1; }

if command -v podman >/dev/null 2>&1 && answers; then
  echo "$sock"
  exit 0
fi
if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1 \
    || ! command -v catatonit >/dev/null 2>&1; then
  if [ "$install" = 0 ]; then
    say "podman, runc or catatonit is not installed (scripts/podman-up.sh without --no-install installs them)"
    exit 1
  fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "podman is not installed; install podman, runc and catatonit (Debian: apt-get install podman runc catatonit)"
    exit 1
  fi
  say "installing podman, runc and catatonit (Debian)"
  start=$(date +%s)
  export DEBIAN_FRONTEND=noninteractive
  pkgs=(podman runc catatonit)
  if ! apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/tmp/podman-up-apt.log 2>&1; then
    apt-get update -q >>/tmp/podman-up-apt.log 2>&1
    apt-get install -y -q --no-install-recommends "${pkgs[@]}" >>/tmp/podman-up-apt.log 2>&1 || {
      say "apt-get install ${pkgs[*]} failed (see /tmp/podman-up-apt.log)"; exit 1; }
  fi
  say "installed podman in $(( $(date +%s) - start ))s"
fi
mkdir -p "$dir" || { say "cannot create $dir"; exit 1; }
hard_nofile=$(ulimit -Hn)
hard_nproc=$(ulimit -Hu)
# conmon runs with a hard nproc of 32768 here: no container may ask for more
[ "$hard_nproc" = unlimited ] || [ "$hard_nproc" -gt 32768 ] && hard_nproc=32768
[ "$hard_nofile" = unlimited ] && hard_nofile=1048576
cat >"$dir/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$hard_nofile:$hard_nofile", "nproc=$hard_nproc:$hard_nproc"]
[engine]
runtime = "runc"
EOF
# A service killed with -9 leaves its socket behind.
rm -f "$sock"
say "starting podman system service on unix://$sock (log: $dir/service.log)"
CONTAINERS_CONF=$dir/containers.conf nohup podman system service --time=0 "unix://$sock" \
  >>"$dir/service.log" 2>&1 </dev/null &
echo $! >"$dir/service.pid"
for _ in $(seq 1 60); do
  if answers; then
    echo "$sock"
    exit 0
  fi
  sleep 0.25
done
say "podman system service did not answer on $sock within 15 s: $(tail -1 "$dir/service.log" 2>/dev/null)"
exit 1
