"""Service operations: create, start, stop, restart, delete, list, get, logs (lifecycle rules 1-12)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from aima import runtimes
from aima.controller import logs as logfiles
from aima.controller.launch import COMMAND_PATTERN, render_command
from aima.domain.names import NAME_PATTERN, name_from_model, new_service_id, valid_name
from aima.domain.states import RestartPolicy
from aima.domain.units import SIZE_PATTERN, parse_bytes
from aima.errors import Conflict, InsufficientMemory, InvalidInput, NotFound
from aima.ops.context import Context
from aima.ops.models import TRIMMED, Input, Output, cli
from aima.ops.registry import Cli, operation
from aima.runtimes.base import ServicePlan
from aima.store.repositories import ACTIVE_NAMES
from aima.store.tables import InstanceRow, ServiceRow

# ``--runtime``: a registered runtime, or auto (the engine's preference and what is available).
RuntimeName = Literal[(*runtimes.names(), "auto")]  # type: ignore[valid-type]
SERVICE_COLUMNS = ("name", "id", "model", "engine", "state", "ready", "endpoint", "restarts", "message")


# ---------------------------------------------------------------------------- shapes
class InstanceView(Output):
    id: str
    replica: int
    runtime: str
    state: str
    ready: bool
    pid: int | None
    host: str
    node: str | None = Field(None, description="the cluster node it runs on (none: the daemon's machine)")
    port: int | None
    log_path: str | None
    exit_code: int | None
    message: str | None
    created_at: float
    ready_at: float | None
    container: str | None = Field(None, description="the container's id (docker runtime)")


class ServiceView(Output):
    id: str
    name: str
    model: str
    engine: str
    runtime: str
    runtime_reason: str | None = Field(None, description="why this runtime was chosen")
    images: list[str] = Field(default_factory=list, description="container image candidates, in priority order")
    state: str
    desired: str
    ready: bool
    endpoint: str | None
    ports: list[int]
    replicas: int
    restarts: int
    restart_policy: str
    message: str | None
    command: str | None
    health: str | None
    health_timeout_s: float | None
    config: dict[str, str]
    env: dict[str, str]
    idle_ttl_s: float | None = None
    pinned: bool = False
    memory_bytes: int | None = None
    devices: list[str] = []
    created_at: float
    updated_at: float
    instances: list[InstanceView] = []


def _instance_view(r: InstanceRow) -> InstanceView:
    container = ((r.handle or {}).get("data") or {}).get("container")
    return InstanceView(id=r.id, replica=r.replica, runtime=r.runtime, state=r.state, ready=r.ready,
                        pid=r.pid, host=r.host, node=r.node, port=r.port, log_path=r.log_path, exit_code=r.exit_code,
                        message=r.message, created_at=r.created_at, ready_at=r.ready_at, container=container)


def _view(svc: ServiceRow, instances: list[InstanceRow], with_instances: bool = True) -> ServiceView:
    active = [i for i in instances if i.state in ACTIVE_NAMES]
    ready = bool(active) and len([i for i in active if i.ready]) >= svc.replicas
    first = next((i for i in active if i.ready), None)
    opts = svc.runtime_options or {}
    return ServiceView(
        id=svc.id, name=svc.name, model=svc.model, engine=svc.engine, runtime=svc.runtime,
        runtime_reason=opts.get("reason"),
        images=[f"{i.get('name')}:{i.get('tag', 'latest')}" for i in opts.get("images") or []],
        state=svc.state, desired=svc.desired, ready=ready,
        endpoint=f"http://{first.host}:{first.port}" if first else None,
        ports=list(svc.ports or []), replicas=svc.replicas, restarts=svc.restarts,
        restart_policy=svc.restart_policy, message=svc.message, command=svc.command,
        health=svc.health_path, health_timeout_s=svc.health_timeout_s,
        config=dict(svc.config or {}), env=dict(svc.env or {}),
        idle_ttl_s=svc.idle_ttl_s, pinned=bool(svc.pinned), memory_bytes=svc.memory_bytes,
        devices=list(svc.devices or []),
        created_at=svc.created_at, updated_at=svc.updated_at,
        instances=[_instance_view(i) for i in instances] if with_instances else [],
    )


def find_service(ctx: Context, ref: str) -> ServiceRow:
    row = ctx.services.find(ref)
    if row is None:
        raise NotFound(f"service {ref!r} does not exist; `aima service list` shows the services", field="service")
    return row


def load_view(ctx: Context, service_id: str) -> ServiceView:
    svc = ctx.services.get(service_id)
    if svc is None:
        raise NotFound(f"service {service_id} does not exist", field="service")
    return _view(svc, ctx.instances.of(service_id))


# ---------------------------------------------------------------------------- create
ENV_NAME = r"^[^=\x00]+$"  # what an environment variable's name can hold (execve)
NO_NUL = r"^[^\x00]*$"  # an argument or an environment value is a C string


class _CreateFields(Input):
    # the custom engine's rules (_custom_definition), said in JSON Schema too
    model_config = ConfigDict(json_schema_extra={"allOf": [
        {"if": {"required": ["engine"], "properties": {"engine": {"const": "custom"}}},
         "then": {"required": ["command"], "properties": {"command": {"type": "string", "minLength": 1}}}},
        {"if": {"required": ["command"], "properties": {"command": {"type": "string"}}},
         "then": {"properties": {"engine": {"enum": [None, "custom"]}, "config": {"maxProperties": 0},
                                 "command": {"minLength": 1}},
                  "anyOf": [{"properties": {"command": {"pattern": r"\{port\}"}}},
                            {"required": ["port"], "properties": {"port": {"type": "integer"}}}]}},
        # a custom engine in a container runs the image it is given (there is no catalog entry to list one)
        {"if": {"required": ["command", "runtime"], "properties": {"command": {"type": "string"},
                                                                   "runtime": {"const": "docker"}}},
         "then": {"required": ["images"], "properties": {"images": {"minItems": 1}}}}]})

    model: str = Field(min_length=1, max_length=200, pattern=TRIMMED,
                       description="catalog model (or alias); with --command, the name that engine serves")
    name: str | None = Field(None, description="service name (default: the model name)",
                             json_schema_extra={"pattern": NAME_PATTERN})
    engine: str | None = Field(None, description="catalog engine (default: the best for this hardware); "
                                                 "`custom` with --command")
    runtime: RuntimeName = Field(  # type: ignore[valid-type]
        "auto", description="where instances run: " + ", ".join(runtimes.names()) + ", or auto (the engine's "
                            "preference and what is available; the choice and its reason are recorded)")
    command: str | None = Field(None, max_length=16384, pattern=COMMAND_PATTERN,
                                description="custom engine command line with {port} (and {host}, {model}); words "
                                            "split as a POSIX shell does, without running one")
    health: str | None = Field(None, max_length=2048, pattern=r"^/",
                               description="health path answering 200 when ready (default /health)")
    port: int | None = Field(None, ge=1, le=65535, description="explicit port (fails fast if taken)")
    config: dict[str, str] = Field(default_factory=dict, description="engine config keys, k=v",
                                   json_schema_extra={"additionalProperties": {"type": "string", "pattern": NO_NUL}})
    env: dict[str, str] = Field(default_factory=dict, description="extra environment, K=V", json_schema_extra={
        "propertyNames": {"pattern": ENV_NAME}, "additionalProperties": {"type": "string", "pattern": NO_NUL}})
    replicas: int = Field(1, ge=1, le=64, description="number of instances")
    restart: RestartPolicy = Field(RestartPolicy.on_failure, description="restart policy")
    health_timeout_s: float | None = Field(None, gt=0, le=86400, description="seconds to wait for ready",
                                           json_schema_extra=cli("health-timeout"))
    idle_ttl_s: float | None = Field(None, gt=0, le=365 * 86400,
                                     description="stop it after this many seconds without an inference request; "
                                                 "the next request starts it again (load on demand)",
                                     json_schema_extra=cli("idle-ttl"))
    pinned: bool = Field(False, description="never unload it: neither when idle nor to make room for another")
    memory: str | None = Field(None, max_length=32, pattern=SIZE_PATTERN,
                               description="memory it needs per device, e.g. 2GiB (default: the catalog's "
                                           "estimate; unknown for --command)")
    device: str | None = Field(None, pattern=r"^(cpu|gpu[0-9]{1,3})$",
                               description="where that memory is: cpu or gpuN (default: the catalog's; cpu "
                                           "for --command)")

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str | None) -> str | None:
        if v is not None:
            parse_bytes(v)
        return v

    @field_validator("command", mode="before")
    @classmethod
    def _command_words(cls, v: Any) -> Any:  # shlex's own reason, before the pattern that says the same
        if isinstance(v, str):
            try:
                render_command(v, port=1, host="127.0.0.1", model="m")
            except InvalidInput as e:
                raise ValueError(e.message) from None
        return v

    @field_validator("config", "env")
    @classmethod
    def _exec_safe(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:  # what a process can be given
        for k, value in v.items():
            if info.field_name == "env" and not re.fullmatch(ENV_NAME, k):
                raise ValueError(f"{k!r} cannot name an environment variable (it is empty or holds '=' or NUL)")
            if "\x00" in value:
                raise ValueError(f"the value of {k} holds a NUL character")
        return v

    @field_validator("health")
    @classmethod
    def _health_path(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("/"):
            raise ValueError("must be a path starting with '/', e.g. /health")
        return v

class CreateInput(*reversed(runtimes.option_models()), _CreateFields):  # type: ignore[misc]
    """``service create``'s input: the service's fields, then each runtime's options (``--image``...)."""


