"""System operations: the daemon's own status."""

from __future__ import annotations

import os
import time

from pydantic import Field

from aima import __version__
from aima.ops.context import Context
from aima.ops.models import Input, Output
from aima.ops.registry import Cli, operation


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
    cluster_attached: bool = Field(False, description="a cluster (Ray) is attached to this daemon")
    cluster_address: str | None = None
    cluster_nodes_alive: int | None = Field(None, description="nodes of the attached cluster that are alive")
    cluster: str = Field("none attached", description="the attached cluster, in words")


@operation("system.status", mutating=False, method="GET", path="/status", cli=Cli(None, "status"))
async def status(ctx: Context, inp: Empty) -> StatusOutput:
    """An overview of the daemon: version, uptime, and how many services are in each state."""
    await ctx.reconciler.refresh()
    by_state: dict[str, int] = {}
    for svc in ctx.services.list():
        by_state[svc.state] = by_state.get(svc.state, 0) + 1
    active = ctx.instances.active()
    running = sum(1 for i in active if i.state == "running")
    ready = sum(1 for i in active if i.ready)
    from aima.ops.cluster import describe_cluster

    cl = await describe_cluster(ctx, detail=False)
    return StatusOutput(
        cluster_attached=cl.attached, cluster_address=cl.address,
        cluster_nodes_alive=cl.nodes_alive if cl.attached else None,
        cluster=(f"{cl.runtime} at {cl.address}: {cl.nodes_alive} of {len(cl.nodes)} nodes alive" if cl.reachable
                 else f"{cl.runtime} at {cl.address}: {cl.message}") if cl.attached else "none attached",
        version=__version__, pid=os.getpid(), uptime_s=round(time.time() - ctx.started_at, 3),
        home=str(ctx.settings.home), database=str(ctx.settings.db_path), services=sum(by_state.values()),
        by_state=by_state, instances_running=running, instances_ready=ready,
    )
