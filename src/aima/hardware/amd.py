"""AMD GPUs: ``amd-smi`` (ROCm 6+) when present, else the older ``rocm-smi``; both with ``--json``.

``compute_capability`` holds the gfx target (gfx942), which is what ROCm builds are keyed on; ``arch`` is
the family (CDNA3, RDNA3). APUs (MI300A, Strix Halo gfx1151, ...) share host memory: unified, memory None.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aima.hardware._tools import TIMEOUT_S, run_tool
from aima.hardware.facts import GpuFacts

VENDOR = "amd"

_GFX_ARCH = (
    (r"gfx94[0-2]$", "CDNA3"), (r"gfx95\d$", "CDNA4"), (r"gfx90a$", "CDNA2"), (r"gfx908$", "CDNA"),
    (r"gfx12\d\d$", "RDNA4"), (r"gfx115\d$", "RDNA3.5"), (r"gfx110\d$", "RDNA3"), (r"gfx103\d$", "RDNA2"),
    (r"gfx101\d$", "RDNA"), (r"gfx90[0-69c]$", "GCN5"), (r"gfx80\d$", "GCN4"),
)
_APU_TARGETS = {"gfx1151", "gfx1150", "gfx1103", "gfx1037", "gfx1036", "gfx1035", "gfx90c", "gfx902"}
_UNITS = {"b": 1, "kb": 1 << 10, "kib": 1 << 10, "mb": 1 << 20, "mib": 1 << 20, "gb": 1 << 30, "gib": 1 << 30}


def arch_from_gfx(gfx: str | None) -> str | None:
    g = (gfx or "").strip().lower()
    for pattern, arch in _GFX_ARCH:
        if re.match(pattern, g):
            return arch
    return None


def _is_apu(gfx: str | None, name: str | None) -> bool:
    return (gfx or "").lower() in _APU_TARGETS or "mi300a" in (name or "").lower()


def _na(v: Any) -> Any:
    if v is None or (isinstance(v, str) and v.strip().upper() in ("", "N/A", "NA", "UNKNOWN")):
        return None
    return v


def size_bytes(v: Any, default_unit: str = "mb", *, zero_ok: bool = False) -> int | None:
    """A size as amd-smi writes it: ``{"value": 196592, "unit": "MB"}``, ``"196592 MB"`` or a bare number
    (in ``default_unit``). amd-smi's MB are MiB. Missing -> None; zero -> None unless ``zero_ok`` (a usage)."""
    v = _na(v)
    if v is None:
        return None
    unit = default_unit
    if isinstance(v, dict):
        unit = str(v.get("unit") or default_unit)
        v = _na(v.get("value"))
        if v is None:
            return None
    if isinstance(v, str):
        m = re.match(r"\s*([\d.]+)\s*([A-Za-z]*)", v)
        if not m:
            return None
        v, unit = m.group(1), m.group(2) or unit
    try:
        n = float(v) * _UNITS.get(unit.strip().lower(), 1 << 20)
    except (TypeError, ValueError):
        return None
    return int(n) if n > 0 or (zero_ok and n == 0) else None


