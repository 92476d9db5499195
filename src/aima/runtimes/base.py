"""The Runtime contract: the one seam between the controller and what it runs.

A runtime is one module with one class satisfying :class:`Runtime`, plus one line in the registry
(``aima.runtimes.RUNTIMES``). Nothing outside ``aima.runtimes`` names a runtime: the controller and the
operations only call what is declared here.

What a runtime answers, in the order a service meets it:

- at ``service create``: the fields it adds to the create input (``Options``: ``--image``, ``--node``...);
  whether it can run a service's plan (``claims``: it must; ``consider``: it could, and why); the
  options stored with the service (``define``; refusing with ``InvalidInput``/``Unavailable`` when it
  cannot run the plan); and the command as it stores it (``adapt_command``);
- at each launch: where the instance runs (``place`` → a :class:`Placement`: the address its engine is
  reached at and the node), a port there (``allocate_port``, or ``check_port`` for an explicit one,
  bind-tested where the engine will listen), the address the engine itself listens on
  (``engine_host``), then ``start``; a placement never started is given back with ``release``;
- while it runs: ``observe_many`` (many instances in one call), ``stop`` (the whole instance: grace,
  kill, reap, and back only once its port is free where it ran), ``owned`` (every instance carrying
  this home's marks: re-adoption after a daemon restart and orphan cleanup), ``port_holder``.

Three optional methods, for a runtime that reaches beyond this machine: ``attach()`` (connect at daemon
start; raise ``Unavailable`` naming the peer, and the daemon does not start), ``cluster(detail)`` (its
nodes, for ``aima cluster status``; None when no cluster is attached) and ``elsewhere()`` (the machines
it could run a service on, each as ``(label, hardware facts)``: a model that does not fit the daemon's
own machine is resolved against them, and one that fits there is its to run). The daemon and the
operations look for them on every runtime, so none names one. Such a runtime's ``define`` sets
``Definition.fetches_model`` when the machine an instance runs on pulls the model itself: the daemon's
machine then need not hold it.

``blocking`` runtimes talk to another process (a container daemon, a cluster): the controller calls
every method of theirs in a worker thread, so a slow or hung peer never stalls the event loop that also
serves the API and the gateway. A non-blocking runtime's methods return in microseconds.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict

# ``on_event(kind, message, data)``: a runtime tells the controller about a long step (an image pull).
EventFn = Callable[[str, str, dict[str, Any]], None]


class Options(BaseModel):
    """Base of a runtime's ``Options``: the service-create fields it adds, each optional (None or empty when
    not given). Field names are shared by every surface (``--image`` on the CLI is ``images`` in JSON)."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class ServicePlan:
    """A service about to be created, as the runtimes see it: the runtime is chosen, and its options fixed,
    from this."""

    model: str
    engine: str  # a catalog engine, or "custom" (a user's --command)
    command: str  # the command template: {port}, {host}, {model} filled at each launch
    given: dict[str, Any] = field(default_factory=dict)  # the runtime option fields the user gave (by name)
    argv: list[str] = field(default_factory=list)  # the catalog plan's argv (empty for custom)
    prefer: str | None = None  # the engine's preferred runtime (catalog ``runtime.prefer``)
    python_modules: list[str] = field(default_factory=list)  # what a native start must import
    images: list[Any] = field(default_factory=list)  # the catalog's image candidates (catalog.schema.Image)
    engine_runtime: Any = None  # the catalog engine's ``runtime`` entry (network, shm_size), None for custom
    model_path: str | None = None  # the model's file or folder on this machine
    gpu: dict[str, Any] | None = None  # {"vendor", "indexes"} when the plan runs on GPUs
    memory_bytes: int | None = None  # what it needs per device, when known
    devices: list[str] = field(default_factory=list)  # cpu, gpu0, ...
    fits_here: bool = True  # the plan fits the daemon's own machine
    fits_on: str | None = None  # when it does not: the machine elsewhere it was resolved for
    model_present: bool = True  # the model's weights are at model_path on this machine
    source_spec: str | None = None  # the model store's spec of where the weights come from
    model_type: str | None = None  # llm, embedding, asr, tts...

    @property
    def custom(self) -> bool:
        return self.engine == "custom"


@dataclass
class Verdict:
    """Could a runtime run a plan, and why (a clause: "it is installed here", "Docker answers")."""

    usable: bool
    why: str
    fallback: bool = False  # chosen when no runtime is usable: its own start then says what is missing


@dataclass
class Definition:
    """What ``define`` fixes for a service: its stored ``runtime_options``, and the command when this
    runtime stores it differently (a container runs the image's ``python3``, not this machine's)."""

    options: dict[str, Any] = field(default_factory=dict)
    command: str | None = None
    fetches_model: bool = False  # the machine each instance runs on pulls the model itself


