"""The daemon's HTTP protocol: uvicorn's httptools protocol, with ``/v1/...`` answered straight from the
parser instead of through ASGI.

Why: on the OpenAI routes aima is a proxy, and a proxy in Python is bounded by the CPU it spends per
request. uvicorn's ASGI cycle (the scope, the event dicts, ``send``'s header checks, an ``asyncio.Event``
per request) cost about as much as all of aima's own routing and relaying together (profiled with
py-spy under wrk: ``RequestResponseCycle.send`` alone took a quarter of the daemon's time). Here a
``/v1`` request becomes an :class:`Exchange` as soon as its headers are parsed: its body is collected
by the parser callbacks, one task runs the gateway on it, and the answer is written to the socket
directly — the head and a whole JSON body in one write, an SSE stream chunk by chunk.

Everything else (the REST API, MCP, the web page, ``/health``, ``/metrics``) keeps uvicorn's ASGI
path unchanged, on the same port and the same keep-alive connection. Pipelined requests keep their
order: a request that arrives while the previous one is being answered waits in uvicorn's pipeline.

A ``/v1`` request without a valid API key (while keys are in use) is refused here, before the gateway
sees it (``server.auth``); the ASGI routes are checked by ``server.auth.Door``.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import TYPE_CHECKING, Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from aima.server.auth import OPEN, REFUSAL, KeyInfo, KeyRing, forbidden, permits, presented_key

if TYPE_CHECKING:
    from aima.gateway.router import Gateway

Headers = list[tuple[bytes, bytes]]


class Exchange:
    """One ``/v1`` request on a client connection, and its answer written to the transport directly.

    It stands where uvicorn keeps its request cycle, so the protocol's own bookkeeping (keep-alive,
    pipelining, a client that goes away, graceful shutdown) treats both alike: the attributes
    ``response_complete``, ``disconnected``, ``keep_alive``, ``more_body`` and ``message_event.set()``
    mean what they mean there.
    """

    __slots__ = ("protocol", "transport", "flow", "method", "path", "target", "query", "headers", "parts",
                 "size", "limit", "too_large", "more_body", "keep_alive", "response_complete", "disconnected",
                 "started", "upstream", "key", "_waiter", "_pending", "_chunked")

    def __init__(self, protocol: FrontProtocol, method: str, path: str, target: bytes, query: bytes,
                 headers: Headers, keep_alive: bool):
        self.protocol = protocol
        self.transport = protocol.transport
        self.flow = protocol.flow
        self.method = method
        self.path = path
        self.target = target  # the raw path and query, as the engine gets them
        self.query = query
        self.headers = headers
        self.parts: list[bytes] = []
        self.size = 0
        self.limit = 1 << 62
        self.too_large = False
        self.more_body = True
        self.keep_alive = keep_alive
        self.response_complete = False
        self.disconnected = False
        self.started = False
        self.upstream: Any = None  # the engine connection working on it now: aborted when the client leaves
        self.key: KeyInfo = OPEN  # the API key it came with
        self._waiter: asyncio.Future[None] | None = None
        self._pending = b""  # an answer's head, written with its first piece of body
        self._chunked = False

    # ------------------------------------------------------------------ what the protocol calls
    @property
    def message_event(self) -> Exchange:
        return self

    def set(self) -> None:
        """The parser or the connection moved on: body complete, or the client went away."""
        if self.disconnected:
            up = self.upstream
            if up is not None:
                self.upstream = None
                up.abort()  # the engine sees its connection close and stops working on the request
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    # ------------------------------------------------------------------ the request
    async def body(self) -> bytes | None:
        """The whole request body; None when the client left before sending it."""
        while self.more_body and not self.disconnected:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self.disconnected:
            return None
        parts = self.parts
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def header(self, name: bytes) -> bytes | None:
        for n, v in self.headers:
            if n == name:
                return v
        return None

    # ------------------------------------------------------------------ the answer
    def _head(self, status: int, headers: Headers, framing: bytes) -> bytes:
        out = [STATUS_LINE[status]]
        for n, v in self.protocol.server_state.default_headers:
            out += [n, b": ", v, b"\r\n"]
        for n, v in headers:
            out += [n, b": ", v, b"\r\n"]
        if framing:
            out.append(framing)
        if not self.keep_alive:
            out.append(b"connection: close\r\n")
        out.append(b"\r\n")
        return b"".join(out)

    def whole(self, status: int, headers: Headers, body: bytes) -> None:
        """An answer in one piece: head and body in one write, ``content-length`` set here. (Also after
        ``start`` while nothing of that answer went out yet: its head is dropped.)"""
        if self.committed or self.response_complete:
            return
        self.started, self._pending, self._chunked = True, b"", False
        head = self._head(status, headers, b"content-length: %d\r\n" % len(body))
        if self.method == "HEAD":  # (every /v1 route answers HEAD 405) the head alone
            body = b""
        if not self.disconnected:
            if len(body) < 65536:
                self.transport.write(head + body)
            else:
                self.transport.writelines((head, body))
        self._complete()

    def start(self, status: int, headers: Headers, *, length: bool = False) -> None:
        """Begin an answer whose body follows in pieces: chunked unless ``length`` (the headers carry a
        ``content-length`` that the pieces add up to). Nothing is written until the first piece."""
        self.started = True
        self._chunked = not length
        self._pending = self._head(status, headers, b"" if length else b"transfer-encoding: chunked\r\n")

    def write(self, data: bytes) -> None:
        if self.disconnected or not data:
            return
        if self._chunked:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        if self._pending:
            data, self._pending = self._pending + data, b""
        self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the client reads slower than the engine writes."""
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()

    def end(self, data: bytes = b"") -> None:
        """The last piece (may be empty): the answer is complete."""
        if not self.disconnected:
            if self._chunked:
                data = (b"%x\r\n%b\r\n0\r\n\r\n" % (len(data), data)) if data else b"0\r\n\r\n"
            self.transport.write(self._pending + data if self._pending else data)
            self._pending = b""
        self._complete()

    @property
    def committed(self) -> bool:
        """Some of the answer went out: from now on an error can only cut it short."""
        return self.started and not self._pending

    def abort(self) -> None:
        """An answer that cannot be finished (the engine broke off): the client sees the connection close."""
        self.keep_alive = False
        self.response_complete = True
        self.transport.close()

    def _complete(self) -> None:
        self.response_complete = True
        if not self.keep_alive or self.disconnected:
            self.transport.close()
            return
        self.protocol.on_response_complete()


