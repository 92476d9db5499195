"""What a container runtime runs, as pure functions: image candidates, the container's spec, GPU access.

Nothing here talks to a daemon (``docker.py`` does), so every rendering is tested without Docker and
without a GPU. A service's ``runtime_options`` (stored with it, see ``ContainerOptions``) plus the
launch spec and the chosen image give one ``ContainerConfig``: the arguments of the Docker API's
container create, with the host config kept apart so the daemon's API version can shape it.

Identity: every container carries the labels below; stop, delete, cleanup and adoption select by
them alone, and ``aima.home`` keeps two AIMA_HOMEs on one daemon from ever touching each other's.
"""

from __future__ import annotations

import platform
import re
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from aima.catalog.schema import Image
from aima.domain.units import SIZE_PATTERN, parse_bytes
from aima.errors import InvalidInput
from aima.runtimes.base import LaunchSpec, Options

VOLUME_PATTERN = r"^/[^:\x00]*:/[^:\x00]*(:(ro|rw))?$"  # what parse_volume takes, as clients read it
# What parse_image takes, as clients read it: no white space (str.isspace's characters, spelled out so every
# regex dialect reads them alike) nor control character, no digest '@', neither ':' nor '/' first or last.
_SPACE = r"\x00-\x20\x7f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
IMAGE_PATTERN = f"^[^{_SPACE}@:/](?:[^{_SPACE}@]*[^{_SPACE}@:/])?$"

LABEL_HOME = "aima.home"
LABEL_SERVICE = "aima.service"
LABEL_SERVICE_NAME = "aima.service_name"
LABEL_INSTANCE = "aima.instance"
LABEL_REPLICA = "aima.replica"
LABEL_MODEL = "aima.model"
LABEL_ENGINE = "aima.engine"

Network = Literal["bridge", "host"]


