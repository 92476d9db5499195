"""aima.engines.qwen_tts_server without Qwen3-TTS's weights (no registry package ships them, no hub is reachable):
it fails at once with one line naming what is missing — the model's files first (before torch is imported), then
the qwen-tts package — and never comes up with a stand-in voice. With the weights it is the official qwen-tts."""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path

import pytest

from aima import catalog
from tests.engines.conftest import PY, run_to_exit
from tests.support.modelstore import write_safetensors

ADAPTER = [PY, "-m", "aima.engines.qwen_tts_server"]


def one_line(res, tmp_path: Path) -> str:  # type: ignore[no-untyped-def]
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert any(re.search(p, lines[0]) for p in catalog.engine("qwen-tts", home=tmp_path).fatal_patterns)
    return lines[0]


def test_no_model_folder(tmp_path: Path) -> None:
    res = run_to_exit([*ADAPTER, "--model", str(tmp_path / "nope")])
    assert one_line(res, tmp_path) == f"aima qwen_tts_server: cannot load model at {tmp_path / 'nope'}: no such " \
                                      f"file or folder"


def test_each_missing_file_is_named(tmp_path: Path) -> None:
    model = tmp_path / "Qwen3-TTS-12Hz-0.6B-CustomVoice"
    model.mkdir()
    assert one_line(run_to_exit([*ADAPTER, "--model", str(model)]), tmp_path).endswith(": config.json is missing")
    (model / "config.json").write_text('{"model_type": "qwen3_tts"}')
    t0 = time.monotonic()
    line = one_line(run_to_exit([*ADAPTER, "--model", str(model)]), tmp_path)
    assert time.monotonic() - t0 < 15 and ": model.safetensors is missing (the weights)" in line


@pytest.mark.skipif(importlib.util.find_spec("qwen_tts") is not None, reason="qwen-tts is installed here")
def test_without_qwen_tts_it_says_how_to_install_it(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "qwen3_tts"}')
    write_safetensors(model / "model.safetensors", {"w": ("F32", [2, 2])})
    line = one_line(run_to_exit([*ADAPTER, "--model", str(model)]), tmp_path)
    assert "qwen-tts is not installed" in line and "pip install qwen-tts" in line


def test_the_catalog_entry_resolves_to_the_adapter(tmp_path: Path) -> None:
    from aima.catalog.loader import load, shipped_dir
    from aima.catalog.resolver import resolve
    from tests.catalog.machines import facts

    cat = load([shipped_dir()])
    gpu = resolve(cat, facts("h100-80gb"), "qwen3-tts", home=tmp_path)
    assert (gpu.model, gpu.engine, gpu.variant) == ("qwen3-tts-0.6b", "qwen-tts", "cuda-bf16")
    assert gpu.argv[1:3] == ["-m", "aima.engines.qwen_tts_server"]
    assert gpu.config["dtype"].value == "bfloat16" and gpu.config["device"].value == "cuda"
    assert gpu.source_spec == "hf:Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice"
    cpu = resolve(cat, facts("cpu-laptop"), "qwen3-tts-0.6b", home=tmp_path)
    assert cpu.variant == "cpu-fp32" and cpu.config["threads"].value == 8
    assert any("qwen_tts cannot be imported" in n or "far slower" in n for n in cpu.notes)
