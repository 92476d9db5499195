"""Control-plane benchmark: prints figures beside a baseline measured in the same run; never asserts.

Run it with the project's interpreter (``make bench`` or ``.venv/bin/python bench/control_plane.py``).
It starts its own daemons, each with a fresh temporary ``AIMA_HOME`` and a free port on 127.0.0.1,
puts engines on ports 20000-29999, and removes every process and file it made when it ends (also
on Ctrl-C). See bench/README.md for what each figure means.

Figures (target from the issue):
  1. ``aima --help`` cold start, median of N runs                  [< 0.3 s]  vs ``python -c pass``
  2. ``aima service list -o json`` with 1,000 created services     [< 0.3 s]  vs raw HTTP GET, sqlite3 SELECT
  3. delay from engine /health flipping to 200 -> aima says ready  [< 0.5 s]  (absolute; no ratio)
  4. daemon RSS with 100 created services / 20 running engines     [no target] vs RSS right after start
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchlib import AIMA, PY, BenchDaemon, echo_cmd, say


# ----------------------------------------------------------------------------- small helpers
def timed_runs(fn: Callable[[], Any], n: int, warmup: int = 1) -> list[float]:
    """Wall times of ``n`` calls of ``fn`` (after ``warmup`` discarded calls)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def run_ok(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    r = subprocess.run(argv, env=env, capture_output=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {r.returncode}: {r.stderr.decode(errors='replace')[-500:]}")
    return r


def mb(n_bytes: float) -> float:
    return n_bytes / (1024 * 1024)


# ----------------------------------------------------------------------------- SSE listener
class EventListener:
    """Reads ``GET /api/v1/events`` in a thread and records (client receipt time, event) pairs.

    Plain ``http.client`` on a socket we own, so ``close`` can shut the socket down and end the
    stream at once (an open SSE request would otherwise hold the daemon's graceful shutdown).
    """

    def __init__(self, host: str, port: int):
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.cond = threading.Condition()
        self._conn = http.client.HTTPConnection(host, port, timeout=10)
        self._conn.request("GET", "/api/v1/events", headers={"Accept": "text/event-stream"})
        self._resp = self._conn.getresponse()  # headers sent => the daemon has subscribed us
        if self._resp.status != 200:
            raise RuntimeError(f"GET /api/v1/events answered {self._resp.status}")
        assert self._conn.sock is not None
        self._sock = self._conn.sock
        self._sock.settimeout(None)
        self._thread = threading.Thread(target=self._run, daemon=True, name="bench-sse")
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                line = self._resp.readline()
                if not line:
                    return
                if line.startswith(b"data: "):
                    now = time.time()
                    ev = json.loads(line[6:])
                    with self.cond:
                        self.events.append((now, ev))
                        self.cond.notify_all()
        except (OSError, ValueError, http.client.HTTPException):
            pass  # the daemon went away or we shut the socket down

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float) -> tuple[float, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for t, ev in self.events:
                    if pred(ev):
                        return t, ev
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("event not seen in time")
                self.cond.wait(left)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)
        with contextlib.suppress(Exception):
            self._conn.close()


# ----------------------------------------------------------------------------- results
@dataclass
class Row:
    figure: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    target: float | None = None  # value must be below it
    note: str = ""
    ratio: bool = True
    extra: list[str] = field(default_factory=list)

    def fmt(self, v: float | None) -> str:
        if v is None:
            return "-"
        if self.unit == "s":
            if v < 0.01:
                return f"{v * 1000:.1f} ms"
            return f"{v * 1000:.0f} ms" if v < 10 else f"{v:.1f} s"
        return f"{v:.1f} {self.unit}"

    def cells(self) -> list[str]:
        ratio = (f"x{self.value / self.baseline:.2f}" if self.ratio and self.value is not None
                 and self.baseline else "n/a")
        if self.target is None:
            target, verdict = "-", "-"
        else:
            target = f"< {self.fmt(self.target)}"
            verdict = "-" if self.value is None else ("pass" if self.value < self.target else "MISS")
        base = f"{self.fmt(self.baseline)} ({self.baseline_label})" if self.baseline is not None else "-"
        return [self.figure, self.fmt(self.value), base, ratio, target, verdict]


def table(rows: list[Row]) -> str:
    head = ["figure", "value", "baseline", "ratio", "target", "result"]
    body = [r.cells() for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) for cells in body]
    return "\n".join(out)


