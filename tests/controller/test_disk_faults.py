"""Faults on disk: engine logs rotate at a size cap (AIMA_LOG_MAX_BYTES, AIMA_LOG_KEEP kept files), a disk that
fills under the logs loses log lines but nothing else, and the database locked by another process for 10 s
(a backup) keeps the daemon serving /v1 while a change waits for the lock and then lands whole."""

from __future__ import annotations

import shlex
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.daemon import PY, Daemon, wait_until

MODEL = "chatty"


def chatty_cmd(line_bytes: int = 200, every_s: float = 0.005) -> str:
    """The echo engine, with a writer in its process group that fills its log (about 40 KB/s)."""
    writer = (f"import sys, time\nline = 'x' * {line_bytes}\nwhile True:\n"
              f"    try:\n        print(line, flush=True)\n    except OSError:\n        pass\n"
              f"    time.sleep({every_s})")
    engine = f"{shlex.quote(PY)} -m aima.engines.echo --port {{port}} --model {MODEL}"
    return f"sh -c {shlex.quote(f'{shlex.quote(PY)} -c {shlex.quote(writer)} & exec {engine}')}"


def chat(d: Daemon, timeout: float = 5) -> float:
    t0 = time.monotonic()
    r = httpx.post(f"{d.url}/v1/chat/completions", timeout=timeout, trust_env=False,
                   json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    return time.monotonic() - t0


@pytest.fixture
def daemon_env() -> dict[str, str]:
    return {"AIMA_LOG_MAX_BYTES": "65536", "AIMA_LOG_KEEP": "2", "AIMA_RECONCILE_INTERVAL_S": "0.2"}


def test_engine_logs_rotate_at_the_cap_keeping_as_many_files_as_asked(daemon: Daemon) -> None:
    svc = daemon.create(MODEL, command=chatty_cmd(), name="chatty")
    assert daemon.op("service.start", service="chatty", timeout_s=60)["outcome"] == "ready"
    log = Path(daemon.get("chatty")["instances"][0]["log_path"])
    wait_until(lambda: log.with_name(log.name + ".2").exists(), timeout=40, interval=0.2)
    time.sleep(3)  # a few more rotations
    kept = sorted(p.name for p in log.parent.glob(log.name + ".*"))
    assert kept == [log.name + ".1", log.name + ".2"], kept  # AIMA_LOG_KEEP=2: never a third
    # rotated every 2 s (10 ticks) at 40 KB/s: never far past the cap
    assert log.stat().st_size < 65536 + 200_000 and all(
        (log.parent / k).stat().st_size >= 65536 for k in kept)
    out = daemon.op("service.logs", service="chatty", lines=5)
    assert out["lines"] and all(ln.startswith("x") for ln in out["lines"][-3:])
    assert daemon.get("chatty")["ready"] and svc["id"]
    chat(daemon)


@pytest.fixture
def small_logs(aima_home: Path) -> Iterator[Path]:
    """AIMA_HOME/logs on a 512 KiB tmpfs (needs root)."""
    logs = aima_home / "logs"
    logs.mkdir(parents=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(logs)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}); needs root")
    try:
        yield logs
    finally:
        subprocess.run(["umount", "-l", str(logs)], capture_output=True)


def test_a_full_disk_under_the_logs_loses_lines_not_the_service(small_logs: Path, daemon: Daemon) -> None:
    (small_logs / "filler").write_bytes(b"\0" * 300_000)
    daemon.create(MODEL, command=chatty_cmd(line_bytes=1000, every_s=0.002), name="chatty")
    assert daemon.op("service.start", service="chatty", timeout_s=60)["outcome"] == "ready"
    log = Path(daemon.get("chatty")["instances"][0]["log_path"])
    # The disk fills (the writer gets ENOSPC); rotation cannot keep a copy, so it empties the log anyway.
    wait_until(lambda: "emptying it anyway" in (daemon.home / "daemon-test.log").read_text(errors="replace"),
               timeout=40, interval=0.3)
    for _ in range(5):
        assert chat(daemon) < 3
    svc = daemon.get("chatty")
    assert svc["ready"] and svc["state"] == "running" and svc["restarts"] == 0
    assert log.stat().st_size < 512 * 1024
    daemon.op("service.logs", service="chatty")  # still readable
    # a second service starts on the full disk: its header line is lost, not its start
    daemon.create("other", name="other")
    assert daemon.op("service.start", service="other", timeout_s=60)["outcome"] == "ready"


def test_a_database_locked_for_10s_keeps_v1_serving_and_a_change_lands_after(daemon: Daemon) -> None:
    daemon.create(MODEL, name="chatty")
    assert daemon.op("service.start", service="chatty", timeout_s=60)["outcome"] == "ready"
    daemon.create("spare", name="spare")
    assert daemon.op("service.start", service="spare", timeout_s=60)["outcome"] == "ready"
    locker = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, sys, time\n"
        f"c = sqlite3.connect({str(daemon.home / 'aima.db')!r}, isolation_level=None)\n"
        "c.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\ntime.sleep(10)\nc.execute('COMMIT')\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        t_locked = time.monotonic()
        # /v1 and reads go on while the lock is held
        times = [chat(daemon) for _ in range(10)]
        assert max(times) < 2.0, times
        assert [s["name"] for s in daemon.op("service.list")["services"]] == ["chatty", "spare"]
        # a change waits for the lock, then lands whole (the CLI is patient: the daemon waits up to 30 s)
        done: dict[str, object] = {}
        threading.Thread(target=lambda: done.update(r=daemon.cli("service", "stop", "spare", "-o", "json")),
                         daemon=True).start()
        wait_until(lambda: "r" in done, timeout=40, interval=0.1)
        r = done["r"]
        assert r.returncode == 0, r.stderr  # type: ignore[attr-defined]
        assert time.monotonic() - t_locked >= 9.0  # it did wait for the lock
    finally:
        locker.wait(30)
    spare = daemon.get("spare")
    assert spare["state"] == "stopped" and all(i["state"] == "stopped" for i in spare["instances"])
    assert daemon.get("chatty")["ready"]
    with sqlite3.connect(daemon.home / "aima.db") as c:
        assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    chat(daemon)
