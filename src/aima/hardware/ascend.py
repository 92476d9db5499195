"""Huawei Ascend NPUs from the ``npu-smi info`` table.

Each NPU takes two table rows: ``| NPU  Name | Health | Power Temp Hugepages |`` then
``| Chip | Bus-Id | AICore Memory-Usage(MB) HBM-Usage(MB) |``. The 910 series report their HBM as the
last ``used / total`` pair; the 310 series only have Memory-Usage. Each chip is one device (index).
"""

from __future__ import annotations

import re

from aima.hardware._tools import TIMEOUT_S, mib, run_tool
from aima.hardware.facts import GpuFacts

VENDOR = "ascend"
_BUS = re.compile(r"^[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]$")


def arch_from_name(name: str | None) -> str | None:
    """910B3 -> Ascend910B, 310P3 -> Ascend310P, 910 -> Ascend910."""
    m = re.match(r"(?:ascend\s*)?(\d{3}[A-Za-z]?)", (name or "").strip(), re.IGNORECASE)
    return f"Ascend{m.group(1).upper()}" if m else None


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse_npu_smi_info(text: str) -> list[GpuFacts]:
    """Parse ``npu-smi info``: one GpuFacts per chip, HBM (else Memory) ``used / total`` MB as its memory."""
    m = re.search(r"Version:\s*([\w.\-]+)", text)
    driver = m.group(1) if m else None
    gpus: list[GpuFacts] = []
    npu_name: str | None = None
    for line in text.splitlines():
        if "Process id" in line or "Process name" in line:
            break  # the process table follows the devices
        if not line.startswith("|"):
            continue
        cells = _cells(line)
        if len(cells) < 3:
            continue
        first = re.match(r"^(\d+)\s+(\S+)$", cells[0])
        if first and not first.group(2).isdigit() and not _BUS.match(cells[1]):
            npu_name = first.group(2)
            continue
        if npu_name and re.match(r"^\d+(\s+\d+)?$", cells[0]) and _BUS.match(cells[1]):
            total = used = None
            for u, t in reversed(re.findall(r"(\d+)\s*/\s*(\d+)", cells[2])):
                if int(t) > 0:
                    used, total = int(u), int(t)
                    break
            gpus.append(GpuFacts(
                vendor=VENDOR, index=len(gpus), name=f"Ascend {npu_name}", arch=arch_from_name(npu_name),
                memory_total_bytes=mib(total), memory_free_bytes=mib(total - used) if total is not None and
                used is not None else None, driver_version=driver, pci_bus_id=cells[1]))
    return gpus


def probe(timeout: float = TIMEOUT_S) -> tuple[list[GpuFacts], list[str]]:
    res = run_tool(["npu-smi", "info"], timeout)
    gpus = parse_npu_smi_info(res.stdout) if res.stdout else []
    notes = [res.note] if res.note and (not gpus or not res.ok) else []
    if res.ok and not gpus:
        notes.append("npu-smi info listed no NPU")
    return gpus, notes
