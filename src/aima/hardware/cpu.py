"""CPU and host memory: /proc/cpuinfo (x86 and aarch64 layouts), os.cpu_count, psutil."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from pathlib import Path

from aima.hardware.facts import CpuFacts, MemoryFacts

# x86 /proc/cpuinfo flags kept as they are (the ones engines pick kernels by)
_X86_KEEP = {"sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512cd", "avx512dq",
             "avx512vl", "avx512vbmi", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
             "amx_int8", "amx_fp16"}
# aarch64 "Features" (Linux) and macOS hw.optional names -> one vocabulary
_ARM_MAP = {"asimd": "neon", "neon": "neon", "advsimd": "neon", "asimddp": "dotprod", "dotprod": "dotprod",
            "feat_dotprod": "dotprod", "fphp": "fp16", "asimdhp": "fp16", "feat_fp16": "fp16", "bf16": "bf16",
            "feat_bf16": "bf16", "i8mm": "i8mm", "feat_i8mm": "i8mm", "sve": "sve", "sve2": "sve2", "sme": "sme",
            "feat_sme": "sme", "sme2": "sme2", "feat_sme2": "sme2"}

_X86_V2 = {"cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"}
_X86_V3 = {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}
_X86_V4 = {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}

_X86_VENDORS = {"genuineintel": "intel", "authenticamd": "amd", "hygongenuine": "hygon", "centaurhauls": "centaur",
                "shanghai": "zhaoxin"}
_ARM_IMPLEMENTERS = {0x41: "arm", 0x42: "broadcom", 0x43: "cavium", 0x46: "fujitsu", 0x48: "hisilicon",
                     0x4E: "nvidia", 0x50: "apm", 0x51: "qualcomm", 0x61: "apple", 0x69: "intel", 0xC0: "ampere"}
_ARM_PARTS = {
    (0x41, 0xD03): "Cortex-A53", (0x41, 0xD05): "Cortex-A55", (0x41, 0xD08): "Cortex-A72",
    (0x41, 0xD0B): "Cortex-A76", (0x41, 0xD0C): "Neoverse-N1", (0x41, 0xD40): "Neoverse-V1",
    (0x41, 0xD41): "Cortex-A78", (0x41, 0xD42): "Cortex-A78AE", (0x41, 0xD49): "Neoverse-N2",
    (0x41, 0xD4F): "Neoverse-V2", (0x41, 0xD80): "Cortex-A520", (0x41, 0xD81): "Cortex-A720",
    (0x41, 0xD82): "Cortex-X4", (0x41, 0xD84): "Neoverse-V3", (0x41, 0xD85): "Cortex-X925",
    (0x41, 0xD87): "Cortex-A725", (0x41, 0xD8E): "Neoverse-N3", (0x48, 0xD01): "Kunpeng-920",
    (0x4E, 0x004): "Carmel", (0xC0, 0xAC3): "Ampere-1", (0xC0, 0xAC4): "Ampere-1a",
}


def normalise_arch(machine: str | None) -> str | None:
    m = (machine or "").strip().lower()
    if not m:
        return None
    return {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "armv8": "aarch64"}.get(m, m)


def normalise_flags(raw: Iterable[str]) -> list[str]:
    """The subset that matters, in one vocabulary: x86 names as Linux spells them, ``amx`` when any AMX
    part is there; Arm features as neon, dotprod, fp16, bf16, i8mm, sve, sve2, sme."""
    out = set()
    for f in raw:
        f = f.strip().lower()
        if f in _X86_KEEP:
            out.add(f)
            if f.startswith("amx_"):
                out.add("amx")
        elif f in _ARM_MAP:
            out.add(_ARM_MAP[f])
    return sorted(out)


def x86_isa_level(raw: Iterable[str]) -> str:
    """The x86-64 micro-architecture level (psABI) these /proc/cpuinfo flags satisfy."""
    flags = set(raw)
    level = 1
    for n, need in ((2, _X86_V2), (3, _X86_V3), (4, _X86_V4)):
        if not need <= flags:
            break
        level = n
    return f"x86-64-v{level}"


def arm_isa_level(features: Iterable[str]) -> str:
    """A lower bound only: armv9-a when SVE2 or SME is present, else armv8-a."""
    f = {_ARM_MAP.get(x.lower(), x.lower()) for x in features}
    return "armv9-a" if {"sve2", "sme"} & f else "armv8-a"


def _int(text: str | None, base: int = 10) -> int | None:
    try:
        return int(text.strip(), base) if text else None
    except ValueError:
        return None


def parse_cpuinfo(text: str) -> CpuFacts:
    """Parse /proc/cpuinfo of an x86 (``flags``, ``model name``) or aarch64 (``Features``, ``CPU part``)
    Linux machine. Physical cores come from distinct (physical id, core id) pairs where the file has them."""
    blocks: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if cur:
                blocks.append(cur)
            cur = {}
            continue
        k, sep, v = line.partition(":")
        if sep:
            cur[k.strip().lower()] = v.strip()
    if cur:
        blocks.append(cur)
    procs = [b for b in blocks if "processor" in b and b["processor"].isdigit()]
    if not procs:
        return CpuFacts()
    first = procs[0]
    if "flags" in first or "vendor_id" in first:
        raw = first.get("flags", "").split()
        cores = {(b.get("physical id"), b.get("core id")) for b in procs if "core id" in b}
        return CpuFacts(model=first.get("model name") or None,
                        vendor=_X86_VENDORS.get(first.get("vendor_id", "").lower(), first.get("vendor_id") or None),
                        arch="x86_64", cores_physical=len(cores) or None, cores_logical=len(procs),
                        flags=normalise_flags(raw), isa_level=x86_isa_level(raw) if raw else None)
    features = first.get("features", "").split()
    impl = _int(first.get("cpu implementer"), 16)
    parts: list[str] = []
    for b in procs:
        part = _ARM_PARTS.get((impl or -1, _int(b.get("cpu part"), 16) or -1))
        if part and part not in parts:
            parts.append(part)
    model = first.get("model name") or (" + ".join(parts) if parts else None)
    return CpuFacts(model=model, vendor=_ARM_IMPLEMENTERS.get(impl or -1), arch="aarch64",
                    cores_physical=None, cores_logical=len(procs), flags=normalise_flags(features),
                    isa_level=arm_isa_level(features) if features else None)


def read_cpu(proc_root: Path = Path("/")) -> tuple[CpuFacts, list[str]]:
    """This machine's CPU: /proc/cpuinfo where there is one, counts from psutil/os, arch from platform."""
    import psutil

    notes: list[str] = []
    info = proc_root / "proc/cpuinfo"
    cpu = CpuFacts()
    if info.is_file():
        try:
            cpu = parse_cpuinfo(info.read_text(errors="replace"))
        except OSError as e:
            notes.append(f"{info} could not be read: {e}")
    elif platform.system() == "Linux":
        notes.append(f"{info} is missing; CPU model and flags unknown")
    upd: dict[str, object] = {"arch": normalise_arch(platform.machine()) or cpu.arch}
    try:
        upd["cores_physical"] = psutil.cpu_count(logical=False) or cpu.cores_physical
    except Exception:
        pass
    upd["cores_logical"] = os.cpu_count() or cpu.cores_logical
    if cpu.model is None and platform.system() == "Windows":
        upd["model"] = platform.processor() or None
    return cpu.model_copy(update=upd), notes


def read_memory() -> MemoryFacts:
    import psutil

    try:
        vm = psutil.virtual_memory()
        total, available = int(vm.total) or None, int(vm.available)
    except Exception:
        total = available = None
    try:
        swap = int(psutil.swap_memory().total)
    except Exception:
        swap = None
    return MemoryFacts(total_bytes=total, available_bytes=available, swap_total_bytes=swap)
