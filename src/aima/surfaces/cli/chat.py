"""``aima run``'s interactive chat: a read-eval-print loop over a ready service's OpenAI endpoint,
streaming each answer as it comes. Until the gateway proxies requests, it talks to the engine."""

from __future__ import annotations

import http.client
import json
import sys
from typing import Any
from urllib.parse import urlsplit

CHAT_TYPES = ("llm",)


def interactive(service: dict[str, Any]) -> None:
    endpoint = service.get("endpoint")
    print(f"{service['name']} is ready at {endpoint} (model {service['model']}, engine {service['engine']})",
          file=sys.stderr)
    if not endpoint:
        return
    print("type a message, empty line or Ctrl-D to leave; the service keeps running "
          f"(`aima service stop {service['name']}` stops it)", file=sys.stderr)
    history: list[dict[str, str]] = []
    while True:
        try:
            line = input(">>> ")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return
        if not line.strip():
            return
        history.append({"role": "user", "content": line})
        try:
            answer = stream_chat(endpoint, service["model"], history)
        except (OSError, http.client.HTTPException, ValueError) as e:
            print(f"aima: the engine did not answer: {type(e).__name__}: {e}", file=sys.stderr)
            history.pop()
            continue
        history.append({"role": "assistant", "content": answer})


def stream_chat(endpoint: str, model: str, messages: list[dict[str, str]], max_tokens: int = 512) -> str:
    """POST a streaming chat completion; print the text as it arrives; return the whole answer."""
    parts = urlsplit(endpoint)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=600)
    body = json.dumps({"model": model, "messages": messages, "stream": True, "max_tokens": max_tokens})
    conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise ValueError(f"HTTP {resp.status}: {resp.read()[:300].decode(errors='replace')}")
    out: list[str] = []
    for raw in resp:
        line = raw.decode(errors="replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        try:
            delta = json.loads(data)["choices"][0].get("delta", {}).get("content") or ""
        except (ValueError, KeyError, IndexError):
            continue
        out.append(delta)
        sys.stdout.write(delta)
        sys.stdout.flush()
    sys.stdout.write("\n")
    conn.close()
    return "".join(out)
