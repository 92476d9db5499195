"""API keys: the one check every route goes through, the scopes, and the one refusal (401/403).

Keys are stored as the sha256 of a high-entropy random string (``key.create`` shows the key once).
The ring holds the active keys' digests in memory, reloaded on every ``key.*`` event. A presented key
(``Authorization: Bearer KEY`` or ``X-API-Key: KEY``) is hashed, compared in constant time against
every active digest, and, once verified, cached by its digest, so a request pays one sha256 and one
dict lookup (microseconds). Revoking clears the cache. No key in use: every request is let in (as
``OPEN``, an admin without a key).

Scopes: ``inference`` keys may only use ``/v1`` (and, with ``models``, only those models: checked by the
gateway), ``read`` keys may use every GET and the operations that change nothing (MCP offers them the
read-only tools), ``admin`` keys everything. Every route but ``/health`` (and the web page's own files,
which hold no data) needs a key while any is active: ``/v1`` is checked by the daemon's HTTP protocol
(``server.http``) before the gateway sees it; every other route by ``Door``, the outermost ASGI layer.

This machine's CLI: a daemon writes a key of its own to ``AIMA_HOME/local.key`` (mode 0600, a new one at
each start, removed at exit) and the CLI sends it to that daemon when given no other key, so creating the
first key — an inference key for a client, say — never locks out whoever runs aima here. It is an admin
key that turns nothing on: while no key exists every request is let in as before. Whoever can read it can
read the database beside it, so it gives nobody more than they had.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from aima.store.db import Database
from aima.store.tables import ApiKeyRow

log = logging.getLogger("aima.auth")
CACHE_MAX = 4096
OPEN_PATHS = ("/health", "/ui", "/ui/")  # /ui/: the web page's shell, which holds no data either
OPEN_PREFIXES = ("/ui/assets/",)  # the web page's own files: no data, and the page must load to ask for a key
SCOPES = ("inference", "read", "admin")
SCOPE_HEADER = b"x-aima-key-scope"  # set by Door for the surfaces behind it (MCP offers a read key read-only tools)

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class KeyInfo:
    id: str  # the key's id; "env" for AIMA_API_KEY; "-" when no key is in use
    scope: str = "admin"
    models: frozenset[str] | None = None  # inference keys: only these models (None: every model)
    rpm: int | None = None  # requests per minute at most
    tpm: int | None = None  # tokens per minute at most
    name: str | None = None


OPEN = KeyInfo("-")
LOCAL = KeyInfo("local", name="this machine's CLI")


def write_local_key(path: Any) -> str:
    """A new key for this machine's CLI, written to ``path`` readable by this user only; returns it."""
    token = "aima-local-" + secrets.token_urlsafe(32)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.replace(tmp, path)
    return token


def drop_local_key(path: Any, token: str | None) -> None:
    """Remove ``path`` at exit when it still holds ``token`` (not a newer daemon's)."""
    try:
        if token and path.read_text().strip() == token:
            path.unlink()
    except OSError:
        pass


def _error(status: int, message: str, type_: str, code: str, extra: Headers = ()) -> tuple[int, Headers, bytes]:
    body = json.dumps({"error": {"message": message, "type": type_, "code": code, "param": None}}).encode()
    return status, [(b"content-type", b"application/json"), *extra], body


# The refusal of a request without a valid key: (status, headers, body), in OpenAI's error shape.
REFUSAL = _error(401, "a valid API key is needed: send `Authorization: Bearer KEY` or `X-API-Key: KEY` (the CLI: "
                      "--api-key or AIMA_API_KEY)", "authentication_error", "invalid_api_key",
                 [(b"www-authenticate", b"Bearer")])


def forbidden(info: KeyInfo, method: str, path: str) -> tuple[int, Headers, bytes]:
    """The refusal of a valid key whose scope does not cover the request (403)."""
    what = {"inference": "only /v1 (the OpenAI routes)", "read": "only reads (GET, and operations that change "
                                                                 "nothing)"}.get(info.scope, "this")
    return _error(403, f"API key {info.id} (scope {info.scope}) allows {what}, not {method} {path}; use a key "
                       f"with the admin scope (`aima key create --scope admin`)", "permission_error",
                  "insufficient_scope")


