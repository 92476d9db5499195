"""The pypi: source against the REAL package index: `pip download` of a small wheel that ships model
files (text2tashkeel 0.1.0: a 10.5 MB wheel with int8 ONNX models), extracted, verified against the
wheel's RECORD, and scanned."""

from __future__ import annotations

from pathlib import Path

import pytest

from aima.errors import NotFound
from aima.modelstore import pull
from aima.modelstore.store import ModelStore
from tests.support.modelstore import sha256_of, staged

PACKAGE = "text2tashkeel==0.1.0"
ONNX_SHA256 = "47a609c054534c5ab56ab980a09a6a326e31143930d2d90520379e030627adb9"  # RECORD of the wheel


def test_pull_one_file_from_a_real_wheel(store: ModelStore) -> None:
    seen: list[tuple[int, int | None]] = []
    res = pull(store, f"pypi:{PACKAGE}/text2tashkeel/models/rawi.int8.onnx", name="rawi",
               progress=lambda d, t: seen.append((d, t)))
    rec = res.record
    target = store.root / "rawi" / "rawi.int8.onnx"
    assert rec.present and rec.path == str(target) and store.path_for("rawi") == target
    assert target.stat().st_size == 2477083
    assert sha256_of(target) == ONNX_SHA256 == rec.files["rawi.int8.onnx"]["sha256"]
    assert rec.format == "onnx" and rec.facts["details"]["ir_version"] == 8
    assert rec.facts["details"]["producer_name"] == "onnx.quantize"
    assert rec.facts["quantization"] == "int8" and rec.facts["parameters"] > 2_000_000
    assert rec.source == f"pypi:{PACKAGE}/text2tashkeel/models/rawi.int8.onnx"
    assert seen and seen[-1][0] > 0
    assert staged(store) == []  # the wheel and pip's temp files are gone
    again = pull(store, f"pypi:{PACKAGE}/text2tashkeel/models/rawi.int8.onnx", name="rawi")
    assert again.reused and again.record.id == rec.id


def test_pull_a_folder_and_a_path_relative_to_the_package(store: ModelStore) -> None:
    rec = pull(store, f"pypi:{PACKAGE}/models", name="tashkeel").record  # models/ of the text2tashkeel package
    assert rec.path == rec.folder and rec.primary is None
    names = sorted(rec.files)
    assert "rawi.int8.onnx" in names and "rawi.vocab.json" in names and len(names) == 8
    assert all(len(f["sha256"]) == 64 for f in rec.files.values())  # each one checked against RECORD
    assert rec.format == "onnx" and Path(rec.folder, "bilstm.int8.onnx").is_file()


def test_a_file_that_is_not_in_the_wheel(store: ModelStore) -> None:
    with pytest.raises(NotFound, match="is not in text2tashkeel-0.1.0"):
        pull(store, f"pypi:{PACKAGE}/text2tashkeel/models/missing.gguf")
    assert staged(store) == [] and store.list() == []