@operation("service.create", mutating=True, method="POST", path="/services",
           cli=Cli("service", "create", args=("model",)))
async def create(ctx: Context, inp: CreateInput) -> ServiceView:
    """Create a service: serve MODEL with the engine and config the catalog picks for this hardware (or
    any engine with --command). It is not started until `service start`."""
    d, plan = _custom_definition(inp) if inp.command is not None or inp.engine == "custom" else \
        await asyncio.to_thread(_catalog_definition, ctx, inp)
    plan.given = {f: getattr(inp, f) for f in runtimes.option_owner()}
    runtime, reason, definition = await asyncio.to_thread(ctx.runtimes.choose, inp.runtime, plan)
    missing = d.pop("_missing", None)
    if missing and not definition.fetches_model:
        raise _not_here(plan.model, missing)
    d["runtime"], d["runtime_options"] = runtime, {"reason": reason, **definition.options}
    if definition.command is not None:
        d["command"] = definition.command
    return _insert(ctx, inp, d)


def _custom_definition(inp: CreateInput) -> tuple[dict[str, Any], ServicePlan]:
    if inp.engine not in (None, "custom"):
        raise InvalidInput(f"--command runs the 'custom' engine; drop --engine {inp.engine} or drop --command "
                           f"to let the catalog render {inp.engine}'s command", field="command")
    if not inp.command:
        raise InvalidInput("engine 'custom' needs a command: --command \"prog --port {port}\"", field="command")
    if "{port}" not in inp.command and inp.port is None:
        raise InvalidInput("command must contain {port} (so aima can give the engine its port) or an "
                           "explicit --port must be given", field="command")
    if inp.config:
        raise InvalidInput(f"engine 'custom' declares no config keys (got {sorted(inp.config)}); "
                           f"put engine flags in --command", field="config")
    render_command(inp.command, port=1, host="127.0.0.1", model=inp.model)  # parseable?
    from aima import catalog

    memory = parse_bytes(inp.memory) if inp.memory else None
    devices = [inp.device or "cpu"]
    d = {"model": inp.model, "engine": "custom", "command": inp.command, "env": dict(inp.env),
         "health": inp.health, "health_timeout_s": inp.health_timeout_s, "memory_bytes": memory, "devices": devices,
         "engine_spec": catalog.CUSTOM.to_dict()}
    return d, ServicePlan(model=inp.model, engine="custom", command=inp.command, memory_bytes=memory,
                          devices=devices)