def presented_key(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The key a request carries (ASGI headers: lower-case names), or None."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value.strip():
            return value.strip()
    return None


class KeyRing:
    def __init__(self, db: Database | None = None, bootstrap: str | None = None, local: str | None = None):
        self.db = db
        self.bootstrap = bootstrap or None
        self.local = local or None  # this machine's CLI's key: admin, and never what turns keys on
        self._keys: list[tuple[bytes, KeyInfo]] = []
        self._verified: dict[bytes, KeyInfo] = {}
        self.enabled = False

    def load(self) -> None:
        keys: list[tuple[bytes, KeyInfo]] = []
        if self.db is not None:
            with self.db.session() as s:
                for r in s.scalars(select(ApiKeyRow).where(ApiKeyRow.revoked_at.is_(None))):
                    keys.append((bytes.fromhex(r.hash), KeyInfo(r.id, r.scope or "admin",
                                                                frozenset(r.models) if r.models else None,
                                                                r.rpm, r.tpm, r.name)))
        if self.bootstrap:
            keys.append((hashlib.sha256(self.bootstrap.encode()).digest(), KeyInfo("env")))
        self.enabled = bool(keys)
        if self.local:
            keys.append((hashlib.sha256(self.local.encode()).digest(), LOCAL))
        self._keys = keys
        self._verified = {}

    def on_event(self, ev: dict[str, Any]) -> None:
        if ev["kind"].startswith("key."):
            self.load()

    def active(self) -> int:
        return len(self._keys) - (1 if self.local else 0)

    def lookup(self, key: bytes | None) -> KeyInfo | None:
        """The active key ``key`` is (``OPEN`` while no key is in use), or None."""
        if not self.enabled:
            return OPEN
        if not key:
            return None
        digest = hashlib.sha256(key).digest()
        found = self._verified.get(digest)
        if found is not None:
            return found
        for d, info in self._keys:  # no early exit: the time does not depend on which key matched
            if hmac.compare_digest(d, digest):
                found = info
        if found is not None:
            if len(self._verified) >= CACHE_MAX:
                self._verified.clear()
            self._verified[digest] = found
        return found

    def check(self, key: bytes | None) -> bool:
        """Whether ``key`` is an active key (always true while no key exists)."""
        return self.lookup(key) is not None


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class Routes:
    """Which operations a route runs, to tell a read key's allowed POSTs (an operation that changes nothing)."""

    def __init__(self) -> None:
        self._table: list[tuple[str, re.Pattern[str], bool]] | None = None

    def changes(self, method: str, path: str) -> bool:
        """Does ``method path`` run an operation that changes something (unknown routes: yes)?"""
        if self._table is None:
            from aima.ops.registry import load_all

            table = []
            for op in load_all().values():
                rx = re.sub(r"\\{[a-z_]+\\}", "[^/]+", re.escape("/api/v1" + op.path))
                table.append((op.method, re.compile(rx + "$"), op.mutating))
                table.append(("POST", re.compile(re.escape(f"/api/v1/ops/{op.name}") + "$"), op.mutating))
            self._table = table
        for m, rx, mutating in self._table:
            if m == method and rx.match(path):
                return mutating
        return True


ROUTES = Routes()


def permits(info: KeyInfo, method: str, path: str) -> bool:
    """Does this key's scope cover ``method path``? (The models of an inference key are the gateway's.)"""
    if info.scope == "admin":
        return True
    reads = method in ("GET", "HEAD")
    if path.startswith("/v1/"):
        return info.scope == "inference" or (reads and path == "/v1/models")
    if info.scope != "read":
        return False
    return reads or path == "/mcp" or not ROUTES.changes(method, path)


Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_NOT_HERE = json.dumps({"error": {
    "message": "the OpenAI routes are served by aima's own HTTP protocol: run the daemon with `aima start`, not "
               "under another ASGI server", "type": "server_error", "code": "not_implemented", "param": None}}).encode()


class Door:
    """The daemon's outermost ASGI layer: the API key check (and scope) for every route but ``/health`` and the
    web page's files, then the app. The key's scope goes on to the surfaces as ``x-aima-key-scope``.

    ``/v1/...`` never gets here under the daemon: its HTTP protocol answers it before ASGI. Under another
    ASGI server the OpenAI routes answer 501, saying so.
    """

    def __init__(self, app: Any, keys: KeyRing):
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            answer = None
            headers = [(n, v) for n, v in scope["headers"] if n != SCOPE_HEADER]
            if not is_open(path):
                info = self.keys.lookup(presented_key(headers))
                if info is None:
                    answer = REFUSAL
                elif not permits(info, scope["method"], path):
                    answer = forbidden(info, scope["method"], path)
                else:
                    headers.append((SCOPE_HEADER, info.scope.encode()))
            if answer is None and path.startswith("/v1/"):
                answer = (501, [(b"content-type", b"application/json")], _NOT_HERE)
            if answer is not None:
                status, hdrs, body = answer
                await send({"type": "http.response.start", "status": status,
                            "headers": [*hdrs, (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)
