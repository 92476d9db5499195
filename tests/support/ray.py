"""A real Ray cluster on this machine for the ray runtime's tests: a head and two worker nodes, each with
its own loopback address (research-runtimes.md: 127.0.0.1 is rewritten to the eth0 address, 127.0.0.2-4
are not).

- head on 127.0.0.2 with ``--num-cpus 0`` (it runs no engine), its GCS on a free port outside Ray's
  worker range (10002-19999) and aima's port range;
- nodes on 127.0.0.3 and 127.0.0.4 with 2 CPUs and the custom resources ``zone_a`` / ``zone_b``
  (and ``slot``), each with an AIMA_HOME of its own (so a model is pulled on the node it runs on);
- ``RAY_AUTH_MODE=disabled`` (a token left in ~/.ray by another run must not switch auth on) and
  ``RAY_USAGE_STATS_ENABLED=0``.

``ray_cluster()`` starts it once per test session (``RayCluster.stop`` at exit ends every process of its
temp dir and then runs ``ray stop``); without Ray installed the tests that need it are skipped with the
reason, or fail under ``AIMA_TEST_STRICT=1`` (CI). ``lose_node`` kills a node's raylet and workers (a
lost machine) and ``restore_node`` starts a node on that address again.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

HEAD = "127.0.0.2"
NODES = {"127.0.0.3": {"zone_a": 1, "slot": 100}, "127.0.0.4": {"zone_b": 1, "slot": 100}}
ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
RAY = str(Path(sys.executable).with_name("ray"))


def _free(host: str, lo: int = 30000, hi: int = 39999) -> int:
    for _ in range(200):
        port = random.randrange(lo, hi)
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port for the Ray cluster")


# Small drivers run in their own process (the test process never joins the cluster): argv[1] is the
# cluster's address, argv[2] a namespace.
NODES_CODE = """
import json, sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
print(json.dumps([{"id": n["NodeID"], "ip": n["NodeManagerAddress"], "alive": n["Alive"]} for n in ray.nodes()]))
"""
KILL_ALL_CODE = """
import sys, ray
ray.init(address=sys.argv[1], namespace=sys.argv[2], logging_level="ERROR", log_to_driver=False)
for n in ray.util.list_named_actors():
    try:
        ray.kill(ray.get_actor(n), no_restart=True)
    except Exception as e:
        print(n, e, file=sys.stderr)
"""
ACTOR_CODE = """
import sys, time, ray
ray.init(address=sys.argv[1], namespace=sys.argv[2], logging_level="ERROR", log_to_driver=False)
@ray.remote(num_cpus=0)
class Foreign:
    def ping(self):
        return "pong"
