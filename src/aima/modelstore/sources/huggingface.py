"""``hf:org/repo[/path/in/repo][@revision]`` — the Hugging Face hub (or any mirror of it) through the
official ``huggingface_hub`` client.

The endpoint is ``AIMA_HF_ENDPOINT`` (setting ``hf_endpoint``), passed to the client as
``endpoint=``; without it the client's own default (``HF_ENDPOINT`` or huggingface.co) applies.
The revision is resolved to a commit first, the file list (sizes and LFS sha256) comes from the
repo tree, and files are downloaded with ``local_dir=`` into the staging folder: the client resumes
a dropped transfer with Range, and files that completed in an earlier attempt are kept (its
metadata lives in ``staging/.cache/huggingface``, which is removed once the pull is complete).
"""

from __future__ import annotations

import shutil
from pathlib import PurePosixPath
from typing import Any

from aima.errors import InvalidInput, NotFound, Unavailable
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


def parse(ref: str) -> tuple[str, str | None, str | None]:
    body, rev = split_rev(ref)
    parts = [p for p in body.split("/") if p]
    if len(parts) < 2:
        raise InvalidInput(f"{ref!r} is not org/repo[/path][@revision]", field="model")
    repo = f"{parts[0]}/{parts[1]}"
    for p in parts[:2]:
        check_relpath(p, what="repo id")
    path = check_relpath("/".join(parts[2:]), what="path in repo").as_posix() if len(parts) > 2 else None
    return repo, path, rev


def _errors(repo: str, what: str, e: Exception) -> Exception:
    from huggingface_hub import errors as hfe

    if isinstance(e, hfe.LocalEntryNotFoundError):
        return Unavailable(f"{what}: cannot reach the hub ({e}); check AIMA_HF_ENDPOINT or the network, then pull "
                           f"again")
    if isinstance(e, (hfe.RepositoryNotFoundError, hfe.GatedRepoError)):
        return NotFound(f"{what}: repository {repo} not found (or gated/private: set HF_TOKEN)", field="model")
    if isinstance(e, hfe.RevisionNotFoundError):
        return NotFound(f"{what}: revision not found in {repo}", field="model")
    if isinstance(e, hfe.EntryNotFoundError):
        return NotFound(f"{what}: file not found in {repo}", field="model")
    if getattr(getattr(e, "response", None), "status_code", None) == 404:
        return NotFound(f"{what}: not found on the hub ({str(e).splitlines()[0]})", field="model")
    return Unavailable(f"{what}: the hub did not answer as expected ({type(e).__name__}: {e}); pull again to retry")


def _api(options: Options) -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=options.hf_endpoint, token=options.hf_token or None)


def plan(ref: str, options: Options) -> Plan:
    repo, path, rev = parse(ref)
    api = _api(options)
    try:
        info = api.model_info(repo, revision=rev or "main")
        commit = info.sha
        if not commit:
            raise Unavailable(f"the hub gave no commit for {repo}@{rev or 'main'}")
        tree = [f for f in api.list_repo_tree(repo, revision=commit, recursive=True) if hasattr(f, "size")]
    except (NotFound, Unavailable, InvalidInput):
        raise
    except Exception as e:  # noqa: BLE001 - mapped to our error tree
        raise _errors(repo, f"listing {repo}", e) from None
    entries = {}
    for f in tree:
        rel = check_relpath(f.path, what="repo file name").as_posix()
        lfs = getattr(f, "lfs", None)
        entries[rel] = FileCheck(size=f.size, sha256=getattr(lfs, "sha256", None) if lfs else None)
    if path is not None and path in entries:
        wanted = {PurePosixPath(path).as_posix(): entries[path]}
        kind, primary, name = "file", path, name_from(path)
    else:
        prefix = (path.rstrip("/") + "/") if path else ""
        wanted = {r: c for r, c in entries.items() if r.startswith(prefix)}
        if not wanted:
            listing = ", ".join(sorted(entries)[:20])
            raise NotFound(f"{path!r} is neither a file nor a folder of {repo}@{commit[:12]}; it holds: {listing}",
                           field="model")
        kind, primary, name = "folder", None, name_from(repo)
    size = sum(c.size or 0 for c in wanted.values())
    return Plan(scheme="hf", ref=ref, name=name, kind=kind, size=size, files=wanted, primary=primary,
                data={"repo": repo, "commit": commit, "paths": sorted(wanted)})


def fetch(p: Plan, ctx: FetchContext) -> Fetched:
    from huggingface_hub import hf_hub_download, snapshot_download

    repo, commit, paths = p.data["repo"], p.data["commit"], p.data["paths"]
    ctx.staging.mkdir(parents=True, exist_ok=True)
    kw: dict[str, Any] = {"revision": commit, "local_dir": str(ctx.staging), "endpoint": ctx.options.hf_endpoint,
                          "token": ctx.options.hf_token or None}
    try:
        with watch_progress([ctx.staging], p.size, ctx.progress):
            if p.kind == "file":
                hf_hub_download(repo, p.primary, **kw)
            else:
                snapshot_download(repo, allow_patterns=paths, max_workers=4, **kw)
    except Exception as e:  # noqa: BLE001 - mapped to our error tree
        if isinstance(e, OSError) and e.errno is not None:
            raise  # disk full and the like: the pull reports it
        raise _errors(repo, f"downloading {p.spec}", e) from None
    shutil.rmtree(ctx.staging / ".cache" / "huggingface", ignore_errors=True)
    try:
        (ctx.staging / ".cache").rmdir()
    except OSError:
        pass
    done = tree_bytes(ctx.staging)
    ctx.progress(done, p.size or done)
    return Fetched(primary=p.primary, files={})
