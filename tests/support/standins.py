"""Small stand-in model files for engines whose real weights no package ships and no hub here serves: the same
format and shape of interface as the real export, random weights, so the real runtime loads and runs them. What
they say is noise; tests use them only to prove the engine's plumbing (it starts, lists its model, answers)."""

from __future__ import annotations

from pathlib import Path

VOCAB = ["<blank>", "<s>", "</s>", "<|zh|>", "<|en|>", "<|NEUTRAL|>", "<|Speech|>", "<|withitn|>"]


def sensevoice_export(folder: Path, vocab_size: int = 32) -> Path:
    """A SenseVoiceSmall-shaped sherpa-onnx export (``model.int8.onnx`` + ``tokens.txt``, about 70 KB): inputs
    ``x`` (N, T, 560 LFR features), ``x_length``, ``language``, ``text_norm``; output ``logits`` (N, T, vocab); the
    metadata sherpa-onnx reads (LFR window, CMVN, language and text-norm ids)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    dim = 560
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array((rng.standard_normal((dim, vocab_size)) * 0.01).astype(np.float32), "W")
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T", dim])]
    inputs += [helper.make_tensor_value_info(n, TensorProto.INT32, ["N"]) for n in ("x_length", "language",
                                                                                     "text_norm")]
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", "T", vocab_size])
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["logits"])], "sensevoice-standin", inputs,
                              [out], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="aima-tests")
    model.ir_version = 8
    meta = {"model_type": "sense_voice_ctc", "version": "2", "vocab_size": str(vocab_size), "lfr_window_size": "7",
            "lfr_window_shift": "6", "normalize_samples": "0", "neg_mean": ",".join(["0"] * dim),
            "inv_stddev": ",".join(["1"] * dim), "lang_auto": "0", "lang_zh": "3", "lang_en": "4", "lang_yue": "7",
            "lang_ja": "11", "lang_ko": "12", "lang_nospeech": "13", "with_itn": "14", "without_itn": "15"}
    for k, v in meta.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "model.int8.onnx"))
    tokens = VOCAB + [f"▁w{i}" for i in range(vocab_size - len(VOCAB))]
    (folder / "tokens.txt").write_text("".join(f"{t} {i}\n" for i, t in enumerate(tokens)), encoding="utf-8")
    return folder
