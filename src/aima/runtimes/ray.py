"""The ray runtime: instances on the nodes of a Ray cluster the daemon is attached to as a driver.

A team starts Ray with Ray's own commands (``ray start --head`` on one machine, ``ray start --address``
on the others); the daemon attaches with ``aima start --ray ADDRESS`` (``AIMA_RAY_ADDRESS``, ``ray.address``
in config.yaml), in a namespace derived from AIMA_HOME, so two daemons never see each other's instances.

One detached actor per instance (``ray_actor.EngineActor``), named by the instance id:

- ``place`` asks Ray's scheduler for a node with the resources the service asks for (the plan's device and
  memory as ``GPU``/``memory``, plus ``--resources K=V``; every instance asks ``CPU=0.01`` unless it says
  otherwise, so a head started with ``--num-cpus 0`` runs none), pinned with ``--node`` (hard node
  affinity), in a placement group when it spans several GPUs or nodes. A request that no node could ever
  satisfy fails at once, and one that stays pending fails within ``PLACE_TIMEOUT_S``, naming the
  resource and what each node has — never pending forever;
- ports are found and bind-tested by the actor on its node; ``{host}`` is the node's IP;
- ``start`` has the actor make the model available on its node (pulled into that node's AIMA_HOME by
  aima's model store unless the node shares the daemon's; progress as ``model.pull.progress`` events),
  then start the engine; a thread per instance copies the engine's log from the node into the instance's
  log file (so ``aima service logs -f`` works);
- ``observe_many`` asks every actor at once; an actor that does not answer while its node's raylet
  refuses connections is on a lost node, and says which;
- ``owned`` lists the actors of the namespace (re-adoption by name after a daemon restart; the controller
  removes those no record claims).

``cluster()`` describes the nodes for ``cluster.status``: resources, aima's hardware detection run on each
node as a Ray task (cached per node id, so a node that joins is detected once), and when a lost node was
first seen lost. Ray is imported only when the runtime first connects.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from aima.config import Settings
from aima.domain.units import SIZE_PATTERN, parse_bytes
from aima.errors import AimaError, EngineError, InvalidInput, NotFound, Unavailable
from aima.runtimes.base import (
    Definition,
    Handle,
    LaunchSpec,
    Observation,
    Owned,
    Placement,
    ServicePlan,
    Verdict,
    describe_exit,
)
from aima.runtimes.base import Options as BaseOptions

log = logging.getLogger("aima.runtimes.ray")

PLACE_TIMEOUT_S = 8.0  # a request still pending after this fails, naming what each node has
CALL_TIMEOUT_S = 10.0  # one call to an actor (ports, start)
OBSERVE_TIMEOUT_S = 1.0  # an actor that has not answered by then is checked for a lost node
CONNECT_TIMEOUT_S = 3.0
DEFAULT_CPU = 0.01
HARDWARE_WAIT_S = 5.0  # cluster(): how long the first detection on a new node may be waited for
PULL_TIMEOUT_S = 6 * 3600.0


NUMBER = r"^[0-9]{1,12}(\.[0-9]{1,6})?$"  # a resource amount
RESOURCE_NAME = r"^[A-Za-z_][A-Za-z0-9_:.-]{0,63}$"


def namespace_for(home: Path | None) -> str:
    """aima's Ray namespace for one AIMA_HOME."""
    real = os.path.realpath(str(home or Path.home() / ".aima"))
    return "aima-" + hashlib.sha256(real.encode()).hexdigest()[:12]


class RayOptions(BaseOptions):
    """What ``service create`` takes for a Ray cluster (the ray runtime's flags)."""

    node: str | None = Field(None, max_length=200, pattern=r"^[A-Za-z0-9.:_-]+$",
                             description="run on this node of the Ray cluster only: its IP or node id (ray)")
    resources: dict[str, str] = Field(default_factory=dict, max_length=32, json_schema_extra={
                                          "propertyNames": {"pattern": RESOURCE_NAME},
                                          "patternProperties": {"^memory$": {"type": "string",
                                                                             "pattern": SIZE_PATTERN}},
                                          "additionalProperties": {"type": "string", "pattern": NUMBER}},
                                      description="Ray resources asked for besides the plan's, K=V: GPU=1, CPU=2, "
                                                  "memory=8GiB or any custom resource (ray)")

    @field_validator("resources")
    @classmethod
    def _resources(cls, v: dict[str, str]) -> dict[str, str]:
        parse_resources(v)
        return v


def parse_resources(given: dict[str, str]) -> dict[str, float]:
    """``K=V`` Ray resources as numbers (``memory`` may be a size: 8GiB); exactly what the schema states."""
    out: dict[str, float] = {}
    for key, v in given.items():
        if not re.fullmatch(RESOURCE_NAME, key):
            raise ValueError(f"resource name {key!r} is not a name like GPU, CPU, memory or accelerator_type:A100")
        text = str(v)
        if not re.fullmatch(SIZE_PATTERN if key == "memory" else NUMBER, text):
            raise ValueError(f"resource {key}={text} is not a number" + (" or a size like 8GiB" if key == "memory"
                                                                         else " like 1 or 0.5"))
        value = float(parse_bytes(text)) if key == "memory" else float(text)
        out[key] = value
    return out


