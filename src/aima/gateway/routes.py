"""The route table: which ready instances serve which model, kept current from controller events.

The reconciler never calls the gateway; it publishes events and this table listens. On boot the
table is rebuilt from the database right after re-adoption (lifecycle rule 11).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from aima.store.db import Database
from aima.store.tables import InstanceRow, ServiceRow


@dataclass
class Endpoint:
    instance_id: str
    service_id: str
    host: str
    port: int
    inflight: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass
class ServiceRoute:
    service_id: str
    name: str
    model: str
    created_at: float
    endpoints: dict[str, Endpoint] = field(default_factory=dict)


class RouteTable:
    def __init__(self) -> None:
        self._services: dict[str, ServiceRoute] = {}
        self._lock = threading.Lock()

    def rebuild(self, db: Database) -> None:
        with db.session() as s:
            services = {r.id: ServiceRoute(r.id, r.name, r.model, r.created_at)
                        for r in s.scalars(select(ServiceRow))}
            for i in s.scalars(select(InstanceRow).where(InstanceRow.state == "running",
                                                         InstanceRow.ready.is_(True))):
                route = services.get(i.service_id)
                if route is not None and i.port:
                    route.endpoints[i.id] = Endpoint(i.id, i.service_id, i.host, i.port)
        with self._lock:
            self._services = services

    def on_event(self, ev: dict[str, Any]) -> None:
        kind, sid, data = ev["kind"], ev.get("service_id"), ev.get("data") or {}
        if not sid:
            return
        with self._lock:
            if kind == "service.created":
                self._services[sid] = ServiceRoute(sid, data.get("name", sid), data.get("model", ""), ev["ts"])
                return
            if kind == "service.deleted":
                self._services.pop(sid, None)
                return
            route = self._services.get(sid)
            iid = ev.get("instance_id")
            if route is None or not iid or not kind.startswith("instance."):
                return
            if data.get("state") == "running" and data.get("ready") and data.get("port"):
                route.endpoints[iid] = Endpoint(iid, sid, data.get("host") or "127.0.0.1", int(data["port"]))
            elif "state" in data or "ready" in data:
                route.endpoints.pop(iid, None)

    def models(self) -> list[ServiceRoute]:
        """Services with at least one ready instance (what /v1/models lists)."""
        with self._lock:
            return [r for r in self._services.values() if r.endpoints]

    def lookup(self, model: str) -> ServiceRoute | None:
        with self._lock:
            for r in self._services.values():
                if r.model == model or r.name == model:
                    return r
        return None
