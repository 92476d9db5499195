"""Ray-runtime benchmark: instances on a Ray cluster beside native processes. Prints figures beside same-run
baselines; never asserts.

Run it with the project's interpreter (``.venv/bin/python bench/ray_runtime.py``; needs the ``ray`` extra). It
starts the tests' 3-node Ray cluster on this machine (tests/support/ray.py: head on 127.0.0.2 with no CPUs,
nodes on 127.0.0.3 and 127.0.0.4), two daemons with fresh temporary homes — one attached to the cluster, one
whose services run natively — and removes every process, actor and file it made when it ends.

Figures:
  1. ``service.start`` (wait) to ready, echo engine, on a Ray node      vs the same service native
  2. node lost (raylet and workers killed) -> ready on another node      vs a native engine killed -9 -> ready
  3. gateway p50 of a chat request to an instance on another node        vs the gateway to a native instance
     (and each beside the engine called directly: the gateway's own share)
  4. ``aima -o json cluster status``, 3 nodes and 30 instances           vs ``aima -o json status`` (CLI floor)
  5. ``GET /api/v1/cluster``, the same                                   vs ``GET /api/v1/status``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import AIMA, BenchDaemon, Quiet, Row, echo_cmd, header, say, table  # noqa: E402

FAST = {"AIMA_STOP_GRACE_S": "3", "AIMA_RESTART_BACKOFF_S": "0.2"}


def start_ready(d: BenchDaemon, name: str) -> float:
    t0 = time.perf_counter()
    out = d.op("service.start", service=name, timeout_s=120)
    took = time.perf_counter() - t0
    if out["outcome"] != "ready":
        raise RuntimeError(f"{name}: {out['outcome']} {out['message']}")
    d.note_engines(out["service"])
    return took


def cycle(d: BenchDaemon, name: str, runs: int) -> list[float]:
    out = []
    for i in range(runs + 1):
        t = start_ready(d, name)
        d.op("service.stop", service=name)
        if i:
            out.append(t)
    return out


def wait_ready_again(d: BenchDaemon, name: str, old_instance: str, limit: float = 120) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        s = d.op("service.get", service=name)
        if s["ready"] and all(i["id"] != old_instance for i in s["instances"] if i["ready"]):
            d.note_engines(s)
            return time.perf_counter() - t0
        time.sleep(0.05)
    raise RuntimeError(f"{name} was not ready again within {limit:g}s")


def chat_latencies(url: str, model: str, n: int) -> list[float]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    out = []
    with httpx.Client(trust_env=False, timeout=10) as c:
        for i in range(n + 20):
            t0 = time.perf_counter()
            r = c.post(url + "/v1/chat/completions", json=body)
            took = time.perf_counter() - t0
            r.raise_for_status()
            if i >= 20:  # warm-up
                out.append(took)
    return out


def cli_times(d: BenchDaemon, args: list[str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([AIMA, "-o", "json", *args], env=d.env, capture_output=True, check=True, timeout=120)
        out.append(time.perf_counter() - t0)
    return out


def get_times(d: BenchDaemon, path: str, runs: int) -> list[float]:
    d.http.get(path)
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = d.http.get(path)
        out.append(time.perf_counter() - t0)
        r.raise_for_status()
    return out


def mm(xs: list[float]) -> str:
    return f"median {statistics.median(xs) * 1000:.1f} ms, max {max(xs) * 1000:.1f} ms, n={len(xs)}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=6, help="start -> ready cycles of each kind")
    p.add_argument("--requests", type=int, default=300, help="chat requests per gateway figure")
    p.add_argument("--instances", type=int, default=30, help="instances for the cluster-status figures")
    p.add_argument("--status-runs", type=int, default=10, help="cluster status calls of each kind")
    args = p.parse_args(argv)

    header("Ray runtime benchmark")
    try:
        import ray
    except ImportError as e:
        print(f"  !! Ray is not installed ({e}); `pip install -e '.[ray]'`. Nothing measured.")
        return 0
    from tests.support.ray import RayKit, start_cluster

    print(f"  ray:     {ray.__version__}")
    quiet = Quiet()
    quiet.report("at start")
    root = Path(tempfile.mkdtemp(prefix="aima-bench-ray-"))
    say("starting a 3-node Ray cluster (head 127.0.0.2 with no CPUs, nodes 127.0.0.3 and 127.0.0.4)")
    t0 = time.perf_counter()
    cluster = start_cluster()
    say(f"cluster up in {time.perf_counter() - t0:.1f} s at {cluster.address}")
    kit = RayKit(cluster)
    native = BenchDaemon(root, "native", FAST, port_range="21000-21999")
    onray = BenchDaemon(root, "ray", {**kit.env, **FAST}, port_range="22000-22999", kit=kit)
    rows: list[Row] = []
    m = statistics.median
    try:
        native.start()
        onray.start()
        native.op("service.create", model="echo", name="one", command=echo_cmd())
        onray.op("service.create", model="echo", name="one", command=echo_cmd("--host", "{host}"), runtime="ray")

        quiet.wait("start -> ready")
        say(f"start -> ready, {args.runs} cycles each (after one warm-up)")
        nat, rr = cycle(native, "one", args.runs), cycle(onray, "one", args.runs)
        say(f"native: {mm(nat)}")
        say(f"ray:    {mm(rr)}")
        rows.append(Row("1 start->ready on a Ray node", m(rr), "s", m(nat), "native process",
                        target="<= +1.5 s", verdict=m(rr) - m(nat) <= 1.5))

        quiet.wait("the gateway figures")
        start_ready(native, "one")
        onray.op("service.create", model="remote", name="remote", command=echo_cmd("--host", "{host}"),
                 runtime="ray", node="127.0.0.3")
        remote = onray.op("service.start", service="remote", timeout_s=60)["service"]
        inst = remote["instances"][-1]
        direct_remote = f"http://{inst['host']}:{inst['port']}"
        local = native.op("service.get", service="one")
        direct_local = f"http://127.0.0.1:{local['instances'][-1]['port']}"
        say(f"gateway latency, {args.requests} sequential chat requests each (remote engine at {direct_remote})")
        gw_remote = chat_latencies(onray.url, "remote", args.requests)
        gw_local = chat_latencies(native.url, "echo", args.requests)
        dr = chat_latencies(direct_remote, "remote", args.requests)
        dl = chat_latencies(direct_local, "echo", args.requests)
        for label, xs in (("gateway -> ray node", gw_remote), ("gateway -> native", gw_local),
                          ("direct ray-node engine", dr), ("direct native engine", dl)):
            say(f"{label}: {mm(xs)}")
        rows.append(Row("3 gateway p50, instance on another node", m(gw_remote), "s", m(gw_local),
                        "gateway, native instance"))
        rows.append(Row("3a gateway's share, other node", m(gw_remote) - m(dr), "s", m(gw_local) - m(dl),
                        "gateway's share, native"))
        onray.op("service.delete", service="remote")
        native.op("service.stop", service="one")

        quiet.wait("the cluster-status figures")
        n = args.instances
        say(f"creating and starting {n} services on the cluster")
        t0 = time.perf_counter()
        for i in range(n):
            onray.op("service.create", model=f"m{i}", name=f"s{i}", command=echo_cmd("--host", "{host}"),
                     runtime="ray")
            start_ready(onray, f"s{i}")
        say(f"{n} instances ready in {time.perf_counter() - t0:.1f} s")
        onray.http.get("/api/v1/cluster")  # hardware detection on each node runs once, then it is cached
        time.sleep(2)
        quiet.wait("cluster status")
        cc, cs = cli_times(onray, ["cluster", "status"], args.status_runs), cli_times(onray, ["status"],
                                                                                       args.status_runs)
        gc, gs = get_times(onray, "/api/v1/cluster", args.status_runs * 2), get_times(onray, "/api/v1/status",
                                                                                    args.status_runs * 2)
        for label, xs in (("CLI cluster status", cc), ("CLI status", cs), ("GET cluster", gc), ("GET status", gs)):
            say(f"{label}: {mm(xs)}")
        rows.append(Row(f"4 aima cluster status, 3 nodes, {n} instances", m(cc), "s", m(cs), "aima status (CLI)",
                        target="< 300 ms", verdict=m(cc) < 0.3))
        rows.append(Row(f"5 GET /api/v1/cluster, {n} instances", m(gc), "s", m(gs), "GET /api/v1/status"))
        for i in range(n):
            onray.op("service.delete", service=f"s{i}")

        quiet.wait("node loss")
        say("node lost -> ready on another node (the node is started again afterwards)")
        onray.op("service.create", model="roam", name="roam", command=echo_cmd("--host", "{host}"), runtime="ray",
                 resources={"slot": "1"})
        out = onray.op("service.start", service="roam", timeout_s=60)["service"]
        first = out["instances"][-1]
        t_lost = time.perf_counter()
        cluster.lose_node(first["host"])
        moved = wait_ready_again(onray, "roam", first["id"])
        moved_total = time.perf_counter() - t_lost
        cluster.restore_node(first["host"])
        base = native.op("service.start", service="one", timeout_s=60)["service"]["instances"][-1]
        t_kill = time.perf_counter()
        os.kill(base["pid"], signal.SIGKILL)
        wait_ready_again(native, "one", base["id"])
        back_total = time.perf_counter() - t_kill
        say(f"node lost -> ready elsewhere: {moved_total:.2f} s (polled {moved:.2f} s); native kill -9 -> ready: "
            f"{back_total:.2f} s")
        rows.append(Row("2 node lost -> ready on another node", moved_total, "s", back_total,
                        "native engine kill -9 -> ready", target="<= 30 s", verdict=moved_total <= 30))
    finally:
        say("cleaning up")
        for d in (native, onray):
            with contextlib.suppress(Exception):
                d.stop_all()
            d.cleanup()
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    rows.sort(key=lambda r: r.figure)
    print()
    print(table(rows))
    quiet.report("at end")
    for note in quiet.notes:
        print(f"  note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
