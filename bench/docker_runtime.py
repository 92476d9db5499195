"""Docker-runtime benchmark: a container's start -> ready beside a native process's, and `service list` over
50 running containers beside 50 native engines. Prints figures beside same-run baselines; never asserts.

Run it with the project's interpreter (``make bench`` or ``.venv/bin/python bench/docker_runtime.py``) on a
machine where a Docker daemon answers (``scripts/dockerd-up.sh`` starts one). It builds the tests' image
(a rootfs of symlinks, imported with no registry; the host's Python mounted read-only), starts two daemons
with fresh temporary homes — one whose services run natively, one whose services run in containers —
and removes every process, container and file it made when it ends (also on Ctrl-C).

Figures:
  1. ``service.start`` (wait) to ready, echo engine, host network        vs the same service native
  2. the same in a container on its own network (port published)         vs native
  3. the same, container on the host network                             vs the Docker SDK alone (create, start,
                                                                            poll /health until 200: the floor)
  4. ``GET /api/v1/services`` with 50 running containers                 vs 50 running native engines
  5. ``aima -o json service list`` (a new CLI process), the same 50      vs 50 native
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import AIMA, PY, BenchDaemon, Quiet, Row, echo_cmd, free_port, header, say, table  # noqa: E402


def start_ready(d: BenchDaemon, name: str) -> float:
    t0 = time.perf_counter()
    out = d.op("service.start", service=name, timeout_s=60)
    took = time.perf_counter() - t0
    if out["outcome"] != "ready":
        raise RuntimeError(f"{name}: {out['outcome']} {out['message']}")
    return took


def cycle(d: BenchDaemon, name: str, runs: int) -> list[float]:
    """start -> ready, then stop, ``runs`` times (after one warm-up)."""
    out = []
    for i in range(runs + 1):
        t = start_ready(d, name)
        d.op("service.stop", service=name)
        if i:
            out.append(t)
    return out


def sdk_floor(kit: Any, runs: int) -> list[float]:
    """The Docker SDK alone: create + start a container of the same image and command on the host network,
    poll the engine's /health until 200, then remove it."""
    out = []
    for i in range(runs + 1):
        port = free_port()
        t0 = time.perf_counter()
        c = kit.client.containers.run(kit.image, [PY, "-m", "aima.engines.echo", "--port", str(port), "--model", "x"],
                                      detach=True, init=True, network_mode="host", volumes=kit.volumes,
                                      labels={"aima-bench": "1"})
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1, trust_env=False).status_code == 200:
                        break
                time.sleep(0.005)
            took = time.perf_counter() - t0
        finally:
            c.remove(force=True)
        if i:
            out.append(took)
    return out


def median_max(xs: list[float]) -> str:
    return f"median {statistics.median(xs) * 1000:.0f} ms, max {max(xs) * 1000:.0f} ms, n={len(xs)}"


