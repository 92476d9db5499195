"""Outside agents get the agent's profiles and approvals over MCP, through the official client: `aima mcp
--profile ...` on stdio and the daemon's /mcp?profile=... . The operator profile's tools/list fits a small
model (≤ 8 KB, measured here and printed); destructive calls are approved by --yes, by the client's person
(MCP elicitation), or over REST — else denied."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters

from tests.support.daemon import AIMA, Daemon, echo_cmd

LIMIT = 8 * 1024


def run_client(target: Any, body: Callable[[Any], Awaitable[Any]], elicit: Any = None, timeout: float = 90) -> Any:
    out: dict[str, Any] = {}

    async def main() -> None:
        with anyio.fail_after(timeout):
            kw = {"elicitation_callback": elicit} if elicit is not None else {}
            async with Client(target, **kw) as c:
                out["v"] = await body(c)

    anyio.run(main)
    return out["v"]


def stdio(d: Daemon, *args: str) -> StdioServerParameters:
    return StdioServerParameters(command=AIMA, args=["mcp", *args], env=d.env)


async def listing(c: Any) -> Any:
    return await c.list_tools()


def wire_bytes(result: Any) -> int:
    """The size of the tools/list result as it goes over the wire (JSON, aliases, no nulls)."""
    return len(result.model_dump_json(by_alias=True, exclude_none=True))


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_profiles_over_mcp_and_the_size_of_tools_list(daemon: Daemon, transport: str) -> None:
    ops = {o["name"]: o for o in daemon.http.get("/api/v1/ops").json()["operations"]}
    sizes: dict[str, tuple[int, int]] = {}
    names: dict[str, set[str]] = {}
    for profile in ("read-only", "operator", "admin", None):
        if transport == "stdio":
            target: Any = stdio(daemon, *(["--profile", profile] if profile else []))
        else:
            target = daemon.url + "/mcp" + (f"?profile={profile}" if profile else "")
        result = run_client(target, listing)
        key = profile or "none"
        sizes[key] = (len(result.tools), wire_bytes(result))
        names[key] = {t.name for t in result.tools}
        for t in result.tools:
            assert "title" not in json.dumps(t.input_schema) or profile is None
    print(f"\nMCP tools/list over {transport}: " + ", ".join(f"{k}: {n} tools, {b:,} bytes"
                                                          for k, (n, b) in sizes.items()))
    assert sizes["operator"][1] <= LIMIT
    assert not [n for n in names["read-only"] if ops[n]["mutating"]]
    assert {"service.start", "service.create", "service.stop", "model.pull", "inference.chat"} <= names["operator"]
    assert names["admin"] == {n for n in ops if not n.startswith("agent.")}
    assert names["none"] == set(ops) - {"agent.ask"}  # every operation but the agent itself


def test_operator_profile_checks_arguments_against_what_it_offers(daemon: Daemon) -> None:
    async def body(c: Any) -> Any:
        created = await c.call_tool("service.create", {"model": "m", "name": "p1", "command": echo_cmd()})
        docker = await c.call_tool("service.create", {"model": "m", "name": "p2", "command": echo_cmd(),
                                                      "images": ["x:1"]})
        return created, docker

    created, docker = run_client(stdio(daemon, "--profile", "operator"), body)
    assert not created.is_error and json.loads(created.content[0].text)["name"] == "p1"
    assert docker.is_error and "takes no images" in docker.content[0].text
    assert [s["name"] for s in daemon.op("service.list")["services"]] == ["p1"]


def test_destructive_calls_over_stdio(daemon: Daemon) -> None:
    for name in ("a", "b", "c"):
        daemon.create("m", name=name)

    async def delete(svc: str) -> Callable[[Any], Awaitable[Any]]:
        async def body(c: Any) -> Any:
            return await c.call_tool("service.delete", {"service": svc})
        return body

    def decide(approve: bool) -> Any:
        async def elicit(_ctx: Any, params: Any) -> types.ElicitResult:
            assert params.message.startswith('Allow service.delete {"service": "a"}?')
            return types.ElicitResult(action="accept", content={"approve": approve})
        return elicit

    denied = run_client(stdio(daemon, "--profile", "admin"), anyio.run(delete, "a"))
    assert denied.is_error and "cannot ask a person" in denied.content[0].text and "--yes" in denied.content[0].text
    refused = run_client(stdio(daemon, "--profile", "admin"), anyio.run(delete, "a"), elicit=decide(False))
    assert refused.is_error and "its person said no" in refused.content[0].text
    assert sorted(s["name"] for s in daemon.op("service.list")["services"]) == ["a", "b", "c"]
    asked = run_client(stdio(daemon, "--profile", "admin"), anyio.run(delete, "a"), elicit=decide(True))
    assert not asked.is_error, asked.content[0].text
    yes = run_client(stdio(daemon, "--profile", "admin", "--yes"), anyio.run(delete, "b"))
    assert not yes.is_error, yes.content[0].text
    assert [s["name"] for s in daemon.op("service.list")["services"]] == ["c"]


def test_destructive_calls_over_http_wait_for_a_rest_approval(daemon: Daemon) -> None:
    daemon.create("m", name="gone")
    out: dict[str, Any] = {}

    async def body(c: Any) -> Any:
        return await c.call_tool("service.delete", {"service": "gone"})

    t = threading.Thread(target=lambda: out.update(r=run_client(daemon.url + "/mcp?profile=admin", body)))
    t.start()
    deadline = time.monotonic() + 30
    asked = None
    while asked is None and time.monotonic() < deadline:
        events = daemon.op("event.list", limit=50)["events"]
        asked = next((e for e in events if e["kind"] == "agent.approval.needed"), None)
        time.sleep(0.1)
    assert asked is not None, "no approval was asked for"
    assert daemon.op("service.list")["services"]  # still there while it waits
    r = daemon.http.post(f"/api/v1/agent/approvals/{asked['data']['approval_id']}", json={"approve": True})
    assert r.status_code == 200
    t.join(60)
    assert not out["r"].is_error, out["r"].content[0].text
    assert daemon.op("service.list")["services"] == []
    log = daemon.cli_json("agent", "log")["entries"]
    assert [(e["session"], e["tool"], e["outcome"], e["approval"]) for e in log] == [
        ("mcp", "service.delete", "approved", "rest")]


def test_an_mcp_client_that_can_ask_its_person_approves_over_http(daemon: Daemon) -> None:
    daemon.create("m", name="h1")
    asked: list[str] = []

    async def elicit(_ctx: Any, params: Any) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"approve": True})

    async def body(c: Any) -> Any:
        return await c.call_tool("service.delete", {"service": "h1"})

    r = run_client(daemon.url + "/mcp", body, elicit=elicit)  # the input_required round trip, stateless HTTP
    assert not r.is_error, r.content[0].text
    assert asked == ['Allow service.delete {"service": "h1"}? (service.delete is destructive)']
    assert daemon.op("service.list")["services"] == []
    assert [(e["outcome"], e["approval"]) for e in daemon.cli_json("agent", "log")["entries"]] == [
        ("approved", "mcp client")]
