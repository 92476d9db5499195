"""The floor of any ASGI front door: a raw ASGI app under uvicorn that answers the stub's chat at once.

``bench/gateway.py`` runs it as ``python -m uvicorn asgi_floor:app --app-dir bench`` (uvloop and httptools, as
aima's daemon runs) beside aima's gateway: no routing, no upstream, nothing but uvicorn taking a request and
writing a fixed answer. No front door served by uvicorn in one process can answer faster than this.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from stub_upstream import Answers

_A = Answers("stub", 8)
CHAT = _A.chat.partition(b"\r\n\r\n")[2]
EVENTS = b"".join(x for x in _A.chat_sse.split(b"\r\n") if x.startswith(b"data: "))  # less the chunked framing


async def app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
              send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        msg = await receive()
        body += msg.get("body", b"")
        more = msg.get("more_body", False)
    if b'"stream": true' in body or b'"stream":true' in body:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
        await send({"type": "http.response.body", "body": EVENTS})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(CHAT)).encode())]})
    await send({"type": "http.response.body", "body": CHAT})
