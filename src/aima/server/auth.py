"""API keys at the door: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``.

Keys are stored as the sha256 of a high-entropy random string (``key.create`` shows the key once).
The ring holds the active digests in memory, reloaded on every ``key.*`` event. A presented key is
hashed, compared in constant time against every active digest, and, once verified, cached by its
digest, so a request pays one sha256 and one dict lookup (microseconds). Revoking clears the cache.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from typing import Any

from sqlalchemy import select

from aima.store.db import Database
from aima.store.tables import ApiKeyRow

log = logging.getLogger("aima.auth")
PREFIX = "aima-"
CACHE_MAX = 4096


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


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
