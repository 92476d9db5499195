"""The docker runtime against a real Docker daemon (see tests/support/docker.py for the images).

A real aima daemon per test starts engines in containers of an image built here with no registry; the
engine is aima's echo server, the same command line the native tests run. What the containers really
are (labels, mounts, limits, state) is read back from Docker itself. The lifecycle rules run under both
runtimes in tests/controller/test_lifecycle.py; these are the container-specific ones: labels and
spec, `docker rm -f` behind aima's back, orphans, foreign containers on a port, image priority, an
engine that exits at once, re-adoption with its log followed again, and an unreachable daemon.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.daemon import PY, ApiError, Daemon, echo_cmd, free_port, wait_until
from tests.support.docker import MISSING_IMAGE, DockerKit, image_of

ENV = {"AIMA_STOP_GRACE_S": "2", "AIMA_RESTART_BACKOFF_S": "0.2", "AIMA_RESTART_MAX": "3"}


def boxed_daemon(home: Path, kit: DockerKit) -> Iterator[Daemon]:
    """A daemon whose services run in containers of the test image by default, on ``kit``'s Docker API."""
    d = Daemon(home, {**ENV, "AIMA_PORT_RANGE": _range(), **kit.env}, kit.service_kw(), kit)
    d.start()
    try:
        yield d
    finally:
        d.cleanup()


@pytest.fixture
def dd(aima_home: Path, docker_kit: DockerKit) -> Iterator[Daemon]:
    yield from boxed_daemon(aima_home, docker_kit)


def _range() -> str:
    import random

    lo = random.randrange(21000, 24900, 100)
    return f"{lo}-{lo + 99}"


def active(svc: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in svc["instances"] if i["state"] in ("starting", "running", "stopping")]


def start_ready(d: Daemon, name: str) -> dict[str, Any]:
    out = d.op("service.start", service=name, timeout_s=30)
    assert out["outcome"] == "ready", out
    return out["service"]


