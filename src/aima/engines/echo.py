"""``echo``: a tiny OpenAI-shaped HTTP engine that repeats the last user message, prefixed ``echo:``.

It is aima's demo and test engine: it starts in milliseconds and needs no model, so the control
plane (ports, readiness, identity, crashes, restarts) can be exercised with a real process. It never
pretends to be a model: every answer says it is an echo. Flags let tests shape its behaviour.

Routes: chat and text completions (streamed as SSE with ``"stream": true``, ``--stream-delay`` seconds
between chunks, and a stream whose client goes away is stopped and counted), embeddings (a vector of
the text's sha256), speech (silence as WAV), transcriptions and translations (multipart; the text names
the file and its size), voices, and ``GET /echo/stats`` (requests in flight, served, cancelled, and the
last request's path, model, body size and sha256).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Stats:
    """What the engine is doing: requests in flight, served, cancelled (the client went away), and the
    last request (path, model, body size and sha256, headers) -- ``GET /echo/stats``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inflight = 0
        self.requests = 0
        self.cancelled = 0
        self.last: dict[str, object] = {}

    def begin(self, path: str, raw: bytes, headers: dict[str, str]) -> None:
        with self.lock:
            self.inflight += 1
            self.requests += 1
            self.last = {"path": path, "length": len(raw), "sha256": hashlib.sha256(raw).hexdigest(),
                         "headers": {k.lower(): v for k, v in headers.items()}, "model": None}

    def note_model(self, name: str) -> None:
        with self.lock:
            self.last["model"] = name

    def cancel(self) -> None:
        with self.lock:
            self.cancelled += 1

    def end(self) -> None:
        with self.lock:
            self.inflight -= 1

    def snapshot(self) -> dict[str, object]:
        with self.lock:
            return {"inflight": self.inflight, "requests": self.requests, "cancelled": self.cancelled,
                    "last": dict(self.last)}


def words(text: str) -> int:
    return len(text.split())


