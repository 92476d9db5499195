"""``tiny_gguf(path)``: a 0.4 MB random-weight llama GGUF that llama.cpp loads in well under a second.

Import it from any test (``from tests.support.tiny import tiny_gguf``). The vocab is one ``<0x0A>``
byte token plus printable ASCII and a few words, every token string unique (llama.cpp aborts on
duplicates), so a chat reply is printable text and ``usage.completion_tokens`` equals ``max_tokens``.
Its chat template is ``<|role|>content`` lines. Needs only ``gguf`` and ``numpy``. The weights are
random (seeded): the replies are gibberish, which is the point — it exercises the engine, not a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def tiny_gguf(path: str | Path, *, name: str | None = None, arch: str = "llama", n_embd: int = 64,
              n_layer: int = 2, n_ctx: int = 512, seed: int = 0, words: bool = True, file_type: Any = None,
              pooling: bool = False) -> Path:
    """Write the tiny GGUF at ``path`` (parents created) and return the path.

    ``words=False`` leaves the few whole-word tokens out (98 tokens: the byte, control and ASCII ones);
    ``arch``, ``file_type`` and ``pooling`` change only the metadata (the model store's scanner reads it)."""
    import gguf
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_head = n_head_kv = 4
    n_ff = 2 * n_embd
    rng = np.random.default_rng(seed)
    toks: list[bytes] = []
    scores: list[float] = []
    types: list[int] = []

    def add(t: str, score: float, ty: int) -> None:
        toks.append(t.encode())
        scores.append(score)
        types.append(ty)

    add("<unk>", 0.0, gguf.TokenType.UNKNOWN)
    add("<s>", 0.0, gguf.TokenType.CONTROL)
    add("</s>", 0.0, gguf.TokenType.CONTROL)
    add("<0x0A>", 0.0, gguf.TokenType.BYTE)
    for c in range(33, 127):
        add(chr(c), -10.0, gguf.TokenType.NORMAL)
    for i, word in enumerate(["\u2581the", "\u2581hello", "\u2581world", "\u2581a", "\u2581is", "\u2581"]
                             if words else []):
        add(word, -float(i), gguf.TokenType.NORMAL)
    assert len(set(toks)) == len(toks), "token strings must be unique"
    n_vocab = len(toks)

    def r(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    tmp = path.with_name(path.name + ".tmp")
    w = gguf.GGUFWriter(str(tmp), arch)
    w.add_name(name or f"tiny-random-{arch}")
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(file_type if file_type is not None else gguf.LlamaFileType.ALL_F32)
    if pooling:
        w.add_pooling_type(gguf.PoolingType.MEAN)
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_chat_template(TEMPLATE)
    w.add_tensor("token_embd.weight", r(n_vocab, n_embd))
    w.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    w.add_tensor("output.weight", r(n_vocab, n_embd))
    hd = n_embd // n_head
    for i in range(n_layer):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(n_embd, np.float32))
        w.add_tensor(p + "attn_q.weight", r(n_head * hd, n_embd))
        w.add_tensor(p + "attn_k.weight", r(n_head_kv * hd, n_embd))
        w.add_tensor(p + "attn_v.weight", r(n_head_kv * hd, n_embd))
        w.add_tensor(p + "attn_output.weight", r(n_embd, n_head * hd))
        w.add_tensor(p + "ffn_norm.weight", np.ones(n_embd, np.float32))
        w.add_tensor(p + "ffn_gate.weight", r(n_ff, n_embd))
        w.add_tensor(p + "ffn_up.weight", r(n_ff, n_embd))
        w.add_tensor(p + "ffn_down.weight", r(n_embd, n_ff))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(path)
    return path