@dataclass
class Placement:
    """Where an instance runs, decided before its command is rendered."""

    host: str  # the address its engine is reached at: 127.0.0.1 here, the node's IP on another machine
    node: str | None = None  # the node's id (None: the daemon's own machine)
    data: dict[str, Any] = field(default_factory=dict)  # the runtime's own (e.g. its actor's name)


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
    # The service's stored ``runtime_options`` (what ``define`` returned): images, mounts, limits, GPUs,
    # network, a node, resources.
    options: dict[str, Any] = field(default_factory=dict)
    placement: Placement | None = None
    on_event: EventFn | None = None


@dataclass
class Handle:
    """What identifies a launched instance; stored with the instance and used to re-adopt it. ``host`` and
    ``port`` are where its engine listens (filled from the instance's record by the controller)."""

    runtime: str
    pid: int | None
    start_time: float | None
    cmdline: list[str]
    data: dict[str, Any] = field(default_factory=dict)
    host: str | None = None
    port: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "pid": self.pid, "start_time": self.start_time,
                "cmdline": self.cmdline, "data": self.data}

    @property
    def launched(self) -> bool:
        """Something was started for it (a pid, a container, an actor), which may have exited already."""
        return bool(self.pid or self.data.get("container") or self.data.get("actor"))

    def describe(self) -> str:
        """The instance in words: what its runtime calls it (``data["label"]``), else its process."""
        if self.data.get("label"):
            return str(self.data["label"])
        if self.data.get("container"):
            return f"container {self.data.get('name') or str(self.data['container'])[:12]}"
        return f"pid {self.pid}"

    @classmethod
    def from_dict(cls, d: dict[str, Any], host: str | None = None, port: int | None = None) -> Handle:
        return cls(runtime=d.get("runtime", "native"), pid=d.get("pid"), start_time=d.get("start_time"),
                   cmdline=list(d.get("cmdline") or []), data=dict(d.get("data") or {}), host=host, port=port)


class Owned(NamedTuple):
    """An instance found carrying this home's marks."""

    service_id: str
    instance_id: str
    handle: Handle


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
    describe: str  # how an instance of it runs, after "it runs": "natively", "in a container"
    applies_to: str  # what its options apply to, after "--x applies to": "containers"
    Options: ClassVar[type[Options]]
    blocking: bool

    # -- availability and choice (service create)
    def available(self) -> bool:
        """Can instances be started now (a container runtime: its daemon answers)? Never hangs."""

    def claims(self, plan: ServicePlan) -> str | None:
        """Why this runtime must run ``plan`` under ``--runtime auto`` (``--image`` was given; it does not
        fit this machine but a cluster is attached), or None. Cheap: no peer is asked."""

    def consider(self, plan: ServicePlan) -> Verdict:
        """Could it run ``plan`` now, and why (for ``--runtime auto``)."""

    def define(self, plan: ServicePlan) -> Definition:
        """The options stored with a service this runtime runs; ``InvalidInput`` or ``Unavailable`` (one line
        saying what to do) when it cannot run ``plan``."""

    def adapt_command(self, command: str) -> str:
        """The command template as this runtime stores it."""

    # -- launch
    def place(self, spec: LaunchSpec) -> Placement:
        """Where this instance runs (``spec.argv``, ``host`` and ``port`` are not known yet); raise
        ``Unavailable`` naming what is missing when nowhere fits."""

    def allocate_port(self, where: Placement, lo: int, hi: int, reserved: set[int], prefer: int | None) -> int:
        """A free port in ``lo..hi`` where the engine will listen (``prefer`` first when free), skipping
        ``reserved`` and anything listening; bind-tested there."""

    def check_port(self, where: Placement, port: int) -> str | None:
        """None when ``port`` is free where the engine will listen, else who holds it, in words."""

    def engine_host(self, where: Placement, options: dict[str, Any]) -> str:
        """The address the engine itself must listen on to be reached at ``where.host`` (in a container with
        its own network: all of its interfaces)."""

    def release(self, where: Placement) -> None:
        """Give back a placement whose instance was never started."""

    def start(self, spec: LaunchSpec) -> Handle:
        """Launch detached; return once the instance exists (not when it is ready)."""

    # -- while it runs
    def observe_many(self, handles: list[Handle]) -> list[Observation]:
        """Is each instance still alive (in order)? Never trusts a bare pid."""

    def stop(self, handle: Handle, grace_s: float) -> int | None:
        """Terminate the whole instance (grace, then kill), reap it, wait until its port is free where it ran
        (``handle.host``/``handle.port``), return its exit code if known."""

    def owned(self) -> list[Owned]:
        """Every instance carrying this home's marks, live or just ended."""

    def port_holder(self, port: int) -> str | None:
        """Who listens on ``port`` on this machine, as this runtime sees it, in words, or None."""
