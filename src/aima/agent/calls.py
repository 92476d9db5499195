"""Reading a model's tool calls leniently.

Strong models answer with structured ``tool_calls``. Small local ones served without a tool-call parser
(Qwen2.5-Coder under llama-cpp-python's default chat handler) write the call as text instead: a fenced
JSON block ``{"name": ..., "arguments": ...}``, sometimes in ``<tool_call>`` tags, with doubled braces,
``parameters`` for ``arguments``, or a bare object. Both are read here; a text call counts only when it
names one of the offered tools, so prose that happens to hold JSON is never run. The names and arguments
are checked again by the caller (``aima.agent.tools.check_arguments``).
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

_FENCE = re.compile(r"```(?:json|tool_call|JSON)?\s*(.*?)```", re.S)
MAX_TEXT_CALLS = 8  # calls read from one reply's text (one JSON object per line)
_TAG = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)


@dataclass
class Call:
    id: str
    name: str  # as the model wrote it (function name or operation name)
    arguments: Any  # a dict, or the raw string when it was not JSON
    structured: bool  # came as tool_calls (False: read from the text)


@dataclass
class Reading:
    calls: list[Call]
    text: str  # the reply's prose (with the call blocks taken out when they were read from the text)
    unknown: list[str]  # names of tools the text tried to call that were not offered


def new_call_id() -> str:
    return "call_" + secrets.token_hex(6)


def read(message: dict[str, Any], offered: set[str]) -> Reading:
    """The calls in one assistant message. ``offered`` holds the names a call may use (function names and
    operation names both)."""
    text = message.get("content") or ""
    if isinstance(text, list):  # content parts
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    structured = []
    for tc in message.get("tool_calls") or []:
        fn = tc.get("function") or {}
        args = fn.get("arguments")
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError:
                pass
        structured.append(Call(id=tc.get("id") or new_call_id(), name=str(fn.get("name") or ""), arguments=args,
                               structured=True))
    if structured:
        return Reading(calls=structured, text=text, unknown=[])
    calls: list[Call] = []
    unknown: list[str] = []
    spans: list[tuple[int, int]] = []
    for start, end, obj in _candidates(text):
        name, args = _as_call(obj)
        if name is None:
            continue
        if _bare(name) in offered or name in offered:
            calls.append(Call(id=new_call_id(), name=name, arguments=args, structured=False))
            spans.append((start, end))
        elif isinstance(obj, dict) and ({"arguments", "parameters"} & obj.keys() or "function" in obj):
            unknown.append(name)  # shaped like a call, to a tool that was not offered
    prose = text
    for start, end in sorted(spans, reverse=True):
        prose = prose[:start] + prose[end:]
    return Reading(calls=calls[:MAX_TEXT_CALLS], text=prose.strip(), unknown=unknown)


def _bare(name: str) -> str:
    return name.strip().removeprefix("functions.")


def _as_call(obj: Any) -> tuple[str | None, Any]:
    if not isinstance(obj, dict):
        return None, None
    if isinstance(obj.get("function"), dict):  # {"type": "function", "function": {...}}
        obj = obj["function"]
    name = obj.get("name") or obj.get("tool") or obj.get("tool_name")
    if not isinstance(name, str) or not name.strip():
        return None, None
    args = obj.get("arguments", obj.get("parameters", obj.get("args", {})))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            pass
    return name.strip(), args


def _candidates(text: str) -> list[tuple[int, int, Any]]:
    """JSON objects in the text with where they are: fenced blocks and <tool_call> tags first, then bare
    objects outside them."""
    found: list[tuple[int, int, Any]] = []
    taken: list[tuple[int, int]] = []
    for rx in (_FENCE, _TAG):
        for m in rx.finditer(text):
            if any(a <= m.start() < b for a, b in taken):
                continue
            for obj in _objects(m.group(1)):
                found.append((m.start(), m.end(), obj))
            taken.append((m.start(), m.end()))
    i = 0
    while i < len(text):
        if text[i] == "{" and not any(a <= i < b for a, b in taken):
            end = _match_brace(text, i)
            if end is not None:
                obj = _loads(text[i:end])
                if obj is not None:
                    found.append((i, end, obj))
                    i = end
                    continue
        i += 1
    return found


def _objects(block: str) -> list[Any]:
    block = block.strip()
    obj = _loads(block)
    if obj is not None:
        return obj if isinstance(obj, list) else [obj]
    out = []
    for line in block.splitlines():  # one call per line
        o = _loads(line.strip())
        if o is not None:
            out.append(o)
    return out


def _loads(s: str) -> Any:
    if not s:
        return None
    for cand in (s, *_undouble(s)):
        try:
            return json.loads(cand)
        except ValueError:
            continue
    return None


def _undouble(s: str) -> tuple[str, str]:
    """``{{"name": ...}}`` (a template bug of some GGUFs) → ``{"name": ...}``: the outer braces undoubled, or
    every doubled brace."""
    s = s.strip()
    outer = s
    while outer.startswith("{{") and outer.endswith("}}"):
        outer = outer[1:-1].strip()
    return outer, s.replace("{{", "{").replace("}}", "}")


def _match_brace(text: str, start: int) -> int | None:
    depth, in_str, esc = 0, False, False
    for j in range(start, len(text)):
        ch = text[j]
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return j + 1
    return None