def _catalog_definition(ctx: Context, inp: CreateInput) -> tuple[dict[str, Any], ServicePlan]:
    """The catalog's plan for this model on this hardware, as a service definition (lifecycle rule 3:
    the rendered command is stored, so the service runs the same way until it is re-created)."""
    from aima import catalog
    from aima.catalog import loader
    from aima.ops.catalog import ResolveInput, detect_here, plan_for

    resolve_inp = ResolveInput(model=inp.model, engine=inp.engine, config=dict(inp.config))
    facts, fits_on = None, None
    try:
        plan = plan_for(ctx, resolve_inp)
    except InsufficientMemory as here:
        facts, fits_on, plan = _plan_elsewhere(ctx, inp.runtime, resolve_inp, here)
    missing = None
    if not plan.model_path_exists:
        hint = f"pull it with `aima model pull {plan.model}`, or `aima run {plan.model}` pulls and starts it"
        if plan.convert is not None:
            hint = "; ".join(plan.notes) or f"it needs a conversion ({plan.convert.tool}) first"
        missing = f"({plan.format}, variant {plan.variant}) is not on this machine: {hint}"
        # a runtime whose nodes pull the model themselves may still run it: decided once it is chosen
        if plan.convert is not None or not (fits_on or ctx.runtimes.elsewhere(inp.runtime)):
            raise _not_here(plan.model, missing)
    fit = plan.fit
    devices = [f"gpu{i}" for i in fit.gpu_indexes] if fit.device == "gpu" and fit.gpu_indexes else ["cpu"]
    gpu = None
    if fit.device in ("gpu", "unified") and plan.device == "gpu":
        facts = facts or detect_here(ctx)
        chosen = [g for g in facts.gpus if not fit.gpu_indexes or g.index in fit.gpu_indexes]
        if chosen:
            vendor = chosen[0].vendor.lower()
            gpu = {"vendor": vendor, "indexes": [g.index for g in chosen if g.vendor.lower() == vendor]}
    eng = loader.get_catalog(ctx.settings.home).engine(plan.engine)
    memory = parse_bytes(inp.memory) if inp.memory else fit.required_bytes
    devices = [inp.device] if inp.device else devices
    d = {"model": plan.model, "engine": plan.engine, "command": plan.command,
         "env": {**plan.env, **inp.env}, "health": inp.health or plan.health_path,
         "health_timeout_s": inp.health_timeout_s or plan.health_timeout_s, "memory_bytes": memory,
         "devices": devices, "engine_spec": catalog.engine(plan.engine, ctx.settings.home).to_dict(),
         "_missing": missing}
    return d, ServicePlan(
        model=plan.model, engine=plan.engine, command=plan.command, argv=list(plan.argv), prefer=plan.runtime,
        python_modules=list(eng.install.python_modules) if eng is not None else [],
        images=list(plan.images), engine_runtime=eng.runtime if eng is not None else None,
        model_path=plan.model_path, gpu=gpu, memory_bytes=memory, devices=devices, fits_here=fits_on is None,
        fits_on=fits_on, model_present=plan.model_path_exists, source_spec=plan.source_spec,
        model_type=plan.model_type)


