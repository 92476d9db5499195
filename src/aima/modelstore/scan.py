"""Detect what a model file or folder is from its bytes, never from its name alone.

``scan(path)`` returns ``Facts``: the format (gguf, safetensors, onnx, ctranslate2, pytorch,
unknown), a guessed model type (llm, embedding, asr, tts), the architecture, the parameter count,
the quantisation, the context length, the size, and format-specific details.

- GGUF: the header and every metadata key/value (``general.architecture``, ``general.file_type``,
  ``<arch>.context_length`` ...); parameters from ``general.parameter_count`` or the tensor shapes.
- safetensors: the 8-byte little-endian header length and the JSON header (dtypes, shapes); a
  ``config.json`` next to it gives the architecture and context length. Shards are summed.
- ONNX: a walk over the top-level protobuf fields of ModelProto (ir_version, producer, opset,
  graph); a ``.onnx.json`` next to it (Piper voices) makes it a TTS voice.
- CTranslate2: ``model.bin`` (binary version, spec name such as ``WhisperSpec``, variables) with
  ``config.json``.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from aima.errors import InvalidInput, NotFound

GGUF_MAGIC = b"GGUF"
GGUF_FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16",
    36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0",
}
GGML_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K",
    11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS",
    18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8",
    25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0",
    39: "MXFP4", 40: "NVFP4", 41: "Q1_0",
}
EMBEDDING_ARCHS = {"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "t5encoder",
                   "modern-bert", "neo-bert", "xlm-roberta"}
CT2_DTYPES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}
MAX_JSON_HEADER = 100 * 1024 * 1024


class ScanError(InvalidInput):
    """A file that claims a format (by its magic bytes) but is malformed."""


@dataclass
class Facts:
    format: str = "unknown"
    type: str | None = None
    architecture: str | None = None
    parameters: int | None = None
    quantization: str | None = None
    context_length: int | None = None
    size_bytes: int = 0
    files: int = 0
    primary: str | None = None  # for a folder: the main weight file, relative to it
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------- entry points
def scan(path: Path) -> Facts:
    """Facts about a file or a folder (scanned as a whole)."""
    path = Path(path)
    if not path.exists():
        raise NotFound(f"{path} does not exist", field="path")
    if path.is_dir():
        return scan_folder(path)
    return scan_file(path)


def sniff(path: Path) -> str:
    """The format of one file from its first bytes: gguf, safetensors, onnx, ctranslate2, pytorch, unknown."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return "unknown"
    if head[:4] == GGUF_MAGIC:
        return "gguf"
    if len(head) >= 10:
        n = struct.unpack("<Q", head[:8])[0]
        if 2 <= n <= min(size - 8, MAX_JSON_HEADER) and head[8:9] == b"{":
            return "safetensors"
    if head[:4] == b"PK\x03\x04":
        return "pytorch" if _zip_has_pickle(path) else "zip"
    if head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
        return "pytorch"
    if _looks_ct2(head):
        return "ctranslate2"
    if head[:1] == b"\x08" and _onnx_fields(path, quick=True) is not None:
        return "onnx"
    return "unknown"


def scan_file(path: Path) -> Facts:
    kind = sniff(path)
    size = path.stat().st_size
    if kind == "gguf":
        facts = scan_gguf(path)
    elif kind == "safetensors":
        facts = _safetensors_facts([path], path.parent)
    elif kind == "onnx":
        facts = scan_onnx(path)
    elif kind == "ctranslate2":
        facts = scan_ct2(path)
    else:
        facts = Facts(format=kind)
    facts.size_bytes = size
    facts.files = 1
    return facts


