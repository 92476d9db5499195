"""Each vendor parser on recorded tool output (data/README.md says which are captured, which reproduced)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from aima.hardware import amd, apple, ascend, cgroup, cpu, intel, nvidia
from aima.hardware.facts import GpuFacts, HardwareFacts, PlatformFacts
from tests.hardware.conftest import DATA, read

MiB = 1 << 20
GiB = 1 << 30

# ---------------------------------------------------------------- NVIDIA


def test_rtx_4090() -> None:
    (g,) = nvidia.parse_nvidia_smi_csv(read("nvidia-smi-rtx4090.csv"))
    assert (g.vendor, g.index, g.name) == ("nvidia", 0, "NVIDIA GeForce RTX 4090")
    assert g.memory_total_bytes == 24564 * MiB and g.memory_free_bytes == 24080 * MiB
    assert (g.arch, g.compute_capability, g.unified_memory) == ("Ada", "8.9", False)
    assert g.driver_version == "550.54.15"
    assert g.uuid == "GPU-9b3c1f6e-2a4d-8e7f-5c1b-3d9a7e2f4c60" and g.pci_bus_id == "00000000:01:00.0"


def test_rtx_4060_has_8_gb() -> None:
    (g,) = nvidia.parse_nvidia_smi_csv(read("nvidia-smi-rtx4060.csv"))
    assert g.memory_total_bytes == 8188 * MiB and g.arch == "Ada"
    assert 7.9 < g.memory_total_bytes / GiB < 8.01


def test_h100() -> None:
    (g,) = nvidia.parse_nvidia_smi_csv(read("nvidia-smi-h100.csv"))
    assert (g.name, g.arch, g.compute_capability) == ("NVIDIA H100 80GB HBM3", "Hopper", "9.0")
    assert g.memory_total_bytes == 81559 * MiB and not g.unified_memory


def test_two_gpus_keep_their_index_and_own_facts() -> None:
    a, b = nvidia.parse_nvidia_smi_csv(read("nvidia-smi-two-gpus.csv"))
    assert (a.index, a.arch, a.memory_free_bytes) == (0, "Ada", 1873 * MiB)
    assert (b.index, b.arch, b.name, b.memory_total_bytes) == (1, "Ampere", "NVIDIA GeForce RTX 3090", 24576 * MiB)
    facts = HardwareFacts(platform=PlatformFacts(os="linux", arch="x86_64", python="3"), gpus=[a, b])
    assert facts.total_gpu_memory() == (24564 + 24576) * MiB
    assert facts.has_gpu("nvidia") and facts.has_gpu("NVIDIA") and not facts.has_gpu("amd")


def test_gb10_unified_memory_is_none_never_zero() -> None:
    notes: list[str] = []
    (g,) = nvidia.parse_nvidia_smi_csv(read("nvidia-smi-gb10.csv"), notes=notes)
    assert (g.name, g.arch, g.compute_capability) == ("NVIDIA GB10", "Blackwell", "12.1")
    assert g.unified_memory is True
    assert g.memory_total_bytes is None and g.memory_free_bytes is None
    assert notes == []  # a known unified part needs no explanation
    facts = HardwareFacts(platform=PlatformFacts(os="linux", arch="aarch64", python="3"), gpus=[g])
    assert facts.total_gpu_memory() is None and facts.has_gpu()


def test_jetson_and_unknown_parts_without_memory() -> None:
    notes: list[str] = []
    orin, odd = nvidia.parse_nvidia_smi_csv(
        "0, Orin (nvgpu), [N/A], [N/A], [N/A], 540.4.0, 8.7, [N/A]\n"
        "1, NVIDIA Future X, GPU-1, [Not Supported], [Not Supported], 600.1, [N/A], 00000000:02:00.0\n", notes=notes)
    assert (orin.arch, orin.unified_memory, orin.memory_total_bytes, orin.uuid, orin.pci_bus_id) == (
        "Ampere", True, None, None, None)
    assert odd.arch is None and odd.compute_capability is None and odd.unified_memory is True
    assert odd.memory_total_bytes is None
    assert len(notes) == 1 and "NVIDIA Future X" in notes[0] and "unified" in notes[0]


def test_header_and_units_are_tolerated() -> None:
    text = ("index, name, uuid, memory.total [MiB], memory.free [MiB], driver_version, compute_cap, pci.bus_id\n"
            "0, Tesla T4, GPU-abc, 15360 MiB, 14910 MiB, 470.82.01, 7.5, 00000000:00:04.0\n")
    (g,) = nvidia.parse_nvidia_smi_csv(text)
    assert (g.arch, g.memory_total_bytes, g.memory_free_bytes) == ("Turing", 15360 * MiB, 14910 * MiB)


def test_fields_without_compute_cap() -> None:
    fields = [f for f in nvidia.QUERY_FIELDS if f != "compute_cap"]
    (g,) = nvidia.parse_nvidia_smi_csv("0, NVIDIA A100-SXM4-80GB, GPU-x, 81920, 81000, 470.57.02, 00000000:07:00.0",
                                       fields)
    assert g.compute_capability is None and g.arch == "Ampere"  # from the name, the capability stays unknown
    assert g.pci_bus_id == "00000000:07:00.0"


@pytest.mark.parametrize("cc,arch", [("7.0", "Volta"), ("7.2", "Volta"), ("7.5", "Turing"), ("8.0", "Ampere"),
                                     ("8.6", "Ampere"), ("8.7", "Ampere"), ("8.9", "Ada"), ("9.0", "Hopper"),
                                     ("10.0", "Blackwell"), ("11.0", "Blackwell"), ("12.0", "Blackwell"),
                                     ("12.1", "Blackwell"), ("6.1", "Pascal"), (None, None), ("junk", None)])
def test_compute_capability_to_arch(cc: str | None, arch: str | None) -> None:
    assert nvidia.arch_from_compute_capability(cc) == arch


@pytest.mark.parametrize("name,arch", [
    ("NVIDIA GB10", "Blackwell"), ("NVIDIA B200", "Blackwell"), ("NVIDIA GeForce RTX 5090", "Blackwell"),
    ("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", "Blackwell"), ("NVIDIA H200", "Hopper"),
    ("NVIDIA GH200 480GB", "Hopper"), ("NVIDIA L40S", "Ada"), ("NVIDIA L4", "Ada"), ("NVIDIA RTX 6000 Ada Generation",
                                                                                   "Ada"),
    ("Quadro RTX 4000", "Turing"), ("NVIDIA A10G", "Ampere"), ("Tesla V100-SXM2-32GB", "Volta"),
    ("NVIDIA GeForce RTX 4090", "Ada"), ("Some New Card", None)])
def test_arch_from_name(name: str, arch: str | None) -> None:
    assert nvidia.arch_from_name(name) == arch


def test_unified_names() -> None:
    assert nvidia.is_unified_name("NVIDIA GB10") and nvidia.is_unified_name("Orin (nvgpu)")
    assert not nvidia.is_unified_name("NVIDIA GB200") and not nvidia.is_unified_name("NVIDIA H100 80GB HBM3")


def test_junk_is_no_gpu() -> None:
    assert nvidia.parse_nvidia_smi_csv("") == []
    assert nvidia.parse_nvidia_smi_csv(read("nvidia-smi-old-driver-compute-cap.txt")) == []
    assert nvidia.parse_nvidia_smi_csv("NVIDIA-SMI has failed because it couldn't communicate with the driver.") == []


class FakeNVML:
    """The few NVML calls aima makes, answering like nvidia-ml-py on an H100 next to a GB10."""

    class NVMLError(Exception):
        pass

    def __init__(self) -> None:
        self.shut = False
        self.devices = [
            dict(name="NVIDIA H100 80GB HBM3", mem=SimpleNamespace(total=85520809984, free=84938129408, used=0),
                 cc=(9, 0), uuid="GPU-h100", bus=b"00000000:18:00.0"),
            dict(name=b"NVIDIA GB10", mem=None, cc=(12, 1), uuid="GPU-gb10", bus="0000000F:01:00.0"),
        ]

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        self.shut = True

    def nvmlSystemGetDriverVersion(self) -> str:
        return "580.95.05"

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> dict:
        return self.devices[i]

    def nvmlDeviceGetName(self, h: dict) -> str:
        return h["name"]

    def nvmlDeviceGetMemoryInfo(self, h: dict) -> SimpleNamespace:
        if h["mem"] is None:
            raise self.NVMLError("Not Supported")
        return h["mem"]

    def nvmlDeviceGetCudaComputeCapability(self, h: dict) -> tuple[int, int]:
        return h["cc"]

    def nvmlDeviceGetUUID(self, h: dict) -> str:
        return h["uuid"]

    def nvmlDeviceGetPciInfo(self, h: dict) -> SimpleNamespace:
        return SimpleNamespace(busId=h["bus"])


def test_nvml_path() -> None:
    fake = FakeNVML()
    h100, gb10 = nvidia.gpus_from_nvml(fake)
    assert fake.shut
    assert (h100.name, h100.arch, h100.memory_total_bytes, h100.pci_bus_id) == (
        "NVIDIA H100 80GB HBM3", "Hopper", 85520809984, "00000000:18:00.0")
    assert (gb10.name, gb10.arch, gb10.unified_memory, gb10.memory_total_bytes) == (
        "NVIDIA GB10", "Blackwell", True, None)
    assert gb10.driver_version == "580.95.05" and gb10.compute_capability == "12.1"


def test_proc_driver_fallback(tmp_path: Path) -> None:
    d = tmp_path / "proc/driver/nvidia/gpus/0000:01:00.0"
    d.mkdir(parents=True)
    (d / "information").write_text("Model: \t\t NVIDIA GeForce RTX 4090\nIRQ:   \t\t 160\n"
                                   "GPU UUID: \t GPU-9b3c1f6e-2a4d-8e7f-5c1b-3d9a7e2f4c60\n"
                                   "Video BIOS: \t 95.02.18.80.87\n"
                                   "Bus Type: \t PCIe\nBus Location: \t 0000:01:00.0\n")
    (g,) = nvidia.parse_proc_driver(tmp_path)
    assert (g.name, g.arch, g.memory_total_bytes, g.pci_bus_id) == ("NVIDIA GeForce RTX 4090", "Ada", None,
                                                                    "0000:01:00.0")
    assert nvidia.parse_proc_driver(tmp_path / "nothing") == []


def test_tegra_model() -> None:
    g = nvidia.parse_tegra_model("NVIDIA Jetson AGX Orin Developer Kit\x00")
    assert g is not None and (g.arch, g.unified_memory, g.memory_total_bytes) == ("Ampere", True, None)
    assert nvidia.parse_tegra_model("Raspberry Pi 5 Model B Rev 1.0\x00") is None


# ---------------------------------------------------------------- AMD


def test_amd_smi_mi300x() -> None:
    a, b = amd.parse_amd_smi(read("amd-smi-static-mi300x.json"), read("amd-smi-metric-mem-usage-mi300x.json"),
                             read("amd-smi-list-mi300x.json"))
    assert (a.vendor, a.index, a.name, a.arch, a.compute_capability) == ("amd", 0, "AMD Instinct MI300X", "CDNA3",
                                                                         "gfx942")
    assert a.memory_total_bytes == 196592 * MiB and a.memory_free_bytes == 196309 * MiB
    assert (a.compute_units, a.driver_version, a.pci_bus_id) == (304, "6.7.0", "0000:0c:00.0")
    assert a.uuid == "c2ff74a1-0000-1000-80e2-a4c1b07f3d9a" and not a.unified_memory
    assert (b.index, b.memory_free_bytes, b.pci_bus_id) == (1, 46064 * MiB, "0000:22:00.0")


def test_amd_smi_static_alone_leaves_free_unknown() -> None:
    gpus = amd.parse_amd_smi(read("amd-smi-static-mi300x.json"))
    assert [g.memory_free_bytes for g in gpus] == [None, None] and [g.uuid for g in gpus] == [None, None]
    assert all(g.memory_total_bytes == 196592 * MiB for g in gpus)


def test_amd_smi_newer_layouts() -> None:
    static = {"gpu_data": [{"gpu": 0, "asic": {"market_name": "AMD Radeon RX 7900 XTX",
                                                "target_graphics_version": "gfx1100", "num_compute_units": 96},
                            "bus": {"bdf": "0000:03:00.0"}, "driver": {"name": "amdgpu", "version": "6.10.5"},
                            "vram": {"type": "GDDR6", "size": "24560 MB"}}]}
    metric = {"gpu_data": [{"gpu": 0, "mem_usage": {"total_vram": 24560, "used_vram": 0}}]}
    (g,) = amd.parse_amd_smi(json.dumps(static), json.dumps(metric))
    assert (g.arch, g.memory_total_bytes, g.memory_free_bytes) == ("RDNA3", 24560 * MiB, 24560 * MiB)


def test_amd_apu_is_unified() -> None:
    static = [{"gpu": 0, "asic": {"market_name": "AMD Radeon Graphics", "target_graphics_version": "gfx1151"},
               "vram": {"size": {"value": 512, "unit": "MB"}}}]
    (g,) = amd.parse_amd_smi(json.dumps(static))
    assert (g.arch, g.unified_memory, g.memory_total_bytes) == ("RDNA3.5", True, None)


def test_rocm_smi_mi300x() -> None:
    a, b = amd.parse_rocm_smi(read("rocm-smi-mi300x.json"))
    assert (a.name, a.arch, a.compute_capability, a.driver_version) == ("AMD Instinct MI300X OAM", "CDNA3", "gfx942",
                                                                        "6.7.0")
    assert a.memory_total_bytes == 206141652992 and a.memory_free_bytes == 206141652992 - 297189376
    assert (b.index, b.pci_bus_id, b.memory_free_bytes) == (1, "0000:22:00.0", 206141652992 - 157839491072)


def test_amd_junk() -> None:
    assert amd.parse_amd_smi("") == [] and amd.parse_amd_smi("not json") == [] and amd.parse_amd_smi("{}") == []
    assert amd.parse_rocm_smi("WARNING: No AMD GPUs specified") == []
    assert amd.size_bytes("N/A") is None and amd.size_bytes({"value": 0, "unit": "MB"}) is None


# ---------------------------------------------------------------- Ascend


def test_npu_smi_910b() -> None:
    npus = ascend.parse_npu_smi_info(read("npu-smi-info-910b.txt"))
    assert len(npus) == 8  # the process table below the devices adds none
    a = npus[0]
    assert (a.vendor, a.index, a.name, a.arch, a.driver_version) == ("ascend", 0, "Ascend 910B3", "Ascend910B",
                                                                     "23.0.6")
    assert a.memory_total_bytes == 65536 * MiB and a.memory_free_bytes == (65536 - 3396) * MiB
    assert a.pci_bus_id == "0000:C1:00.0" and a.uuid is None and a.compute_capability is None
    busy = npus[4]
    assert busy.memory_free_bytes == (65536 - 61702) * MiB and busy.pci_bus_id == "0000:01:00.0"
    assert [n.index for n in npus] == list(range(8))


def test_npu_smi_310p_without_hbm() -> None:
    text = """+--------------------------------------------------------------------------------------------------------+
