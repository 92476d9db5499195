"""MCP tools generated from the operation registry: one tool per operation, same names.

Two transports share ``build_server``: streamable HTTP at ``/mcp`` in the daemon (tools call the
operations in-process) and ``aima mcp`` on stdio (tools call the daemon's ``/api/v1/ops``). A
failing operation is a tool result with ``isError``, never a protocol error.

Profiles (``aima mcp --profile read-only|operator|admin``; ``/mcp?profile=...`` or an ``X-Aima-Profile``
header) offer what the profile allows, compactly — one-line descriptions and small schemas a small model
can hold (aima.agent.tools); without one, every operation with its full schema. The agent itself
(``agent.ask``) is never a tool. Destructive calls need approval as they do for aima's own agent: ``--yes``,
else the MCP client is asked (elicitation) when it can ask a person, else over HTTP the call waits for
``POST /api/v1/agent/approvals/{id}`` (announced as an ``agent.approval.needed`` event), else it is denied.
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


PROFILES = ("read-only", "operator", "admin")
# approve(ctx, tool, arguments, answered) -> None to go ahead, the text of the denial the client gets, or a request
# for the client's person to decide (MCP's input_required round trip); ``answered`` is that person's decision when
# the client comes back with it.
Approve = Callable[[ServerRequestContext, str, dict[str, Any], "bool | None"],
                   Awaitable["str | types.InputRequiredResult | None"]]
APPROVAL_KEY = "aima-approval"


def tool_from_description(d: dict[str, Any], compact: bool = False) -> types.Tool:
    desc = d.get("description") or d["name"]
    if d.get("mutating") and not compact:
        desc += "\n\n(Changes state.)"
    return types.Tool(name=d["name"], description=desc, input_schema=d["input_schema"])


def toolsets(descriptions: list[dict[str, Any]]) -> dict[str | None, dict[str, types.Tool]]:
    """The tools offered without a profile (every operation but the agent's own, full schemas) and per profile."""
    from aima.agent.tools import profile_descriptions

    out: dict[str | None, dict[str, types.Tool]] = {
        None: {d["name"]: tool_from_description(d) for d in descriptions if d["name"] != "agent.ask"}}
    for p in PROFILES:
        out[p] = {d["name"]: tool_from_description(d, compact=True) for d in profile_descriptions(p, descriptions)}
    return out


def build_server(descriptions: list[dict[str, Any]], call: ToolCall, *, profile: str | None = None,
                 approve: Approve | None = None) -> Server:
    """``profile``: the one profile this server offers; None: each request's ``profile`` (query or
    ``X-Aima-Profile`` header), else every operation."""
    sets = toolsets(descriptions)

    def tools_of(ctx: ServerRequestContext) -> dict[str, types.Tool]:
        return sets[profile if profile is not None else request_profile(ctx)]

    async def on_list_tools(ctx: ServerRequestContext, params: types.PaginatedRequestParams | None
                            ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=list(tools_of(ctx).values()))

    async def on_call_tool(ctx: ServerRequestContext, params: types.CallToolRequestParams
                           ) -> types.CallToolResult:
        def error(msg: str) -> types.CallToolResult:
            return types.CallToolResult(content=[types.TextContent(text=msg)], is_error=True)

        tools = tools_of(ctx)
        if params.name not in tools:
            return error(f"unknown tool {params.name!r}; known tools: {', '.join(sorted(tools))}")
        args = dict(params.arguments or {})
        if tools is not sets[None]:  # a profile offers some fields only: nothing else gets through
            props = tools[params.name].input_schema.get("properties", {})
            extra = [k for k in args if k not in props]
            if extra:
                return error(f"{params.name} takes no {', '.join(extra)} here; it takes: "
                             f"{', '.join(props) or 'nothing'}")
        try:
            if approve is not None:
                verdict = await approve(ctx, params.name, args, _answered(params))
                if isinstance(verdict, types.InputRequiredResult):
                    return verdict  # type: ignore[return-value]
                if verdict is not None:
                    return error(verdict)
            result = await call(params.name, args)
        except AimaError as e:
            return error(e.message)
        except Exception as e:  # noqa: BLE001 - an agent gets a readable error, never a protocol fault
            return error(f"{params.name} failed: {type(e).__name__}: {e}")
        structured = result if isinstance(result, dict) else {"result": result}
        return types.CallToolResult(content=[types.TextContent(text=json.dumps(result))],
                                    structured_content=structured)

    return Server("aima", version=__version__, instructions=INSTRUCTIONS,
                  on_list_tools=on_list_tools, on_call_tool=on_call_tool)


def request_profile(ctx: ServerRequestContext) -> str | None:
    """The profile an HTTP request asks for (``?profile=`` or ``X-Aima-Profile``); None: none or unknown. A read
    key (its scope passed on by the daemon's key check as ``X-Aima-Key-Scope``) gets the read-only profile
    whatever it asks for."""
    req = getattr(ctx, "request", None)
    if req is None:
        return None
    try:
        value = req.query_params.get("profile") or req.headers.get("x-aima-profile")
        scope = req.headers.get("x-aima-key-scope")
    except AttributeError:
        return None
    if scope == "read":
        return "read-only"
    return value if value in PROFILES else None


def _answered(params: Any) -> bool | None:
    """The person's decision a client brings back with its retried call (None: not asked yet)."""
    got = (getattr(params, "input_responses", None) or {}).get(APPROVAL_KEY)
    if got is None:
        return None
    content = getattr(got, "content", None) or {}
    return getattr(got, "action", None) == "accept" and bool(content.get("approve"))


def _question(tool: str, args: dict[str, Any], reason: str) -> tuple[str, dict[str, Any]]:
    return (f"Allow {tool} {json.dumps(args)}? ({reason})",
            {"type": "object", "properties": {"approve": {"type": "boolean", "description": "run this call"}},
             "required": ["approve"]})


async def ask_client(ctx: ServerRequestContext, tool: str, args: dict[str, Any],
                     reason: str) -> bool | types.InputRequiredResult | None:
    """Ask the MCP client's person: as an input_required round trip (MCP 2026-07-28), or as an elicitation
    request on older sessions that can send one. None: the client cannot ask anyone."""
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS

    session = getattr(ctx, "session", None)
    caps = getattr(session, "client_capabilities", None) if session is not None else None
    if caps is None or getattr(caps, "elicitation", None) is None:
        return None
    message, schema = _question(tool, args, reason)
    if getattr(ctx, "protocol_version", None) in MODERN_PROTOCOL_VERSIONS:
        return types.InputRequiredResult(input_requests={APPROVAL_KEY: types.ElicitRequest(
            params=types.ElicitRequestFormParams(message=message, requested_schema=schema))})
    if not getattr(session, "can_send_request", False):
        return None
    try:
        res = await session.elicit_form(message, schema,  # type: ignore[union-attr]
                                        related_request_id=getattr(ctx, "request_id", None))
    except Exception:  # noqa: BLE001 - a client that cannot answer is one that did not approve
        return None
    return res.action == "accept" and bool((res.content or {}).get("approve"))


def mount(app: Any, get_ctx: Callable[[], Any], settings: Any) -> Any:
    """MCP (streamable HTTP) at ``/mcp`` on the daemon's app (``aima.server.app.Mount``); the session manager
    runs while the daemon does."""
    from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
    from mcp.server.transport_security import TransportSecuritySettings

    manager = StreamableHTTPSessionManager(
        app=in_process_server(get_ctx), stateless=True, json_response=True,
        security_settings=TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*", f"{settings.host}:*"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        ),
    )
    app.add_route("/mcp", StreamableHTTPASGIApp(manager), include_in_schema=False)
    return manager.run()


def in_process_server(get_ctx: Callable[[], Any]) -> Server:
    """The server mounted at /mcp: tools call operations directly."""
    from aima.ops.registry import describe, load_all

    ops = load_all()

    async def call(name: str, args: dict[str, Any]) -> Any:
        out = await ops[name].call(get_ctx(), args)
        return out.model_dump(mode="json")

    async def approve(mctx: ServerRequestContext, name: str, args: dict[str, Any],
                      answered: bool | None) -> str | types.InputRequiredResult | None:
        from aima.agent import approvals, store
        from aima.agent.loop import _pinned
        from aima.agent.profiles import destructive

        ctx = get_ctx()
        profile = request_profile(mctx) or "all"
        reason = destructive(name, args, lambda ref: _pinned(ctx, ref))
        if reason is None:
            return None
        decided = answered if answered is not None else await ask_client(mctx, name, args, reason)
        if isinstance(decided, types.InputRequiredResult):
            return decided
        how = "mcp client"
        if decided is None:
            timeout = ctx.settings.agent_approval_timeout_s
            pending = approvals.open_request(name, args, reason, "mcp")
            ctx.bus.publish("agent.approval.needed", f"an MCP client asks to run {name} {json.dumps(args)} ({reason}); "
                            f"POST /api/v1/agent/approvals/{pending.id} {{\"approve\": true}} within {timeout:g}s",
                            approval_id=pending.id, tool=name, arguments=args, reason=reason)
            decided = await approvals.wait(pending, timeout)
            how = "rest" if decided is not None else f"no answer within {timeout:g}s"
        store.audit(ctx.db, session="mcp", profile=profile, tool=name, arguments=args,
                    outcome="approved" if decided else "denied", approval=how, message=reason)
        return None if decided else f"denied: {name} needs a person's approval ({reason}) and was not approved ({how})"

    return build_server([describe(o) for o in ops.values()], call, approve=approve)


async def serve_stdio(base_url: str, api_key: str | None, profile: str | None = None, yes: bool = False) -> None:
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

        async def pinned(ref: str) -> bool:
            try:
                return bool((await call("service.get", {"service": ref})).get("pinned"))
            except AimaError:
                return False

        async def approve(mctx: ServerRequestContext, name: str, args: dict[str, Any],
                          answered: bool | None) -> str | types.InputRequiredResult | None:
            from aima.agent.profiles import DESTRUCTIVE, PINNED_STOPS

            if name in DESTRUCTIVE:
                reason = f"{name} is destructive"
            elif name in PINNED_STOPS and args.get("service") and await pinned(str(args["service"])):
                reason = f"{args['service']} is pinned (kept loaded on purpose)"
            else:
                return None
            if yes:
                return None
            decided = answered if answered is not None else await ask_client(mctx, name, args, reason)
            if isinstance(decided, types.InputRequiredResult) or decided:
                return None if decided is True else decided
            why = "its person said no" if decided is False else "it cannot ask a person"
            return (f"denied: {name} needs a person's approval ({reason}); the MCP client did not give it ({why}) "
                    f"and `aima mcp` was started without --yes")

        server = build_server(descriptions, call, profile=profile, approve=approve)
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
