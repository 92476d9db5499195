"""NVIDIA GPUs: NVML (nvidia-ml-py, when installed), else ``nvidia-smi``, else what the driver shows in /proc.

Unified-memory parts (GB10 in the DGX Spark, Jetson Orin/Thor) answer ``[N/A]`` or "Not Supported" for
memory: their GPU memory is then ``None`` with ``unified_memory=True`` — the host's RAM is the budget.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aima.hardware._tools import TIMEOUT_S, mib, run_tool
from aima.hardware.facts import GpuFacts

VENDOR = "nvidia"
QUERY_FIELDS = ("index", "name", "uuid", "memory.total", "memory.free", "driver_version", "compute_cap",
                "pci.bus_id")
_MISSING = {"", "n/a", "[n/a]", "not supported", "[not supported]", "unknown error", "[unknown error]",
            "[insufficient permissions]", "[gpu is lost]", "[requires professional license]"}
_UNSUPPORTED = {"n/a", "[n/a]", "not supported", "[not supported]"}

# (pattern on the lower-case name, arch); first match wins, so the specific come first
_NAME_ARCH: tuple[tuple[str, str], ...] = (
    (r"\bgb10\b|\bgb[23]00\b|\bb[123]00\b|blackwell|rtx 50[5-9]0|rtx pro|\bthor\b", "Blackwell"),
    (r"\bada\b|rtx 40[5-9]0|\bl40s?\b|\bl4\b|\bl20\b", "Ada"),
    (r"\bgh200\b|\bh100\b|\bh200\b|\bh800\b|\bh20\b", "Hopper"),
    (r"\ba100\b|\ba800\b|\ba10g?\b|\ba30\b|\ba40\b|\ba16\b|\ba2\b|rtx 30[5-9]0|rtx a\d{4}|\borin\b", "Ampere"),
    (r"\bt4\b|rtx 20[6-8]0|titan rtx|quadro rtx|gtx 16[5-6]0", "Turing"),
    (r"\bv100\b|titan v\b|\bxavier\b", "Volta"),
)
_UNIFIED_NAMES = re.compile(r"\bgb10\b|\borin\b|\bthor\b|\bxavier\b|jetson|tegra|nvgpu")


def arch_from_compute_capability(cc: str | None) -> str | None:
    """7.0 Volta, 7.5 Turing, 8.0/8.6/8.7 Ampere, 8.9 Ada, 9.0 Hopper, 10.x-12.x Blackwell."""
    if not cc:
        return None
    m = re.match(r"\s*(\d+)\.(\d+)", cc)
    if not m:
        return None
    major, minor = int(m.group(1)), int(m.group(2))
    if major in (10, 11, 12):
        return "Blackwell"
    return {(9, 0): "Hopper", (8, 9): "Ada", (7, 5): "Turing"}.get((major, minor)) or {
        8: "Ampere", 7: "Volta", 6: "Pascal", 5: "Maxwell", 3: "Kepler"}.get(major)


def arch_from_name(name: str | None) -> str | None:
    low = (name or "").lower()
    for pattern, arch in _NAME_ARCH:
        if re.search(pattern, low):
            return arch
    return None


def is_unified_name(name: str | None) -> bool:
    """GB10 and the Jetson family share the host's memory."""
    return bool(_UNIFIED_NAMES.search((name or "").lower()))


def _value(text: str | None) -> str | None:
    if text is None:
        return None
    v = text.strip()
    return None if v.lower() in _MISSING else v


def _mib_field(text: str | None) -> int | None:
    v = _value(text)
    if v is None:
        return None
    v = re.sub(r"\s*MiB$", "", v, flags=re.IGNORECASE)
    try:
        n = float(v)
    except ValueError:
        return None
    return mib(n) if n > 0 else None


def make_gpu(index: int, name: str | None, *, total: int | None, free: int | None, driver: str | None,
             cc: str | None, uuid: str | None, pci: str | None, memory_unsupported: bool = False,
             notes: list[str] | None = None) -> GpuFacts:
    """One NVIDIA GPU from raw values; fills arch and unified memory from what is known of the part.
    ``memory_unsupported``: the driver said the part has no memory figure ([N/A], Not Supported), which
    only integrated parts do — such a GPU is taken as unified even when its name is not known here."""
    arch = arch_from_compute_capability(cc) or arch_from_name(name)
    unified = is_unified_name(name)
    if total is None and memory_unsupported and not unified:
        unified = True
        if notes is not None:
            notes.append(f"NVIDIA GPU {index} ({name or 'unknown'}) reports no memory size; taken as unified memory")
    if unified:  # the GPU has no memory of its own: host RAM is the budget
        total = free = None
    return GpuFacts(vendor=VENDOR, index=index, name=name, arch=arch, memory_total_bytes=total,
                    memory_free_bytes=free, unified_memory=unified, driver_version=driver,
                    compute_capability=cc, uuid=uuid, pci_bus_id=pci)


