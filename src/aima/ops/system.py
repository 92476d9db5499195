"""System operations: the daemon's own status."""

from __future__ import annotations

import os
import time

from pydantic import Field
from sqlalchemy import func, select

from aima import __version__
from aima.ops.context import Context
from aima.ops.models import Input, Output
from aima.ops.registry import Cli, operation
from aima.store.tables import InstanceRow, ServiceRow


class Empty(Input):
    pass


class StatusOutput(Output):
    version: str
    pid: int
    uptime_s: float
    home: str
    database: str
    services: int
    by_state: dict[str, int] = Field(description="number of services in each state")
    instances_running: int
    instances_ready: int


@operation("system.status", mutating=False, method="GET", path="/status", cli=Cli(None, "status"))
async def status(ctx: Context, inp: Empty) -> StatusOutput:
    """An overview of the daemon: version, uptime, and how many services are in each state."""
    await ctx.reconciler.refresh()
    with ctx.db.session() as s:
        by_state = dict(s.execute(select(ServiceRow.state, func.count()).group_by(ServiceRow.state)).all())
        running = s.scalar(select(func.count()).where(InstanceRow.state == "running")) or 0
        ready = s.scalar(select(func.count()).where(InstanceRow.ready.is_(True))) or 0
    return StatusOutput(
        version=__version__, pid=os.getpid(), uptime_s=round(time.time() - ctx.started_at, 3),
        home=str(ctx.settings.home), database=str(ctx.settings.db_path), services=sum(by_state.values()),
        by_state=by_state, instances_running=running, instances_ready=ready,
    )