# ----------------------------------------------------------------------------- the figures
def fig_cli_startup(runs: int) -> list[Row]:
    print("\n[1] `aima --help` cold start (a new process each run; first run discarded to warm the disk cache)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMA_")}
    aima = timed_runs(lambda: run_ok([AIMA, "--help"], env), runs)
    base = timed_runs(lambda: run_ok([PY, "-c", "pass"], env), runs)
    imp = timed_runs(lambda: run_ok([PY, "-c", "import aima.surfaces.cli.main"], env), runs)
    a, b, i = statistics.median(aima), statistics.median(base), statistics.median(imp)
    print(f"    aima --help:    median {a * 1000:.0f} ms  (min {min(aima) * 1000:.0f}, max {max(aima) * 1000:.0f})")
    print(f"    python -c pass: median {b * 1000:.0f} ms")
    print(f"    python -c 'import aima.surfaces.cli.main': median {i * 1000:.0f} ms (import share of --help)")
    return [Row("1 aima --help (median)", a, "s", b, "python -c pass", target=0.3)]


def fig_list_and_memory(root: Path, n_services: int, runs: int) -> list[Row]:
    print(f"\n[2+4a] daemon A: {n_services} created (never started) services")
    d = BenchDaemon(root, "home-a")
    try:
        d.start()
        rss0 = d.rss()
        say(f"RSS right after start, 0 services: {mb(rss0):.1f} MB")
        # The CLI's fixed cost: the same call on an empty daemon.
        cli0 = statistics.median(timed_runs(lambda: run_ok([AIMA, "-o", "json", "service", "list"], d.env), runs))
        raw0 = statistics.median(timed_runs(lambda: d.http.get("/api/v1/services").raise_for_status(), runs))
        say(f"0 services: aima -o json service list {cli0 * 1000:.0f} ms, raw GET {raw0 * 1000:.1f} ms")
        first = min(100, n_services)
        cmd = echo_cmd()
        took = d.create_many([f"bench-{i:04d}" for i in range(first)], cmd)
        rss100 = d.rss()
        say(f"created {first} services in {took:.2f} s; RSS {mb(rss100):.1f} MB")
        took = d.create_many([f"bench-{i:04d}" for i in range(first, n_services)], cmd)
        say(f"created {n_services - first} more in {took:.2f} s "
            f"({(n_services - first) / max(took, 1e-9):.0f}/s)")

        # Sanity: the CLI really returns all of them.
        listed = json.loads(run_ok([AIMA, "-o", "json", "service", "list"], d.env).stdout)
        count = len(listed["services"])
        if count != n_services:
            raise RuntimeError(f"service list returned {count} services, expected {n_services}")

        cli = timed_runs(lambda: run_ok([AIMA, "-o", "json", "service", "list"], d.env), runs)
        body_len = 0

        def raw_http() -> None:
            nonlocal body_len
            r = d.http.get("/api/v1/services")
            r.raise_for_status()
            body_len = len(r.content)

        raw = timed_runs(raw_http, runs)
        raw_parsed = timed_runs(lambda: d.http.get("/api/v1/services").json(), runs)

        def select_all() -> None:
            con = sqlite3.connect(d.home / "aima.db")
            try:
                rows = con.execute("SELECT * FROM services").fetchall()
                assert len(rows) == n_services
            finally:
                con.close()

        sel = timed_runs(select_all, runs)
        # What a fresh process can do with the stdlib alone: the floor for any CLI (not a target).
        floor_code = ("import os, sys, urllib.request; sys.stdout.buffer.write("
                      "urllib.request.urlopen(os.environ['AIMA_URL'] + '/api/v1/services').read())")
        floor = timed_runs(lambda: run_ok([PY, "-c", floor_code], d.env), runs)
        c, h, hp, s, f = (statistics.median(x) for x in (cli, raw, raw_parsed, sel, floor))
        print(f"    aima -o json service list: median {c * 1000:.0f} ms "
              f"(min {min(cli) * 1000:.0f}, max {max(cli) * 1000:.0f}); {count} services")
        print(f"    raw GET /api/v1/services (httpx, in-process, keep-alive): median {h * 1000:.0f} ms; "
              f"{body_len / 1024:.0f} KiB body; GET + .json() {hp * 1000:.0f} ms")
        print(f"    sqlite3 SELECT * FROM services (new connection each time): median {s * 1000:.1f} ms")
        print(f"    floor: a new `python -c` process doing the GET with urllib and printing the body: "
              f"median {f * 1000:.0f} ms")
        print(f"    => CLI overhead over the raw request: {(c - h) * 1000:.0f} ms; "
              f"daemon time beyond the SELECT: {(h - s) * 1000:.0f} ms")
        rss_after = d.rss(0.5)
        say(f"RSS with {n_services} services after {1 + 4 * (runs + 1)} list calls: {mb(rss_after):.1f} MB")
        return [
            Row(f"2 aima service list, {n_services} svcs", c, "s", h, "raw HTTP GET", target=0.3),
            Row("  (same) vs sqlite3 SELECT", c, "s", s, "sqlite3 SELECT"),
            Row("  raw HTTP GET vs sqlite3 SELECT", h, "s", s, "sqlite3 SELECT"),
            Row("  (same) vs stdlib-only CLI floor", c, "s", f, "python+urllib"),
            Row("  aima service list, 0 svcs", cli0, "s", raw0, "raw HTTP GET"),
            Row(f"4a daemon RSS, {first} created svcs", mb(rss100), "MB", mb(rss0), "0 svcs"),
            Row(f"   daemon RSS, {n_services} svcs + lists", mb(rss_after), "MB", mb(rss0), "0 svcs"),
        ]
    finally:
        d.cleanup()


