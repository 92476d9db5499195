"""macOS: CPU and memory from ``sysctl``, GPUs from ``system_profiler SPDisplaysDataType -json``.

An Apple Silicon GPU has no memory of its own: ``unified_memory=True`` and ``memory_total_bytes=None``;
the host's memory is the budget. ``compute_capability`` holds the Metal family the tool reports (metal3).
"""

from __future__ import annotations

import json
import re
from typing import Any

from aima.hardware._tools import TIMEOUT_S, run_tool
from aima.hardware.cpu import arm_isa_level, normalise_arch, normalise_flags
from aima.hardware.facts import CpuFacts, GpuFacts

VENDOR = "apple"
SYSCTL_KEYS = ("machdep.cpu.brand_string", "hw.machine", "hw.memsize", "hw.physicalcpu", "hw.logicalcpu",
               "hw.perflevel0.physicalcpu", "hw.perflevel1.physicalcpu", "hw.optional.AdvSIMD",
               "hw.optional.arm.FEAT_DotProd", "hw.optional.arm.FEAT_FP16", "hw.optional.arm.FEAT_BF16",
               "hw.optional.arm.FEAT_I8MM", "hw.optional.arm.FEAT_SME", "hw.optional.arm.FEAT_SME2",
               "machdep.cpu.features", "machdep.cpu.leaf7_features")
_INTEL_MAC_FLAGS = {"avx1.0": "avx", "sse4.2": "sse4_2"}


def parse_sysctl(text: str) -> dict[str, str]:
    """``name: value`` lines (``sysctl a b c``) into a dict; lines sysctl refused are skipped."""
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep and k.strip() and not k.startswith("sysctl"):
            out[k.strip()] = v.strip()
    return out


def _int(v: str | None) -> int | None:
    return int(v) if v and v.strip().isdigit() and int(v) > 0 else None


def cpu_from_sysctl(values: dict[str, str]) -> CpuFacts:
    brand = values.get("machdep.cpu.brand_string") or None
    arch = normalise_arch(values.get("hw.machine")) or ("aarch64" if brand and brand.startswith("Apple") else None)
    feats = [k.rsplit(".", 1)[-1] for k, v in values.items() if k.startswith("hw.optional.") and v.strip() == "1"]
    intel = (values.get("machdep.cpu.features", "") + " " + values.get("machdep.cpu.leaf7_features", "")).split()
    feats += [_INTEL_MAC_FLAGS.get(f.lower(), f.lower()) for f in intel]
    vendor = "apple" if brand and brand.startswith("Apple") else "intel" if brand and "Intel" in brand else None
    return CpuFacts(model=brand, vendor=vendor, arch=arch, cores_physical=_int(values.get("hw.physicalcpu")),
                    cores_logical=_int(values.get("hw.logicalcpu")), flags=normalise_flags(feats),
                    isa_level=arm_isa_level(feats) if arch == "aarch64" else None)


def memory_from_sysctl(values: dict[str, str]) -> int | None:
    return _int(values.get("hw.memsize"))


def _size(text: Any) -> int | None:
    m = re.match(r"\s*([\d.]+)\s*(MB|GB)", str(text or ""))
    if not m:
        return None
    return int(float(m.group(1)) * (1 << (30 if m.group(2) == "GB" else 20)))


def parse_system_profiler(text: str) -> list[GpuFacts]:
    """The GPUs of ``system_profiler SPDisplaysDataType -json``: Apple Silicon (unified) and the discrete or
    Intel GPUs of Intel Macs (with their ``spdisplays_vram``)."""
    try:
        data = json.loads(text)
    except ValueError:
        return []
    entries = data.get("SPDisplaysDataType") if isinstance(data, dict) else None
    gpus = []
    for e in entries if isinstance(entries, list) else []:
        if not isinstance(e, dict) or e.get("sppci_device_type", "spdisplays_gpu") != "spdisplays_gpu":
            continue
        name = e.get("sppci_model") or e.get("_name")
        vendor_raw = str(e.get("spdisplays_vendor", "")).lower()
        cores = e.get("sppci_cores")
        family = str(e.get("spdisplays_mtlgpufamilysupport", "")).removeprefix("spdisplays_") or None
        if "apple" in vendor_raw or (name or "").startswith("Apple"):
            m = re.search(r"\b(M\d+)\b", name or "")
            gpus.append(GpuFacts(vendor=VENDOR, index=len(gpus), name=name, arch=m.group(1) if m else None,
                                 unified_memory=True, compute_capability=family,
                                 compute_units=int(cores) if str(cores).isdigit() else None))
            continue
        vendor = "amd" if ("amd" in vendor_raw or "ati" in vendor_raw) else "intel" if "intel" in vendor_raw \
            else "nvidia" if "nvidia" in vendor_raw else vendor_raw.removeprefix("sppci_vendor_") or "unknown"
        vram = _size(e.get("spdisplays_vram") or e.get("_spdisplays_vram"))
        shared = _size(e.get("spdisplays_vram_shared"))
        gpus.append(GpuFacts(vendor=vendor, index=len(gpus), name=name, memory_total_bytes=vram,
                             unified_memory=vram is None and shared is not None, compute_capability=family,
                             pci_bus_id=e.get("sppci_bus") if str(e.get("sppci_bus", "")).count(":") else None))
    return gpus


def probe(timeout: float = TIMEOUT_S) -> tuple[CpuFacts | None, int | None, list[GpuFacts], list[str]]:
    """(cpu, memory size in bytes, gpus, notes) on macOS; sysctl answers for each key it knows."""
    notes: list[str] = []
    res = run_tool(["sysctl", *SYSCTL_KEYS], timeout)  # exits 1 for keys this Mac lacks; still answers the rest
    values = parse_sysctl(res.stdout)
    if not values and res.note:
        notes.append(res.note)
    cpu = cpu_from_sysctl(values) if values else None
    sp = run_tool(["system_profiler", "SPDisplaysDataType", "-json"], max(timeout, 10.0))
    gpus = parse_system_profiler(sp.stdout) if sp.stdout else []
    if sp.note:
        notes.append(sp.note)
    return cpu, memory_from_sysctl(values), gpus, notes
