"""Conversions the model store runs after a pull, named by the catalog (``variant.convert.tool``).

- ``bert-to-gguf``: a BERT sentence-embedding model as published for sentence-transformers
  (``config.json``, ``model.safetensors``, ``vocab.txt``, ``tokenizer.json``, optional
  ``1_Pooling/config.json``) → one f16 GGUF that llama.cpp serves at ``/v1/embeddings``. It needs only
  ``gguf`` and ``numpy`` (no torch, no transformers) and produces the same tensors and non-``general.*``
  metadata as llama.cpp's ``convert_hf_to_gguf.py`` (checked on all-MiniLM-L6-v2: 101 tensors).

``run(tool, src, out, name=...)`` writes ``out`` atomically (a temporary file, then one rename) and
returns what it did, which the store keeps in the model's record (``facts.converted_from``). Adding a
tool is adding a function and one line in ``TOOLS``.
"""

from __future__ import annotations

import json
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from aima.errors import InvalidInput


class ConvertSpec(Protocol):
    """What the catalog says (``aima.catalog.schema.Conversion`` has this shape)."""

    tool: str
    output_file: str


# ---------------------------------------------------------------------------- safetensors
_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4"}


def load_safetensors(path: Path) -> dict[str, Any]:
    """Every tensor of a .safetensors file as a numpy array (BF16 widened to float32)."""
    import numpy as np

    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise InvalidInput(f"{path} is not a safetensors file (too short)", field="model")
        n = struct.unpack("<Q", head)[0]
        if n > 100 * 1024 * 1024:
            raise InvalidInput(f"{path} is not a safetensors file (header of {n} bytes)", field="model")
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise InvalidInput(f"{path} is not a safetensors file ({e})", field="model") from None
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    out: dict[str, Any] = {}
    for key, v in header.items():
        if key == "__metadata__":
            continue
        dt = _DTYPES.get(v.get("dtype"))
        if dt is None:
            raise InvalidInput(f"{path}: tensor {key} has dtype {v.get('dtype')}, which bert-to-gguf cannot read",
                               field="model")
        a, b = v["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=dt).reshape(v["shape"])
        if v["dtype"] == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[key] = arr
    return out


# ---------------------------------------------------------------------------- bert-to-gguf
def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"{what} is missing: {path}", field="model") from None
    except ValueError as e:
        raise InvalidInput(f"{path} is not valid JSON ({e})", field="model") from None


