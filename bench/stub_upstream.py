"""A minimal OpenAI-shaped upstream that answers at once: the "fast engine" of ``bench/gateway.py``.

It measures nothing itself. With no model behind it, a proxy in front of it shows its own cost: the
stub's answer takes microseconds, so any latency a gateway adds stands out. Raw asyncio (uvloop when
installed) plus httptools' request parser, keep-alive HTTP/1.1, one process, one thread.

Routes: ``GET /health``, ``GET /v1/models`` (lists ``--model``), ``POST /v1/chat/completions`` and
``POST /v1/completions`` (a fixed answer; with ``"stream": true`` a short SSE stream of ``--chunks``
events plus a usage event and ``[DONE]``, written at once, chunked), ``POST /v1/embeddings`` (a fixed
8-number vector per input). Anything else: 404 in OpenAI's error shape.

    python bench/stub_upstream.py --port 8001 --model stub
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time

import httptools

JSON = b"application/json"


def _response(status: bytes, ctype: bytes, body: bytes) -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype + b"\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


class Answers:
    """Every answer prebuilt once: serving one is a dict lookup and one write."""

    def __init__(self, model: str, chunks: int):
        created = int(time.time())
        usage = {"prompt_tokens": 9, "completion_tokens": chunks, "total_tokens": 9 + chunks}
        words = [f"word{i} " for i in range(chunks)]
        chat = {"id": "stub-1", "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "".join(words).strip()}}],
                "usage": usage}
        text = {"id": "stub-1", "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": 0, "finish_reason": "stop", "text": "".join(words).strip()}], "usage": usage}
        self.health = _response(b"200 OK", JSON, b'{"status":"ok"}')
        self.models = _response(b"200 OK", JSON, json.dumps(
            {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "stub"}]}).encode())
        self.chat = _response(b"200 OK", JSON, json.dumps(chat).encode())
        self.text = _response(b"200 OK", JSON, json.dumps(text).encode())
        self.chat_sse = self._sse(model, created, words, usage, chat=True)
        self.text_sse = self._sse(model, created, words, usage, chat=False)
        self.not_found = _response(b"404 Not Found", JSON,
                                   b'{"error":{"message":"no such route","type":"invalid_request_error",'
                                   b'"code":"not_found"}}')
        self.bad = _response(b"400 Bad Request", JSON,
                             b'{"error":{"message":"body is not JSON","type":"invalid_request_error",'
                             b'"code":"invalid_body"}}')
        self.model = model

    @staticmethod
    def _sse(model: str, created: int, words: list[str], usage: dict[str, int], *, chat: bool) -> bytes:
        kind = "chat.completion.chunk" if chat else "text_completion"
        events = []
        for i, w in enumerate(words):
            delta: dict[str, object] = {"content": w}
            if i == 0:
                delta["role"] = "assistant"
            choice = {"index": 0, "finish_reason": None, **({"delta": delta} if chat else {"text": w})}
            events.append({"id": "stub-1", "object": kind, "created": created, "model": model, "choices": [choice]})
        last = {"index": 0, "finish_reason": "stop", **({"delta": {}} if chat else {"text": ""})}
        events.append({"id": "stub-1", "object": kind, "created": created, "model": model, "choices": [last]})
        events.append({"id": "stub-1", "object": kind, "created": created, "model": model, "choices": [],
                       "usage": usage})
        body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
        # one chunk of the chunked encoding per event, as an engine writes them
        out = [b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n"]
        for piece in body.split(b"\n\n")[:-1]:
            piece += b"\n\n"
            out.append(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        out.append(b"0\r\n\r\n")
        return b"".join(out)

    def embeddings(self, body: dict[str, object]) -> bytes:
        inputs = body.get("input", "")
        n = len(inputs) if isinstance(inputs, list) else 1
        data = [{"object": "embedding", "index": i, "embedding": [0.125] * 8} for i in range(n)]
        return _response(b"200 OK", JSON, json.dumps({"object": "list", "model": self.model, "data": data,
                                                      "usage": {"prompt_tokens": n, "total_tokens": n}}).encode())


class Http(asyncio.Protocol):
    def __init__(self, answers: Answers):
        self.a = answers
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(self.a.bad)
                self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        assert self.transport is not None
        path = self.url.partition(b"?")[0]
        method = self.parser.get_method()
        raw = b"".join(self.body)
        self.url, self.body = b"", []
        a = self.a
        if method == b"GET":
            out = a.health if path == b"/health" else a.models if path == b"/v1/models" else a.not_found
        elif path in (b"/v1/chat/completions", b"/v1/completions", b"/v1/embeddings"):
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            if not isinstance(body, dict):
                out = a.bad
            elif path == b"/v1/embeddings":
                out = a.embeddings(body)
            elif path == b"/v1/chat/completions":
                out = a.chat_sse if body.get("stream") else a.chat
            else:
                out = a.text_sse if body.get("stream") else a.text
        else:
            out = a.not_found
        self.transport.write(out)
        if not self.parser.should_keep_alive():
            self.transport.close()


async def serve(host: str, port: int, model: str, chunks: int) -> None:
    answers = Answers(model, chunks)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Http(answers), host, port, backlog=1024, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"stub upstream: serving model {model!r} on http://{host}:{port}", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/stub_upstream.py", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--model", default="stub")
    p.add_argument("--chunks", type=int, default=8, help="content events in a streamed answer")
    args = p.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port, args.model, args.chunks))
    else:
        uvloop.run(serve(args.host, args.port, args.model, args.chunks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
