"""The default stack: what `aima up` brings up on this machine.

Until the catalog's default models land, the stack is one demo service running the in-package
``echo`` engine, so `make run` shows a real managed process, ready and reachable.
"""

from __future__ import annotations

import sys

from pydantic import Field

from aima.errors import NotFound
from aima.ops import service as service_ops
from aima.ops.context import Context
from aima.ops.models import Input, Output
from aima.ops.registry import Cli, operation

STACK = [
    {"name": "demo", "model": "demo",
     "command": f"{sys.executable} -m aima.engines.echo --port {{port}} --model {{model}}"},
]


class UpInput(Input):
    timeout_s: float = Field(600, gt=0, le=86400, description="seconds to wait for every service")


class StackEntry(Output):
    name: str
    model: str
    engine: str
    outcome: str
    state: str
    endpoint: str | None
    message: str


class StackOutput(Output):
    services: list[StackEntry]


@operation("stack.up", mutating=True, method="POST", path="/stack/up",
           cli=Cli("stack", "up", table="services",
                   columns=("name", "model", "engine", "outcome", "endpoint", "message")))
async def up(ctx: Context, inp: UpInput) -> StackOutput:
    """Create what is missing of the default stack and start it, waiting until every service is ready."""
    out = []
    for spec in STACK:
        try:
            svc = service_ops.find_service(ctx, spec["name"])
            sid = svc.id
        except NotFound:
            sid = (await service_ops.create(ctx, service_ops.CreateInput(**spec))).id
        res = await ctx.reconciler.ensure_running(sid, wait=True, timeout_s=inp.timeout_s,
                                                  reset_restarts=False)
        view = service_ops.load_view(ctx, sid)
        out.append(StackEntry(name=view.name, model=view.model, engine=view.engine, outcome=res.outcome,
                              state=view.state, endpoint=view.endpoint, message=res.message))
    return StackOutput(services=out)


class DownInput(Input):
    pass


@operation("stack.down", mutating=True, method="POST", path="/stack/down",
           cli=Cli("stack", "down", table="services",
                   columns=("name", "model", "engine", "outcome", "state", "message")))
async def down(ctx: Context, inp: DownInput) -> StackOutput:
    """Stop every service of the default stack (their records stay)."""
    out = []
    for spec in STACK:
        try:
            svc = service_ops.find_service(ctx, spec["name"])
        except NotFound:
            continue
        await ctx.reconciler.ensure_stopped(svc.id)
        view = service_ops.load_view(ctx, svc.id)
        out.append(StackEntry(name=view.name, model=view.model, engine=view.engine, outcome="stopped",
                              state=view.state, endpoint=None, message=""))
    return StackOutput(services=out)