def scan_folder(root: Path) -> Facts:
    files = sorted(p for p in root.rglob("*") if p.is_file() and not _hidden(p.relative_to(root)))
    size = sum(p.stat().st_size for p in files)
    kinds: dict[str, list[Path]] = {}
    for p in files:
        if p.stat().st_size < 8:
            continue
        kinds.setdefault(sniff(p), []).append(p)
    facts: Facts
    if "ctranslate2" in kinds:
        main = next((p for p in kinds["ctranslate2"] if p.name == "model.bin"), kinds["ctranslate2"][0])
        facts = scan_ct2(main)
        facts.primary = main.relative_to(root).as_posix()
    elif "gguf" in kinds:
        ggufs = sorted(kinds["gguf"], key=lambda p: ("mmproj" in p.name.lower(), -p.stat().st_size))
        facts = scan_gguf(ggufs[0])
        facts.primary = ggufs[0].relative_to(root).as_posix()
        if len(ggufs) > 1:
            facts.details["gguf_files"] = [p.relative_to(root).as_posix() for p in ggufs]
    elif "safetensors" in kinds:
        shards = kinds["safetensors"]
        facts = _safetensors_facts(shards, root)
        facts.primary = shards[0].relative_to(root).as_posix() if len(shards) == 1 else None
    elif "onnx" in kinds:
        onnx = sorted(kinds["onnx"], key=lambda p: -p.stat().st_size)
        facts = scan_onnx(onnx[0])
        facts.primary = onnx[0].relative_to(root).as_posix()
        if len(onnx) > 1:
            facts.details["onnx_files"] = [p.relative_to(root).as_posix() for p in onnx]
    elif "pytorch" in kinds:
        facts = Facts(format="pytorch")
        _apply_hf_config(facts, root)
    else:
        facts = Facts(format="unknown")
    facts.size_bytes = size
    facts.files = len(files)
    return facts


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


