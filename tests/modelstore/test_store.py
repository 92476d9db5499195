"""The store's layout and its one rule: a model is present only when complete (marker + row)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from aima.errors import Conflict, InvalidInput, NotFound
from aima.modelstore import MARKER, Options, pull
from aima.modelstore.store import ModelStore
from aima.store.db import Database
from aima.store.tables import ModelRow
from tests.support.modelstore import sha256_of, staged, write_ct2, write_gguf


def test_import_a_file_by_copy(store: ModelStore, tmp_path: Path) -> None:
    src = write_gguf(tmp_path / "tiny.gguf")
    res = pull(store, f"file:{src}", name="tiny")
    rec = res.record
    assert not res.reused and rec.present and rec.name == "tiny" and rec.id.startswith("mdl-")
    target = store.root / "tiny" / "tiny.gguf"
    assert rec.path == str(target) and store.path_for("tiny") == target
    assert target.read_bytes() == src.read_bytes() and not target.is_symlink()
    assert os.stat(target).st_ino != os.stat(src).st_ino
    assert (rec.format, rec.type, rec.facts["architecture"], rec.facts["context_length"]) == ("gguf", "llm", "llama",
                                                                                            512)
    marker = json.loads((store.root / "tiny" / MARKER).read_text())
    assert marker["complete"] is True and marker["id"] == rec.id and marker["source"] == f"file:{src}"
    assert marker["files"]["tiny.gguf"]["size"] == src.stat().st_size
    assert staged(store) == []
    with store.db.session() as s:
        row = s.get(ModelRow, rec.id)
        assert row is not None and row.format == "gguf" and row.size_bytes == src.stat().st_size


def test_import_by_hardlink_and_by_symlink(store: ModelStore, tmp_path: Path) -> None:
    src = write_gguf(tmp_path / "m.gguf")
    h = pull(store, f"file:{src}", name="hard", options=Options(import_mode="hardlink")).record
    assert os.stat(h.path).st_ino == os.stat(src).st_ino
    s = pull(store, f"file:{src}", name="soft", options=Options(import_mode="symlink")).record
    link = Path(s.path)
    assert link.is_symlink() and Path(os.readlink(link)) == src.resolve() and s.present
    assert s.files["m.gguf"]["link"] == str(src.resolve())
    src.unlink()  # the original goes away: the symlinked model is no longer present
    assert not store.info("soft").present and store.path_for("soft") is None
    assert store.info("hard").present  # the hardlinked one keeps its data


def test_import_a_folder_scans_it_whole(store: ModelStore, tmp_path: Path) -> None:
    folder = write_ct2(tmp_path / "whisper-tiny")
    (folder / ".hidden").write_text("skipped")
    rec = pull(store, f"file:{folder}").record
    assert rec.name == "whisper-tiny" and rec.path == str(store.root / "whisper-tiny") and rec.primary is None
    assert (rec.format, rec.type) == ("ctranslate2", "asr")
    assert sorted(rec.files) == ["config.json", "model.bin"]
    assert not (store.root / "whisper-tiny" / ".hidden").exists()


def test_missing_marker_means_not_present(store: ModelStore, tmp_path: Path) -> None:
    rec = pull(store, f"file:{write_gguf(tmp_path / 'a.gguf')}", name="a").record
    (Path(rec.folder) / MARKER).unlink()
    assert store.path_for("a") is None
    assert [m.present for m in store.list()] == [False]
    # pulling again repairs it (the old files are replaced in one move)
    again = pull(store, f"file:{tmp_path / 'a.gguf'}", name="a", force=True).record
    assert again.present and again.id == rec.id


def test_a_complete_folder_without_a_row_is_adopted(home: Path, tmp_path: Path) -> None:
    db1 = Database(tmp_path / "one.db")
    rec = pull(ModelStore(home, db1), f"file:{write_gguf(tmp_path / 'b.gguf')}", name="b").record
    db1.close()
    db2 = Database(tmp_path / "two.db")  # e.g. the row was lost between the move and the insert
    s2 = ModelStore(home, db2)
    listed = s2.list()
    assert [(m.name, m.id, m.present) for m in listed] == [("b", rec.id, True)]
    assert s2.path_for("b") == Path(rec.path)
    db2.close()


def test_pull_again_reuses_and_a_name_clash_is_a_conflict(store: ModelStore, tmp_path: Path) -> None:
    a = write_gguf(tmp_path / "a.gguf")
    b = write_gguf(tmp_path / "b.gguf", n_layer=1)
    first = pull(store, f"file:{a}", name="m")
    again = pull(store, f"file:{a}")
    assert again.reused and again.record.name == "m" and again.record.id == first.record.id
    with pytest.raises(Conflict, match="already exists"):
        pull(store, f"file:{b}", name="m")
    replaced = pull(store, f"file:{b}", name="m", force=True).record
    assert replaced.source == f"file:{b}" and sha256_of(Path(replaced.path)) == sha256_of(b)


def test_rm_removes_files_and_row(store: ModelStore, tmp_path: Path) -> None:
    rec = pull(store, f"file:{write_gguf(tmp_path / 'c.gguf')}", name="c").record
    gone = store.rm("c")
    assert gone.id == rec.id and not Path(rec.folder).exists() and store.get("c") is None
    assert store.list() == []
    with pytest.raises(NotFound):
        store.rm("c")
    with pytest.raises(NotFound):
        store.info("c")


def test_one_operation_per_model_at_a_time(store: ModelStore) -> None:
    entered = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with store.lock("busy"):
            entered.set()
            release.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    assert entered.wait(5)
    try:
        with pytest.raises(Conflict, match="right now"), store.lock("busy"):
            pass
    finally:
        release.set()
        t.join()
    with store.lock("busy"):
        pass


def test_missing_source_and_bad_specs(store: ModelStore, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        pull(store, f"file:{tmp_path / 'nope.gguf'}")
    with pytest.raises((InvalidInput, NotFound), match="not a source spec"):
        pull(store, "gopher:whatever")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NotFound, match="no files"):
        pull(store, f"file:{empty}")
    assert staged(store) == [] and store.list() == []


def test_hardlink_across_filesystems_says_what_to_do(store: ModelStore, tiny_fs: Path) -> None:
    src = tiny_fs / "x.gguf"
    src.write_bytes(b"GGUF" + b"\x00" * 100)
    with pytest.raises(Conflict, match="--mode copy"):
        pull(store, f"file:{src}", options=Options(import_mode="hardlink"))
    assert staged(store) == [] and store.list() == []
