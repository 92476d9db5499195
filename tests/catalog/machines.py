"""Recorded hardware: HardwareFacts as ``aima.hardware.detect()`` reports them on real machines
(numbers from nvidia-smi, /proc/meminfo and sysctl on such boxes), so the resolver is tested
against the whole device matrix without the devices."""

from __future__ import annotations

from typing import Any

from aima.hardware.facts import HardwareFacts

GiB = 1 << 30
MiB = 1 << 20


def _x86(cores: int, total: int, avail: int, gpus: list[dict[str, Any]] | None = None, **cpu: Any) -> dict[str, Any]:
    return {
        "platform": {"os": "linux", "arch": "x86_64", "python": "3.11.7", "release": "6.1.0-18-amd64"},
        "cpu": {"model": cpu.get("model", "AMD Ryzen 9 7950X 16-Core Processor"), "vendor": "amd",
                "arch": "x86_64", "cores_physical": cores // 2, "cores_logical": cores,
                "flags": ["avx", "avx2", "fma", "avx512f"], "isa_level": "x86-64-v4"},
        "memory": {"total_bytes": total, "available_bytes": avail, "swap_total_bytes": 8 * GiB},
        "effective": {"cpu_cores": cores, "memory_total_bytes": total, "memory_available_bytes": avail},
        "gpus": gpus or [],
    }


def nvidia(index: int, name: str, arch: str, total_mib: int, free_mib: int, cc: str) -> dict[str, Any]:
    return {"vendor": "nvidia", "index": index, "name": name, "arch": arch, "memory_total_bytes": total_mib * MiB,
            "memory_free_bytes": free_mib * MiB, "unified_memory": False, "driver_version": "550.54.15",
            "compute_capability": cc, "uuid": f"GPU-0000000{index}-aaaa-bbbb-cccc-dddddddddddd",
            "pci_bus_id": f"00000000:0{index + 1}:00.0"}


RECORDED: dict[str, dict[str, Any]] = {
    # a laptop without a GPU
    "cpu-laptop": _x86(8, 16 * GiB, 10 * GiB, model="Intel(R) Core(TM) i7-1165G7 @ 2.80GHz"),
    # RTX 4060 desktop: 8 GB card
    "rtx4060-8gb": _x86(16, 32 * GiB, 24 * GiB, [nvidia(0, "NVIDIA GeForce RTX 4060", "Ada", 8188, 7700, "8.9")]),
    # RTX 4090 workstation: 24 GB card
    "rtx4090-24gb": _x86(32, 64 * GiB, 50 * GiB,
                         [nvidia(0, "NVIDIA GeForce RTX 4090", "Ada", 24564, 24080, "8.9")]),
    # H100 SXM server
    "h100-80gb": _x86(64, 512 * GiB, 480 * GiB, [nvidia(0, "NVIDIA H100 80GB HBM3", "Hopper", 81559, 81004, "9.0")],
                      model="Intel(R) Xeon(R) Platinum 8480+"),
    # two RTX 4090 in one box
    "2x-rtx4090": _x86(32, 128 * GiB, 110 * GiB,
                       [nvidia(0, "NVIDIA GeForce RTX 4090", "Ada", 24564, 24080, "8.9"),
                        nvidia(1, "NVIDIA GeForce RTX 4090", "Ada", 24564, 23900, "8.9")]),
    # DGX Spark: GB10 shares 128 GB of LPDDR5X with the CPU; nvidia-smi reports no memory
    "gb10": {
        "platform": {"os": "linux", "arch": "aarch64", "python": "3.11.7"},
        "cpu": {"model": "Cortex-X925", "vendor": "arm", "arch": "aarch64", "cores_physical": 20,
                "cores_logical": 20, "flags": ["neon", "dotprod", "sve", "sve2"], "isa_level": "armv9-a"},
        "memory": {"total_bytes": 119 * GiB + 700 * MiB, "available_bytes": 110 * GiB},
        "effective": {"cpu_cores": 20, "memory_total_bytes": 119 * GiB + 700 * MiB,
                      "memory_available_bytes": 110 * GiB},
        "gpus": [{"vendor": "nvidia", "index": 0, "name": "NVIDIA GB10", "arch": "Blackwell",
                  "memory_total_bytes": None, "memory_free_bytes": None, "unified_memory": True,
                  "driver_version": "580.95.05", "compute_capability": "12.1"}],
    },
    # MacBook Pro M2 Max 64 GB
    "apple-m2-max": {
        "platform": {"os": "darwin", "arch": "aarch64", "python": "3.11.7", "release": "23.4.0"},
        "cpu": {"model": "Apple M2 Max", "vendor": "apple", "arch": "aarch64", "cores_physical": 12,
                "cores_logical": 12, "flags": ["neon", "dotprod", "fp16"], "isa_level": "armv8.6-a"},
        "memory": {"total_bytes": 64 * GiB, "available_bytes": 40 * GiB},
        "effective": {"cpu_cores": 12, "memory_total_bytes": 64 * GiB, "memory_available_bytes": 40 * GiB},
        "gpus": [{"vendor": "apple", "index": 0, "name": "Apple M2 Max", "arch": "Apple GPU",
                  "memory_total_bytes": None, "memory_free_bytes": None, "unified_memory": True,
                  "compute_units": 38}],
    },
}


def facts(name: str, **changes: Any) -> HardwareFacts:
    """A recorded machine, optionally with some facts changed (e.g. less free memory)."""
    data = RECORDED[name]
    f = HardwareFacts.model_validate(data)
    return f.model_copy(update=changes) if changes else f


def with_gpu_free(name: str, free_bytes: int, index: int = 0) -> HardwareFacts:
    f = facts(name)
    gpus = [g.model_copy(update={"memory_free_bytes": free_bytes}) if g.index == index else g for g in f.gpus]
    return f.model_copy(update={"gpus": gpus})


def with_ram_available(name: str, avail: int) -> HardwareFacts:
    f = facts(name)
    return f.model_copy(update={
        "memory": f.memory.model_copy(update={"available_bytes": avail}),
        "effective": f.effective.model_copy(update={"memory_available_bytes": avail}),
    })
