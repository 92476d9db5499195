"""Runtimes start, observe and stop instances; see ``base`` for the contract every runtime keeps.

They are registered as data below: a new runtime is one module exposing a class that satisfies
``aima.runtimes.base.Runtime``, plus one line here. Nothing outside this package names a runtime. The
order is the order ``--runtime auto`` tries them in after the engine's preference; a later runtime is
more specific about who holds a port on this machine (a container's published port is the container,
not its proxy process). Runtime modules import their heavy libraries (the Docker SDK, Ray) only when
they first need them.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any

from aima.errors import InvalidInput

if TYPE_CHECKING:
    from aima.config import Settings
    from aima.runtimes.base import Definition, Options, Runtime, ServicePlan

RUNTIMES: dict[str, str] = {
    "native": "aima.runtimes.native:NativeRuntime",
    "docker": "aima.runtimes.docker:DockerRuntime",
    "ray": "aima.runtimes.ray:RayRuntime",
}


def names() -> tuple[str, ...]:
    return tuple(RUNTIMES)


def runtime_class(name: str) -> Any:
    try:
        path = RUNTIMES[name]
    except KeyError:
        raise InvalidInput(f"runtime {name!r} does not exist; choose one of: {', '.join(RUNTIMES)}",
                           field="runtime") from None
    module, _, cls = path.partition(":")
    return getattr(importlib.import_module(module), cls)


def option_models() -> list[type[Options]]:
    """Every runtime's ``Options`` (the service-create fields it adds), in registry order."""
    return [runtime_class(n).Options for n in RUNTIMES]


def option_owner() -> dict[str, str]:
    """Which runtime each option field belongs to."""
    return {f: n for n in RUNTIMES for f in runtime_class(n).Options.model_fields}


class Runtimes:
    """The runtimes of one daemon (one AIMA_HOME), each made on first use."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._made: dict[str, Runtime] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Runtime:
        rt = self._made.get(name)
        if rt is None:
            with self._lock:
                rt = self._made.get(name)
                if rt is None:
                    rt = self._made[name] = runtime_class(name)(self.settings)
        return rt

    def all(self) -> list[Runtime]:
        return [self.get(n) for n in RUNTIMES]

    def live(self) -> list[Runtime]:
        """The runtimes that answer now (each ``available`` never hangs)."""
        return [rt for rt in self.all() if rt.available()]

    def port_holder(self, port: int) -> str | None:
        """Who listens on ``port`` on this machine, from the most specific runtime that can tell."""
        for rt in reversed(self.live()):
            who = rt.port_holder(port)
            if who:
                return who
        return None

    def elsewhere(self, asked: str) -> list[tuple[str, str, dict[str, Any]]]:
        """(runtime, machine, its hardware facts) for every machine beyond this one that ``--runtime asked``
        (a name or ``auto``) may run a service on: the nodes of an attached cluster."""
        out = []
        for name in RUNTIMES:
            if asked not in ("auto", name):
                continue
            rt = self.get(name)
            places = getattr(rt, "elsewhere", None)
            if places is not None:
                out += [(name, label, facts) for label, facts in places()]
        return out

    def choose(self, asked: str, plan: ServicePlan) -> tuple[str, str, Definition]:
        """(runtime, why, its definition of the service) for ``--runtime asked`` (a name or ``auto``)."""
        from aima.runtimes.choice import choose

        name, why = choose(asked, plan, {n: self.get(n) for n in RUNTIMES})
        return name, why, self.get(name).define(plan)

    def close(self) -> None:
        for rt in self._made.values():
            close = getattr(rt, "close", None)
            if close is not None:
                close()
