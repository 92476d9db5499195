"""MCP through the official client: over stdio (the real `aima mcp` proxying to the daemon) and over
streamable HTTP at the daemon's /mcp. Tools are the operations; results agree with REST; failures are
tool results with is_error, never protocol errors."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from tests.support.daemon import AIMA, Daemon, echo_cmd

TRANSPORTS = ["stdio", "http"]


def target(daemon: Daemon, transport: str) -> Any:
    if transport == "stdio":
        return StdioServerParameters(command=AIMA, args=["mcp"], env=daemon.env)
    return daemon.url + "/mcp"


def with_client(daemon: Daemon, transport: str, body: Callable[[Any], Awaitable[None]],
                timeout: float = 90) -> None:
    async def main() -> None:
        with anyio.fail_after(timeout):
            async with Client(target(daemon, transport)) as c:
                await body(c)

    anyio.run(main)


def result_json(r: Any) -> dict[str, Any]:
    assert not r.is_error, r.content[0].text
    data = json.loads(r.content[0].text)
    assert r.structured_content == data
    return data


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_tools_are_the_operations(daemon: Daemon, transport: str) -> None:
    ops = daemon.http.get("/api/v1/ops").json()["operations"]
    seen: dict[str, Any] = {}

    async def body(c: Any) -> None:
        tools = await c.list_tools()
        seen.update({t.name: t for t in tools.tools})

    with_client(daemon, transport, body)
    assert set(seen) == {o["name"] for o in ops} - {"agent.ask"}  # the agent is never a tool of an agent
    for o in ops:
        if o["name"] == "agent.ask":
            continue
        tool = seen[o["name"]]
        assert tool.description and o["summary"] in tool.description
        assert tool.input_schema.get("properties", {}).keys() == o["input_schema"].get("properties", {}).keys()
        assert set(tool.input_schema.get("required", [])) == set(o["input_schema"].get("required", []))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_create_start_get_agree_with_rest(daemon: Daemon, transport: str) -> None:
    name = f"mcp-{transport}"
    out: dict[str, Any] = {}

    async def body(c: Any) -> None:
        out["created"] = result_json(await c.call_tool(
            "service.create", {"model": "mcp-model", "name": name, "command": echo_cmd()}))
        out["started"] = result_json(await c.call_tool("service.start", {"service": name, "timeout_s": 60}))
        out["got"] = result_json(await c.call_tool("service.get", {"service": out["created"]["id"]}))
        out["listed"] = result_json(await c.call_tool("service.list", {}))

    with_client(daemon, transport, body)
    created, started, got = out["created"], out["started"], out["got"]
    assert created["name"] == name and created["state"] == "created" and created["id"].startswith("svc-")
    assert started["outcome"] == "ready", started
    assert got["state"] == "running" and got["ready"] is True and got["endpoint"]
    rest = daemon.get(name)
    for key in ("id", "name", "model", "state", "ready", "endpoint", "ports", "command"):
        assert rest[key] == got[key], key
    assert [i["pid"] for i in rest["instances"]] == [i["pid"] for i in got["instances"]]
    assert [s["id"] for s in out["listed"]["services"]] == [created["id"]]
    live = daemon.engine_processes()
    assert [p.pid for p in live] == [got["instances"][0]["pid"]]
    daemon.op("service.stop", service=name)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_failures_are_tool_errors_with_readable_messages(daemon: Daemon, transport: str) -> None:
    results: dict[str, Any] = {}
    calls = {
        "unknown service": ("service.get", {"service": "ghost-svc"}),
        "bad type": ("service.create", {"model": {"not": "a string"}, "command": echo_cmd()}),
        "bad integer": ("service.create", {"model": "m", "command": echo_cmd(), "replicas": "many"}),
        "unknown field": ("service.list", {"colour": "blue"}),
        "missing field": ("service.start", {}),
        "unknown tool": ("service.explode", {}),
    }

    async def body(c: Any) -> None:
        for label, (tool, args) in calls.items():
            results[label] = await c.call_tool(tool, args)
        # The session is still usable after the failures.
        results["after"] = await c.call_tool("system.status", {})

    with_client(daemon, transport, body)
    expect = {"unknown service": "ghost-svc", "bad type": "model", "bad integer": "replicas",
              "unknown field": "colour", "missing field": "service", "unknown tool": "service.explode"}
    for label, word in expect.items():
        r = results[label]
        assert r.is_error is True, (label, r)
        text = r.content[0].text
        assert word in text and "Traceback" not in text and len(text) < 1000, (label, text)
    assert "does not exist" in results["unknown service"].content[0].text
    assert result_json(results["after"])["services"] == 0
    assert daemon.op("service.list")["services"] == []  # no failed call left a record behind
