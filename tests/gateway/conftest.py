"""Helpers for the gateway tests: a real daemon, real echo engines, and the official ``openai`` client."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai

from tests.support.daemon import Daemon, echo_cmd


def client(d: Daemon, key: str | None = None, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=d.url + "/v1", api_key=key or "unused", max_retries=0, timeout=60, **kw)


def async_client(d: Daemon, key: str | None = None) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=d.url + "/v1", api_key=key or "unused", max_retries=0, timeout=60)


def serve(d: Daemon, name: str, model: str | None = None, *flags: str, start: bool = True,
          **kw: Any) -> dict[str, Any]:
    """Create (and start) a service of the echo engine serving ``model`` (default: ``name``)."""
    r = d.http.post("/api/v1/ops/service.create", json={"model": model or name, "name": name,
                                                        "command": echo_cmd(*flags), **kw})
    assert r.status_code == 201, r.text
    if not start:
        return r.json()
    out = d.op("service.start", service=name, timeout_s=60)
    assert out["outcome"] == "ready", out
    return out["service"]


def engine_stats(url: str) -> dict[str, Any]:
    return httpx.get(url + "/echo/stats", timeout=10, trust_env=False).json()


def events(d: Daemon, kind: str | None = None) -> list[dict[str, Any]]:
    evs = d.op("event.list", limit=10000)["events"]
    return [e for e in evs if kind is None or e["kind"] == kind]


def wait_event(d: Daemon, kind: str, timeout: float = 30, **match: Any) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in events(d, kind):
            if all(e.get(k) == v or (e.get("data") or {}).get(k) == v for k, v in match.items()):
                return e
        time.sleep(0.1)
    raise AssertionError(f"no {kind} event {match} within {timeout}s; last events: "
                         f"{[(e['kind'], e['message']) for e in events(d)[-10:]]}")


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus text exposition (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total
