"""The write side of instance and service state: what the reconciler's parts call to change a record.

Every instance state change is checked against the allowed transitions (``domain.states``), stored,
and published as an event; the service's state is then derived from its instances (``aggregate``) and
waiters on that service are woken. Only the controller writes through this (the operations read).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aima import catalog
from aima.controller.events import EventBus
from aima.domain.engine import EngineSpec
from aima.domain.states import Desired, State, aggregate, check_transition
from aima.errors import NotFound
from aima.store.db import Database
from aima.store.repositories import ACTIVE_NAMES, Instances, Services
from aima.store.tables import InstanceRow, ServiceRow

log = logging.getLogger("aima.reconciler")


class Records:
    def __init__(self, db: Database, bus: EventBus):
        self.db = db
        self.bus = bus
        self.services = Services(db)
        self.instances = Instances(db)
        self._changed: dict[str, asyncio.Event] = {}
        self.restart_pending: set[str] = set()  # services with a restart scheduled (they read `starting`)

    # -- reads
    def service(self, service_id: str) -> ServiceRow:
        row = self.services.get(service_id)
        if row is None:
            raise NotFound(f"service {service_id} does not exist")
        return row

    def active(self, service_id: str) -> list[InstanceRow]:
        return self.instances.of(service_id, ACTIVE_NAMES)

    def changed(self, service_id: str) -> asyncio.Event:
        """An event set at the next change of this service."""
        return self._changed.setdefault(service_id, asyncio.Event())

    def notify(self, service_id: str) -> None:
        ev = self._changed.pop(service_id, None)
        if ev is not None:
            ev.set()

    # -- writes
    def update_instance(self, instance_id: str, **fields: Any) -> InstanceRow | None:
        return self.instances.update(instance_id, **fields)

    def set_instance(self, inst: InstanceRow, state: State, message: str | None = None,
                     **fields: Any) -> InstanceRow | None:
        old = inst.state
        check_transition(State(old), state)
        row = self.instances.update(inst.id, state=state.value, message=message, **fields)
        if row is None:
            return None
        if old != state.value or "ready" in fields:
            self.bus.publish(
                f"instance.{state.value}", message or f"instance {inst.id} is {state.value}",
                service_id=inst.service_id, instance_id=inst.id, state=state.value, ready=row.ready,
                host=row.host, port=row.port, replica=row.replica, node=row.node,
            )
        return row

    def update_service(self, service_id: str, **fields: Any) -> ServiceRow | None:
        return self.services.update(service_id, **fields)

    def sync_service(self, service_id: str, message: str | None = None) -> ServiceRow | None:
        """Recompute and store the service state from its instances (after any instance change)."""
        svc = self.services.get(service_id)
        if svc is None:
            return None
        latest: dict[int, InstanceRow] = {}
        for i in sorted(self.instances.of(service_id), key=lambda r: r.created_at):
            latest[i.replica] = i
        new = aggregate([State(i.state) for i in latest.values()], Desired(svc.desired), svc.started_at is not None,
                        restart_pending=service_id in self.restart_pending)
        fields: dict[str, Any] = {"state": new.value}
        if message is not None:
            fields["message"] = message
        elif new == State.running and all(i.ready for i in latest.values()):
            fields["message"] = None
        old = svc.state
        svc = self.services.update(service_id, **fields) or svc
        if old != new.value:
            self.bus.publish(f"service.{new.value}", svc.message or f"service {svc.name} is {new.value}",
                             service_id=service_id, state=new.value, previous=old)
        self.notify(service_id)
        return svc


def engine_spec(svc: ServiceRow) -> EngineSpec:
    """The engine facts kept on the service at create; a service made before they were kept reads the
    catalog (once, then keeps them)."""
    if svc.engine_spec:
        return EngineSpec.from_dict(svc.engine_spec)
    try:
        return catalog.engine(svc.engine)
    except NotFound:
        log.warning("service %s: engine %s is no longer in the catalog; using the defaults", svc.name, svc.engine)
        return catalog.CUSTOM


def health_path(svc: ServiceRow, spec: EngineSpec) -> str | None:
    return svc.health_path if svc.health_path is not None else spec.health_path


def health_timeout(svc: ServiceRow, spec: EngineSpec) -> float:
    return svc.health_timeout_s or spec.health_timeout_s
