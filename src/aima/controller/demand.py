"""Load on demand and idle unload: a service with an idle TTL is started when a request needs it (room
is made in its devices' memory budgets first) and stopped after that long without a request; a pinned
service is never unloaded. Decisions are ``policy.idle_victims`` and ``policy.make_room``; the
reconciler's start and stop carry them out.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Protocol

from aima.controller import policy
from aima.domain.states import Desired
from aima.errors import InsufficientMemory
from aima.store.tables import ServiceRow

if TYPE_CHECKING:
    from aima.controller.reconciler import Reconciler, StartOutcome


class Usage(Protocol):
    """What is read of the requests a service gets (the route table keeps it)."""

    def last_used(self, service_id: str) -> float | None: ...
    def inflight(self, service_id: str) -> int: ...


class Demand:
    def __init__(self, rec: Reconciler):
        self.rec = rec
        self.usage: Usage | None = None  # set by the daemon: the route table
        self._loading: dict[str, asyncio.Task[StartOutcome]] = {}
        self._unloading: dict[str, asyncio.Task[bool]] = {}
        self._budgets: dict[str, int] | None = None

    def tasks(self) -> list[asyncio.Task]:  # type: ignore[type-arg]
        return [*self._loading.values(), *self._unloading.values()]

    def busy(self, service_id: str) -> bool:
        return bool(self.usage is not None and self.usage.inflight(service_id))

    def _use(self, svc: ServiceRow) -> policy.Use:
        times = [self.usage.last_used(svc.id) if self.usage is not None else None, self.rec.booted_at]
        times += [i.ready_at for i in self.rec.records.active(svc.id)]
        known = [t for t in times if t]
        busy = (self.busy(svc.id) or svc.id in self._loading or svc.id in self._unloading
                or self.rec.lock(svc.id).locked())
        return policy.Use(svc.id, max(known) if known else time.time(), int(svc.memory_bytes or 0),
                          tuple(svc.devices or ()), bool(svc.pinned), busy, svc.idle_ttl_s)

    def unload_idle(self) -> None:
        """Stop every running, unpinned service with an idle TTL that saw no request for that long."""
        uses = [self._use(svc) for svc in self.rec.records.services.idle_candidates()]
        for sid, idle, ttl in policy.idle_victims(uses, time.time()):
            t = asyncio.create_task(self.unload(sid, f"idle for {idle:.0f}s (idle TTL {ttl:g}s)", why="idle",
                                                idle_ttl_s=ttl), name=f"unload-{sid}")
            self._unloading[sid] = t
            t.add_done_callback(lambda _t, sid=sid: self._unloading.pop(sid, None))

    async def unload(self, service_id: str, reason: str, *, why: str = "idle", idle_ttl_s: float | None = None) -> bool:
        """Stop a service that is idle (``why="idle"``) or in the way of another's load (``"memory"``). A
        pinned service is never unloaded; one used again meanwhile stays. True when it was unloaded."""
        t0 = time.monotonic()
        async with self.rec.lock(service_id):
            svc = self.rec.records.services.get(service_id)
            if svc is None or svc.pinned or svc.desired != Desired.running.value or self.busy(service_id):
                return False
            if idle_ttl_s is not None and time.time() - self._use(svc).last_use < idle_ttl_s:
                return False  # a request came in meanwhile
            self.rec.records.update_service(service_id, desired=Desired.stopped.value)
            self.rec._cancel_restart(service_id)
            await self.rec._stop_instances(service_id)
            again = "; the next request loads it again" if svc.idle_ttl_s is not None else ""
            self.rec.records.sync_service(service_id, message=f"unloaded {reason}{again}")
        self.rec.bus.publish("service.unloaded", f"service {svc.name} unloaded {reason}", service_id=service_id,
                         name=svc.name, model=svc.model, why=why, reason=reason,
                         duration_s=round(time.monotonic() - t0, 3))
        return True

    async def load(self, service_id: str, *, reason: str = "a request", timeout_s: float | None = None) -> StartOutcome:
        """Start a service because a request needs it, and wait until it is ready (bounded by its health
        timeout). Room is made first in its devices' memory budgets by unloading the least recently
        used unpinned services. Concurrent callers share one load."""
        task = self._loading.get(service_id)
        if task is None:
            task = asyncio.create_task(self._load(service_id, reason, timeout_s), name=f"load-{service_id}")
            self._loading[service_id] = task
            task.add_done_callback(lambda _t: self._loading.pop(service_id, None))
        return await asyncio.shield(task)

    async def _load(self, service_id: str, reason: str, timeout_s: float | None) -> StartOutcome:
        t0 = time.monotonic()
        svc = self.rec.records.service(service_id)
        await self._make_room(svc)
        self.rec.bus.publish("service.loading", f"loading service {svc.name} for {reason}", service_id=service_id,
                         name=svc.name, model=svc.model, reason=reason)
        res = await self.rec.ensure_running(service_id, wait=True, timeout_s=timeout_s)
        dt = round(time.monotonic() - t0, 3)
        if res.outcome == "ready":
            self.rec.bus.publish("service.loaded", f"service {svc.name} loaded on demand in {dt:g}s (for {reason})",
                             service_id=service_id, name=svc.name, model=svc.model, reason=reason, duration_s=dt)
        else:
            self.rec.bus.publish("service.load_failed", f"service {svc.name} did not load for {reason}: "
                                                    f"{res.outcome} {res.message}".strip(),
                             service_id=service_id, name=svc.name, model=svc.model, outcome=res.outcome,
                             duration_s=dt)
        return res

    async def _make_room(self, svc: ServiceRow) -> None:
        need = int(svc.memory_bytes or 0)
        if not need or not svc.devices:
            return  # its memory need is unknown: nothing to check
        others = [r for r in self.rec.records.services.list(desired=Desired.running.value) if r.id != svc.id]
        uses = {r.id: self._use(r) for r in others}
        for room in policy.make_room(need, svc.devices, await self.memory_budgets(), uses.values()):
            used = room.used
            for victim in room.victims:
                if await self.unload(victim, room.why(svc.name, need), why="memory"):
                    used -= uses[victim].memory_bytes
            if used + need > room.budget:
                room.used = used
                raise InsufficientMemory(room.refusal(svc.name, need), field="memory",
                                         details={"device": room.device, "needed_bytes": need,
                                                  "budget_bytes": room.budget, "used_bytes": used})

    async def memory_budgets(self) -> dict[str, int]:
        """Bytes per device that services loaded on demand may use together: AIMA_MEMORY_BUDGET
        (``cpu=8GiB,gpu0=20GiB``) or else the device's total memory."""
        if self._budgets is None:
            from aima.controller.budgets import memory_budgets

            self._budgets = await asyncio.to_thread(memory_budgets, self.rec.settings)
        return self._budgets
