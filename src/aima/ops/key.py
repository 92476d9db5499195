"""API key operations: create (the key is shown once), list, revoke.

Keys are high-entropy random strings stored only as their sha256. While any key is active (or the
daemon was given ``AIMA_API_KEY``), every route except ``/health`` needs ``Authorization: Bearer KEY``
or ``X-API-Key: KEY``; the gateway's key ring reloads on the ``key.*`` events published here.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator
from sqlalchemy import or_, select

from aima.domain.keys import hash_key, new_key
from aima.errors import Conflict, NotFound
from aima.ops.context import Context
from aima.ops.models import PLAIN, Input, Output
from aima.ops.registry import Cli, operation
from aima.store.tables import ApiKeyRow

KEY_COLUMNS = ("id", "name", "scope", "models", "prefix", "active", "created_at")
SINCE = r"^\s*(\d{1,9}(\.\d{1,3})?\s*[smhd]|\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2})?)?)\s*$"
USAGE_COLUMNS = ("key", "name", "model", "requests", "errors", "prompt_tokens", "completion_tokens", "audio_seconds")
Scope = Literal["inference", "read", "admin"]


class KeyView(Output):
    id: str
    name: str | None
    scope: str = Field(description="inference (only /v1), read (GETs and what changes nothing) or admin (all)")
    models: list[str] | None = Field(None, description="an inference key's models (none: every model)")
    rpm: int | None = Field(None, description="requests per minute at most")
    tpm: int | None = Field(None, description="tokens per minute at most")
    prefix: str = Field(description="the key's first characters, to recognise it")
    active: bool
    created_at: float
    revoked_at: float | None


class CreatedKey(KeyView):
    key: str = Field(description="the key itself; shown only now, store it safely")
    message: str


def _view(r: ApiKeyRow) -> KeyView:
    return KeyView(id=r.id, name=r.name, scope=r.scope or "admin", models=r.models, rpm=r.rpm, tpm=r.tpm,
                   prefix=r.prefix, active=r.revoked_at is None, created_at=r.created_at, revoked_at=r.revoked_at)


class CreateKeyInput(Input):
    # models (not null) only with scope inference, said in JSON Schema too
    model_config = ConfigDict(json_schema_extra={
        "if": {"required": ["models"], "properties": {"models": {"type": "array"}}},
        "then": {"required": ["scope"], "properties": {"scope": {"const": "inference"}}}})

    name: str | None = Field(None, min_length=1, max_length=128, pattern=PLAIN,
                             description="a name to recognise the key by")
    scope: Scope = Field("admin", description="inference: only /v1 (the OpenAI routes); read: GETs and operations "
                                              "that change nothing; admin: everything")
    models: list[str] | None = Field(None, min_length=1, max_length=64,
                                     description="inference keys: only these models (a model, alias or service name)")
    rpm: int | None = Field(None, ge=1, le=1_000_000, description="at most this many /v1 requests per minute (429 "
                                                                 "beyond)")
    tpm: int | None = Field(None, ge=1, le=1_000_000_000, description="at most this many tokens per minute (429 "
                                                                     "beyond)")

    @model_validator(mode="after")
    def _models_for_inference(self) -> CreateKeyInput:
        if self.models is not None and self.scope != "inference":
            raise ValueError("models limits an inference key; add --scope inference")
        return self

@operation("key.create", mutating=True, method="POST", path="/keys", cli=Cli("key", "create"))
async def create(ctx: Context, inp: CreateKeyInput) -> CreatedKey:
    """Create an API key (scope inference, read or admin). It is shown once; from now on every request needs a key
    (except /health)."""
    import secrets

    key = new_key()
    now = time.time()
    kid = "key-" + secrets.token_hex(4)
    with ctx.db.session() as s:
        if inp.name is not None and s.scalars(select(ApiKeyRow.id).where(ApiKeyRow.name == inp.name)).first():
            raise Conflict(f"an API key named {inp.name!r} already exists; choose another --name", field="name")
        row = ApiKeyRow(id=kid, name=inp.name, prefix=key[:12], hash=hash_key(key), created_at=now, scope=inp.scope,
                        models=inp.models, rpm=inp.rpm, tpm=inp.tpm)
        s.add(row)
    ctx.bus.publish("key.created", f"API key {kid}{f' ({inp.name})' if inp.name else ''} created (scope "
                                   f"{inp.scope})", key_id=kid, name=inp.name, scope=inp.scope)
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
    key: str = Field(min_length=1, max_length=200, description="the key's id or name (or the key itself)")


@operation("key.revoke", mutating=True, method="DELETE", path="/keys/{key}", cli=Cli("key", "revoke", args=("key",)))
async def revoke(ctx: Context, inp: KeyRef) -> KeyView:
    """Revoke an API key: requests with it are refused at once. Idempotent."""
    with ctx.db.session() as s:
        row = s.scalars(select(ApiKeyRow).where(or_(ApiKeyRow.id == inp.key, ApiKeyRow.name == inp.key,
                                                    ApiKeyRow.hash == hash_key(inp.key)))).first()
        if row is None:
            raise NotFound(f"API key {inp.key!r} does not exist; `aima key list` shows the keys", field="key")
        changed = row.revoked_at is None
        if changed:
            row.revoked_at = time.time()
    if changed:
        ctx.bus.publish("key.revoked", f"API key {row.id} revoked", key_id=row.id, name=row.name)
    return _view(row)


# ---------------------------------------------------------------------------- usage
class UsageInput(Input):
    since: str = Field("24h", max_length=40, pattern=SINCE,
                       description="from when: a span back from now (30m, 24h, 7d) or a date (2026-12-01, "
                                   "2026-12-01T08:00)")
    key: str | None = Field(None, min_length=1, max_length=200, description="only this key (id or name; - for "
                                                                           "requests without a key)")

    @field_validator("since")
    @classmethod
    def _since(cls, v: str) -> str:
        parse_since(v)
        return v


class UsageRow(Output):
    key: str
    name: str | None
    model: str
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    audio_seconds: float


class UsageOutput(Output):
    since: float = Field(description="unix time the counts start at (a whole minute)")
    rows: list[UsageRow]
    requests: int
    prompt_tokens: int
    completion_tokens: int


def parse_since(text: str, now: float | None = None) -> float:
    """``30m``, ``24h``, ``7d`` back from now, or an ISO date/time (local time); ``ValueError`` otherwise."""
    import datetime as dt
    import re

    now = time.time() if now is None else now
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd])", text.strip())
    if m:
        return now - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    d = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?)?", text.strip())
    if d is None:
        raise ValueError(f"{text!r} is neither a span like 24h or 7d nor a date like 2026-12-01")
    y, mo, day, h, mi, sec = (int(x) if x else 0 for x in d.groups())
    try:  # a day past the month's end runs on into the next (2026-02-30 is 2026-03-02), as a span would
        start = dt.datetime(max(y, 1), min(max(mo, 1), 12), 1)
    except ValueError:
        raise ValueError(f"{text!r} is not a date like 2026-12-01") from None
    return (start + dt.timedelta(days=max(day, 1) - 1, hours=h, minutes=mi, seconds=sec)).timestamp()


@operation("key.usage", mutating=False, method="GET", path="/keys/usage",
           cli=Cli("key", "usage", table="rows", columns=USAGE_COLUMNS))
async def usage(ctx: Context, inp: UsageInput) -> UsageOutput:
    """What each API key used through /v1, per model: requests, errors, prompt and completion tokens, audio
    seconds (counted from every answer; the engine's own counts where it gives them)."""
    import asyncio

    with ctx.db.session() as s:
        keys = {r.id: r for r in s.scalars(select(ApiKeyRow))}
    ids = None
    if inp.key is not None:
        found = next((k for k in keys.values() if inp.key in (k.id, k.name)), None)
        if found is None and inp.key != "-":
            raise NotFound(f"API key {inp.key!r} does not exist; `aima key list` shows the keys", field="key")
        ids = [found.id if found is not None else "-"]
    since = parse_since(inp.since)
    counts = await asyncio.to_thread(ctx.usage.summary, since, ids)
    rows = [UsageRow(key=kid, name=keys[kid].name if kid in keys else None, model=model, requests=c.requests,
                     errors=c.errors, prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
                     audio_seconds=round(c.audio_seconds, 3))
            for (kid, model), c in sorted(counts.items())]
    return UsageOutput(since=ctx.usage.minute(since), rows=rows, requests=sum(r.requests for r in rows),
                       prompt_tokens=sum(r.prompt_tokens for r in rows),
                       completion_tokens=sum(r.completion_tokens for r in rows))
