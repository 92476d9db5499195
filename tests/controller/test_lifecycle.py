"""Service lifecycle rules 1-12 of ARCHITECTURE.md, plus chaos tests, against a real daemon.

Every test drives a real daemon process (its own AIMA_HOME) over HTTP or the CLI, and the engines
are real processes on real ports (the in-package echo engine, or a plain socket listener started
by the test). Nothing of aima is mocked. Time bounds are generous except where a rule names one
(an explicit port conflict fails in under 1 s; a crash is noticed within about 2 s).

Tests marked ``@all_runtimes`` run three times with the same service definitions: as native processes, in
Docker containers (``--runtime docker`` with the test image of tests/support/docker.py, the engine's command
line unchanged; the pids they check are then the containers' init processes on this machine) and on the
nodes of a real Ray cluster (``--runtime ray``, tests/support/ray.py: the engine listens on its node's
address, 127.0.0.3 or .4, and its pid is a process of this machine). The Ray cluster is started only when a
ray case runs (``-k 'not ray'`` keeps the fast path).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import random
import shlex
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import all_runtimes
from tests.support.daemon import PY, ApiError, Daemon, echo_cmd, free_port

# Short grace and backoff keep the module fast; tests that need other values parametrize daemon_env.
BASE_ENV = {"AIMA_STOP_GRACE_S": "2", "AIMA_RESTART_BACKOFF_S": "0.2", "AIMA_RESTART_MAX": "3"}
ACTIVE = ("starting", "running", "stopping")
# A process that accepts TCP connections on argv[1] and never answers: "TCP alone never means ready".
LISTENER = (
    "import socket, sys, time\n"
    "s = socket.socket()\n"
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', int(sys.argv[1])))\n"
    "s.listen(16)\n"
    "print('listening', flush=True)\n"
    "time.sleep(600)\n"
)


def private_port_range() -> str:
    """A block of the default range that other daemons on this machine (which all allocate from
    20000 up) are unlikely to use at the same moment: two daemons never share a port plan."""
    lo = random.randrange(25000, 29900, 100)
    return f"{lo}-{lo + 99}"


@pytest.fixture
def daemon_env(request: pytest.FixtureRequest) -> dict[str, str]:
    return {**BASE_ENV, "AIMA_PORT_RANGE": private_port_range(), **getattr(request, "param", {})}


def with_env(**env: object) -> pytest.MarkDecorator:
    """Run one test against a daemon started with these extra AIMA_* settings."""
    return pytest.mark.parametrize("daemon_env", [{k: str(v) for k, v in env.items()}], indirect=True,
                                   ids=[",".join(f"{k}={v}" for k, v in env.items())])


@pytest.fixture
def spawn() -> Iterator[Callable[[list[str]], subprocess.Popen[bytes]]]:
    """Start foreign (non-aima) processes; all are killed at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def _spawn(argv: list[str]) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        procs.append(p)
        return p

    yield _spawn
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
        p.wait(10)
        if p.stdout:
            p.stdout.close()


def squat(spawn: Callable[[list[str]], subprocess.Popen[bytes]], port: int) -> subprocess.Popen[bytes]:
    """A foreign process listening on ``port`` (a plain python socket, not started by aima)."""
    p = spawn([PY, "-c", LISTENER, str(port)])
    assert p.stdout is not None
    assert p.stdout.readline().strip() == b"listening"
    return p


# ---------------------------------------------------------------------------- reality checks
def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_dead(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid):
        assert time.monotonic() < deadline, f"pid {pid} still alive after {timeout}s"
        time.sleep(0.02)


def port_free(port: int) -> bool:
    with socket.socket() as c:
        c.settimeout(0.5)
        if c.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def procs_by_service(d: Daemon) -> dict[str, set[int]]:
    """Live engine process groups of this home, by the AIMA_SERVICE_ID they carry."""
    out: dict[str, set[int]] = {}
    for p in d.engine_processes():
        try:
            sid = p.environ().get("AIMA_SERVICE_ID", "")
        except psutil.Error:
            continue
        out.setdefault(sid, set()).add(p.pid)
    return out


def active(svc: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in svc["instances"] if i["state"] in ACTIVE]


def pid_of(svc: dict[str, Any]) -> int:
    insts = active(svc)
    assert len(insts) == 1, svc
    return insts[0]["pid"]