# ---------------------------------------------------------------------------- GGUF
class _Reader:
    def __init__(self, f: BinaryIO, path: Path):
        self.f = f
        self.path = path

    def read(self, n: int) -> bytes:
        b = self.f.read(n)
        if len(b) != n:
            raise ScanError(f"{self.path} is truncated (GGUF header ends early)", field="path")
        return b

    def u32(self) -> int:
        return struct.unpack("<I", self.read(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.read(8))[0]

    def string(self) -> str:
        n = self.u64()
        if n > 1 << 24:
            raise ScanError(f"{self.path}: GGUF string of {n} bytes is implausible; the file is corrupt",
                            field="path")
        return self.read(n).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        n = self.u64()
        if n > 1 << 24:
            raise ScanError(f"{self.path}: GGUF string of {n} bytes is implausible; the file is corrupt",
                            field="path")
        self.f.seek(n, os.SEEK_CUR)


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def _gguf_value(r: _Reader, vtype: int, keep_arrays: bool) -> Any:
    if vtype in _SCALARS:
        fmt = _SCALARS[vtype]
        return struct.unpack(fmt, r.read(struct.calcsize(fmt)))[0]
    if vtype == 8:
        return r.string()
    if vtype == 9:
        itype = r.u32()
        count = r.u64()
        if itype in _SCALARS:
            width = struct.calcsize(_SCALARS[itype])
            if keep_arrays and count <= 64:
                return [struct.unpack(_SCALARS[itype], r.read(width))[0] for _ in range(count)]
            r.f.seek(width * count, os.SEEK_CUR)
            return {"array": GGUF_VALUE_NAMES.get(itype, str(itype)), "length": count}
        if itype == 8:
            if keep_arrays and count <= 64:
                return [r.string() for _ in range(count)]
            for _ in range(count):
                r.skip_string()
            return {"array": "STRING", "length": count}
        if itype == 9:
            for _ in range(count):
                _gguf_value(r, 9, False)
            return {"array": "ARRAY", "length": count}
        raise ScanError(f"{r.path}: unknown GGUF array type {itype}", field="path")
    raise ScanError(f"{r.path}: unknown GGUF value type {vtype}", field="path")


GGUF_VALUE_NAMES = {0: "UINT8", 1: "INT8", 2: "UINT16", 3: "INT16", 4: "UINT32", 5: "INT32", 6: "FLOAT32",
                    7: "BOOL", 8: "STRING", 9: "ARRAY", 10: "UINT64", 11: "INT64", 12: "FLOAT64"}


def read_gguf(path: Path) -> tuple[int, dict[str, Any], list[tuple[str, list[int], int]]]:
    """(version, metadata, tensors) of a GGUF file; tensors are (name, shape, ggml type)."""
    with open(path, "rb", buffering=1 << 20) as f:
        r = _Reader(f, path)
        if r.read(4) != GGUF_MAGIC:
            raise ScanError(f"{path} is not a GGUF file (bad magic)", field="path")
        version = r.u32()
        if version not in (2, 3):
            raise ScanError(f"{path}: GGUF version {version} is not supported (2 and 3 are)", field="path")
        n_tensors, n_kv = r.u64(), r.u64()
        if n_tensors > 1 << 24 or n_kv > 1 << 20:
            raise ScanError(f"{path}: GGUF counts ({n_tensors} tensors, {n_kv} keys) are implausible", field="path")
        meta: dict[str, Any] = {}
        for _ in range(n_kv):
            key = r.string()
            vtype = r.u32()
            meta[key] = _gguf_value(r, vtype, keep_arrays=not key.startswith("tokenizer."))
        tensors = []
        for _ in range(n_tensors):
            name = r.string()
            n_dims = r.u32()
            if n_dims > 8:
                raise ScanError(f"{path}: tensor {name!r} has {n_dims} dimensions; the file is corrupt",
                                field="path")
            dims = [r.u64() for _ in range(n_dims)]
            ttype = r.u32()
            r.u64()  # offset
            tensors.append((name, dims, ttype))
    return version, meta, tensors


def scan_gguf(path: Path) -> Facts:
    version, meta, tensors = read_gguf(path)
    arch = meta.get("general.architecture")
    arch = arch if isinstance(arch, str) else None
    params = meta.get("general.parameter_count")
    if not isinstance(params, int) or params <= 0:
        params = 0
        for _, dims, _ in tensors:
            n = 1
            for d in dims:
                n *= d
            params += n
    ftype = meta.get("general.file_type")
    quant = GGUF_FILE_TYPES.get(ftype) if isinstance(ftype, int) else None
    if quant is None and tensors:
        common = Counter(t for _, dims, t in tensors if len(dims) >= 2).most_common(1)
        quant = GGML_TYPES.get(common[0][0]) if common else None
    ctx = meta.get(f"{arch}.context_length") if arch else None
    tokens = meta.get("tokenizer.ggml.tokens")
    details: dict[str, Any] = {
        "version": version, "tensor_count": len(tensors), "kv_count": len(meta),
        "name": meta.get("general.name"), "file_type": ftype, "size_label": meta.get("general.size_label"),
        "vocab_size": tokens.get("length") if isinstance(tokens, dict) else None,
        "tokenizer": meta.get("tokenizer.ggml.model"),
        "has_chat_template": "tokenizer.chat_template" in meta,
    }
    if arch:
        for key in ("embedding_length", "block_count", "head_count", "head_count_kv", "feed_forward_length",
                    "expert_count", "expert_used_count", "pooling_type"):
            v = meta.get(f"{arch}.{key}")
            if v is not None:
                details[key] = v
    mtype = "llm"
    if (arch and (arch in EMBEDDING_ARCHS or arch.endswith("bert"))) or f"{arch}.pooling_type" in meta:
        mtype = "embedding"
    elif arch == "whisper":
        mtype = "asr"
    if meta.get(f"{arch}.expert_count"):
        details["moe"] = True
    return Facts(format="gguf", type=mtype, architecture=arch, parameters=params or None, quantization=quant,
                 context_length=ctx if isinstance(ctx, int) else None,
                 details={k: v for k, v in details.items() if v is not None})


# ---------------------------------------------------------------------------- safetensors
def read_safetensors_header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        raw = f.read(8)
        size = os.fstat(f.fileno()).st_size
        if len(raw) != 8:
            raise ScanError(f"{path} is too short to be safetensors", field="path")
        n = struct.unpack("<Q", raw)[0]
        if n < 2 or n > MAX_JSON_HEADER or 8 + n > size:
            raise ScanError(f"{path}: safetensors header length {n} does not fit the file ({size} bytes)",
                            field="path")
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise ScanError(f"{path}: safetensors header is not JSON ({e})", field="path") from None
    if not isinstance(header, dict):
        raise ScanError(f"{path}: safetensors header is not a JSON object", field="path")
    data_len = size - 8 - n
    for name, t in header.items():
        if name == "__metadata__":
            continue
        offs = t.get("data_offsets") if isinstance(t, dict) else None
        if not (isinstance(offs, list) and len(offs) == 2 and 0 <= offs[0] <= offs[1] <= data_len):
            raise ScanError(f"{path}: tensor {name!r} points outside the file; it is truncated or corrupt",
                            field="path")
    return header


def _safetensors_facts(shards: list[Path], root: Path) -> Facts:
    dtypes: Counter[str] = Counter()
    params = 0
    tensors = 0
    meta: dict[str, Any] = {}
    for shard in shards:
        header = read_safetensors_header(shard)
        for name, t in header.items():
            if name == "__metadata__":
                if isinstance(t, dict):
                    meta.update(t)
                continue
            n = 1
            for d in t.get("shape", []):
                n *= int(d)
            params += n
            tensors += 1
            dtypes[str(t.get("dtype"))] += n
    facts = Facts(format="safetensors", parameters=params or None,
                  quantization=dtypes.most_common(1)[0][0] if dtypes else None,
                  details={"tensor_count": tensors, "dtypes": sorted(dtypes), "shards": len(shards)})
    if meta:
        facts.details["metadata"] = {k: v for k, v in list(meta.items())[:20]}
    _apply_hf_config(facts, root)
    return facts


def _apply_hf_config(facts: Facts, root: Path) -> None:
    cfg_path = root / "config.json"
    cfg: dict[str, Any] = {}
    if cfg_path.is_file():
        try:
            loaded = json.loads(cfg_path.read_text())
            cfg = loaded if isinstance(loaded, dict) else {}
        except (ValueError, OSError):
            cfg = {}
    archs = cfg.get("architectures") or []
    model_type = cfg.get("model_type")
    facts.architecture = (archs[0] if archs and isinstance(archs[0], str) else None) or model_type
    if model_type:
        facts.details["model_type"] = model_type
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "n_ctx"):
        if isinstance(cfg.get(key), int):
            facts.context_length = cfg[key]
            break
    text_cfg = cfg.get("text_config")
    if (facts.context_length is None and isinstance(text_cfg, dict)
            and isinstance(text_cfg.get("max_position_embeddings"), int)):
        facts.context_length = text_cfg["max_position_embeddings"]
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "torch_dtype",
                "num_local_experts", "num_experts"):
        if cfg.get(key) is not None:
            facts.details[key] = cfg[key]
    qc = cfg.get("quantization_config")
    if isinstance(qc, dict):
        facts.quantization = str(qc.get("quant_method") or qc.get("bits") or facts.quantization)
    name = " ".join(str(a) for a in archs).lower() + " " + str(model_type or "").lower()
    if (root / "modules.json").is_file() or (root / "sentence_bert_config.json").is_file():
        facts.type = "embedding"
    elif "whisper" in name or "speech" in name or "wav2vec" in name:
        facts.type = "asr"
    elif "causallm" in name or "forconditionalgeneration" in name or "lmhead" in name:
        facts.type = "llm"
    elif any(s in name for s in ("bertmodel", "robertamodel", "xlm-roberta", "bert", "e5", "mpnet")):
        facts.type = "embedding"
    elif cfg:
        facts.type = "llm"


