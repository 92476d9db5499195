"""API key operations: create (the key is shown once), list, revoke.

Keys are high-entropy random strings stored only as their sha256. While any key is active (or the
daemon was given ``AIMA_API_KEY``), every route except ``/health`` needs ``Authorization: Bearer KEY``
or ``X-API-Key: KEY``; the gateway's key ring reloads on the ``key.*`` events published here.
"""

from __future__ import annotations

import time

from pydantic import Field, field_validator
from sqlalchemy import or_, select

from aima.domain.keys import hash_key, new_key
from aima.errors import Conflict, NotFound
from aima.ops.context import Context
from aima.ops.models import Input, Output
from aima.ops.registry import Cli, operation
from aima.store.tables import ApiKeyRow

KEY_COLUMNS = ("id", "name", "prefix", "active", "created_at")


class KeyView(Output):
    id: str
    name: str | None
    prefix: str = Field(description="the key's first characters, to recognise it")
    active: bool
    created_at: float
    revoked_at: float | None


class CreatedKey(KeyView):
    key: str = Field(description="the key itself; shown only now, store it safely")
    message: str


def _view(r: ApiKeyRow) -> KeyView:
    return KeyView(id=r.id, name=r.name, prefix=r.prefix, active=r.revoked_at is None, created_at=r.created_at,
                   revoked_at=r.revoked_at)


class CreateKeyInput(Input):
    name: str | None = Field(None, min_length=1, max_length=128, description="a name to recognise the key by")

    @field_validator("name")
    @classmethod
    def _printable(cls, v: str | None) -> str | None:
        if v is not None and not v.isprintable():
            raise ValueError("must not contain control characters")
        return v


@operation("key.create", mutating=True, method="POST", path="/keys", cli=Cli("key", "create"))
async def create(ctx: Context, inp: CreateKeyInput) -> CreatedKey:
    """Create an API key. It is shown once; from now on every request needs a key (except /health)."""
    import secrets

    key = new_key()
    now = time.time()
    kid = "key-" + secrets.token_hex(4)
    with ctx.db.session() as s:
        if inp.name is not None and s.scalars(select(ApiKeyRow.id).where(ApiKeyRow.name == inp.name)).first():
            raise Conflict(f"an API key named {inp.name!r} already exists; choose another --name", field="name")
        row = ApiKeyRow(id=kid, name=inp.name, prefix=key[:12], hash=hash_key(key), created_at=now)
        s.add(row)
    ctx.bus.publish("key.created", f"API key {kid}{f' ({inp.name})' if inp.name else ''} created", key_id=kid,
                    name=inp.name)
    return CreatedKey(**_view(row).model_dump(), key=key,
                      message="store this key now: aima keeps only its hash. Clients send it as "
                              "`Authorization: Bearer KEY` (or X-API-Key); the CLI reads AIMA_API_KEY or --api-key")


class Empty(Input):
    pass


class KeyList(Output):
    keys: list[KeyView]


@operation("key.list", mutating=False, method="GET", path="/keys",
           cli=Cli("key", "list", table="keys", columns=KEY_COLUMNS))
async def list_(ctx: Context, inp: Empty) -> KeyList:
    """List API keys (never the keys themselves: only their id, name and first characters)."""
    with ctx.db.session() as s:
        rows = list(s.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at)))
    return KeyList(keys=[_view(r) for r in rows])


class KeyRef(Input):
    key: str = Field(min_length=1, max_length=200, description="the key's id or name")


@operation("key.revoke", mutating=True, method="DELETE", path="/keys/{key}", cli=Cli("key", "revoke", args=("key",)))
async def revoke(ctx: Context, inp: KeyRef) -> KeyView:
    """Revoke an API key: requests with it are refused at once. Idempotent."""
    with ctx.db.session() as s:
        row = s.scalars(select(ApiKeyRow).where(or_(ApiKeyRow.id == inp.key, ApiKeyRow.name == inp.key))).first()
        if row is None:
            raise NotFound(f"API key {inp.key!r} does not exist; `aima key list` shows the keys", field="key")
        changed = row.revoked_at is None
        if changed:
            row.revoked_at = time.time()
    if changed:
        ctx.bus.publish("key.revoked", f"API key {row.id} revoked", key_id=row.id, name=row.name)
    return _view(row)
