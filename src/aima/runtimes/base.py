"""The Runtime protocol: the one seam between the controller and the processes it manages."""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

# ``on_event(kind, message, data)``: a runtime tells the controller about a long step (an image pull).
EventFn = Callable[[str, str, dict[str, Any]], None]


@dataclass
class LaunchSpec:
    """Everything a runtime needs to start one instance."""

    service_id: str
    instance_id: str
    replica: int
    argv: list[str]
    host: str
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    service_name: str = ""
    model: str = ""
    engine: str = ""
    # What a container runtime needs beyond the command (images, mounts, limits, GPUs, network): the
    # service's ``runtime_options`` as stored; a process runtime ignores them.
    options: dict[str, Any] = field(default_factory=dict)
    on_event: EventFn | None = None


@dataclass
class Handle:
    """What identifies a launched instance; stored with the instance and used to re-adopt it."""

    runtime: str
    pid: int | None
    start_time: float | None
    cmdline: list[str]
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "pid": self.pid, "start_time": self.start_time,
                "cmdline": self.cmdline, "data": self.data}

    @property
    def launched(self) -> bool:
        """Something was started for it (a pid, or a container that may have exited already)."""
        return bool(self.pid or self.data.get("container"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Handle:
        return cls(runtime=d.get("runtime", "native"), pid=d.get("pid"), start_time=d.get("start_time"),
                   cmdline=list(d.get("cmdline") or []), data=dict(d.get("data") or {}))


def describe_exit(code: int | None) -> str:
    """An exit status in words; negative codes are signals (as for a process, and 128+N from a container)."""
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class Observation:
    alive: bool
    exit_code: int | None = None
    detail: str = ""


class Runtime(Protocol):
    name: str

    def available(self) -> bool:
        """Can instances be started now (a container runtime: its daemon answers)? Never hangs."""

    def engine_host(self, host: str, options: dict[str, Any]) -> str:
        """The address the engine itself must listen on for the instance to be reachable at ``host``
        (inside a container with its own network: all of its interfaces)."""

    def start(self, spec: LaunchSpec) -> Handle:
        """Launch detached; return once the process exists (not when it is ready)."""

    def observe(self, handle: Handle) -> Observation:
        """Is the instance this handle identifies still alive? Never trusts a bare pid."""

    def stop(self, handle: Handle, grace_s: float) -> int | None:
        """Terminate the whole instance (grace, then kill), reap it, return its exit code if known."""

    def discover(self, home: Path) -> list[tuple[str, str, Handle]]:
        """Live instances carrying this home's marks: (service_id, instance_id, handle)."""

    def port_holder(self, port: int) -> str | None:
        """Who listens on this port, in words, or None."""
