"""The Context every operation receives: the daemon's shared parts."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aima.config import Settings
from aima.controller.acquire import Acquirer
from aima.controller.events import EventBus
from aima.controller.reconciler import Reconciler
from aima.controller.routes import RouteTable
from aima.runtimes import Runtimes
from aima.store.db import Database
from aima.store.repositories import Instances, Services
from aima.store.usage import UsageBook

if TYPE_CHECKING:
    from pydantic import BaseModel

    from aima.ops.registry import Operation


@dataclass
class Context:
    settings: Settings
    db: Database
    bus: EventBus
    reconciler: Reconciler
    routes: RouteTable
    acquirer: Acquirer
    usage: UsageBook  # /v1 answers per API key and model (written to the database every few seconds)
    started_at: float = field(default_factory=time.time)
    shutting_down: bool = False  # set when the daemon is told to stop: long streams end
    url: str | None = None  # where this daemon answers (set once it listens)
    local_key: str | None = None  # its key for this machine (server.auth): its own calls to its /v1 send it

    def operations(self) -> dict[str, Operation]:
        """Every operation, by name (what the agent below the operations is handed as its tools)."""
        from aima.ops.registry import load_all

        return load_all()

    async def call(self, op: str, data: dict[str, Any]) -> BaseModel:
        """Run one operation by name with this context."""
        from aima.ops.registry import get

        return await get(op).call(self, data)

    @property
    def services(self) -> Services:
        return self.reconciler.records.services

    @property
    def instances(self) -> Instances:
        return self.reconciler.records.instances

    @property
    def runtimes(self) -> Runtimes:
        return self.reconciler.runtimes

    @classmethod
    def build(cls, settings: Settings) -> Context:
        """The daemon's parts over its database (opened now: a corrupt one fails here, before listening)."""
        settings.ensure_dirs()
        db = Database(settings.db_path)
        bus = EventBus(db, keep=settings.events_keep)
        reconciler = Reconciler(db, settings, bus)
        routes = RouteTable()
        reconciler.demand.usage = routes  # last use and requests in flight, read for idle unload
        bus.listen(routes.on_event)
        return cls(settings=settings, db=db, bus=bus, reconciler=reconciler, routes=routes,
                   acquirer=Acquirer(routes, reconciler, reconciler.records.services), usage=UsageBook(db))
