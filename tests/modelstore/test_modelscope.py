"""The ms: source. With the optional `modelscope` package installed, the REAL library runs against a
local mirror of the ModelScope endpoints it uses; without it, the source says how to install it."""

from __future__ import annotations

import builtins
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from aima.errors import ChecksumMismatch, NotFound, Unavailable
from aima.modelstore import Options, pull
from aima.modelstore.sources import modelscope as ms_source
from aima.modelstore.store import ModelStore
from tests.support.modelstore import MsMirror, sha256_bytes, sha256_of, staged, write_gguf, write_safetensors

needs_modelscope = pytest.mark.skipif(not ms_source.available(),
                                      reason="the optional modelscope package is not installed (aima[modelscope])")


@pytest.fixture
def opts(ms: MsMirror) -> Options:
    return Options(ms_endpoint=ms.url)


@needs_modelscope
def test_snapshot_through_the_library(store: ModelStore, ms: MsMirror, opts: Options, tmp_path: Path) -> None:
    st = write_safetensors(tmp_path / "m.safetensors", {"w": ("F16", [64, 64])}).read_bytes()
    cfg = json.dumps({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
                      "max_position_embeddings": 4096}).encode()
    ms.repos["qwen/tiny"] = {"model.safetensors": st, "config.json": cfg}
    rec = pull(store, "ms:qwen/tiny", options=opts).record
    assert rec.name == "tiny" and rec.present and rec.format == "safetensors"
    assert (rec.facts["architecture"], rec.facts["context_length"], rec.facts["parameters"]) == (
        "Qwen2ForCausalLM", 4096, 64 * 64)
    assert rec.files["model.safetensors"]["sha256"] == sha256_bytes(st)
    assert any("/api/v1/models/qwen/tiny/repo/files" in r["path"] for r in ms.requests)
    assert staged(store) == []


@needs_modelscope
def test_one_file_of_a_repo(store: ModelStore, ms: MsMirror, opts: Options, tmp_path: Path) -> None:
    data = write_gguf(tmp_path / "q.gguf").read_bytes()
    ms.repos["qwen/tiny-gguf"] = {"tiny-q4.gguf": data, "README.md": b"readme"}
    rec = pull(store, "ms:qwen/tiny-gguf/tiny-q4.gguf", options=opts).record
    assert rec.format == "gguf" and sha256_of(Path(rec.path)) == sha256_bytes(data)
    assert sorted(rec.files) == ["tiny-q4.gguf"]
    got = [r["path"] for r in ms.gets("FilePath=")]
    assert got and all("tiny-q4.gguf" in p for p in got)


@needs_modelscope
def test_library_checksum_failure_installs_nothing(store: ModelStore, ms: MsMirror, opts: Options) -> None:
    ms.repos["org/liar"] = {"w.bin": b"real bytes"}
    ms.lie_sha.add("w.bin")
    with pytest.raises(ChecksumMismatch):
        pull(store, "ms:org/liar", options=opts)
    assert store.list() == [] and staged(store) == []


@needs_modelscope
def test_unknown_repo_is_not_found(store: ModelStore, ms: MsMirror, opts: Options) -> None:
    with pytest.raises(NotFound):
        pull(store, "ms:org/none", options=opts)


def test_without_the_package_the_message_says_how_to_install(store: ModelStore, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    real_import = builtins.__import__

    def no_modelscope(name: str, *a: Any, **kw: Any) -> Any:
        if name == "modelscope" or name.startswith("modelscope."):
            raise ImportError("No module named 'modelscope'")
        return real_import(name, *a, **kw)

    for mod in [m for m in sys.modules if m == "modelscope" or m.startswith("modelscope.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(builtins, "__import__", no_modelscope)
    assert not ms_source.available()
    with pytest.raises(Unavailable, match=r"pip install 'aima\[modelscope\]'"):
        pull(store, "ms:qwen/Qwen2.5-0.5B-Instruct-GGUF")
    assert staged(store) == [] and store.list() == []
