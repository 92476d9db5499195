"""``ms:org/repo[/path/in/repo][@revision]`` — ModelScope through the official ``modelscope`` library.

``modelscope`` is an optional extra (``pip install 'aima[modelscope]'``); without it this source
fails with a message saying how to install it. The endpoint is ``AIMA_MS_ENDPOINT`` (setting
``ms_endpoint``), else the library's own (``MODELSCOPE_ENDPOINT`` or modelscope.cn). The library
lists the repo (sizes and sha256), downloads into the staging folder with Range resume
(``<file>.incomplete``) and checks each file's sha256 itself; we check the sizes again.
"""

from __future__ import annotations

import shutil
from pathlib import PurePosixPath
from typing import Any

from aima.errors import ChecksumMismatch, InvalidInput, NotFound, Unavailable
from aima.modelstore.paths import check_relpath, name_from
from aima.modelstore.sources import (
    FetchContext,
    Fetched,
    FileCheck,
    Options,
    Plan,
    split_rev,
    tree_bytes,
    watch_progress,
)

INSTALL_HINT = ("the ModelScope source (ms:) needs the optional `modelscope` package, which is not installed "
                "in aima's environment: install it with `pip install 'aima[modelscope]'` (or `pip install "
                "modelscope`), or pull the model from another source (hf:, pypi:, url:, file:)")


def available() -> bool:
    try:
        import modelscope  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means: not usable
        return False
    return True


def _require() -> None:
    if not available():
        raise Unavailable(INSTALL_HINT)


def parse(ref: str) -> tuple[str, str | None, str | None]:
    body, rev = split_rev(ref)
    parts = [p for p in body.split("/") if p]
    if len(parts) < 2:
        raise InvalidInput(f"{ref!r} is not org/repo[/path][@revision]", field="model")
    for p in parts[:2]:
        check_relpath(p, what="repo id")
    path = check_relpath("/".join(parts[2:]), what="path in repo").as_posix() if len(parts) > 2 else None
    return f"{parts[0]}/{parts[1]}", path, rev


def _errors(repo: str, what: str, e: BaseException) -> Exception:
    names = {c.__name__ for c in type(e).__mro__}
    failed = getattr(e, "failed_files", None)
    if failed:  # FileDownloadError: look at the first failure
        inner = next(iter(failed.values()))
        if inner is not e:
            return _errors(repo, what, inner)
    if "FileIntegrityError" in names:
        return ChecksumMismatch(f"{what}: {e}; nothing was installed — pull again")
    status = getattr(getattr(e, "response", None), "status_code", None)
    if "NotExistError" in names or status == 404:
        return NotFound(f"{what}: {repo} (or the file) does not exist on ModelScope", field="model")
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return Unavailable(f"{what}: ModelScope did not answer as expected ({type(e).__name__}: {text}); pull again")


def _list(repo: str, revision: str, options: Options) -> list[dict[str, Any]]:
    """The repo's files as ``{Path, Size, Sha256, Type}``: through ``modelscope_hub`` (which the library
    delegates to since 1.38 and which keeps the sha256), else the library's own ``HubApi``."""
    try:
        from modelscope_hub import HubApi as Hub
    except ImportError:
        Hub = None  # noqa: N806
    if Hub is not None:
        api = Hub(endpoint=options.ms_endpoint, token=options.ms_token)
        return [{"Path": f.path, "Size": f.size, "Sha256": f.sha256, "Type": f.type}
                for f in api.list_repo_files(repo, "model", revision=revision, recursive=True)]
    from modelscope.hub.api import HubApi

    return list(HubApi(endpoint=options.ms_endpoint, token=options.ms_token).get_model_files(
        repo, revision=revision, recursive=True))


def plan(ref: str, options: Options) -> Plan:
    _require()
    repo, path, rev = parse(ref)
    try:
        listing = _list(repo, rev or "master", options)
    except Exception as e:  # noqa: BLE001 - mapped to our error tree
        raise _errors(repo, f"listing {repo}", e) from None
    entries: dict[str, FileCheck] = {}
    for f in listing:
        if f.get("Type", "blob") not in ("blob", "file"):
            continue
        rel = check_relpath(str(f["Path"]), what="repo file name").as_posix()
        size = f.get("Size")
        entries[rel] = FileCheck(size=int(size) if isinstance(size, int | str) and str(size).isdigit() else None,
                                 sha256=f.get("Sha256") or None)
    if path is not None and path in entries:
        wanted = {path: entries[path]}
        kind, primary, name = "file", path, name_from(path)
    else:
        prefix = (path.rstrip("/") + "/") if path else ""
        wanted = {r: c for r, c in entries.items() if r.startswith(prefix)}
        if not wanted:
            raise NotFound(f"{path!r} is neither a file nor a folder of {repo}; it holds: "
                           f"{', '.join(sorted(entries)[:20])}", field="model")
        kind, primary, name = "folder", None, name_from(repo)
    known = [c.size for c in wanted.values()]
    size = sum(s for s in known if s) if all(s is not None for s in known) else None
    return Plan(scheme="ms", ref=ref, name=name, kind=kind, size=size, files=wanted, primary=primary,
                data={"repo": repo, "revision": rev, "paths": sorted(wanted)})


def fetch(p: Plan, ctx: FetchContext) -> Fetched:
    _require()
    from modelscope import snapshot_download

    ctx.staging.mkdir(parents=True, exist_ok=True)
    kw: dict[str, Any] = {"revision": p.data["revision"], "local_dir": str(ctx.staging),
                          "allow_patterns": [PurePosixPath(x).as_posix() for x in p.data["paths"]]}
    if ctx.options.ms_endpoint:
        kw["endpoint"] = ctx.options.ms_endpoint
    if ctx.options.ms_token:
        kw["token"] = ctx.options.ms_token
    try:
        with watch_progress([ctx.staging], p.size, ctx.progress):
            snapshot_download(p.data["repo"], **kw)
    except Exception as e:  # noqa: BLE001 - mapped to our error tree
        if isinstance(e, OSError) and e.errno is not None:
            raise  # disk full and the like: the pull reports it
        raise _errors(p.data["repo"], f"downloading {p.spec}", e) from None
    for pattern in ("*.incomplete", ".msc", ".mdl", ".mv", "._____temp"):
        for leftover in ctx.staging.rglob(pattern):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
    done = tree_bytes(ctx.staging)
    ctx.progress(done, p.size or done)
    return Fetched(primary=p.primary, files={})
