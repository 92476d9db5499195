"""Events: persisted in the events table and published to live subscribers (SSE, route table)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select

from aima.store.db import Database
from aima.store.tables import EventRow


class EventBus:
    def __init__(self, db: Database, keep: int = 20000):
        self.db = db
        self.keep = keep
        self._queues: set[asyncio.Queue[dict[str, Any]]] = set()
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._since_prune = 0

    def listen(self, fn: Callable[[dict[str, Any]], None]) -> None:
        self._listeners.append(fn)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        self._queues.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self._queues.discard(q)

    def publish(self, kind: str, message: str, *, service_id: str | None = None,
                instance_id: str | None = None, **data: Any) -> dict[str, Any]:
        ts = time.time()
        with self.db.session() as s:
            row = EventRow(ts=ts, kind=kind, service_id=service_id, instance_id=instance_id,
                           message=message, data=data)
            s.add(row)
            s.flush()
            ev = {"id": row.id, "ts": ts, "kind": kind, "service_id": service_id,
                  "instance_id": instance_id, "message": message, "data": data}
            self._since_prune += 1
            if self._since_prune >= 500:
                self._since_prune = 0
                s.execute(delete(EventRow).where(EventRow.id <= row.id - self.keep))
        for fn in self._listeners:
            fn(ev)
        for q in list(self._queues):
            try:
                q.put_nowait(ev)
            except asyncio.QueueFull:  # a slow subscriber loses old events, never blocks the controller
                try:
                    q.get_nowait()
                    q.put_nowait(ev)
                except (asyncio.QueueEmpty, asyncio.QueueFull):
                    pass
        return ev

    def history(self, since_id: int = 0, limit: int = 100, service_id: str | None = None) -> list[dict[str, Any]]:
        with self.db.session() as s:
            q = select(EventRow).where(EventRow.id > since_id)
            if service_id:
                q = q.where(EventRow.service_id == service_id)
            rows = s.scalars(q.order_by(EventRow.id.desc()).limit(limit)).all()
        return [{"id": r.id, "ts": r.ts, "kind": r.kind, "service_id": r.service_id,
                 "instance_id": r.instance_id, "message": r.message, "data": r.data}
                for r in reversed(rows)]
