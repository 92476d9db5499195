"""The shortest path through aima: create, start, list, stop, delete a real engine."""

from __future__ import annotations

import httpx

from tests.support.daemon import Daemon


def test_create_start_stop_delete(daemon: Daemon) -> None:
    svc = daemon.create("smoke")
    assert svc["state"] == "created" and svc["id"].startswith("svc-")
    out = daemon.op("service.start", service="smoke")
    assert out["outcome"] == "ready", out
    endpoint = out["service"]["endpoint"]
    r = httpx.post(endpoint + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]},
                   trust_env=False)
    assert r.json()["choices"][0]["message"]["content"] == "echo: hi"
    assert len(daemon.engine_processes()) == 1
    models = daemon.http.get("/v1/models").json()["data"]
    assert [m["id"] for m in models] == ["smoke"]
    daemon.op("service.stop", service="smoke")
    assert daemon.get("smoke")["state"] == "stopped"
    assert daemon.engine_processes() == []
    assert daemon.http.get("/v1/models").json()["data"] == []
    daemon.op("service.delete", service=svc["id"])
    assert daemon.op("service.list")["services"] == []
