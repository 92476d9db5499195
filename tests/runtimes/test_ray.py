"""The ray runtime against a real Ray cluster on this machine (tests/support/ray.py: head on 127.0.0.2 with
no CPUs, nodes on 127.0.0.3 and 127.0.0.4 with the custom resources zone_a / zone_b) and a real aima daemon
attached to it with AIMA_RAY_ADDRESS. Engines are the in-package echo engine listening on their node's
address; nothing of aima or Ray is mocked.

The node-loss test runs last in this module: it kills a node's raylet and workers, then starts that node
again (a new node id on the same address) so the session's cluster stays whole.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from aima.runtimes.ray import namespace_for
from tests.support.daemon import AIMA, ApiError, Daemon, echo_cmd, wait_until
from tests.support.ray import ACTOR_CODE, LIST_CODE, RayCluster, RayKit, driver

N3, N4 = "127.0.0.3", "127.0.0.4"
BASE_ENV = {"AIMA_STOP_GRACE_S": "2", "AIMA_RESTART_BACKOFF_S": "0.2", "AIMA_RESTART_MAX": "3"}


@pytest.fixture
def daemon_env() -> dict[str, str]:
    return dict(BASE_ENV)


@pytest.fixture
def rd(aima_home: Path, daemon_env: dict[str, str], ray_cluster: RayCluster) -> Iterator[Daemon]:
    """A daemon attached to the session's Ray cluster; its services run there unless said otherwise."""
    kit = RayKit(ray_cluster)
    d = Daemon(aima_home, {**kit.env, **daemon_env}, kit.service_kw(), kit)
    d.start()
    try:
        yield d
    finally:
        d.cleanup()


def engine_cmd(*flags: str) -> str:
    return echo_cmd("--host", "{host}", *flags)


def ready(d: Daemon, name: str, timeout: float = 60) -> dict[str, Any]:
    out = d.op("service.start", service=name, timeout_s=timeout)
    assert out["outcome"] == "ready", out
    return out["service"]


def inst(svc: dict[str, Any]) -> dict[str, Any]:
    act = [i for i in svc["instances"] if i["state"] in ("starting", "running", "stopping")]
    assert len(act) == 1, svc
    return act[0]


