"""Boot: re-adopting live instances by their recorded identity, and removing orphans (lifecycle rule 11).

Instances are detached and survive the daemon. On boot each active record is observed by its recorded
identity (pid + start time + command line, container labels, a named actor — never a bare pid); what
becomes of it is ``policy.adoption``'s decision. A record whose launch the daemon died in the middle of
(no identity recorded yet) is matched by its instance id among what the runtimes own. Nothing is
started here but restarts that were pending; what carries this home's marks and no record claims is an
orphan, stopped and reported.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from aima.controller import policy
from aima.controller.launch import handle_of
from aima.domain.states import Desired, State
from aima.errors import AimaError
from aima.runtimes.base import Observation, Owned

if TYPE_CHECKING:
    from aima.controller.reconciler import Reconciler

log = logging.getLogger("aima.reconciler")


async def owned(rec: Reconciler) -> list[Owned]:
    """What every runtime that answers owns of this home."""
    found: list[Owned] = []
    for rt in await asyncio.to_thread(rec.runtimes.live):
        try:
            found.extend(await asyncio.to_thread(rt.owned))
        except AimaError as e:
            log.warning("listing the %s runtime's instances failed: %s", rt.name, e.message)
    return found


async def adopt(rec: Reconciler) -> None:
    rec.booted_at = time.time()
    records = rec.records
    rows = records.instances.active()
    found = await owned(rec)
    by_id = {o.instance_id: o for o in found if o.instance_id}
    for i, inst in enumerate(rows):
        if not handle_of(inst).launched and inst.id in by_id:
            # The daemon died between starting it and recording it: its marks say who it is.
            h = by_id[inst.id].handle
            if inst.log_path:
                h.data.setdefault("log_path", inst.log_path)  # a container's log is followed again
            rows[i] = records.update_instance(inst.id, pid=h.pid, start_time=h.start_time,
                                              handle=h.to_dict()) or inst
    seen = await rec.launcher.observe_all(rows)
    plan = policy.adoption([policy.Recorded(r.id, r.state, seen[r.id].alive) for r in rows], list(by_id))
    rows_by_id = {r.id: r for r in rows}
    for iid in plan.stop:
        inst = rows_by_id[iid]
        await rec.stop_instance(inst)
        records.sync_service(inst.service_id)
    for iid in plan.adopt:
        inst = rows_by_id[iid]
        rec.bus.publish("instance.adopted", f"re-adopted {inst.id} ({handle_of(inst).describe()})",
                        service_id=inst.service_id, instance_id=inst.id, state=inst.state, ready=inst.ready,
                        host=inst.host, port=inst.port, replica=inst.replica, node=inst.node)
        if inst.state == State.starting.value:
            rec.watcher.watch(inst)
    for iid in plan.stopped:
        inst = rows_by_id[iid]
        records.set_instance(inst, State.stopped, "stopped while the daemon was down", ready=False)
        records.sync_service(inst.service_id)
    for iid in plan.exited:
        rec.on_exit(rows_by_id[iid], Observation(alive=False, exit_code=None, detail="died while the daemon was down"))
    # A restart that was pending when the daemon died is carried out now (only missing replicas launch).
    for sid in records.services.ids(desired=Desired.running.value, state=State.starting.value):
        svc = records.services.get(sid)
        live = {i.replica for i in records.active(sid)}
        if svc is not None and any(r not in live for r in range(svc.replicas)):
            rec.restart_soon(sid)
    for iid in plan.orphans:
        o = by_id[iid]
        rt = rec.runtimes.get(o.handle.runtime)
        await asyncio.to_thread(rt.stop, o.handle, 2.0)
        rec.bus.publish("instance.orphan_killed", f"stopped orphan {o.handle.runtime} {o.handle.describe()} ({iid})",
                        instance_id=iid, pid=o.handle.pid, runtime=o.handle.runtime,
                        container=o.handle.data.get("container"))
