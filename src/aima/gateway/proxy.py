"""The upstream side of the gateway: a small pooled keep-alive HTTP/1.1 client on asyncio + httptools.

Why not httpx: the proxy path is the hot path, and a general client costs hundreds of microseconds
per request in Python. This one writes the request head and body in one call, parses the answer
with llhttp (httptools, which uvicorn already uses), hands body pieces over as they arrive (an SSE
event is flushed as soon as the engine writes it), pauses reading when the client is slower than the
engine, and aborts the connection at once when asked (a client that went away frees the engine's
slot). Idle connections are kept per engine address and reused (last in, first out).
"""

from __future__ import annotations

import asyncio
import collections

import httptools

HIGH_WATER = 1 << 20  # pause reading from an engine when this much is waiting for a slow client
MAX_IDLE = 512  # idle connections kept per engine address

# Request headers not forwarded: hop-by-hop ones, those aima sets itself, and aima's own credentials.
DROP_REQUEST = frozenset({
    b"host", b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"content-length", b"expect", b"authorization", b"x-api-key",
    b"accept-encoding",
})
# Answer headers not forwarded: hop-by-hop ones and those the daemon's server writes itself.
DROP_RESPONSE = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer", b"upgrade",
    b"date", b"server",
})


class UpstreamError(Exception):
    """The engine could not be reached, or broke off its answer."""

    def __init__(self, message: str, *, connect: bool = False):
        super().__init__(message)
        self.message = message
        self.connect = connect  # nothing was sent: another instance may be tried


class Connection(asyncio.Protocol):
    def __init__(self, pool: Pool, key: tuple[str, int]):
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self.idle = False  # in the pool, waiting for the next request
        self.owner: object = None  # the exchange using it now
        self.waiter: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.headers_done = False
        self.done = False
        self.error: UpstreamError | None = None
        self.got_bytes = False
        self.paused = False
        self.keep_alive = False
        self.until_close = False

    # ------------------------------------------------------------------ asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(f"the engine's answer is not valid HTTP: {e}")
            self.abort()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.done:
            if self.headers_done and self.until_close:
                self.done = True
            elif self.error is None:
                what = "before answering" if not self.headers_done else "in the middle of its answer"
                self._fail(f"the engine closed the connection {what}" + (f" ({exc})" if exc else ""))
        self._wake()

    # ------------------------------------------------------------------ httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers_done = True
        if self.status >= 200 and self.status not in (204, 304):
            chunked = has_len = False
            for n, v in self.headers:
                if n == b"content-length":
                    has_len = True
                elif n == b"transfer-encoding" and b"chunked" in v.lower():
                    chunked = True
            self.until_close = not chunked and not has_len
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.done = True
        self.keep_alive = self.parser.should_keep_alive()
        self._wake()

    # ------------------------------------------------------------------ plumbing
    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _fail(self, message: str) -> None:
        if self.error is None:
            self.error = UpstreamError(message)
        self._wake()

    async def _wait(self) -> None:
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def abort(self) -> None:
        """Drop the connection now (the engine sees it close and can stop working on the request)."""
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abort()
        self._fail("the request was cancelled")

    # ------------------------------------------------------------------ one exchange
    def send(self, head: bytes, body: bytes) -> None:
        assert self.transport is not None
        if len(body) < 65536:
            self.transport.write(head + body)
        else:
            self.transport.writelines((head, body))

    async def response(self, timeout: float) -> tuple[int, list[tuple[bytes, bytes]]]:
        """Wait for the answer's status and headers (at most ``timeout`` seconds)."""
        if self.headers_done:
            return self.status, self.headers
        loop = asyncio.get_running_loop()
        timer = loop.call_later(timeout, self._timeout, timeout)
        try:
            while not self.headers_done:
                if self.error is not None:
                    raise self.error
                await self._wait()
        finally:
            timer.cancel()
        return self.status, self.headers

    def _timeout(self, timeout: float) -> None:
        if not self.headers_done:
            self.error = UpstreamError(f"the engine did not begin its answer within {timeout:g}s")
            self.error.timeout = True  # type: ignore[attr-defined]
            self.abort()

    async def read(self) -> bytes | None:
        """The next piece of the answer's body (what has arrived, joined); None at its end."""
        while True:
            if self.chunks:
                chunks = self.chunks
                data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                self.buffered = 0
                if self.paused and self.transport is not None:
                    self.paused = False
                    self.transport.resume_reading()
                return data
            if self.done:
                return None
            if self.error is not None:
                raise self.error
            await self._wait()

    def ready_now(self) -> bool:
        """The whole answer has arrived."""
        return self.done

    def release(self) -> None:
        """Back to the pool when the exchange ended cleanly and the engine keeps the connection open."""
        self.owner = None
        if self.done and self.keep_alive and not self.closed and self.error is None and not self.chunks:
            self._reset()
            self.reused = True
            self.idle = True
            self.pool._put(self)
        else:
            self.abort()


class Pool:
    def __init__(self, connect_timeout: float = 5.0):
        self.connect_timeout = connect_timeout
        self._idle: dict[tuple[str, int], list[Connection]] = {}

    async def acquire(self, host: str, port: int) -> Connection:
        key = (host, port)
        idle = self._idle.get(key)
        while idle:
            c = idle.pop()
            if not c.closed:
                c.idle = False
                return c
        loop = asyncio.get_running_loop()
        try:
            _t, conn = await asyncio.wait_for(loop.create_connection(lambda: Connection(self, key), host, port),
                                              self.connect_timeout)
        except TimeoutError:
            raise UpstreamError(f"connecting to {host}:{port} timed out after {self.connect_timeout:g}s",
                                connect=True) from None
        except OSError as e:
            raise UpstreamError(f"cannot connect to {host}:{port}: {e.strerror or e}", connect=True) from None
        return conn

    def _put(self, c: Connection) -> None:
        idle = self._idle.setdefault(c.key, [])
        if len(idle) < MAX_IDLE:
            idle.append(c)
        else:
            c.abort()

    def forget(self, host: str, port: int) -> None:
        """Drop the idle connections to an address (its instance went away)."""
        for c in self._idle.pop((host, port), []):
            c.abort()

    def close(self) -> None:
        for idle in self._idle.values():
            for c in idle:
                c.abort()
        self._idle.clear()


def request_head(method: str, target: bytes, host: str, port: int, headers: list[tuple[bytes, bytes]],
                 length: int | None) -> bytes:
    """The request line and headers for the engine (the client's end-to-end headers, less aima's own)."""
    out = [method.encode(), b" ", target, b" HTTP/1.1\r\nHost: ", f"{host}:{port}".encode(), b"\r\n"]
    for name, value in headers:
        if name not in DROP_REQUEST:
            out += [name, b": ", value, b"\r\n"]
    if length is not None:
        out += [b"Content-Length: ", str(length).encode(), b"\r\n"]
    out.append(b"\r\n")
    return b"".join(out)


def answer_headers(headers: list[tuple[bytes, bytes]], *, keep_length: bool) -> list[tuple[bytes, bytes]]:
    """An engine's answer headers (names already lower case) as the client gets them."""
    if keep_length:
        return [(n, v) for n, v in headers if n not in DROP_RESPONSE]
    return [(n, v) for n, v in headers if n not in DROP_RESPONSE and n != b"content-length"]


def header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """A header's value from lower-case names (ASGI's, and the engine's as parsed here)."""
    for n, v in headers:
        if n == name:
            return v
    return None
