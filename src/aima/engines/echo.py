"""``echo``: a tiny OpenAI-shaped HTTP engine that repeats the last user message, prefixed ``echo:``.

It is aima's demo and test engine: it starts in milliseconds and needs no model, so the control
plane (ports, readiness, identity, crashes, restarts) can be exercised with a real process. It never
pretends to be a model: every answer says it is an echo. Flags let tests shape its behaviour.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *a: object) -> None:
            pass

        def _send(self, code: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/health":
                if time.monotonic() - started < args.ready_after:
                    self._send(503, {"status": "loading"})
                else:
                    self._send(200, {"status": "ok"})
            elif self.path == "/v1/models" and not args.no_models:
                self._send(200, {"object": "list", "data": [{"id": model, "object": "model",
                                                             "owned_by": "aima-echo"}]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._send(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
                return
            if self.path == "/v1/chat/completions":
                msgs = body.get("messages") or [{}]
                text = "echo: " + str(msgs[-1].get("content", ""))
                self._send(200, {"id": "echo-1", "object": "chat.completion", "created": int(time.time()),
                                 "model": body.get("model", model),
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": text}}],
                                 "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"echo: serving model {model!r} on http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
