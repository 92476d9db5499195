"""Fixtures for the model store tests (helpers and servers live in tests/support/modelstore.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aima.modelstore.store import ModelStore
from aima.store.db import Database
from tests.support.modelstore import FileServer, HfMirror, MsMirror  # also sets the hub clients' environment


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    d = Database(tmp_path / "db" / "aima.db")
    yield d
    d.close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def store(home: Path, db: Database) -> ModelStore:
    return ModelStore(home, db)


@pytest.fixture
def files() -> Iterator[FileServer]:
    s = FileServer()
    yield s
    s.close()


@pytest.fixture
def hf() -> Iterator[HfMirror]:
    s = HfMirror()
    yield s
    s.close()


@pytest.fixture
def ms() -> Iterator[MsMirror]:
    s = MsMirror()
    yield s
    s.close()


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (needs root and permission to mount; skipped otherwise)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}); needs root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)

