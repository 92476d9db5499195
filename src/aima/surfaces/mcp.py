"""MCP tools generated from the operation registry: one tool per operation, same names.

Two transports share ``build_server``: streamable HTTP at ``/mcp`` in the daemon (tools call the
operations in-process) and ``aima mcp`` on stdio (tools call the daemon's ``/api/v1/ops``). A
failing operation is a tool result with ``isError``, never a protocol error.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import mcp_types as types
from mcp.server import Server, ServerRequestContext

from aima import __version__
from aima.errors import AimaError

ToolCall = Callable[[str, dict[str, Any]], Awaitable[Any]]

INSTRUCTIONS = (
    "aima manages AI inference services. Tools are named domain.verb. Create a service with "
    "service.create, start it with service.start (it waits until ready), inspect it with service.get "
    "and service.logs, and stop or delete it with service.stop / service.delete."
)


def tool_from_description(d: dict[str, Any]) -> types.Tool:
    desc = d.get("description") or d["name"]
    if d.get("mutating"):
        desc += "\n\n(Changes state.)"
    return types.Tool(name=d["name"], description=desc, input_schema=d["input_schema"])


def build_server(descriptions: list[dict[str, Any]], call: ToolCall) -> Server:
    tools = {d["name"]: tool_from_description(d) for d in descriptions}

    async def on_list_tools(ctx: ServerRequestContext, params: types.PaginatedRequestParams | None
                            ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=list(tools.values()))

    async def on_call_tool(ctx: ServerRequestContext, params: types.CallToolRequestParams
                           ) -> types.CallToolResult:
        def error(msg: str) -> types.CallToolResult:
            return types.CallToolResult(content=[types.TextContent(text=msg)], is_error=True)

        if params.name not in tools:
            return error(f"unknown tool {params.name!r}; known tools: {', '.join(sorted(tools))}")
        try:
            result = await call(params.name, dict(params.arguments or {}))
        except AimaError as e:
            return error(e.message)
        except Exception as e:  # noqa: BLE001 - an agent gets a readable error, never a protocol fault
            return error(f"{params.name} failed: {type(e).__name__}: {e}")
        structured = result if isinstance(result, dict) else {"result": result}
        return types.CallToolResult(content=[types.TextContent(text=json.dumps(result))],
                                    structured_content=structured)

    return Server("aima", version=__version__, instructions=INSTRUCTIONS,
                  on_list_tools=on_list_tools, on_call_tool=on_call_tool)


def in_process_server(get_ctx: Callable[[], Any]) -> Server:
    """The server mounted at /mcp: tools call operations directly."""
    from aima.ops.registry import describe, load_all

    ops = load_all()

    async def call(name: str, args: dict[str, Any]) -> Any:
        out = await ops[name].call(get_ctx(), args)
        return out.model_dump(mode="json")

    return build_server([describe(o) for o in ops.values()], call)


async def serve_stdio(base_url: str, api_key: str | None) -> None:
    """``aima mcp``: MCP on stdio, each tool a call to the daemon's operations endpoint."""
    import httpx
    from mcp.server.stdio import stdio_server

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=None, trust_env=False) as http:
        try:
            r = await http.get("/api/v1/ops")
        except httpx.HTTPError as e:
            from aima.errors import DaemonUnreachable

            raise DaemonUnreachable(f"no aima daemon at {base_url} ({type(e).__name__}); "
                                    f"start it with `aima start --detach`") from None
        descriptions = r.json()["operations"]

        async def call(name: str, args: dict[str, Any]) -> Any:
            resp = await http.post(f"/api/v1/ops/{name}", json=args)
            body = resp.json()
            if resp.status_code >= 400:
                raise AimaError.from_dict(resp.status_code, body)
            return body

        server = build_server(descriptions, call)
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
