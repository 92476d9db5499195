"""What aima knows about the machine it runs on: plain pydantic shapes, returned by ``hardware.detect``.

Rule for every field: a fact that could not be read is ``None`` — never ``0`` and never a guess.
Callers treat ``None`` as "unknown, skip this check" (a zero once matched everything).
Sizes are bytes; GPU ``vendor`` is the name of the module that found it (nvidia, amd, apple, ascend, intel).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Facts(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlatformFacts(_Facts):
    os: str = Field(description="linux, darwin or windows")
    arch: str = Field(description="x86_64 or aarch64 (arm64 and AMD64 are normalised to these); else as reported")
    python: str = Field(description="version of the Python running aima")
    release: str | None = Field(None, description="kernel or OS release")


class CpuFacts(_Facts):
    model: str | None = None
    vendor: str | None = Field(None, description="intel, amd, hygon, arm, apple, nvidia, ampere, hisilicon, ...")
    arch: str | None = None
    cores_physical: int | None = None
    cores_logical: int | None = None
    flags: list[str] = Field(default_factory=list,
                             description="the instruction-set features that matter for inference engines, "
                                         "normalised across x86, Linux arm64 and macOS (avx2, avx512f, amx, "
                                         "neon, dotprod, sve, ...)")
    isa_level: str | None = Field(None, description="x86-64-v1..v4, or a lower bound such as armv8-a / armv9-a")


class MemoryFacts(_Facts):
    total_bytes: int | None = None
    available_bytes: int | None = None
    swap_total_bytes: int | None = None


class CgroupFacts(_Facts):
    version: Literal[1, 2] | None = Field(None, description="None: no cgroup filesystem was found")
    memory_limit_bytes: int | None = Field(None, description="None: no limit (or unknown)")
    memory_usage_bytes: int | None = None
    cpu_quota_cores: float | None = Field(None, description="quota / period; None: no quota")


class EffectiveFacts(_Facts):
    """What this process may really use: the smaller of the host and its cgroup (and CPU affinity)."""

    cpu_cores: int | None = None
    memory_total_bytes: int | None = None
    memory_available_bytes: int | None = None


class DiskFacts(_Facts):
    path: str
    total_bytes: int | None = None
    free_bytes: int | None = None


class GpuFacts(_Facts):
    vendor: str
    index: int
    name: str | None = None
    arch: str | None = Field(None, description="NVIDIA: Volta..Blackwell; AMD: CDNA3, RDNA3...; Ascend: Ascend910B")
    memory_total_bytes: int | None = Field(None, description="None on unified-memory parts: use host memory")
    memory_free_bytes: int | None = None
    unified_memory: bool = Field(False, description="the GPU shares the host's RAM (GB10, Jetson, Apple Silicon)")
    driver_version: str | None = None
    compute_capability: str | None = Field(None, description="NVIDIA 8.9; AMD the gfx target (gfx942)")
    compute_units: int | None = Field(None, description="as the tool reports them: AMD CUs, Apple GPU cores")
    uuid: str | None = None
    pci_bus_id: str | None = None


class HardwareFacts(_Facts):
    platform: PlatformFacts
    cpu: CpuFacts = Field(default_factory=CpuFacts)
    memory: MemoryFacts = Field(default_factory=MemoryFacts)
    cgroup: CgroupFacts = Field(default_factory=CgroupFacts)
    effective: EffectiveFacts = Field(default_factory=EffectiveFacts)
    disks: list[DiskFacts] = Field(default_factory=list)
    gpus: list[GpuFacts] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="which tools were missing or failed, in words")
    detected_at: float | None = Field(None, description="unix time of the probe these facts come from")

    def total_gpu_memory(self, vendor: str | None = None) -> int | None:
        """Sum of the GPUs' own memory (of one vendor if given); None when there is no GPU or any
        of them does not report it (unified memory): an unknown is never counted as zero."""
        gpus = self.gpus_of(vendor)
        if not gpus or any(g.memory_total_bytes is None for g in gpus):
            return None
        return sum(g.memory_total_bytes or 0 for g in gpus)

    def has_gpu(self, vendor: str | None = None) -> bool:
        """Whether any GPU (of this vendor: nvidia, amd, apple, ascend, intel) was found."""
        return bool(self.gpus_of(vendor))

    def gpus_of(self, vendor: str | None = None) -> list[GpuFacts]:
        if vendor is None:
            return list(self.gpus)
        v = vendor.lower()
        return [g for g in self.gpus if g.vendor == v]
