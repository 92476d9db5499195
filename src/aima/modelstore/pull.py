"""Pull a model into the store: plan → free-space check → fetch into staging → verify → scan → install.

Nothing half-done is ever deployable: the files land in ``models/.partial/<name>/`` and are moved
into place by one rename only after every size and sha256 that is known has been checked. What
happens on failure:

- checksum or size mismatch, bad input, not found, disk full → the staging is thrown away;
- a transient failure (network, source unavailable, interruption) → the staging is kept, and the
  next pull of the same source resumes from it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aima.errors import AimaError, ChecksumMismatch, Conflict, DiskFull, InvalidInput, TimedOut, Unavailable
from aima.modelstore import sources
from aima.modelstore.convert import ConvertSpec
from aima.modelstore.paths import check_name, check_relpath, check_tree, join_inside
from aima.modelstore.scan import Facts, scan
from aima.modelstore.sources import FetchContext, FileCheck, Options, Plan
from aima.modelstore.store import MARKER, ModelRecord, ModelStore

ProgressFn = Callable[[int, "int | None"], None]
KEEP_STAGING = (Unavailable, TimedOut)  # transient: resume next time


@dataclass
class PullResult:
    record: ModelRecord
    reused: bool = False  # already present from the same source: nothing was fetched


def human(n: int | None) -> str:
    if n is None:
        return "unknown"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def free_bytes(path: Path) -> int:
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def ensure_space(where: Path, needed: int, name: str) -> None:
    free = free_bytes(where)
    if needed > free:
        raise DiskFull(
            f"model {name} needs {human(needed)} ({needed} bytes) more but {where} has only {human(free)} "
            f"({free} bytes) free; free {human(needed - free)} or point AIMA_HOME at a larger disk",
            details={"needed": needed, "free": free, "path": str(where)})


def pull(store: ModelStore, spec: str, *, name: str | None = None, type: str | None = None,
         sha256: str | None = None, size: int | None = None, force: bool = False,
         options: Options | None = None, progress: ProgressFn | None = None,
         on_plan: Callable[[str, Plan], None] | None = None, convert: ConvertSpec | None = None,
         on_convert: Callable[[str, str], None] | None = None) -> PullResult:
    """Fetch ``spec`` (``scheme:ref``) into the store as ``name`` and return its record.

    ``progress(done, total)`` is called from this thread as bytes arrive (total None when unknown);
    ``on_plan(name, plan)`` once the source has said what it will fetch, before anything is written.
    ``sha256`` and ``size`` are checked against a single-file model; for a folder ``size`` is only the
    expected footprint, used for the free-space check when the source cannot tell it.

    ``convert`` (the catalog's ``tool`` + ``output_file``): once the source is fetched and verified, the
    tool turns it into ``output_file``, which alone is installed as the model (its main file); the
    record keeps the source spec and, in ``facts.converted_from``, the tool and the verified source
    files. ``on_convert(name, tool)`` is called when the conversion starts.
    """
    options = options or Options()
    report: ProgressFn = progress or (lambda _d, _t: None)
    scheme, ref = sources.parse_spec(spec)
    canonical = f"{scheme}:{ref}"
    if name is not None:
        check_name(name)
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise InvalidInput("sha256 must be 64 hex digits", field="sha256")
    tool = convert.tool if convert is not None else None
    if not force:
        for rec in store.list():
            if rec.present and rec.source == canonical and (name is None or rec.name == name) \
                    and _tool_of(rec) == tool:
                return PullResult(rec, reused=True)
    src = sources.get(scheme)
    plan: Plan = src.plan(ref, options)
    name = check_name(name or plan.name)
    existing = store.get(name)
    if existing is not None and existing.present and not force:
        if existing.source == canonical and _tool_of(existing) == tool:
            return PullResult(existing, reused=True)
        how = f" converted with {_tool_of(existing)}" if _tool_of(existing) else ""
        raise Conflict(f"a model named {name} already exists (from {existing.source}{how}); choose another --name "
                       f"or pass --force to replace it", field="name")
    if on_plan is not None:
        on_plan(name, plan)
    with store.lock(name):
        staging = store.begin(name, canonical if tool is None else f"{canonical} convert:{tool}")
        work = store.work(name)
        try:
            expected_total = plan.size if plan.size is not None else size
            if expected_total is not None:
                ensure_space(store.staging_root, max(0, expected_total - store.staged_bytes(name)), name)
            ctx = FetchContext(staging=staging, work=work, progress=report, options=options,
                               ensure_space=lambda n: ensure_space(store.staging_root, n, name))
            fetched = src.fetch(plan, ctx)
            shutil.rmtree(work, ignore_errors=True)
            checks: dict[str, FileCheck] = {**plan.files, **fetched.files}
            primary = fetched.primary
            if primary is None and sha256 is not None:
                raise InvalidInput(f"{canonical} is a folder of files; --sha256 applies to one file", field="sha256")
            if primary is not None and (sha256 is not None or size is not None):
                c = checks.get(primary, FileCheck())
                checks[primary] = FileCheck(size=size if size is not None else c.size,
                                            sha256=sha256 if sha256 is not None else c.sha256)
            check_tree(staging, allow_links_out=plan.links_out)
            files = verify(staging, checks, canonical, links_out=plan.links_out)
            converted: dict[str, object] | None = None
            if convert is not None:
                if on_convert is not None:
                    on_convert(name, convert.tool)
                primary, files, converted = _convert(store, name, staging, primary, files, convert, canonical)
            facts = scan(staging / primary if primary else staging)
            if primary is None and facts.format == "gguf" and facts.primary:
                primary = facts.primary
            fd = _facts(facts, primary)
            if converted is not None:
                fd["converted_from"] = converted
            rec = store.record(name, staging=staging, primary=primary, facts=fd, source=canonical, files=files,
                               type=type)
            return PullResult(rec)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                done = store.staged_bytes(name)
                store.discard(name)
                raise DiskFull(f"the disk under {store.root} filled while writing model {name} "
                               f"({human(done)} written, {human(free_bytes(store.root))} free now); nothing was "
                               f"installed and the partial files were removed — free space and pull again",
                               details={"written": done}) from None
            store.discard(name)
            raise
        except KEEP_STAGING:
            raise
        except AimaError:
            store.discard(name)
            raise
        except BaseException as e:
            if isinstance(e, Exception):
                store.discard(name)
            raise


def _tool_of(rec: ModelRecord) -> str | None:
    conv = (rec.facts or {}).get("converted_from")
    return conv.get("tool") if isinstance(conv, dict) else None


def _convert(store: ModelStore, name: str, staging: Path, primary: str | None, files: dict[str, dict[str, object]],
             spec: ConvertSpec, source: str) -> tuple[str, dict[str, dict[str, object]], dict[str, object]]:
    """Turn the verified source in ``staging`` into ``spec.output_file``, which replaces it there."""
    from aima.modelstore import convert as converters

    out_name = check_relpath(spec.output_file, what="conversion output file").as_posix()
    if "/" in out_name:
        raise InvalidInput(f"conversion output {spec.output_file!r} must be a file name, not a path", field="convert")
    src_format = scan(staging / primary if primary else staging).format
    src_bytes = sum(int(f.get("size") or 0) for f in files.values())
    ensure_space(store.staging_root, src_bytes, name)  # the output is never larger than its source
    work = store.work(name)
    work.mkdir(parents=True, exist_ok=True)
    out = work / out_name
    try:
        done = converters.run(spec.tool, staging / primary if primary else staging, out, name=name)
        for child in list(staging.iterdir()):  # only the converted file is the model
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        os.replace(out, staging / out_name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size = (staging / out_name).stat().st_size
    converted = {"source": source, "source_format": src_format, "source_files": files, **done}
    return out_name, {out_name: {"size": size, "sha256": sha256_file(staging / out_name)}}, converted


def verify(staging: Path, checks: dict[str, FileCheck], what: str, *,
           links_out: bool = False) -> dict[str, dict[str, object]]:
    """Check every known size and sha256; return {relpath: {size, sha256?}} for every staged file."""
    for rel, c in checks.items():
        if links_out:
            p = staging.joinpath(*check_relpath(rel, what="file name").parts)
        else:
            p = join_inside(staging, rel, what="file name")
        if not p.is_file():
            raise ChecksumMismatch(f"{what}: {rel} is missing after the download; nothing was installed")
        actual = p.stat().st_size
        if c.size is not None and actual != c.size:
            raise ChecksumMismatch(f"{what}: {rel} has {actual} bytes, expected {c.size}; nothing was installed "
                                   f"and the download was removed — pull again",
                                   details={"file": rel, "expected_size": c.size, "actual_size": actual})
    out: dict[str, dict[str, object]] = {}
    for dirpath, dirnames, filenames in os.walk(staging):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for fn in filenames:
            if fn.startswith(".") or fn.endswith(".partial"):
                continue
            p = Path(dirpath) / fn
            rel = p.relative_to(staging).as_posix()
            entry: dict[str, object] = {"size": p.stat().st_size}
            want = checks.get(rel)
            if want is not None and want.sha256:
                got = sha256_file(p)
                if got != want.sha256.lower():
                    raise ChecksumMismatch(
                        f"{what}: sha256 of {rel} is {got}, expected {want.sha256.lower()}; the file is corrupt "
                        f"or was changed — nothing was installed and the download was removed",
                        details={"file": rel, "expected": want.sha256.lower(), "actual": got})
                entry["sha256"] = got
            if p.is_symlink():
                entry["link"] = os.readlink(p)
            out[rel] = entry
    if not out:
        raise InvalidInput(f"{what} gave no files", field="model")
    return out


def _facts(f: Facts, primary: str | None) -> dict[str, object]:
    d = f.to_dict()
    if primary:
        d["primary"] = primary
    return d


def scan_model(store: ModelStore, name: str) -> Facts:
    rec = store.info(name)
    if not rec.present:
        raise Unavailable(f"model {name} is recorded but its files are missing or incomplete ({rec.folder}); "
                          f"pull it again or `aima model rm {name}`")
    folder = Path(rec.folder)
    return scan(folder / rec.primary if rec.primary else folder)


__all__ = ["MARKER", "PullResult", "ensure_space", "human", "pull", "scan_model", "sha256_file", "verify"]
