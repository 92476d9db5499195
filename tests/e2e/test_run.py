"""`aima run` and catalog-driven `service create` end to end: resolve → pull → create → start → ready.

The catalog overlay (AIMA_HOME/catalog) adds an engine that runs aima's echo server and a model whose
weights are a local file the test writes, so the whole path — resolver, model store pull, rendered
command, native runtime, readiness with identity — runs for real without a model hub.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.support.daemon import Daemon
from tests.support.echo_catalog import write_echo_catalog


@pytest.fixture
def daemon_env(aima_home: Path, tmp_path: Path) -> dict[str, str]:
    write_echo_catalog(aima_home, tmp_path / "weights" / "echo.gguf")
    return {}


def test_run_resolves_creates_starts_and_is_idempotent(daemon: Daemon) -> None:
    r = daemon.cli("-o", "json", "run", "echo-alias", "--detach", "--config", "ready_after=0.5")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["outcome"] == "ready" and out["reused"] is False
    svc = out["service"]
    assert svc["model"] == "echo-model" and svc["engine"] == "echo-engine"
    assert "--ready-after 0.5" in svc["command"]  # the user's value won over the variant's 0.2
    reply = httpx.post(svc["endpoint"] + "/v1/chat/completions", trust_env=False,
                       json={"model": "echo-model", "messages": [{"role": "user", "content": "hi"}]}).json()
    assert reply["choices"][0]["message"]["content"] == "echo: hi"
    log = "\n".join(daemon.op("service.logs", service=svc["name"])["lines"])
    assert "weights " in log and "echo.gguf" in log  # {model_path} rendered to the real file
    pid = svc["instances"][0]["pid"]

    again = daemon.cli_json("run", "echo-model", "--detach", "--config", "ready_after=0.5")
    assert again["outcome"] == "ready" and again["reused"] is True and again["pulled"] is False
    assert again["service"]["id"] == svc["id"] and again["service"]["instances"][0]["pid"] == pid
    assert len(daemon.op("service.list")["services"]) == 1


def test_catalog_create_refuses_foreign_config_keys_and_missing_models(daemon: Daemon) -> None:
    from tests.support.daemon import ApiError

    with pytest.raises(ApiError) as e:
        daemon.op("service.create", model="echo-model", config={"gpu_memory_utilization": "0.9"})
    assert e.value.status == 404 and "ready_after" in e.value.body["error"]["message"]  # names no key of the engine
    with pytest.raises(ApiError) as e:
        daemon.op("service.create", model="echo-model", engine="echo-engine", command="x {port}")
    assert e.value.status == 422 and e.value.body["error"]["param"] == "command"
    with pytest.raises(ApiError) as e:
        daemon.op("service.create", model="no-such-model")
    assert e.value.status == 404
    assert daemon.op("service.list")["services"] == []


def test_catalog_create_then_start(daemon: Daemon) -> None:
    created = daemon.op("service.create", model="echo-model", name="via-create")
    assert created["engine"] == "echo-engine" and "{port}" in created["command"]
    out = daemon.op("service.start", service="via-create", timeout_s=60)
    assert out["outcome"] == "ready", out
    models = [m["id"] for m in daemon.http.get("/v1/models").json()["data"]]
    assert models == ["echo-model"]