class Mount(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str
    target: str
    read_only: bool = True


class Gpu(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vendor: str
    indexes: list[int] = Field(default_factory=list, description="empty: every GPU of that vendor")


class ContainerOptions(BaseModel):
    """A service's container settings (its ``runtime_options``), fixed when the service is created."""

    model_config = ConfigDict(extra="ignore")

    images: list[Image] = Field(default_factory=list, description="candidates in priority order")
    network: Network = "bridge"
    mounts: list[Mount] = Field(default_factory=list)
    cpus: float | None = None
    memory_limit: int | None = None
    shm_size: int | None = None
    gpu: Gpu | None = None


class DockerOptions(Options):
    """What ``service create`` takes for a container (the docker runtime's flags)."""

    images: list[Annotated[str, StringConstraints(pattern=IMAGE_PATTERN, max_length=1024)]] = Field(
        default_factory=list, max_length=16, json_schema_extra={"x-cli-name": "image"},
        description="container image candidates name:tag, in priority order (docker; replaces the catalog's)")
    volumes: list[Annotated[str, StringConstraints(pattern=VOLUME_PATTERN, max_length=4096)]] = Field(
        default_factory=list, max_length=32, description="extra container mount SRC:DST[:ro|rw] (docker)",
        json_schema_extra={"x-cli-name": "volume"})
    network: Network | None = Field(
        None, description="container network (docker; default: bridge with the port published on 127.0.0.1 "
                          "when the engine takes {host}, else host)")
    cpus: float | None = Field(None, gt=0, le=4096, description="container CPU limit (docker)")
    memory_limit: str | None = Field(None, max_length=32, pattern=SIZE_PATTERN,
                                     description="container memory limit, e.g. 8GiB (docker)",
                                     json_schema_extra={"x-cli-name": "memory-limit"})
    shm_size: str | None = Field(None, max_length=32, pattern=SIZE_PATTERN,
                                 description="container shared memory, e.g. 2GiB (docker)",
                                 json_schema_extra={"x-cli-name": "shm-size"})

    @field_validator("images", mode="before")
    @classmethod
    def _images(cls, v: Any) -> Any:  # parse_image's reason, before the pattern that says the same
        for item in v if isinstance(v, list) else []:
            if isinstance(item, str):
                try:
                    parse_image(item)
                except InvalidInput as e:
                    raise ValueError(e.message) from None
        return v

    @field_validator("memory_limit", "shm_size")
    @classmethod
    def _size(cls, v: str | None) -> str | None:
        if v is not None:
            parse_bytes(v)
        return v

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, v: list[str]) -> list[str]:
        for item in v:
            parse_volume(item)
        return v


def parse_volume(text: str) -> dict[str, Any]:
    """``SRC:DST[:ro|rw]`` (absolute paths) as a container mount."""
    parts = text.split(":")
    mode = "rw"
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        mode = parts.pop()
    if len(parts) != 2 or not all(p.startswith("/") and "\x00" not in p for p in parts):
        raise ValueError(f"{text!r} is not SRC:DST[:ro|rw] with absolute paths")
    return {"source": parts[0], "target": parts[1], "read_only": mode == "ro"}


def container_command(command: str) -> str:
    """A command template for a container: ``{python}`` is the image's ``python3``, not this machine's."""
    return shlex.join(["python3" if w == sys.executable else w for w in shlex.split(command)])


# ---------------------------------------------------------------------------- images
_HOST_RE = re.compile(r"^(localhost|[^/]*[.:][^/]*)$")


def has_registry(name: str) -> bool:
    """``ghcr.io/x/y`` and ``localhost:5000/y`` name their registry; ``vllm/vllm-openai`` does not."""
    first, sep, _ = name.partition("/")
    return bool(sep) and bool(_HOST_RE.match(first))


def image_ref(image: Image) -> str:
    return f"{image.name}:{image.tag}"


def local_refs(image: Image) -> list[str]:
    """The references under which a candidate may already be on this machine."""
    refs = [image_ref(image)]
    if not has_registry(image.name):
        for reg in image.registries:
            if reg not in ("docker.io", "index.docker.io", "registry-1.docker.io"):
                refs.append(f"{reg}/{image.name}:{image.tag}")
    return list(dict.fromkeys(refs))


def pull_refs(image: Image) -> list[str]:
    """What to pull for a candidate, in its registries' order (Docker Hub names need no prefix)."""
    if has_registry(image.name) or not image.registries:
        return [image_ref(image)]
    out = []
    for reg in image.registries:
        if reg in ("docker.io", "index.docker.io", "registry-1.docker.io"):
            out.append(image_ref(image))
        else:
            out.append(f"{reg}/{image.name}:{image.tag}")
    return list(dict.fromkeys(out))


def parse_image(text: str) -> Image:
    """``name[:tag]`` as given on the command line (``--image``): pulled as written when missing. Exactly what
    IMAGE_PATTERN describes (a digest ``@sha256:...`` is not taken: images are chosen by tag)."""
    if (not text or any(c.isspace() or c < " " or c == "\x7f" for c in text) or "@" in text or text[0] in ":/"
            or text[-1] in ":/"):
        raise InvalidInput(f"image {text!r} is not a reference like name:tag or registry/name:tag", field="images")
    name, tag = text, "latest"
    if ":" in text.rsplit("/", 1)[-1]:
        name, tag = text.rsplit(":", 1)
    return Image(name=name, tag=tag, registries=[])


def this_platform() -> str:
    arch = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(arch, arch)
    return f"linux/{arch}"


def runs_here(image: Image, here: str | None = None) -> bool:
    return not image.platforms or (here or this_platform()) in image.platforms


# ---------------------------------------------------------------------------- GPU access
@dataclass
class GpuAccess:
    """How a container reaches its GPUs: Docker device requests, device nodes, groups, env, mounts."""

    device_requests: list[dict[str, Any]] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    group_add: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    binds: dict[str, dict[str, str]] = field(default_factory=dict)


def _gid(name: str, gid_of: Callable[[str], int | None]) -> str:
    gid = gid_of(name)
    return str(gid) if gid is not None else name


def host_gid(name: str) -> int | None:
    import grp

    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def gpu_access(gpu: Gpu | None, *, cdi: bool = False,
               gid_of: Callable[[str], int | None] = host_gid) -> GpuAccess:
    """Render GPU access from the hardware facts a service was created with.

    - NVIDIA: a CDI device request (``nvidia.com/gpu=N``) when the daemon has CDI specs, else the
      ``--gpus`` request (driver chosen by Docker, capability ``gpu``) for those indexes, or all.
    - AMD (ROCm): ``/dev/kfd`` and ``/dev/dri``, the ``video`` and ``render`` groups as host gids,
      ``ROCR_VISIBLE_DEVICES`` for the chosen indexes.
    - Ascend: ``/dev/davinciN`` plus the manager nodes, the driver mounted read-only,
      ``ASCEND_VISIBLE_DEVICES``.
    - Intel: ``/dev/dri``.
    """
    out = GpuAccess()
    if gpu is None:
        return out
    vendor = gpu.vendor.lower()
    idx = [str(i) for i in gpu.indexes]
    if vendor == "nvidia":
        if cdi:
            ids = [f"nvidia.com/gpu={i}" for i in idx] or ["nvidia.com/gpu=all"]
            out.device_requests.append({"driver": "cdi", "device_ids": ids})
        elif idx:
            out.device_requests.append({"driver": "", "device_ids": idx, "capabilities": [["gpu"]]})
        else:
            out.device_requests.append({"driver": "", "count": -1, "capabilities": [["gpu"]]})
    elif vendor == "amd":
        out.devices += ["/dev/kfd:/dev/kfd:rwm", "/dev/dri:/dev/dri:rwm"]
        out.group_add += [_gid("video", gid_of), _gid("render", gid_of)]
        out.security_opt.append("seccomp=unconfined")
        if idx:
            out.environment["ROCR_VISIBLE_DEVICES"] = ",".join(idx)
    elif vendor == "ascend":
        nodes = idx or ["0"]
        out.devices += [f"/dev/davinci{i}:/dev/davinci{i}:rwm" for i in nodes]
        out.devices += [f"{d}:{d}:rwm" for d in ("/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc")]
        for path in ("/usr/local/Ascend/driver", "/usr/local/dcmi", "/usr/local/bin/npu-smi"):
            out.binds[path] = {"bind": path, "mode": "ro"}
        out.environment["ASCEND_VISIBLE_DEVICES"] = ",".join(nodes)
    elif vendor == "intel":
        out.devices.append("/dev/dri:/dev/dri:rwm")
        out.group_add += [_gid("video", gid_of), _gid("render", gid_of)]
    elif vendor == "apple":
        raise InvalidInput("Apple GPUs cannot be passed into a container (Docker runs a Linux VM there); "
                           "use --runtime native", field="runtime")
    else:
        raise InvalidInput(f"GPU vendor {gpu.vendor!r} has no container device mapping; use --runtime native",
                           field="runtime")
    return out


# ---------------------------------------------------------------------------- the container
@dataclass
class ContainerConfig:
    """Arguments of the Docker API's container create; ``host_config`` goes through
    ``create_host_config`` (so the daemon's API version shapes it)."""

    image: str
    name: str
    command: list[str]
    entrypoint: list[str] | None
    labels: dict[str, str]
    environment: dict[str, str]
    ports: list[int]  # exposed (tcp)
    host_config: dict[str, Any]


def container_name(service_name: str, instance_id: str) -> str:
    slug = re.sub(r"[^a-zA-Z0-9_.-]+", "-", service_name).strip("-._")[:48]
    return f"aima-{slug}-{instance_id}" if slug else f"aima-{instance_id}"


def labels_for(spec: LaunchSpec, home: str) -> dict[str, str]:
    return {LABEL_HOME: home, LABEL_SERVICE: spec.service_id, LABEL_SERVICE_NAME: spec.service_name,
            LABEL_INSTANCE: spec.instance_id, LABEL_REPLICA: str(spec.replica), LABEL_MODEL: spec.model,
            LABEL_ENGINE: spec.engine}


def split_command(argv: list[str], image: Image) -> tuple[list[str] | None, list[str]]:
    """(entrypoint, command): the image's own ENTRYPOINT is kept when it supplies the argv's leading
    words (``vllm serve``); otherwise the argv runs as given, whatever the image's ENTRYPOINT is."""
    ep = image.entrypoint
    if ep and argv[:len(ep)] == ep:
        return None, argv[len(ep):]
    if not argv:
        raise InvalidInput("the engine command is empty", field="command")
    return [argv[0]], argv[1:]


def container_config(spec: LaunchSpec, ref: str, image: Image, opts: ContainerOptions, *, home: str,
                     cdi: bool = False, gid_of: Callable[[str], int | None] = host_gid) -> ContainerConfig:
    """The container for one instance: the same argv as a native start, its marks (labels and env), the
    port published on the instance's host address (or the host's network), mounts read-only unless said
    otherwise, limits, shared memory, GPU access, an init process, and no Docker restart policy (aima's
    reconciler restarts, so it sees every crash)."""
    gpu = gpu_access(opts.gpu, cdi=cdi, gid_of=gid_of)
    entrypoint, command = split_command(spec.argv, image)
    # The same marks a native engine carries in its environment (rule 3); the labels are what aima selects by.
    env = {**spec.env, **gpu.environment, "AIMA_SERVICE_ID": spec.service_id,
           "AIMA_INSTANCE_ID": spec.instance_id}
    if home:
        env["AIMA_HOME"] = home
    binds: dict[str, dict[str, str]] = {}
    for m in opts.mounts:
        binds[m.source] = {"bind": m.target, "mode": "ro" if m.read_only else "rw"}
    binds.update(gpu.binds)
    hc: dict[str, Any] = {"init": True, "restart_policy": {"Name": "no"}}
    ports: list[int] = []
    if opts.network == "host":
        hc["network_mode"] = "host"
    else:
        ports = [spec.port]
        hc["port_bindings"] = {f"{spec.port}/tcp": (spec.host, spec.port)}
    if binds:
        hc["binds"] = binds
    if opts.cpus:
        hc["nano_cpus"] = int(opts.cpus * 1e9)
    if opts.memory_limit:
        hc["mem_limit"] = int(opts.memory_limit)
    if opts.shm_size:
        hc["shm_size"] = int(opts.shm_size)
    if gpu.device_requests:
        hc["device_requests"] = gpu.device_requests
    if gpu.devices:
        hc["devices"] = gpu.devices
    if gpu.group_add:
        hc["group_add"] = gpu.group_add
    if gpu.security_opt:
        hc["security_opt"] = gpu.security_opt
    return ContainerConfig(image=ref, name=container_name(spec.service_name, spec.instance_id),
                           command=command, entrypoint=entrypoint, labels=labels_for(spec, home),
                           environment=env, ports=ports, host_config=hc)


# ---------------------------------------------------------------------------- states and exits
def exit_code(raw: int | None) -> int | None:
    """A container's exit status as a process's: 128+N (the init or the engine killed by signal N)
    reads as -N, like a native instance killed by that signal."""
    if raw is not None and 128 < raw <= 128 + 64:
        return -(raw - 128)
    return raw


def state_alive(status: str) -> bool | None:
    """Container status → alive? ``created`` and ``running`` (and ``paused``) are alive; ``restarting``
    (a restart policy set outside aima), ``exited``, ``dead`` and ``removing`` are not. Podman adds
    ``stopping`` (alive) and ``stopped`` (its process has exited; ``exited`` once Podman has tidied up)."""
    if status in ("created", "running", "paused", "stopping"):
        return True
    if status in ("restarting", "exited", "dead", "removing", "stopped"):
        return False
    return None
