"""``file:/path`` — import a local file or folder: copy it (default), hardlink it, or symlink it.

Copy and hardlink give the store its own, self-contained files. Symlink leaves the data where it is
(the store holds links), so deleting the original breaks the model: ``aima model info`` then shows
it missing.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from aima.errors import Conflict, NotFound
from aima.modelstore.paths import check_relpath, name_from
from aima.modelstore.sources import FetchContext, Fetched, FileCheck, Options, Plan, tree_bytes


def plan(ref: str, options: Options) -> Plan:
    try:
        return _plan(ref, options)
    except OSError as e:  # it exists, but this daemon may not read it
        raise Conflict(f"cannot read {ref}: {e.strerror or e}; import something the daemon's user may read",
                       field="path") from None


def _plan(ref: str, options: Options) -> Plan:
    try:
        src = Path(os.path.expanduser(ref))
    except RuntimeError:  # ~user of no such user
        raise NotFound(f"{ref!r}: no such user's home folder on this machine", field="path") from None
    if not src.is_absolute():
        src = Path.cwd() / src
    if not src.exists():
        raise NotFound(f"{src} does not exist; give an existing file or folder to import", field="path")
    if not (src.is_file() or src.is_dir()):
        raise Conflict(f"{src} is neither a regular file nor a folder", field="path")
    if src.is_dir() and src.resolve() == Path(src.resolve().anchor):
        raise Conflict(f"{ref} is the whole filesystem, not a model; give a model's file or folder", field="path")
    mode = options.import_mode
    links = mode == "symlink"
    size = 0 if mode != "copy" else (src.stat().st_size if src.is_file() else tree_bytes(src))
    if src.is_file():
        base = check_relpath(src.name, what="file name").as_posix()
        return Plan(scheme="file", ref=str(src), name=name_from(src.name), kind="file", size=size,
                    files={base: FileCheck(size=src.stat().st_size)}, primary=base, links_out=links,
                    data={"src": str(src), "mode": mode})
    return Plan(scheme="file", ref=str(src), name=name_from(src.name), kind="folder", size=size,
                links_out=links, data={"src": str(src), "mode": mode})


def _place(src: Path, dst: Path, mode: str) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    if mode == "symlink":
        os.symlink(src.resolve(), dst)
    elif mode == "hardlink":
        try:
            os.link(src, dst)
        except OSError as e:
            if e.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise Conflict(f"cannot hardlink {src} into the model store ({e.strerror}); the store is on "
                                   f"another filesystem: import with --mode copy or --mode symlink",
                                   field="mode") from None
            raise
    else:
        shutil.copyfile(src, dst)


def fetch(p: Plan, ctx: FetchContext) -> Fetched:
    try:
        return _fetch(p, ctx)
    except PermissionError as e:  # a file or folder inside that this daemon may not read
        raise Conflict(f"cannot read {e.filename or p.ref}: {e.strerror or e}; import something the daemon's user "
                       f"may read", field="path") from None


def _fetch(p: Plan, ctx: FetchContext) -> Fetched:
    src = Path(p.data["src"])
    mode = p.data["mode"]
    ctx.staging.mkdir(parents=True, exist_ok=True)
    if src.is_file():
        _place(src, ctx.staging / p.primary, mode)  # type: ignore[operator]
        ctx.progress(src.stat().st_size, src.stat().st_size)
        return Fetched(primary=p.primary)
    done = 0
    total = p.size or None
    files: dict[str, FileCheck] = {}
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fname in sorted(filenames):
            if fname.startswith("."):
                continue
            f = Path(dirpath) / fname
            if not f.is_file():
                continue
            rel = check_relpath(f.relative_to(src).as_posix(), what="file name").as_posix()
            _place(f, ctx.staging / rel, mode)
            files[rel] = FileCheck(size=f.stat().st_size)
            done += f.stat().st_size
            ctx.progress(done, total)
    if not files:
        raise NotFound(f"{src} holds no files to import", field="path")
    return Fetched(primary=None, files=files)
