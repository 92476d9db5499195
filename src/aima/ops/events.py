"""Event operations: what happened, as recorded by the controller."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from aima.ops.context import Context
from aima.ops.models import Input, Output
from aima.ops.registry import Cli, operation
from aima.ops.service import find_service


class EventListInput(Input):
    since: int = Field(0, ge=0, le=2**63 - 1, description="only events after this id")
    limit: int = Field(100, ge=1, le=10000, description="at most this many (the newest)")
    service: str | None = Field(None, description="only events of this service (name or id)")


class EventListOutput(Output):
    events: list[dict[str, Any]]


@operation("event.list", mutating=False, method="GET", path="/events/history",
           cli=Cli("event", "list", table="events", columns=("id", "kind", "service_id", "message")))
async def list_(ctx: Context, inp: EventListInput) -> EventListOutput:
    """Recorded events (state changes, restarts, adoptions), oldest first."""
    sid = find_service(ctx, inp.service).id if inp.service else None
    return EventListOutput(events=ctx.bus.history(inp.since, inp.limit, sid))