def _not_here(model: str, why: str) -> NotFound:
    return NotFound(f"model {model} {why}", field="model")


def _plan_elsewhere(ctx: Context, runtime: str, resolve_inp: Any,
                    here: InsufficientMemory) -> tuple[Any, str, Any]:
    """A model that does not fit this machine, resolved against each machine a runtime ``--runtime`` allows
    reaches (the nodes of an attached cluster): (that machine's facts, its name, the plan) for the first
    where it fits; else the refusal for this machine, saying that no node has room either."""
    from aima.hardware.facts import HardwareFacts
    from aima.ops.catalog import plan_for

    places = ctx.runtimes.elsewhere(runtime)
    if not places:
        raise here
    refused = []
    for _, label, raw in places:
        try:
            facts = HardwareFacts.model_validate(raw)
            return facts, label, plan_for(ctx, resolve_inp, facts)
        except InsufficientMemory as e:
            refused.append(f"node {label}: {e.message}")
        except ValueError as e:  # a node's facts this version cannot read
            refused.append(f"node {label}: its hardware facts cannot be read ({e})")
    raise InsufficientMemory(f"{here.message}; nor on any node of the cluster ({'; '.join(refused)})",
                             field=here.field, details=here.details)


def _insert(ctx: Context, inp: CreateInput, d: dict[str, Any]) -> ServiceView:
    name = inp.name if inp.name is not None else name_from_model(d["model"])
    if not valid_name(name):
        raise InvalidInput(f"service name {name!r} is invalid: use letters, digits and . _ : - "
                           f"(up to 128, not starting with a symbol, not like svc-xxxxxxxx)", field="name")
    now = time.time()
    sid = new_service_id()
    if ctx.services.name_taken(name):
        raise Conflict(f"a service named {name!r} already exists; choose another --name or use it", field="name")
    if inp.port is not None:
        held = ctx.services.port_owner(range(inp.port, inp.port + inp.replicas))
        if held is not None:
            raise Conflict(f"port {held[1]} already belongs to service {held[0]!r}; choose another --port",
                           field="port")
    ctx.services.add(ServiceRow(
            id=sid, name=name, model=d["model"], engine=d["engine"], runtime=d["runtime"],
            runtime_options=d.get("runtime_options"), engine_spec=d.get("engine_spec"), command=d["command"],
            health_path=d["health"], health_timeout_s=d["health_timeout_s"], explicit_port=inp.port,
            ports=list(range(inp.port, inp.port + inp.replicas)) if inp.port else [],
            replicas=inp.replicas, config=dict(inp.config), env=d["env"],
            restart_policy=inp.restart.value, idle_ttl_s=inp.idle_ttl_s, pinned=inp.pinned,
            memory_bytes=d.get("memory_bytes"), devices=d.get("devices"),
            desired="stopped", state="created", restarts=0, created_at=now, updated_at=now,
        ))
    reason = (d.get("runtime_options") or {}).get("reason")
    ctx.bus.publish("service.created", f"service {name} created for model {d['model']} ({d['engine']}, runtime "
                                       f"{d['runtime']}: {reason})",
                    service_id=sid, name=name, model=d["model"], engine=d["engine"], config=dict(inp.config),
                    idle_ttl_s=inp.idle_ttl_s, pinned=inp.pinned, runtime=d["runtime"], runtime_reason=reason)
    return load_view(ctx, sid)


