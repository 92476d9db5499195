"""Load on demand, idle unload, the memory budget, balancing over replicas, client disconnects and an
unreachable engine: each against a real daemon and real echo engine processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import client, engine_stats, events, metric, serve, wait_event
from tests.support.daemon import Daemon


def chat(d: Daemon, model: str, text: str = "hi", timeout: float = 60) -> httpx.Response:
    return d.http.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": text}]},
                       timeout=timeout)


def test_stopped_service_with_idle_ttl_wakes_on_request(daemon: Daemon) -> None:
    serve(daemon, "lazy", "echo-lazy", "--ready-after", "0.5", start=False, idle_ttl_s=600)
    assert daemon.get("lazy")["idle_ttl_s"] == 600 and daemon.engine_processes() == []
    t0 = time.monotonic()
    raw = client(daemon).chat.completions.with_raw_response.create(
        model="echo-lazy", messages=[{"role": "user", "content": "wake"}])
    assert raw.parse().choices[0].message.content == "echo: wake"
    assert time.monotonic() - t0 >= 0.5  # it waited for the engine to become ready
    assert float(raw.headers["x-aima-load-ms"]) >= 500  # the wait is said apart from aima's own overhead
    assert float(raw.headers["x-aima-overhead-ms"]) < float(raw.headers["x-aima-load-ms"])
    assert daemon.get("lazy")["state"] == "running"
    ev = wait_event(daemon, "service.loaded", name="lazy")
    assert ev["data"]["duration_s"] > 0
    # Many requests at once while it is stopped again: one load, every request answered.
    daemon.op("service.stop", service="lazy")
    results: list[int] = []

    def one(i: int) -> None:
        results.append(chat(daemon, "lazy", f"n{i}").status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert results == [200] * 6
    assert len(daemon.engine_processes()) == 1
    assert len(events(daemon, "service.loaded")) == 2
    text = daemon.http.get("/metrics").text
    assert metric(text, "aima_service_loads_total", service="lazy") == 2
    assert metric(text, "aima_service_load_seconds_count", model="echo-lazy") == 2
    # `aima chat` (the inference operation, which calls the engine itself) wakes it the same way.
    daemon.op("service.stop", service="lazy")
    out = daemon.op("inference.chat", model="lazy", prompt="from the cli")
    assert out["text"] == "echo: from the cli" and out["service"] == "lazy"
    assert len(events(daemon, "service.loaded")) == 3


@pytest.fixture
def daemon_env() -> dict[str, str]:
    return {"AIMA_MEMORY_BUDGET": "cpu=3GiB"}


def test_idle_service_unloads_and_pinned_stays(daemon: Daemon) -> None:
    serve(daemon, "idle", "echo-idle", idle_ttl_s=2)
    serve(daemon, "pin", "echo-pin", idle_ttl_s=2, pinned=True)
    assert chat(daemon, "idle").status_code == 200
    # Health, model lists and metrics are not use: they do not keep it loaded.
    deadline = time.monotonic() + 30
    while daemon.get("idle")["state"] != "stopped":
        assert time.monotonic() < deadline, daemon.get("idle")
        assert daemon.http.get("/health").status_code == 200
        daemon.http.get("/v1/models")
        daemon.http.get("/metrics")
        time.sleep(0.2)
    ev = wait_event(daemon, "service.unloaded", name="idle")
    assert ev["data"]["why"] == "idle" and "idle TTL 2s" in ev["message"]
    assert "echo-idle" not in [m["id"] for m in daemon.http.get("/v1/models").json()["data"]]
    svc = daemon.get("idle")
    assert "next request loads it again" in svc["message"]
    assert daemon.get("pin")["state"] == "running"  # pinned: never unloaded
    assert len(daemon.engine_processes()) == 1
    # The next request loads it again.
    assert chat(daemon, "echo-idle", "again").json()["choices"][0]["message"]["content"] == "echo: again"
    assert daemon.get("idle")["state"] == "running"
    assert metric(daemon.http.get("/metrics").text, "aima_service_unloads_total", service="idle", why="idle") == 1


def test_busy_service_is_not_unloaded_mid_request(daemon: Daemon) -> None:
    serve(daemon, "slow", "echo-slow", "--stream-delay", "0.5", idle_ttl_s=1)
    words = " ".join(["w"] * 8)  # about 4 s of streaming, longer than the idle TTL
    with daemon.http.stream("POST", "/v1/chat/completions", json={
            "model": "slow", "stream": True, "messages": [{"role": "user", "content": words}]}) as r:
        body = r.read()
    ended = time.time()
    assert b"[DONE]" in body
    assert [e for e in events(daemon, "service.unloaded") if e["ts"] < ended] == []
    wait_event(daemon, "service.unloaded", name="slow")  # once idle, it goes


def test_memory_budget_unloads_the_least_recently_used(daemon: Daemon) -> None:
    for name in ("a", "b", "c"):
        serve(daemon, name, f"echo-{name}", start=False, idle_ttl_s=600, memory="1536MiB")
    assert daemon.get("a")["memory_bytes"] == 1536 * 2**20 and daemon.get("a")["devices"] == ["cpu"]
    assert chat(daemon, "a").status_code == 200
    assert chat(daemon, "b").status_code == 200  # 3 GiB: both fit
    assert chat(daemon, "a").status_code == 200  # a is now the most recently used
    assert chat(daemon, "c").status_code == 200  # needs room: b (least recently used) goes
    ev = wait_event(daemon, "service.unloaded", name="b")
    assert ev["data"]["why"] == "memory" and "to make room for c on cpu" in ev["message"]
    assert daemon.get("b")["state"] == "stopped"
    assert daemon.get("a")["state"] == "running" and daemon.get("c")["state"] == "running"
    # A service that can never fit is refused with 503, and nothing is unloaded for it.
    serve(daemon, "huge", "echo-huge", start=False, idle_ttl_s=600, memory="4GiB")
    r = chat(daemon, "huge")
    assert r.status_code == 503 and r.json()["error"]["code"] == "insufficient_memory"
    assert daemon.get("a")["state"] == "running" and daemon.get("c")["state"] == "running"


def test_two_replicas_share_load_least_outstanding_first(daemon: Daemon) -> None:
    svc = serve(daemon, "pair", "echo-pair", "--stream-delay", "0.3", replicas=2)
    urls = {i["id"]: f"http://{i['host']}:{i['port']}" for i in svc["instances"]}
    assert len(urls) == 2
    seen: list[str] = []
    lock = threading.Lock()

    def slow() -> None:
        msgs = [{"role": "user", "content": "a b c d e f g h"}]
        with daemon.http.stream("POST", "/v1/chat/completions",
                                json={"model": "echo-pair", "stream": True, "messages": msgs}) as r:
            with lock:
                seen.append(r.headers["x-aima-instance"])
            r.read()

    threads = [threading.Thread(target=slow) for _ in range(4)]
    for t in threads:
        t.start()
        time.sleep(0.15)  # each arrives while the earlier ones are still streaming
    busy = [engine_stats(u)["inflight"] for u in urls.values()]
    for t in threads:
        t.join(60)
    assert sorted(busy) == [2, 2], busy  # never 3 + 1: the least busy instance gets the next one
    assert sorted(seen.count(i) for i in urls) == [2, 2]
    # Sequential requests (a tie each time) alternate between the replicas.
    insts = [chat(daemon, "pair").headers["x-aima-instance"] for _ in range(6)]
    assert sorted(insts.count(i) for i in urls) == [3, 3]


def test_client_disconnect_mid_stream_frees_the_engine_slot(daemon: Daemon) -> None:
    svc = serve(daemon, "long", "echo-long", "--stream-delay", "0.2")
    url = svc["endpoint"]
    words = " ".join(["word"] * 100)  # 20 s of streaming if nobody stops it
    port = daemon.port
    s = socket.create_connection(("127.0.0.1", port))
    body = json.dumps({"model": "long", "stream": True, "messages": [{"role": "user", "content": words}]}).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    got = b""
    while b"data:" not in got:
        got += s.recv(4096)
    deadline = time.monotonic() + 5
    while engine_stats(url)["inflight"] != 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    t0 = time.monotonic()
    s.close()
    while engine_stats(url)["inflight"] != 0:
        assert time.monotonic() - t0 < 3, "the engine kept working for a client that left"
        time.sleep(0.05)
    stats = engine_stats(url)
    assert stats["cancelled"] == 1
    # The engine is free: the next request is answered at once.
    assert chat(daemon, "long", "next").json()["choices"][0]["message"]["content"] == "echo: next"
    text = daemon.http.get("/metrics").text
    assert metric(text, "aima_gateway_requests_total", model="echo-long", status="499") == 1
    assert metric(text, "aima_gateway_inflight_requests", model="echo-long") == 0


@pytest.mark.parametrize("daemon_env", [{"AIMA_RECONCILE_INTERVAL_S": "30"}])
def test_unreachable_engine_is_502_and_rechecked_at_once(daemon: Daemon, daemon_env: dict[str, Any]) -> None:
    svc = serve(daemon, "fragile", "echo-fragile")
    assert chat(daemon, "fragile").status_code == 200
    pid = svc["instances"][0]["pid"]
    os.killpg(pid, signal.SIGKILL)
    time.sleep(0.3)
    r = chat(daemon, "fragile")
    # The reconciler's own checks run only every 30 s here: what follows is the gateway's re-check.
    assert r.status_code == 502, r.text
    err = r.json()["error"]
    assert err["code"] == "engine_unreachable" and svc["instances"][0]["id"] in err["message"]
    wait_event(daemon, "instance.failed", timeout=10)
    wait_event(daemon, "service.restart_scheduled", timeout=10)
    deadline = time.monotonic() + 30
    while chat(daemon, "fragile").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)