def parse_nvidia_smi_csv(text: str, fields: Sequence[str] = QUERY_FIELDS,
                         notes: list[str] | None = None) -> list[GpuFacts]:
    """Parse ``nvidia-smi --query-gpu=<fields> --format=csv,noheader,nounits`` (a header line or the
    units are tolerated too). Missing values (``[N/A]``, ``[Not Supported]``) become None."""
    gpus = []
    for row in csv.reader(text.splitlines(), skipinitialspace=True):
        if not row or len(row) < len(fields) or row[0].strip().lower() == fields[0]:
            continue
        v = {f: row[i] for i, f in enumerate(fields)}
        idx = _value(v.get("index"))
        if idx is None or not idx.isdigit():
            continue
        mem_raw = v.get("memory.total", "").strip().lower()
        gpus.append(make_gpu(
            int(idx), _value(v.get("name")), total=_mib_field(v.get("memory.total")),
            free=_mib_field(v.get("memory.free")), driver=_value(v.get("driver_version")),
            cc=_value(v.get("compute_cap")), uuid=_value(v.get("uuid")), pci=_value(v.get("pci.bus_id")),
            memory_unsupported=mem_raw in _UNSUPPORTED, notes=notes))
    return gpus


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    return _value(str(v))


def gpus_from_nvml(nvml: Any, notes: list[str] | None = None) -> list[GpuFacts]:
    """Read the GPUs through an NVML binding (the ``pynvml`` module of nvidia-ml-py, or a stand-in with
    the same functions). Raises when NVML cannot start; a single unsupported query just gives None."""

    def ask(fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception:  # NVMLError_NotSupported and friends: unknown, not fatal
            return None

    nvml.nvmlInit()
    try:
        driver = _text(ask(nvml.nvmlSystemGetDriverVersion))
        gpus = []
        for i in range(nvml.nvmlDeviceGetCount()):
            h = nvml.nvmlDeviceGetHandleByIndex(i)
            mem = ask(nvml.nvmlDeviceGetMemoryInfo, h)
            total = getattr(mem, "total", None) or None
            free = getattr(mem, "free", None) if total else None
            cc_pair = ask(nvml.nvmlDeviceGetCudaComputeCapability, h)
            cc = f"{cc_pair[0]}.{cc_pair[1]}" if cc_pair else None
            pci = ask(nvml.nvmlDeviceGetPciInfo, h)
            gpus.append(make_gpu(i, _text(ask(nvml.nvmlDeviceGetName, h)), total=total, free=free, driver=driver,
                                 cc=cc, uuid=_text(ask(nvml.nvmlDeviceGetUUID, h)),
                                 pci=_text(getattr(pci, "busId", None)), memory_unsupported=mem is None,
                                 notes=notes))
        return gpus
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass


def parse_proc_driver(root: Path = Path("/")) -> list[GpuFacts]:
    """GPUs the loaded driver lists in ``/proc/driver/nvidia/gpus/*/information`` (used when nvidia-smi is
    missing, e.g. a container without the driver's utilities): name, uuid and bus id, no memory."""
    base = root / "proc/driver/nvidia/gpus"
    gpus = []
    try:
        dirs = sorted(p for p in base.iterdir() if (p / "information").is_file())
    except OSError:
        return []
    for i, d in enumerate(dirs):
        info = {}
        for line in (d / "information").read_text(errors="replace").splitlines():
            k, sep, v = line.partition(":")
            if sep:
                info[k.strip()] = v.strip()
        name = _value(info.get("Model"))
        gpus.append(GpuFacts(vendor=VENDOR, index=i, name=name, arch=arch_from_name(name),
                             unified_memory=is_unified_name(name), uuid=_value(info.get("GPU UUID")),
                             pci_bus_id=_value(info.get("Bus Location")) or d.name))
    return gpus


def parse_tegra_model(text: str) -> GpuFacts | None:
    """A Jetson's GPU from ``/proc/device-tree/model`` (JetPack releases without nvidia-smi)."""
    model = text.replace("\x00", "").strip()
    if "jetson" not in model.lower():
        return None
    return GpuFacts(vendor=VENDOR, index=0, name=model, arch=arch_from_name(model), unified_memory=True)


def _import_nvml() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pynvml  # type: ignore[import-not-found]  # optional: nvidia-ml-py
    return pynvml


def probe(timeout: float = TIMEOUT_S, root: Path = Path("/"),
          use_nvml: bool = True) -> tuple[list[GpuFacts], list[str]]:
    """Find NVIDIA GPUs; a missing tool is a note, not an error."""
    notes: list[str] = []
    if use_nvml:
        try:
            nvml = _import_nvml()
        except ImportError:
            nvml = None
        if nvml is not None:
            try:
                return gpus_from_nvml(nvml, notes), notes
            except Exception as e:
                notes = [f"NVML (nvidia-ml-py) could not read the GPUs: {e}"]
    fields = list(QUERY_FIELDS)
    res = run_tool(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"], timeout)
    if res.found and res.returncode not in (0, None) and "compute_cap" in res.stdout + (res.note or ""):
        fields.remove("compute_cap")  # drivers before 510 do not know this field
        res = run_tool(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"], timeout)
    gpus = parse_nvidia_smi_csv(res.stdout, fields, notes) if res.stdout else []
    if res.note and (not gpus or res.returncode != 0):
        notes.append(res.note)
    if res.found:
        return gpus, notes
    gpus = parse_proc_driver(root)
    if gpus:
        notes.append("nvidia-smi is missing but the NVIDIA driver lists GPUs in /proc; their memory is unknown")
        return gpus, notes
    try:
        tegra = parse_tegra_model((root / "proc/device-tree/model").read_text(errors="replace"))
    except OSError:
        tegra = None
    if tegra is not None:
        notes.append(f"nvidia-smi is missing; {tegra.name} found from the device tree")
        return [tegra], notes
    return [], notes