def plan_request(plan: ServicePlan) -> dict[str, float]:
    """The Ray resources a plan asks for: its GPUs and its memory (per GPU on GPUs, else host memory)."""
    req: dict[str, float] = {}
    gpus = len((plan.gpu or {}).get("indexes") or []) or sum(1 for d in plan.devices if d.startswith("gpu"))
    if gpus:
        req["GPU"] = float(gpus)
    elif plan.memory_bytes:
        req["memory"] = float(plan.memory_bytes)
    return req


def merged_request(options: dict[str, Any]) -> dict[str, float]:
    """What an instance asks Ray for: the plan's request, then ``--resources`` (which wins per key)."""
    req = {"CPU": DEFAULT_CPU, **(options.get("plan_request") or {}), **parse_resources(options.get("resources") or {})}
    return {k: float(v) for k, v in req.items() if float(v) > 0}


def fmt_resources(res: dict[str, float], keys: list[str] | None = None) -> str:
    from aima.domain.units import size_text

    shown = [k for k in (keys or sorted(res)) if not k.startswith("node:") and k != "object_store_memory"]
    parts = []
    for k in shown:
        v = float(res.get(k, 0.0))
        parts.append(f"{k}={size_text(int(v))}" if k == "memory" else f"{k}={v:g}")
    return ", ".join(parts) or "nothing"


def satisfies(have: dict[str, float], need: dict[str, float]) -> bool:
    return all(float(have.get(k, 0.0)) + 1e-9 >= v for k, v in need.items())


# ---------------------------------------------------------------------------- vLLM across nodes
def parallel_sizes(gpus_needed: int, node_gpus: list[int]) -> tuple[int, int]:
    """(tensor parallel, pipeline parallel) for a model that needs ``gpus_needed`` GPUs on nodes with
    ``node_gpus`` GPUs each (a recorded cluster shape): tensor parallel within a node, pipeline stages
    across nodes. ``Unavailable`` when the cluster has too few GPUs."""
    if gpus_needed <= 0:
        raise InvalidInput("a distributed plan needs at least one GPU")
    shapes = sorted((g for g in node_gpus if g > 0), reverse=True)
    if not shapes:
        raise Unavailable(f"the model needs {gpus_needed} GPUs and no node of the Ray cluster has a GPU")
    if shapes[0] >= gpus_needed:
        return gpus_needed, 1
    # Tensor parallel is the largest power of two every used node can hold; stages make up the rest.
    for tp in sorted({1 << i for i in range(int(math.log2(shapes[0])) + 1)}, reverse=True):
        pp = math.ceil(gpus_needed / tp)
        if sum(1 for g in shapes if g >= tp) >= pp:
            return tp, pp
    raise Unavailable(f"the model needs {gpus_needed} GPUs; the Ray cluster's nodes have "
                      f"{', '.join(str(g) for g in node_gpus)}")


def distributed_args(argv: list[str], flags: dict[str, str], tp: int, pp: int) -> list[str]:
    """``argv`` with the engine's tensor/pipeline parallel flags set and, across nodes, its executor backend
    set to Ray (``flags``: role → flag, from the engine's catalog entry)."""
    out = list(argv)

    def put(flag: str | None, value: str) -> None:
        if not flag:
            return
        for i, w in enumerate(out):
            if w == flag and i + 1 < len(out):
                out[i + 1] = value
                return
            if w.startswith(flag + "="):
                out[i] = f"{flag}={value}"
                return
        out.extend([flag, value])

    put(flags.get("tensor_parallel"), str(tp))
    if pp > 1 or tp > 1:
        put(flags.get("pipeline_parallel"), str(pp)) if pp > 1 else None
        put(flags.get("distributed_executor"), "ray")
    return out


def bundles_for(request: dict[str, float], node_gpus: list[int]) -> tuple[list[dict[str, float]], str] | None:
    """Placement-group bundles and strategy for a request that spans several GPUs (one node: STRICT_PACK) or
    several nodes (one bundle per node: STRICT_SPREAD); None for a plain one-actor request."""
    gpus = int(request.get("GPU", 0))
    if gpus <= 1:
        return None
    per_node = max(node_gpus or [0])
    if per_node >= gpus:
        return [dict(request)], "STRICT_PACK"
    tp, pp = parallel_sizes(gpus, node_gpus)
    first = {**request, "GPU": float(tp)}
    rest = {"GPU": float(tp), "CPU": DEFAULT_CPU}
    return [first, *[dict(rest) for _ in range(pp - 1)]], "STRICT_SPREAD"


class _NodeDied(Unavailable):
    """An actor was placed on a node that had died before Ray's health checks said so."""