a = Foreign.options(name=sys.argv[3], lifetime="detached").remote()
print(ray.get(a.ping.remote(), timeout=30))
"""
LIST_CODE = """
import json, sys, ray
ray.init(address=sys.argv[1], namespace=sys.argv[2], logging_level="ERROR", log_to_driver=False)
print(json.dumps(sorted(ray.util.list_named_actors())))
"""


def driver(cluster: RayCluster, code: str, *args: str) -> str:
    r = subprocess.run([sys.executable, "-c", code, cluster.address, *args], env=cluster.env, capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"ray driver failed: {r.stderr[-1500:]}")
    return r.stdout


@dataclass
class RayCluster:
    root: Path
    address: str
    env: dict[str, str]
    node_homes: dict[str, Path] = field(default_factory=dict)
    procs: list[subprocess.CompletedProcess[str]] = field(default_factory=list)

    @property
    def temp_dir(self) -> Path:
        return self.root / "t"

    def _run(self, args: list[str], env: dict[str, str], timeout: float = 90) -> None:
        r = subprocess.run([RAY, *args], env=env, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"ray {' '.join(args[:2])} failed ({r.returncode}): "
                               f"{r.stdout[-1500:]}{r.stderr[-1500:]}")

    def start_node(self, ip: str) -> None:
        home = self.node_homes.setdefault(ip, self.root / f"home-{ip.rsplit('.', 1)[1]}")
        home.mkdir(parents=True, exist_ok=True)
        env = {**self.env, "AIMA_HOME": str(home)}
        self._run(["start", "--address", self.address, "--node-ip-address", ip, "--num-cpus", "2",
                   "--resources", json.dumps(NODES[ip]), "--object-store-memory", "80000000",
                   "--disable-usage-stats"], env)

    def nodes(self) -> list[dict[str, Any]]:
        out = driver(self, NODES_CODE)
        return json.loads(out.strip().splitlines()[-1])

    def node_id(self, ip: str) -> str:
        return next(n["id"] for n in self.nodes() if n["ip"] == ip and n["alive"])

    def _processes(self, ip: str | None = None) -> list[psutil.Process]:
        """This cluster's processes (of one node's raylet when ``ip`` is given), with every descendant."""
        roots = []
        for p in psutil.process_iter(["cmdline"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if str(self.temp_dir) not in cmd:
                continue
            if ip is not None and not (("raylet" in cmd or "log_monitor" in cmd) and f"={ip} " in cmd + " "):
                continue
            roots.append(p)
        out = {p.pid: p for p in roots}
        for p in roots:
            with contextlib.suppress(psutil.Error):
                for c in p.children(recursive=True):
                    out[c.pid] = c
        return list(out.values())

    def lose_node(self, ip: str) -> list[int]:
        """A lost machine: SIGKILL its raylet, its workers and agents (and so the engines they started)."""
        procs = self._processes(ip)
        assert any("raylet" in " ".join(p.cmdline()) for p in procs if p.is_running()), f"no raylet for {ip}"
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGKILL)
        psutil.wait_procs(procs, timeout=10)
        return [p.pid for p in procs]

    def restore_node(self, ip: str) -> None:
        self.start_node(ip)

    def stop(self) -> None:
        procs = self._processes()
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGTERM)
        _, left = psutil.wait_procs(procs, timeout=5)
        for p in left:
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGKILL)
        psutil.wait_procs(left, timeout=5)
        with contextlib.suppress(Exception):
            subprocess.run([RAY, "stop"], env=self.env, capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


def start_cluster() -> RayCluster:
    root = Path(tempfile.mkdtemp(prefix="aray-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    env = {**os.environ, **ENV}
    for k in [k for k in env if k.startswith("AIMA_")]:
        env.pop(k)
    port = _free(HEAD)
    cluster = RayCluster(root=root, address=f"{HEAD}:{port}", env=env)
    try:
        cluster._run(["start", "--head", "--node-ip-address", HEAD, "--port", str(port), "--num-cpus", "0",
                      "--include-dashboard", "false", "--dashboard-port", str(_free(HEAD)),
                      "--temp-dir", str(cluster.temp_dir),
                      "--object-store-memory", "80000000", "--disable-usage-stats"], env)
        for ip in NODES:
            cluster.start_node(ip)
        deadline = time.monotonic() + 60
        while sum(1 for n in cluster.nodes() if n["alive"]) < 3:
            assert time.monotonic() < deadline, "the Ray cluster's nodes did not all join within 60s"
            time.sleep(0.5)
    except BaseException:
        cluster.stop()
        raise
    return cluster


_CLUSTER: RayCluster | None = None
_WHY_NOT: str | None = None


def ray_cluster() -> RayCluster:
    """The session's cluster (started on first use, stopped at exit), or skip/fail saying why not."""
    global _CLUSTER, _WHY_NOT
    if _CLUSTER is not None:
        return _CLUSTER
    if _WHY_NOT is None:
        try:
            import ray  # noqa: F401
        except ImportError as e:
            _WHY_NOT = f"Ray is not installed ({e}); `pip install -e '.[ray]'` (make test does)"
        else:
            try:
                _CLUSTER = start_cluster()
                atexit.register(_CLUSTER.stop)
                return _CLUSTER
            except Exception as e:  # noqa: BLE001 - said as the reason
                _WHY_NOT = f"a Ray cluster could not be started here: {e}"
    if os.environ.get("AIMA_TEST_STRICT") == "1":
        pytest.fail(f"Ray is required here (AIMA_TEST_STRICT=1): {_WHY_NOT}", pytrace=False)
    pytest.skip(f"needs Ray: {_WHY_NOT}")


def stop_cluster() -> None:
    global _CLUSTER
    if _CLUSTER is not None:
        _CLUSTER.stop()
        _CLUSTER = None


def ray_service_kw(**extra: Any) -> dict[str, Any]:
    return {"runtime": "ray", **extra}


def on_host(command: str) -> str:
    """An echo-engine command that listens on the node's address (``{host}``) as every ray engine must."""
    return command if "{host}" in command else f"{command} --host {{host}}"


class RayKit:
    """What a ``Daemon`` of tests/support/daemon.py needs to run its services on the cluster: the
    environment that attaches it, the create defaults, commands that listen on the node's address, and
    the removal of its namespace's actors at teardown."""

    def __init__(self, cluster: RayCluster):
        self.cluster = cluster

    @property
    def env(self) -> dict[str, str]:
        return {"AIMA_RAY_ADDRESS": self.cluster.address, **ENV}

    def service_kw(self, **extra: Any) -> dict[str, Any]:
        return ray_service_kw(**extra)

    def adapt_command(self, command: str) -> str:
        return on_host(command)

    def engine_pids(self, home: Path) -> list[int]:
        return []  # the engines are processes of this machine carrying the home's marks: found as native ones

    def remove_home(self, home: Path) -> None:
        """Kill every actor of ``home``'s namespace (what a test left behind)."""
        from aima.runtimes.ray import namespace_for

        driver(self.cluster, KILL_ALL_CODE, namespace_for(home))