def poll_health_flip(port: int, timeout: float, interval: float = 0.005) -> tuple[float, float]:
    """Poll the engine's /health every ``interval`` s; return (send time of the first 200, last non-200)."""
    last_bad = 0.0
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0, trust_env=False) as c:
        while time.monotonic() < deadline:
            t = time.time()
            try:
                if c.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    return t, last_bad
            except httpx.HTTPError:
                pass
            last_bad = time.time()
            time.sleep(interval)
    raise TimeoutError(f"engine on port {port} never answered /health 200")


def fig_ready_and_memory(root: Path, n_ready: int, ready_after: float, n_running: int) -> list[Row]:
    print(f"\n[3+4b] daemon B: {n_ready} services with `--ready-after {ready_after:g}`, "
          f"then {n_running} running echo engines in all")
    d = BenchDaemon(root, "home-b")
    events: EventListener | None = None
    try:
        d.start()
        rss0 = d.rss()
        say(f"RSS right after start, 0 services: {mb(rss0):.1f} MB")
        events = EventListener("127.0.0.1", d.port)
        delays_client, delays_daemon, uncertainty = [], [], []
        slow_cmd = echo_cmd("--ready-after", f"{ready_after:g}")
        for i in range(n_ready):
            svc = d.op("service.create", model=f"ready-{i}", command=slow_cmd)
            started = d.op("service.start", service=svc["id"], wait=False)
            d.note_engines(started["service"])
            insts = [x for x in started["service"]["instances"] if x["state"] == "starting"]
            if not insts:
                raise RuntimeError(f"service {svc['name']} did not start: {started}")
            inst = insts[0]
            flip, last_bad = poll_health_flip(inst["port"], ready_after + 30)
            seen, ev = events.wait_for(lambda e, iid=inst["id"]: e["kind"] == "instance.running"
                                       and e["instance_id"] == iid and e["data"].get("ready"), 30)
            delays_client.append(seen - flip)
            delays_daemon.append(ev["ts"] - flip)
            uncertainty.append(flip - last_bad)
            say(f"{svc['name']}: /health 200 at +0, aima published ready at +{(ev['ts'] - flip) * 1000:.0f} ms, "
                f"SSE client saw it at +{(seen - flip) * 1000:.0f} ms")
        med, worst = statistics.median(delays_client), max(delays_client)
        print(f"    health 200 -> `instance.running` (ready) seen on SSE: median {med * 1000:.0f} ms, "
              f"max {worst * 1000:.0f} ms over {n_ready} services")
        print(f"    (daemon's own event timestamps: median {statistics.median(delays_daemon) * 1000:.0f} ms, "
              f"max {max(delays_daemon) * 1000:.0f} ms; flip moment known to within "
              f"{max(uncertainty) * 1000:.0f} ms)")
        print("    baseline = the engine's own health flip, so the delay is absolute and a ratio means nothing")

        # Fill up to n_running running engines, then measure memory.
        quick = echo_cmd()
        ids = []
        for i in range(n_running - n_ready):
            ids.append(d.op("service.create", model=f"run-{i}", command=quick)["id"])
        for sid in ids:
            out = d.op("service.start", service=sid, wait=True, timeout_s=60)
            d.note_engines(out["service"])
            if out["outcome"] != "ready":
                raise RuntimeError(f"service {sid} did not become ready: {out['outcome']} {out['message']}")
        running = [s for s in d.op("service.list")["services"] if s["ready"]]
        rss_run = d.rss(2.0)  # let a couple of reconcile ticks (health checks) run
        say(f"{len(running)} services running and ready; daemon RSS {mb(rss_run):.1f} MB")
        return [
            Row(f"3 health 200 -> ready, median of {n_ready}", med, "s", target=0.5, ratio=False,
                baseline=0.0, baseline_label="engine flip"),
            Row(f"  health 200 -> ready, max of {n_ready}", worst, "s", target=0.5, ratio=False,
                baseline=0.0, baseline_label="engine flip"),
            Row(f"4b daemon RSS, {len(running)} running engines", mb(rss_run), "MB", mb(rss0), "0 svcs"),
        ]
    finally:
        if events is not None:
            events.close()
        d.cleanup()


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--help-runs", type=int, default=10, help="runs of `aima --help` (figure 1)")
    p.add_argument("--services", type=int, default=1000, help="services created for figure 2")
    p.add_argument("--list-runs", type=int, default=5, help="runs of `aima service list` (figure 2)")
    p.add_argument("--ready-services", type=int, default=5, help="services timed for figure 3")
    p.add_argument("--ready-after", type=float, default=2.0, help="echo --ready-after for figure 3")
    p.add_argument("--running", type=int, default=20, help="running engines for figure 4b")
    p.add_argument("--only", choices=("cli", "list", "ready"), action="append",
                   help="run only some figures: cli (1), list (2, 4a), ready (3, 4b); repeatable")
    args = p.parse_args(argv)
    only = set(args.only or ("cli", "list", "ready"))

    # SIGTERM/SIGHUP unwind like Ctrl-C, so the finally blocks below clean up.
    def _raise(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise)

    import aima

    print("aima control-plane benchmark")
    print(f"  date:    {dt.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"  machine: {platform.node()} {platform.machine()}, {os.cpu_count()} logical cores "
          f"({len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'} usable), "
          f"{mb(psutil.virtual_memory().total) / 1024:.1f} GiB RAM, {platform.platform(terse=True)}")
    print(f"  python:  {platform.python_version()} ({PY}); aima {getattr(aima, '__version__', '?')} ({AIMA})")

    print(f"  load:    {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15 min; other work on the machine "
          f"skews timings)")
    t0 = time.monotonic()
    rows: list[Row] = []
    root = Path(tempfile.mkdtemp(prefix="aima-bench-"))
    try:
        if "cli" in only:
            rows += fig_cli_startup(args.help_runs)
        if "list" in only:
            rows += fig_list_and_memory(root, args.services, args.list_runs)
        if "ready" in only:
            rows += fig_ready_and_memory(root, args.ready_services, args.ready_after, args.running)
    except KeyboardInterrupt:
        print("\nbench: interrupted; cleaned up", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"\nsummary ({time.monotonic() - t0:.0f} s; ratio = value / baseline; timings are printed, "
          f"never asserted)")
    print(table(rows))
    print(f"load at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