# ---------------------------------------------------------------------------- log copying
class _Follower:
    """Copies an engine's log from its node into the instance's log file until told to stop."""

    def __init__(self, rt: RayRuntime, name: str, path: Path):
        self.rt, self.name, self.path = rt, name, path
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"ray-logs-{name}")
        self.thread.start()

    def _run(self) -> None:
        misses = 0
        idle = 0.1
        while not self.stopped.is_set() and misses < 40:
            try:
                got = self.pull()
                misses = 0
            except Exception:  # noqa: BLE001 - the actor is busy or gone: try a few more times, then end
                misses += 1
                got = 0
            # New lines are fetched again at once; a quiet engine is asked less and less often (up to 1 s).
            idle = 0.05 if got else min(idle * 1.5, 1.0)
            self.stopped.wait(idle)

    def pull(self) -> int:
        ray = self.rt._ray
        actor = self.rt._actor(self.name)
        data: bytes = ray.get(actor.read_log.remote(), timeout=5)
        if data:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab", buffering=0) as f:
                f.write(data)
        return len(data)

    def drain(self) -> None:
        self.stopped.set()
        self.thread.join(6)
        for _ in range(20):
            try:
                if not self.pull():
                    break
            except Exception:  # noqa: BLE001
                break


class RayRuntime:
    name = "ray"
    describe = "on a Ray cluster"
    applies_to = "Ray clusters"
    Options: ClassVar[type[BaseOptions]] = RayOptions
    blocking = True  # every call asks the cluster

    def __init__(self, settings: Settings) -> None:
        self.address: str | None = getattr(settings, "ray_address", None) or None
        self.home = settings.home
        self.namespace = namespace_for(settings.home)
        self.source_options = {"hf_endpoint": settings.hf_endpoint, "ms_endpoint": settings.ms_endpoint}
        self._last_node: dict[tuple[str, int], str] = {}  # (service, replica) -> the node it last ran on
        self._lock = threading.RLock()
        self._ray: Any = None
        self._Actor: Any = None
        self._detect: Any = None
        self._down: tuple[float, str] | None = None
        self._actors: dict[str, Any] = {}
        self._followers: dict[str, _Follower] = {}
        self._exits: dict[str, Observation] = {}
        self._lost: dict[str, float] = {}  # node id -> when it was first seen lost
        self._hardware: dict[str, Any] = {}  # node id -> facts (or the pending task's ref)
        self._pgs: dict[str, Any] = {}

    # ------------------------------------------------------------------ connection
    @property
    def attached(self) -> bool:
        return bool(self.address)

    def attach(self) -> None:
        """At daemon start: connect now when a cluster is configured, ``Unavailable`` (one line naming the
        address) when it cannot be reached."""
        if self.address:
            self._connect()

    def _connect(self) -> Any:
        with self._lock:
            if self._ray is not None:
                return self._ray
            if not self.address:
                raise Unavailable("no Ray cluster is attached: start the daemon with `aima start --ray ADDRESS` "
                                  "(or set AIMA_RAY_ADDRESS, or ray.address in config.yaml)")
            if self._down is not None and time.monotonic() - self._down[0] < 3.0:
                raise Unavailable(self._unreachable(self._down[1]))
            host, _, port = self.address.rpartition(":")
            try:
                with socket.create_connection((host or self.address, int(port or 6379)), timeout=CONNECT_TIMEOUT_S):
                    pass
            except (OSError, ValueError) as e:
                self._down = (time.monotonic(), str(e) or type(e).__name__)
                raise Unavailable(self._unreachable(self._down[1])) from None
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            try:
                import ray

                from aima.runtimes.ray_actor import EngineActor, detect_hardware

                if not ray.is_initialized():
                    ray.init(address=self.address, namespace=self.namespace, logging_level=logging.WARNING,
                             log_to_driver=False)
            except Exception as e:  # noqa: BLE001 - any failure to attach is "cannot be reached"
                self._down = (time.monotonic(), " ".join(str(e).split())[:300] or type(e).__name__)
                raise Unavailable(self._unreachable(self._down[1])) from None
            self._Actor = ray.remote(EngineActor)
            self._detect = ray.remote(detect_hardware)
            self._ray, self._down = ray, None
            return ray

    def _unreachable(self, why: str) -> str:
        return (f"the Ray cluster at {self.address} cannot be reached: {why}; start it with `ray start --head` "
                f"there, or give the address of its head (host:port of its GCS)")

    def available(self) -> bool:
        if not self.address:
            return False
        try:
            self._connect()
        except Unavailable:
            return False
        return True

    def close(self) -> None:
        for f in list(self._followers.values()):
            f.stopped.set()
        if self._ray is not None:
            with contextlib.suppress(Exception):
                self._ray.shutdown()
            self._ray = None

    # ------------------------------------------------------------------ choice (service create)
    def claims(self, plan: ServicePlan) -> str | None:
        if self.attached and not plan.fits_here:
            why = "a Ray cluster is attached and it does not fit on this machine"
            return why + (f"; it fits node {plan.fits_on}" if plan.fits_on else "")
        return None

    def elsewhere(self) -> list[tuple[str, dict[str, Any]]]:
        """Each alive node of the attached cluster with the hardware aima's detection reported there."""
        if not self.attached:
            return []
        got = self.cluster(True)
        if not got or not got.get("reachable"):
            return []
        return [(str(n["address"]), n["hardware"]) for n in got["nodes"]
                if n["alive"] and isinstance(n.get("hardware"), dict)]

    def consider(self, plan: ServicePlan) -> Verdict:
        if not self.attached:
            return Verdict(False, "no Ray cluster is attached (aima start --ray ADDRESS)")
        try:
            self._connect()
        except Unavailable as e:
            return Verdict(False, e.message)
        return Verdict(True, f"the Ray cluster at {self.address} answers")

    def define(self, plan: ServicePlan) -> Definition:
        self._connect()
        given = plan.given
        options: dict[str, Any] = {"node": given.get("node") or None, "resources": dict(given.get("resources") or {}),
                                   "plan_request": plan_request(plan)}
        if given.get("node"):
            self._node(str(given["node"]), self._nodes())  # a node the cluster knows, or a clear refusal
        need = merged_request(options)
        shape = [int(n["total"].get("GPU", 0)) for n in self._nodes() if n["alive"]]
        if need.get("GPU", 0) > max(shape or [0]) and need.get("GPU", 0) > 1 and not plan.custom:
            options["distributed"] = self._distributed(plan, int(need["GPU"]), shape)
        model = self._model_info(plan)
        if model:
            options["model"] = model
        elif not plan.model_present:
            raise NotFound(f"model {plan.model} is not on this machine and cannot be pulled on a node (it has no "
                           f"source a node can fetch); pull it here first with `aima model pull {plan.model}`",
                           field="model")
        command = None
        if options.get("distributed"):
            import shlex

            d = options["distributed"]
            command = shlex.join(distributed_args(shlex.split(plan.command), d["flags"], d["tp"], d["pp"]))
        return Definition(options=options, command=command, fetches_model=model is not None)

    def _distributed(self, plan: ServicePlan, gpus: int, shape: list[int]) -> dict[str, Any]:
        from aima.catalog import loader

        eng = loader.get_catalog(self.home).engine(plan.engine)
        flags: dict[str, str] = {}
        if eng is not None:
            for role in ("tensor_parallel", "pipeline_parallel", "distributed_executor"):
                key = eng.key_for_role(role)
                if key is not None and eng.config[key].flag:
                    flags[role] = str(eng.config[key].flag)
        if "tensor_parallel" not in flags:
            raise Unavailable(f"the model needs {gpus} GPUs, more than one node of the Ray cluster has, and engine "
                              f"{plan.engine} cannot be split across GPUs")
        tp, pp = parallel_sizes(gpus, shape)
        if pp > 1 and "distributed_executor" not in flags:
            raise Unavailable(f"the model needs {gpus} GPUs over {pp} nodes and engine {plan.engine} cannot run "
                              f"across nodes")
        return {"tp": tp, "pp": pp, "flags": flags, "shape": shape}

    def _model_info(self, plan: ServicePlan) -> dict[str, Any] | None:
        """What a node needs to make the plan's model available: its record in the daemon's store."""
        if plan.custom or not plan.model_path:
            return None
        import json

        mp = Path(plan.model_path)
        if not plan.model_present:
            # not on the daemon's machine: the node pulls it from the catalog's source into its own store
            folder = self.home / "models" / plan.model
            if not plan.source_spec or folder not in (mp, *mp.parents):
                return None
            return {"name": plan.model, "folder": str(folder), "path": str(mp), "home": str(self.home),
                    "source": plan.source_spec, "primary": None, "files": {}, "type": plan.model_type,
                    "options": self.source_options}
        folder = mp if mp.is_dir() else mp.parent
        try:
            marker = json.loads((folder / ".aima-model.json").read_text())
        except (OSError, ValueError):
            return None
        return {"name": marker.get("name") or folder.name, "folder": str(folder), "path": str(mp),
                "home": str(self.home), "source": marker.get("source"), "primary": marker.get("primary"),
                "files": marker.get("files") or {}, "type": marker.get("type"), "options": self.source_options}

    def adapt_command(self, command: str) -> str:
        return command

    # ------------------------------------------------------------------ nodes
    def _nodes(self) -> list[dict[str, Any]]:
        ray = self._connect()
        out = []
        now = time.time()
        for n in ray.nodes():
            nid = n["NodeID"]
            if n.get("Alive") and nid in self._lost and self._raylet_answers(
                    {"address": n.get("NodeManagerAddress"), "port": n.get("NodeManagerPort")}):
                del self._lost[nid]  # seen lost while it was only slow: it answers again
            alive = bool(n.get("Alive")) and nid not in self._lost
            if not n.get("Alive") and nid not in self._lost:
                self._lost[nid] = now
            out.append({"id": nid, "address": n.get("NodeManagerAddress"), "alive": alive,
                        "port": n.get("NodeManagerPort"), "total": dict(n.get("Resources") or {}),
                        "head": "node:__internal_head__" in (n.get("Resources") or {}),
                        "lost_at": self._lost.get(nid)})
        return out

    def _node(self, ref: str, nodes: list[dict[str, Any]]) -> dict[str, Any]:
        ref = ref.strip()
        hits = [n for n in nodes if n["id"] == ref or n["address"] == ref] or \
               [n for n in nodes if len(ref) >= 6 and n["id"].startswith(ref)]
        live = [n for n in hits if n["alive"]]
        if live:
            return live[0]
        if hits:
            return hits[0]
        raise Unavailable(f"node {ref} is not in the Ray cluster at {self.address}; its nodes: "
                          + ", ".join(f"{n['address']} ({n['id'][:12]}{'' if n['alive'] else ', lost'})"
                                      for n in nodes))

    def _describe_nodes(self, nodes: list[dict[str, Any]], need: dict[str, float], available: bool) -> str:
        per = {}
        if available:
            import ray._private.state as state

            with contextlib.suppress(Exception):
                per = state.available_resources_per_node()
        keys = sorted(need)
        parts = []
        for n in nodes:
            if not n["alive"]:
                continue
            have = per.get(n["id"], n["total"]) if available else n["total"]
            parts.append(f"node {n['address']} ({n['id'][:12]}) has {fmt_resources(have, keys)}"
                         + (" available" if available else ""))
        return "; ".join(parts) or "no node is alive"

    def _raylet_answers(self, node: dict[str, Any]) -> bool:
        if not node.get("address") or not node.get("port"):
            return True
        try:
            with socket.create_connection((node["address"], int(node["port"])), timeout=1.0):
                return True
        except OSError:
            return False

    def _lost_text(self, node: dict[str, Any] | None, node_id: str | None, ip: str | None) -> str:
        when = self._lost.get(node_id or "")
        since = f" since {time.strftime('%H:%M:%S', time.localtime(when))}" if when else ""
        return f"node {ip or (node or {}).get('address') or '?'} ({(node_id or '')[:12]}) was lost{since}"

    # ------------------------------------------------------------------ launch
    def _actor(self, name: str) -> Any:
        a = self._actors.get(name)
        if a is None:
            ray = self._connect()
            a = self._actors[name] = ray.get_actor(name, namespace=self.namespace)
        return a

    def place(self, spec: LaunchSpec) -> Placement:
        try:
            return self._place(spec)
        except _NodeDied:  # placed on a node that died before Ray noticed: once more, without it
            return self._place(spec)

    def _place(self, spec: LaunchSpec) -> Placement:
        ray = self._connect()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

        opts = spec.options or {}
        need = merged_request(opts)
        nodes = self._nodes()
        for n in nodes:  # a node whose raylet is gone is lost, even before Ray's health checks say so
            if n["alive"] and not self._raylet_answers(n):
                self._lost.setdefault(n["id"], time.time())
                n["alive"], n["lost_at"] = False, self._lost[n["id"]]
        alive = [n for n in nodes if n["alive"]]
        pinned = self._node(str(opts["node"]), nodes) if opts.get("node") else None
        if pinned is not None and not pinned["alive"]:
            raise Unavailable(f"{self._lost_text(pinned, pinned['id'], pinned['address'])}; service "
                              f"{spec.service_name} is pinned to it (--node) and waits for it to return",
                              details={"retry": True, "node": pinned["address"]})
        candidates = [pinned] if pinned is not None else alive
        shape = [int(n["total"].get("GPU", 0)) for n in alive]
        bundles = bundles_for(need, shape)
        if bundles is None and not any(satisfies(n["total"], need) for n in candidates):
            where = f"node {pinned['address']}" if pinned else "no node of the Ray cluster"
            verb = "does not have" if pinned else "has"
            raise Unavailable(f"{where} {verb} {fmt_resources(need)} that service {spec.service_name} asks for: "
                              f"{self._describe_nodes(candidates, need, available=False)}")
        name = spec.instance_id
        kw: dict[str, Any] = {"name": name, "namespace": self.namespace, "lifetime": "detached", "max_restarts": 0,
                              "max_concurrency": 8, "num_cpus": need.get("CPU", 0.0), "num_gpus": need.get("GPU", 0.0)}
        if need.get("memory"):
            kw["memory"] = need["memory"]
        custom = {k: v for k, v in need.items() if k not in ("CPU", "GPU", "memory")}
        if custom:
            kw["resources"] = custom
        pg = None
        if bundles is not None:
            from ray.util.placement_group import placement_group, remove_placement_group

            pg = placement_group(bundles[0], strategy=bundles[1], name=f"{name}-pg", lifetime="detached")
            ready, _ = ray.wait([pg.ready()], timeout=PLACE_TIMEOUT_S)
            if not ready:
                remove_placement_group(pg)
                raise Unavailable(f"no placement of {len(bundles[0])} bundle(s) {bundles[0]} for service "
                                  f"{spec.service_name} within {PLACE_TIMEOUT_S:g}s: "
                                  f"{self._describe_nodes(alive, need, available=True)}")
            kw["scheduling_strategy"] = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=0)
        elif pinned is not None:
            kw["scheduling_strategy"] = NodeAffinitySchedulingStrategy(pinned["id"], soft=False)
        elif (last := self._last_node.get((spec.service_id, spec.replica))) and \
                any(n["id"] == last and satisfies(n["total"], need) for n in alive):
            # A restart goes back to the node it ran on when that node still fits (soft: else anywhere).
            kw["scheduling_strategy"] = NodeAffinitySchedulingStrategy(last, soft=True)
        elif any(not n["alive"] and n["id"] in self._lost for n in nodes):
            # Ray may still count a node lost moments ago as alive: choose among the live ones here, the one
            # with the most of what is asked for free.
            import ray._private.state as state

            free: dict[str, Any] = {}
            with contextlib.suppress(Exception):
                free = state.available_resources_per_node()
            fits = [n for n in alive if satisfies(free.get(n["id"], n["total"]), need)] or \
                [n for n in alive if satisfies(n["total"], need)]
            best = max(fits, key=lambda n: tuple(free.get(n["id"], n["total"]).get(k, 0.0) for k in sorted(need)))
            kw["scheduling_strategy"] = NodeAffinitySchedulingStrategy(best["id"], soft=False)
        identity = {"service_id": spec.service_id, "instance_id": spec.instance_id, "home": str(self.home),
                    "service_name": spec.service_name}
        actor = self._Actor.options(**kw).remote(identity)
        try:
            where = ray.get(actor.where.remote(), timeout=PLACE_TIMEOUT_S)
        except Exception as e:  # noqa: BLE001 - pending (no room now) or failed
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
            if pg is not None:
                from ray.util.placement_group import remove_placement_group

                remove_placement_group(pg)
            if isinstance(e, ray.exceptions.RayActorError) and any(
                    not self._raylet_answers(n) for n in alive if n["id"] not in self._lost):
                for n in alive:
                    if not self._raylet_answers(n):
                        self._lost.setdefault(n["id"], time.time())
                raise _NodeDied(str(e)) from None
            if isinstance(e, ray.exceptions.GetTimeoutError):
                raise Unavailable(f"no node of the Ray cluster could take service {spec.service_name} "
                                  f"({fmt_resources(need)}) within {PLACE_TIMEOUT_S:g}s: "
                                  f"{self._describe_nodes(candidates, need, available=True)}") from None
            raise Unavailable(f"placing service {spec.service_name} on the Ray cluster failed: "
                              f"{' '.join(str(e).split())[:300]}") from None
        self._actors[name] = actor
        self._last_node[(spec.service_id, spec.replica)] = where["node"]
        if pg is not None:
            self._pgs[name] = pg
        return Placement(host=where["ip"], node=where["node"], data={"actor": name, "node_ip": where["ip"],
                                                                     "pg": f"{name}-pg" if pg else None})

    def allocate_port(self, where: Placement, lo: int, hi: int, reserved: set[int], prefer: int | None) -> int:
        ray = self._connect()
        actor = self._actor(where.data["actor"])
        try:
            return int(ray.get(actor.allocate_port.remote(lo, hi, sorted(reserved), prefer), timeout=CALL_TIMEOUT_S))
        except ray.exceptions.RayTaskError as e:
            cause = e.cause if hasattr(e, "cause") else e
            if isinstance(cause, AimaError):
                raise cause from None
            raise Unavailable(f"finding a port on node {where.host} failed: {' '.join(str(e).split())[:300]}") \
                from None

    def check_port(self, where: Placement, port: int) -> str | None:
        ray = self._connect()
        who = ray.get(self._actor(where.data["actor"]).check_port.remote(port), timeout=CALL_TIMEOUT_S)
        return f"{who} on node {where.host}" if who else None

    def engine_host(self, where: Placement, options: dict[str, Any]) -> str:
        return where.host

    def release(self, where: Placement) -> None:
        name = where.data.get("actor")
        if name:
            self._kill(name)

    def _kill(self, name: str) -> None:
        ray = self._ray
        if ray is None:
            return
        actor = self._actors.pop(name, None)
        if actor is None:
            with contextlib.suppress(Exception):
                actor = ray.get_actor(name, namespace=self.namespace)
        if actor is not None:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        pg = self._pgs.pop(name, None)
        if pg is None:
            with contextlib.suppress(Exception):
                from ray.util import get_placement_group

                pg = get_placement_group(f"{name}-pg")
        if pg is not None:
            from ray.util.placement_group import remove_placement_group

            with contextlib.suppress(Exception):
                remove_placement_group(pg)

    # ------------------------------------------------------------------ start
    def start(self, spec: LaunchSpec) -> Handle:
        ray = self._connect()
        where = spec.placement
        if where is None or not where.data.get("actor"):
            raise EngineError("the ray runtime starts only what it placed")
        name = where.data["actor"]
        actor = self._actor(name)
        argv = list(spec.argv)
        model = (spec.options or {}).get("model")
        if model:
            folder = self._prepare_model(actor, model, spec, where.host)
            if folder and folder != model["folder"]:
                argv = [w.replace(model["folder"], folder) for w in argv]
        env = {**spec.env, "AIMA_SERVICE_ID": spec.service_id, "AIMA_INSTANCE_ID": spec.instance_id,
               "AIMA_HOME": str(self.home), "RAY_ADDRESS": str(self.address)}
        header = (f"--- aima: starting {spec.instance_id} at {time.strftime('%Y-%m-%d %H:%M:%S')} on node {where.host} "
                  f"({(where.node or '')[:12]}), actor {name}: " + " ".join(argv) + "\n")
        try:
            got = ray.get(actor.start.remote(argv, env, str(spec.cwd) if spec.cwd else None, header),
                          timeout=CALL_TIMEOUT_S * 3)
        except Exception as e:  # noqa: BLE001
            raise EngineError(f"starting {spec.instance_id} on node {where.host} failed: "
                              f"{' '.join(str(e).split())[:300]}") from None
        if got.get("error"):
            self._copy_log(name, spec.log_path)
            raise EngineError(got["error"])
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._follow(name, spec.log_path)
        data = {"actor": name, "node": where.node, "node_ip": where.host, "log_path": str(spec.log_path),
                "label": f"actor {name} (pid {got['pid']} on node {where.host})", "pg": where.data.get("pg")}
        return Handle(runtime=self.name, pid=got["pid"], start_time=got["start_time"], cmdline=argv, data=data)

    def _prepare_model(self, actor: Any, model: dict[str, Any], spec: LaunchSpec, ip: str) -> str | None:
        ray = self._ray
        emit = spec.on_event or (lambda kind, message, data: None)
        st = ray.get(actor.prepare_model.remote(model), timeout=CALL_TIMEOUT_S)
        if st.get("state") == "pulling":
            emit("model.pull.started", f"pulling model {model['name']} on node {ip}",
                 {"model": model["name"], "name": model["name"], "node": ip, "instance_id": spec.instance_id})
        deadline = time.monotonic() + PULL_TIMEOUT_S
        last = -1
        while st.get("state") == "pulling" and time.monotonic() < deadline:
            time.sleep(0.25)
            st = ray.get(actor.model_status.remote(), timeout=CALL_TIMEOUT_S)
            done = int(st.get("done") or 0)
            if done != last:
                last = done
                emit("model.pull.progress", f"pulling model {model['name']} on node {ip}: {done}/{st.get('total')} "
                                            f"bytes",
                     {"model": model["name"], "name": model["name"], "node": ip, "done": done,
                      "total": st.get("total"), "instance_id": spec.instance_id})
        if st.get("state") == "failed":
            raise EngineError(str(st.get("error")))
        if st.get("state") != "done":
            raise EngineError(f"model {model['name']} was not ready on node {ip} within {PULL_TIMEOUT_S:g}s")
        if st.get("pulled"):
            emit("model.pulled", f"model {model['name']} pulled on node {ip}: {st.get('why')}",
                 {"model": model["name"], "name": model["name"], "node": ip, "folder": st.get("folder"),
                  "instance_id": spec.instance_id})
        return st.get("folder")

    def _follow(self, name: str, path: Path) -> None:
        f = self._followers.get(name)
        if f is None or not f.thread.is_alive():
            self._followers[name] = _Follower(self, name, path)

    def _copy_log(self, name: str, path: Path) -> None:
        with contextlib.suppress(Exception):
            _Follower.pull(type("F", (), {"rt": self, "name": name, "path": path})())  # type: ignore[arg-type]

    def _end(self, name: str, drain: bool = True) -> None:
        """The engine ended: copy its last lines, then remove its actor (and placement group)."""
        f = self._followers.pop(name, None)
        if f is not None:
            if drain:
                f.drain()
            else:
                f.stopped.set()
        self._kill(name)

    # ------------------------------------------------------------------ observe
    def observe_many(self, handles: list[Handle]) -> list[Observation]:
        out: list[Observation | None] = [None] * len(handles)
        try:
            ray = self._connect()
        except Unavailable as e:
            return [self._exits.get(str(h.data.get("actor"))) or Observation(alive=True, detail=e.message)
                    for h in handles]
        refs: dict[int, Any] = {}
        for i, h in enumerate(handles):
            name = str(h.data.get("actor") or "")
            if name in self._exits:
                out[i] = self._exits[name]
                continue
            try:
                refs[i] = self._actor(name).poll.remote()
            except Exception:  # noqa: BLE001 - no such actor: it is gone
                out[i] = self._gone(h, None)
        if refs:
            ray.wait(list(refs.values()), num_returns=len(refs), timeout=OBSERVE_TIMEOUT_S)
        nodes: list[dict[str, Any]] | None = None
        for i, ref in refs.items():
            h = handles[i]
            name = str(h.data.get("actor"))
            try:
                st = ray.get(ref, timeout=0)
            except ray.exceptions.GetTimeoutError:
                nodes = nodes if nodes is not None else self._nodes()
                node = next((n for n in nodes if n["id"] == h.data.get("node")), None)
                if node is not None and (not node["alive"] or not self._raylet_answers(node)):
                    out[i] = self._gone(h, node)
                else:
                    out[i] = Observation(alive=True, detail="its actor is slow to answer")
                continue
            except Exception:  # noqa: BLE001 - the actor died
                nodes = nodes if nodes is not None else self._nodes()
                out[i] = self._gone(h, next((n for n in nodes if n["id"] == h.data.get("node")), None))
                continue
            if st.get("alive"):
                out[i] = Observation(alive=True)
                if h.data.get("log_path") and name not in self._followers:
                    self._follow(name, Path(str(h.data["log_path"])))
            else:
                code = st.get("exit_code")
                obs = Observation(alive=False, exit_code=code, detail=describe_exit(code) + self._on(h))
                self._exits[name] = obs
                self._end(name)
                out[i] = obs
        return [o if o is not None else Observation(alive=False, detail="unknown") for o in out]

    def _on(self, h: Handle) -> str:
        return f" on node {h.data.get('node_ip') or h.host}" if (h.data.get("node_ip") or h.host) else ""

    def _gone(self, h: Handle, node: dict[str, Any] | None) -> Observation:
        name = str(h.data.get("actor") or "")
        if node is not None and (not node["alive"] or not self._raylet_answers(node)):
            self._lost.setdefault(node["id"], time.time())
            detail = f"{self._lost_text(node, node['id'], node['address'])} (its raylet does not answer)"
        else:
            detail = f"its Ray actor {name}{self._on(h)} is gone (exit status unknown)"
        obs = Observation(alive=False, exit_code=None, detail=detail)
        self._exits[name] = obs
        f = self._followers.pop(name, None)
        if f is not None:
            f.stopped.set()
        self._actors.pop(name, None)
        self._kill(name)
        return obs

    # ------------------------------------------------------------------ stop
    def stop(self, handle: Handle, grace_s: float) -> int | None:
        name = str(handle.data.get("actor") or "")
        if not name:
            return None
        if name in self._exits:
            self._kill(name)
            return self._exits[name].exit_code
        ray = self._connect()
        code: int | None = None
        node = handle.data.get("node")
        if node in self._lost:  # nothing there answers: its engine died with its raylet
            self._end(name, drain=False)
            return None
        try:
            actor = self._actor(name)
            code = ray.get(actor.stop.remote(grace_s), timeout=grace_s + 20)
        except Exception as e:  # noqa: BLE001 - gone, lost node, or not one of ours: it is removed all the same
            log.debug("stopping actor %s: %s", name, e)
        self._end(name)
        self._exits.pop(name, None)
        return code

    # ------------------------------------------------------------------ discovery
    def owned(self) -> list[Owned]:
        ray = self._connect()
        names = [a["name"] if isinstance(a, dict) else a for a in ray.util.list_named_actors()]
        refs: dict[str, Any] = {}
        found = []
        for n in names:
            try:
                refs[n] = self._actor(n).status.remote()
            except Exception:  # noqa: BLE001 - not an engine actor: claimed by no record, so removed
                found.append(Owned("", n, Handle(self.name, None, None, [], {"actor": n, "label": f"actor {n}"})))
        if refs:
            ray.wait(list(refs.values()), num_returns=len(refs), timeout=3.0)
        for n, ref in refs.items():
            try:
                st = ray.get(ref, timeout=0)
            except Exception:  # noqa: BLE001 - not answering or not an engine actor: claimed by no one
                found.append(Owned("", n, Handle(self.name, None, None, [], {"actor": n, "label": f"actor {n}"})))
                continue
            found.append(Owned(str(st.get("service_id") or ""), str(st.get("instance_id") or n), Handle(
                self.name, st.get("pid"), st.get("start_time"), list(st.get("cmdline") or []),
                {"actor": n, "node": st.get("node"), "node_ip": st.get("ip"),
                 "label": f"actor {n} (pid {st.get('pid')} on node {st.get('ip')})"})))
        return found

    def port_holder(self, port: int) -> str | None:
        return None

    # ------------------------------------------------------------------ the cluster, for cluster.status
    def cluster(self, detail: bool = True) -> dict[str, Any] | None:
        """The attached cluster: its address, namespace and nodes (None when none is attached); ``detail``
        adds each node's available resources and hardware."""
        if not self.address:
            return None
        try:
            ray = self._connect()
            nodes = self._nodes()
        except Unavailable as e:
            return {"address": self.address, "namespace": self.namespace, "reachable": False, "message": e.message,
                    "nodes": []}
        if not detail:
            return {"address": self.address, "namespace": self.namespace, "reachable": True, "message": None,
                    "nodes": nodes}
        import ray._private.state as state

        try:
            avail = state.available_resources_per_node()
        except Exception:  # noqa: BLE001
            avail = {}
        self._detect_hardware([n for n in nodes if n["alive"]], ray)
        for n in nodes:
            n["available"] = dict(avail.get(n["id"], {})) if n["alive"] else {}
            hw = self._hardware.get(n["id"])
            n["hardware"] = hw if isinstance(hw, dict) else None
        return {"address": self.address, "namespace": self.namespace, "reachable": True, "message": None,
                "nodes": nodes}

    def _detect_hardware(self, nodes: list[dict[str, Any]], ray: Any) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        pending = {}
        for n in nodes:
            got = self._hardware.get(n["id"])
            if got is None:
                got = self._hardware[n["id"]] = self._detect.options(
                    num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["id"], soft=False)).remote()
            if not isinstance(got, dict):
                pending[n["id"]] = got
        if not pending:
            return
        ray.wait(list(pending.values()), num_returns=len(pending), timeout=HARDWARE_WAIT_S)
        for nid, ref in pending.items():
            try:
                self._hardware[nid] = ray.get(ref, timeout=0)["facts"]
            except ray.exceptions.GetTimeoutError:
                continue
            except Exception as e:  # noqa: BLE001 - detection failed there: said, and tried again next time
                self._hardware.pop(nid, None)
                log.warning("hardware detection on node %s failed: %s", nid[:12], e)
