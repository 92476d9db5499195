"""Helpers for the hardware tests: recorded tool outputs and fake vendor tools on PATH.

GPU vendor tools cannot run on these machines, so their recorded outputs (see data/README.md) are
replayed by tiny shell scripts named like the real tools; everything of aima itself runs for real.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


def read(name: str) -> str:
    return (DATA / name).read_text()


@pytest.fixture
def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], Path]:
    """``fake_tools(name, body)`` writes an executable ``/bin/sh`` script and makes its folder the only
    PATH entry (so no real vendor tool of the test machine can answer instead)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))

    def make(name: str, body: str) -> Path:
        p = bin_dir / name
        p.write_text("#!/bin/sh\n" + body + "\n")
        p.chmod(0o755)
        return p

    return make


def cat(name: str) -> str:
    """A script body that prints one recorded output."""
    return f"exec /bin/cat {shlex.quote(str(DATA / name))}"