# ---------------------------------------------------------------------------- ONNX
def _varint(f: BinaryIO) -> int | None:
    shift = 0
    out = 0
    for _ in range(10):
        b = f.read(1)
        if not b:
            return None
        out |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return out
        shift += 7
    return None


# ModelProto field numbers: 1 ir_version, 2 producer_name, 3 producer_version, 4 domain,
# 5 model_version, 6 doc_string, 7 graph, 8 opset_import, 14 metadata_props, 20 training_info, 25 functions
_ONNX_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2}


def _onnx_fields(path: Path, quick: bool = False) -> dict[str, Any] | None:
    """Walk the top-level fields of an ONNX ModelProto; None when the bytes are not one."""
    try:
        f = open(path, "rb")  # noqa: SIM115
    except OSError:
        return None
    with f:
        size = os.fstat(f.fileno()).st_size
        out: dict[str, Any] = {"opset": {}}
        seen_graph = False
        n = 0
        while f.tell() < size:
            tag = _varint(f)
            if tag is None:
                return None
            num, wire = tag >> 3, tag & 7
            if _ONNX_FIELDS.get(num) != wire:
                return None
            if wire == 0:
                v = _varint(f)
                if v is None:
                    return None
                if num == 1:
                    if not 1 <= v <= 64:
                        return None
                    out["ir_version"] = v
                elif num == 5:
                    out["model_version"] = v
            else:
                length = _varint(f)
                if length is None or f.tell() + length > size:
                    return None
                if num in (2, 3, 4) and length <= 4096:
                    key = {2: "producer_name", 3: "producer_version", 4: "domain"}[num]
                    out[key] = f.read(length).decode("utf-8", errors="replace")
                elif num == 8 and length <= 4096:
                    dom, ver = _opset(f.read(length))
                    out["opset"][dom or "ai.onnx"] = ver
                elif num == 7:
                    seen_graph = True
                    end = f.tell() + length
                    if not quick:
                        out.update(_onnx_graph(f, end))
                    f.seek(end)
                else:
                    f.seek(length, os.SEEK_CUR)
            n += 1
            if quick and n >= 3 and "ir_version" in out:
                return out
        if "ir_version" not in out or not (seen_graph or quick):
            return None
        return out


ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string",
               9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}


