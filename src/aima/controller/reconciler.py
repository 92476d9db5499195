"""The reconciler: the one owner of instance state.

It launches and stops instances through runtimes, watches them until ready, re-checks every live
instance each tick (``AIMA_RECONCILE_INTERVAL_S``, 1 s by default), applies the restart policy with
exponential backoff, re-adopts instances after a daemon restart, and publishes every change as an
event. Operations never write instance state themselves: they call the methods below.

Per service, one asyncio lock serialises every transition, so concurrent start/stop calls can never
launch a duplicate instance or leave an orphan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shlex
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from aima import catalog
from aima.config import Settings
from aima.controller import logs as logfiles
from aima.controller.events import EventBus
from aima.controller.ports import PortAllocator, port_is_free
from aima.controller.probes import probe
from aima.domain.names import new_instance_id
from aima.domain.states import ACTIVE, Desired, RestartPolicy, State, aggregate, backoff_delay
from aima.errors import AimaError, InsufficientMemory, InvalidInput, NotFound, PortInUse
from aima.runtimes import RUNTIMES, get_runtime
from aima.runtimes.base import Handle, LaunchSpec, Observation, Runtime
from aima.store.db import Database
from aima.store.tables import InstanceRow, ServiceRow

log = logging.getLogger("aima.reconciler")

ACTIVE_NAMES = tuple(s.value for s in ACTIVE)
RESTART_RESET_S = 600.0  # an instance ready this long before crashing resets the restart count


@dataclass
class StartOutcome:
    outcome: str  # ready | failed | timeout | starting | stopped
    message: str = ""


class Reconciler:
    def __init__(self, db: Database, settings: Settings, bus: EventBus):
        self.db = db
        self.settings = settings
        self.bus = bus
        self._runtimes: dict[str, Runtime] = {}
        lo, hi = settings.ports
        self.ports = PortAllocator(lo, hi, self._port_holder)
        self._locks: dict[str, asyncio.Lock] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._restarts: dict[str, asyncio.Task[None]] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._health_due: dict[str, float] = {}
        self._health_fail: dict[str, int] = {}
        self._slow_since: dict[str, float] = {}  # instance -> when its health probes began to time out
        self._task: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None
        self._ticks = 0
        self.booted_at: float | None = None
        # Set by the daemon: the gateway's record of use, ``last_used(service_id)`` (wall time of the last
        # inference request) and ``inflight(service_id)``; read to unload idle services.
        self.usage: Any = None
        self._loading: dict[str, asyncio.Task[StartOutcome]] = {}
        self._unloading: dict[str, asyncio.Task[bool]] = {}
        self._rechecks: dict[str, asyncio.Task[None]] = {}
        self._budgets: dict[str, int] | None = None

    # ------------------------------------------------------------------ plumbing
    def runtime(self, name: str) -> Runtime:
        rt = self._runtimes.get(name)
        if rt is None:
            rt = get_runtime(name, home=self.settings.home)
            self._runtimes[name] = rt
        return rt

    def _live_runtimes(self) -> list[Runtime]:
        """The runtimes that answer now (docker only when its daemon does; that check never hangs)."""
        out = []
        for name in RUNTIMES:
            rt = self.runtime(name)
            if rt.available():
                out.append(rt)
        return out

    def _port_holder(self, port: int) -> str | None:
        # A container runtime names the container (a process runtime would name docker-proxy).
        for rt in sorted(self._live_runtimes(), key=lambda r: r.name == "native"):
            who = rt.port_holder(port)
            if who:
                return who
        return None

    def lock(self, service_id: str) -> asyncio.Lock:
        lk = self._locks.get(service_id)
        if lk is None:
            lk = self._locks[service_id] = asyncio.Lock()
        return lk

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(trust_env=False, timeout=2.0)
        return self._http

    def _notify(self, service_id: str) -> None:
        ev = self._changed.pop(service_id, None)
        if ev is not None:
            ev.set()

    async def start(self) -> None:
        await self.adopt()
        self._task = asyncio.create_task(self._loop(), name="aima-reconciler")

    async def close(self) -> None:
        """Stop watching; instances keep running (lifecycle rule 12)."""
        tasks = [t for t in (self._task, *self._watchers.values(), *self._restarts.values(),
                             *self._loading.values(), *self._unloading.values(), *self._rechecks.values()) if t]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._http is not None:
            await self._http.aclose()

    # ------------------------------------------------------------------ rows
    def _service(self, service_id: str) -> ServiceRow:
        with self.db.session() as s:
            row = s.get(ServiceRow, service_id)
            if row is None:
                raise NotFound(f"service {service_id} does not exist")
            return row

    def _instances(self, service_id: str, states: Iterable[str] | None = None) -> list[InstanceRow]:
        with self.db.session() as s:
            q = select(InstanceRow).where(InstanceRow.service_id == service_id)
            if states is not None:
                q = q.where(InstanceRow.state.in_(list(states)))
            return list(s.scalars(q.order_by(InstanceRow.replica, InstanceRow.created_at)))

    def _update_instance(self, inst_id: str, **fields: Any) -> InstanceRow | None:
        with self.db.session() as s:
            row = s.get(InstanceRow, inst_id)
            if row is None:
                return None
            for k, v in fields.items():
                setattr(row, k, v)
            row.updated_at = time.time()
            return row

    def _set_instance(self, inst: InstanceRow, state: State, message: str | None = None,
                      **fields: Any) -> InstanceRow | None:
        old = inst.state
        row = self._update_instance(inst.id, state=state.value, message=message, **fields)
        if row is None:
            return None
        if old != state.value or "ready" in fields:
            self.bus.publish(
                f"instance.{state.value}", message or f"instance {inst.id} is {state.value}",
                service_id=inst.service_id, instance_id=inst.id, state=state.value, ready=row.ready,
                host=row.host, port=row.port, replica=row.replica,
            )
        return row

    def _update_service(self, service_id: str, **fields: Any) -> ServiceRow | None:
        with self.db.session() as s:
            row = s.get(ServiceRow, service_id)
            if row is None:
                return None
            for k, v in fields.items():
                setattr(row, k, v)
            row.updated_at = time.time()
            return row

    def _sync_service(self, service_id: str, message: str | None = None) -> ServiceRow | None:
        """Recompute and store the service state from its instances (after any instance change)."""
        with self.db.session() as s:
            svc = s.get(ServiceRow, service_id)
            if svc is None:
                return None
            insts = list(s.scalars(select(InstanceRow).where(InstanceRow.service_id == service_id)))
            latest: dict[int, InstanceRow] = {}
            for i in sorted(insts, key=lambda r: r.created_at):
                latest[i.replica] = i
            states = [State(i.state) for i in latest.values()]
            new = aggregate(states, Desired(svc.desired), svc.started_at is not None,
                            restart_pending=service_id in self._restarts)
            old = svc.state
            svc.state = new.value
            if message is not None:
                svc.message = message
            elif new == State.running and all(i.ready for i in latest.values()):
                svc.message = None
            svc.updated_at = time.time()
            name, msg = svc.name, svc.message
        if old != new.value:
            self.bus.publish(f"service.{new.value}", msg or f"service {name} is {new.value}",
                             service_id=service_id, state=new.value, previous=old)
        self._notify(service_id)
        return svc

    # ------------------------------------------------------------------ public API for ops
    async def refresh(self, service_ids: Iterable[str] | None = None) -> None:
        """Reconcile records with reality now (every read calls this: lifecycle rule 1)."""
        with self.db.session() as s:
            q = select(InstanceRow).where(InstanceRow.state.in_(ACTIVE_NAMES))
            if service_ids is not None:
                q = q.where(InstanceRow.service_id.in_(list(service_ids)))
            rows = list(s.scalars(q))
        rows = [i for i in rows if not self.lock(i.service_id).locked()]  # (a locked one observes for itself)
        seen = await self._observe_all(rows)
        for inst in rows:
            obs = seen[inst.id]
            if not obs.alive and inst.state != State.stopping.value:
                async with self.lock(inst.service_id):
                    fresh = self._reload(inst.id)
                    if fresh is not None and fresh.state in ACTIVE_NAMES:
                        await self._exit_if_dead(fresh)

    async def ensure_running(self, service_id: str, *, wait: bool, timeout_s: float | None,
                             reset_restarts: bool = True) -> StartOutcome:
        async with self.lock(service_id):
            svc = self._service(service_id)
            self._cancel_restart(service_id)
            fields: dict[str, Any] = {"desired": Desired.running.value}
            if reset_restarts:
                fields["restarts"] = 0
            if svc.started_at is None:
                fields["started_at"] = time.time()
            self._update_service(service_id, **fields)
            # Correct a record that says running while nothing runs (rule 4) before starting.
            for inst in self._instances(service_id, ACTIVE_NAMES):
                obs = await self._observe(inst)
                if not obs.alive:
                    self._record_exit(inst, obs)
            live = {i.replica for i in self._instances(service_id, ACTIVE_NAMES)}
            svc = self._service(service_id)
            try:
                for replica in range(svc.replicas):
                    if replica not in live:
                        await self._launch(svc, replica)
            except AimaError as e:
                self._sync_service(service_id, message=e.message)
                raise
            self._sync_service(service_id)
        if not wait:
            svc = self._service(service_id)
            return StartOutcome(svc.state, svc.message or "")
        budget = timeout_s if timeout_s is not None else self._health_timeout(svc)
        return await self.wait_settled(service_id, budget)

    async def wait_settled(self, service_id: str, timeout_s: float) -> StartOutcome:
        deadline = time.monotonic() + timeout_s
        while True:
            ev = self._changed.setdefault(service_id, asyncio.Event())
            try:
                svc = self._service(service_id)
            except NotFound:
                return StartOutcome("stopped", "the service was deleted while starting")
            insts = self._instances(service_id, ACTIVE_NAMES)
            if svc.state == State.running.value and insts and all(i.ready for i in insts):
                return StartOutcome("ready", "")
            if svc.state == State.failed.value:
                return StartOutcome("failed", svc.message or "failed")
            if svc.state in (State.stopped.value, State.stopping.value, State.created.value):
                return StartOutcome("stopped", svc.message or "the service was stopped while starting")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                detail = "; ".join(i.message for i in insts if i.message) or "not ready yet"
                return StartOutcome("timeout", f"not ready within {timeout_s:g}s and still starting "
                                               f"({detail}); it keeps starting, check again with "
                                               f"`aima service status`")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ev.wait(), min(remaining, 1.0))

    async def ensure_stopped(self, service_id: str) -> None:
        async with self.lock(service_id):
            self._service(service_id)
            self._update_service(service_id, desired=Desired.stopped.value)
            self._cancel_restart(service_id)
            await self._stop_instances(service_id)
            self._sync_service(service_id, message="stopped by request")

    async def forget(self, service_id: str) -> None:
        """Delete = stop + forget (rule 10): rows go, routes go, nothing can bring it back."""
        async with self.lock(service_id):
            svc = self._service(service_id)
            self._update_service(service_id, desired=Desired.stopped.value)
            self._cancel_restart(service_id)
            await self._stop_instances(service_id)
            with self.db.session() as s:
                row = s.get(ServiceRow, service_id)
                if row is not None:
                    s.delete(row)
            self.bus.publish("service.deleted", f"service {svc.name} deleted", service_id=service_id,
                             name=svc.name, model=svc.model)
        self._locks.pop(service_id, None)
        self._notify(service_id)

    # ------------------------------------------------------------------ launch / stop
    def _health_timeout(self, svc: ServiceRow) -> float:
        if svc.health_timeout_s:
            return svc.health_timeout_s
        return catalog.engine(svc.engine).health_timeout_s

    def _reserved_ports(self, exclude_service: str) -> set[int]:
        with self.db.session() as s:
            taken: set[int] = set()
            for sid, ports, explicit in s.execute(
                select(ServiceRow.id, ServiceRow.ports, ServiceRow.explicit_port)
            ):
                if sid == exclude_service:
                    continue
                taken.update(p for p in (ports or []) if p)
                if explicit:
                    taken.add(explicit)
            for (port,) in s.execute(select(InstanceRow.port).where(InstanceRow.state.in_(ACTIVE_NAMES))):
                if port:
                    taken.add(port)
        return taken

    def _pick_port(self, svc: ServiceRow, replica: int, host: str) -> int:
        if svc.explicit_port:
            port = svc.explicit_port + replica
            self.ports.check_explicit(port, host, f"service {svc.name}")
            return port
        ports = list(svc.ports or [])
        prefer = ports[replica] if replica < len(ports) else None
        port = self.ports.allocate(host, self._reserved_ports(svc.id), prefer=prefer)
        while len(ports) <= replica:
            ports.append(0)
        if ports[replica] != port:
            ports[replica] = port
            self._update_service(svc.id, ports=ports)
        return port

    async def _launch(self, svc: ServiceRow, replica: int) -> InstanceRow:
        engine = catalog.engine(svc.engine)
        host = "127.0.0.1"
        started = time.monotonic()
        try:
            port = self._pick_port(svc, replica, host)
        except PortInUse as e:
            now = time.time()
            with self.db.session() as s:
                inst = InstanceRow(id=new_instance_id(), service_id=svc.id, replica=replica,
                                   runtime=svc.runtime, state=State.failed.value, ready=False,
                                   host=host, port=svc.explicit_port, cmdline=[], handle={},
                                   message=e.message, created_at=now, updated_at=now)
                self._drop_old_instances(s, svc.id, replica)
                s.add(inst)
            self.bus.publish("instance.failed", e.message, service_id=svc.id, instance_id=inst.id,
                             state="failed", ready=False, port=svc.explicit_port, replica=replica,
                             elapsed_s=round(time.monotonic() - started, 3))
            raise
        rt = self.runtime(svc.runtime)
        options = dict(svc.runtime_options or {})
        argv = render_command(svc.command or "", port=port, host=rt.engine_host(host, options), model=svc.model)
        log_path = logfiles.log_path(self.settings.logs_dir, svc.id, replica)
        now = time.time()
        iid = new_instance_id()
        with self.db.session() as s:
            self._drop_old_instances(s, svc.id, replica)
            s.add(InstanceRow(id=iid, service_id=svc.id, replica=replica, runtime=svc.runtime,
                              state=State.starting.value, ready=False, host=host, port=port,
                              log_path=str(log_path), cmdline=argv, handle={}, created_at=now,
                              updated_at=now))
        offset = log_path.stat().st_size if log_path.exists() else 0
        spec = LaunchSpec(service_id=svc.id, instance_id=iid, replica=replica, argv=argv, host=host,
                          port=port, log_path=log_path, env={**engine.env, **(svc.env or {})},
                          service_name=svc.name, model=svc.model, engine=svc.engine, options=options,
                          on_event=self._threadsafe_publisher(svc.id))
        try:
            # In a worker thread: a container runtime may pull an image first (progress comes as events).
            handle = await asyncio.to_thread(rt.start, spec)
        except AimaError as e:
            inst = self._reload(iid)
            if inst is not None:
                self._set_instance(inst, State.failed, e.message, exit_code=None)
            raise
        row = self._update_instance(iid, pid=handle.pid, start_time=handle.start_time,
                                    cmdline=handle.cmdline, handle=handle.to_dict())
        assert row is not None
        self.bus.publish("instance.starting", f"starting {svc.name} replica {replica} on port {port}",
                         service_id=svc.id, instance_id=iid, state="starting", ready=False, host=host,
                         port=port, replica=replica, pid=handle.pid)
        self._watch(row, log_offset=offset)
        return row

    def _threadsafe_publisher(self, service_id: str) -> Any:
        """``on_event`` for a runtime working in a thread: events are published on the loop."""
        loop = asyncio.get_running_loop()

        def emit(kind: str, message: str, data: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(lambda: self.bus.publish(kind, message, service_id=service_id, **data))

        return emit

    @staticmethod
    def _drop_old_instances(s: Any, service_id: str, replica: int) -> None:
        for old in s.scalars(select(InstanceRow).where(
            InstanceRow.service_id == service_id, InstanceRow.replica == replica,
            InstanceRow.state.notin_(ACTIVE_NAMES),
        )):
            s.delete(old)

    async def _stop_instances(self, service_id: str) -> None:
        for inst in self._instances(service_id, ACTIVE_NAMES):
            await self._stop_instance(inst)

    async def _stop_instance(self, inst: InstanceRow) -> None:
        self._cancel_watch(inst.id)
        row = self._set_instance(inst, State.stopping, f"stopping instance {inst.id}", ready=False)
        if row is None:
            return
        self._sync_service(inst.service_id)  # the service reads `stopping` while it stops (rule 1)
        handle = Handle.from_dict(inst.handle or {})
        code: int | None = None
        if handle.launched:
            code = await asyncio.to_thread(self.runtime(inst.runtime).stop, handle, self.settings.stop_grace_s)
        if inst.port:
            await _wait_port_free(inst.port, inst.host, 10.0)
        self._set_instance(row, State.stopped, "stopped", exit_code=code, ready=False)

    # ------------------------------------------------------------------ observation
    def _reload(self, inst_id: str) -> InstanceRow | None:
        with self.db.session() as s:
            return s.get(InstanceRow, inst_id)

    async def _observe(self, inst: InstanceRow) -> Observation:
        """Is the instance alive? A native process is looked at in place (microseconds); a container is
        asked in a worker thread, so a slow or hung Docker daemon never stalls this loop (the gateway
        and the API share it)."""
        if not inst.handle:
            return Observation(alive=False, detail="never launched")
        rt, handle = self.runtime(inst.runtime), Handle.from_dict(inst.handle)
        if inst.runtime == "native":
            return rt.observe(handle)
        return await asyncio.to_thread(rt.observe, handle)

    def _exit_reason(self, inst: InstanceRow, obs: Observation) -> tuple[str, bool]:
        """What to tell the user about an exit, and whether it matched a fatal log pattern."""
        lines = logfiles.tail(Path(inst.log_path), 30) if inst.log_path else []
        fatal = logfiles.find_fatal(lines, self._fatal_patterns(inst.service_id))
        if fatal:
            return f"{obs.detail}: {fatal}", True
        last = [ln for ln in lines if ln.strip() and not ln.startswith("--- aima:")]
        hint = f"; last log line: {last[-1].strip()[:300]}" if last else ""
        return f"{obs.detail}{hint}", False

    def _fatal_patterns(self, service_id: str) -> list[re.Pattern[str]]:
        try:
            svc = self._service(service_id)
            return [re.compile(p) for p in catalog.engine(svc.engine).fatal_patterns]
        except (NotFound, InvalidInput):
            return []

    async def _observe_all(self, rows: list[InstanceRow]) -> dict[str, Observation]:
        """``_observe`` for many instances: processes in place, every container in one worker-thread hop
        (its runtime reads one container list for all of them)."""
        out: dict[str, Observation] = {}
        elsewhere: list[InstanceRow] = []
        for r in rows:
            if r.handle and r.runtime != "native":
                elsewhere.append(r)
            else:
                out[r.id] = await self._observe(r)
        if elsewhere:
            def observe() -> list[Observation]:
                return [self.runtime(r.runtime).observe(Handle.from_dict(r.handle)) for r in elsewhere]

            out.update(zip([r.id for r in elsewhere], await asyncio.to_thread(observe), strict=True))
        return out

    async def _exit_if_dead(self, fresh: InstanceRow) -> None:
        """Under the service's lock, with the instance's record just re-read: observe it once more and
        apply the exit only if it really is gone. (What was observed before taking the lock may have been
        an older record — say one read before its launch finished — or a moment that has passed.)"""
        obs = await self._observe(fresh)
        if not obs.alive:
            self._on_exit(fresh, obs)

    def _record_exit(self, inst: InstanceRow, obs: Observation) -> tuple[InstanceRow | None, str, bool]:
        reason, fatal = self._exit_reason(inst, obs)
        self._cancel_watch(inst.id)
        state = State.stopped if obs.exit_code == 0 else State.failed
        row = self._set_instance(inst, state, reason, exit_code=obs.exit_code, ready=False)
        return row, reason, fatal

    def _on_exit(self, inst: InstanceRow, obs: Observation) -> None:
        """An instance died without being asked to: record it and apply the restart policy (rule 8)."""
        was_ready = inst.ready_at is not None
        _row, reason, fatal = self._record_exit(inst, obs)
        svc = self._service(inst.service_id)
        policy = RestartPolicy(svc.restart_policy)
        crashed = obs.exit_code != 0
        wants = svc.desired == Desired.running.value and (
            policy == RestartPolicy.always or (policy == RestartPolicy.on_failure and crashed))
        if not wants:
            self._sync_service(svc.id, message=f"instance {inst.id} {reason}")
            return
        if fatal or not was_ready:
            why = "a fatal error" if fatal else "an exit before it was ever ready"
            self._sync_service(svc.id, message=f"{reason} (not restarted after {why}; fix the cause, "
                                               f"then `aima service start {svc.name}`)")
            return
        if inst.ready_at is not None and time.time() - inst.ready_at > RESTART_RESET_S and svc.restarts:
            self._update_service(svc.id, restarts=0)  # it served well for a while: a fresh crash budget
            svc.restarts = 0
        if svc.restarts >= self.settings.restart_max:
            self._sync_service(svc.id, message=f"gave up after {svc.restarts} restarts; last: {reason}")
            self.bus.publish("service.gave_up", f"{svc.name}: gave up after {svc.restarts} restarts",
                             service_id=svc.id)
            return
        attempt = svc.restarts + 1
        delay = backoff_delay(attempt, self.settings.restart_backoff_s, self.settings.restart_backoff_max_s)
        self._update_service(svc.id, restarts=attempt)
        self._restarts[svc.id] = asyncio.create_task(self._restart_later(svc.id, inst.replica, delay))
        msg = f"{reason}; restarting in {delay:g}s (attempt {attempt} of {self.settings.restart_max})"
        self.bus.publish("service.restart_scheduled", msg, service_id=svc.id, attempt=attempt, delay_s=delay)
        self._sync_service(svc.id, message=msg)

    async def _restart_later(self, service_id: str, replica: int, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            return
        async with self.lock(service_id):
            if self._restarts.get(service_id) is asyncio.current_task():
                self._restarts.pop(service_id, None)
            try:
                svc = self._service(service_id)
            except NotFound:
                return
            if svc.desired != Desired.running.value:
                self._sync_service(service_id)
                return
            live = {i.replica for i in self._instances(service_id, ACTIVE_NAMES)}
            try:
                for r in range(svc.replicas):
                    if r not in live:
                        await self._launch(svc, r)
            except AimaError as e:
                self._sync_service(service_id, message=f"restart failed: {e.message}")
                return
            self._sync_service(service_id)

    def _cancel_restart(self, service_id: str) -> None:
        t = self._restarts.pop(service_id, None)
        if t is not None and t is not asyncio.current_task():
            t.cancel()

    # ------------------------------------------------------------------ readiness watcher
    def _watch(self, inst: InstanceRow, log_offset: int = 0) -> None:
        self._cancel_watch(inst.id)
        self._watchers[inst.id] = asyncio.create_task(self._watch_ready(inst.id, log_offset),
                                                      name=f"watch-{inst.id}")

    def _cancel_watch(self, inst_id: str) -> None:
        t = self._watchers.pop(inst_id, None)
        if t is not None and t is not asyncio.current_task():
            t.cancel()

    async def _watch_ready(self, inst_id: str, log_offset: int) -> None:
        """Probe a starting instance quickly until it is ready, dies, or logs a fatal line."""
        try:
            await self._watch_ready_inner(inst_id, log_offset)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a watcher must never take the daemon down
            log.exception("readiness watcher for %s failed", inst_id)
        finally:
            if self._watchers.get(inst_id) is asyncio.current_task():
                self._watchers.pop(inst_id, None)

    async def _watch_ready_inner(self, inst_id: str, log_offset: int) -> None:
        inst = self._reload(inst_id)
        if inst is None:
            return
        svc = self._service(inst.service_id)
        engine = catalog.engine(svc.engine)
        patterns = [re.compile(p) for p in engine.fatal_patterns]
        health = svc.health_path if svc.health_path is not None else engine.health_path
        deadline = time.monotonic() + self._health_timeout(svc)
        slow_reported = False
        interval = 0.05
        offset = log_offset
        while True:
            inst = self._reload(inst_id)
            if inst is None or inst.state != State.starting.value:
                return
            if inst.log_path:
                lines, offset = logfiles.read_from(Path(inst.log_path), offset)
                fatal = logfiles.find_fatal(lines, patterns)
                if fatal:
                    await self._fail_fatal(inst, fatal)
                    return
            obs = await self._observe(inst)
            if not obs.alive:
                async with self.lock(inst.service_id):
                    fresh = self._reload(inst_id)
                    if fresh is not None and fresh.state == State.starting.value:
                        await self._exit_if_dead(fresh)
                return
            res = await probe(self.http, inst.host, inst.port or 0, health, svc.model,
                              engine.identity_required)
            if res.ready:
                async with self.lock(inst.service_id):
                    fresh = self._reload(inst_id)
                    if fresh is None or fresh.state != State.starting.value:
                        return
                    self._set_instance(fresh, State.running, f"ready on {fresh.host}:{fresh.port}",
                                       ready=True, ready_at=time.time())
                    self._health_due[inst_id] = time.monotonic() + 2.0
                    self._sync_service(inst.service_id)
                return
            if not slow_reported and time.monotonic() > deadline:
                slow_reported = True
                msg = f"not ready after {self._health_timeout(svc):g}s ({res.detail}); still starting"
                self._update_instance(inst_id, message=msg)
                self.bus.publish("instance.slow", msg, service_id=inst.service_id, instance_id=inst_id)
            else:
                self._update_instance(inst_id, message=f"waiting: {res.detail}")
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, 2.0 if slow_reported else 0.25)

    async def _fail_fatal(self, inst: InstanceRow, line: str) -> None:
        async with self.lock(inst.service_id):
            fresh = self._reload(inst.id)
            if fresh is None or fresh.state != State.starting.value:
                return
            handle = Handle.from_dict(fresh.handle or {})
            code = None
            if handle.launched:
                code = await asyncio.to_thread(self.runtime(fresh.runtime).stop, handle, 2.0)
            self._set_instance(fresh, State.failed, f"fatal: {line}", exit_code=code, ready=False)
            self._sync_service(fresh.service_id, message=f"fatal engine error: {line}")

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
        with self.db.session() as s:
            rows = list(s.scalars(select(InstanceRow).where(InstanceRow.state.in_(ACTIVE_NAMES))))
        checks = []
        now = time.monotonic()
        seen = await self._observe_all([i for i in rows if not self.lock(i.service_id).locked()])
        for inst in rows:
            obs = seen.get(inst.id)
            if obs is None or self.lock(inst.service_id).locked():
                continue
            if not obs.alive:
                if inst.state == State.stopping.value:
                    continue
                async with self.lock(inst.service_id):
                    fresh = self._reload(inst.id)
                    if fresh is not None and fresh.state in ACTIVE_NAMES and fresh.state != "stopping":
                        await self._exit_if_dead(fresh)
                continue
            if inst.state == State.starting.value and inst.id not in self._watchers:
                self._watch(inst)
            elif inst.state == State.running.value and now >= self._health_due.get(inst.id, 0):
                self._health_due[inst.id] = now + 2.0
                if self._busy(inst.service_id):
                    continue  # answering proves it alive; a probe would disturb it (llama.cpp's server ends a
                    # running stream when another request, such as GET /v1/models, arrives)
                checks.append(self._check_health(inst))
        if checks:
            await asyncio.gather(*checks, return_exceptions=True)
        self._unload_idle()
        if self._ticks % 10 == 0:
            for inst in rows:
                if inst.log_path:
                    logfiles.rotate_if_needed(Path(inst.log_path), self.settings.log_max_bytes,
                                              self.settings.log_backups)

    async def _check_health(self, inst: InstanceRow) -> None:
        """A running instance stays ready only while its health answers (3 misses -> not ready)."""
        svc = self._service(inst.service_id)
        engine = catalog.engine(svc.engine)
        health = svc.health_path if svc.health_path is not None else engine.health_path
        res = await probe(self.http, inst.host, inst.port or 0, health, svc.model, engine.identity_required)
        async with self.lock(inst.service_id):
            fresh = self._reload(inst.id)
            if fresh is None or fresh.state != State.running.value:
                return
            if res.ready:
                self._health_fail.pop(inst.id, None)
                self._slow_since.pop(inst.id, None)
                if not fresh.ready:
                    self._set_instance(fresh, State.running, "ready again", ready=True)
                    self._sync_service(inst.service_id)
                return
            if res.slow:  # busy, not down: not ready only once it has answered no probe for busy_grace_s
                since = self._slow_since.setdefault(inst.id, time.monotonic())
                if time.monotonic() - since < self.settings.busy_grace_s:
                    return
                detail = f"no answer to health probes for {time.monotonic() - since:.0f}s ({res.detail})"
            else:
                self._slow_since.pop(inst.id, None)
                misses = self._health_fail.get(inst.id, 0) + 1
                self._health_fail[inst.id] = misses
                if misses < 3:
                    return
                detail = res.detail
            if fresh.ready:
                self._set_instance(fresh, State.running, f"not ready: {detail}", ready=False)
                self._sync_service(inst.service_id, message=f"instance {inst.id} not ready: {detail}")

    # ------------------------------------------------------------------ gateway feedback: re-check now
    def recheck(self, instance_id: str) -> None:
        """The gateway could not reach this instance: observe and probe it now, not at the next health
        check. Dead: the restart policy applies; alive but not answering: not ready at once (the health
        checks make it ready again when it answers)."""
        if instance_id in self._rechecks:
            return
        t = asyncio.create_task(self._recheck(instance_id), name=f"recheck-{instance_id}")
        self._rechecks[instance_id] = t
        t.add_done_callback(lambda _t: self._rechecks.pop(instance_id, None))

    async def _recheck(self, inst_id: str) -> None:
        try:
            inst = self._reload(inst_id)
            if inst is None or inst.state != State.running.value:
                return
            if not (await self._observe(inst)).alive:
                async with self.lock(inst.service_id):
                    fresh = self._reload(inst_id)
                    if fresh is not None and fresh.state in ACTIVE_NAMES and fresh.state != State.stopping.value:
                        await self._exit_if_dead(fresh)
                return
            svc = self._service(inst.service_id)
            engine = catalog.engine(svc.engine)
            health = svc.health_path if svc.health_path is not None else engine.health_path
            res = await probe(self.http, inst.host, inst.port or 0, health, svc.model, engine.identity_required)
            if res.ready or res.slow:  # answering, or alive and busy: the regular health checks go on
                return
            async with self.lock(inst.service_id):
                fresh = self._reload(inst_id)
                if fresh is None or fresh.state != State.running.value or not fresh.ready:
                    return
                self._health_fail[inst_id] = 3
                msg = f"not ready: unreachable from the gateway ({res.detail})"
                self._set_instance(fresh, State.running, msg, ready=False)
                self._sync_service(inst.service_id, message=f"instance {inst_id} {msg}")
            self._health_due[inst_id] = 0.0
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a re-check must never take the daemon down
            log.exception("re-check of %s failed", inst_id)

    # ------------------------------------------------------------------ load on demand, idle unload
    def _busy(self, service_id: str) -> bool:
        return bool(self.usage is not None and self.usage.inflight(service_id))

    def last_use(self, svc: ServiceRow) -> float:
        """When a service was last used: its last inference request, else when it became ready (or the
        daemon booted, whichever is later)."""
        times = [self.usage.last_used(svc.id) if self.usage is not None else None, self.booted_at]
        times += [i.ready_at for i in self._instances(svc.id, ACTIVE_NAMES)]
        known = [t for t in times if t]
        return max(known) if known else time.time()

    def _unload_idle(self) -> None:
        """Stop every running, unpinned service with an idle TTL that saw no request for that long."""
        with self.db.session() as s:
            rows = list(s.scalars(select(ServiceRow).where(
                ServiceRow.idle_ttl_s.is_not(None), ServiceRow.pinned.is_(False),
                ServiceRow.desired == Desired.running.value, ServiceRow.state == State.running.value)))
        now = time.time()
        for svc in rows:
            sid = svc.id
            if sid in self._unloading or sid in self._loading or self.lock(sid).locked() or self._busy(sid):
                continue
            idle = now - self.last_use(svc)
            ttl = float(svc.idle_ttl_s or 0)
            if idle >= ttl:
                t = asyncio.create_task(self.unload(sid, f"idle for {idle:.0f}s (idle TTL {ttl:g}s)", why="idle",
                                                    idle_ttl_s=ttl), name=f"unload-{sid}")
                self._unloading[sid] = t
                t.add_done_callback(lambda _t, sid=sid: self._unloading.pop(sid, None))

    async def unload(self, service_id: str, reason: str, *, why: str = "idle",
                     idle_ttl_s: float | None = None) -> bool:
        """Stop a service that is idle (``why="idle"``) or in the way of another's load (``"memory"``). A
        pinned service is never unloaded; one used again meanwhile stays. True when it was unloaded."""
        t0 = time.monotonic()
        async with self.lock(service_id):
            try:
                svc = self._service(service_id)
            except NotFound:
                return False
            if svc.pinned or svc.desired != Desired.running.value or self._busy(service_id):
                return False
            if idle_ttl_s is not None and time.time() - self.last_use(svc) < idle_ttl_s:
                return False  # a request came in meanwhile
            self._update_service(service_id, desired=Desired.stopped.value)
            self._cancel_restart(service_id)
            await self._stop_instances(service_id)
            again = "; the next request loads it again" if svc.idle_ttl_s is not None else ""
            self._sync_service(service_id, message=f"unloaded {reason}{again}")
        self.bus.publish("service.unloaded", f"service {svc.name} unloaded {reason}", service_id=service_id,
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
        svc = self._service(service_id)
        await self._make_room(svc)
        self.bus.publish("service.loading", f"loading service {svc.name} for {reason}", service_id=service_id,
                         name=svc.name, model=svc.model, reason=reason)
        res = await self.ensure_running(service_id, wait=True, timeout_s=timeout_s)
        dt = round(time.monotonic() - t0, 3)
        if res.outcome == "ready":
            self.bus.publish("service.loaded", f"service {svc.name} loaded on demand in {dt:g}s (for {reason})",
                             service_id=service_id, name=svc.name, model=svc.model, reason=reason, duration_s=dt)
        else:
            self.bus.publish("service.load_failed", f"service {svc.name} did not load for {reason}: "
                                                    f"{res.outcome} {res.message}".strip(),
                             service_id=service_id, name=svc.name, model=svc.model, outcome=res.outcome,
                             duration_s=dt)
        return res

    async def _make_room(self, svc: ServiceRow) -> None:
        need = svc.memory_bytes
        if not need or not svc.devices:
            return  # its memory need is unknown: nothing to check
        budgets = await self.memory_budgets()
        for dev in svc.devices:
            budget = budgets.get(dev)
            if budget is None:
                continue
            with self.db.session() as s:
                rows = list(s.scalars(select(ServiceRow).where(ServiceRow.desired == Desired.running.value,
                                                               ServiceRow.id != svc.id)))
            loaded = [r for r in rows if r.memory_bytes and dev in (r.devices or [])]
            used = sum(int(r.memory_bytes or 0) for r in loaded)
            if used + need <= budget:
                continue
            movable = [r for r in loaded if not r.pinned and not self._busy(r.id)]
            fixed = used - sum(int(r.memory_bytes or 0) for r in movable)
            if fixed + need > budget:
                movable = []  # even unloading all that may go would not make room: unload nothing
            for victim in sorted(movable, key=self.last_use):
                if used + need <= budget:
                    break
                free = max(budget - used, 0)
                why = (f"to make room for {svc.name} on {dev} (it needs {_size(need)}; {_size(free)} of the "
                       f"{_size(budget)} budget was free)")
                if await self.unload(victim.id, why, why="memory"):
                    used -= int(victim.memory_bytes or 0)
            if used + need > budget:
                raise InsufficientMemory(
                    f"service {svc.name} needs {_size(need)} on {dev}, but only {_size(max(budget - used, 0))} of "
                    f"its {_size(budget)} budget is free and no other service can be unloaded (pinned or busy); "
                    f"stop one, or raise AIMA_MEMORY_BUDGET", field="memory",
                    details={"device": dev, "needed_bytes": need, "budget_bytes": budget, "used_bytes": used})

    async def memory_budgets(self) -> dict[str, int]:
        """Bytes per device that services loaded on demand may use together: AIMA_MEMORY_BUDGET
        (``cpu=8GiB,gpu0=20GiB``) or else the device's total memory."""
        if self._budgets is None:
            self._budgets = await asyncio.to_thread(memory_budgets, self.settings)
        return self._budgets

    # ------------------------------------------------------------------ boot: re-adoption
    async def adopt(self) -> None:
        """Re-adopt live instances by identity after a daemon restart (rule 11); kill orphans."""
        self.booted_at = time.time()
        with self.db.session() as s:
            rows = list(s.scalars(select(InstanceRow).where(InstanceRow.state.in_(ACTIVE_NAMES))))
        known = {r.id for r in rows}
        discovered: dict[str, Handle] | None = None
        for inst in rows:
            if not inst.handle or not Handle.from_dict(inst.handle).launched:
                # The daemon died between spawning and recording: look for the process by its marks.
                if discovered is None:
                    discovered = await self._discover()
                h = discovered.get(inst.id)
                if h is not None:
                    if inst.log_path:
                        h.data.setdefault("log_path", inst.log_path)  # a container's log is followed again
                    inst = self._update_instance(inst.id, pid=h.pid, start_time=h.start_time,
                                                 handle=h.to_dict()) or inst
            obs = await self._observe(inst)
            if obs.alive:
                if inst.state == State.stopping.value:
                    await self._stop_instance(inst)
                    self._sync_service(inst.service_id)
                    continue
                what = (f"container {inst.handle.get('data', {}).get('name')}" if inst.runtime != "native"
                        else f"pid {inst.pid}")
                self.bus.publish("instance.adopted", f"re-adopted {inst.id} ({what})",
                                 service_id=inst.service_id, instance_id=inst.id, state=inst.state,
                                 ready=inst.ready, host=inst.host, port=inst.port, replica=inst.replica)
                if inst.state == State.starting.value:
                    self._watch(inst)
                continue
            if inst.state == State.stopping.value:
                self._set_instance(inst, State.stopped, "stopped while the daemon was down", ready=False)
                self._sync_service(inst.service_id)
                continue
            obs = Observation(alive=False, exit_code=None, detail="died while the daemon was down")
            self._on_exit(inst, obs)
        await self._resume_pending_restarts()
        # Processes and containers of this home that no record claims are orphans (e.g. a crash
        # mid-launch, or a record deleted by hand): reported and removed.
        if discovered is None:
            discovered = await self._discover()
        for iid, h in discovered.items():
            if iid in known:
                continue
            await asyncio.to_thread(self.runtime(h.runtime).stop, h, 2.0)
            if h.runtime == "native":
                what = f"process {h.pid}"
            else:
                what = f"{h.runtime} container {h.data.get('name') or h.data.get('container', '')[:12]}"
            self.bus.publish("instance.orphan_killed", f"stopped orphan {what} ({iid})",
                             instance_id=iid, pid=h.pid, runtime=h.runtime, container=h.data.get("container"))

    async def _discover(self) -> dict[str, Handle]:
        """Live instances of this home in every runtime that answers, by instance id."""
        found: dict[str, Handle] = {}
        for rt in await asyncio.to_thread(self._live_runtimes):
            try:
                items = await asyncio.to_thread(rt.discover, self.settings.home)
            except AimaError as e:
                log.warning("discovery in the %s runtime failed: %s", rt.name, e.message)
                continue
            for _sid, iid, h in items:
                if iid:
                    found[iid] = h
        return found

    async def _resume_pending_restarts(self) -> None:
        """A restart that was pending when the daemon died is carried out now (no duplicate: only
        replicas without a live instance are launched)."""
        with self.db.session() as s:
            ids = list(s.scalars(select(ServiceRow.id).where(ServiceRow.desired == Desired.running.value,
                                                             ServiceRow.state == State.starting.value)))
        for sid in ids:
            if sid in self._restarts:
                continue
            svc = self._service(sid)
            live = {i.replica for i in self._instances(sid, ACTIVE_NAMES)}
            missing = [r for r in range(svc.replicas) if r not in live]
            if missing:
                self._restarts[sid] = asyncio.create_task(self._restart_later(sid, missing[0], 0.0))


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def memory_budgets(settings: Settings) -> dict[str, int]:
    """The per-device budgets (see ``Reconciler.memory_budgets``)."""
    out: dict[str, int] = {}
    try:
        from aima.catalog.fit import gpu_total, host_total
        from aima.hardware import detect

        facts = detect(settings.home)
        total = host_total(facts)
        if total:
            out["cpu"] = total
        for g in facts.gpus:
            t = gpu_total(g, facts)
            if t:
                out[f"gpu{g.index}"] = t
    except Exception as e:  # noqa: BLE001 - no detection: only the configured budgets apply
        log.info("memory budgets: hardware not detected (%s)", e)
    if settings.memory_budget:
        from pydantic import ByteSize, TypeAdapter

        for part in settings.memory_budget.split(","):
            dev, _, size = part.partition("=")
            if dev.strip() and size.strip():
                try:
                    out[dev.strip()] = int(TypeAdapter(ByteSize).validate_python(size.strip()))
                except ValueError:
                    log.warning("AIMA_MEMORY_BUDGET: %r is not a size like 8GiB; ignored", part)
    return out


def render_command(template: str, *, port: int, host: str, model: str) -> list[str]:
    """Split a command template and fill ``{port}``, ``{host}`` and ``{model}`` in each word."""
    try:
        words = shlex.split(template)
    except ValueError as e:
        raise InvalidInput(f"command cannot be parsed: {e}", field="command") from None
    if not words:
        raise InvalidInput("command is empty", field="command")
    values = {"{port}": str(port), "{host}": host, "{model}": model}
    out = []
    for w in words:
        for k, v in values.items():
            w = w.replace(k, v)
        out.append(w)
    return out


async def _wait_port_free(port: int, host: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if await asyncio.to_thread(port_is_free, port, host):
            return
        await asyncio.sleep(0.05)
