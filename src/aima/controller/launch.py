"""Launching, observing and stopping instances through their runtime (the reconciler's hands).

A launch: the runtime places the instance (here, or a node of a cluster), a port is found there (an
explicit one is checked and fails at once naming its holder: rule 5), the engine's command is rendered
for that place, the instance is recorded ``starting`` with its log file, and the runtime starts it.
Anything that fails before the start is recorded as a failed instance saying why. Calls into a
blocking runtime (a container daemon, a cluster) run in a worker thread.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from collections.abc import Callable
from typing import Any, TypeVar

from aima.config import Settings
from aima.controller import logs as logfiles
from aima.controller.records import Records, engine_spec
from aima.domain.names import new_instance_id
from aima.domain.states import State
from aima.errors import AimaError, InvalidInput, PortInUse
from aima.runtimes import Runtimes
from aima.runtimes.base import Handle, LaunchSpec, Observation, Placement, Runtime
from aima.store.tables import InstanceRow, ServiceRow

T = TypeVar("T")

# What render_command can split (shlex, POSIX rules: quotes closed, no lone backslash at the end) into at least one
# word, without NUL (an argument is a C string), as clients read it: words of plain characters, backslash escapes,
# '...' and "..." between shlex's blanks.
_WORD = r"[^'\"\\ \t\r\n\x00]|\\[^\x00]|'[^'\x00]*'|\"(?:[^\"\\\x00]|\\[^\x00])*\""
COMMAND_PATTERN = rf"^[ \t\r\n]*(?:{_WORD})(?:{_WORD}|[ \t\r\n])*$"


def render_command(template: str, *, port: int, host: str, model: str) -> list[str]:
    """Split a command template and fill ``{port}``, ``{host}`` and ``{model}`` in each word."""
    if "\x00" in template:
        raise InvalidInput("command holds a NUL character", field="command")
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


def handle_of(inst: InstanceRow) -> Handle:
    """The runtime's handle of an instance, with where its engine listens."""
    return Handle.from_dict(inst.handle or {}, host=inst.host, port=inst.port)


