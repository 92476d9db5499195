"""A scripted OpenAI-compatible model: a real HTTP server (in a thread of the test) that answers
``/v1/chat/completions`` with planned replies, one per request, and records every request it got.

A plan item is a reply message (``{"content": ...}`` or ``{"tool_calls": [...]}``), or a function of the
request body returning one (to put what the tool returned into the answer). ``call(name, **args)`` makes a
structured tool call; ``text_call`` the same call written as a fenced JSON block in the text, as small
local models do. When the plan runs out, ``repeat`` (if set) answers every further request. It also offers
``/extras/tokenize/count`` (a token per 4 characters), as llama-cpp-python's server does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"content": None, "tool_calls": [{"id": f"call_{name}_{len(arguments)}", "type": "function",
                                             "function": {"name": name, "arguments": json.dumps(arguments)}}]}


def text_call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"content": f"I will check.\n```json\n{json.dumps({'name': name, 'arguments': arguments})}\n```"}


def answer(text: str) -> dict[str, Any]:
    return {"content": text}


def last_tool_result(body: dict[str, Any]) -> str:
    tools = [m for m in body["messages"] if m.get("role") == "tool"]
    return str(tools[-1]["content"]) if tools else ""


class ScriptedModel:
    def __init__(self, plan: list[Reply] | None = None, repeat: Reply | None = None, model: str = "scripted"):
        self.plan = list(plan or [])
        self.repeat = repeat
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.token_counts = 0
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedModel:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def env(self) -> dict[str, str]:
        return {"AIMA_AGENT_BASE_URL": self.url, "AIMA_AGENT_MODEL": self.model}

    def offered(self, i: int = 0) -> list[str]:
        """The tool names request ``i`` offered."""
        return [t["function"]["name"] for t in self.requests[i].get("tools") or []]

    def _next(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.requests.append(body)
            item = self.plan.pop(0) if self.plan else self.repeat
        if item is None:
            return answer("(the script has no more replies)")
        return item(body) if callable(item) else item

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_a: Any) -> None:
                pass

            def _json(self, status: int, data: Any) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/") == "/v1/models":
                    self._json(200, {"object": "list", "data": [{"id": outer.model, "object": "model"}]})
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if self.path == "/extras/tokenize/count":
                    outer.token_counts += 1
                    self._json(200, {"count": (len(str(body.get("input", ""))) + 3) // 4})
                    return
                if self.path != "/v1/chat/completions":
                    self._json(404, {"error": {"message": "not found"}})
                    return
                msg = {"role": "assistant", **outer._next(body)}
                self._json(200, {"id": "chatcmpl-1", "object": "chat.completion", "model": outer.model,
                                 "choices": [{"index": 0, "message": msg, "finish_reason": "stop"}],
                                 "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}})

        return Handler