def _skip(f: BinaryIO, wire: int) -> bool:
    if wire == 0:
        return _varint(f) is not None
    if wire == 1:
        f.seek(8, os.SEEK_CUR)
    elif wire == 5:
        f.seek(4, os.SEEK_CUR)
    elif wire == 2:
        ln = _varint(f)
        if ln is None:
            return False
        f.seek(ln, os.SEEK_CUR)
    else:
        return False
    return True


def _onnx_graph(f: BinaryIO, end: int) -> dict[str, Any]:
    """Parameter count and weight dtypes from the graph's initializers (field 5), seeking past the data."""
    params = 0
    dtypes: Counter[str] = Counter()
    nodes = 0
    while f.tell() < end:
        tag = _varint(f)
        if tag is None:
            break
        num, wire = tag >> 3, tag & 7
        if num == 5 and wire == 2:
            ln = _varint(f) or 0
            t_end = f.tell() + ln
            dims: list[int] = []
            dtype = 0
            while f.tell() < t_end:
                ttag = _varint(f)
                if ttag is None:
                    break
                tnum, twire = ttag >> 3, ttag & 7
                if tnum == 1 and twire == 0:
                    dims.append(_varint(f) or 0)
                elif tnum == 1 and twire == 2:
                    pl = _varint(f) or 0
                    p_end = f.tell() + pl
                    while f.tell() < p_end:
                        dims.append(_varint(f) or 0)
                elif tnum == 2 and twire == 0:
                    dtype = _varint(f) or 0
                elif not _skip(f, twire):
                    break
            f.seek(t_end)
            n = 1
            for d in dims:
                n *= d
            params += n
            if len(dims) >= 2:
                dtypes[ONNX_DTYPES.get(dtype, str(dtype))] += n
        elif num == 1 and wire == 2:
            nodes += 1
            if not _skip(f, wire):
                break
        elif not _skip(f, wire):
            break
    out: dict[str, Any] = {"nodes": nodes}
    if params:
        out["parameters"] = params
    if dtypes:
        out["weight_dtypes"] = dict(dtypes.most_common())
    return out


def _opset(buf: bytes) -> tuple[str, int | None]:
    import io

    f = io.BytesIO(buf)
    dom, ver = "", None
    while f.tell() < len(buf):
        tag = _varint(f)
        if tag is None:
            break
        num, wire = tag >> 3, tag & 7
        if wire == 0:
            v = _varint(f)
            if num == 2:
                ver = v
        elif wire == 2:
            ln = _varint(f) or 0
            data = f.read(ln)
            if num == 1:
                dom = data.decode("utf-8", errors="replace")
        else:
            break
    return dom, ver


def scan_onnx(path: Path) -> Facts:
    fields = _onnx_fields(path)
    if fields is None:
        raise ScanError(f"{path} is not a well-formed ONNX model (protobuf fields do not parse to its end)",
                        field="path")
    params = fields.pop("parameters", None)
    wd = fields.get("weight_dtypes") or {}
    facts = Facts(format="onnx", parameters=params, quantization=next(iter(wd), None),
                  details={k: v for k, v in fields.items() if v not in ({}, None)})
    sidecar = path.with_name(path.name + ".json")
    if sidecar.is_file():  # a Piper voice: en_US-joe-medium.onnx + en_US-joe-medium.onnx.json
        try:
            cfg = json.loads(sidecar.read_text())
        except (ValueError, OSError):
            cfg = {}
        if isinstance(cfg, dict) and ("espeak" in cfg or "audio" in cfg or "phoneme_id_map" in cfg):
            facts.type = "tts"
            facts.architecture = "piper" if "espeak" in cfg or "phoneme_id_map" in cfg else None
            audio = cfg.get("audio") if isinstance(cfg.get("audio"), dict) else {}
            if audio.get("sample_rate"):
                facts.details["sample_rate"] = audio["sample_rate"]
            lang = cfg.get("language")
            if isinstance(lang, dict) and lang.get("code"):
                facts.details["language"] = lang["code"]
    if facts.type is None and (path.parent / "config.json").is_file():
        _apply_hf_config(facts, path.parent)
    return facts


