"""Queries of services and instances, in one place: the controller, the operations and the gateway read
and write their rows through these (rows come back detached: ``expire_on_commit`` is off)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from aima.domain.names import is_service_id
from aima.domain.states import ACTIVE
from aima.store.db import Database
from aima.store.tables import InstanceRow, ServiceRow

ACTIVE_NAMES = tuple(s.value for s in ACTIVE)


class Services:
    def __init__(self, db: Database):
        self.db = db

    def get(self, service_id: str) -> ServiceRow | None:
        with self.db.session() as s:
            return s.get(ServiceRow, service_id)

    def find(self, ref: str) -> ServiceRow | None:
        """By id (``svc-…``) or by name."""
        with self.db.session() as s:
            row = s.get(ServiceRow, ref) if is_service_id(ref) else None
            if row is None:
                row = s.scalars(select(ServiceRow).where(ServiceRow.name == ref)).first()
            return row

    def list(self, *, state: str | None = None, model: str | None = None, engine: str | None = None,
             desired: str | None = None) -> list[ServiceRow]:
        with self.db.session() as s:
            q = select(ServiceRow)
            if state:
                q = q.where(ServiceRow.state == state)
            if model:
                q = q.where(ServiceRow.model == model)
            if engine:
                q = q.where(ServiceRow.engine == engine)
            if desired:
                q = q.where(ServiceRow.desired == desired)
            return list(s.scalars(q.order_by(ServiceRow.created_at)))

    def ids(self, *, desired: str | None = None, state: str | None = None) -> list[str]:
        with self.db.session() as s:
            q = select(ServiceRow.id)
            if desired:
                q = q.where(ServiceRow.desired == desired)
            if state:
                q = q.where(ServiceRow.state == state)
            return list(s.scalars(q))

    def idle_candidates(self) -> list[ServiceRow]:
        """Running, wanted running, unpinned services with an idle TTL."""
        with self.db.session() as s:
            return list(s.scalars(select(ServiceRow).where(
                ServiceRow.idle_ttl_s.is_not(None), ServiceRow.pinned.is_(False),
                ServiceRow.desired == "running", ServiceRow.state == "running")))

    def name_taken(self, name: str) -> bool:
        with self.db.session() as s:
            return s.scalars(select(ServiceRow.id).where(ServiceRow.name == name)).first() is not None

    def port_owner(self, ports: Iterable[int]) -> tuple[str, int] | None:
        """(service name, port) of a service that holds one of ``ports`` (explicitly or kept), if any."""
        wanted = set(ports)
        with self.db.session() as s:
            for name, explicit, kept in s.execute(select(ServiceRow.name, ServiceRow.explicit_port,
                                                         ServiceRow.ports)):
                held = set(kept or []) | ({explicit} if explicit else set())
                if held & wanted:
                    return name, min(held & wanted)
        return None

    def reserved_ports(self, exclude_service: str) -> set[int]:
        """Ports other services hold (kept or explicit) and ports of every active instance."""
        taken: set[int] = set()
        with self.db.session() as s:
            for sid, ports, explicit in s.execute(select(ServiceRow.id, ServiceRow.ports, ServiceRow.explicit_port)):
                if sid == exclude_service:
                    continue
                taken.update(p for p in (ports or []) if p)
                if explicit:
                    taken.add(explicit)
            for (port,) in s.execute(select(InstanceRow.port).where(InstanceRow.state.in_(ACTIVE_NAMES))):
                if port:
                    taken.add(port)
        return taken

    def add(self, row: ServiceRow) -> None:
        with self.db.session() as s:
            s.add(row)

    def update(self, service_id: str, **fields: Any) -> ServiceRow | None:
        with self.db.session() as s:
            row = s.get(ServiceRow, service_id)
            if row is None:
                return None
            for k, v in fields.items():
                setattr(row, k, v)
            row.updated_at = time.time()
            return row

    def delete(self, service_id: str) -> None:
        with self.db.session() as s:
            row = s.get(ServiceRow, service_id)
            if row is not None:
                s.delete(row)


class Instances:
    def __init__(self, db: Database):
        self.db = db

    def get(self, instance_id: str) -> InstanceRow | None:
        with self.db.session() as s:
            return s.get(InstanceRow, instance_id)

    def of(self, service_id: str, states: Iterable[str] | None = None) -> list[InstanceRow]:
        with self.db.session() as s:
            q = select(InstanceRow).where(InstanceRow.service_id == service_id)
            if states is not None:
                q = q.where(InstanceRow.state.in_(list(states)))
            return list(s.scalars(q.order_by(InstanceRow.replica, InstanceRow.created_at)))

    def active(self, service_ids: Iterable[str] | None = None) -> list[InstanceRow]:
        with self.db.session() as s:
            q = select(InstanceRow).where(InstanceRow.state.in_(ACTIVE_NAMES))
            if service_ids is not None:
                q = q.where(InstanceRow.service_id.in_(list(service_ids)))
            return list(s.scalars(q))

    def ready(self) -> list[InstanceRow]:
        with self.db.session() as s:
            return list(s.scalars(select(InstanceRow).where(InstanceRow.state == "running",
                                                            InstanceRow.ready.is_(True))))

    def by_service(self) -> dict[str, list[InstanceRow]]:
        with self.db.session() as s:
            rows = list(s.scalars(select(InstanceRow).order_by(InstanceRow.replica)))
        out: dict[str, list[InstanceRow]] = {}
        for r in rows:
            out.setdefault(r.service_id, []).append(r)
        return out

    def replace(self, row: InstanceRow) -> None:
        """Add ``row``, dropping the ended instances of its replica (its history is one instance deep)."""
        with self.db.session() as s:
            for old in s.scalars(select(InstanceRow).where(
                InstanceRow.service_id == row.service_id, InstanceRow.replica == row.replica,
                InstanceRow.state.notin_(ACTIVE_NAMES),
            )):
                s.delete(old)
            s.add(row)

    def update(self, instance_id: str, **fields: Any) -> InstanceRow | None:
        with self.db.session() as s:
            row = s.get(InstanceRow, instance_id)
            if row is None:
                return None
            for k, v in fields.items():
                setattr(row, k, v)
            row.updated_at = time.time()
            return row
