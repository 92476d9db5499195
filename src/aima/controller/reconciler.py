"""The reconciler: the one owner of instance state.

It starts and stops services (``launch``: placing, porting and starting through runtimes; ``watch``:
readiness and health), re-checks every live instance each tick (``AIMA_RECONCILE_INTERVAL_S``, 1 s by
default), applies the restart policy, re-adopts instances after a daemon restart (``adopt``), loads
services on demand and unloads idle ones, and publishes every change as an event. What to do is
decided by the pure functions of ``policy``; this module gathers their facts and applies their
decisions. Operations never write instance state themselves: they call the methods below.

Per service, one asyncio lock serialises every transition, so concurrent start/stop calls can never
launch a duplicate instance or leave an orphan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aima.config import Settings
from aima.controller import logs as logfiles
from aima.controller import policy
from aima.controller.demand import Demand
from aima.controller.events import EventBus
from aima.controller.launch import Launcher
from aima.controller.records import Records, engine_spec, health_timeout
from aima.controller.watch import Watcher, cancel_all
from aima.domain.states import Desired, State
from aima.errors import AimaError, NotFound
from aima.runtimes import Runtimes
from aima.runtimes.base import Observation
from aima.store.db import Database
from aima.store.tables import InstanceRow, ServiceRow

log = logging.getLogger("aima.reconciler")


@dataclass
class StartOutcome:
    outcome: str  # ready | failed | timeout | starting | stopped
    message: str = ""


class Reconciler:
    def __init__(self, db: Database, settings: Settings, bus: EventBus, runtimes: Runtimes | None = None):
        self.settings = settings
        self.bus = bus
        self.runtimes = runtimes or Runtimes(settings)
        self.records = Records(db, bus)
        self.launcher = Launcher(self.records, self.runtimes, settings)
        self.watcher = Watcher(self.records, self.launcher, settings, lock=self.lock, on_gone=self._exit_if_dead)
        self.rules = policy.RestartRules(settings.restart_max, settings.restart_backoff_s,
                                         settings.restart_backoff_max_s)
        self._locks: dict[str, asyncio.Lock] = {}
        self._restarts: dict[str, asyncio.Task[None]] = {}
        self.records.restart_pending = self._restarts  # type: ignore[assignment]  # read as "in"
        self._task: asyncio.Task[None] | None = None
        self._ticks = 0
        self.booted_at: float | None = None
        self.demand = Demand(self)

    def lock(self, service_id: str) -> asyncio.Lock:
        lk = self._locks.get(service_id)
        if lk is None:
            lk = self._locks[service_id] = asyncio.Lock()
        return lk

    async def start(self) -> None:
        from aima.controller.adopt import adopt

        await adopt(self)
        self._task = asyncio.create_task(self._loop(), name="aima-reconciler")

    async def close(self) -> None:
        """Stop watching; instances keep running (lifecycle rule 12)."""
        await cancel_all([t for t in (self._task, *self._restarts.values(), *self.demand.tasks(),
                                      *self.watcher.tasks()) if t])
        await self.watcher.close()
        await asyncio.to_thread(self.runtimes.close)

    # ------------------------------------------------------------------ public API for ops
    async def refresh(self, service_ids: Iterable[str] | None = None) -> None:
        """Reconcile records with reality now (every read calls this: lifecycle rule 1)."""
        rows = [i for i in self.records.instances.active(service_ids) if not self.lock(i.service_id).locked()]
        seen = await self.launcher.observe_all(rows)  # (a locked one observes for itself)
        for inst in rows:
            if not seen[inst.id].alive and inst.state != State.stopping.value:
                await self._recheck_gone(inst)

    async def ensure_running(self, service_id: str, *, wait: bool, timeout_s: float | None,
                             reset_restarts: bool = True) -> StartOutcome:
        async with self.lock(service_id):
            svc = self.records.service(service_id)
            self._cancel_restart(service_id)
            fields: dict[str, Any] = {"desired": Desired.running.value}
            if reset_restarts:
                fields["restarts"] = 0
            if svc.started_at is None:
                fields["started_at"] = time.time()
            self.records.update_service(service_id, **fields)
            # Correct a record that says running while nothing runs (rule 4) before starting.
            active = self.records.active(service_id)
            seen = await self.launcher.observe_all(active)
            for inst in active:
                if not seen[inst.id].alive:
                    self._record_exit(inst, seen[inst.id])
            try:
                await self._launch_missing(self.records.service(service_id))
            except AimaError as e:
                self.records.sync_service(service_id, message=e.message)
                raise
            svc = self.records.sync_service(service_id) or svc
        if not wait:
            return StartOutcome(svc.state, svc.message or "")
        budget = timeout_s if timeout_s is not None else health_timeout(svc, engine_spec(svc))
        return await self.wait_settled(service_id, budget)

    async def wait_settled(self, service_id: str, timeout_s: float) -> StartOutcome:
        deadline = time.monotonic() + timeout_s
        while True:
            ev = self.records.changed(service_id)
            try:
                svc = self.records.service(service_id)
            except NotFound:
                return StartOutcome("stopped", "the service was deleted while starting")
            insts = self.records.active(service_id)
            if svc.state == State.running.value and insts and all(i.ready for i in insts):
                return StartOutcome("ready", "")
            if svc.state == State.failed.value:
                return StartOutcome("failed", svc.message or "failed")
            if svc.state in (State.stopped.value, State.stopping.value, State.created.value):
                return StartOutcome("stopped", svc.message or "the service was stopped while starting")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                detail = "; ".join(i.message for i in insts if i.message) or "not ready yet"
                return StartOutcome("timeout", f"not ready within {timeout_s:g}s and still starting ({detail}); it "
                                               f"keeps starting, check again with `aima service status`")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ev.wait(), min(remaining, 1.0))

    async def load(self, service_id: str, *, reason: str = "a request", timeout_s: float | None = None) -> StartOutcome:
        """Start a service because a request needs it, and wait until it is ready (see ``Demand.load``)."""
        return await self.demand.load(service_id, reason=reason, timeout_s=timeout_s)

    async def ensure_stopped(self, service_id: str, message: str = "stopped by request") -> None:
        async with self.lock(service_id):
            self.records.service(service_id)
            self.records.update_service(service_id, desired=Desired.stopped.value)
            self._cancel_restart(service_id)
            await self._stop_instances(service_id)
            self.records.sync_service(service_id, message=message)

    async def forget(self, service_id: str) -> None:
        """Delete = stop + forget (rule 10): rows go, routes go, nothing can bring it back."""
        async with self.lock(service_id):
            svc = self.records.service(service_id)
            self.records.update_service(service_id, desired=Desired.stopped.value)
            self._cancel_restart(service_id)
            await self._stop_instances(service_id)
            self.records.services.delete(service_id)
            self.bus.publish("service.deleted", f"service {svc.name} deleted", service_id=service_id,
                             name=svc.name, model=svc.model)
        self._locks.pop(service_id, None)
        self.records.notify(service_id)

    def recheck(self, instance_id: str) -> None:
        """The gateway could not reach this instance: look at it now (see ``Watcher.recheck``)."""
        self.watcher.recheck(instance_id)

    # ------------------------------------------------------------------ launch / stop (under the lock)
    async def _launch_missing(self, svc: ServiceRow) -> None:
        """Launch every replica that has no active instance (never a duplicate)."""
        live = {i.replica for i in self.records.active(svc.id)}
        for replica in range(svc.replicas):
            if replica not in live:
                row, offset = await self.launcher.launch(svc, replica, on_event=self._publisher(svc.id))
                self.watcher.watch(row, log_offset=offset)

    def _publisher(self, service_id: str) -> Any:
        """``on_event`` for a runtime working in a thread: events are published on the loop."""
        loop = asyncio.get_running_loop()

        def emit(kind: str, message: str, data: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(lambda: self.bus.publish(kind, message, service_id=service_id, **data))
        return emit

    async def _stop_instances(self, service_id: str) -> None:
        for inst in self.records.active(service_id):
            await self.stop_instance(inst)

    async def stop_instance(self, inst: InstanceRow) -> None:
        self.watcher.cancel(inst.id)
        row = self.records.set_instance(inst, State.stopping, f"stopping instance {inst.id}", ready=False)
        if row is None:
            return
        self.records.sync_service(inst.service_id)  # the service reads `stopping` while it stops (rule 1)
        code = await self.launcher.stop(inst)
        self.records.set_instance(row, State.stopped, "stopped", exit_code=code, ready=False)

    # ------------------------------------------------------------------ exits and restarts
    async def _recheck_gone(self, inst: InstanceRow) -> None:
        """Seen gone without the lock: under the lock, re-read it and apply the exit if it still is."""
        async with self.lock(inst.service_id):
            fresh = self.records.instances.get(inst.id)
            if fresh is not None and fresh.state in (State.starting.value, State.running.value):
                await self._exit_if_dead(fresh)

    async def _exit_if_dead(self, fresh: InstanceRow) -> None:
        """Under the service's lock, with the instance's record just re-read: observe it once more and apply
        the exit only if it really is gone (what was seen before the lock may be an older record)."""
        obs = await self.launcher.observe(fresh)
        if not obs.alive:
            self.on_exit(fresh, obs)

    def _exit_reason(self, inst: InstanceRow, obs: Observation) -> tuple[str, bool]:
        """What to tell the user about an exit, and whether it matched a fatal log pattern."""
        lines = logfiles.tail(Path(inst.log_path), 30) if inst.log_path else []
        try:
            patterns = [re.compile(p) for p in engine_spec(self.records.service(inst.service_id)).fatal_patterns]
        except NotFound:
            patterns = []
        fatal = logfiles.find_fatal(lines, patterns)
        if fatal:
            return f"{obs.detail}: {fatal}", True
        last = [ln for ln in lines if ln.strip() and not ln.startswith("--- aima:")]
        return f"{obs.detail}" + (f"; last log line: {last[-1].strip()[:300]}" if last else ""), False

    def _record_exit(self, inst: InstanceRow, obs: Observation) -> tuple[str, bool]:
        reason, fatal = self._exit_reason(inst, obs)
        self.watcher.cancel(inst.id)
        state = State.stopped if obs.exit_code == 0 else State.failed
        self.records.set_instance(inst, state, reason, exit_code=obs.exit_code, ready=False)
        return reason, fatal

    def on_exit(self, inst: InstanceRow, obs: Observation) -> None:
        """An instance died without being asked to: record it and apply the restart policy (rule 8)."""
        reason, fatal = self._record_exit(inst, obs)
        svc = self.records.service(inst.service_id)
        d = policy.after_exit(policy.ExitFacts(
            service_name=svc.name, instance_id=inst.id, desired=svc.desired, policy=svc.restart_policy,
            restarts=svc.restarts, exit_code=obs.exit_code, reason=reason, fatal=fatal, ready_at=inst.ready_at,
            now=time.time()), self.rules)
        if d.restarts != svc.restarts:
            self.records.update_service(svc.id, restarts=d.restarts)
        if d.action == "give_up":
            self.bus.publish("service.gave_up", f"{svc.name}: gave up after {d.restarts} restarts",
                             service_id=svc.id)
        elif d.action == "restart":
            self._restarts[svc.id] = asyncio.create_task(self._restart_later(svc.id, d.delay_s))
            self.bus.publish("service.restart_scheduled", d.message, service_id=svc.id, attempt=d.attempt,
                             delay_s=d.delay_s)
        self.records.sync_service(svc.id, message=d.message)

    async def _restart_later(self, service_id: str, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            return
        async with self.lock(service_id):
            if self._restarts.get(service_id) is asyncio.current_task():
                self._restarts.pop(service_id, None)
            try:
                svc = self.records.service(service_id)
            except NotFound:
                return
            if svc.desired == Desired.running.value:
                try:
                    await self._launch_missing(svc)
                except AimaError as e:
                    if e.details.get("retry"):  # where it must run is away for now: again, later
                        restarts, delay = policy.retry_launch(svc.restarts, self.rules)
                        self.records.update_service(service_id, restarts=restarts)
                        self._restarts[service_id] = asyncio.create_task(self._restart_later(service_id, delay))
                        self.records.sync_service(service_id, message=f"{e.message}; trying again in {delay:g}s")
                        return
                    self.records.sync_service(service_id, message=f"restart failed: {e.message}")
                    return
            self.records.sync_service(service_id)

    def restart_soon(self, service_id: str) -> None:
        """Launch a wanted service's missing replicas now (a restart that was pending when the daemon died)."""
        if service_id not in self._restarts:
            self._restarts[service_id] = asyncio.create_task(self._restart_later(service_id, 0.0))

    def _cancel_restart(self, service_id: str) -> None:
        t = self._restarts.pop(service_id, None)
        if t is not None and t is not asyncio.current_task():
            t.cancel()

    # ------------------------------------------------------------------ the loop
    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep reconciling whatever happens
                log.exception("reconcile tick failed")
            await asyncio.sleep(self.settings.reconcile_interval_s)

    async def tick(self) -> None:
        self._ticks += 1
        rows = self.records.instances.active()
        now = time.monotonic()
        seen = await self.launcher.observe_all([i for i in rows if not self.lock(i.service_id).locked()])
        checks = []
        for inst in rows:
            obs = seen.get(inst.id)
            if obs is None or self.lock(inst.service_id).locked():
                continue
            if not obs.alive:
                if inst.state != State.stopping.value:
                    await self._recheck_gone(inst)
            elif inst.state == State.starting.value and not self.watcher.watching(inst.id):
                self.watcher.watch(inst)
            elif inst.state == State.running.value and self.watcher.health_due(inst, now) \
                    and not self.demand.busy(inst.service_id):  # answering proves it alive; a probe would disturb it
                checks.append(self.watcher.check_health(inst))  # (llama.cpp ends a stream on another request)
        if checks:
            await asyncio.gather(*checks, return_exceptions=True)
        self.demand.unload_idle()
        if self._ticks % 10 == 0:
            paths = [Path(i.log_path) for i in rows if i.log_path]
            await asyncio.to_thread(logfiles.rotate_all, paths, self.settings.log_max_bytes, self.settings.log_keep)
