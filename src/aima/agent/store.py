"""The agent's records in SQLite: sessions (a conversation kept with a TTL) and the audit (every tool call)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select

from aima.store.db import Database
from aima.store.tables import AgentAuditRow, AgentSessionRow

SESSION_CHARS = 64


def new_session_id() -> str:
    return "ses-" + secrets.token_hex(4)


@dataclass
class Loaded:
    id: str
    messages: list[dict[str, Any]]
    resumed: bool  # an earlier conversation was found and goes on
    expired: bool  # there was one, but its TTL had passed: it starts afresh


def load_session(db: Database, sid: str | None) -> Loaded:
    """The session to continue (``sid`` names one: new when unknown; None: a new one)."""
    now = time.time()
    with db.session() as s:
        s.execute(delete(AgentSessionRow).where(AgentSessionRow.expires_at < now - 86400))  # long gone: tidy up
        if sid is None:
            return Loaded(new_session_id(), [], False, False)
        row = s.get(AgentSessionRow, sid)
        if row is None:
            return Loaded(sid, [], False, False)
        if row.expires_at < now:
            return Loaded(sid, [], False, True)
        return Loaded(sid, list(row.messages or []), True, False)


def save_session(db: Database, sid: str, profile: str, model: str | None, messages: list[dict[str, Any]],
                 ttl_s: float) -> None:
    now = time.time()
    with db.session() as s:
        row = s.get(AgentSessionRow, sid)
        if row is None:
            s.add(AgentSessionRow(id=sid, profile=profile, model=model, messages=messages, created_at=now,
                                  updated_at=now, expires_at=now + ttl_s))
        else:
            row.profile, row.model, row.messages = profile, model, messages
            row.updated_at, row.expires_at = now, now + ttl_s


def audit(db: Database, *, session: str | None, profile: str, tool: str, arguments: dict[str, Any], outcome: str,
          approval: str | None = None, message: str | None = None, seconds: float | None = None) -> None:
    with db.session() as s:
        s.add(AgentAuditRow(ts=time.time(), session=session, profile=profile, tool=tool, arguments=arguments,
                            outcome=outcome, approval=approval, message=(message or "")[:2000] or None,
                            seconds=None if seconds is None else round(seconds, 3)))


def audit_entries(db: Database, limit: int, session: str | None = None) -> list[dict[str, Any]]:
    """The newest ``limit`` entries, oldest first."""
    with db.session() as s:
        q = select(AgentAuditRow)
        if session:
            q = q.where(AgentAuditRow.session == session)
        rows = list(s.scalars(q.order_by(AgentAuditRow.id.desc()).limit(limit)))
    return [{"id": r.id, "ts": r.ts, "session": r.session, "profile": r.profile, "tool": r.tool,
             "arguments": r.arguments or {}, "outcome": r.outcome, "approval": r.approval, "message": r.message,
             "seconds": r.seconds} for r in reversed(rows)]
