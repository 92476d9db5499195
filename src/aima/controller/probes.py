"""Readiness probes (lifecycle rule 2): port accepting + health 200 + the served model's identity.

TCP alone never means ready.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx


@dataclass
class ProbeResult:
    ready: bool
    stage: str  # "port", "health", "identity", "ok"
    detail: str = ""
    # The port accepted the connection but no answer came in time: an engine busy with its queue (a
    # llama.cpp server answers between generations only) rather than one that is down.
    slow: bool = False


async def port_accepting(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        _r, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    w.close()
    try:
        await w.wait_closed()
    except OSError:
        pass
    return True


async def probe(client: httpx.AsyncClient, host: str, port: int, health_path: str | None,
                served_name: str, identity_required: bool = False) -> ProbeResult:
    connect_host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    if not await port_accepting(connect_host, port):
        return ProbeResult(False, "port", f"port {port} not accepting yet")
    base = f"http://{connect_host}:{port}"
    if health_path:
        try:
            r = await client.get(base + health_path, timeout=2.0)
        except httpx.HTTPError as e:
            return ProbeResult(False, "health", f"GET {health_path}: {type(e).__name__}",
                               slow=isinstance(e, httpx.TimeoutException))
        if r.status_code != 200:
            return ProbeResult(False, "health", f"GET {health_path} answered {r.status_code}")
    return await check_identity(client, base, served_name, identity_required)


async def check_identity(client: httpx.AsyncClient, base: str, served_name: str,
                         required: bool) -> ProbeResult:
    """The engine must list ``served_name`` in ``/v1/models`` where it lists models at all."""
    try:
        r = await client.get(base + "/v1/models", timeout=2.0)
    except httpx.HTTPError as e:
        return ProbeResult(False, "identity", f"GET /v1/models: {type(e).__name__}",
                           slow=isinstance(e, httpx.TimeoutException))
    if r.status_code in (404, 405) and not required:
        return ProbeResult(True, "ok", "engine does not list models; identity not checked")
    if r.status_code != 200:
        return ProbeResult(False, "identity", f"GET /v1/models answered {r.status_code}")
    try:
        data = r.json()
        ids = [str(m.get("id")) for m in data.get("data", []) if isinstance(m, dict)]
    except (ValueError, AttributeError):
        if required:
            return ProbeResult(False, "identity", "GET /v1/models did not answer a model list")
        return ProbeResult(True, "ok", "engine's /v1/models is not a list; identity not checked")
    if served_name in ids:
        return ProbeResult(True, "ok")
    return ProbeResult(False, "identity", f"engine serves {ids}, not {served_name!r}")