def events(d: Daemon, service_id: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
    evs = d.op("event.list", limit=10000)["events"]
    return [e for e in evs if (service_id is None or e["service_id"] == service_id)
            and (kind is None or e["kind"] == kind)]


def actors(cluster: RayCluster, home: Path) -> list[str]:
    return json.loads(driver(cluster, LIST_CODE, namespace_for(home)).strip().splitlines()[-1])


def alive(pid: int | None) -> bool:
    try:
        return bool(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def chat(endpoint: str, text: str = "hi") -> str:
    r = httpx.post(endpoint + "/v1/chat/completions", json={"messages": [{"role": "user", "content": text}]},
                   trust_env=False, timeout=10)
    r.raise_for_status()
    return r.json()["choices"][0]["message"]["content"]


# ---------------------------------------------------------------------------- cluster status
def test_cluster_status_lists_nodes_resources_hardware_and_instances(rd: Daemon, ray_cluster: RayCluster) -> None:
    rd.create("status-m", command=engine_cmd(), name="on3", node=N3)
    ready(rd, "on3")
    st = rd.cli_json("cluster", "status")
    assert st["attached"] and st["reachable"] and st["address"] == ray_cluster.address, st
    assert st["nodes_alive"] == 3 and st["namespace"] == namespace_for(rd.home)
    nodes = {n["address"]: n for n in st["nodes"]}
    assert set(nodes) == {"127.0.0.2", N3, N4}
    head = nodes["127.0.0.2"]
    assert head["head"] and head["alive"] and head["resources_total"].get("CPU", 0) == 0
    assert nodes[N3]["resources_total"]["zone_a"] == 1 and nodes[N4]["resources_total"]["zone_b"] == 1
    assert nodes[N3]["resources_total"]["CPU"] == 2 and nodes[N3]["resources_available"]["CPU"] < 2
    for n in nodes.values():  # aima's own detection, run as a Ray task on that node
        assert n["hardware"]["cpu"]["cores_logical"] >= 1 and n["hardware"]["memory"]["total_bytes"] > 0, n
        assert n["id"] and n["lost_at"] is None
    assert [i["service"] for i in nodes[N3]["instances"]] == ["on3"] and not nodes[N4]["instances"]
    # The same through REST, and the table for people.
    rest = rd.http.get("/api/v1/cluster").json()
    assert {n["address"] for n in rest["nodes"]} == set(nodes)
    table = rd.cli("cluster", "status")
    assert table.returncode == 0 and N3 in table.stdout and "on3" in table.stdout, table
    status = rd.cli_json("status")
    assert status["cluster_attached"] and status["cluster_nodes_alive"] == 3, status
    assert "3 of 3 nodes alive" in status["cluster"]
    # And as the MCP tool cluster.status, through the official client at /mcp.
    from tests.surfaces.test_mcp import result_json, with_client

    got: dict[str, Any] = {}

    async def body(c: Any) -> None:
        got.update(result_json(await c.call_tool("cluster.status", {})))

    with_client(rd, "http", body)
    assert {n["address"] for n in got["nodes"]} == set(nodes) and got["nodes_alive"] == 3


def test_cluster_status_without_a_cluster_says_so(aima_home: Path) -> None:
    d = Daemon(aima_home, {})
    d.start()
    try:
        st = d.cli_json("cluster", "status")
        assert st["attached"] is False and st["nodes"] == [] and "aima start --ray" in st["message"]
        assert d.cli_json("status")["cluster_attached"] is False
    finally:
        d.cleanup()


def test_start_fails_at_once_naming_an_unreachable_cluster(aima_home: Path, tmp_path: Path) -> None:
    env = {**os.environ, "AIMA_HOME": str(aima_home), "RAY_AUTH_MODE": "disabled"}
    t0 = time.monotonic()
    r = subprocess.run([AIMA, "start", "--port", "0", "--ray", "127.0.0.9:39999"], env=env, capture_output=True,
                       text=True, timeout=60)
    took = time.monotonic() - t0
    assert r.returncode != 0 and took < 15, (took, r)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "127.0.0.9:39999" in lines[0] and "cannot be reached" in lines[0], r.stderr


# ---------------------------------------------------------------------------- placement
def test_placement_by_node_and_by_resources(rd: Daemon, ray_cluster: RayCluster) -> None:
    n3_id = ray_cluster.node_id(N3)
    r = rd.cli("service", "create", "pin", "--name", "by-ip", "--runtime", "ray", "--node", N4,
               "--command", engine_cmd())
    assert r.returncode == 0, r.stderr
    rd.create("pin", command=engine_cmd(), name="by-id", node=n3_id[:16])
    rd.create("pin", command=engine_cmd(), name="by-zone", resources={"zone_a": "1"})
    rd.create("pin", command=engine_cmd(), name="by-zone-b", resources={"zone_b": "0.5", "CPU": "0.5"})
    where = {}
    for name in ("by-ip", "by-id", "by-zone", "by-zone-b"):
        i = inst(ready(rd, name))
        where[name] = i["host"]
        assert i["node"] and i["runtime"] == "ray"
        env = psutil.Process(i["pid"]).environ()  # the engine carries the marks of a native start
        assert env["AIMA_INSTANCE_ID"] == i["id"] and env["AIMA_HOME"] == str(rd.home)
        assert env["AIMA_SERVICE_ID"] == rd.get(name)["id"]
        assert chat(f"http://{i['host']}:{i['port']}") == "echo: hi"
    assert where == {"by-ip": N4, "by-id": N3, "by-zone": N3, "by-zone-b": N4}
    st = rd.cli_json("service", "status", "by-ip")  # the node of every instance is shown
    assert st["instances"][0]["host"] == N4 and st["instances"][0]["node"] == ray_cluster.node_id(N4)
    assert N4 in rd.cli("service", "status", "by-ip").stdout  # the table names the node's address too
    # Stop ends the engine and its actor and returns once the port is free on that node.
    i = inst(rd.get("by-zone"))
    out = rd.op("service.stop", service="by-zone")
    assert out["state"] == "stopped" and not alive(i["pid"])
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{N3}:{i['port']}/health", trust_env=False, timeout=2)
    assert i["id"] not in actors(ray_cluster, rd.home)
    # Delete is final: no actor, no process, no record.
    j = inst(rd.get("by-ip"))
    rd.op("service.delete", service="by-ip")
    assert not alive(j["pid"]) and j["id"] not in actors(ray_cluster, rd.home)
    assert "by-ip" not in [s["name"] for s in rd.op("service.list")["services"]]


def test_an_unsatisfiable_request_fails_within_10s_naming_the_resource(rd: Daemon) -> None:
    rd.create("gpu", command=engine_cmd(), name="needs-gpu", resources={"GPU": "1"})
    t0 = time.monotonic()
    with pytest.raises(ApiError) as ei:
        rd.op("service.start", service="needs-gpu", timeout_s=60)
    took = time.monotonic() - t0
    msg = ei.value.body["error"]["message"]
    assert took < 10 and "GPU=1" in msg and N3 in msg and N4 in msg and "GPU=0" in msg, (took, msg)
    assert rd.get("needs-gpu")["state"] == "failed"
    # Satisfiable in principle but taken now (zone_a=1 exists once): pending, then failed within 10 s.
    rd.create("zone", command=engine_cmd(), name="first-a", resources={"zone_a": "1"})
    rd.create("zone", command=engine_cmd(), name="second-a", resources={"zone_a": "1"})
    ready(rd, "first-a")
    t0 = time.monotonic()
    with pytest.raises(ApiError) as ei:
        rd.op("service.start", service="second-a", timeout_s=60)
    took = time.monotonic() - t0
    msg = ei.value.body["error"]["message"]
    assert took < 10 and "zone_a=1" in msg and "zone_a=0 available" in msg, (took, msg)
    assert rd.get("first-a")["ready"]


# ---------------------------------------------------------------------------- gateway and logs
def test_the_openai_client_through_the_gateway_reaches_an_instance_on_another_node(rd: Daemon) -> None:
    import openai

    rd.create("remote-echo", command=engine_cmd("--stream-delay", "0.01"), name="remote", node=N4)
    i = inst(ready(rd, "remote"))
    assert i["host"] == N4
    client = openai.OpenAI(base_url=rd.url + "/v1", api_key="none", max_retries=0)
    reply = client.chat.completions.create(model="remote-echo", messages=[{"role": "user", "content": "hello"}])
    assert reply.choices[0].message.content == "echo: hello"
    chunks = client.chat.completions.create(model="remote-echo", stream=True,
                                            messages=[{"role": "user", "content": "stream me"}])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream me"
    assert [m.id for m in client.models.list().data] == ["remote-echo"]


def test_service_logs_of_a_remote_instance(rd: Daemon) -> None:
    rd.create("logm", command=engine_cmd("--say", "hello from the node"), name="talker", node=N3)
    i = inst(ready(rd, "talker"))
    out = rd.cli("service", "logs", "talker")
    assert out.returncode == 0 and "hello from the node" in out.stdout and f"on http://{N3}:{i['port']}" in out.stdout
    assert f"on node {N3}" in out.stdout  # aima's own header line, written on the node
    follow = subprocess.Popen([AIMA, "service", "logs", "-f", "talker"], env=rd.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert follow.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any("hello from the node" in ln for ln in seen):
            ready_fds, _, _ = select.select([follow.stdout], [], [], 1.0)
            if ready_fds:
                seen.append(follow.stdout.readline())
        assert any("hello from the node" in s for s in seen), seen
    finally:
        os.killpg(follow.pid, signal.SIGKILL)
        follow.wait(10)


# ---------------------------------------------------------------------------- crashes and restarts
def test_engine_kill9_is_noticed_within_2s_and_restarted_on_the_same_node(rd: Daemon) -> None:
    svc = rd.create("crash", command=engine_cmd(), name="crashy")
    first = inst(ready(rd, "crashy"))
    t_kill = time.time()
    os.kill(first["pid"], signal.SIGKILL)
    ev = rd.wait_for(lambda: next((e for e in events(rd, svc["id"], "instance.failed")
                                   if e["instance_id"] == first["id"]), None), timeout=10)
    assert ev["ts"] - t_kill <= 2.0, ev["ts"] - t_kill
    assert "SIGKILL" in ev["message"] and first["host"] in ev["message"], ev
    again = rd.wait_for(lambda: (s := rd.get("crashy"))["ready"] and inst(s)["id"] != first["id"] and s, timeout=30)
    second = inst(again)
    assert second["host"] == first["host"] and second["node"] == first["node"]
    assert alive(second["pid"]) and not alive(first["pid"])


def hub_model(home: Path, name: str, file: str, required: str) -> tuple[Any, Path]:
    """A catalog model of the echo engine whose weights (a tiny GGUF) come from a hub mirror the test starts:
    (the mirror, the weights). The daemon needs ``AIMA_HF_ENDPOINT=mirror.url``."""
    from tests.support.echo_catalog import ENGINE
    from tests.support.modelstore import HfMirror, write_gguf

    weights = write_gguf(home.parent / "src" / file)
    mirror = HfMirror()
    mirror.add(f"aima-test/{name}", {file: weights.read_bytes()})
    (home / "catalog" / "engines").mkdir(parents=True, exist_ok=True)
    (home / "catalog" / "models").mkdir(parents=True, exist_ok=True)
    (home / "catalog" / "engines" / "echo-engine.yaml").write_text(ENGINE)
    (home / "catalog" / "models" / f"{name}.yaml").write_text(
        f"name: {name}\ntype: llm\nfamily: echo\ndescription: the echo engine's model from a hub mirror (tests)\n"
        f"sources:\n  - {{id: hub, type: huggingface, repo: aima-test/{name}, file: {file}, format: gguf}}\n"
        "variants:\n  - name: cpu\n    engine: echo-engine\n    device: cpu\n    format: gguf\n    source: hub\n"
        f"    memory: {{required_bytes: {required}}}\n")
    return mirror, weights


def test_a_model_is_pulled_on_the_node_where_it_runs(aima_home: Path, ray_cluster: RayCluster) -> None:
    mirror, weights = hub_model(aima_home, "echo-hub", "echo.gguf", "1MiB")
    kit = RayKit(ray_cluster)
    d = Daemon(aima_home, {**kit.env, **BASE_ENV, "AIMA_HF_ENDPOINT": mirror.url}, kit.service_kw(), kit)
    d.start()
    try:
        pulled = d.cli("model", "pull", "echo-hub")
        assert pulled.returncode == 0, pulled.stderr
        here = aima_home / "models" / "echo-hub" / "echo.gguf"
        assert here.is_file()
        svc = d.op("service.create", model="echo-hub", runtime="ray", node=N3)
        i = inst(ready(d, svc["name"]))
        assert i["host"] == N3
        node_file = ray_cluster.node_homes[N3] / "models" / "echo-hub" / "echo.gguf"
        assert node_file.is_file() and node_file.read_bytes() == weights.read_bytes()
        log = "\n".join(d.op("service.logs", service=svc["name"])["lines"])
        assert f"weights {node_file}" in log, log  # the engine was given the node's copy
        progress = events(d, svc["id"], "model.pull.progress")
        assert progress and progress[-1]["data"]["node"] == N3 and progress[-1]["data"]["done"] > 0, progress
        assert events(d, svc["id"], "model.pulled")
        # A second start on that node reuses its copy: nothing is fetched again.
        gets = len(mirror.gets("/resolve/"))
        d.op("service.stop", service=svc["name"])
        ready(d, svc["name"])
        assert len(mirror.gets("/resolve/")) == gets
    finally:
        d.cleanup()
        mirror.close()


def test_auto_runs_a_model_too_big_for_this_machine_on_a_node_that_pulls_it(aima_home: Path,
                                                                              ray_cluster: RayCluster) -> None:
    """The daemon runs in a 1 GiB memory cgroup, so a model that needs 4 GiB does not fit its machine; the
    nodes (the same host, outside that cgroup) report their whole memory. `--runtime auto` (the default)
    resolves the model against the nodes, chooses ray saying why, and the node pulls the weights the
    daemon's machine never had."""
    from tests.support.cgroup import memory_cgroup

    mirror, weights = hub_model(aima_home, "echo-big", "big.gguf", "4GiB")
    kit = RayKit(ray_cluster)
    with memory_cgroup(1 << 30) as join:
        d = Daemon(aima_home, {**kit.env, **BASE_ENV, "AIMA_HF_ENDPOINT": mirror.url})
        d.preexec = join
        d.start()
        try:
            hw = d.cli_json("hardware")
            assert hw["effective"]["memory_total_bytes"] == 1 << 30, hw["effective"]
            # Without the cluster it would be refused here; with it, the exact command of the issue:
            made = d.cli("service", "create", "echo-big", "-o", "json")
            assert made.returncode == 0, made.stderr
            svc = json.loads(made.stdout)
            assert svc["runtime"] == "ray", svc
            why = svc["runtime_reason"]
            assert why.startswith("auto: a Ray cluster is attached and it does not fit on this machine; it fits node "
                                  "127.0.0."), why
            assert not (aima_home / "models" / "echo-big").exists()  # nothing pulled on the daemon's machine
            i = inst(ready(d, svc["name"]))
            node_file = ray_cluster.node_homes[i["host"]] / "models" / "echo-big" / "big.gguf"
            assert node_file.is_file() and node_file.read_bytes() == weights.read_bytes()
            assert events(d, svc["id"], "model.pulled")
            r = httpx.post(d.url + "/v1/chat/completions", trust_env=False, timeout=10,
                           json={"model": "echo-big", "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"], r.text
            # `aima run` takes the same way: resolved on a node, nothing pulled here, a service of its own ready
            ran = d.cli("run", "echo-big", "--name", "by-run", "--detach", "-o", "json")
            assert ran.returncode == 0, ran.stderr
            out = json.loads(ran.stdout)
            assert (out["outcome"], out["pulled"], out["reused"]) == ("ready", False, False), out
            assert out["service"]["runtime"] == "ray" and out["service"]["name"] == "by-run", out
            assert not (aima_home / "models" / "echo-big").exists()
            # --runtime native stays refused, naming the memory (409, exit 5)
            native = d.cli("service", "create", "echo-big", "--name", "here", "--runtime", "native")
            assert native.returncode == 5 and "does not fit" in native.stderr, native.stderr
            assert "Traceback" not in native.stderr
            # and a model no node has room for is refused naming each node
            (aima_home / "catalog" / "models" / "echo-huge.yaml").write_text(
                (aima_home / "catalog" / "models" / "echo-big.yaml").read_text()
                .replace("echo-big", "echo-huge").replace("4GiB", "4096GiB"))
            huge = d.cli("service", "create", "echo-huge")
            assert huge.returncode == 5 and "nor on any node of the cluster (node 127.0.0." in huge.stderr, huge.stderr
        finally:
            d.cleanup()
            mirror.close()


# ---------------------------------------------------------------------------- daemon restarts
def test_daemon_kill9_readopts_by_name_without_duplicates_and_removes_foreign_actors(
        rd: Daemon, ray_cluster: RayCluster) -> None:
    a = rd.create("stay", command=engine_cmd(), name="stay-a", node=N3)
    b = rd.create("stay", command=engine_cmd(), name="stay-b", node=N4)
    ia, ib = inst(ready(rd, "stay-a")), inst(ready(rd, "stay-b"))
    rd.kill9()
    assert alive(ia["pid"]) and alive(ib["pid"]), "engines must survive the daemon"
    assert driver(ray_cluster, ACTOR_CODE, namespace_for(rd.home), "inst-foreign0").strip() == "pong"
    assert set(actors(ray_cluster, rd.home)) == {ia["id"], ib["id"], "inst-foreign0"}
    rd.restart()
    adopted = {e["instance_id"] for e in events(rd, kind="instance.adopted")}
    assert adopted == {ia["id"], ib["id"]}
    for name, before in (("stay-a", ia), ("stay-b", ib)):
        s = rd.get(name)
        now = inst(s)
        assert s["ready"] and now["id"] == before["id"] and now["pid"] == before["pid"], s
        assert chat(f"http://{now['host']}:{now['port']}") == "echo: hi"
    for svc in (a, b):
        assert len(events(rd, svc["id"], "instance.starting")) == 1  # no duplicate, no restart
    wait_until(lambda: set(actors(ray_cluster, rd.home)) == {ia["id"], ib["id"]}, timeout=20, interval=0.5)
    assert [e for e in events(rd, kind="instance.orphan_killed") if e["instance_id"] == "inst-foreign0"]
    # The new daemon follows the adopted engine's log and notices its crash.
    t_kill = time.time()
    os.kill(ia["pid"], signal.SIGKILL)
    ev = rd.wait_for(lambda: next((e for e in events(rd, a["id"], "instance.failed")
                                   if e["instance_id"] == ia["id"]), None), timeout=10)
    assert ev["ts"] - t_kill <= 2.0
    rd.wait_for(lambda: rd.get("stay-a")["ready"], timeout=30)


# ---------------------------------------------------------------------------- node loss (last: it restarts a node)
def test_zz_node_loss_fails_pinned_instances_naming_the_node_and_they_wait_for_it(
        rd: Daemon, ray_cluster: RayCluster) -> None:
    pinned = rd.create("pinned", command=engine_cmd(), name="pinned", node=N4)
    first = inst(ready(rd, "pinned"))
    assert first["host"] == N4
    lost_id = first["node"]
    t_lost = time.time()
    ray_cluster.lose_node(N4)
    restored = False
    try:
        ev = rd.wait_for(lambda: next((e for e in events(rd, pinned["id"], "instance.failed")
                                       if e["instance_id"] == first["id"]), None), timeout=15)
        assert ev["ts"] - t_lost <= 10.0, ev["ts"] - t_lost
        assert N4 in ev["message"] and "lost" in ev["message"], ev
        st = rd.cli_json("cluster", "status")
        lost = next(n for n in st["nodes"] if n["id"] == lost_id)
        assert lost["alive"] is False and lost["lost_at"] and lost["lost_at"] >= t_lost - 1, lost
        assert st["nodes_alive"] == 2
        # The pinned service is not placed anywhere else: it waits for its node.
        time.sleep(2)
        pin = rd.get("pinned")
        assert not pin["ready"] and N4 in (pin["message"] or ""), pin
        assert all(i["host"] == N4 for i in pin["instances"] if i["node"]), pin  # (a failed placement has none)
        ray_cluster.restore_node(N4)
        restored = True
        # ... and is launched there again by itself once the node is back (retried with the restart backoff)
        back = rd.wait_for(lambda: (s := rd.get("pinned"))["ready"] and s, timeout=90, interval=1.0)
        assert inst(back)["host"] == N4 and inst(back)["node"] != lost_id
    finally:
        if not restored:
            ray_cluster.restore_node(N4)


def test_zz_unpinned_instance_is_placed_again_on_another_node(rd: Daemon, ray_cluster: RayCluster) -> None:
    svc = rd.create("roam2", command=engine_cmd(), name="roamer2", resources={"slot": "1"})
    first = inst(ready(rd, "roamer2"))
    lost_ip = first["host"]
    t_lost = time.time()
    ray_cluster.lose_node(lost_ip)
    try:
        ev = rd.wait_for(lambda: next((e for e in events(rd, svc["id"], "instance.failed")
                                       if e["instance_id"] == first["id"]), None), timeout=15)
        assert ev["ts"] - t_lost <= 10.0 and lost_ip in ev["message"], ev
        try:
            moved = rd.wait_for(lambda: (s := rd.get("roamer2"))["ready"] and s, timeout=30)
        except AssertionError:
            raise AssertionError(json.dumps(rd.get("roamer2"), indent=1) + rd.log_tail(30)) from None
        again = inst(moved)
        assert again["host"] != lost_ip and again["node"] != first["node"]
        assert chat(f"http://{again['host']}:{again['port']}") == "echo: hi"
        print(f"node lost -> ready elsewhere in {time.time() - t_lost:.1f}s")
    finally:
        ray_cluster.restore_node(lost_ip)
