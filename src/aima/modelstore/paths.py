"""Every path that comes from outside (a model name, a file name inside a wheel or archive, a repo
file name, a URL's last segment) goes through here before it touches the disk.

Rules: names are plain (letters, digits, ``. _ : -``; never ``.`` or ``..``); relative paths have
no ``..`` part, are not absolute, carry no backslash, drive letter or NUL; and nothing inside a
store folder may be a symlink that leads out of it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from aima.errors import InvalidInput

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_DRIVE = re.compile(r"^[A-Za-z]:")


def check_name(name: str, *, field: str = "name") -> str:
    """A model name usable as one folder under the store; raises InvalidInput otherwise."""
    if not isinstance(name, str) or not NAME.match(name) or name in (".", "..") or ".." in name:
        raise InvalidInput(f"model name {name!r} is invalid: use letters, digits and . _ : - (up to 128, "
                           f"starting with a letter or digit, no '..')", field=field)
    return name


def name_from(text: str) -> str:
    """A default model name derived from a file, repo or package name (may still need check_name)."""
    base = text.rstrip("/").rsplit("/", 1)[-1]
    for ext in (".gguf", ".safetensors", ".onnx", ".bin", ".whl"):
        if base.lower().endswith(ext):
            base = base[: -len(ext)]
            break
    name = re.sub(r"[^A-Za-z0-9._:-]+", "-", base).strip("-._:")
    name = re.sub(r"\.{2,}", ".", name)
    return name[:128] or "model"


def check_relpath(rel: str, *, what: str = "path") -> PurePosixPath:
    """A relative path from outside, as a clean PurePosixPath; rejects anything that could escape."""
    if not isinstance(rel, str) or not rel or "\x00" in rel or "\\" in rel:
        raise InvalidInput(f"{what} {rel!r} is not a clean relative path", field=what)
    if rel.startswith("/") or _DRIVE.match(rel):
        raise InvalidInput(f"{what} {rel!r} is absolute; only paths relative to the model are allowed",
                           field=what)
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise InvalidInput(f"{what} {rel!r} leaves its folder ('..'); refused", field=what)
    return PurePosixPath(*parts)


def join_inside(root: Path, rel: str, *, what: str = "path") -> Path:
    """root / rel, refusing traversal and any existing symlink on the way that leads out of root."""
    clean = check_relpath(rel, what=what)
    target = root.joinpath(*clean.parts)
    ensure_inside(root, target, what=what)
    return target


def ensure_inside(root: Path, path: Path, *, what: str = "path") -> Path:
    """Raise unless ``path`` (with every symlink resolved) stays inside ``root``."""
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(path))
    if real != real_root and real_root not in real.parents:
        raise InvalidInput(f"{what} {str(path)!r} resolves to {str(real)!r}, outside {str(real_root)!r}; refused",
                           field=what)
    return path


def check_tree(root: Path, *, allow_links_out: bool = False) -> None:
    """Walk a staged folder: every symlink must point inside it (unless links out were asked for)."""
    if allow_links_out:
        return
    if root.is_symlink():
        raise InvalidInput(f"{root} is a symlink; refused")
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            if p.is_symlink():
                ensure_inside(root, p, what="link")