def list_cost(d: BenchDaemon, runs: int) -> tuple[list[float], list[float]]:
    http_times, cli_times = [], []
    d.http.get("/api/v1/services")
    for _ in range(runs * 2):
        time.sleep(0.3)  # past the docker runtime's 0.25 s container-list cache: each GET pays a fresh list
        t0 = time.perf_counter()
        r = d.http.get("/api/v1/services")
        http_times.append(time.perf_counter() - t0)
        assert r.status_code == 200
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([AIMA, "-o", "json", "service", "list"], env=d.env, capture_output=True, check=True,
                       timeout=120)
        cli_times.append(time.perf_counter() - t0)
    return http_times, cli_times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=8, help="start -> ready cycles of each kind")
    p.add_argument("--services", type=int, default=50, help="running services for the list figures")
    p.add_argument("--list-runs", type=int, default=5, help="CLI list runs (raw GETs: twice as many)")
    args = p.parse_args(argv)

    header("Docker runtime benchmark")
    from tests.support.docker import connect, get_kit  # benchlib made tests.support importable

    client, why = connect()
    if client is None:
        print(f"  !! no Docker daemon: {why}; scripts/dockerd-up.sh starts one. Nothing measured.")
        return 0
    kit = get_kit()
    print(f"  docker:  {client.version().get('Version')} (API {client.api.api_version}); image {kit.image}")
    quiet = Quiet()
    quiet.report("at start")
    root = Path(tempfile.mkdtemp(prefix="aima-bench-docker-"))
    grace = {"AIMA_STOP_GRACE_S": "3"}
    native = BenchDaemon(root, "native", grace, port_range="21000-21999")
    docker = BenchDaemon(root, "docker", grace, port_range="22000-22999", kit=kit)
    rows: list[Row] = []
    try:
        native.start()
        docker.start()
        native.op("service.create", model="echo", name="one", command=echo_cmd())
        docker.op("service.create", model="echo", name="one", command=echo_cmd(), **kit.service_kw())
        docker.op("service.create", model="echo", name="bridged", command=echo_cmd("--host", "{host}"),
                  **kit.service_kw())
        quiet.wait("start -> ready")
        say(f"start -> ready, {args.runs} cycles each (after one warm-up)")
        nat = cycle(native, "one", args.runs)
        dock = cycle(docker, "one", args.runs)
        bridged = cycle(docker, "bridged", args.runs)
        floor = sdk_floor(kit, args.runs)
        for label, xs in (("native", nat), ("docker host net", dock), ("docker bridge", bridged),
                          ("SDK floor", floor)):
            say(f"{label}: {median_max(xs)}")
        m = statistics.median
        rows.append(Row("1 start->ready, container (host net)", m(dock), "s", m(nat), "native process"))
        rows.append(Row("2 start->ready, container (bridge, published)", m(bridged), "s", m(nat), "native process"))
        rows.append(Row("3 start->ready, container (host net)", m(dock), "s", m(floor),
                        "Docker SDK alone: create+start+poll"))

        n = args.services
        quiet.wait("the list figures")
        say(f"creating and starting {n} services in each daemon")
        t0 = time.perf_counter()
        for i in range(n):
            native.op("service.create", model=f"m{i}", name=f"s{i}", command=echo_cmd())
            start_ready(native, f"s{i}")
        say(f"{n} native engines ready in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        for i in range(n):
            docker.op("service.create", model=f"m{i}", name=f"s{i}", command=echo_cmd("--host", "{host}"),
                      **kit.service_kw())
            start_ready(docker, f"s{i}")
        say(f"{n} containers ready in {time.perf_counter() - t0:.1f} s")
        running = sum(1 for c in kit.containers(docker.home))
        say(f"containers running for the docker daemon: {running}")
        time.sleep(2)  # a health-check round
        quiet.wait("listing")
        nh, nc = list_cost(native, args.list_runs)
        dh, dc = list_cost(docker, args.list_runs)
        for label, xs in (("GET native", nh), ("GET docker", dh), ("CLI native", nc), ("CLI docker", dc)):
            say(f"{label}: {median_max(xs)}")
        rows.append(Row(f"4 GET /api/v1/services, {n} containers", m(dh), "s", m(nh), f"{n} native engines"))
        rows.append(Row(f"5 aima service list, {n} containers", m(dc), "s", m(nc), f"{n} native engines"))
    finally:
        say("cleaning up")
        for d in (native, docker):
            with contextlib.suppress(Exception):
                d.stop_all()
            d.cleanup()  # the docker daemon's also removes its home's containers (its kit)
        with contextlib.suppress(Exception):
            for c in kit.client.containers.list(all=True, filters={"label": "aima-bench=1"}):
                c.remove(force=True)
        shutil.rmtree(root, ignore_errors=True)
    print()
    print(table(rows))
    quiet.report("at end")
    for note in quiet.notes:
        print(f"  note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