# ---------------------------------------------------------------------------- start / stop
class ServiceRef(Input):
    service: str = Field(min_length=1, max_length=200, description="service name or id")


class StartInput(ServiceRef):
    wait: bool = Field(True, description="wait until ready, failed, or the timeout")
    timeout_s: float | None = Field(None, gt=0, le=86400,
                                    description="seconds to wait (default: the engine's health timeout)",
                                    json_schema_extra=cli("timeout"))


class StartOutput(Output):
    outcome: str = Field(description="ready | failed | timeout | starting | stopped")
    message: str
    service: ServiceView


@operation("service.start", mutating=True, method="POST", path="/services/{service}/start",
           cli=Cli("service", "start", args=("service",)))
async def start(ctx: Context, inp: StartInput) -> StartOutput:
    """Start a service and (by default) wait until it is ready. Idempotent on a ready service."""
    svc = find_service(ctx, inp.service)
    res = await ctx.reconciler.ensure_running(svc.id, wait=inp.wait, timeout_s=inp.timeout_s)
    return StartOutput(outcome=res.outcome, message=res.message, service=load_view(ctx, svc.id))


@operation("service.stop", mutating=True, method="POST", path="/services/{service}/stop",
           cli=Cli("service", "stop", args=("service",)))
async def stop(ctx: Context, inp: ServiceRef) -> ServiceView:
    """Stop every instance of a service (idempotent); returns once its ports are free."""
    svc = find_service(ctx, inp.service)
    await ctx.reconciler.ensure_stopped(svc.id)
    return load_view(ctx, svc.id)


@operation("service.restart", mutating=True, method="POST", path="/services/{service}/restart",
           cli=Cli("service", "restart", args=("service",)))
async def restart(ctx: Context, inp: StartInput) -> StartOutput:
    """Stop, then start a service (keeping its ports), waiting like `service start`."""
    svc = find_service(ctx, inp.service)
    await ctx.reconciler.ensure_stopped(svc.id)
    res = await ctx.reconciler.ensure_running(svc.id, wait=inp.wait, timeout_s=inp.timeout_s)
    return StartOutput(outcome=res.outcome, message=res.message, service=load_view(ctx, svc.id))


