"""Approvals: a destructive call waits here for a person's yes or no.

The daemon keeps one table of pending approvals; ``POST /api/v1/agent/approvals/{id}`` (the CLI's y/N on a
terminal, a web page, a script) decides one. A call nobody decides within the timeout is denied.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Pending:
    id: str
    tool: str
    arguments: dict[str, Any]
    reason: str
    session: str | None
    future: asyncio.Future[bool] = field(repr=False, default=None)  # type: ignore[assignment]


_PENDING: dict[str, Pending] = {}


def open_request(tool: str, arguments: dict[str, Any], reason: str, session: str | None) -> Pending:
    p = Pending(id="apr-" + secrets.token_hex(6), tool=tool, arguments=arguments, reason=reason, session=session,
                future=asyncio.get_running_loop().create_future())
    _PENDING[p.id] = p
    return p


def decide(approval_id: str, approve: bool) -> Pending | None:
    """Answer a pending approval; None when there is none of that id (decided, timed out, or unknown)."""
    p = _PENDING.pop(approval_id, None)
    if p is None or p.future.done():
        return None
    p.future.set_result(bool(approve))
    return p


async def wait(p: Pending, timeout_s: float) -> bool | None:
    """True/False as decided; None when nobody decided within ``timeout_s`` (or the asker went away)."""
    try:
        return await asyncio.wait_for(asyncio.shield(p.future), timeout_s)
    except TimeoutError:
        return None
    finally:
        _PENDING.pop(p.id, None)


def pending() -> list[Pending]:
    return list(_PENDING.values())