# ---------------------------------------------------------------------------- CTranslate2
def _looks_ct2(head: bytes) -> bool:
    if len(head) < 10:
        return False
    version = struct.unpack("<I", head[:4])[0]
    if not 1 <= version <= 10:
        return False
    n = struct.unpack("<H", head[4:6])[0]
    name = head[6:6 + n]
    return 2 <= n <= 58 and len(name) == n and name.endswith(b"\x00") and name[:-1].isascii() \
        and name[:-1].replace(b"_", b"").isalnum() and name[:-1].endswith(b"Spec")


def scan_ct2(path: Path) -> Facts:
    """CTranslate2 ``model.bin``: spec name, revision, variables (shapes and dtypes)."""
    with open(path, "rb", buffering=1 << 16) as f:
        size = os.fstat(f.fileno()).st_size

        def read(n: int) -> bytes:
            b = f.read(n)
            if len(b) != n:
                raise ScanError(f"{path} is truncated (CTranslate2 model.bin ends early)", field="path")
            return b

        def string() -> str:
            n = struct.unpack("<H", read(2))[0]
            return read(n).rstrip(b"\x00").decode("utf-8", errors="replace")

        version = struct.unpack("<I", read(4))[0]
        spec = string()
        revision = struct.unpack("<I", read(4))[0] if version >= 2 else None
        count = struct.unpack("<I", read(4))[0]
        if count > 1 << 20:
            raise ScanError(f"{path}: {count} variables is implausible; the file is corrupt", field="path")
        params = 0
        dtypes: Counter[str] = Counter()
        layers: dict[str, set[str]] = {}
        for _ in range(count):
            name = string()
            rank = struct.unpack("<B", read(1))[0]
            dims = struct.unpack(f"<{rank}I", read(4 * rank)) if rank else ()
            dtype = struct.unpack("<B", read(1))[0]
            nbytes = struct.unpack("<I", read(4))[0]
            if f.tell() + nbytes > size:
                raise ScanError(f"{path}: variable {name!r} runs past the end of the file", field="path")
            f.seek(nbytes, os.SEEK_CUR)
            if rank >= 1:
                n = 1
                for d in dims:
                    n *= d
                params += n
                if rank >= 2:
                    dtypes[CT2_DTYPES.get(dtype, str(dtype))] += n
            parts = name.split("/")
            if len(parts) >= 2 and re.fullmatch(r"layer_\d+", parts[1]):
                layers.setdefault(parts[0], set()).add(parts[1])
    model_type = spec[:-4].lower() if spec.endswith("Spec") else spec
    details: dict[str, Any] = {"binary_version": version, "spec": spec, "spec_revision": revision,
                               "variables": count, "dtypes": sorted(dtypes)}
    for part, names in layers.items():
        details[f"{part}_layers"] = len(names)
    cfg_path = path.parent / "config.json"
    if cfg_path.is_file():
        try:
            cfg = json.loads(cfg_path.read_text())
        except (ValueError, OSError):
            cfg = {}
        if isinstance(cfg, dict):
            if isinstance(cfg.get("model_type"), str):
                model_type = cfg["model_type"]
            for key in ("layers", "num_layers", "num_hidden_layers", "max_length", "max_position_embeddings"):
                if cfg.get(key) is not None:
                    details[key] = cfg[key]
            details["config_keys"] = sorted(cfg)[:30]
    mtype = "asr" if "whisper" in model_type.lower() or "wav2vec" in model_type.lower() else "llm"
    quant = dtypes.most_common(1)[0][0] if dtypes else None
    ctx = details.get("max_length") or details.get("max_position_embeddings")
    return Facts(format="ctranslate2", type=mtype, architecture=model_type, parameters=params or None,
                 quantization=quant, context_length=ctx if isinstance(ctx, int) else None, details=details)


def _zip_has_pickle(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("data.pkl") for n in z.namelist()[:50])
    except (zipfile.BadZipFile, OSError):
        return False
