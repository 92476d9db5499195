"""API key scopes (inference, read, admin), an inference key's models, per-key usage (counted from every
/v1 answer, kept in SQLite, in /metrics) and per-key limits (429 with Retry-After before the engine sees
the request); secrets never in a log, an event or an error."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.gateway.conftest import client, engine_stats, metric, serve
from tests.support.daemon import Daemon, wait_until


def key_of(d: Daemon, *args: str) -> dict[str, object]:
    """``aima key create ARGS -o json`` (the options where users type them)."""
    r = d.cli("key", "create", *args, "-o", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def h(key: object) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_scopes_models_usage_and_limits(daemon: Daemon) -> None:
    serve(daemon, "chat", "smollm2-135m")
    serve(daemon, "other", "other-model")
    admin = key_of(daemon, "--name", "boss")
    assert admin["scope"] == "admin"
    daemon.env["AIMA_API_KEY"] = str(admin["key"])  # the CLI's key from now on (an --api-key given wins)
    daemon.http.headers.update(h(admin["key"]))
    # the command the issue shows, as written
    r = daemon.cli("key", "create", "--scope", "inference", "--models", "smollm2-135m", "--api-key", str(admin["key"]),
                   "-o", "json")
    assert r.returncode == 0, r.stderr
    inf = json.loads(r.stdout)
    assert inf["scope"] == "inference" and inf["models"] == ["smollm2-135m"]
    read = key_of(daemon, "--scope", "read", "--name", "looker")
    # a models list belongs to inference keys
    r = daemon.cli("key", "create", "--scope", "read", "--models", "x", "--api-key", str(admin["key"]))
    assert r.returncode == 2 and "--scope inference" in r.stderr and len(r.stderr.strip().splitlines()) == 1

    # inference: /v1 only, only its model (by model name, alias or service name), nothing else
    c = client(daemon, str(inf["key"]))
    assert c.chat.completions.create(model="smollm2-135m", messages=[{"role": "user", "content": "hi"}]
                                     ).choices[0].message.content == "echo: hi"
    assert c.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    before = engine_stats(daemon.get("other")["endpoint"])["requests"]
    with pytest.raises(openai.PermissionDeniedError) as ei:
        c.chat.completions.create(model="other-model", messages=[{"role": "user", "content": "hi"}])
    assert ei.value.body["code"] == "model_not_allowed"  # type: ignore[index]
    assert engine_stats(daemon.get("other")["endpoint"])["requests"] == before  # the engine never saw it
    assert [m.id for m in c.models.list()] == ["smollm2-135m"]
    for method, path in (("GET", "/api/v1/services"), ("GET", "/metrics"), ("GET", "/api/v1/events"),
                         ("GET", "/openapi.json"), ("POST", "/mcp")):
        r2 = daemon.http.request(method, path, headers=h(inf["key"]))
        assert r2.status_code == 403 and r2.json()["error"]["code"] == "insufficient_scope", (path, r2.text)

    # read: GETs and what changes nothing; not /v1's inference, not a change
    assert daemon.http.get("/api/v1/services", headers=h(read["key"])).status_code == 200
    assert daemon.http.get("/metrics", headers=h(read["key"])).status_code == 200
    assert daemon.http.post("/api/v1/ops/service.list", headers=h(read["key"]), json={}).status_code == 200
    assert daemon.http.post("/api/v1/catalog/resolve", headers=h(read["key"]),
                            json={"model": "smollm2-135m"}).status_code in (200, 404, 422)
    for method, path in (("POST", "/api/v1/services/chat/stop"), ("POST", "/api/v1/ops/service.stop"),
                         ("DELETE", "/api/v1/services/chat"), ("POST", "/v1/chat/completions")):
        r2 = daemon.http.request(method, path, headers=h(read["key"]), json={"service": "chat"})
        assert r2.status_code == 403, (path, r2.text)
    assert daemon.get("chat")["state"] == "running"
    r = daemon.cli("service", "stop", "chat", "--api-key", str(read["key"]))
    assert r.returncode != 0 and "scope read" in r.stderr and "Traceback" not in r.stderr

    # usage per key and model: the CLI, REST and /metrics
    usage = daemon.cli_json("key", "usage", "--api-key", str(admin["key"]))
    mine = [u for u in usage["rows"] if u["key"] == inf["id"]]
    assert [(u["model"], u["requests"], u["errors"]) for u in mine] == [("smollm2-135m", 2, 0)], usage
    assert mine[0]["prompt_tokens"] > 0 and mine[0]["completion_tokens"] > 0
    text = daemon.http.get("/metrics", headers=h(admin["key"])).text
    assert metric(text, "aima_key_requests_total", key=str(inf["id"]), model="smollm2-135m", outcome="answered") == 2
    # a stream that reports no usage is counted from its pieces
    with c.chat.completions.create(model="chat", messages=[{"role": "user", "content": "one two three"}],
                                   stream=True) as s:
        assert "".join(ch.choices[0].delta.content or "" for ch in s if ch.choices)
    wait_until(lambda: [u for u in daemon.op("key.usage", since="1h")["rows"] if u["key"] == inf["id"]]
               [0]["requests"] == 3, 10)

    # limits: over rpm -> 429 with Retry-After, before the engine sees it
    lim = key_of(daemon, "--scope", "inference", "--rpm", "2", "--name", "tight")
    cl = httpx.Client(base_url=daemon.url, headers=h(lim["key"]), timeout=30)
    body = {"model": "chat", "messages": [{"role": "user", "content": "x"}]}
    assert [cl.post("/v1/chat/completions", json=body).status_code for _ in range(2)] == [200, 200]
    seen = engine_stats(daemon.get("chat")["endpoint"])["requests"]
    r3 = cl.post("/v1/chat/completions", json=body)
    assert r3.status_code == 429 and r3.json()["error"]["code"] == "rate_limit_exceeded", r3.text
    assert 1 <= int(r3.headers["retry-after"]) <= 60
    assert engine_stats(daemon.get("chat")["endpoint"])["requests"] == seen
    tok = key_of(daemon, "--scope", "inference", "--tpm", "5", "--name", "few-tokens")
    ct = httpx.Client(base_url=daemon.url, headers=h(tok["key"]), timeout=30)
    statuses = [ct.post("/v1/chat/completions", json=body).status_code for _ in range(4)]
    assert statuses[0] == 200 and statuses[-1] == 429, statuses  # the first answer used its tokens
    limited = [u for u in daemon.op("key.usage", since="10m")["rows"] if u["key"] == lim["id"]]
    assert limited[0]["requests"] == 2  # refused requests are not answers of the engine

    # nothing secret anywhere: the keys are in no log, no event, no database row
    time.sleep(2.5)  # (the usage flush)
    secrets_ = [str(k["key"]) for k in (admin, inf, read, lim, tok)]
    blob = "".join(p.read_text(errors="replace") for p in daemon.home.rglob("*.log"))
    blob += daemon.http.post("/api/v1/ops/event.list", json={"limit": 10000}, headers=h(admin["key"])).text
    with sqlite3.connect(daemon.home / "aima.db") as db:
        blob += json.dumps(db.execute("SELECT * FROM events").fetchall())
        blob += json.dumps(db.execute("SELECT * FROM api_keys").fetchall())
    for sec in secrets_:
        assert sec not in blob


def test_a_hub_token_and_keys_reach_no_log_event_or_record(aima_home: Path, tmp_path: Path) -> None:
    """A pull from a hub with a token (AIMA_HF_TOKEN), plus keys in use: the token reaches the hub and nothing
    else — no log, no event, no database row, no error message."""
    from tests.support.modelstore import HfMirror, write_gguf

    token = "hf_" + "s3cr3t" * 6
    hub = HfMirror()
    gguf = write_gguf(tmp_path / "t.gguf")
    hub.add("org/tiny", {"t.gguf": gguf.read_bytes()})
    d = Daemon(aima_home, {"AIMA_HF_ENDPOINT": hub.url, "AIMA_HF_TOKEN": token})
    d.start()
    try:
        key = json.loads(d.cli("key", "create", "-o", "json").stdout)["key"]
        d.env["AIMA_API_KEY"] = key
        r = d.cli("model", "pull", "hf:org/tiny/t.gguf", "--name", "tiny-hub", "-o", "json")
        assert r.returncode == 0, r.stderr
        assert any(q["headers"].get("authorization") == f"Bearer {token}" for q in hub.requests)  # it was used
        r = d.cli("model", "pull", "hf:org/missing/x.gguf", "--name", "nope")  # an error on the way
        assert r.returncode != 0 and token not in r.stderr and key not in r.stderr
        d.terminate()
        blob = "".join(p.read_text(errors="replace") for p in aima_home.rglob("*.log"))
        for p in aima_home.rglob("*.db*"):
            blob += p.read_bytes().decode("latin-1")
        for secret in (token, key):
            assert secret not in blob
    finally:
        d.cleanup()
        hub.close()
