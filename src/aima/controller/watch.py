"""Readiness and health (lifecycle rules 2, 6 and 7): watching a starting instance until it is ready, checking
running ones, and re-checking one the gateway could not reach.

Ready = alive + port accepting + health 200 + the engine serves the expected model name. A starting
instance is probed quickly until it is ready, dies, logs a fatal line (failed at once with that line),
or outlives its health timeout (then it stays ``starting``, said so, and is never killed for it). A
running instance is probed every 2 s; 3 misses make it not ready (a probe that times out on an
accepting port means busy, and only ``AIMA_BUSY_GRACE_S`` of those do). Exits are handed back to the
reconciler, which applies the restart policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from aima.config import Settings
from aima.controller import logs as logfiles
from aima.controller.launch import Launcher
from aima.controller.probes import probe
from aima.controller.records import Records, engine_spec, health_path, health_timeout
from aima.domain.states import State
from aima.store.tables import InstanceRow

log = logging.getLogger("aima.reconciler")

HEALTH_EVERY_S = 2.0
MISSES = 3


class Watcher:
    def __init__(self, records: Records, launcher: Launcher, settings: Settings, *,
                 lock: Callable[[str], asyncio.Lock], on_gone: Callable[[InstanceRow], Awaitable[None]]):
        self.records = records
        self.launcher = launcher
        self.settings = settings
        self.lock = lock
        self.on_gone = on_gone  # under the service's lock, with a fresh record: apply the exit if it is gone
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._rechecks: dict[str, asyncio.Task[None]] = {}
        self._due: dict[str, float] = {}
        self._fails: dict[str, int] = {}
        self._slow_since: dict[str, float] = {}  # instance -> when its health probes began to time out
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(trust_env=False, timeout=2.0)
        return self._http

    def tasks(self) -> list[asyncio.Task[None]]:
        return [*self._watchers.values(), *self._rechecks.values()]

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    def watching(self, inst_id: str) -> bool:
        return inst_id in self._watchers

    # ------------------------------------------------------------------ starting instances
    def watch(self, inst: InstanceRow, log_offset: int = 0) -> None:
        self.cancel(inst.id)
        self._watchers[inst.id] = asyncio.create_task(self._watch_ready(inst.id, log_offset), name=f"watch-{inst.id}")

    def cancel(self, inst_id: str) -> None:
        t = self._watchers.pop(inst_id, None)
        if t is not None and t is not asyncio.current_task():
            t.cancel()

    async def _watch_ready(self, inst_id: str, log_offset: int) -> None:
        try:
            await self._until_ready(inst_id, log_offset)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a watcher must never take the daemon down
            log.exception("readiness watcher for %s failed", inst_id)
        finally:
            if self._watchers.get(inst_id) is asyncio.current_task():
                self._watchers.pop(inst_id, None)

    async def _until_ready(self, inst_id: str, log_offset: int) -> None:
        inst = self.records.instances.get(inst_id)
        if inst is None:
            return
        svc = self.records.service(inst.service_id)
        spec = engine_spec(svc)
        patterns = [re.compile(p) for p in spec.fatal_patterns]
        health = health_path(svc, spec)
        budget = health_timeout(svc, spec)
        deadline = time.monotonic() + budget
        slow_reported = False
        interval = 0.05
        offset = log_offset
        while True:
            inst = self.records.instances.get(inst_id)
            if inst is None or inst.state != State.starting.value:
                return
            if inst.log_path:
                lines, offset = logfiles.read_from(Path(inst.log_path), offset)
                fatal = logfiles.find_fatal(lines, patterns)
                if fatal:
                    await self._fail_fatal(inst, fatal)
                    return
            if not (await self.launcher.observe(inst)).alive:
                async with self.lock(inst.service_id):
                    fresh = self.records.instances.get(inst_id)
                    if fresh is not None and fresh.state == State.starting.value:
                        await self.on_gone(fresh)
                return
            res = await probe(self.http, inst.host, inst.port or 0, health, svc.model, spec.identity_required)
            if res.ready:
                async with self.lock(inst.service_id):
                    fresh = self.records.instances.get(inst_id)
                    if fresh is None or fresh.state != State.starting.value:
                        return
                    self.records.set_instance(fresh, State.running, f"ready on {fresh.host}:{fresh.port}",
                                              ready=True, ready_at=time.time())
                    self._due[inst_id] = time.monotonic() + HEALTH_EVERY_S
                    self.records.sync_service(inst.service_id)
                return
            if not slow_reported and time.monotonic() > deadline:
                slow_reported = True
                msg = f"not ready after {budget:g}s ({res.detail}); still starting"
                self.records.update_instance(inst_id, message=msg)
                self.records.bus.publish("instance.slow", msg, service_id=inst.service_id, instance_id=inst_id)
            else:
                self.records.update_instance(inst_id, message=f"waiting: {res.detail}")
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, 2.0 if slow_reported else 0.25)

    async def _fail_fatal(self, inst: InstanceRow, line: str) -> None:
        async with self.lock(inst.service_id):
            fresh = self.records.instances.get(inst.id)
            if fresh is None or fresh.state != State.starting.value:
                return
            code = await self.launcher.stop(fresh, 2.0)
            self.records.set_instance(fresh, State.failed, f"fatal: {line}", exit_code=code, ready=False)
            self.records.sync_service(fresh.service_id, message=f"fatal engine error: {line}")

    # ------------------------------------------------------------------ running instances
    def health_due(self, inst: InstanceRow, now: float) -> bool:
        """A running instance's health check is due (and is then scheduled again)."""
        if now < self._due.get(inst.id, 0):
            return False
        self._due[inst.id] = now + HEALTH_EVERY_S
        return True

    async def check_health(self, inst: InstanceRow) -> None:
        """A running instance stays ready only while its health answers (3 misses -> not ready)."""
        svc = self.records.service(inst.service_id)
        spec = engine_spec(svc)
        res = await probe(self.http, inst.host, inst.port or 0, health_path(svc, spec), svc.model,
                          spec.identity_required)
        async with self.lock(inst.service_id):
            fresh = self.records.instances.get(inst.id)
            if fresh is None or fresh.state != State.running.value:
                return
            if res.ready:
                self._fails.pop(inst.id, None)
                self._slow_since.pop(inst.id, None)
                if not fresh.ready:
                    self.records.set_instance(fresh, State.running, "ready again", ready=True)
                    self.records.sync_service(inst.service_id)
                return
            if res.slow:  # busy, not down: not ready only once it has answered no probe for busy_grace_s
                since = self._slow_since.setdefault(inst.id, time.monotonic())
                if time.monotonic() - since < self.settings.busy_grace_s:
                    return
                detail = f"no answer to health probes for {time.monotonic() - since:.0f}s ({res.detail})"
            else:
                self._slow_since.pop(inst.id, None)
                misses = self._fails.get(inst.id, 0) + 1
                self._fails[inst.id] = misses
                if misses < MISSES:
                    return
                detail = res.detail
            if fresh.ready:
                self.records.set_instance(fresh, State.running, f"not ready: {detail}", ready=False)
                self.records.sync_service(inst.service_id, message=f"instance {inst.id} not ready: {detail}")

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
            inst = self.records.instances.get(inst_id)
            if inst is None or inst.state != State.running.value:
                return
            if not (await self.launcher.observe(inst)).alive:
                async with self.lock(inst.service_id):
                    fresh = self.records.instances.get(inst_id)
                    if fresh is not None and fresh.state in (State.starting.value, State.running.value):
                        await self.on_gone(fresh)
                return
            svc = self.records.service(inst.service_id)
            spec = engine_spec(svc)
            res = await probe(self.http, inst.host, inst.port or 0, health_path(svc, spec), svc.model,
                              spec.identity_required)
            if res.ready or res.slow:  # answering, or alive and busy: the regular health checks go on
                return
            async with self.lock(inst.service_id):
                fresh = self.records.instances.get(inst_id)
                if fresh is None or fresh.state != State.running.value or not fresh.ready:
                    return
                self._fails[inst_id] = MISSES
                msg = f"not ready: unreachable from the gateway ({res.detail})"
                self.records.set_instance(fresh, State.running, msg, ready=False)
                self.records.sync_service(inst.service_id, message=f"instance {inst_id} {msg}")
            self._due[inst_id] = 0.0
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a re-check must never take the daemon down
            log.exception("re-check of %s failed", inst_id)


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t
