"""The url: source: our own resumable Range downloader against a local HTTP server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aima.errors import ChecksumMismatch, NotFound, Unavailable
from aima.modelstore import Options, pull
from aima.modelstore.store import ModelStore
from tests.support.modelstore import FileServer, sha256_bytes, sha256_of, staged, write_gguf


@pytest.fixture
def gguf_bytes(tmp_path: Path) -> bytes:
    return write_gguf(tmp_path / "src.gguf", n_layer=6).read_bytes()


def test_dropped_connection_resumes_with_range_in_the_same_pull(store: ModelStore, files: FileServer,
                                                               gguf_bytes: bytes) -> None:
    files.files["/m/tiny.gguf"] = gguf_bytes
    cut = len(gguf_bytes) // 3
    files.cut_first["/m/tiny.gguf"] = cut
    seen: list[tuple[int, int | None]] = []
    url = f"{files.url}/m/tiny.gguf#sha256={sha256_bytes(gguf_bytes)}"
    rec = pull(store, f"url:{url}", progress=lambda d, t: seen.append((d, t))).record
    gets = files.gets("/m/tiny.gguf")
    assert len(gets) == 2
    assert "range" not in gets[0]["headers"]
    resumed_at = int(gets[1]["headers"]["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= cut  # what arrived before the drop is kept, not fetched again
    assert rec.present and rec.name == "tiny" and rec.format == "gguf"
    assert sha256_of(Path(rec.path)) == sha256_bytes(gguf_bytes) == rec.files["tiny.gguf"]["sha256"]
    assert seen[-1] == (len(gguf_bytes), len(gguf_bytes))
    assert staged(store) == []


def test_interrupted_pull_leaves_nothing_deployable_and_the_next_pull_resumes(store: ModelStore, files: FileServer,
                                                                             gguf_bytes: bytes) -> None:
    files.files["/tiny.gguf"] = gguf_bytes
    cut = len(gguf_bytes) // 2
    files.cut_first["/tiny.gguf"] = cut
    spec = f"url:{files.url}/tiny.gguf"
    with pytest.raises(Unavailable, match="run the same pull again to resume"):
        pull(store, spec, name="tiny", options=Options(retries=0))
    # half a file is kept for resuming, but only under .partial: nothing is present or deployable
    partial = store.staging("tiny") / "tiny.gguf.partial"
    kept = partial.stat().st_size
    assert 0 < kept <= cut
    assert store.path_for("tiny") is None and store.get("tiny") is None and not (store.root / "tiny").exists()
    rec = pull(store, spec, name="tiny", sha256=sha256_bytes(gguf_bytes)).record
    gets = files.gets("/tiny.gguf")
    assert [g["headers"].get("range") for g in gets] == [None, f"bytes={kept}-"]
    assert sha256_of(Path(rec.path)) == sha256_bytes(gguf_bytes)
    assert staged(store) == []


def test_a_server_that_ignores_range_restarts_cleanly(store: ModelStore, files: FileServer,
                                                    gguf_bytes: bytes) -> None:
    files.files["/x.gguf"] = gguf_bytes
    files.cut_first["/x.gguf"] = 1000
    files.ignore_range.add("/x.gguf")
    rec = pull(store, f"url:{files.url}/x.gguf", sha256=sha256_bytes(gguf_bytes)).record
    gets = files.gets("/x.gguf")
    assert gets[1]["headers"]["range"] == "bytes=1000-"  # asked to resume, got 200: started over
    assert Path(rec.path).read_bytes() == gguf_bytes


def test_a_partial_from_another_source_is_not_resumed(store: ModelStore, files: FileServer,
                                                     gguf_bytes: bytes) -> None:
    files.files["/a.gguf"] = b"A" * 5000
    files.files["/b.gguf"] = gguf_bytes
    files.cut_first["/a.gguf"] = 100
    with pytest.raises(Unavailable):
        pull(store, f"url:{files.url}/a.gguf", name="m", options=Options(retries=0))
    rec = pull(store, f"url:{files.url}/b.gguf", name="m").record
    assert "range" not in files.gets("/b.gguf")[0]["headers"]
    assert Path(rec.path).read_bytes() == gguf_bytes


def test_checksum_mismatch_installs_nothing_and_cleans_staging(store: ModelStore, files: FileServer,
                                                              gguf_bytes: bytes) -> None:
    files.files["/bad.gguf"] = gguf_bytes
    wrong = "ab" * 32
    with pytest.raises(ChecksumMismatch, match="sha256") as e:
        pull(store, f"url:{files.url}/bad.gguf#sha256={wrong}")
    assert e.value.details["expected"] == wrong and e.value.details["actual"] == sha256_bytes(gguf_bytes)
    assert store.list() == [] and store.path_for("bad") is None
    assert not (store.root / "bad").exists() and staged(store) == []
    with pytest.raises(ChecksumMismatch, match="bytes, expected"):
        pull(store, f"url:{files.url}/bad.gguf", size=len(gguf_bytes) + 1)
    assert store.list() == [] and staged(store) == []


def test_missing_url_is_not_found(store: ModelStore, files: FileServer) -> None:
    with pytest.raises(NotFound):
        pull(store, f"url:{files.url}/missing.gguf")
    assert staged(store) == []


def test_unknown_length_download(store: ModelStore, files: FileServer, gguf_bytes: bytes) -> None:
    files.files["/stream.gguf"] = gguf_bytes
    files.no_length.add("/stream.gguf")
    seen: list[tuple[int, int | None]] = []
    rec = pull(store, f"url:{files.url}/stream.gguf", progress=lambda d, t: seen.append((d, t))).record
    assert Path(rec.path).read_bytes() == gguf_bytes and seen[-1] == (len(gguf_bytes), None)
    assert sorted(os.listdir(rec.folder)) == [".aima-model.json", "stream.gguf"]
