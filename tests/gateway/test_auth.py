"""API keys: created with `aima key create` (shown once, stored hashed), then required on every route but
/health (Bearer or X-API-Key), wrong and revoked keys refused at once; a daemon refuses to listen beyond
loopback without a key unless --insecure."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.gateway.conftest import client, engine_stats, serve
from tests.support.daemon import PY, Daemon, free_port


def test_keys_required_wrong_and_revoked(daemon: Daemon) -> None:
    svc = serve(daemon, "chat", "echo-chat")
    assert daemon.http.get("/v1/models").status_code == 200  # no key exists yet: open
    out = daemon.cli_json("key", "create", "--name", "ci")
    key = out["key"]
    assert key.startswith("aima-") and len(key) > 40 and out["active"] is True and out["name"] == "ci"
    # Stored as its sha256 only: the key itself is nowhere in the database.
    db = daemon.home / "aima.db"
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT hash FROM api_keys").fetchall() == [(hashlib.sha256(key.encode()).hexdigest(),)]
    assert key.encode() not in db.read_bytes() + (db.with_name("aima.db-wal").read_bytes()
                                                  if db.with_name("aima.db-wal").exists() else b"")
    # Every route but /health needs it now.
    for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("GET", "/api/v1/services"),
                         ("GET", "/metrics"), ("GET", "/openapi.json"), ("POST", "/mcp")):
        r = daemon.http.request(method, path)
        assert r.status_code == 401, (path, r.status_code, r.text)
        assert r.json()["error"]["code"] == "invalid_api_key" and r.headers["www-authenticate"] == "Bearer"
    assert daemon.http.get("/health").status_code == 200
    for bad in ({"Authorization": "Bearer " + key[:-1] + "x"}, {"Authorization": "Basic " + key},
                {"X-API-Key": "nope"}, {"Authorization": "Bearer"}):
        assert daemon.http.get("/v1/models", headers=bad).status_code == 401, bad
    assert daemon.http.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert daemon.http.get("/v1/models", headers={"authorization": f"bearer {key}"}).status_code == 200
    assert daemon.http.get("/api/v1/services", headers={"X-API-Key": key}).status_code == 200
    # The official client sends it as a Bearer token; the engine never sees it.
    with pytest.raises(openai.AuthenticationError):
        client(daemon, "wrong").chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}])
    out = client(daemon, key).chat.completions.create(model="chat", messages=[{"role": "user", "content": "k"}])
    assert out.choices[0].message.content == "echo: k"
    headers = engine_stats(svc["endpoint"])["last"]["headers"]
    assert "authorization" not in headers and "x-api-key" not in headers
    # The CLI elsewhere (another home, the daemon's URL given): without the key one line and exit 7; with
    # AIMA_API_KEY it works.
    elsewhere = {**daemon.env, "AIMA_HOME": str(daemon.home.parent / "elsewhere")}
    r = subprocess.run([str(Path(PY).with_name("aima")), "key", "list"], env=elsewhere, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 7 and "API key" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    # ... and so does a wrong key given on this machine: a key given is the key used.
    r = daemon.cli("--api-key", "aima-wrong", "key", "list")
    assert r.returncode == 7 and "API key" in r.stderr
    # This machine's CLI (the daemon's own AIMA_HOME) is never locked out by the first key: it sends the key the
    # daemon keeps for it in AIMA_HOME/local.key (mode 0600), which HTTP without it does not get.
    local = daemon.home / "local.key"
    assert local.stat().st_mode & 0o777 == 0o600
    mine = daemon.cli("-o", "json", "key", "list")
    assert mine.returncode == 0 and [k["name"] for k in json.loads(mine.stdout)["keys"]] == ["ci"], mine.stderr
    assert local.read_text().strip() not in mine.stdout + mine.stderr
    assert daemon.http.get("/api/v1/keys", headers={"X-API-Key": local.read_text().strip()}).status_code == 200
    # The daemon's own calls to its /v1 (a benchmark through the gateway) carry that key too.
    bench = daemon.cli("-o", "json", "bench", "echo-chat", "--requests", "2", "--warmup", "0", timeout=180)
    assert bench.returncode == 0, bench.stderr
    assert json.loads(bench.stdout)["levels"][0]["errors"] == 0, bench.stdout
    env = {**daemon.env, "AIMA_API_KEY": key}
    listed = subprocess.run([str(Path(PY).with_name("aima")), "-o", "json", "key", "list"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert key not in listed.stdout  # never the key itself
    # A second key; revoking the first refuses it at once and leaves the second working.
    second = daemon.http.post("/api/v1/keys", json={"name": "other"}, headers={"X-API-Key": key}).json()["key"]
    r = subprocess.run([str(Path(PY).with_name("aima")), "-o", "json", "key", "revoke", "ci"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert daemon.http.get("/v1/models", headers={"X-API-Key": key}).status_code == 401
    keys = daemon.http.get("/api/v1/keys", headers={"X-API-Key": second}).json()["keys"]
    assert [(k["name"], k["active"]) for k in keys] == [("ci", False), ("other", True)]
    # Revoking the last key opens the daemon again (no key exists).
    daemon.http.delete("/api/v1/keys/other", headers={"X-API-Key": second}).raise_for_status()
    assert daemon.http.get("/v1/models").status_code == 200


def _daemon(home: Path, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    e = {k: v for k, v in os.environ.items() if k != "AIMA_API_KEY"}
    e.update({"AIMA_HOME": str(home), "PYTHONUNBUFFERED": "1", **(env or {})})
    p = subprocess.Popen([PY, "-m", "aima.surfaces.daemon", "--port", str(port), *args], env=e,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    return p, port


def _up(p: subprocess.Popen[bytes], port: int) -> bool:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and p.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1, trust_env=False).status_code == 200:
                return True
        except httpx.HTTPError:
            time.sleep(0.1)
    return False


def _stop(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def test_refuses_to_listen_beyond_loopback_without_a_key(tmp_path: Path) -> None:
    p, _port = _daemon(tmp_path / "h1", "--host", "0.0.0.0")
    try:
        out, _ = p.communicate(timeout=60)
    finally:
        _stop(p)
    assert p.returncode == 5, out
    assert b"without an API key" in out and b"--insecure" in out and b"aima key create" in out
    # --insecure: it listens.
    p, port = _daemon(tmp_path / "h2", "--host", "0.0.0.0", "--insecure")
    try:
        assert _up(p, port)
    finally:
        _stop(p)
    # With a key (here the daemon's AIMA_API_KEY) it listens, and the key is required.
    p, port = _daemon(tmp_path / "h3", "--host", "0.0.0.0", env={"AIMA_API_KEY": "aima-bootstrap-key-for-the-test"})
    try:
        assert _up(p, port)
        url = f"http://127.0.0.1:{port}/v1/models"
        assert httpx.get(url, trust_env=False).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer aima-bootstrap-key-for-the-test"},
                         trust_env=False).status_code == 200
    finally:
        _stop(p)
