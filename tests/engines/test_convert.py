"""bert-to-gguf on the real all-MiniLM-L6-v2 (the catalog's pypi source), loaded by llama.cpp."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aima.catalog.schema import Conversion
from aima.errors import Conflict, InvalidInput
from aima.modelstore import convert
from aima.modelstore.pull import pull
from aima.modelstore.store import ModelStore
from aima.store.db import Database

SENTENCES = ["The cat sits on the mat.", "A feline rests on a rug.", "Quarterly revenue grew by ten percent."]


def cos(a: list[float], b: list[float]) -> float:
    import numpy as np

    x, y = np.asarray(a), np.asarray(b)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


@pytest.fixture(scope="module")
def minilm_gguf(minilm_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("conv") / "minilm-f16.gguf"
    facts = convert.run("bert-to-gguf", minilm_source, out, name="all-minilm-l6-v2")
    assert facts["tensors"] == 101 and facts["embedding_length"] == 384 and facts["pooling"] == "mean"
    return out


def test_llama_cpp_loads_the_conversion_and_embeds_384_dims(minilm_gguf: Path) -> None:
    from llama_cpp import Llama

    llm = Llama(model_path=str(minilm_gguf), embedding=True, n_ctx=512, n_threads=2, verbose=False)
    try:
        vecs = llm.embed(SENTENCES)
    finally:
        llm.close()
    assert [len(v) for v in vecs] == [384, 384, 384]
    close, far = cos(vecs[0], vecs[1]), cos(vecs[0], vecs[2])
    assert close > far + 0.3, (close, far)


def test_the_store_records_the_conversion(minilm_source: Path, tmp_path: Path) -> None:
    db = Database(tmp_path / "aima.db")
    try:
        store = ModelStore(tmp_path / "home", db)
        step = Conversion(tool="bert-to-gguf", output_file="all-minilm-l6-v2-f16.gguf")
        spec = f"file:{minilm_source}"
        rec = pull(store, spec, name="all-minilm-l6-v2", type="embedding", convert=step).record
        final = tmp_path / "home/models/all-minilm-l6-v2/all-minilm-l6-v2-f16.gguf"
        assert rec.present and rec.path == str(final) and rec.format == "gguf" and rec.type == "embedding"
        assert sorted(p.name for p in final.parent.iterdir()) == [".aima-model.json", final.name]
        conv = rec.facts["converted_from"]
        assert conv["tool"] == "bert-to-gguf" and conv["source"] == spec and conv["source_format"] == "safetensors"
        assert "model.safetensors" in conv["source_files"] and conv["tool_versions"]["gguf"]
        assert rec.files[final.name]["sha256"]
        again = pull(store, spec, name="all-minilm-l6-v2", convert=step)
        assert again.reused and again.record.id == rec.id
        with pytest.raises(Conflict, match="converted with bert-to-gguf"):
            pull(store, spec, name="all-minilm-l6-v2")  # the same source unconverted is another model
    finally:
        db.close()


def test_a_source_that_is_not_bert_installs_nothing(minilm_source: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(minilm_source, src)
    (src / "model.safetensors").unlink()
    db = Database(tmp_path / "aima.db")
    try:
        store = ModelStore(tmp_path / "home", db)
        with pytest.raises(InvalidInput, match="model.safetensors is missing"):
            pull(store, f"file:{src}", name="m", convert=Conversion(tool="bert-to-gguf", output_file="m.gguf"))
        assert store.get("m") is None and not (tmp_path / "home/models/m").exists()
        with pytest.raises(InvalidInput, match="conversion tool 'nope' is unknown"):
            convert.run("nope", src, tmp_path / "x.gguf")
    finally:
        db.close()