class DeleteOutput(Output):
    deleted: str
    name: str


@operation("service.delete", mutating=True, method="DELETE", path="/services/{service}",
           cli=Cli("service", "delete", args=("service",)))
async def delete(ctx: Context, inp: ServiceRef) -> DeleteOutput:
    """Stop a service and forget it: its record, instances and routes are removed."""
    svc = find_service(ctx, inp.service)
    await ctx.reconciler.forget(svc.id)
    return DeleteOutput(deleted=svc.id, name=svc.name)


# ---------------------------------------------------------------------------- reads
class ListInput(Input):
    state: str | None = Field(None, description="only services in this state")
    model: str | None = Field(None, description="only services of this model")


class ListOutput(Output):
    services: list[ServiceView]


@operation("service.list", mutating=False, method="GET", path="/services",
           cli=Cli("service", "list", table="services", columns=SERVICE_COLUMNS))
async def list_(ctx: Context, inp: ListInput) -> ListOutput:
    """List services with their live state (records are reconciled with reality first)."""
    await ctx.reconciler.refresh()
    services = ctx.services.list(state=inp.state, model=inp.model)
    by_service = ctx.instances.by_service()
    return ListOutput(services=[_view(svc, by_service.get(svc.id, [])) for svc in services])


@operation("service.get", mutating=False, method="GET", path="/services/{service}",
           cli=Cli("service", "status", args=("service",)))
async def get(ctx: Context, inp: ServiceRef) -> ServiceView:
    """One service with its instances: pid, port, state, readiness, exit code and last message."""
    svc = find_service(ctx, inp.service)
    await ctx.reconciler.refresh([svc.id])
    return load_view(ctx, svc.id)


class LogsInput(ServiceRef):
    lines: int = Field(100, ge=1, le=100000, description="how many of the last lines",
                       json_schema_extra=cli(short="-n"))
    replica: int = Field(0, ge=0, le=63, description="which replica's log")
    offset: int | None = Field(None, ge=0, description="byte offset to read from (for following)",
                               json_schema_extra=cli(hidden=True))


class LogsOutput(Output):
    service: str
    path: str
    lines: list[str]
    offset: int


@operation("service.logs", mutating=False, method="GET", path="/services/{service}/logs",
           cli=Cli("service", "logs", args=("service",)))
async def logs(ctx: Context, inp: LogsInput) -> LogsOutput:
    """The engine's log lines (stdout and stderr) for one replica of a service."""
    svc = find_service(ctx, inp.service)
    if inp.replica >= svc.replicas:
        raise NotFound(f"service {svc.name} has {svc.replicas} replica(s); replica {inp.replica} "
                       f"does not exist", field="replica")
    path = logfiles.log_path(ctx.settings.logs_dir, svc.id, inp.replica)
    if inp.offset is not None:
        lines, offset = logfiles.read_from(path, inp.offset)
    else:
        lines = logfiles.tail(path, inp.lines)
        offset = _size(path)
    return LogsOutput(service=svc.name, path=str(path), lines=lines, offset=offset)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


# ---------------------------------------------------------------------------- run
class RunInput(Input):
    model: str = Field(min_length=1, max_length=200, description="catalog model name or alias")
    engine: str | None = Field(None, description="catalog engine (default: the best for this hardware)")
    config: dict[str, str] = Field(default_factory=dict, description="engine config keys, k=v (they win)")
    name: str | None = Field(None, description="service name (default: the model name)")
    pull: bool = Field(True, description="pull the model when it is not on this machine")
    runtime: RuntimeName = Field(  # type: ignore[valid-type]
        "auto", description="where it runs: " + ", ".join(runtimes.names()) + ", or auto (the engine's preference "
                            "and what is available)")
    wait: bool = Field(True, description="wait until ready, failed, or the timeout")
    timeout_s: float | None = Field(None, gt=0, le=86400,
                                    description="seconds to wait (default: the engine's health timeout)",
                                    json_schema_extra=cli("timeout"))


class RunOutput(StartOutput):
    pulled: bool = Field(description="the model was pulled by this call")
    reused: bool = Field(description="an existing service with the same definition was used")


