"""The Context every operation receives: the daemon's shared parts."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aima.config import Settings
from aima.controller.events import EventBus
from aima.controller.reconciler import Reconciler
from aima.gateway.routes import RouteTable
from aima.store.db import Database


@dataclass
class Context:
    settings: Settings
    db: Database
    bus: EventBus
    reconciler: Reconciler
    routes: RouteTable = field(default_factory=RouteTable)
    started_at: float = field(default_factory=time.time)
    shutting_down: bool = False  # set when the daemon is told to stop: long streams end
