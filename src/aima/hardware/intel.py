"""Intel GPUs: ``xpu-smi discovery`` (plus ``discovery -d N`` for memory and driver), else ``sycl-ls``.

Integrated parts (Iris Xe, Arc Graphics of Meteor/Lunar Lake, UHD) share host memory: unified, memory None.
"""

from __future__ import annotations

import re

from aima.hardware._tools import TIMEOUT_S, run_tool
from aima.hardware.facts import GpuFacts

VENDOR = "intel"

# (pattern on the cleaned lower-case name, arch, integrated)
_NAME_ARCH: tuple[tuple[str, str | None, bool], ...] = (
    (r"gpu max \d{4}", "Xe-HPC", False),
    (r"gpu flex", "Xe-HPG", False),
    (r"arc b\d{3}", "Xe2-HPG", False),
    (r"arc a\d{3}", "Xe-HPG", False),
    (r"arc 1[34]0v", "Xe2-LPG", True),
    (r"arc graphics", "Xe-LPG", True),
    (r"iris xe", "Xe-LP", True),
    (r"uhd graphics|hd graphics", None, True),
)


def _clean(name: str) -> str:
    return re.sub(r"\((r|tm)\)", "", name, flags=re.IGNORECASE).lower()


def arch_of(name: str | None) -> tuple[str | None, bool]:
    """(arch, integrated) for an Intel GPU name."""
    low = _clean(name or "")
    for pattern, arch, integrated in _NAME_ARCH:
        if re.search(pattern, low):
            return arch, integrated
    return None, False


def _mib_text(v: str | None) -> int | None:
    m = re.match(r"\s*([\d.]+)\s*(MiB|GiB|MB|GB|B)?", v or "", re.IGNORECASE)
    if not m:
        return None
    factor = {"gib": 1 << 30, "gb": 1 << 30, "b": 1}.get((m.group(2) or "mib").lower(), 1 << 20)
    n = float(m.group(1)) * factor
    return int(n) if n > 0 else None


def make_gpu(index: int, name: str | None, *, total: int | None = None, driver: str | None = None,
             uuid: str | None = None, pci: str | None = None, eus: int | None = None) -> GpuFacts:
    arch, integrated = arch_of(name)
    return GpuFacts(vendor=VENDOR, index=index, name=name, arch=arch,
                    memory_total_bytes=None if integrated else total, unified_memory=integrated,
                    driver_version=driver, uuid=uuid, pci_bus_id=pci, compute_units=eus)


def parse_xpu_smi_discovery(text: str) -> list[GpuFacts]:
    """Parse the ``xpu-smi discovery`` table (and ``discovery -d N`` blocks appended to it: blocks with the
    same Device ID are merged). Rows are ``| <id> | Key: Value |`` with the id only on a device's first row."""
    devices: dict[int, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2:
            continue
        if cells[0].isdigit():
            current = devices.setdefault(int(cells[0]), {})
        elif cells[0]:
            current = None  # the header row
        if current is None:
            continue
        key, sep, value = cells[1].partition(":")
        if sep:
            current.setdefault(key.strip().lower(), value.strip())
    gpus = []
    for idx in sorted(devices):
        d = devices[idx]
        if d.get("device type", "GPU").upper() != "GPU":
            continue
        eus = d.get("number of eus", "")
        gpus.append(make_gpu(idx, d.get("device name") or None, total=_mib_text(d.get("memory physical size")),
                             driver=d.get("driver version") or None, uuid=d.get("uuid") or d.get("soc uuid") or None,
                             pci=d.get("pci bdf address") or None, eus=int(eus) if eus.isdigit() else None))
    return gpus


def parse_sycl_ls(text: str) -> list[GpuFacts]:
    """Intel GPUs from ``sycl-ls``: the Level Zero lines (else OpenCL ones); names only, memory unknown."""
    found: dict[str, list[str]] = {"level_zero": [], "opencl": []}
    for line in text.splitlines():
        m = re.match(r"\s*\[(?:ext_oneapi_)?(level_zero|opencl):gpu(?::\d+)?\](?:\[[^\]]*\])?\s+[^,]+,\s+(.*)$", line)
        if not m:
            continue
        name = re.sub(r"\s*\[[^\]]*\]\s*$", "", m.group(2))
        name = re.sub(r"\s+OpenCL\s+[\d.]+(\s+NEO)?\s*$", "", name)
        name = re.sub(r"\s+\d+(\.\d+)+\s*$", "", name).strip()
        if "intel" in name.lower():
            found[m.group(1)].append(name)
    names = found["level_zero"] or found["opencl"]
    return [make_gpu(i, n) for i, n in enumerate(names)]


def probe(timeout: float = TIMEOUT_S) -> tuple[list[GpuFacts], list[str]]:
    notes: list[str] = []
    res = run_tool(["xpu-smi", "discovery"], timeout)
    if res.found:
        text = res.stdout
        for idx in sorted({g.index for g in parse_xpu_smi_discovery(text)}):
            detail = run_tool(["xpu-smi", "discovery", "-d", str(idx)], timeout)
            text += "\n" + detail.stdout if detail.ok else ""
        gpus = parse_xpu_smi_discovery(text)
        if res.note and (not gpus or not res.ok):
            notes.append(res.note)
        if gpus:
            return gpus, notes
    sycl = run_tool(["sycl-ls"], timeout)
    if not res.found and not sycl.found:
        return [], ["xpu-smi and sycl-ls not found on PATH"]
    gpus = parse_sycl_ls(sycl.stdout) if sycl.stdout else []
    if sycl.note and (sycl.found or not gpus):
        notes.append(sycl.note)
    return gpus, notes