StepFn = Callable[..., None]


def _no_step(step: str, message: str, **data: Any) -> None:
    pass


@operation("service.run", mutating=True, method="POST", path="/run", cli=None)
async def run(ctx: Context, inp: RunInput) -> RunOutput:
    """Resolve MODEL for this hardware, pull it if missing, create the service (or reuse an identical
    one), start it and wait until it is ready. Running it again changes nothing that is already right."""
    return await run_steps(ctx, inp)


async def run_steps(ctx: Context, inp: RunInput, on_step: StepFn | None = None) -> RunOutput:
    """``service.run``'s path, telling ``on_step(step, message, **data)`` where it is: ``resolved``
    (data: model, model_type, engine, variant), ``pull``, ``pulled``, ``create`` or ``reuse``, ``start``."""
    from aima.ops.catalog import ResolveInput, plan_for

    step = on_step or _no_step
    resolve_inp = ResolveInput(model=inp.model, engine=inp.engine, config=dict(inp.config))
    node = None
    try:
        plan = await asyncio.to_thread(plan_for, ctx, resolve_inp)
    except InsufficientMemory as here:  # too big for this machine: a node of an attached cluster may run it
        _, node, plan = await asyncio.to_thread(_plan_elsewhere, ctx, inp.runtime, resolve_inp, here)
    step("resolved", f"{plan.engine} ({plan.variant}, {plan.device})" + (f" on node {node}" if node else ""),
         model=plan.model, model_type=plan.model_type, engine=plan.engine, variant=plan.variant, node=node)
    pulled = False
    if not plan.model_path_exists and inp.pull and node is None:  # pull, then convert when the variant says so
        # (a node pulls what it runs itself: nothing of a model this machine cannot hold is stored here)
        from aima.ops.model import _run_pull, options_of

        step("pull", f"pulling {plan.source_spec}")
        await _run_pull(ctx, inp.model, plan.source_spec, name=plan.model, mtype=plan.model_type,
                        sha256=plan.source.sha256, size=int(plan.source.size_bytes or 0) or None, force=False,
                        options=options_of(ctx), convert=plan.convert)
        pulled = True
        step("pulled", "pulled")
        plan = await asyncio.to_thread(plan_for, ctx, resolve_inp)  # the command now names the stored copy
    create_inp = CreateInput(model=plan.model, name=inp.name, engine=plan.engine, config=dict(inp.config),
                             runtime=inp.runtime)
    existing = _identical(ctx, create_inp, plan.command)
    if existing is None:
        view = await create(ctx, create_inp)
        sid, reused = view.id, False
        step("create", f"created service {view.name} (runtime {view.runtime}: {view.runtime_reason})",
             service=view.name, service_id=sid, runtime=view.runtime, runtime_reason=view.runtime_reason)
    else:
        sid, reused = existing.id, True
        step("reuse", f"using service {existing.name}", service=existing.name, service_id=sid)
    step("start", "starting the engine, waiting until ready" if inp.wait else "starting the engine",
         service_id=sid)
    res = await ctx.reconciler.ensure_running(sid, wait=inp.wait, timeout_s=inp.timeout_s)
    return RunOutput(outcome=res.outcome, message=res.message, service=load_view(ctx, sid), pulled=pulled,
                     reused=reused)


def _identical(ctx: Context, inp: CreateInput, command: str) -> ServiceRow | None:
    """A service with the same model, engine, command and config (by name when one is given)."""
    rows = ctx.services.list(model=inp.model, engine=inp.engine)
    same = [r for r in rows if dict(r.config or {}) == dict(inp.config)
            and r.command == ctx.runtimes.get(r.runtime).adapt_command(command)
            and (inp.runtime == "auto" or r.runtime == inp.runtime)]
    if inp.name is not None:
        named = [r for r in same if r.name == inp.name]
        if not named:
            try:
                other = find_service(ctx, inp.name)
            except NotFound:
                return None
            raise Conflict(f"a service named {inp.name!r} already exists with another definition "
                           f"(model {other.model}, engine {other.engine}); choose another --name", field="name")
        return named[0]
    return same[0] if same else None
