"""``aima ask``: the operator agent's stream (``POST /api/v1/agent/ask``) printed as it happens.

Each step shows the tool, its arguments and a one-line result; a destructive call asks y/N on a terminal
(and is denied without one, unless ``--yes``); then the answer. ``-o json`` prints ``{answer, steps,
session}`` only. The standard library only, so the command starts fast.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from aima.errors import AimaError, DaemonUnreachable, TimedOut, Unavailable

MARK = {"ok": "✓", "error": "✗", "denied": "⊘"}


def _connection(url: str, timeout: float | None) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url.rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DaemonUnreachable(f"--url {url!r} is not an http(s) URL like http://127.0.0.1:9090")
    klass = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    return klass(parts.hostname, parts.port, timeout=timeout), parts.path.rstrip("/")


def _events(resp: http.client.HTTPResponse) -> Iterator[tuple[str, dict[str, Any]]]:
    kind, data = "message", []
    while True:
        raw = resp.readline()
        if not raw:
            return
        line = raw.decode(errors="replace").rstrip("\r\n")
        if not line:
            if data:
                try:
                    yield kind, json.loads("\n".join(data))
                except ValueError:
                    pass
            kind, data = "message", []
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def _args(args: Any) -> str:
    text = json.dumps(args, ensure_ascii=False)
    return text if len(text) <= 200 else text[:199] + "…"


def ask(url: str, api_key: str | None, body: dict[str, Any], output: str) -> int:
    """Run one ask; returns the exit code (0 when the model answered)."""
    terminal = sys.stdin.isatty() and sys.stderr.isatty()
    body = {**body, "interactive": terminal and not body.get("yes"), "via": "terminal" if terminal else "rest"}
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    conn, base = _connection(url, timeout=300)
    try:
        conn.request("POST", base + "/api/v1/agent/ask", body=json.dumps(body), headers=headers)
        resp = conn.getresponse()
    except (ConnectionRefusedError, socket.gaierror, FileNotFoundError):
        raise DaemonUnreachable(f"no aima daemon at {url}; start one with `aima start --detach` "
                                f"(or set --url / AIMA_URL)") from None
    except OSError as e:
        raise DaemonUnreachable(f"the daemon at {url} did not answer: {type(e).__name__} {e}") from None
    if resp.status >= 400:
        raw = resp.read()
        try:
            payload: Any = json.loads(raw)
        except ValueError:
            payload = raw.decode(errors="replace")
        raise AimaError.from_dict(resp.status, payload)
    human = output != "json"
    out = sys.stdout if human else sys.stderr  # with -o json, stdout holds only the result
    try:
        for kind, ev in _events(resp):
            if kind == "session":
                note = " (resumed)" if ev.get("resumed") else " (expired: a new conversation)" if ev.get("expired") \
                    else ""
                print(f"session {ev['session']}, profile {ev['profile']}{note}", file=sys.stderr, flush=True)
            elif kind == "progress":
                print(f"  … {ev['message']}", file=sys.stderr, flush=True)
            elif kind == "step":
                print(f"→ {ev['tool']} {_args(ev.get('arguments') or {})}", file=out, flush=True)
            elif kind == "needs_approval":
                _approve(url, api_key, ev)
            elif kind == "result":
                extra = f" [{ev['approval']}]" if ev.get("approval") and ev["outcome"] != "denied" else ""
                print(f"  {MARK.get(ev['outcome'], '?')} {ev['summary']}{extra}", file=out, flush=True)
            elif kind == "answer":
                if human:
                    print(ev["answer"], flush=True)
                else:
                    json.dump({"answer": ev["answer"], "steps": ev["steps"], "session": ev["session"],
                               "rounds": ev.get("rounds"), "model": ev.get("model"), "usage": ev.get("usage")},
                              sys.stdout)
                    sys.stdout.write("\n")
                return 0
            elif kind == "error":
                if ev.get("code") == "round_cap":
                    raise TimedOut(ev["message"])
                if ev.get("code") == "model_unreachable":
                    raise Unavailable(ev["message"])
                raise AimaError(ev["message"])
    except (OSError, http.client.HTTPException) as e:
        raise DaemonUnreachable(f"the daemon at {url} stopped answering: {type(e).__name__} {e}") from None
    finally:
        conn.close()
    raise Unavailable("the agent's stream ended without an answer; see the daemon's log")


def _approve(url: str, api_key: str | None, ev: dict[str, Any]) -> None:
    """y/N on the terminal for one destructive call, sent to the daemon."""
    question = f"Allow {ev['tool']} {_args(ev.get('arguments') or {})}? ({ev.get('reason')}) [y/N] "
    try:
        print(question, end="", file=sys.stderr, flush=True)
        answer = sys.stdin.readline().strip().lower()
    except (KeyboardInterrupt, EOFError):
        answer = ""
    approve = answer in ("y", "yes")
    conn, base = _connection(url, timeout=30)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
    try:
        conn.request("POST", f"{base}/api/v1/agent/approvals/{ev['id']}", body=json.dumps({"approve": approve}),
                     headers=headers)
        conn.getresponse().read()
    finally:
        conn.close()