class Launcher:
    def __init__(self, records: Records, runtimes: Runtimes, settings: Settings):
        self.records = records
        self.runtimes = runtimes
        self.settings = settings

    @staticmethod
    async def call(rt: Runtime, fn: Callable[..., T], *args: Any) -> T:
        """Call a runtime: in a worker thread when it talks to another process."""
        if rt.blocking:
            return await asyncio.to_thread(fn, *args)
        return fn(*args)

    # ------------------------------------------------------------------ launch
    async def launch(self, svc: ServiceRow, replica: int, on_event: Any = None) -> tuple[InstanceRow, int]:
        """Launch one replica; (its record, the offset in its log file where this launch's lines begin)."""
        spec_e = engine_spec(svc)
        rt = self.runtimes.get(svc.runtime)
        iid = new_instance_id()
        log_path = logfiles.log_path(self.settings.logs_dir, svc.id, replica)
        spec = LaunchSpec(service_id=svc.id, instance_id=iid, replica=replica, argv=[], host="", port=0,
                          log_path=log_path, env={**spec_e.env, **(svc.env or {})}, service_name=svc.name,
                          model=svc.model, engine=svc.engine, options=dict(svc.runtime_options or {}),
                          on_event=on_event)
        t0 = time.monotonic()
        where: Placement | None = None
        try:
            where = await self.call(rt, rt.place, spec)
            port = await self._port(rt, svc, replica, where)
        except AimaError as e:
            if where is not None:
                await self.call(rt, rt.release, where)
            self._failed_before_start(svc, replica, iid, e, where, time.monotonic() - t0)
            raise
        argv = render_command(svc.command or "", port=port, host=rt.engine_host(where, spec.options),
                              model=svc.model)
        now = time.time()
        self.records.instances.replace(InstanceRow(
            id=iid, service_id=svc.id, replica=replica, runtime=svc.runtime, state=State.starting.value,
            ready=False, host=where.host, node=where.node, port=port, log_path=str(log_path), cmdline=argv,
            handle={}, created_at=now, updated_at=now))
        offset = log_path.stat().st_size if log_path.exists() else 0
        spec.argv, spec.host, spec.port, spec.placement = argv, where.host, port, where
        try:
            handle = await self.call(rt, rt.start, spec)
        except AimaError as e:
            await self.call(rt, rt.release, where)
            inst = self.records.instances.get(iid)
            if inst is not None:
                self.records.set_instance(inst, State.failed, e.message, exit_code=None)
            raise
        row = self.records.update_instance(iid, pid=handle.pid, start_time=handle.start_time,
                                           cmdline=handle.cmdline, handle=handle.to_dict())
        assert row is not None
        where_text = f" on node {where.host}" if where.node else ""
        self.records.bus.publish("instance.starting", f"starting {svc.name} replica {replica}{where_text} on port "
                                                      f"{port}",
                                 service_id=svc.id, instance_id=iid, state="starting", ready=False, host=where.host,
                                 port=port, replica=replica, pid=handle.pid, node=where.node)
        return row, offset

    async def _port(self, rt: Runtime, svc: ServiceRow, replica: int, where: Placement) -> int:
        if svc.explicit_port:
            port = svc.explicit_port + replica
            if not 1 <= port <= 65535:
                raise InvalidInput(f"port {port} is outside 1-65535", field="port")
            who = await self.call(rt, rt.check_port, where, port)
            if who is not None:
                if where.node is None:  # this machine: the most specific runtime names it (a container)
                    who = await asyncio.to_thread(self.runtimes.port_holder, port) or who
                raise PortInUse(f"port {port} requested by service {svc.name} is already in use by {who}; stop that "
                                f"process or choose another --port (or omit --port for an automatic one)",
                                field="port", details={"port": port, "holder": who})
            return port
        ports = list(svc.ports or [])
        prefer = ports[replica] if replica < len(ports) else None
        lo, hi = self.settings.ports
        reserved = self.records.services.reserved_ports(svc.id)
        port = await self.call(rt, rt.allocate_port, where, lo, hi, reserved, prefer)
        while len(ports) <= replica:
            ports.append(0)
        if ports[replica] != port:
            ports[replica] = port
            self.records.update_service(svc.id, ports=ports)
        return port

    def _failed_before_start(self, svc: ServiceRow, replica: int, iid: str, e: AimaError,
                             where: Placement | None, elapsed: float) -> None:
        now = time.time()
        host = where.host if where is not None else "127.0.0.1"
        self.records.instances.replace(InstanceRow(
            id=iid, service_id=svc.id, replica=replica, runtime=svc.runtime, state=State.failed.value, ready=False,
            host=host, node=where.node if where is not None else None, port=svc.explicit_port, cmdline=[],
            handle={}, message=e.message, created_at=now, updated_at=now))
        self.records.bus.publish("instance.failed", e.message, service_id=svc.id, instance_id=iid, state="failed",
                                 ready=False, port=svc.explicit_port, replica=replica, elapsed_s=round(elapsed, 3))

    # ------------------------------------------------------------------ observe
    async def observe(self, inst: InstanceRow) -> Observation:
        return (await self.observe_all([inst]))[inst.id]

    async def observe_all(self, rows: list[InstanceRow]) -> dict[str, Observation]:
        """Is each instance alive? One call per runtime for all of its instances (a blocking runtime's in one
        worker-thread hop)."""
        out: dict[str, Observation] = {}
        by_runtime: dict[str, list[InstanceRow]] = {}
        for r in rows:
            if not r.handle:
                out[r.id] = Observation(alive=False, detail="never launched")
            else:
                by_runtime.setdefault(r.runtime, []).append(r)
        for name, group in by_runtime.items():
            rt = self.runtimes.get(name)
            seen = await self.call(rt, rt.observe_many, [handle_of(r) for r in group])
            out.update(zip([r.id for r in group], seen, strict=True))
        return out

    # ------------------------------------------------------------------ stop
    async def stop(self, inst: InstanceRow, grace_s: float | None = None) -> int | None:
        """Stop the instance where it runs (its whole process group or container), back once its port is free."""
        handle = handle_of(inst)
        if not handle.launched:
            return None
        rt = self.runtimes.get(inst.runtime)
        grace = self.settings.stop_grace_s if grace_s is None else grace_s
        return await asyncio.to_thread(rt.stop, handle, grace)