def _load(text: str | None) -> Any:
    if not text or not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _gpu_list(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, dict):
        for key in ("gpu_data", "gpus"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
        else:
            data = [data] if "gpu" in data else []
    return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []


def _gpu_index(d: dict[str, Any], fallback: int) -> int:
    g = d.get("gpu")
    return g if isinstance(g, int) else int(g) if isinstance(g, str) and g.isdigit() else fallback


def make_gpu(index: int, name: str | None, gfx: str | None, *, total: int | None, free: int | None,
             driver: str | None, uuid: str | None, pci: str | None, cus: int | None) -> GpuFacts:
    unified = _is_apu(gfx, name)
    if unified:
        total = free = None
    return GpuFacts(vendor=VENDOR, index=index, name=name, arch=arch_from_gfx(gfx), memory_total_bytes=total,
                    memory_free_bytes=free, unified_memory=unified, driver_version=driver,
                    compute_capability=gfx, compute_units=cus, uuid=uuid, pci_bus_id=pci)


def parse_amd_smi(static_json: str, metric_json: str | None = None, list_json: str | None = None) -> list[GpuFacts]:
    """Parse ``amd-smi static --json`` with, when given, ``amd-smi metric --mem-usage --json`` (free
    memory) and ``amd-smi list --json`` (uuid). Accepts the bare list and the ``{"gpu_data": [...]}`` forms."""
    metrics = {_gpu_index(d, i): d for i, d in enumerate(_gpu_list(_load(metric_json)))}
    listing = {_gpu_index(d, i): d for i, d in enumerate(_gpu_list(_load(list_json)))}
    gpus = []
    for i, d in enumerate(_gpu_list(_load(static_json))):
        idx = _gpu_index(d, i)
        asic = d.get("asic") or {}
        bus = d.get("bus") or {}
        vram = d.get("vram") or {}
        driver = d.get("driver") or {}
        board = d.get("board") or {}
        gfx = _na(asic.get("target_graphics_version"))
        name = _na(asic.get("market_name")) or _na(board.get("product_name"))
        total = size_bytes(vram.get("size"))
        mem = (metrics.get(idx) or {}).get("mem_usage") or {}
        m_total = size_bytes(mem.get("total_vram"))
        used = size_bytes(mem.get("used_vram"), zero_ok=True)
        free = size_bytes(mem.get("free_vram"), zero_ok=True)
        total = total or m_total
        if free is None and used is not None and total:
            free = max(total - used, 0)
        cus = _na(asic.get("num_compute_units"))
        gpus.append(make_gpu(
            idx, name, gfx, total=total, free=free, driver=_na(driver.get("version")),
            uuid=_na((listing.get(idx) or {}).get("uuid")), pci=_na(bus.get("bdf")) or _na(d.get("bdf")),
            cus=int(cus) if isinstance(cus, int | str) and str(cus).isdigit() else None))
    return gpus


def parse_rocm_smi(text: str) -> list[GpuFacts]:
    """Parse ``rocm-smi --showproductname --showmeminfo vram --showbus --showdriverversion --json``:
    ``{"card0": {...}, "system": {"Driver version": ...}}``; key spellings differ between releases."""
    data = _load(text)
    if not isinstance(data, dict):
        return []
    system = {k.lower(): v for k, v in (data.get("system") or {}).items()}
    driver = _na(system.get("driver version"))
    gpus = []
    cards = sorted((k for k in data if re.fullmatch(r"card\d+", k)), key=lambda k: int(k[4:]))
    for key in cards:
        c = {k.lower(): v for k, v in (data[key] or {}).items()}
        name = _na(c.get("card series")) or _na(c.get("card model"))
        gfx = _na(c.get("gfx version"))
        total = size_bytes(c.get("vram total memory (b)"), "b")
        used = size_bytes(c.get("vram total used memory (b)"), "b", zero_ok=True)
        free = max(total - used, 0) if total is not None and used is not None else None
        gpus.append(make_gpu(int(key[4:]), name, gfx, total=total, free=free, driver=driver,
                             uuid=_na(c.get("unique id")), pci=_na(c.get("pci bus")), cus=None))
    return gpus


def probe(timeout: float = TIMEOUT_S) -> tuple[list[GpuFacts], list[str]]:
    """Find AMD GPUs through amd-smi, else rocm-smi; a missing tool is a note, not an error."""
    notes: list[str] = []
    static = run_tool(["amd-smi", "static", "--json"], timeout)
    if static.found:
        if static.ok:
            metric = run_tool(["amd-smi", "metric", "--mem-usage", "--json"], timeout)
            listing = run_tool(["amd-smi", "list", "--json"], timeout)
            gpus = parse_amd_smi(static.stdout, metric.stdout if metric.ok else None,
                                 listing.stdout if listing.ok else None)
            if gpus:
                if not metric.ok and metric.note:
                    notes.append(metric.note + "; free GPU memory unknown")
                return gpus, notes
            notes.append("amd-smi static --json gave no GPU")
        elif static.note:
            notes.append(static.note)
    rocm = run_tool(["rocm-smi", "--showproductname", "--showmeminfo", "vram", "--showbus",
                     "--showdriverversion", "--json"], timeout)
    if not static.found and not rocm.found:
        return [], ["amd-smi and rocm-smi not found on PATH"]
    gpus = parse_rocm_smi(rocm.stdout) if rocm.stdout else []
    if rocm.note and (rocm.found or not gpus):
        notes.append(rocm.note)
    return gpus, notes
