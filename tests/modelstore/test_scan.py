"""Format detection from file headers: real GGUF (written with `gguf`), safetensors written by hand,
ONNX protobuf, CTranslate2 model.bin, folders as a whole, and malformed files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from aima.modelstore.scan import ScanError, scan, sniff
from tests.support.modelstore import gguf_param_count, onnx_bytes, write_ct2, write_gguf, write_safetensors


def test_gguf_header_and_metadata(tmp_path: Path) -> None:
    p = write_gguf(tmp_path / "tiny.gguf", n_ctx=512)
    f = scan(p)
    assert f.format == "gguf"
    assert f.type == "llm"
    assert f.architecture == "llama"
    assert f.context_length == 512
    assert f.quantization == "F32"
    assert f.parameters == gguf_param_count()  # from the tensor shapes (no general.parameter_count)
    assert f.size_bytes == p.stat().st_size and f.files == 1
    d = f.details
    assert d["version"] == 3 and d["name"] == "tiny-random-llama"
    assert d["vocab_size"] == 98 and d["block_count"] == 2 and d["embedding_length"] == 64
    assert d["has_chat_template"] is True
    assert d["tensor_count"] == 3 + 2 * 9


def test_gguf_quantisation_name_and_explicit_parameter_count(tmp_path: Path) -> None:
    import gguf

    p = tmp_path / "q.gguf"
    w = gguf.GGUFWriter(str(p), "qwen2")
    w.add_context_length(32768)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_1)
    w.add_uint64("general.parameter_count", 494_032_768)
    w.add_tensor("token_embd.weight", __import__("numpy").zeros((8, 4), dtype="float32"))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    f = scan(p)
    assert (f.architecture, f.quantization, f.context_length, f.parameters) == ("qwen2", "Q4_1", 32768, 494_032_768)


def test_gguf_embedding_model_is_typed_embedding(tmp_path: Path) -> None:
    f = scan(write_gguf(tmp_path / "e.gguf", arch="bert", pooling=True))
    assert f.type == "embedding" and f.architecture == "bert"


def test_truncated_gguf_is_a_clear_error(tmp_path: Path) -> None:
    p = write_gguf(tmp_path / "t.gguf")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(p.read_bytes()[:200])
    with pytest.raises(ScanError, match="truncated"):
        scan(cut)


def test_safetensors_by_hand_with_config(tmp_path: Path) -> None:
    d = tmp_path / "minilm"
    d.mkdir()
    write_safetensors(d / "model.safetensors", {
        "embeddings.word_embeddings.weight": ("F32", [1000, 32]),
        "encoder.layer.0.attention.self.query.weight": ("F16", [32, 32]),
        "encoder.layer.0.attention.self.query.bias": ("F16", [32]),
    }, metadata={"format": "pt"})
    (d / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "model_type": "bert",
                                               "max_position_embeddings": 512, "hidden_size": 32,
                                               "num_hidden_layers": 1}))
    f = scan(d / "model.safetensors")
    assert f.format == "safetensors"
    assert f.parameters == 1000 * 32 + 32 * 32 + 32
    assert f.details["dtypes"] == ["F16", "F32"] and f.quantization == "F32"
    assert f.architecture == "BertModel" and f.context_length == 512 and f.type == "embedding"
    assert f.details["metadata"] == {"format": "pt"}
    folder = scan(d)  # the folder as a whole gives the same facts
    assert (folder.format, folder.parameters, folder.files) == ("safetensors", f.parameters, 2)


def test_sharded_safetensors_folder_sums_the_shards(tmp_path: Path) -> None:
    d = tmp_path / "llm"
    d.mkdir()
    write_safetensors(d / "model-00001-of-00002.safetensors", {"a": ("BF16", [64, 64])})
    write_safetensors(d / "model-00002-of-00002.safetensors", {"b": ("BF16", [64, 16]), "c": ("BF16", [64])})
    (d / "config.json").write_text(json.dumps({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
                                               "max_position_embeddings": 32768}))
    f = scan(d)
    assert f.format == "safetensors" and f.details["shards"] == 2
    assert f.parameters == 64 * 64 + 64 * 16 + 64
    assert (f.architecture, f.type, f.context_length, f.quantization) == ("Qwen2ForCausalLM", "llm", 32768, "BF16")


def test_safetensors_header_pointing_past_the_file_is_refused(tmp_path: Path) -> None:
    p = write_safetensors(tmp_path / "x.safetensors", {"w": ("F32", [100, 100])})
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(ScanError, match="outside the file"):
        scan(p)


def test_onnx_protobuf_sniff_and_initializers(tmp_path: Path) -> None:
    p = tmp_path / "m.onnx"
    p.write_bytes(onnx_bytes(ir_version=8, producer="aima-tests", opset=17))
    assert sniff(p) == "onnx"
    f = scan(p)
    assert f.format == "onnx" and f.parameters == 12 and f.quantization == "float32"
    assert f.details["ir_version"] == 8 and f.details["producer_name"] == "aima-tests"
    assert f.details["opset"] == {"ai.onnx": 17} and f.details["nodes"] == 1


def test_onnx_with_piper_sidecar_is_a_tts_voice(tmp_path: Path) -> None:
    p = tmp_path / "en_US-test-medium.onnx"
    p.write_bytes(onnx_bytes())
    (tmp_path / "en_US-test-medium.onnx.json").write_text(json.dumps(
        {"audio": {"sample_rate": 22050}, "espeak": {"voice": "en-us"}, "language": {"code": "en_US"}}))
    f = scan(tmp_path)
    assert (f.format, f.type, f.architecture) == ("onnx", "tts", "piper")
    assert f.details["sample_rate"] == 22050 and f.details["language"] == "en_US"
    assert f.primary == "en_US-test-medium.onnx"


def test_ctranslate2_whisper_folder(tmp_path: Path) -> None:
    d = write_ct2(tmp_path / "whisper", layers=3)
    assert sniff(d / "model.bin") == "ctranslate2"
    f = scan(d)
    assert (f.format, f.type, f.architecture) == ("ctranslate2", "asr", "whisper")
    assert f.details["spec"] == "WhisperSpec" and f.details["binary_version"] == 6
    assert f.details["encoder_layers"] == 3 and f.details["decoder_layers"] == 3
    assert f.parameters == 2 * (3 * 32 + 4) and f.quantization == "float16"
    assert f.primary == "model.bin" and f.files == 2


def test_unknown_and_pytorch_pickles(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello world, not a model")
    assert scan(tmp_path / "notes.txt").format == "unknown"
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x02" + b"\x00" * 32)
    assert sniff(tmp_path / "pytorch_model.bin") == "pytorch"


def test_a_gguf_folder_picks_the_largest_weights_not_the_projector(tmp_path: Path) -> None:
    write_gguf(tmp_path / "model-q8.gguf", n_layer=3)
    write_gguf(tmp_path / "model-q4.gguf", n_layer=1)
    write_gguf(tmp_path / "mmproj-model.gguf", n_layer=4)
    f = scan(tmp_path)
    assert f.format == "gguf" and f.primary == "model-q8.gguf" and f.files == 3
    assert f.details["gguf_files"][0] == "model-q8.gguf"


def test_bad_gguf_version_and_implausible_counts(tmp_path: Path) -> None:
    p = tmp_path / "v9.gguf"
    p.write_bytes(b"GGUF" + struct.pack("<I", 9) + b"\x00" * 16)
    with pytest.raises(ScanError, match="version 9"):
        scan(p)
    q = tmp_path / "huge.gguf"
    q.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 1 << 40, 1))
    with pytest.raises(ScanError, match="implausible"):
        scan(q)