def embed(text: str, dims: int = 8) -> list[float]:
    """A deterministic unit-free vector of the text's sha256 (the same text, the same vector)."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 255.0 - 0.5, 6) for b in digest[:dims]]


def silence_wav(seconds: float, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * int(rate * seconds))
    return buf.getvalue()


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str, bytes]] | None:
    """{field: (filename, bytes)} of a multipart/form-data body, or None when it is not one."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.startswith("multipart/form-data") or not m:
        return None
    delim = b"--" + m.group(1).encode()
    out: dict[str, tuple[str, bytes]] = {}
    for part in body.split(delim)[1:]:
        if part.startswith(b"--"):
            break
        head, _, data = part.partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]*)"', head)
        fname = re.search(rb'filename="([^"]*)"', head)
        if name:
            out[name.group(1).decode()] = (fname.group(1).decode() if fname else "", data[:-2])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m aima.engines.echo")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--model", default="echo")
    p.add_argument("--ready-after", type=float, default=0.0, help="answer /health 503 for this long")
    p.add_argument("--listen-after", type=float, default=0.0, help="open the port only after this long")
    p.add_argument("--exit-after", type=float, default=None, help="exit after this many seconds")
    p.add_argument("--exit-code", type=int, default=1)
    p.add_argument("--say", action="append", default=[], help="print this line at start (repeatable)")
    p.add_argument("--ignore-sigterm", action="store_true", help="ignore SIGTERM (tests SIGKILL escalation)")
    p.add_argument("--child", action="store_true", help="start a child process in the same group")
    p.add_argument("--no-models", action="store_true", help="answer 404 on /v1/models")
    p.add_argument("--stream-delay", type=float, default=0.0, help="seconds between streamed chunks")
    p.add_argument("--busy-after", type=float, default=None,
                   help="from this many seconds on, /health and /v1/models take 30 s to answer (a busy engine)")
    p.add_argument("--unhealthy-after", type=float, default=None, help="from this many seconds on, /health is 503")
    args = p.parse_args(argv)

    for line in args.say:
        print(line, flush=True)
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.child:
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    if args.exit_after is not None:
        def _exit() -> None:
            time.sleep(args.exit_after)
            print(f"echo: exiting with code {args.exit_code} as asked", flush=True)
            os._exit(args.exit_code)
        threading.Thread(target=_exit, daemon=True).start()
    if args.listen_after:
        time.sleep(args.listen_after)

    started = time.monotonic()
    model = args.model
    stats = Stats()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

        def log_message(self, fmt: str, *a: object) -> None:
            pass

        def _send(self, code: int, body: dict[str, object]) -> None:
            self._send_bytes(code, json.dumps(body).encode(), "application/json")

        def _send_bytes(self, code: int, data: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            if (args.busy_after is not None and self.path in ("/health", "/v1/models")
                    and time.monotonic() - started >= args.busy_after):
                time.sleep(30)
            if self.path == "/health":
                up = time.monotonic() - started
                if up < args.ready_after or (args.unhealthy_after is not None and up >= args.unhealthy_after):
                    self._send(503, {"status": "loading"})
                else:
                    self._send(200, {"status": "ok"})
            elif self.path == "/v1/models" and not args.no_models:
                self._send(200, {"object": "list", "data": [{"id": model, "object": "model",
                                                             "owned_by": "aima-echo"}]})
            elif self.path.split("?")[0] == "/v1/audio/voices":
                self._send(200, {"object": "list", "model": model, "data": [{"id": "echo", "name": "echo"}]})
            elif self.path == "/echo/stats":
                self._send(200, stats.snapshot())
            else:
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            stats.begin(self.path, raw, dict(self.headers))
            try:
                self._post(raw)
            except (BrokenPipeError, ConnectionResetError):
                stats.cancel()
                self.close_connection = True
            finally:
                stats.end()

        def _post(self, raw: bytes) -> None:
            ctype = self.headers.get("Content-Type") or ""
            if self.path in ("/v1/audio/transcriptions", "/v1/audio/translations"):
                fields = parse_multipart(ctype, raw)
                if fields is None or "file" not in fields:
                    self._send(400, {"error": {"message": "expected multipart/form-data with a file",
                                               "type": "invalid_request_error"}})
                    return
                name, data = fields["file"]
                stats.note_model(fields.get("model", ("", b""))[1].decode(errors="replace"))
                text = f"echo: {name or 'audio'} ({len(data)} bytes)"
                if fields.get("response_format", ("", b""))[1] == b"text":
                    self._send_bytes(200, text.encode(), "text/plain; charset=utf-8")
                else:
                    self._send(200, {"text": text})
                return
            try:
                body = json.loads(raw or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("not an object")
            except ValueError:
                self._send(400, {"error": {"message": "body is not a JSON object", "type": "invalid_request_error"}})
                return
            stats.note_model(str(body.get("model", "")))
            name = body.get("model", model)
            if self.path == "/v1/chat/completions":
                msgs = body.get("messages") or [{}]
                last = msgs[-1] if isinstance(msgs[-1], dict) else {}
                prompt = " ".join(str(m.get("content", "")) for m in msgs if isinstance(m, dict))
                self._complete(body, name, "echo: " + str(last.get("content", "")), prompt, chat=True)
            elif self.path == "/v1/completions":
                prompt = body.get("prompt", "")
                prompt = " ".join(map(str, prompt)) if isinstance(prompt, list) else str(prompt)
                self._complete(body, name, "echo: " + prompt, prompt, chat=False)
            elif self.path == "/v1/embeddings":
                inputs = body.get("input", "")
                inputs = inputs if isinstance(inputs, list) else [inputs]
                data = [{"object": "embedding", "index": i, "embedding": embed(str(t))} for i, t in enumerate(inputs)]
                n = sum(words(str(t)) for t in inputs)
                self._send(200, {"object": "list", "model": name, "data": data,
                                 "usage": {"prompt_tokens": n, "total_tokens": n}})
            elif self.path == "/v1/audio/speech":
                text = str(body.get("input", ""))
                self._send_bytes(200, silence_wav(0.05 * max(1, words(text))), "audio/wav",
                                 {"X-Echo-Text": ("echo: " + text)[:200].encode("ascii", "replace").decode()})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

        def _complete(self, body: dict[str, object], name: object, text: str, prompt: str, *, chat: bool) -> None:
            usage = {"prompt_tokens": words(prompt), "completion_tokens": words(text),
                     "total_tokens": words(prompt) + words(text)}
            kind = "chat.completion" if chat else "text_completion"
            if not body.get("stream"):
                choice: dict[str, object] = {"index": 0, "finish_reason": "stop"}
                if chat:
                    choice["message"] = {"role": "assistant", "content": text}
                else:
                    choice["text"] = text
                self._send(200, {"id": "echo-1", "object": kind, "created": int(time.time()), "model": name,
                                 "choices": [choice], "usage": usage})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            pieces = text.split(" ")
            pieces = [p + " " for p in pieces[:-1]] + pieces[-1:]
            opts = body.get("stream_options")
            with_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
            for i, piece in enumerate(pieces):
                if i and args.stream_delay and self._client_gone(args.stream_delay):
                    raise BrokenPipeError("client went away")
                delta: dict[str, object] = {"content": piece}
                if chat and i == 0:
                    delta["role"] = "assistant"
                choice = {"index": 0, "finish_reason": None, **({"delta": delta} if chat else {"text": piece})}
                self._event({"id": "echo-1", "object": kind + ".chunk", "created": int(time.time()), "model": name,
                             "choices": [choice]})
            last = {"index": 0, "finish_reason": "stop", **({"delta": {}} if chat else {"text": ""})}
            self._event({"id": "echo-1", "object": kind + ".chunk", "created": int(time.time()), "model": name,
                         "choices": [last]})
            if with_usage:
                self._event({"id": "echo-1", "object": kind + ".chunk", "created": int(time.time()), "model": name,
                             "choices": [], "usage": usage})
            self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")

        def _event(self, obj: dict[str, object]) -> None:
            self._chunk(b"data: " + json.dumps(obj).encode() + b"\n\n")

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _client_gone(self, wait: float) -> bool:
            """Sleep ``wait`` seconds, or less when the client closes the connection (then True)."""
            readable, _, _ = select.select([self.connection], [], [], wait)
            if not readable:
                return False
            try:
                return self.connection.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                return True

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"echo: serving model {model!r} on http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
