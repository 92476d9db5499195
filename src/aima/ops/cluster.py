"""Cluster operations: the nodes of the cluster the daemon is attached to (``aima cluster status``).

No runtime is named here: every runtime that runs instances on other machines answers ``cluster()``
(its address and nodes: id, address, alive, resources, the hardware aima detected there, when a lost
node was lost); local runtimes do not have it, or answer None. The instances placed on each node come
from the daemon's own records.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import Field

from aima.ops.context import Context
from aima.ops.models import Input, Output
from aima.ops.registry import Cli, operation


class Empty(Input):
    pass


class NodeInstance(Output):
    id: str
    service: str
    service_id: str
    state: str
    ready: bool
    port: int | None


class NodeView(Output):
    id: str
    address: str | None = Field(description="the node's IP")
    alive: bool
    head: bool = False
    lost_at: float | None = Field(None, description="when the daemon first saw it lost (unix time)")
    resources_total: dict[str, float] = Field(default_factory=dict)
    resources_available: dict[str, float] = Field(default_factory=dict)
    resources: str = Field("", description="available/total per resource, in words")
    hardware: dict[str, Any] | None = Field(None, description="aima's hardware detection, run on that node")
    hardware_summary: str = ""
    instances: list[NodeInstance] = Field(default_factory=list)
    services: str = Field("", description="the services of the instances placed on it")


class ClusterOutput(Output):
    attached: bool = Field(description="a cluster is attached to this daemon")
    runtime: str | None = None
    address: str | None = None
    namespace: str | None = None
    reachable: bool = False
    message: str | None = None
    nodes_alive: int = 0
    nodes: list[NodeView] = Field(default_factory=list)


def _amount(k: str, v: float) -> str:
    if k in ("memory", "object_store_memory"):
        return f"{v / 2**30:.1f}G"
    return f"{v:g}"


def _resources_text(total: dict[str, float], avail: dict[str, float], alive: bool) -> str:
    keys = [k for k in sorted(total, key=lambda k: (k not in ("CPU", "GPU", "memory"), k))
            if not k.startswith("node:") and k != "object_store_memory"]
    if not alive:
        return ", ".join(f"{k} {_amount(k, total[k])}" for k in keys)
    return ", ".join(f"{k} {_amount(k, avail.get(k, 0.0))}/{_amount(k, total[k])}" for k in keys)


def _hardware_text(hw: dict[str, Any] | None) -> str:
    if not hw:
        return "-"
    cpu = hw.get("cpu") or {}
    mem = (hw.get("memory") or {}).get("total_bytes")
    gpus = hw.get("gpus") or []
    parts = [f"{cpu.get('cores_logical') or '?'} cores"]
    if mem:
        parts.append(f"{mem / 2**30:.1f} GiB")
    parts.append(f"{len(gpus)} GPU" + ("s" if len(gpus) != 1 else "") if gpus else "no GPU")
    return ", ".join(parts)


async def describe_cluster(ctx: Context, detail: bool = True) -> ClusterOutput:
    """The first attached cluster among the runtimes, with the instances on each node (``detail``: also each
    node's available resources and hardware)."""
    for rt in ctx.runtimes.all():
        fn = getattr(rt, "cluster", None)
        if fn is None:
            continue
        got = await asyncio.to_thread(fn, detail) if rt.blocking else fn(detail)
        if got is None:
            continue
        names = {s.id: s.name for s in ctx.services.list()}
        by_node: dict[str, list[NodeInstance]] = {}
        for inst in ctx.instances.active():
            if inst.node:
                by_node.setdefault(inst.node, []).append(NodeInstance(
                    id=inst.id, service=names.get(inst.service_id, inst.service_id), service_id=inst.service_id,
                    state=inst.state, ready=inst.ready, port=inst.port))
        nodes = []
        for n in got.get("nodes") or []:
            insts = by_node.get(n["id"], [])
            total, avail = n.get("total") or {}, n.get("available") or {}
            nodes.append(NodeView(
                id=n["id"], address=n.get("address"), alive=bool(n.get("alive")), head=bool(n.get("head")),
                lost_at=n.get("lost_at") if not n.get("alive") else None, resources_total=total,
                resources_available=avail, resources=_resources_text(total, avail, bool(n.get("alive"))),
                hardware=n.get("hardware"), hardware_summary=_hardware_text(n.get("hardware")), instances=insts,
                services=", ".join(sorted({i.service for i in insts})) or "-"))
        return ClusterOutput(attached=True, runtime=rt.name, address=got.get("address"), namespace=got.get("namespace"),
                             reachable=bool(got.get("reachable")), message=got.get("message"),
                             nodes_alive=sum(1 for n in nodes if n.alive), nodes=nodes)
    return ClusterOutput(attached=False, message="no cluster is attached: start the daemon with "
                                                 "`aima start --ray ADDRESS` to run services on a Ray cluster")


@operation("cluster.status", mutating=False, method="GET", path="/cluster",
           cli=Cli("cluster", "status", table="nodes",
                   columns=("address", "alive", "services", "resources", "hardware_summary", "id")))
async def status(ctx: Context, inp: Empty) -> ClusterOutput:
    """The nodes of the attached cluster: each node's id, address, whether it is alive (a lost node stays
    listed with when it was lost), its resources total and available, the hardware aima detects on it,
    and the instances placed on it."""
    return await describe_cluster(ctx)
