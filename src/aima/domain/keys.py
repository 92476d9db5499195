"""API keys: high-entropy random strings, stored only as their sha256."""

from __future__ import annotations

import hashlib
import secrets

PREFIX = "aima-"


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
