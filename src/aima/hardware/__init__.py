"""Hardware detection: ``detect() -> HardwareFacts``.

One module per vendor (nvidia, amd, apple, ascend, intel) plus cpu and cgroup; each has pure parsers of
the recorded tool text and a ``probe`` that runs the tool with a short timeout. A missing tool is a note,
never an error, and an unknown fact is None, never 0.

Results are cached for the process for a few seconds (free memory changes; callers such as the resolver
and the UI may ask many times a second): ``detect(refresh=True)`` probes again.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import sys
import threading
import time
from pathlib import Path

from aima.hardware.facts import (
    CgroupFacts,
    CpuFacts,
    DiskFacts,
    EffectiveFacts,
    GpuFacts,
    HardwareFacts,
    MemoryFacts,
    PlatformFacts,
)

__all__ = ["CACHE_TTL_S", "HardwareFacts", "GpuFacts", "detect", "detect_gpus", "disk_facts", "effective_facts"]

CACHE_TTL_S = 5.0
_cache: dict[str, tuple[float, HardwareFacts]] = {}
_lock = threading.Lock()


def _home(home: Path | None) -> Path:
    if home is not None:
        return Path(home).expanduser()
    from aima.config import default_home

    return default_home()


def detect(home: Path | None = None, *, refresh: bool = False, max_age_s: float = CACHE_TTL_S) -> HardwareFacts:
    """Everything aima knows about this machine. ``home`` (default ``AIMA_HOME``) names the filesystem
    whose space is reported. Answers from a cache younger than ``max_age_s`` unless ``refresh``."""
    path = _home(home)
    key = str(path)
    with _lock:  # concurrent callers wait for one probe instead of running the tools twice
        hit = _cache.get(key)
        now = time.monotonic()
        if hit is not None and not refresh and now - hit[0] < max_age_s:
            return hit[1].model_copy(deep=True)
        facts = _probe(path)
        _cache[key] = (time.monotonic(), facts)
        return facts.model_copy(deep=True)


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def platform_facts() -> PlatformFacts:
    from aima.hardware.cpu import normalise_arch

    return PlatformFacts(os=platform.system().lower() or sys.platform, arch=normalise_arch(platform.machine()) or
                         "unknown", python=platform.python_version(), release=platform.release() or None)


def detect_gpus(os_name: str | None = None) -> tuple[list[GpuFacts], list[str]]:
    """GPUs of every vendor whose tools this OS can have, in a stable order, with notes."""
    from aima.hardware import amd, ascend, intel, nvidia

    os_name = os_name or platform.system().lower()
    vendors = {"linux": (nvidia, amd, ascend, intel), "windows": (nvidia, intel)}.get(os_name, ())
    gpus: list[GpuFacts] = []
    notes: list[str] = []
    for vendor in vendors:
        try:
            found, said = vendor.probe()
        except Exception as e:  # a parser surprised by a new tool version must not hide the rest
            found, said = [], [f"{vendor.VENDOR} detection failed: {type(e).__name__}: {e}"]
        gpus += found
        notes += said
    return gpus, notes


def disk_facts(path: Path) -> DiskFacts:
    """Space of the filesystem holding ``path`` (its nearest existing ancestor when it is not made yet)."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        usage = shutil.disk_usage(p)
        return DiskFacts(path=str(path), total_bytes=usage.total or None, free_bytes=usage.free)
    except OSError:
        return DiskFacts(path=str(path))


def effective_facts(cpu: CpuFacts, memory: MemoryFacts, cgroup: CgroupFacts, working_set: int | None = None,
                    affinity: int | None = None) -> EffectiveFacts:
    """The smaller of host and cgroup: CPU cores (logical, CPU affinity, whole cores of the quota, at least 1),
    memory total (host RAM, cgroup limit) and available (host available, limit less the cgroup's working set)."""
    cores = [c for c in (cpu.cores_logical, affinity) if c]
    if cgroup.cpu_quota_cores:
        cores.append(max(1, math.floor(cgroup.cpu_quota_cores)))
    total = [m for m in (memory.total_bytes, cgroup.memory_limit_bytes) if m]
    available = [memory.available_bytes] if memory.available_bytes is not None else []
    if cgroup.memory_limit_bytes:
        used = working_set if working_set is not None else cgroup.memory_usage_bytes
        if used is not None:
            available.append(max(cgroup.memory_limit_bytes - used, 0))
    return EffectiveFacts(cpu_cores=min(cores) if cores else None, memory_total_bytes=min(total) if total else None,
                          memory_available_bytes=min(available) if available else None)


def _affinity() -> int | None:
    try:
        return len(os.sched_getaffinity(0)) or None
    except (AttributeError, OSError):
        return None


def _probe(home: Path) -> HardwareFacts:
    from aima.hardware import cgroup as cg
    from aima.hardware.cpu import read_cpu, read_memory

    plat = platform_facts()
    notes: list[str] = []
    cpu, said = read_cpu()
    notes += said
    memory = read_memory()
    gpus, said = detect_gpus(plat.os)
    notes += said
    if plat.os == "darwin":
        from aima.hardware import apple

        mac_cpu, memsize, mac_gpus, said = apple.probe()
        notes += said
        if mac_cpu is not None:  # sysctl knows the chip; keep psutil's counts where sysctl had none
            cpu = mac_cpu.model_copy(update={k: v for k, v in cpu.model_dump().items()
                                             if getattr(mac_cpu, k) in (None, [])})
        if memory.total_bytes is None and memsize:
            memory = memory.model_copy(update={"total_bytes": memsize})
        gpus += mac_gpus
    limits = CgroupFacts()
    ws = None
    if plat.os == "linux":
        try:
            limits = cg.read_cgroup()
            ws = cg.working_set()
        except Exception as e:
            notes.append(f"cgroup limits could not be read: {type(e).__name__}: {e}")
    effective = effective_facts(cpu, memory, limits, ws, _affinity())
    if not gpus:
        notes.append("no GPU found: CPU inference only")
    return HardwareFacts(platform=plat, cpu=cpu, memory=memory, cgroup=limits, effective=effective,
                         disks=[disk_facts(home)], gpus=gpus, notes=notes, detected_at=time.time())
