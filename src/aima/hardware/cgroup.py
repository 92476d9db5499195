"""Container limits from cgroup v2 (``memory.max``, ``memory.current``, ``cpu.max``) or v1
(``memory/memory.limit_in_bytes``, ``cpu/cpu.cfs_quota_us`` + ``cpu.cfs_period_us``).

psutil and os.cpu_count report the host even inside a ``--memory 256m --cpus 1`` container; these files
tell the truth. The process's own cgroup comes from /proc/self/cgroup; a limit set on any ancestor counts,
so the smallest one on the way up to the mount's root wins. Every reader takes the cgroup root (and the
/proc/self/cgroup file) as parameters, so tests point them at a tree they build.
"""

from __future__ import annotations

from pathlib import Path

from aima.hardware.facts import CgroupFacts

DEFAULT_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")
# v1 writes "no limit" as a page-aligned LONG_MAX (9223372036854771712 with 4 KiB pages, less with 64 KiB)
_UNLIMITED = 1 << 62


def parse_self_cgroup(text: str) -> dict[str, str]:
    """``/proc/self/cgroup`` -> {controller: path}; the v2 line ``0::/path`` is under the key ``""``."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            out[""] = path
        for c in controllers.split(","):
            if c:
                out[c.removeprefix("name=")] = path
    return out


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _stat(path: Path, key: str) -> int | None:
    text = _read(path)
    for line in (text or "").splitlines():
        k, _, v = line.partition(" ")
        if k == key:
            return _int(v)
    return None


def _chain(base: Path, rel: str | None) -> list[Path]:
    """The process's cgroup directory under ``base`` and its ancestors up to ``base`` (leaf first).
    A path that does not exist under this mount (a container sees only its own subtree) means ``base``."""
    leaf = base / (rel or "/").lstrip("/")
    if not leaf.is_dir():
        return [base]
    out = [leaf]
    while leaf != base and base in leaf.parents:
        leaf = leaf.parent
        out.append(leaf)
    return out


def _min(values: list[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return min(known) if known else None


def _v2(root: Path, own: dict[str, str]) -> CgroupFacts:
    chain = _chain(root, own.get(""))
    limits: list[int | None] = []
    quotas: list[float] = []
    for d in chain:
        mx = _read(d / "memory.max")
        limits.append(None if mx in (None, "max") else _int(mx))
        cpu = (_read(d / "cpu.max") or "").split()
        if len(cpu) == 2 and cpu[0] != "max" and _int(cpu[0]) and _int(cpu[1]):
            quotas.append(int(cpu[0]) / int(cpu[1]))
    usage = _int(_read(chain[0] / "memory.current"))
    return CgroupFacts(version=2, memory_limit_bytes=_min(limits), memory_usage_bytes=usage,
                       cpu_quota_cores=round(min(quotas), 3) if quotas else None)


def _v1_dir(root: Path, names: tuple[str, ...]) -> Path | None:
    for n in names:
        if (root / n).is_dir():
            return root / n
    return None


def _v1(root: Path, own: dict[str, str]) -> CgroupFacts:
    limit = usage = None
    mem = _v1_dir(root, ("memory",))
    if mem is not None:
        chain = _chain(mem, own.get("memory"))
        limits = [_int(_read(d / "memory.limit_in_bytes")) for d in chain]
        limits.append(_stat(chain[0] / "memory.stat", "hierarchical_memory_limit"))
        limit = _min([v for v in limits if v is not None and v < _UNLIMITED])
        usage = _int(_read(chain[0] / "memory.usage_in_bytes"))
    quota = None
    cpu = _v1_dir(root, ("cpu", "cpu,cpuacct", "cpuacct,cpu"))
    if cpu is not None:
        found = []
        for d in _chain(cpu, own.get("cpu")):
            q, p = _int(_read(d / "cpu.cfs_quota_us")), _int(_read(d / "cpu.cfs_period_us"))
            if q is not None and q > 0 and p:
                found.append(q / p)
        quota = round(min(found), 3) if found else None
    return CgroupFacts(version=1, memory_limit_bytes=limit, memory_usage_bytes=usage, cpu_quota_cores=quota)


def read_cgroup(root: Path = DEFAULT_ROOT, self_cgroup: Path | None = SELF_CGROUP) -> CgroupFacts:
    """The limits that apply to this process. ``version`` None: no cgroup filesystem under ``root``.
    v2 when ``root`` is a unified mount (``cgroup.controllers``); v1 (or hybrid: v1 controllers plus an
    almost empty ``unified`` mount) when ``root/memory`` or ``root/cpu`` exists."""
    own = parse_self_cgroup(_read(self_cgroup) or "") if self_cgroup is not None else {}
    if (root / "cgroup.controllers").is_file():
        return _v2(root, own)
    if _v1_dir(root, ("memory", "cpu", "cpu,cpuacct")) is not None:
        return _v1(root, own)
    return CgroupFacts()


def working_set(root: Path = DEFAULT_ROOT, self_cgroup: Path | None = SELF_CGROUP) -> int | None:
    """Memory the cgroup really holds: usage less reclaimable page cache (inactive files), as the kernel's
    OOM killer and ``docker stats`` see it. None when there is no cgroup or no usage figure."""
    own = parse_self_cgroup(_read(self_cgroup) or "") if self_cgroup is not None else {}
    if (root / "cgroup.controllers").is_file():
        d = _chain(root, own.get(""))[0]
        usage, inactive = _int(_read(d / "memory.current")), _stat(d / "memory.stat", "inactive_file")
    elif (root / "memory").is_dir():
        d = _chain(root / "memory", own.get("memory"))[0]
        usage, inactive = _int(_read(d / "memory.usage_in_bytes")), _stat(d / "memory.stat", "total_inactive_file")
    else:
        return None
    if usage is None:
        return None
    return max(usage - (inactive or 0), 0)