def events(d: Daemon, service_id: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
    evs = d.op("event.list", limit=10000)["events"]
    return [e for e in evs if (service_id is None or e["service_id"] == service_id)
            and (kind is None or e["kind"] == kind)]


def chat(endpoint: str, text: str = "hi") -> str:
    r = httpx.post(endpoint + "/v1/chat/completions", json={"messages": [{"role": "user", "content": text}]},
                   trust_env=False, timeout=10)
    r.raise_for_status()
    return r.json()["choices"][0]["message"]["content"]


def container(kit: DockerKit, svc: dict[str, Any]) -> Any:
    insts = active(svc)
    assert len(insts) == 1, svc
    return kit.client.containers.get(insts[0]["container"])


def no_tracebacks(d: Daemon) -> None:
    log = (d.home / "daemon-test.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]


# ---------------------------------------------------------------------------- spec, labels, logs
def test_container_carries_labels_limits_mounts_and_its_log_reaches_aima(dd: Daemon, docker_kit: DockerKit) -> None:
    # {host} in the command: the container gets its own network, the port published on 127.0.0.1 only.
    svc = dd.create("boxed", command=echo_cmd("--host", "{host}", "--say", "hello from the box"), cpus=0.5,
                    memory_limit="256MiB", shm_size="32MiB")
    assert svc["runtime"] == "docker" and svc["runtime_reason"] == "--runtime docker was asked for"
    assert svc["images"] == [docker_kit.image]
    ready = start_ready(dd, "boxed")
    inst = active(ready)[0]
    c = container(docker_kit, ready)
    labels = c.labels
    assert labels["aima.home"] == str(dd.home) and labels["aima.service"] == svc["id"]
    assert labels["aima.instance"] == inst["id"] and labels["aima.model"] == "boxed"
    assert labels["aima.engine"] == "custom" and labels["aima.service_name"] == "boxed"
    hc = c.attrs["HostConfig"]
    assert hc["RestartPolicy"]["Name"] in ("no", "") and hc["Init"] is True
    assert hc["NanoCpus"] == 500_000_000 and hc["Memory"] == 256 * 2**20 and hc["ShmSize"] == 32 * 2**20
    assert hc["NetworkMode"] != "host"
    port = inst["port"]
    assert hc["PortBindings"] == {f"{port}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert all(m["RW"] is False for m in c.attrs["Mounts"])  # the host's Python, read-only
    env = dict(e.split("=", 1) for e in c.attrs["Config"]["Env"])
    assert env["AIMA_SERVICE_ID"] == svc["id"] and env["AIMA_INSTANCE_ID"] == inst["id"]
    assert image_of(c) == docker_kit.image
    assert chat(ready["endpoint"], "through docker") == "echo: through docker"
    # the container's output is the service's log (followed by a thread: Podman's stream lags by up to 0.25 s)
    lines = wait_until(lambda: (ls := dd.op("service.logs", service="boxed")["lines"])
                       and any("serving model 'boxed'" in ln for ln in ls) and ls, timeout=2)
    assert any("hello from the box" in ln for ln in lines)
    assert dd.cli("service", "logs", "boxed").stdout.splitlines().count("hello from the box") == 1  # once
    # stop: the container is gone (not merely stopped) and the port is free
    stopped = dd.op("service.stop", service="boxed")
    assert stopped["state"] == "stopped" and stopped["instances"][0]["exit_code"] == -15  # SIGTERM, like native
    assert docker_kit.containers(dd.home, all=True) == []
    assert _port_free(port)
    kinds = [e["kind"] for e in events(dd, svc["id"]) if e["kind"].startswith(("service.", "image."))]
    assert kinds == ["service.created", "image.chosen", "service.starting", "service.running", "service.stopping",
                     "service.stopped"], kinds
    no_tracebacks(dd)


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


# ---------------------------------------------------------------------------- siblings
def test_two_services_from_one_image_and_engine_stop_and_delete_touch_only_their_own(
        dd: Daemon, docker_kit: DockerKit) -> None:
    for name in ("left", "right"):
        dd.op("service.create", model="same", name=name, command=echo_cmd(), **docker_kit.service_kw())
    left, right = start_ready(dd, "left"), start_ready(dd, "right")
    lc, rc = container(docker_kit, left), container(docker_kit, right)
    assert lc.image.id == rc.image.id and lc.labels["aima.engine"] == rc.labels["aima.engine"] == "custom"
    # A container of the very same image and engine that aima did not start.
    fport = free_port()
    foreign = docker_kit.run_foreign(f"foreign-{fport}", [PY, "-m", "aima.engines.echo", "--port", str(fport),
                                                           "--model", "same"], network_host=True)
    dd.op("service.stop", service="left")
    assert [c.id for c in docker_kit.containers(dd.home, all=True)] == [rc.id]
    now = dd.get("right")
    assert now["ready"] and active(now)[0]["container"] == rc.id and chat(now["endpoint"]) == "echo: hi"
    dd.op("service.delete", service="left")
    dd.op("service.delete", service="right")
    assert docker_kit.containers(dd.home, all=True) == []
    foreign.reload()
    assert foreign.status == "running", "stop/delete touched a container aima did not start"
    dd.kill9()
    dd.restart()
    time.sleep(0.5)
    foreign.reload()
    assert foreign.status == "running" and not events(dd, kind="instance.orphan_killed")
    no_tracebacks(dd)


# ---------------------------------------------------------------------------- removed behind aima's back
def test_docker_rm_f_is_noticed_within_2s_and_restarted_by_policy(dd: Daemon, docker_kit: DockerKit) -> None:
    svc = dd.create("doomed")
    first = start_ready(dd, "doomed")
    c = container(docker_kit, first)
    inst_id = active(first)[0]["id"]
    t_rm = time.time()
    c.remove(force=True)
    ev = wait_until(lambda: next((e for e in events(dd, svc["id"], "instance.failed")
                                  if e["instance_id"] == inst_id), None), timeout=10)
    assert ev["ts"] - t_rm <= 2.0, ev["ts"] - t_rm
    assert "removed (outside aima)" in ev["message"], ev
    assert events(dd, svc["id"], "service.restart_scheduled")
    again = wait_until(lambda: (s := dd.get("doomed"))["ready"] and s, timeout=20)
    c2 = container(docker_kit, again)
    assert c2.id != c.id and chat(again["endpoint"]) == "echo: hi"
    assert [x.id for x in docker_kit.containers(dd.home, all=True)] == [c2.id]
    no_tracebacks(dd)


def test_a_container_docker_restarts_behind_aimas_back_is_failed_and_replaced(
        dd: Daemon, docker_kit: DockerKit) -> None:
    """restarting (a restart policy set outside aima) maps to failed: aima applies the service's own policy
    with a fresh container, and removes the one Docker restarted."""
    svc = dd.create("policed")
    first = start_ready(dd, "policed")
    c = container(docker_kit, first)
    c.update(restart_policy={"Name": "always"})
    inst_id, pid = active(first)[0]["id"], active(first)[0]["pid"]
    os.kill(pid, signal.SIGKILL)
    ev = wait_until(lambda: next((e for e in events(dd, svc["id"], "instance.failed")
                                  if e["instance_id"] == inst_id), None), timeout=10)
    assert "restart" in ev["message"], ev
    again = wait_until(lambda: (s := dd.get("policed"))["ready"] and s, timeout=20)
    c2 = container(docker_kit, again)
    assert c2.id != c.id and c2.attrs["HostConfig"]["RestartPolicy"]["Name"] in ("no", "")
    wait_until(lambda: [x.id for x in docker_kit.containers(dd.home, all=True)] == [c2.id], timeout=10)
    no_tracebacks(dd)


# ---------------------------------------------------------------------------- re-adoption and orphans
def test_kill9_daemon_readopts_by_labels_follows_the_log_again_and_cleans_orphans(
        dd: Daemon, docker_kit: DockerKit) -> None:
    stay = dd.create("stay")
    late = dd.create("late", command=echo_cmd("--exit-after", "8", "--exit-code", "3"), restart="never")
    s = start_ready(dd, "stay")
    start_ready(dd, "late")
    cs = container(docker_kit, s)
    dd.kill9()
    # While the daemon is down: an aima-labelled container of this home that no record claims (as a crash
    # mid-launch leaves), and one of another home, which is none of this daemon's business.
    marks = {"aima.home": str(dd.home), "aima.service": "svc-0badf00d", "aima.instance": "inst-0badf00d"}
    orphan = docker_kit.run_foreign("orphan-" + os.urandom(3).hex(), [PY, "-c", "import time; time.sleep(600)"],
                                    network_host=True, labels=marks)
    other = docker_kit.run_foreign("other-home-" + os.urandom(3).hex(), [PY, "-c", "import time; time.sleep(600)"],
                                   network_host=True, labels={"aima.home": str(dd.home) + "-elsewhere",
                                                              "aima.instance": "inst-0badf00d"})
    dd.restart()
    adopted = events(dd, kind="instance.adopted")
    assert {e["service_id"] for e in adopted} == {stay["id"], late["id"]}
    assert any(cs.name in e["message"] for e in adopted), adopted
    killed = events(dd, kind="instance.orphan_killed")
    assert len(killed) == 1 and orphan.name in killed[0]["message"], killed
    with pytest.raises(Exception):  # noqa: B017 - docker.errors.NotFound: the orphan was removed
        orphan.reload()
    other.reload()
    assert other.status == "running"
    s2 = dd.get("stay")
    assert s2["ready"] and active(s2)[0]["container"] == cs.id and chat(s2["endpoint"]) == "echo: hi"
    assert len(events(dd, stay["id"], "instance.starting")) == 1  # never a duplicate
    # The adopted container's log is followed again: its exit line (written after the restart) arrives.
    failed = wait_until(lambda: (x := dd.get("late"))["state"] == "failed" and x, timeout=15)
    assert "exited with code 3" in failed["message"] and "exiting with code 3 as asked" in failed["message"], failed
    names = sorted(c.labels["aima.service_name"] for c in docker_kit.containers(dd.home, all=True))
    assert names == ["stay"]
    no_tracebacks(dd)


# ---------------------------------------------------------------------------- foreign container on the port
def test_a_foreign_container_on_the_port_fails_the_start_fast_naming_it(dd: Daemon, docker_kit: DockerKit) -> None:
    published, hostnet = free_port(), free_port()
    suffix = os.urandom(3).hex()
    docker_kit.run_foreign(f"squatter-{suffix}", [PY, "-m", "aima.engines.echo", "--host", "0.0.0.0", "--port",
                                                  str(published)], port=published)
    docker_kit.run_foreign(f"hostnet-{suffix}", [PY, "-m", "aima.engines.echo", "--port", str(hostnet)],
                           network_host=True)
    for port in (published, hostnet):
        wait_until(lambda p=port: not _port_free(p), timeout=10)
    for name, port, holder in (("pub", published, f"squatter-{suffix}"), ("hnet", hostnet, f"hostnet-{suffix}")):
        svc = dd.create(name, port=port)
        t0 = time.monotonic()
        with pytest.raises(ApiError) as ei:
            dd.op("service.start", service=name, timeout_s=30)
        elapsed = time.monotonic() - t0
        assert elapsed < 1.0, f"explicit port conflict took {elapsed:.2f}s"
        msg = ei.value.body["error"]["message"]
        assert ei.value.status == 409 and f"container {holder}" in msg and str(port) in msg, msg
        got = dd.get(name)
        assert got["state"] == "failed" and holder in got["message"], got
        assert not events(dd, svc["id"], "instance.starting")
    time.sleep(1.5)  # a reconcile tick or two: nothing retries
    assert all(dd.get(n)["state"] == "failed" for n in ("pub", "hnet"))
    assert docker_kit.containers(dd.home, all=True) == []
    no_tracebacks(dd)


# ---------------------------------------------------------------------------- images
def test_image_priority_first_present_candidate_else_fail_listing_what_was_tried(
        dd: Daemon, docker_kit: DockerKit) -> None:
    svc = dd.create("second", images=[MISSING_IMAGE, docker_kit.image])
    assert svc["images"] == [MISSING_IMAGE, docker_kit.image]
    ready = start_ready(dd, "second")
    assert image_of(container(docker_kit, ready)) == docker_kit.image
    chosen = events(dd, svc["id"], "image.chosen")
    assert len(chosen) == 1 and chosen[0]["data"]["image"] == docker_kit.image
    assert f"{MISSING_IMAGE} is not" in chosen[0]["data"]["reason"], chosen
    assert not events(dd, svc["id"], "image.pulling")  # a local candidate is never pulled over

    other_missing = "aima-test/also-missing:1"
    svc2 = dd.create("none", images=[MISSING_IMAGE, other_missing])
    t0 = time.monotonic()
    with pytest.raises(ApiError) as ei:
        dd.op("service.start", service="none", timeout_s=30)
    assert time.monotonic() - t0 < 15
    msg = ei.value.body["error"]["message"]
    assert ei.value.status == 502 and "no image to run service none" in msg, msg
    assert msg.index(MISSING_IMAGE) < msg.index(other_missing) and msg.count("pull failed") == 2, msg
    got = dd.get("none")
    assert got["state"] == "failed" and other_missing in got["message"]
    assert [e["data"]["image"] for e in events(dd, svc2["id"], "image.pulling")] == [MISSING_IMAGE, other_missing]
    assert [c.labels["aima.service_name"] for c in docker_kit.containers(dd.home, all=True)] == ["second"]
    no_tracebacks(dd)


# ---------------------------------------------------------------------------- an engine that exits at once
def test_an_engine_that_exits_at_once_fails_with_its_log_line(dd: Daemon, docker_kit: DockerKit) -> None:
    code = "import sys; print('fatal: cannot open /models/nothing.gguf', flush=True); sys.exit(2)"
    svc = dd.create("instant", command=f"{shlex.quote(PY)} -c {shlex.quote(code)} {{port}}")
    out = dd.op("service.start", service="instant", timeout_s=30)
    assert out["outcome"] == "failed", out
    assert "exited with code 2" in out["message"] and "cannot open /models/nothing.gguf" in out["message"], out
    assert out["service"]["instances"][0]["exit_code"] == 2
    time.sleep(1.5)
    assert dd.get("instant")["state"] == "failed"
    assert not events(dd, svc["id"], "service.restart_scheduled")
    assert docker_kit.containers(dd.home, all=True) == []  # nothing left behind
    no_tracebacks(dd)


# ---------------------------------------------------------------------------- the catalog path
ENGINE = """\
name: echo-box
description: aima's echo server as a containerised catalog engine (tests only)
model_types: [llm]
formats: [gguf]
command: [{python}, "-m", "aima.engines.echo", "--model", "{{model_name}}", "--say", "weights {{model_path}}"]
host_flag: --host
ports:
  - {{name: http, flag: --port, primary: true}}
health:
  path: /health
  timeout_s: 60
identity:
  required: true
images:
  - {{name: {missing_name}, tag: {missing_tag}, registries: [docker.io]}}
  - {{name: {name}, tag: {tag}, registries: [docker.io]}}
runtime:
  prefer: docker
  shm_size: 16MiB
"""

MODEL = """\
name: box-model
type: llm
sources:
  - {{id: local, type: local, path: {path}, format: gguf}}
variants:
  - name: cpu
    engine: echo-box
    device: cpu
    format: gguf
    source: local
    memory:
      required_bytes: 1MiB
"""


def test_catalog_engine_prefers_docker_model_mounted_read_only_and_cli_runtime_choice(
        dd: Daemon, docker_kit: DockerKit) -> None:
    weights = dd.home.parent / "weights" / "box.gguf"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"GGUF" + b"\0" * 60)
    name, tag = docker_kit.image.rsplit(":", 1)
    mname, mtag = MISSING_IMAGE.rsplit(":", 1)
    (dd.home / "catalog" / "engines").mkdir(parents=True)
    (dd.home / "catalog" / "models").mkdir(parents=True)
    # The venv's python3 spelled out (``{python}`` would be the image's own python3 in a container).
    python = json.dumps(str(Path(PY).with_name("python3")))
    (dd.home / "catalog" / "engines" / "echo-box.yaml").write_text(
        ENGINE.format(python=python, name=name, tag=tag, missing_name=mname, missing_tag=mtag))
    (dd.home / "catalog" / "models" / "box-model.yaml").write_text(MODEL.format(path=weights))
    # auto: the engine prefers docker and Docker answers (the volumes carry the test image's Python)
    r = dd.cli("-o", "json", "service", "create", "box-model", "--name", "boxed",
               *[a for v in docker_kit.volumes for a in ("--volume", v)])
    assert r.returncode == 0, r.stderr
    svc = json.loads(r.stdout)
    assert svc["runtime"] == "docker" and "prefers docker and Docker answers" in svc["runtime_reason"], svc
    assert svc["images"] == [MISSING_IMAGE, docker_kit.image]
    ready = start_ready(dd, "boxed")
    c = container(docker_kit, ready)
    mounts = {m["Source"]: m for m in c.attrs["Mounts"]}
    assert mounts[str(weights.parent)]["Destination"] == str(weights.parent)
    assert mounts[str(weights.parent)]["RW"] is False
    assert c.attrs["HostConfig"]["ShmSize"] == 16 * 2**20 and c.attrs["HostConfig"]["NetworkMode"] != "host"
    assert chat(ready["endpoint"]) == "echo: hi"
    assert any(f"weights {weights}" in ln for ln in dd.op("service.logs", service="boxed")["lines"])
    # --runtime native on the same engine: a process, saying so
    r = dd.cli("-o", "json", "service", "create", "box-model", "--name", "native-box", "--runtime", "native")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["runtime"] == "native"
    # container-only options on a native service are refused with the reason
    r = dd.cli("service", "create", "box-model", "--name", "x", "--runtime", "native", "--cpus", "1")
    assert r.returncode == 5 and "--cpus applies to containers" in r.stderr, r.stderr
    # `aima run --runtime docker` honours --runtime: a new docker service of the catalog's images (here
    # without the test's Python volumes, so its engine cannot run: it fails, saying why)
    r = dd.cli("run", "box-model", "--name", "ran", "--runtime", "docker", "--detach", "--timeout", "10")
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    ran = dd.get("ran")
    assert ran["runtime"] == "docker" and ran["state"] == "failed", ran
    no_tracebacks(dd)


# ---------------------------------------------------------------------------- no daemon
def test_unreachable_docker_is_one_clear_line_naming_docker_host_and_never_a_hang(aima_home: Path) -> None:
    sock = "unix:///nonexistent/docker.sock"
    d = Daemon(aima_home, {**ENV, "DOCKER_HOST": sock})
    d.start()
    try:
        for kw in ({"runtime": "docker", "images": ["x:1"]}, {"images": ["x:1"]}):
            t0 = time.monotonic()
            with pytest.raises(ApiError) as ei:
                d.create("nodock", **kw)
            assert time.monotonic() - t0 < 3
            msg = ei.value.body["error"]["message"]
            assert ei.value.status == 503 and f"DOCKER_HOST={sock}" in msg and "\n" not in msg, msg
        r = d.cli("service", "create", "nodock", "--command", echo_cmd(), "--runtime", "docker", "--image", "x:1")
        assert r.returncode == 6 and f"DOCKER_HOST={sock}" in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        # without --image a custom command runs natively, and everything else works as before
        svc = d.create("plain")
        assert svc["runtime"] == "native" and "without --image" in svc["runtime_reason"]
        out = d.op("service.start", service="plain", timeout_s=30)
        assert out["outcome"] == "ready", out
        t0 = time.monotonic()
        assert [s["name"] for s in d.op("service.list")["services"]] == ["plain"]
        assert time.monotonic() - t0 < 2
        port = free_port()
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
            s.listen(1)
            d.create("taken", port=port)
            t0 = time.monotonic()
            with pytest.raises(ApiError) as ei:
                d.op("service.start", service="taken")
            assert time.monotonic() - t0 < 1.0 and f"pid {os.getpid()}" in ei.value.body["error"]["message"]
        no_tracebacks(d)
    finally:
        d.cleanup()


def test_a_hung_docker_daemon_never_stalls_the_api_or_the_gateway(dd: Daemon, docker_kit: DockerKit) -> None:
    # One service in a container, one native; then dockerd is frozen (SIGSTOP: it accepts connections and
    # never answers, as a wedged daemon does) while the container keeps running under its shim.
    dd.create("boxed")
    start_ready(dd, "boxed")
    dd.create("plain", runtime="native", images=[], volumes=[])
    start_ready(dd, "plain")
    pids = [int(p) for p in subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True).stdout.split()]
    assert pids, "no dockerd process to freeze"
    worst = 0.0
    for p in pids:
        os.kill(p, signal.SIGSTOP)
    try:
        t_end = time.monotonic() + 8  # several reconcile ticks, each asking Docker about "boxed"
        with httpx.Client(base_url=dd.url, trust_env=False, timeout=30) as c:
            while time.monotonic() < t_end:
                t0 = time.monotonic()
                assert c.get("/health").status_code == 200
                r = c.post("/v1/chat/completions", json={"model": "plain", "messages": [{"role": "user",
                                                                                        "content": "hi"}]})
                assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "echo: hi"
                worst = max(worst, time.monotonic() - t0)
                time.sleep(0.1)
    finally:
        for p in pids:
            os.kill(p, signal.SIGCONT)
    # Docker's calls time out after 3 s; none of that wait may land on the loop the API and gateway share.
    assert worst < 1.5, f"a request took {worst:.2f}s while dockerd was frozen"
    again = wait_until(lambda: (s := dd.get("boxed"))["ready"] and s, timeout=30)
    assert again["state"] == "running" and chat(again["endpoint"]) == "echo: hi"
    no_tracebacks(dd)