def events(d: Daemon, service_id: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
    """Recorded events (event.list does not reconcile, so polling it never hides the reconciler)."""
    evs = d.op("event.list", limit=10000)["events"]
    return [e for e in evs if (service_id is None or e["service_id"] == service_id)
            and (kind is None or e["kind"] == kind)]


def assert_status_matches_ps(d: Daemon, *names: str) -> None:
    """`aima service status NAME` (the real CLI) agrees with the processes that really run."""
    assert_no_tracebacks(d)
    for name in names:
        st = d.cli_json("service", "status", name)
        procs = procs_by_service(d)
        pids = {i["pid"] for i in active(st)}
        assert all(alive(p) for p in pids), (name, st)
        assert procs.get(st["id"], set()) == pids, (name, st, procs)
        if st["state"] in ("stopped", "failed", "created"):
            assert not pids, st
        if st["state"] == "running":
            assert len(pids) == st["replicas"], st
        if st["ready"]:
            assert st["state"] == "running" and all(i["ready"] for i in active(st)), st


def assert_no_strays(d: Daemon) -> None:
    """Every engine process of this home belongs to an active instance on record, and vice versa."""
    listed = d.cli_json("service", "list")["services"]
    recorded = {i["pid"] for s in listed for i in active(s)}
    assert {p.pid for p in d.engine_processes()} == recorded


def assert_no_tracebacks(d: Daemon) -> None:
    """The daemon handled everything it met: no unexpected exception in its log."""
    log = (d.home / "daemon-test.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]


def chat(endpoint: str, text: str = "hi") -> str:
    r = httpx.post(endpoint + "/v1/chat/completions", json={"messages": [{"role": "user", "content": text}]},
                   trust_env=False, timeout=10)
    r.raise_for_status()
    return r.json()["choices"][0]["message"]["content"]


def create_named(d: Daemon, model: str, name: str, **kw: Any) -> dict[str, Any]:
    """service.create with an explicit name (Daemon.op's own first parameter is called ``name``)."""
    command = d.kit.adapt_command(echo_cmd()) if hasattr(d.kit, "adapt_command") else echo_cmd()
    r = d.http.post("/api/v1/ops/service.create",
                    json={"model": model, "name": name, "command": command, **d.defaults, **kw})
    assert r.status_code == 201, r.text
    return r.json()


def start(d: Daemon, name: str, **kw: Any) -> dict[str, Any]:
    return d.op("service.start", service=name, **kw)


def start_ready(d: Daemon, name: str) -> dict[str, Any]:
    out = start(d, name, timeout_s=30)
    assert out["outcome"] == "ready", out
    return out["service"]


# ---------------------------------------------------------------------------- rule 1: states
@all_runtimes
def test_rule1_states_created_starting_running_stopping_stopped(daemon: Daemon) -> None:
    svc = daemon.create("states")
    assert (svc["state"], svc["desired"], svc["ready"], svc["instances"]) == ("created", "stopped", False, [])
    out = start(daemon, "states", wait=False)
    assert out["outcome"] in ("starting", "running"), out
    ready = start_ready(daemon, "states")
    assert ready["state"] == "running" and ready["ready"] is True and ready["desired"] == "running"
    inst_id = active(ready)[0]["id"]
    stopped = daemon.op("service.stop", service="states")
    assert stopped["state"] == "stopped" and stopped["ready"] is False
    assert [i["state"] for i in stopped["instances"]] == ["stopped"]

    kinds = [e["kind"] for e in events(daemon, svc["id"]) if e["kind"].startswith("service.")]
    assert kinds == ["service.created", "service.starting", "service.running", "service.stopping",
                     "service.stopped"], kinds
    inst_kinds = [e["kind"] for e in events(daemon, svc["id"]) if e["instance_id"] == inst_id]
    assert inst_kinds == ["instance.starting", "instance.running", "instance.stopping", "instance.stopped"]


@with_env(AIMA_STOP_GRACE_S=3)
def test_rule1_a_slow_stop_reads_as_stopping(daemon: Daemon) -> None:
    daemon.create("slowstop", command=echo_cmd("--ignore-sigterm"))
    pid = pid_of(start_ready(daemon, "slowstop"))
    t = threading.Thread(target=daemon.op, args=("service.stop",), kwargs={"service": "slowstop"})
    t.start()
    try:
        # While the engine ignores SIGTERM (grace 3 s), a read shows the service itself as stopping.
        seen = daemon.wait_for(lambda: (s := daemon.get("slowstop"))["instances"][0]["state"] == "stopping" and s,
                               timeout=5)
    finally:
        t.join(30)
    assert seen["state"] == "stopping" and seen["ready"] is False, seen
    assert daemon.get("slowstop")["state"] == "stopped" and not alive(pid)


@with_env(AIMA_RECONCILE_INTERVAL_S=3600)
@all_runtimes
def test_rule1_every_read_reconciles_with_reality(daemon: Daemon) -> None:
    """With the periodic tick effectively off, a read alone must notice that the process died."""
    daemon.create("byget", command=echo_cmd(), restart="never")
    daemon.create("bylist", command=echo_cmd(), restart="never")
    a = pid_of(start_ready(daemon, "byget"))
    b = pid_of(start_ready(daemon, "bylist"))
    for pid in (a, b):
        os.kill(pid, signal.SIGKILL)
        wait_dead(pid)
    got = daemon.get("byget")
    assert got["state"] == "failed" and got["ready"] is False, got
    inst = got["instances"][0]
    assert inst["state"] == "failed" and inst["exit_code"] == -9 and "SIGKILL" in inst["message"], inst
    listed = {s["name"]: s for s in daemon.op("service.list")["services"]}
    assert listed["bylist"]["state"] == "failed", listed["bylist"]
    assert not [e for e in events(daemon) if e["kind"] == "service.restart_scheduled"]
    assert_status_matches_ps(daemon, "byget", "bylist")


# ---------------------------------------------------------------------------- rule 2: ready
def test_rule2_ready_needs_health_200(daemon: Daemon) -> None:
    daemon.create("loading", command=echo_cmd("--ready-after", "3"))
    out = start(daemon, "loading", wait=False)
    port = out["service"]["ports"][0]
    # The port accepts and /health answers 503: that is not ready.
    daemon.wait_for(lambda: _status(port, "/health") == 503, timeout=10)
    svc = daemon.get("loading")
    assert svc["state"] == "starting" and svc["ready"] is False, svc
    assert active(svc)[0]["ready"] is False
    ready = start_ready(daemon, "loading")
    inst = active(ready)[0]
    assert inst["ready_at"] - inst["created_at"] >= 2.5, inst  # it waited for the 200
    assert _status(port, "/health") == 200


def test_rule2_ready_needs_identity_and_not_tcp_alone(daemon: Daemon) -> None:
    # Health answers 200 but the engine serves another model name: never ready.
    daemon.create("imposter", command=echo_cmd(model="other"), health_timeout_s=1)
    # Accepts TCP but never answers HTTP: never ready either.
    daemon.create("tcponly", command=f"{shlex.quote(PY)} -c {shlex.quote(LISTENER)} {{port}}", health_timeout_s=1)
    for name in ("imposter", "tcponly"):
        out = start(daemon, name, timeout_s=2)
        assert out["outcome"] == "timeout", out
        assert out["service"]["state"] == "starting" and out["service"]["ready"] is False
    imp = daemon.get("imposter")
    assert _status(imp["ports"][0], "/health") == 200
    assert "other" in active(imp)[0]["message"], active(imp)[0]
    time.sleep(1.5)  # past the health budget: still starting, never killed (rule 6)
    for name in ("imposter", "tcponly"):
        svc = daemon.get(name)
        assert svc["state"] == "starting" and not svc["ready"] and alive(pid_of(svc)), svc
    assert_status_matches_ps(daemon, "imposter", "tcponly")


@with_env(AIMA_BUSY_GRACE_S=14)
def test_rule2_a_busy_engine_stays_ready_a_failing_one_does_not(daemon: Daemon) -> None:
    # "busy": from 2 s on its probes time out (the port accepts, no answer in 2 s), as a llama.cpp server's
    # do behind a queue of generations. "sick": from 2 s on its /health answers 503.
    daemon.create("busy", command=echo_cmd("--busy-after", "2"))
    daemon.create("sick", command=echo_cmd("--unhealthy-after", "2"))
    t0 = time.monotonic()
    start_ready(daemon, "busy")
    start_ready(daemon, "sick")
    # Three failed probes (about 2 s apart) make a failing engine not ready ...
    daemon.wait_for(lambda: not daemon.get("sick")["ready"], timeout=30)
    assert "503" in active(daemon.get("sick"))[0]["message"]
    # ... while a busy one stays ready well past three timed-out probes, for the busy grace (14 s) ...
    while time.monotonic() - t0 < 13:
        svc = daemon.get("busy")
        assert svc["ready"] and svc["state"] == "running", svc
        time.sleep(0.5)
    # ... and only then is held not ready, saying why.
    daemon.wait_for(lambda: not daemon.get("busy")["ready"], timeout=30)
    assert "no answer to health probes" in active(daemon.get("busy"))[0]["message"]
    assert alive(pid_of(daemon.get("busy")))  # not ready is not dead: it is not restarted


def _status(port: int, path: str) -> int | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", trust_env=False, timeout=2).status_code
    except httpx.HTTPError:
        return None


# ---------------------------------------------------------------------------- rule 3: identity marks
@all_runtimes
def test_rule3_processes_carry_the_service_id_and_stop_acts_on_it_alone(
        daemon: Daemon, spawn: Callable[[list[str]], subprocess.Popen[bytes]]) -> None:
    a = create_named(daemon, "same", "alpha")
    b = create_named(daemon, "same", "beta")
    sa, sb = start_ready(daemon, "alpha"), start_ready(daemon, "beta")
    for svc, row in ((sa, a), (sb, b)):
        inst = active(svc)[0]
        env = psutil.Process(inst["pid"]).environ()
        assert env["AIMA_SERVICE_ID"] == row["id"] and env["AIMA_INSTANCE_ID"] == inst["id"]
        assert env["AIMA_HOME"] == str(daemon.home)
    # Same command line for both services except the port.
    ca, cb = psutil.Process(pid_of(sa)).cmdline(), psutil.Process(pid_of(sb)).cmdline()
    assert [w for w in ca if w != str(sa["ports"][0])] == [w for w in cb if w != str(sb["ports"][0])]
    # A foreign copy of the very same engine, not started by aima.
    fport = free_port()
    foreign = spawn([PY, "-m", "aima.engines.echo", "--port", str(fport), "--model", "same"])

    daemon.op("service.stop", service="alpha")
    assert not alive(pid_of(sa))
    b_now = daemon.get("beta")
    assert b_now["ready"] and pid_of(b_now) == pid_of(sb) and chat(b_now["endpoint"]) == "echo: hi"
    daemon.op("service.delete", service="alpha")
    assert daemon.get("beta")["ready"] and alive(pid_of(sb))
    daemon.op("service.delete", service="beta")
    assert not alive(pid_of(sb))
    assert foreign.poll() is None, "stop/delete touched a process aima did not start"
    # A daemon restart does not take the foreign engine for an orphan of its own.
    daemon.kill9()
    daemon.restart()
    assert foreign.poll() is None
    assert daemon.engine_processes() == []


# ---------------------------------------------------------------------------- rule 4: idempotent start
@all_runtimes
def test_rule4_start_on_a_ready_service_is_idempotent(daemon: Daemon) -> None:
    svc = daemon.create("idem")
    first = start_ready(daemon, "idem")
    for _ in range(3):
        again = start_ready(daemon, "idem")
        assert pid_of(again) == pid_of(first) and active(again)[0]["id"] == active(first)[0]["id"]
    assert len(events(daemon, svc["id"], "instance.starting")) == 1
    assert [p.pid for p in daemon.engine_processes()] == [pid_of(first)]
    assert_status_matches_ps(daemon, "idem")


@with_env(AIMA_RECONCILE_INTERVAL_S=3600)
@all_runtimes
def test_rule4_running_record_without_process_is_corrected_then_started(daemon: Daemon) -> None:
    svc = daemon.create("ghost")
    first = start_ready(daemon, "ghost")
    old_pid, old_inst = pid_of(first), active(first)[0]["id"]
    os.kill(old_pid, signal.SIGKILL)
    wait_dead(old_pid)
    out = start(daemon, "ghost", timeout_s=30)  # the record still says running when this arrives
    assert out["outcome"] == "ready", out
    new = out["service"]
    assert pid_of(new) != old_pid and alive(pid_of(new)) and active(new)[0]["id"] != old_inst
    failed = [e for e in events(daemon, svc["id"], "instance.failed") if e["instance_id"] == old_inst]
    assert failed, "the stale record was not corrected"
    starts = events(daemon, svc["id"], "instance.starting")
    assert len(starts) == 2 and failed[0]["id"] < starts[-1]["id"]
    assert not events(daemon, svc["id"], "service.restart_scheduled")
    assert [p.pid for p in daemon.engine_processes()] == [pid_of(new)]
    assert_status_matches_ps(daemon, "ghost")


# ---------------------------------------------------------------------------- rule 5: ports
@all_runtimes
def test_rule5_chaos_explicit_port_squatted_fails_fast_naming_the_holder(
        daemon: Daemon, spawn: Callable[[list[str]], subprocess.Popen[bytes]]) -> None:
    port = free_port()
    holder = squat(spawn, port)
    svc = daemon.create("squatted", port=port)
    t0 = time.monotonic()
    with pytest.raises(ApiError) as ei:
        start(daemon, "squatted", timeout_s=30)
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0, f"explicit port conflict took {elapsed:.2f}s"
    assert ei.value.status == 409
    msg = ei.value.body["error"]["message"]
    assert f"pid {holder.pid}" in msg and str(port) in msg, msg
    got = daemon.get("squatted")
    assert got["state"] == "failed" and f"pid {holder.pid}" in (got["message"] or ""), got
    time.sleep(2.5)  # a few reconcile ticks: nothing retries
    assert daemon.get("squatted")["state"] == "failed"
    assert not events(daemon, svc["id"], "service.restart_scheduled")
    assert not events(daemon, svc["id"], "instance.starting")
    assert daemon.engine_processes() == [] and holder.poll() is None
    assert_status_matches_ps(daemon, "squatted")
    assert_no_strays(daemon)
    # Once the holder is gone the same explicit port works.
    holder.kill()
    holder.wait(10)
    ready = start_ready(daemon, "squatted")
    assert active(ready)[0]["port"] == port and chat(ready["endpoint"]) == "echo: hi"
    assert_status_matches_ps(daemon, "squatted")


def _free_block(n: int) -> int:
    rng = random.Random()
    for _ in range(200):
        lo = rng.randrange(24000, 29900)
        if all(port_free(p) for p in range(lo, lo + n)):
            return lo
    raise AssertionError("no block of free ports found")


def test_rule5_auto_ports_distinct_in_range_skip_listeners_and_stay(
        aima_home: Path, spawn: Callable[[list[str]], subprocess.Popen[bytes]]) -> None:
    lo = _free_block(12)
    hi = lo + 11
    squat(spawn, lo)  # the first port of the range is taken by a foreign listener
    d = Daemon(aima_home, {**BASE_ENV, "AIMA_PORT_RANGE": f"{lo}-{hi}"})
    d.start()
    try:
        names = ["p1", "p2", "p3"]
        for n in names:
            d.create(n)
        ports = {}
        for n in names:
            svc = start_ready(d, n)
            ports[n] = active(svc)[0]["port"]
            assert svc["ports"] == [ports[n]]
        assert len(set(ports.values())) == 3
        assert all(lo < p <= hi for p in ports.values()), (lo, hi, ports)
        # A stopped service keeps its port: a new service does not get it.
        d.op("service.stop", service="p1")
        assert port_free(ports["p1"])
        d.create("p4")
        p4 = active(start_ready(d, "p4"))[0]["port"]
        assert p4 not in ports.values() and lo < p4 <= hi
        assert active(start_ready(d, "p1"))[0]["port"] == ports["p1"]
        # restart keeps the port
        out = d.op("service.restart", service="p2", timeout_s=30)
        assert out["outcome"] == "ready" and active(out["service"])[0]["port"] == ports["p2"]
        # a crash-restart keeps the port
        old = pid_of(d.get("p3"))
        os.kill(old, signal.SIGKILL)
        d.wait_for(lambda: (s := d.get("p3"))["ready"] and pid_of(s) != old, timeout=20)
        assert active(d.get("p3"))[0]["port"] == ports["p3"]
        assert_status_matches_ps(d, "p1", "p2", "p3", "p4")
    finally:
        d.cleanup()


# ---------------------------------------------------------------------------- rule 6: wait budget
def test_rule6_wait_timeout_keeps_starting_and_caller_may_raise_the_budget(daemon: Daemon) -> None:
    svc = daemon.create("late", command=echo_cmd("--ready-after", "4"), health_timeout_s=1)
    out = start(daemon, "late")  # no timeout given: the service's budget (1 s) applies
    assert out["outcome"] == "timeout", out
    assert "still starting" in out["message"]
    assert out["service"]["state"] == "starting"
    pid = pid_of(out["service"])
    assert alive(pid)
    daemon.wait_for(lambda: events(daemon, svc["id"], "instance.slow"), timeout=10)
    # The caller raises the budget: the same process becomes ready (never killed, never relaunched).
    ready = start(daemon, "late", timeout_s=30)
    assert ready["outcome"] == "ready", ready
    assert pid_of(ready["service"]) == pid
    assert len(events(daemon, svc["id"], "instance.starting")) == 1
    assert_status_matches_ps(daemon, "late")


# ---------------------------------------------------------------------------- rule 7: fatal lines, signals
@all_runtimes
def test_rule7_fatal_log_line_fails_at_once(daemon: Daemon) -> None:
    line = "CUDA out of memory. Tried to allocate 20.00 GiB"
    svc = daemon.create("oom", command=echo_cmd("--say", line, "--ready-after", "60"))
    t0 = time.monotonic()
    out = start(daemon, "oom")  # budget 600 s: only the fatal line can end this early
    assert time.monotonic() - t0 < 15
    assert out["outcome"] == "failed" and line in out["message"], out
    got = daemon.get("oom")
    assert got["state"] == "failed" and line in got["message"]
    assert got["instances"][0]["state"] == "failed" and line in got["instances"][0]["message"]
    assert daemon.engine_processes() == []
    time.sleep(1.5)
    assert not events(daemon, svc["id"], "service.restart_scheduled")
    assert len(events(daemon, svc["id"], "instance.starting")) == 1
    assert_status_matches_ps(daemon, "oom")


@all_runtimes
def test_rule7_an_exit_before_ready_fails_with_the_reason(daemon: Daemon) -> None:
    svc = daemon.create("quits", command=echo_cmd("--exit-after", "0.3", "--exit-code", "3",
                                                  "--ready-after", "60"))
    out = start(daemon, "quits", timeout_s=30)
    assert out["outcome"] == "failed", out
    assert "exited with code 3" in out["message"] and "exiting with code 3 as asked" in out["message"]
    assert out["service"]["instances"][0]["exit_code"] == 3
    time.sleep(1.5)
    assert daemon.get("quits")["state"] == "failed"
    assert not events(daemon, svc["id"], "service.restart_scheduled")
    assert_status_matches_ps(daemon, "quits")


def test_rule7_sigabrt_is_a_normal_failure(daemon: Daemon) -> None:
    daemon.create("abort-never", restart="never")
    daemon.create("abort-retry")
    p_never = pid_of(start_ready(daemon, "abort-never"))
    p_retry = pid_of(start_ready(daemon, "abort-retry"))
    for pid in (p_never, p_retry):
        os.kill(pid, signal.SIGABRT)
    svc = daemon.wait_for(lambda: (s := daemon.get("abort-never"))["state"] == "failed" and s, timeout=10)
    inst = svc["instances"][0]
    assert inst["exit_code"] == -signal.SIGABRT and "SIGABRT" in inst["message"], inst
    assert "SIGABRT" in svc["message"]
    # Under the default policy it is restarted like any other crash.
    again = daemon.wait_for(lambda: (s := daemon.get("abort-retry"))["ready"] and pid_of(s) != p_retry and s,
                            timeout=20)
    assert chat(again["endpoint"]) == "echo: hi"
    assert daemon.http.get("/health").status_code == 200
    assert_status_matches_ps(daemon, "abort-never", "abort-retry")


# ---------------------------------------------------------------------------- rule 8: restart policy
@with_env(AIMA_RESTART_MAX=3, AIMA_RESTART_BACKOFF_S=1)
def test_rule8_chaos_kill9_engine_noticed_restarted_with_backoff_then_gives_up(daemon: Daemon) -> None:
    svc = daemon.create("crashy")
    assert svc["restart_policy"] == "on-failure"  # the default
    pid = pid_of(start_ready(daemon, "crashy"))
    for attempt in range(1, 5):
        inst_id = next(i["id"] for i in daemon.get("crashy")["instances"] if i["pid"] == pid)
        t_kill = time.time()
        os.kill(pid, signal.SIGKILL)
        # Watch events only: a read (service.get) would reconcile by itself and hide a slow reconciler.
        ev = daemon.wait_for(lambda iid=inst_id: next((e for e in events(daemon, svc["id"], "instance.failed")
                                                       if e["instance_id"] == iid), None), timeout=10)
        noticed = ev["ts"] - t_kill
        assert noticed <= 3.0, f"crash noticed after {noticed:.2f}s"
        if attempt == 4:
            break
        sched = daemon.wait_for(lambda n=attempt: len(events(daemon, svc["id"], "service.restart_scheduled")) >= n
                                and events(daemon, svc["id"], "service.restart_scheduled")[n - 1], timeout=10)
        assert sched["data"]["attempt"] == attempt
        new = daemon.wait_for(lambda old=pid: (s := daemon.get("crashy"))["ready"] and pid_of(s) != old and s,
                              timeout=30)
        pid = pid_of(new)
    delays = [e["data"]["delay_s"] for e in events(daemon, svc["id"], "service.restart_scheduled")]
    assert delays == [1, 2, 4], delays
    daemon.wait_for(lambda: events(daemon, svc["id"], "service.gave_up"), timeout=10)
    got = daemon.get("crashy")
    assert got["state"] == "failed" and got["restarts"] == 3, got
    assert "gave up after 3 restarts" in got["message"], got["message"]
    time.sleep(1.5)
    assert daemon.get("crashy")["state"] == "failed" and daemon.engine_processes() == []
    assert_status_matches_ps(daemon, "crashy")
    assert_no_strays(daemon)


@all_runtimes
def test_rule8_clean_exit_is_not_restarted_on_failure(daemon: Daemon) -> None:
    svc = daemon.create("clean", command=echo_cmd("--exit-after", "1.5", "--exit-code", "0"))
    pid = pid_of(start_ready(daemon, "clean"))
    wait_dead(pid)
    got = daemon.wait_for(lambda: (s := daemon.get("clean"))["state"] != "running" and s, timeout=10)
    time.sleep(1.0)
    got = daemon.get("clean")
    assert got["state"] == "stopped" and got["instances"][0]["exit_code"] == 0, got
    assert not events(daemon, svc["id"], "service.restart_scheduled")
    assert_status_matches_ps(daemon, "clean")


# ---------------------------------------------------------------------------- rule 9: stop
@with_env(AIMA_STOP_GRACE_S=1)
@all_runtimes
def test_rule9_stop_is_idempotent_in_every_state(daemon: Daemon) -> None:
    daemon.create("never-started")
    daemon.create("booting", command=echo_cmd("--ready-after", "60"))
    daemon.create("up")
    daemon.create("broken", command=echo_cmd("--say", "error: invalid model file", "--ready-after", "60"))
    daemon.create("stubborn", command=echo_cmd("--ignore-sigterm"))
    assert start(daemon, "booting", wait=False)["service"]["state"] == "starting"
    start_ready(daemon, "up")
    assert start(daemon, "broken")["outcome"] == "failed"
    start_ready(daemon, "stubborn")
    pids = {n: [i["pid"] for i in daemon.get(n)["instances"] if i["pid"]] for n in
            ("booting", "up", "broken", "stubborn")}
    # Two concurrent stops on a stubborn engine: the second arrives while it is stopping.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futs = [pool.submit(daemon.op, "service.stop", service="stubborn") for _ in range(2)]
        assert [f.result()["state"] for f in futs] == ["stopped", "stopped"]
    for name in ("never-started", "booting", "up", "broken", "stubborn"):
        for _ in range(2):
            out = daemon.op("service.stop", service=name)
            assert out["state"] in ("stopped", "created") and not active(out), out
    for name, ps in pids.items():
        assert not any(alive(p) for p in ps), name
    assert daemon.engine_processes() == []
    assert_status_matches_ps(daemon, "never-started", "booting", "up", "broken", "stubborn")


@with_env(AIMA_STOP_GRACE_S=1)
@all_runtimes
def test_rule9_stop_kills_the_whole_group_and_frees_the_port(daemon: Daemon) -> None:
    daemon.create("family", command=echo_cmd("--child", "--ignore-sigterm"))
    svc = start_ready(daemon, "family")
    leader = psutil.Process(pid_of(svc))
    children = daemon.wait_for(lambda: leader.children(), timeout=10)
    port = active(svc)[0]["port"]
    out = daemon.op("service.stop", service="family")
    # Checked right after stop returns: nothing of the group lives and the port is free.
    assert not alive(leader.pid) and not any(alive(c.pid) for c in children)
    assert port_free(port)
    assert out["state"] == "stopped"
    assert out["instances"][0]["exit_code"] == -signal.SIGKILL  # SIGTERM was ignored: escalated
    assert_status_matches_ps(daemon, "family")


# ---------------------------------------------------------------------------- rule 10: delete
def test_rule10_chaos_deleted_service_stays_gone(daemon: Daemon) -> None:
    gone = daemon.create("gone")
    daemon.create("kept")
    g = start_ready(daemon, "gone")
    k = start_ready(daemon, "kept")
    out = daemon.op("service.delete", service="gone")
    assert out["deleted"] == gone["id"] and out["name"] == "gone"
    assert not alive(pid_of(g)) and port_free(g["ports"][0])
    assert [s["name"] for s in daemon.op("service.list")["services"]] == ["kept"]
    with pytest.raises(ApiError) as ei:
        daemon.get("gone")
    assert ei.value.status == 404
    assert daemon.cli("service", "status", "gone").returncode == 4
    assert events(daemon, gone["id"], "service.deleted")
    for how in ("kill9", "terminate"):
        daemon.kill9() if how == "kill9" else daemon.terminate()
        daemon.restart()
        names = [s["name"] for s in daemon.cli_json("service", "list")["services"]]
        assert names == ["kept"], (how, names)
        assert daemon.cli("service", "status", "gone").returncode == 4
    assert [p.pid for p in daemon.engine_processes()] == [pid_of(k)]
    assert_status_matches_ps(daemon, "kept")
    assert_no_strays(daemon)


@with_env(AIMA_RESTART_BACKOFF_S=2)
def test_rule10_delete_during_a_pending_restart_never_brings_it_back(daemon: Daemon) -> None:
    svc = daemon.create("pending")
    pid = pid_of(start_ready(daemon, "pending"))
    os.kill(pid, signal.SIGKILL)
    daemon.wait_for(lambda: events(daemon, svc["id"], "service.restart_scheduled"), timeout=10)
    daemon.op("service.delete", service="pending")
    time.sleep(3.0)  # past the backoff
    assert daemon.engine_processes() == []
    assert daemon.op("service.list")["services"] == []
    daemon.kill9()
    daemon.restart()
    time.sleep(1.5)
    assert daemon.op("service.list")["services"] == [] and daemon.engine_processes() == []
    assert not events(daemon, svc["id"], "instance.starting")[1:]  # only the first launch ever


# ---------------------------------------------------------------------------- rule 11: daemon restarts
@all_runtimes
def test_rule11_chaos_kill9_daemon_readopts_without_duplicates(daemon: Daemon) -> None:
    stay = daemon.create("stay")
    revive = daemon.create("revive")
    daemon.create("dead", restart="never")
    booting = daemon.create("booting", command=echo_cmd("--ready-after", "3"))
    pids = {n: pid_of(start_ready(daemon, n)) for n in ("stay", "revive", "dead")}
    pids["booting"] = pid_of(start(daemon, "booting", wait=False)["service"])

    daemon.kill9()
    assert all(alive(p) for p in pids.values()), "engines must survive the daemon"
    for n in ("revive", "dead"):
        os.kill(pids[n], signal.SIGKILL)
        wait_dead(pids[n])
    daemon.restart()

    # Re-adoption happens at boot: no waiting needed.
    adopted = {e["instance_id"]: e for e in events(daemon, kind="instance.adopted")}
    s = daemon.get("stay")
    assert pid_of(s) == pids["stay"] and s["ready"] and s["state"] == "running", s
    assert active(s)[0]["id"] in adopted and adopted[active(s)[0]["id"]]["data"]["ready"] is True
    assert chat(s["endpoint"]) == "echo: hi"
    assert len(events(daemon, stay["id"], "instance.starting")) == 1  # never a duplicate launch
    # The starting one is adopted and watched until ready, same process.
    b = daemon.wait_for(lambda: (x := daemon.get("booting"))["ready"] and x, timeout=20)
    assert pid_of(b) == pids["booting"]
    assert len(events(daemon, booting["id"], "instance.starting")) == 1
    # Died while the daemon was down: marked, and restarted by policy because it had been ready.
    failed = events(daemon, revive["id"], "instance.failed")
    assert failed and "died while the daemon was down" in failed[0]["message"], failed
    r = daemon.wait_for(lambda: (x := daemon.get("revive"))["ready"] and x, timeout=20)
    assert pid_of(r) != pids["revive"]
    d = daemon.get("dead")
    assert d["state"] == "failed" and "died while the daemon was down" in d["message"], d
    # The new daemon's reconciler watches the adopted instance (not its child) and notices a crash.
    inst_id = active(s)[0]["id"]
    t_kill = time.time()
    os.kill(pids["stay"], signal.SIGKILL)
    ev = daemon.wait_for(lambda: next((e for e in events(daemon, stay["id"], "instance.failed")
                                       if e["instance_id"] == inst_id), None), timeout=10)
    assert ev["ts"] - t_kill <= 3.0, ev["ts"] - t_kill
    s2 = daemon.wait_for(lambda: (x := daemon.get("stay"))["ready"] and x, timeout=20)
    assert pid_of(s2) != pids["stay"]
    for n in ("stay", "revive", "booting"):
        assert len(procs_by_service(daemon)[daemon.get(n)["id"]]) == 1
    assert_status_matches_ps(daemon, "stay", "revive", "dead", "booting")
    assert_no_strays(daemon)


def test_rule11_a_recycled_pid_is_neither_adopted_nor_killed(
        daemon: Daemon, spawn: Callable[[list[str]], subprocess.Popen[bytes]]) -> None:
    """While the daemon is down the engine dies and its pid now names a stranger (pid reuse,
    made here by pointing the record at a live foreign process): identity, not pid, decides."""
    svc = daemon.create("recycled")
    first = start_ready(daemon, "recycled")
    old, inst_id = pid_of(first), active(first)[0]["id"]
    daemon.kill9()
    os.kill(old, signal.SIGKILL)
    wait_dead(old)
    stranger = squat(spawn, free_port())
    con = sqlite3.connect(daemon.home / "aima.db")
    try:
        handle = json.loads(con.execute("SELECT handle FROM instances WHERE id = ?", (inst_id,)).fetchone()[0])
        handle["pid"] = stranger.pid
        handle["data"]["pgid"] = stranger.pid
        con.execute("UPDATE instances SET pid = ?, handle = ? WHERE id = ?",
                    (stranger.pid, json.dumps(handle), inst_id))
        con.commit()
    finally:
        con.close()
    daemon.restart()
    assert not [e for e in events(daemon, svc["id"], "instance.adopted") if e["instance_id"] == inst_id]
    assert [e for e in events(daemon, svc["id"], "instance.failed") if e["instance_id"] == inst_id]
    new = daemon.wait_for(lambda: (x := daemon.get("recycled"))["ready"] and x, timeout=20)
    assert pid_of(new) not in (old, stranger.pid)
    time.sleep(1.5)
    assert stranger.poll() is None, "aima killed a process it did not start"
    assert_status_matches_ps(daemon, "recycled")
    assert_no_strays(daemon)


# ---------------------------------------------------------------------------- rule 12: SIGTERM
@all_runtimes
def test_rule12_sigterm_finishes_in_flight_keeps_services_and_closes_db(daemon: Daemon) -> None:
    daemon.create("steady")
    slow = daemon.create("slowpoke", command=echo_cmd("--ready-after", "4"))
    steady = start_ready(daemon, "steady")
    result: dict[str, Any] = {}

    def in_flight() -> None:
        try:
            result["out"] = start(daemon, "slowpoke", timeout_s=30)
        except Exception as e:  # noqa: BLE001 - reported below
            result["error"] = e

    t = threading.Thread(target=in_flight)
    t.start()
    daemon.wait_for(lambda: events(daemon, slow["id"], "instance.starting"), timeout=10)
    t0 = time.monotonic()
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGTERM)
    # It stops accepting new connections while the in-flight request is still being served.
    daemon.wait_for(lambda: _refused(daemon.url), timeout=10)
    assert t.is_alive(), "the in-flight request ended before the daemon stopped accepting"
    rc = daemon.proc.wait(35)
    took = time.monotonic() - t0
    t.join(10)
    assert rc == 0 and took <= 30, (rc, took)
    assert "error" not in result, result
    assert result["out"]["outcome"] == "ready", result  # the in-flight request was finished
    slow_pid = pid_of(result["out"]["service"])
    # Services keep running and serving without the daemon.
    assert alive(pid_of(steady)) and alive(slow_pid)
    assert chat(steady["endpoint"], "still here") == "echo: still here"
    # The database was closed cleanly: checkpointed, intact.
    db = daemon.home / "aima.db"
    wal = db.with_name("aima.db-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    assert not (daemon.home / "daemon.pid").exists()
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = con.execute("SELECT service_id, state, pid FROM instances WHERE state IN "
                           "('starting','running','stopping')").fetchall()
    finally:
        con.close()
    assert sorted(r[2] for r in rows) == sorted([pid_of(steady), slow_pid]), rows
    daemon.restart()
    for name, pid in (("steady", pid_of(steady)), ("slowpoke", slow_pid)):
        svc = daemon.get(name)
        assert svc["ready"] and pid_of(svc) == pid, svc
    assert len(events(daemon, kind="instance.adopted")) == 2
    assert len(events(daemon, kind="instance.starting")) == 2
    assert_status_matches_ps(daemon, "steady", "slowpoke")
    assert_no_strays(daemon)


def _refused(url: str) -> bool:
    try:
        httpx.get(url + "/health", trust_env=False, timeout=1)
    except httpx.ConnectError:
        return True
    except httpx.HTTPError:
        return False
    return False


# ---------------------------------------------------------------------------- chaos: concurrency
def test_chaos_50_concurrent_start_stop_calls_over_10_services(daemon: Daemon) -> None:
    names = [f"c{i}" for i in range(10)]
    for n in names:
        daemon.create(n)
    rng = random.Random(20240601)
    calls = [(rng.choice(names), rng.choice(("start", "start-nowait", "stop"))) for _ in range(50)]

    def call(name: str, what: str) -> int:
        if what == "stop":
            r = daemon.http.post("/api/v1/ops/service.stop", json={"service": name})
        else:
            r = daemon.http.post("/api/v1/ops/service.start",
                                 json={"service": name, "wait": what == "start", "timeout_s": 60})
        return r.status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda c: call(*c), calls))
    assert codes == [200] * 50, codes

    def settled() -> list[dict[str, Any]] | None:
        svcs = daemon.op("service.list")["services"]
        for s in svcs:
            want = "running" if s["desired"] == "running" else "stopped"
            if s["state"] != want or (want == "running" and not s["ready"]):
                return None
        return svcs

    svcs = daemon.wait_for(settled, timeout=60, interval=0.2)
    procs = procs_by_service(daemon)
    running_pids: set[int] = set()
    for s in svcs:
        act = active(s)
        assert len(act) <= 1, s  # never a duplicate instance
        if s["state"] == "running":
            assert len(act) == 1 and alive(act[0]["pid"]), s
            assert procs.get(s["id"]) == {act[0]["pid"]}, (s, procs)
            running_pids.add(act[0]["pid"])
        else:
            assert not act and not procs.get(s["id"]), (s, procs)
    assert {p.pid for p in daemon.engine_processes()} == running_pids
    ports = [active(s)[0]["port"] for s in svcs if s["state"] == "running"]
    assert len(ports) == len(set(ports))
    assert_status_matches_ps(daemon, *names)
    assert_no_strays(daemon)
