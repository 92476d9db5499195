"""The hf: source through the REAL huggingface_hub client, against a local mirror of the hub's
endpoints serving files the tests make (no hub is reachable from these machines)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from aima.errors import ChecksumMismatch, NotFound
from aima.modelstore import Options, pull
from aima.modelstore.store import ModelStore
from tests.support.modelstore import HfMirror, sha256_bytes, sha256_of, staged, write_gguf, write_safetensors


@pytest.fixture
def opts(hf: HfMirror) -> Options:
    return Options(hf_endpoint=hf.url)


def test_single_file_through_the_client(store: ModelStore, hf: HfMirror, opts: Options, tmp_path: Path) -> None:
    data = write_gguf(tmp_path / "t.gguf", n_ctx=1024).read_bytes()
    commit = hf.add("tiny-org/tiny-llama-GGUF", {"tiny-llama.Q8_0.gguf": data, "README.md": b"# tiny"})
    seen: list[tuple[int, int | None]] = []
    rec = pull(store, "hf:tiny-org/tiny-llama-GGUF/tiny-llama.Q8_0.gguf", options=opts,
               progress=lambda d, t: seen.append((d, t))).record
    assert rec.name == "tiny-llama.Q8_0" and rec.present and rec.format == "gguf"
    assert rec.facts["context_length"] == 1024 and rec.facts["architecture"] == "llama"
    assert sha256_of(Path(rec.path)) == sha256_bytes(data) == rec.files["tiny-llama.Q8_0.gguf"]["sha256"]
    assert sorted(os.listdir(rec.folder)) == [".aima-model.json", "tiny-llama.Q8_0.gguf"]  # no client metadata
    paths = [r["path"] for r in hf.requests]
    assert any(p.startswith("/api/models/tiny-org/tiny-llama-GGUF/revision/main") for p in paths)
    assert any(f"/resolve/{commit}/tiny-llama.Q8_0.gguf" in p for p in paths)  # pinned to the commit
    assert seen and seen[-1] == (len(data), len(data))
    assert staged(store) == []


def test_snapshot_of_a_safetensors_repo(store: ModelStore, hf: HfMirror, opts: Options, tmp_path: Path) -> None:
    st = write_safetensors(tmp_path / "model.safetensors", {"lm_head.weight": ("BF16", [256, 32]),
                                                            "embed.weight": ("BF16", [256, 32])}).read_bytes()
    config = json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                         "max_position_embeddings": 2048}).encode()
    hf.add("org/tiny-st", {"model.safetensors": st, "config.json": config, "tokenizer/tokenizer.json": b"{}"})
    rec = pull(store, "hf:org/tiny-st", name="tiny-st", options=opts).record
    assert rec.present and rec.path == rec.folder and rec.primary is None
    assert sorted(rec.files) == ["config.json", "model.safetensors", "tokenizer/tokenizer.json"]
    assert all(f["sha256"] for f in rec.files.values())  # every LFS sha256 checked
    assert (rec.format, rec.type, rec.facts["architecture"], rec.facts["context_length"]) == (
        "safetensors", "llm", "LlamaForCausalLM", 2048)
    assert rec.facts["parameters"] == 2 * 256 * 32
    assert not (Path(rec.folder) / ".cache").exists()


def test_a_subfolder_of_a_repo(store: ModelStore, hf: HfMirror, opts: Options) -> None:
    hf.add("org/multi", {"onnx/model.onnx": b"\x08\x08", "onnx/extra.txt": b"x", "README.md": b"r"})
    rec = pull(store, "hf:org/multi/onnx", name="multi-onnx", options=opts).record
    assert sorted(rec.files) == ["onnx/extra.txt", "onnx/model.onnx"]


def test_dropped_transfer_is_resumed_by_the_client_with_range(store: ModelStore, hf: HfMirror,
                                                              opts: Options) -> None:
    # huggingface_hub writes what it received in 10 MiB chunks: drop the connection after the first one
    data = os.urandom(12 * 1024 * 1024)
    hf.add("org/resume", {"weights.bin": data})
    hf.cut_first["weights.bin"] = 11 * 1024 * 1024
    rec = pull(store, "hf:org/resume/weights.bin", options=opts).record
    gets = hf.gets("/resolve/")
    assert len(gets) == 2 and "range" not in gets[0]["headers"]
    resumed_at = int(gets[1]["headers"]["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= 11 * 1024 * 1024
    assert sha256_of(Path(rec.path)) == sha256_bytes(data) == rec.files["weights.bin"]["sha256"]


def test_checksum_mismatch_from_the_hub_listing(store: ModelStore, hf: HfMirror, opts: Options) -> None:
    hf.add("org/liar", {"w.bin": b"real bytes"})
    hf.lie_sha.add("w.bin")
    with pytest.raises(ChecksumMismatch, match="sha256 of w.bin"):
        pull(store, "hf:org/liar/w.bin", options=opts)
    assert store.list() == [] and staged(store) == [] and not (store.root / "w").exists()


def test_unknown_repo_file_and_revision_are_not_found(store: ModelStore, hf: HfMirror, opts: Options) -> None:
    hf.add("org/real", {"a.bin": b"a"})
    with pytest.raises(NotFound):
        pull(store, "hf:org/nope", options=opts)
    with pytest.raises(NotFound, match="neither a file nor a folder"):
        pull(store, "hf:org/real/b.bin", options=opts)
    with pytest.raises(NotFound):
        pull(store, "hf:org/real@v9", options=opts)
    assert staged(store) == []


def test_endpoint_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from aima.config import Settings

    monkeypatch.setenv("AIMA_HF_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("AIMA_MS_ENDPOINT", "http://127.0.0.1:2")
    s = Settings()
    assert (s.hf_endpoint, s.ms_endpoint) == ("http://127.0.0.1:1", "http://127.0.0.1:2")
