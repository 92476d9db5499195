"""The ray runtime's decisions that need no cluster: resource requests, ``--runtime auto``, placement-group
bundles, and vLLM across nodes (``--distributed-executor-backend ray`` with tensor/pipeline sizes worked out
from recorded cluster shapes; rendered only: no GPU is lent here)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from pydantic import ValidationError

from aima.catalog import loader
from aima.config import Settings
from aima.errors import Unavailable
from aima.runtimes.base import ServicePlan
from aima.runtimes.choice import choose
from aima.runtimes.native import NativeRuntime
from aima.runtimes.ray import (
    DEFAULT_CPU,
    RayOptions,
    RayRuntime,
    bundles_for,
    distributed_args,
    merged_request,
    namespace_for,
    parallel_sizes,
    plan_request,
)

GiB = 1 << 30

# Cluster shapes as `ray.nodes()` reported them (GPUs per alive worker node; heads started with --num-gpus 0).
SHAPES = {
    "two 8-GPU boxes": [8, 8],
    "four 4-GPU boxes": [4, 4, 4, 4],
    "two 1-GPU laptops": [1, 1],
    "one 8-GPU box and a CPU head": [8, 0],
    "mixed 4 and 2": [4, 2, 2],
}


@pytest.mark.parametrize(("gpus", "shape", "want"), [
    (8, "two 8-GPU boxes", (8, 1)),
    (16, "two 8-GPU boxes", (8, 2)),
    (8, "four 4-GPU boxes", (4, 2)),
    (16, "four 4-GPU boxes", (4, 4)),
    (2, "two 1-GPU laptops", (1, 2)),
    (4, "one 8-GPU box and a CPU head", (4, 1)),
    (6, "mixed 4 and 2", (2, 3)),
])
def test_parallel_sizes_from_recorded_cluster_shapes(gpus: int, shape: str, want: tuple[int, int]) -> None:
    tp, pp = parallel_sizes(gpus, SHAPES[shape])
    assert (tp, pp) == want
    assert tp * pp >= gpus


@pytest.mark.parametrize(("gpus", "shape"), [(32, "two 8-GPU boxes"), (3, "two 1-GPU laptops"), (1, "")])
def test_parallel_sizes_refuse_what_the_cluster_cannot_hold(gpus: int, shape: str) -> None:
    with pytest.raises(Unavailable) as e:
        parallel_sizes(gpus, SHAPES.get(shape, [0, 0]))
    assert "GPU" in e.value.message


def vllm_flags() -> dict[str, str]:
    eng = loader.get_catalog(None).engine("vllm")
    assert eng is not None
    out = {}
    for role in ("tensor_parallel", "pipeline_parallel", "distributed_executor"):
        key = eng.key_for_role(role)
        assert key is not None, role
        out[role] = eng.config[key].flag
    return out


def test_vllm_across_nodes_gets_the_ray_backend_and_both_sizes() -> None:
    argv = shlex.split("vllm serve /m/qwen --served-model-name qwen --tensor-parallel-size 1 --port {port}")
    out = distributed_args(argv, vllm_flags(), *parallel_sizes(16, SHAPES["four 4-GPU boxes"]))
    assert out[:5] == ["vllm", "serve", "/m/qwen", "--served-model-name", "qwen"]
    joined = " ".join(out)
    assert "--tensor-parallel-size 4" in joined and "--tensor-parallel-size 1" not in joined
    assert "--pipeline-parallel-size 4" in joined and "--distributed-executor-backend ray" in joined
    assert "--port {port}" in joined
    # Within one node: tensor parallel only, still on Ray's workers (the cluster holds the GPUs).
    one = " ".join(distributed_args(argv, vllm_flags(), *parallel_sizes(8, SHAPES["two 8-GPU boxes"])))
    assert "--tensor-parallel-size 8" in one and "--pipeline-parallel-size" not in one


def test_the_runtime_renders_a_distributed_vllm_plan(tmp_path: Path) -> None:
    rt = RayRuntime(Settings(home=tmp_path, ray_address="127.0.0.2:6379"))
    plan = ServicePlan(model="big", engine="vllm", command="vllm serve /m/big --served-model-name big",
                       gpu={"vendor": "nvidia", "indexes": [0]}, memory_bytes=70 * GiB, devices=["gpu0"])
    d = rt._distributed(plan, 8, SHAPES["four 4-GPU boxes"])
    assert (d["tp"], d["pp"]) == (4, 2) and d["flags"] == vllm_flags()
    # An engine that cannot be split is refused, naming it.
    with pytest.raises(Unavailable) as e:
        rt._distributed(ServicePlan(model="m", engine="llama-cpp", command="x"), 8, [4, 4])
    assert "llama-cpp" in e.value.message


def test_bundles_for_multi_gpu_and_multi_node_requests() -> None:
    assert bundles_for({"CPU": DEFAULT_CPU, "GPU": 1.0}, [4]) is None
    one, how = bundles_for({"CPU": 1.0, "GPU": 4.0}, [8, 4]) or ([], "")
    assert how == "STRICT_PACK" and one == [{"CPU": 1.0, "GPU": 4.0}]
    many, how = bundles_for({"CPU": 1.0, "GPU": 8.0}, [4, 4]) or ([], "")
    assert how == "STRICT_SPREAD" and [b["GPU"] for b in many] == [4.0, 4.0] and many[0]["CPU"] == 1.0


def test_requests_from_the_plan_and_resources() -> None:
    gpu_plan = ServicePlan(model="m", engine="vllm", command="x", gpu={"vendor": "nvidia", "indexes": [0, 1]},
                           memory_bytes=20 * GiB, devices=["gpu0", "gpu1"])
    cpu_plan = ServicePlan(model="m", engine="llama-cpp", command="x", memory_bytes=2 * GiB, devices=["cpu"])
    assert plan_request(gpu_plan) == {"GPU": 2.0}
    assert plan_request(cpu_plan) == {"memory": float(2 * GiB)}
    req = merged_request({"plan_request": plan_request(cpu_plan), "resources": {"memory": "8GiB", "zone": "1"}})
    assert req == {"CPU": DEFAULT_CPU, "memory": float(8 * GiB), "zone": 1.0}  # --resources wins per key
    assert merged_request({"resources": {"CPU": "2"}})["CPU"] == 2.0
    assert RayOptions(resources={"GPU": "1", "memory": "1GiB"}).resources == {"GPU": "1", "memory": "1GiB"}
    for bad in ({"GPU": "one"}, {"memory": "lots"}, {"CPU": "-1"}):
        with pytest.raises(ValidationError):
            RayOptions(resources=bad)


def test_auto_chooses_ray_when_a_cluster_is_attached_and_the_plan_does_not_fit_here(tmp_path: Path) -> None:
    plan = ServicePlan(model="big", engine="llama-cpp", command="x", fits_here=False)
    attached = RayRuntime(Settings(home=tmp_path, ray_address="127.0.0.2:6379"))
    runtimes = {"native": NativeRuntime(Settings(home=tmp_path)), "ray": attached}
    name, why = choose("auto", plan, runtimes)
    assert name == "ray" and why == "auto: a Ray cluster is attached and it does not fit on this machine"
    # Fits here, or no cluster: ray claims nothing.
    assert attached.claims(ServicePlan(model="m", engine="llama-cpp", command="x")) is None
    alone = RayRuntime(Settings(home=tmp_path))
    assert alone.claims(plan) is None and not alone.available()
    assert "aima start --ray" in alone.consider(plan).why
    # resolved against a node: the reason names it; no cluster: nowhere else to go
    plan.fits_on = "127.0.0.3"
    assert attached.claims(plan) == ("a Ray cluster is attached and it does not fit on this machine; it fits node "
                                     "127.0.0.3")
    assert alone.elsewhere() == []


def test_a_model_missing_here_is_pulled_by_the_node_from_the_catalog_source(tmp_path: Path) -> None:
    rt = RayRuntime(Settings(home=tmp_path, ray_address="127.0.0.2:6379"))
    path = str(tmp_path / "models" / "big" / "big.gguf")
    plan = ServicePlan(model="big", engine="llama-cpp", command="x", model_path=path, model_present=False,
                       source_spec="hf:org/big/big.gguf", model_type="llm")
    got = rt._model_info(plan)
    assert got is not None and got["source"] == "hf:org/big/big.gguf" and got["name"] == "big"
    assert got["folder"] == str(tmp_path / "models" / "big") and got["path"] == path and got["home"] == str(tmp_path)
    # weights outside the store (a local source), or no source at all: nothing a node can fetch
    assert rt._model_info(ServicePlan(model="big", engine="llama-cpp", command="x", model_path="/data/big.gguf",
                                      model_present=False, source_spec="local:/data/big.gguf")) is None
    assert rt._model_info(ServicePlan(model="big", engine="llama-cpp", command="x", model_path=path,
                                      model_present=False)) is None


def test_the_namespace_is_derived_from_aima_home(tmp_path: Path) -> None:
    a, b = namespace_for(tmp_path / "a"), namespace_for(tmp_path / "b")
    assert a != b and a.startswith("aima-") and namespace_for(tmp_path / "a") == a


def test_config_yaml_ray_address(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config.yaml").write_text("ray:\n  address: 10.0.0.5:6379\n")
    monkeypatch.setenv("AIMA_HOME", str(tmp_path))
    monkeypatch.delenv("AIMA_RAY_ADDRESS", raising=False)
    assert Settings().ray_address == "10.0.0.5:6379"
    monkeypatch.setenv("AIMA_RAY_ADDRESS", "10.0.0.6:6379")
    assert Settings().ray_address == "10.0.0.6:6379"  # the environment beats config.yaml