class FrontProtocol(HttpToolsProtocol):
    """uvicorn's protocol; ``/v1`` requests go to ``gateway`` as :class:`Exchange` objects."""

    gateway: Gateway
    keys: KeyRing

    def on_message_begin(self) -> None:
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.scope = None  # type: ignore[assignment]  # built only for the ASGI path

    def on_headers_complete(self) -> None:
        url = self.url
        if not url.startswith(b"/v1/") or self.parser.should_upgrade():
            self._asgi_headers_complete()
            return
        parsed = httptools.parse_url(url)
        raw_path = parsed.path
        path = raw_path.decode("ascii", "replace")
        if "%" in path:
            path = urllib.parse.unquote(path)
        parser = self.parser
        keep_alive = parser.get_http_version() != "1.0" and parser.should_keep_alive()
        ex = Exchange(self, parser.get_method().decode("ascii"), path, url, parsed.query or b"", self.headers,
                      keep_alive)
        ex.limit = self.gateway.body_limit(path)
        if self.expect_100_continue:  # the client waits for this before it sends a body
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        existing = self.cycle
        self.cycle = ex  # type: ignore[assignment]
        if existing is None or existing.response_complete:
            self._start(ex)
        else:  # pipelined behind an answer still being written: it waits its turn
            self.flow.pause_reading()
            self.pipeline.appendleft((ex, None))  # type: ignore[arg-type]

    def _asgi_headers_complete(self) -> None:
        """What uvicorn's ``on_message_begin`` would have built, then its own ``on_headers_complete``."""
        self.scope = {  # type: ignore[typeddict-item]
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,  # type: ignore[typeddict-item]
            "root_path": self.root_path,
            "headers": self.headers,
            "state": self.app_state.copy(),
        }
        super().on_headers_complete()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        if type(cycle) is Exchange:  # a pipelined /v1 request whose turn came
            self._start(cycle)
        else:
            super()._start_asgi_task(cycle, app)

    def _start(self, ex: Exchange) -> None:
        key = self.keys.lookup(presented_key(ex.headers))
        if key is None:
            ex.whole(*REFUSAL)
            return
        if not permits(key, ex.method, ex.path):
            ex.whole(*forbidden(key, ex.method, ex.path))
            return
        ex.key = key
        task = self.loop.create_task(self.gateway.serve(ex))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def on_body(self, body: bytes) -> None:
        ex = self.cycle
        if type(ex) is not Exchange:
            super().on_body(body)
            return
        if ex.response_complete or ex.too_large:
            return
        ex.size += len(body)
        if ex.size > ex.limit:  # keep reading (the client is still sending) but keep nothing
            ex.too_large = True
            ex.parts = []
            return
        ex.parts.append(body)

    def on_message_complete(self) -> None:
        ex = self.cycle
        if type(ex) is not Exchange:
            super().on_message_complete()
            return
        ex.more_body = False
        ex.set()


def protocol_for(gateway: Gateway, keys: KeyRing) -> type[FrontProtocol]:
    """The protocol class uvicorn is configured with (``uvicorn.Config(http=...)``)."""
    return type("AimaProtocol", (FrontProtocol,), {"gateway": gateway, "keys": keys})