| npu-smi 23.0.0                                   Version: 23.0.0                                       |
+-------------------------------+-----------------+------------------------------------------------------+
| NPU     Name                  | Health          | Power(W)     Temp(C)           Hugepages-Usage(page) |
| Chip    Device                | Bus-Id          | AICore(%)    Memory-Usage(MB)                        |
+===============================+=================+======================================================+
| 1       310P3                 | OK              | NA           44                0     / 0             |
| 0       0                     | 0000:01:00.0    | 0            1623 / 44280                            |
+===============================+=================+======================================================+
"""
    (g,) = ascend.parse_npu_smi_info(text)
    assert (g.name, g.arch, g.memory_total_bytes, g.memory_free_bytes) == ("Ascend 310P3", "Ascend310P", 44280 * MiB,
                                                                           (44280 - 1623) * MiB)


def test_npu_smi_junk() -> None:
    assert ascend.parse_npu_smi_info("") == []
    assert ascend.parse_npu_smi_info("dcmi module initialize failed. ret is -8005") == []


# ---------------------------------------------------------------- Intel


def test_xpu_smi_discovery_with_details() -> None:
    text = read("xpu-smi-discovery-max1550.txt") + read("xpu-smi-discovery-d0-max1550.txt")
    a, b = intel.parse_xpu_smi_discovery(text)
    assert (a.vendor, a.index, a.name, a.arch) == ("intel", 0, "Intel(R) Data Center GPU Max 1550", "Xe-HPC")
    assert a.memory_total_bytes == 131072 * MiB and a.memory_free_bytes is None
    assert (a.driver_version, a.compute_units, a.pci_bus_id) == ("I915_23.10.32_PSB_230809.31", 1024, "0000:29:00.0")
    assert a.uuid == "00000000-0000-0029-0000-002f0bd58086"
    assert (b.index, b.memory_total_bytes, b.pci_bus_id) == (1, None, "0000:3a:00.0")  # no detail read for it


def test_sycl_ls() -> None:
    arc, uhd = intel.parse_sycl_ls(read("sycl-ls-arc-a770.txt"))
    assert (arc.name, arc.arch, arc.unified_memory, arc.memory_total_bytes) == ("Intel(R) Arc(TM) A770 Graphics",
                                                                                "Xe-HPG", False, None)
    assert (uhd.name, uhd.unified_memory) == ("Intel(R) UHD Graphics 770", True)
    assert intel.parse_sycl_ls("[opencl:cpu][opencl:0] Intel(R) OpenCL, Some CPU OpenCL 3.0 [1]") == []


# ---------------------------------------------------------------- Apple


def test_sysctl_m3_max() -> None:
    values = apple.parse_sysctl(read("sysctl-m3max.txt"))
    c = apple.cpu_from_sysctl(values)
    assert (c.model, c.vendor, c.arch, c.cores_physical, c.cores_logical) == ("Apple M3 Max", "apple", "aarch64", 16,
                                                                              16)
    assert c.flags == ["bf16", "dotprod", "fp16", "i8mm", "neon"] and c.isa_level == "armv8-a"
    assert apple.memory_from_sysctl(values) == 64 * GiB


def test_system_profiler_m3_max_is_unified() -> None:
    (g,) = apple.parse_system_profiler(read("system_profiler-displays-m3max.json"))
    assert (g.vendor, g.name, g.arch, g.compute_units, g.compute_capability) == ("apple", "Apple M3 Max", "M3", 40,
                                                                                 "metal3")
    assert g.unified_memory is True and g.memory_total_bytes is None and g.memory_free_bytes is None


def test_system_profiler_intel_mac() -> None:
    data = {"SPDisplaysDataType": [
        {"_name": "Intel UHD Graphics 630", "sppci_model": "Intel UHD Graphics 630", "sppci_device_type":
         "spdisplays_gpu", "spdisplays_vendor": "Intel", "spdisplays_vram_shared": "1536 MB"},
        {"_name": "AMD Radeon Pro 5500M", "sppci_model": "AMD Radeon Pro 5500M", "sppci_device_type": "spdisplays_gpu",
         "spdisplays_vendor": "sppci_vendor_amd", "spdisplays_vram": "8 GB"}]}
    igpu, dgpu = apple.parse_system_profiler(json.dumps(data))
    assert (igpu.vendor, igpu.unified_memory, igpu.memory_total_bytes) == ("intel", True, None)
    assert (dgpu.vendor, dgpu.memory_total_bytes, dgpu.index) == ("amd", 8 * GiB, 1)
    assert apple.parse_system_profiler("") == [] and apple.parse_system_profiler("{}") == []


# ---------------------------------------------------------------- CPU


def test_cpuinfo_xeon_with_amx() -> None:
    c = cpu.parse_cpuinfo(read("cpuinfo-xeon-8488c.txt"))
    assert (c.model, c.vendor, c.arch) == ("Intel(R) Xeon(R) Platinum 8488C", "intel", "x86_64")
    assert (c.cores_physical, c.cores_logical, c.isa_level) == (4, 8, "x86-64-v4")
    for f in ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx"):
        assert f in c.flags
    assert "sse2" not in c.flags and "hypervisor" not in c.flags  # only the subset that matters


def test_cpuinfo_grace() -> None:
    c = cpu.parse_cpuinfo(read("cpuinfo-grace-neoverse-v2.txt"))
    assert (c.model, c.vendor, c.arch, c.cores_logical) == ("Neoverse-V2", "arm", "aarch64", 72)
    assert c.cores_physical is None  # aarch64 cpuinfo has no core ids: unknown, not guessed
    assert c.flags == ["bf16", "dotprod", "fp16", "i8mm", "neon", "sve", "sve2"] and c.isa_level == "armv9-a"


def test_cpuinfo_captured_here() -> None:
    c = cpu.parse_cpuinfo(read("captured/cpuinfo-amd-epyc-kvm.txt"))
    assert (c.model, c.vendor, c.arch, c.cores_logical, c.cores_physical) == ("AMD EPYC", "amd", "x86_64", 2, 2)
    assert {"avx2", "avx512f", "avx512_bf16"} <= set(c.flags) and "amx" not in c.flags
    assert c.isa_level == "x86-64-v4"


def test_cpuinfo_mixed_arm_cores_and_levels() -> None:
    text = "".join(f"processor\t: {i}\nFeatures\t: fp asimd atomics\nCPU implementer\t: 0x41\nCPU part\t: "
                   f"{'0xd85' if i < 2 else '0xd87'}\n\n" for i in range(4))
    c = cpu.parse_cpuinfo(text)
    assert c.model == "Cortex-X925 + Cortex-A725" and c.flags == ["neon"] and c.isa_level == "armv8-a"
    assert cpu.x86_isa_level(["sse", "sse2"]) == "x86-64-v1"
    v2 = ["cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3", "avx"]
    assert cpu.x86_isa_level(v2) == "x86-64-v2"
    assert cpu.parse_cpuinfo("") == cpu.CpuFacts()
    assert cpu.normalise_arch("arm64") == "aarch64" and cpu.normalise_arch("AMD64") == "x86_64"


# ---------------------------------------------------------------- cgroup


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text + "\n")
    return root


def test_cgroup_v2_limits(tmp_path: Path) -> None:
    root = _tree(tmp_path / "cg", {"cgroup.controllers": "cpuset cpu io memory pids", "memory.max": "max",
                                   "memory.current": "123", "cpu.max": "max 100000"})
    no_self = tmp_path / "absent"
    assert cgroup.read_cgroup(root, no_self) == cgroup.CgroupFacts(version=2, memory_usage_bytes=123)
    _tree(root, {"memory.max": "268435456", "cpu.max": "150000 100000", "memory.current": "104857600",
                 "memory.stat": "anon 50000000\nfile 54857600\ninactive_file 4857600\nactive_file 50000000"})
    f = cgroup.read_cgroup(root, no_self)
    assert (f.version, f.memory_limit_bytes, f.memory_usage_bytes, f.cpu_quota_cores) == (2, 256 * MiB, 100 * MiB,
                                                                                           1.5)
    assert cgroup.working_set(root, no_self) == 100 * MiB - 4857600


def test_cgroup_v2_nested_parent_limit_wins(tmp_path: Path) -> None:
    root = _tree(tmp_path / "cg", {"cgroup.controllers": "cpu memory",
                                   "system.slice/memory.max": "1073741824", "system.slice/cpu.max": "max 100000",
                                   "system.slice/app.scope/memory.max": "max",
                                   "system.slice/app.scope/memory.current": "5000",
                                   "system.slice/app.scope/cpu.max": "400000 100000"})
    own = _tree(tmp_path, {"self-cgroup": "0::/system.slice/app.scope"}) / "self-cgroup"
    f = cgroup.read_cgroup(root, own)
    assert (f.memory_limit_bytes, f.memory_usage_bytes, f.cpu_quota_cores) == (GiB, 5000, 4.0)


def test_cgroup_v1_limits(tmp_path: Path) -> None:
    root = _tree(tmp_path / "cg", {"memory/memory.limit_in_bytes": "9223372036854771712",
                                   "memory/memory.usage_in_bytes": "1000", "cpu/cpu.cfs_quota_us": "-1",
                                   "cpu/cpu.cfs_period_us": "100000"})
    f = cgroup.read_cgroup(root, None)
    assert f == cgroup.CgroupFacts(version=1, memory_usage_bytes=1000)  # the huge value means no limit
    _tree(root, {"memory/memory.limit_in_bytes": "268435456", "cpu/cpu.cfs_quota_us": "100000",
                 "memory/memory.stat": "cache 0\nrss 1000\ntotal_inactive_file 400"})
    f = cgroup.read_cgroup(root, None)
    assert (f.version, f.memory_limit_bytes, f.cpu_quota_cores) == (1, 256 * MiB, 1.0)
    assert cgroup.working_set(root, None) == 600


def test_cgroup_v1_own_cgroup_from_proc_self(tmp_path: Path) -> None:
    root = _tree(tmp_path / "cg", {"memory/memory.limit_in_bytes": "9223372036854771712",
                                   "memory/docker/abc/memory.limit_in_bytes": "536870912",
                                   "memory/docker/abc/memory.usage_in_bytes": "42",
                                   "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000",
                                   "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000"})
    own = _tree(tmp_path, {"self": "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/"}) / "self"
    f = cgroup.read_cgroup(root, own)
    assert (f.memory_limit_bytes, f.memory_usage_bytes, f.cpu_quota_cores) == (512 * MiB, 42, 0.5)


def test_cgroup_captured_here_hybrid_v1() -> None:
    """This machine: v1 controllers plus an almost empty unified mount, no limits at the root; our own
    memory cgroup (named in /proc/self/cgroup) is not in the captured tree, so its root answers."""
    root = DATA / "captured/cgroup-v1-hybrid"
    f = cgroup.read_cgroup(root, DATA / "captured/proc-self-cgroup.txt")
    assert (f.version, f.memory_limit_bytes, f.cpu_quota_cores) == (1, None, None)
    assert f.memory_usage_bytes == int(read("captured/cgroup-v1-hybrid/memory/memory.usage_in_bytes"))
    assert cgroup.parse_self_cgroup(read("captured/proc-self-cgroup.txt"))["memory"].startswith("/")


def test_no_cgroup_filesystem(tmp_path: Path) -> None:
    assert cgroup.read_cgroup(tmp_path, None) == cgroup.CgroupFacts()
    assert cgroup.working_set(tmp_path, None) is None


# ---------------------------------------------------------------- facts helpers


def test_total_gpu_memory_never_counts_unknown_as_zero() -> None:
    plat = PlatformFacts(os="linux", arch="x86_64", python="3")
    known = GpuFacts(vendor="nvidia", index=0, memory_total_bytes=8 * GiB)
    unknown = GpuFacts(vendor="nvidia", index=1, unified_memory=True)
    npu = GpuFacts(vendor="ascend", index=0, memory_total_bytes=64 * GiB)
    assert HardwareFacts(platform=plat).total_gpu_memory() is None
    assert not HardwareFacts(platform=plat).has_gpu()
    facts = HardwareFacts(platform=plat, gpus=[known, unknown, npu])
    assert facts.total_gpu_memory() is None and facts.total_gpu_memory("nvidia") is None
    assert facts.total_gpu_memory("ascend") == 64 * GiB
    assert facts.has_gpu() and facts.has_gpu("ascend") and not facts.has_gpu("amd")
    assert HardwareFacts.model_validate_json(facts.model_dump_json()) == facts


def test_unreadable_memory_is_not_taken_for_unified() -> None:
    notes: list[str] = []
    (g,) = nvidia.parse_nvidia_smi_csv("0, NVIDIA H100 80GB HBM3, GPU-1, [GPU is lost], [GPU is lost], 535.1, 9.0, "
                                       "00000000:18:00.0", notes=notes)
    assert (g.memory_total_bytes, g.unified_memory, notes) == (None, False, [])
