"""The docker runtime's pure parts: image candidates, the container spec, GPU access, exit codes and the
runtime choice. No Docker daemon and no GPU are needed: these render what the daemon would be asked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aima.catalog.schema import Image
from aima.errors import Conflict, InvalidInput, Unavailable
from aima.runtimes.base import LaunchSpec, Options, ServicePlan, Verdict, describe_exit
from aima.runtimes.choice import choose
from aima.runtimes.container import (
    IMAGE_PATTERN,
    ContainerOptions,
    DockerOptions,
    Gpu,
    container_config,
    container_name,
    exit_code,
    gpu_access,
    has_registry,
    local_refs,
    parse_image,
    pull_refs,
    runs_here,
    split_command,
    state_alive,
)

GIDS = {"video": 44, "render": 105}


def spec(**kw: object) -> LaunchSpec:
    base: dict[str, object] = dict(service_id="svc-12345678", instance_id="inst-abcdef01", replica=0,
                                   argv=["vllm", "serve", "/models/q", "--port", "20001"], host="127.0.0.1",
                                   port=20001, log_path=Path("/tmp/x.log"), env={"HF_HUB_OFFLINE": "1"},
                                   service_name="chat:v1", model="qwen", engine="vllm")
    base.update(kw)
    return LaunchSpec(**base)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- images
def test_image_references_follow_registries_and_never_invent_one() -> None:
    hub = Image(name="vllm/vllm-openai", tag="v0.10.2", registries=["docker.io", "quay.io"])
    assert local_refs(hub) == ["vllm/vllm-openai:v0.10.2", "quay.io/vllm/vllm-openai:v0.10.2"]
    assert pull_refs(hub) == ["vllm/vllm-openai:v0.10.2", "quay.io/vllm/vllm-openai:v0.10.2"]
    ghcr = Image(name="ghcr.io/abetlen/llama-cpp-python", tag="latest", registries=["ghcr.io"])
    assert local_refs(ghcr) == pull_refs(ghcr) == ["ghcr.io/abetlen/llama-cpp-python:latest"]
    assert has_registry("localhost:5000/x") and has_registry("ghcr.io/x/y") and not has_registry("vllm/vllm")
    assert not has_registry("busybox")
    given = parse_image("registry.local:5000/team/engine:1.2")
    assert (given.name, given.tag, given.registries) == ("registry.local:5000/team/engine", "1.2", [])
    assert pull_refs(given) == ["registry.local:5000/team/engine:1.2"]
    assert (parse_image("busybox").name, parse_image("busybox").tag) == ("busybox", "latest")
    for bad in ("", "a b", " busybox", "busybox\u3000", "x@sha256:abc", "name:", ":tag", "team/"):
        with pytest.raises(InvalidInput):
            parse_image(bad)
    arm_only = Image(name="x", platforms=["linux/arm64"])
    assert runs_here(arm_only, "linux/arm64") and not runs_here(arm_only, "linux/amd64")
    assert runs_here(Image(name="y"), "linux/amd64")


@pytest.mark.parametrize("text", ["busybox", "a", "a:b", "host:5000/x", "host:5000/x:1", "a/:b", "a:b:c", "é/ü:1",
                                  "", " a", "a ", "a\tb", "a\x1cb", "a\xa0b", "a\u2028b", "a\u3000", ":", "a:", ":a",
                                  "/a", "a/", "a@b", "x@sha256:abc", "a:/", "a\x00", "a\x07b", "a\x7f"])
def test_the_image_pattern_clients_read_is_what_the_daemon_takes(text: str) -> None:
    try:
        parse_image(text)
        taken = True
    except InvalidInput:
        taken = False
    assert bool(re.fullmatch(IMAGE_PATTERN, text)) == taken


def test_the_image_pattern_refuses_every_white_space_the_daemon_refuses() -> None:
    spaces = [c for c in map(chr, range(0x110000)) if c.isspace()]
    assert len(spaces) > 20 and not any(re.fullmatch(IMAGE_PATTERN, f"a{c}b") for c in spaces)


def test_entrypoint_words_the_image_supplies_are_not_repeated() -> None:
    vllm = Image(name="vllm/vllm-openai", entrypoint=["vllm", "serve"])
    assert split_command(["vllm", "serve", "/m", "--port", "1"], vllm) == (None, ["/m", "--port", "1"])
    # Without a declared entrypoint (or when the argv does not start with it) the argv runs as given.
    plain = Image(name="x")
    assert split_command(["python3", "-m", "srv"], plain) == (["python3"], ["-m", "srv"])
    assert split_command(["other", "x"], vllm) == (["other"], ["x"])


# ---------------------------------------------------------------------------- container spec
def test_bridge_container_publishes_on_the_instance_host_with_marks_limits_and_no_restart_policy() -> None:
    opts = ContainerOptions(images=[Image(name="vllm/vllm-openai", entrypoint=["vllm", "serve"])],
                            mounts=[{"source": "/models/q", "target": "/models/q"}],  # type: ignore[list-item]
                            cpus=2.5, memory_limit=8 * 2**30, shm_size=2**30)
    cfg = container_config(spec(), "vllm/vllm-openai:latest", opts.images[0], opts, home="/h/.aima",
                           gid_of=GIDS.get)
    assert cfg.image == "vllm/vllm-openai:latest"
    assert cfg.entrypoint is None and cfg.command == ["/models/q", "--port", "20001"]
    assert cfg.name == "aima-chat-v1-inst-abcdef01"
    assert cfg.labels == {"aima.home": "/h/.aima", "aima.service": "svc-12345678", "aima.service_name": "chat:v1",
                          "aima.instance": "inst-abcdef01", "aima.replica": "0", "aima.model": "qwen",
                          "aima.engine": "vllm"}
    assert cfg.environment == {"HF_HUB_OFFLINE": "1", "AIMA_SERVICE_ID": "svc-12345678",
                               "AIMA_INSTANCE_ID": "inst-abcdef01", "AIMA_HOME": "/h/.aima"}
    hc = cfg.host_config
    assert cfg.ports == [20001] and hc["port_bindings"] == {"20001/tcp": ("127.0.0.1", 20001)}
    assert "network_mode" not in hc
    assert hc["binds"] == {"/models/q": {"bind": "/models/q", "mode": "ro"}}
    assert hc["nano_cpus"] == 2_500_000_000 and hc["mem_limit"] == 8 * 2**30 and hc["shm_size"] == 2**30
    assert hc["init"] is True and hc["restart_policy"] == {"Name": "no"}
    assert not {"device_requests", "devices", "group_add"} & set(hc)


def test_host_network_container_publishes_nothing() -> None:
    opts = ContainerOptions(network="host")
    cfg = container_config(spec(argv=["python3", "-m", "srv"]), "img:1", Image(name="img", tag="1"), opts,
                           home="/h", gid_of=GIDS.get)
    assert cfg.host_config["network_mode"] == "host" and cfg.ports == [] and "port_bindings" not in cfg.host_config
    assert cfg.entrypoint == ["python3"] and cfg.command == ["-m", "srv"]
    assert container_name("", "inst-1") == "aima-inst-1"
    assert container_name("a b/c", "inst-1") == "aima-a-b-c-inst-1"


# ---------------------------------------------------------------------------- GPUs
def test_nvidia_gpus_as_device_requests_or_cdi() -> None:
    two = gpu_access(Gpu(vendor="nvidia", indexes=[0, 1]))
    assert two.device_requests == [{"driver": "", "device_ids": ["0", "1"], "capabilities": [["gpu"]]}]
    assert not two.devices and not two.group_add
    every = gpu_access(Gpu(vendor="NVIDIA"))
    assert every.device_requests == [{"driver": "", "count": -1, "capabilities": [["gpu"]]}]
    cdi = gpu_access(Gpu(vendor="nvidia", indexes=[1]), cdi=True)
    assert cdi.device_requests == [{"driver": "cdi", "device_ids": ["nvidia.com/gpu=1"]}]
    assert gpu_access(Gpu(vendor="nvidia"), cdi=True).device_requests[0]["device_ids"] == ["nvidia.com/gpu=all"]
    opts = ContainerOptions(gpu=Gpu(vendor="nvidia", indexes=[0]))
    hc = container_config(spec(), "i:1", Image(name="i"), opts, home="/h").host_config
    assert hc["device_requests"] == [{"driver": "", "device_ids": ["0"], "capabilities": [["gpu"]]}]


def test_amd_gpus_get_kfd_dri_groups_as_host_gids_and_visible_devices() -> None:
    amd = gpu_access(Gpu(vendor="amd", indexes=[0, 2]), gid_of=GIDS.get)
    assert amd.devices == ["/dev/kfd:/dev/kfd:rwm", "/dev/dri:/dev/dri:rwm"]
    assert amd.group_add == ["44", "105"] and amd.environment == {"ROCR_VISIBLE_DEVICES": "0,2"}
    assert amd.security_opt == ["seccomp=unconfined"] and not amd.device_requests
    # a group this machine does not have is passed by name
    assert gpu_access(Gpu(vendor="amd"), gid_of=lambda _n: None).group_add == ["video", "render"]
    opts = ContainerOptions(gpu=Gpu(vendor="amd", indexes=[1]))
    cfg = container_config(spec(), "i:1", Image(name="i"), opts, home="/h", gid_of=GIDS.get)
    assert cfg.host_config["devices"] == amd.devices and cfg.host_config["group_add"] == ["44", "105"]
    assert cfg.environment["ROCR_VISIBLE_DEVICES"] == "1"


def test_ascend_intel_and_apple() -> None:
    npu = gpu_access(Gpu(vendor="ascend", indexes=[3]))
    assert npu.devices[0] == "/dev/davinci3:/dev/davinci3:rwm"
    assert {"/dev/davinci_manager:/dev/davinci_manager:rwm", "/dev/devmm_svm:/dev/devmm_svm:rwm",
            "/dev/hisi_hdc:/dev/hisi_hdc:rwm"} <= set(npu.devices)
    assert npu.binds["/usr/local/Ascend/driver"] == {"bind": "/usr/local/Ascend/driver", "mode": "ro"}
    assert npu.environment == {"ASCEND_VISIBLE_DEVICES": "3"}
    assert gpu_access(Gpu(vendor="intel"), gid_of=GIDS.get).devices == ["/dev/dri:/dev/dri:rwm"]
    with pytest.raises(InvalidInput, match="--runtime native"):
        gpu_access(Gpu(vendor="apple"))
    assert gpu_access(None).device_requests == []


# ---------------------------------------------------------------------------- states and exits
def test_container_states_and_exit_codes_read_like_processes() -> None:
    assert [state_alive(s) for s in ("created", "running", "restarting", "exited", "dead")] == \
        [True, True, False, False, False]
    # Podman's own words: "stopped" is an exited process Podman has not tidied up yet
    assert state_alive("stopped") is False and state_alive("stopping") is True
    assert exit_code(0) == 0 and exit_code(3) == 3 and exit_code(137) == -9 and exit_code(143) == -15
    assert exit_code(None) is None and exit_code(255) == 255
    assert describe_exit(-9) == "killed by signal SIGKILL" and describe_exit(3) == "exited with code 3"


# ---------------------------------------------------------------------------- runtime choice
class Answers:
    """A runtime's answers to the choice (``choose`` decides from these alone): what it claims, whether it
    could run the plan and why, and its option fields."""

    def __init__(self, name: str, describe: str, applies_to: str, options: type[Options], *,
                 usable: bool = True, why: str = "", fallback: bool = False, claims: str | None = None):
        self.name, self.describe, self.applies_to, self.Options = name, describe, applies_to, options
        self.verdict = Verdict(usable, why, fallback)
        self._claims = claims
        self.asked = 0

    def claims(self, plan: ServicePlan) -> str | None:
        return self._claims

    def consider(self, plan: ServicePlan) -> Verdict:
        self.asked += 1
        return self.verdict


class NoOptions(Options):
    pass


def _plan(**kw: object) -> ServicePlan:
    base: dict[str, object] = dict(model="m", engine="vllm", command="vllm serve", prefer="docker")
    base.update(kw)
    return ServicePlan(**base)  # type: ignore[arg-type]


def _runtimes(native: dict[str, object] | None = None, docker: dict[str, object] | None = None) -> dict[str, object]:
    n: dict[str, object] = {"usable": True, "why": "it is installed here", **(native or {})}
    d: dict[str, object] = {"usable": True, "why": "Docker answers and image vllm/vllm-openai:v1 can be pulled",
                            **(docker or {})}
    return {"native": Answers("native", "natively", "processes", NoOptions, **n),  # type: ignore[arg-type]
            "docker": Answers("docker", "in a container", "containers", DockerOptions, **d)}  # type: ignore[arg-type]


def test_runtime_choice_follows_preference_and_availability_and_says_why() -> None:
    down = {"usable": False, "why": "Docker is not reachable at DOCKER_HOST=unix:///nope: refused"}
    missing = {"usable": False, "why": "vllm cannot be imported here", "fallback": True}
    assert choose("native", _plan(), _runtimes()) == ("native", "--runtime native was asked for")
    assert choose("docker", _plan(), _runtimes(docker=down))[0] == "docker"  # (its define then refuses)
    with pytest.raises(InvalidInput, match="does not exist"):
        choose("kubernetes", _plan(), _runtimes())
    rt, why = choose("auto", _plan(), _runtimes())
    assert rt == "docker" and "prefers docker" in why
    rt, why = choose("auto", _plan(), _runtimes(docker=down))  # installed natively: falls back
    assert rt == "native" and "DOCKER_HOST=unix:///nope" in why and "runs natively" in why
    with pytest.raises(Unavailable, match="cannot run natively"):
        choose("auto", _plan(), _runtimes(native=missing, docker=down))
    llama = dict(engine="llama-cpp", prefer="native")
    rts = _runtimes()
    assert choose("auto", _plan(**llama), rts)[0] == "native"
    assert rts["docker"].asked == 0  # type: ignore[attr-defined]  # installed: Docker is never asked
    present = {"why": "Docker answers and image ghcr.io/x:latest is on this machine"}
    rt, why = choose("auto", _plan(**llama), _runtimes(native=missing, docker=present))
    assert rt == "docker" and "ghcr.io/x:latest is on this machine" in why and "in a container" in why
    # nothing usable, but the preferred runtime's own start will say what is missing
    rt, why = choose("auto", _plan(**llama), _runtimes(native=missing, docker=down))
    assert rt == "native" and "cannot be imported" in why
    # custom commands: --image means a container (claimed), none means a process
    custom = dict(engine="custom", prefer=None)
    rts = _runtimes(native={"why": "a custom command without --image runs as a process"},
                    docker={"claims": "--image was given: it runs in a container"})
    assert choose("auto", _plan(**custom), rts) == ("docker", "auto: --image was given: it runs in a container")
    rt, why = choose("auto", _plan(**custom), _runtimes(native={"why": "a custom command without --image runs as a "
                                                                      "process"}))
    assert rt == "native" and "without --image" in why
    # options of a runtime that was not chosen are refused, naming the runtime to ask for
    with pytest.raises(Conflict, match="--cpus applies to containers, but this service runs natively"):
        choose("native", _plan(given={"cpus": 1.0}), _runtimes())
    with pytest.raises(Conflict, match="--image, --memory-limit apply to containers.*add --runtime docker"):
        choose("native", _plan(given={"images": ["x:1"], "memory_limit": "1GiB"}), _runtimes())
