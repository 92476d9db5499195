"""The tool adapter: operations of the registry as tools a model can call.

Each operation a profile offers becomes a tool named by the operation (``service.list``); as an OpenAI
function its name has ``_`` for ``.`` (``service_list``), its parameters are the operation's input JSON
schema made compact, and its description is one line. Compact means what a small model can hold: no
``title``, no defaults, no ``null`` unions (an optional field is simply not required), no ``$ref``/``$defs``,
no limits or CLI hints, fields hidden from the CLI left out, each description cut to one line — and, for
the small profiles, only the fields an operator needs (``service.create`` keeps 11 of its 22).

A tool call is checked against what was offered before anything runs: the name must be an offered tool,
the arguments an object; arguments the tool does not take are dropped and said so in the result; the
operation itself then validates the values (a bad value is an error the model reads and can correct).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

from aima.agent.profiles import DESCRIPTIONS, FIELDS, RENAMES, offered


class Operation(Protocol):
    """What the agent reads of an operation (``aima.ops.registry.Operation``: the operations hand themselves
    to the agent, which sits below them)."""

    name: str
    summary: str
    mutating: bool
    input: type[BaseModel]

    async def call(self, ctx: Any, data: Any) -> BaseModel: ...

DROP_KEYS = ("title", "default", "examples", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum",
             "exclusiveMaximum", "pattern", "minItems", "maxItems", "format", "additionalProperties")
DESCRIPTION_CHARS = 110  # one line


@dataclass(frozen=True)
class Tool:
    name: str  # the operation's name: service.list
    op: Operation
    description: str
    parameters: dict[str, Any]
    fields: tuple[str, ...] = field(default=())
    renamed: dict[str, str] = field(default_factory=dict)  # offered name -> the operation's field

    @property
    def function_name(self) -> str:
        return function_name(self.name)

    @property
    def mutating(self) -> bool:
        return self.op.mutating

    def openai(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.function_name, "description": self.description,
                                                 "parameters": self.parameters}}

    def mcp(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "input_schema": self.parameters,
                "mutating": self.mutating}


def function_name(op_name: str) -> str:
    return op_name.replace(".", "_")


def one_line(text: str, limit: int = DESCRIPTION_CHARS) -> str:
    """The first sentence of a description on one line, at most ``limit`` characters."""
    text = " ".join((text or "").split())
    depth, first = 0, text
    for i, ch in enumerate(text):  # the first sentence: a full stop outside parentheses, then a space
        depth += (ch == "(") - (ch == ")")
        if ch == "." and depth == 0 and (i + 1 == len(text) or text[i + 1] == " "):
            first = text[:i]
            break
    return first if len(first) <= limit else first[: limit - 1].rstrip(" ,;:(") + "…"


def compact_schema(schema: dict[str, Any], fields: tuple[str, ...] | None = None) -> dict[str, Any]:
    """An operation's input schema as a small model reads it best (see the module docstring)."""
    defs = schema.get("$defs", {})

    def walk(node: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in node:
            ref = defs.get(node["$ref"].rsplit("/", 1)[-1], {})
            node = {**ref, **{k: v for k, v in node.items() if k != "$ref"}}
        if "allOf" in node and len(node["allOf"]) == 1:
            node = {**walk(node["allOf"][0]), **{k: v for k, v in node.items() if k != "allOf"}}
        if "anyOf" in node:
            kept = [walk(a) for a in node["anyOf"] if a.get("type") != "null"]
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            node = {**kept[0], **rest} if len(kept) == 1 else {**rest, "anyOf": kept}
        out: dict[str, Any] = {}
        for k, v in node.items():
            if k in DROP_KEYS or k.startswith("x-"):
                continue
            if k == "description":
                out[k] = one_line(v, 90)
            elif k == "items" and isinstance(v, dict):
                out[k] = walk(v)
            elif k == "properties":
                out[k] = {n: walk(p) for n, p in v.items()}
            else:
                out[k] = v
        return out

    props = schema.get("properties", {})
    keep = [n for n, p in props.items() if not _hidden(p, defs) and (fields is None or n in fields)]
    if fields is not None:  # in the order given (what matters first)
        keep.sort(key=fields.index)
    required = [n for n in schema.get("required", []) if n in keep]
    out: dict[str, Any] = {"type": "object", "properties": {n: walk(props[n]) for n in keep}}
    if required:
        out["required"] = required
    return out


def _hidden(prop: dict[str, Any], defs: dict[str, Any]) -> bool:
    return bool(prop.get("x-cli-hidden"))


def make_tool(op: Operation, profile: str) -> Tool:
    fields = FIELDS.get(profile, {}).get(op.name)
    params = compact_schema(op.input.model_json_schema(), fields)
    renames = RENAMES.get(op.name, {})  # op field -> the name the model sees
    if renames:
        params["properties"] = {renames.get(k, k): v for k, v in params["properties"].items()}
        if "required" in params:
            params["required"] = [renames.get(k, k) for k in params["required"]]
    return Tool(name=op.name, op=op, description=DESCRIPTIONS.get(op.name) or one_line(op.summary),
                parameters=params, fields=tuple(params["properties"]),
                renamed={v: k for k, v in renames.items() if k in params["properties"] or v in params["properties"]})


def profile_descriptions(profile: str, descriptions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What an MCP client of ``profile`` is offered, from operation descriptions (``GET /api/v1/ops``):
    the profile's operations, each with a one-line description and its compact input schema."""
    by_name = {d["name"]: d for d in descriptions}
    out = []
    for name in offered(profile, by_name):
        d = by_name[name]
        params = compact_schema(d["input_schema"], FIELDS.get(profile, {}).get(name))
        out.append({"name": name, "summary": d.get("summary", ""), "mutating": d.get("mutating", False),
                    "description": DESCRIPTIONS.get(name) or one_line(d.get("summary", "")), "input_schema": params})
    return out


def toolset(profile: str, ops: Mapping[str, Operation]) -> dict[str, Tool]:
    """The tools a profile offers of ``ops`` (the registry), by operation name, in the registry's order."""
    return {name: make_tool(ops[name], profile) for name in offered(profile, ops)}


def openai_tools(tools: dict[str, Tool]) -> list[dict[str, Any]]:
    return [t.openai() for t in tools.values()]


def by_function_name(tools: dict[str, Tool], name: str) -> Tool | None:
    """The offered tool a call names: ``service_list``, ``service.list`` or ``functions.service_list``."""
    name = (name or "").strip().removeprefix("functions.")
    return tools.get(name) or next((t for t in tools.values() if t.function_name == name), None)


def check_arguments(tool: Tool, args: Any) -> tuple[dict[str, Any], list[str]]:
    """The arguments to pass (only fields the tool offers) and the names that were dropped; a JSON string is
    parsed; anything but an object is a ValueError saying what the tool takes."""
    if args is None or args == "":
        args = {}
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            raise ValueError(f"the arguments of {tool.function_name} must be a JSON object, "
                             f"got {args[:80]!r}") from None
    if not isinstance(args, dict):
        raise ValueError(f"the arguments of {tool.function_name} must be a JSON object "
                         f"with {', '.join(tool.fields) or 'no fields'}")
    args = dict(args)
    for shown, own in tool.renamed.items():  # the operation's own name for a renamed field is understood too
        if own in args and shown not in args:
            args[shown] = args.pop(own)
    for want in tool.parameters.get("required", []):  # a required field given under another common name
        if want not in args:
            alias = next((a for a in SYNONYMS.get(want, ()) if a in args and a not in tool.fields), None)
            if alias is not None:
                args[want] = args.pop(alias)
    kept = {tool.renamed.get(k, k): v for k, v in args.items() if k in tool.fields and v is not None}
    dropped = [k for k in args if k not in tool.fields]
    return kept, dropped


SYNONYMS = {"service": ("name", "service_name", "service_id", "id", "model"), "model": ("model_name", "name")}


def tools_list_bytes(tools: dict[str, Tool]) -> int:
    """The size of an MCP ``tools/list`` result offering these tools (what a client puts in its context)."""
    listing = {"tools": [{"name": t.name, "description": t.description, "inputSchema": t.parameters}
                         for t in tools.values()]}
    return len(json.dumps(listing, separators=(",", ":")))


# ---------------------------------------------------------------------------- results
SERVICE_KEEP = ("name", "id", "model", "engine", "state", "ready", "idle", "last_request_s_ago", "endpoint", "message",
                "restarts", "idle_ttl_s", "pinned", "runtime")
INSTANCE_KEEP = ("replica", "state", "ready", "pid", "port", "exit_code", "message")


def compact_result(data: Any) -> Any:
    """A result without what a model does not need: empty and null fields go, services keep their summary
    fields and their instances a few (``service.get`` of one service keeps them all)."""
    if isinstance(data, dict):
        if "instances" in data and "state" in data and "engine" in data:  # a service
            out = {k: data[k] for k in SERVICE_KEEP if data.get(k) not in (None, "", [], {})}
            insts = [{k: i[k] for k in INSTANCE_KEEP if i.get(k) not in (None, "")}
                     for i in data.get("instances") or []]
            if insts:
                out["instances"] = insts
            return out
        return {k: compact_result(v) for k, v in data.items() if v not in (None, "", [], {})}
    if isinstance(data, list):
        return [compact_result(v) for v in data]
    return data


def summarize(op_name: str, data: Any) -> str:
    """One line a person reads for a tool's result, rendered from the result itself (never from the model)."""
    if not isinstance(data, dict):
        return _short(json.dumps(data))
    if isinstance(data.get("services"), list):
        rows = data["services"]
        if not rows:
            return "no services"
        parts = [f"{s.get('name')} ({s.get('state')}{', ready' if s.get('ready') else ''}"
                 f"{', idle' if s.get('idle') else ''})" for s in rows[:8]]
        return f"{len(rows)} service(s): " + ", ".join(parts) + (" …" if len(rows) > 8 else "")
    if "outcome" in data and isinstance(data.get("service"), dict):
        s = data["service"]
        return f"{s.get('name')}: {data['outcome']}" + (f" — {data['message']}" if data.get("message") else "")
    if "state" in data and "engine" in data and "name" in data:
        return f"{data['name']}: {data['state']}{', ready' if data.get('ready') else ''}" \
               f"{', idle' if data.get('idle') else ''}" + (
            f" — {data['message']}" if data.get("message") else "")
    if isinstance(data.get("lines"), list):
        lines = [ln for ln in data["lines"] if ln.strip()]
        return f"{len(lines)} log line(s)" + (f", last: {_short(lines[-1], 90)}" if lines else "")
    if {"platform", "cpu", "memory"} <= data.keys():
        cpu, mem = data.get("cpu") or {}, data.get("memory") or {}
        gb = (mem.get("total_bytes") or 0) / 2**30
        return (f"{cpu.get('model') or 'CPU'}, {cpu.get('cores_logical')} cores, {gb:.1f} GiB RAM, "
                f"{len(data.get('gpus') or [])} GPU(s)")
    if isinstance(data.get("models"), list):
        return f"{len(data['models'])} model(s): " + ", ".join(str(m.get("name")) for m in data["models"][:8])
    if isinstance(data.get("events"), list):
        return f"{len(data['events'])} event(s)"
    if "deleted" in data:
        return f"deleted {data.get('name') or data['deleted']}"
    if "text" in data:
        return _short(str(data["text"]))
    return _short(json.dumps(compact_result(data)))


def _short(text: str, width: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
