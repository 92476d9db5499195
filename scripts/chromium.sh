#!/usr/bin/env bash
# Debian's chromium, for the web page's browser tests (tests/surfaces/ui, driven by Playwright) and bench/ui.py.
#
# Installs the distribution's package when no chromium is on PATH (as root, with apt-get); Playwright's own
# browser downloads are never used. Exit 0 when a chromium runs; non-zero with one line on stderr otherwise.
set -uo pipefail

say() { echo "chromium: $*" >&2; }

if ! command -v chromium >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
    say "not installed, and this is no Debian root shell to install it (apt-get install -y chromium)"
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || true
  if ! apt-get install -y -qq chromium >/tmp/chromium-install.log 2>&1; then
    say "apt-get install chromium failed: $(tail -n 3 /tmp/chromium-install.log | tr '\n' ' ')"
    exit 1
  fi
fi
if ! chromium --headless --no-sandbox --disable-gpu --version >/dev/null 2>&1; then
  say "installed but does not start: $(chromium --headless --no-sandbox --version 2>&1 | tail -n 1)"
  exit 1
fi
exit 0
