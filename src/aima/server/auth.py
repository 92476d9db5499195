"""API keys: the one check every route goes through, and the one refusal (401).

Keys are stored as the sha256 of a high-entropy random string (``key.create`` shows the key once).
The ring holds the active digests in memory, reloaded on every ``key.*`` event. A presented key
(``Authorization: Bearer KEY`` or ``X-API-Key: KEY``) is hashed, compared in constant time against
every active digest, and, once verified, cached by its digest, so a request pays one sha256 and one
dict lookup (microseconds). Revoking clears the cache.

Every route but ``/health`` needs a key while any is active: ``/v1`` is checked by the daemon's HTTP
protocol (``server.http``) before the gateway sees it; every other route by ``Door``, the outermost ASGI
layer. Both refuse with ``REFUSAL``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select

from aima.store.db import Database
from aima.store.tables import ApiKeyRow

log = logging.getLogger("aima.auth")
CACHE_MAX = 4096
OPEN_PATHS = ("/health",)

Headers = list[tuple[bytes, bytes]]
# The refusal of a request without a valid key: (status, headers, body), in OpenAI's error shape.
REFUSAL: tuple[int, Headers, bytes] = (
    401, [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
    json.dumps({"error": {"message": "a valid API key is needed: send `Authorization: Bearer KEY` or `X-API-Key: "
                                     "KEY` (the CLI: --api-key or AIMA_API_KEY)",
                          "type": "authentication_error", "code": "invalid_api_key", "param": None}}).encode())


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
    def __init__(self, db: Database | None = None, bootstrap: str | None = None):
        self.db = db
        self.bootstrap = bootstrap or None
        self._digests: list[bytes] = []
        self._verified: dict[bytes, bool] = {}
        self.enabled = False

    def load(self) -> None:
        digests: list[bytes] = []
        if self.db is not None:
            with self.db.session() as s:
                digests = [bytes.fromhex(h) for h in s.scalars(select(ApiKeyRow.hash)
                                                               .where(ApiKeyRow.revoked_at.is_(None)))]
        if self.bootstrap:
            digests.append(hashlib.sha256(self.bootstrap.encode()).digest())
        self._digests = digests
        self._verified = {}
        self.enabled = bool(digests)

    def on_event(self, ev: dict[str, Any]) -> None:
        if ev["kind"].startswith("key."):
            self.load()

    def active(self) -> int:
        return len(self._digests)

    def check(self, key: bytes | None) -> bool:
        """Whether ``key`` is an active key (always true while no key exists)."""
        if not self.enabled:
            return True
        if not key:
            return False
        digest = hashlib.sha256(key).digest()
        if digest in self._verified:
            return True
        ok = False
        for d in self._digests:  # no early exit: the time does not depend on which key matched
            ok |= hmac.compare_digest(d, digest)
        if ok:
            if len(self._verified) >= CACHE_MAX:
                self._verified.clear()
            self._verified[digest] = True
        return ok


Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_NOT_HERE = json.dumps({"error": {
    "message": "the OpenAI routes are served by aima's own HTTP protocol: run the daemon with `aima start`, not "
               "under another ASGI server", "type": "server_error", "code": "not_implemented", "param": None}}).encode()


class Door:
    """The daemon's outermost ASGI layer: the API key check for every route but ``/health``, then the app.

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
            if path not in OPEN_PATHS and not self.keys.check(presented_key(scope["headers"])):
                answer = REFUSAL
            elif path.startswith("/v1/"):
                answer = (501, [(b"content-type", b"application/json")], _NOT_HERE)
            if answer is not None:
                status, headers, body = answer
                await send({"type": "http.response.start", "status": status,
                            "headers": [*headers, (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