def bert_to_gguf(src: Path, out: Path, *, name: str | None = None) -> dict[str, Any]:
    """Convert the BERT model folder ``src`` into the f16 GGUF ``out``; return facts about it."""
    import gguf
    import numpy as np

    src = Path(src)
    if not src.is_dir():
        raise InvalidInput(f"bert-to-gguf needs a model folder (config.json, model.safetensors, vocab.txt); "
                           f"{src} is not a folder", field="model")
    cfg = _read_json(src / "config.json", "config.json")
    model_type = cfg.get("model_type", "bert")
    if model_type != "bert":
        raise InvalidInput(f"bert-to-gguf converts BERT models; {src} is a {model_type!r} model", field="model")
    weights = src / "model.safetensors"
    if not weights.is_file():
        raise InvalidInput(f"model.safetensors is missing in {src} (bert-to-gguf reads only safetensors)",
                           field="model")
    tensors = load_safetensors(weights)
    try:
        vocab = (src / "vocab.txt").read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        raise InvalidInput(f"vocab.txt is missing in {src}", field="model") from None
    if vocab and vocab[-1] == "":
        vocab.pop()
    tok_json = src / "tokenizer.json"
    special = {t["content"]: t["id"] for t in (_read_json(tok_json, "tokenizer.json").get("added_tokens", [])
                                              if tok_json.is_file() else []) if t.get("special")}
    for tok in ("[CLS]", "[SEP]", "[UNK]", "[PAD]", "[MASK]"):
        if tok not in special and tok in vocab:
            special[tok] = vocab.index(tok)
    missing = [t for t in ("[CLS]", "[SEP]", "[UNK]", "[PAD]") if t not in special]
    if missing:
        raise InvalidInput(f"the vocab of {src} lacks {', '.join(missing)}", field="model")
    lower = True
    tok_cfg = src / "tokenizer_config.json"
    if tok_cfg.is_file():
        lower = bool(_read_json(tok_cfg, "tokenizer_config.json").get("do_lower_case", True))
    pooling = gguf.PoolingType.MEAN
    pool_cfg = src / "1_Pooling" / "config.json"
    if pool_cfg.is_file():
        pc = _read_json(pool_cfg, "1_Pooling/config.json")
        if pc.get("pooling_mode_cls_token"):
            pooling = gguf.PoolingType.CLS

    toks: list[str] = []
    types: list[int] = []
    seen: set[str] = set()
    for t in vocab:
        if t in special:
            tok, ty = t, gguf.TokenType.CONTROL
        else:
            tok, ty = (t[2:] if t.startswith("##") else "\u2581" + t), gguf.TokenType.NORMAL
        if tok in seen:  # llama.cpp aborts on duplicate token strings; keep ids, make the text unique
            tok, ty = f"[unused-dup-{len(toks)}]", gguf.TokenType.UNUSED
        seen.add(tok)
        toks.append(tok)
        types.append(ty)

    n_layer = int(cfg["num_hidden_layers"])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    w = gguf.GGUFWriter(str(tmp), "bert")
    try:
        w.add_name(name or src.name)
        w.add_block_count(n_layer)
        w.add_context_length(int(cfg["max_position_embeddings"]))
        w.add_embedding_length(int(cfg["hidden_size"]))
        w.add_feed_forward_length(int(cfg["intermediate_size"]))
        w.add_head_count(int(cfg["num_attention_heads"]))
        w.add_layer_norm_eps(float(cfg.get("layer_norm_eps", 1e-12)))
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        w.add_causal_attention(False)
        w.add_pooling_type(pooling)
        w.add_token_type_count(int(cfg.get("type_vocab_size", 2)))
        w.add_tokenizer_model("bert")
        w.add_tokenizer_pre("jina-v2-en")
        w.add_token_list(toks)
        w.add_token_types(types)
        w.add_bos_token_id(special["[CLS]"])
        w.add_eos_token_id(special["[SEP]"])
        w.add_unk_token_id(special["[UNK]"])
        w.add_sep_token_id(special["[SEP]"])
        w.add_pad_token_id(special["[PAD]"])
        if "[MASK]" in special:
            w.add_mask_token_id(special["[MASK]"])
        w.add_add_bos_token(True)
        w.add_add_eos_token(True)
        w.add_add_sep_token(False)
        w.add_bool("tokenizer.ggml.normalizer.lowercase", lower)
        tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, n_layer)
        count = 0
        for key, arr in tensors.items():
            n = key[5:] if key.startswith("bert.") else key
            if n == "embeddings.position_ids" or n.startswith(("pooler.", "cls.")):
                continue
            new = tmap.get_name(n, try_suffixes=(".weight", ".bias"))
            if new is None:
                raise InvalidInput(f"bert-to-gguf: tensor {key} of {weights} has no GGUF name (not a plain BERT?)",
                                   field="model")
            a = np.asarray(arr, dtype=np.float32)
            if a.ndim == 2 and new not in ("position_embd.weight", "token_types.weight"):
                a = a.astype(np.float16)
            w.add_tensor(new, a)
            count += 1
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
    except BaseException:
        w.close()
        tmp.unlink(missing_ok=True)
        raise
    w.close()
    os.replace(tmp, out)
    return {"architecture": "bert", "tensors": count, "vocab_size": len(toks),
            "embedding_length": int(cfg["hidden_size"]), "pooling": pooling.name.lower(),
            "file_type": "f16"}


TOOLS: dict[str, Callable[..., dict[str, Any]]] = {"bert-to-gguf": bert_to_gguf}


def run(tool: str, src: Path, out: Path, *, name: str | None = None) -> dict[str, Any]:
    """Run conversion ``tool`` from ``src`` to ``out``; what it did, for the model's record."""
    fn = TOOLS.get(tool)
    if fn is None:
        raise InvalidInput(f"conversion tool {tool!r} is unknown; known tools: {', '.join(sorted(TOOLS))}",
                           field="convert")
    try:
        import gguf  # noqa: F401 - a clear message when the extra is missing
    except ImportError:
        raise InvalidInput(f"conversion {tool} needs the gguf package: pip install 'aima[engines]' (or gguf numpy)",
                           field="convert") from None
    from importlib.metadata import version

    t0 = time.monotonic()
    facts = fn(Path(src), Path(out), name=name)
    return {"tool": tool, "tool_versions": {"aima": version("aima"), "gguf": version("gguf")},
            "output_file": Path(out).name, "seconds": round(time.monotonic() - t0, 3), **facts}


__all__ = ["TOOLS", "ConvertSpec", "bert_to_gguf", "load_safetensors", "run"]
