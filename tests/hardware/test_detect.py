"""detect() on this real machine, and each probe running a (fake, recorded) vendor tool as a real process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

import aima.hardware as hw
from aima.hardware import amd, ascend, intel, nvidia
from aima.hardware._tools import run_tool
from aima.hardware.facts import CgroupFacts, CpuFacts, HardwareFacts, MemoryFacts
from tests.hardware.conftest import cat

MiB = 1 << 20
GPU_TOOLS = ("nvidia-smi", "amd-smi", "rocm-smi", "npu-smi", "xpu-smi", "sycl-ls")
FakeTools = Callable[[str, str], Path]
NVIDIA_DRIVER = Path("/proc/driver/nvidia/gpus")


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    hw.clear_cache()


@pytest.fixture
def no_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make nvidia-ml-py look absent so the nvidia-smi path is the one tested, even where it is installed."""
    def refuse() -> None:
        raise ImportError("pynvml hidden by the test")
    monkeypatch.setattr(nvidia, "_import_nvml", refuse)


# ---------------------------------------------------------------- this machine


def test_detect_on_this_machine(tmp_path: Path) -> None:
    facts = hw.detect(tmp_path / "home-not-made-yet")
    assert facts.platform.os in ("linux", "darwin", "windows") and facts.platform.python.count(".") == 2
    c = facts.cpu
    assert c.cores_logical == os.cpu_count() and c.cores_logical >= 1
    assert c.cores_physical is None or 1 <= c.cores_physical <= c.cores_logical
    if facts.platform.os == "linux":
        assert c.model and c.vendor and c.flags and c.isa_level
    m = facts.memory
    vm = psutil.virtual_memory()
    assert m.total_bytes == vm.total and 0 < (m.available_bytes or 0) <= m.total_bytes
    assert m.swap_total_bytes is not None and m.swap_total_bytes >= 0
    e = facts.effective
    assert e.cpu_cores is not None and 1 <= e.cpu_cores <= c.cores_logical
    assert e.memory_total_bytes is not None and e.memory_total_bytes <= m.total_bytes
    assert e.memory_available_bytes is not None and e.memory_available_bytes <= m.available_bytes + 64 * MiB
    (disk,) = facts.disks
    assert disk.path == str(tmp_path / "home-not-made-yet")
    assert disk.total_bytes and disk.free_bytes is not None and disk.free_bytes <= disk.total_bytes
    if not any(shutil.which(t) for t in GPU_TOOLS) and facts.platform.os == "linux":
        assert facts.gpus == [] and not facts.has_gpu() and facts.total_gpu_memory() is None
        assert "nvidia-smi not found on PATH" in facts.notes
        assert "no GPU found: CPU inference only" in facts.notes
    assert facts.detected_at and abs(facts.detected_at - time.time()) < 60
    assert HardwareFacts.model_validate_json(facts.model_dump_json()) == facts


def test_detect_is_cached_for_a_few_seconds(tmp_path: Path) -> None:
    a = hw.detect(tmp_path)
    b = hw.detect(tmp_path)
    assert a.detected_at == b.detected_at  # answered from the cache
    b.gpus.append(hw.GpuFacts(vendor="nvidia", index=9))
    assert hw.detect(tmp_path).gpus == a.gpus  # callers get copies; the cache cannot be changed through them
    assert hw.detect(tmp_path, refresh=True).detected_at > a.detected_at
    c = hw.detect(tmp_path, max_age_s=0)
    assert c.detected_at > a.detected_at


def test_effective_takes_the_smaller_of_host_and_cgroup() -> None:
    cpu = CpuFacts(cores_logical=16)
    mem = MemoryFacts(total_bytes=64 << 30, available_bytes=60 << 30)
    none = hw.effective_facts(cpu, mem, CgroupFacts())
    assert (none.cpu_cores, none.memory_total_bytes, none.memory_available_bytes) == (16, 64 << 30, 60 << 30)
    limited = hw.effective_facts(cpu, mem, CgroupFacts(version=2, memory_limit_bytes=256 * MiB,
                                                       memory_usage_bytes=200 * MiB, cpu_quota_cores=1.5),
                                 working_set=100 * MiB, affinity=8)
    assert (limited.cpu_cores, limited.memory_total_bytes, limited.memory_available_bytes) == (1, 256 * MiB,
                                                                                               156 * MiB)
    assert hw.effective_facts(cpu, mem, CgroupFacts(cpu_quota_cores=0.5), affinity=4).cpu_cores == 1
    assert hw.effective_facts(cpu, mem, CgroupFacts(), affinity=4).cpu_cores == 4
    unknown = hw.effective_facts(CpuFacts(), MemoryFacts(), CgroupFacts())
    assert (unknown.cpu_cores, unknown.memory_total_bytes, unknown.memory_available_bytes) == (None, None, None)


# ---------------------------------------------------------------- probes with fake tools


def test_missing_tools_are_notes_not_errors(fake_tools: FakeTools, no_nvml: None) -> None:
    assert nvidia.probe(root=Path("/nonexistent")) == ([], ["nvidia-smi not found on PATH"])
    assert amd.probe() == ([], ["amd-smi and rocm-smi not found on PATH"])
    assert ascend.probe() == ([], ["npu-smi not found on PATH"])
    assert intel.probe() == ([], ["xpu-smi and sycl-ls not found on PATH"])
    gpus, notes = hw.detect_gpus("linux")
    assert len(notes) == 4
    if not NVIDIA_DRIVER.exists():  # else the driver's own /proc listing rightly finds the GPUs
        assert gpus == []


def test_nvidia_smi_probe(fake_tools: FakeTools, no_nvml: None) -> None:
    fake_tools("nvidia-smi", cat("nvidia-smi-two-gpus.csv"))
    gpus, notes = nvidia.probe()
    assert [g.name for g in gpus] == ["NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 3090"] and notes == []


def test_nvidia_smi_old_driver_retries_without_compute_cap(fake_tools: FakeTools, no_nvml: None) -> None:
    fake_tools("nvidia-smi", 'case "$1" in *compute_cap*) /bin/cat "{err}"; exit 2;; esac\n'
                             'echo "0, Tesla V100-SXM2-16GB, GPU-v, 16160, 16000, 470.57.02, 00000000:00:1E.0"'
               .format(err=Path(__file__).parent / "data/nvidia-smi-old-driver-compute-cap.txt"))
    (g,), notes = nvidia.probe()
    assert (g.arch, g.compute_capability, g.memory_total_bytes) == ("Volta", None, 16160 * MiB) and notes == []


def test_nvidia_smi_failing_but_answering_still_counts(fake_tools: FakeTools, no_nvml: None) -> None:
    """GB10 with some drivers: exit code 255 and the rows on stdout."""
    fake_tools("nvidia-smi", f"/bin/cat {Path(__file__).parent / 'data/nvidia-smi-gb10.csv'}; exit 255")
    (g,), notes = nvidia.probe()
    assert g.unified_memory and g.memory_total_bytes is None and g.arch == "Blackwell"
    assert len(notes) == 1 and "exited with code 255" in notes[0]


def test_nvidia_smi_without_driver(fake_tools: FakeTools, no_nvml: None) -> None:
    fake_tools("nvidia-smi", "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
                             " Make sure that the latest NVIDIA driver is installed and running.\"; exit 9")
    gpus, notes = nvidia.probe(root=Path("/nonexistent"))
    assert gpus == [] and "exited with code 9" in notes[0] and "couldn't communicate" in notes[0]


def test_hung_tool_times_out(fake_tools: FakeTools) -> None:
    fake_tools("npu-smi", "exec /bin/sleep 30")
    t = time.monotonic()
    gpus, notes = ascend.probe(timeout=0.5)
    assert time.monotonic() - t < 5
    assert gpus == [] and notes == ["npu-smi did not answer within 0.5 s"]


def test_amd_smi_probe(fake_tools: FakeTools) -> None:
    fake_tools("amd-smi", f'case "$1" in static) {cat("amd-smi-static-mi300x.json")};; '
                          f'metric) {cat("amd-smi-metric-mem-usage-mi300x.json")};; '
                          f'list) {cat("amd-smi-list-mi300x.json")};; esac; exit 1')
    gpus, notes = amd.probe()
    assert [g.memory_free_bytes for g in gpus] == [196309 * MiB, 46064 * MiB] and notes == []
    assert gpus[0].uuid == "c2ff74a1-0000-1000-80e2-a4c1b07f3d9a"


def test_rocm_smi_probe(fake_tools: FakeTools) -> None:
    fake_tools("rocm-smi", cat("rocm-smi-mi300x.json"))
    gpus, notes = amd.probe()
    assert [g.arch for g in gpus] == ["CDNA3", "CDNA3"] and notes == []


def test_npu_smi_probe(fake_tools: FakeTools) -> None:
    fake_tools("npu-smi", cat("npu-smi-info-910b.txt"))
    gpus, notes = ascend.probe()
    assert len(gpus) == 8 and notes == []


def test_xpu_smi_probe(fake_tools: FakeTools) -> None:
    fake_tools("xpu-smi", f'if [ "$2" = "-d" ] && [ "$3" = "0" ]; then {cat("xpu-smi-discovery-d0-max1550.txt")}; '
                          f'elif [ "$2" = "-d" ]; then exit 1; else {cat("xpu-smi-discovery-max1550.txt")}; fi')
    gpus, notes = intel.probe()
    assert [g.memory_total_bytes for g in gpus] == [131072 * MiB, None] and notes == []


def test_sycl_ls_probe(fake_tools: FakeTools) -> None:
    fake_tools("sycl-ls", cat("sycl-ls-arc-a770.txt"))
    gpus, notes = intel.probe()
    assert [g.name for g in gpus] == ["Intel(R) Arc(TM) A770 Graphics", "Intel(R) UHD Graphics 770"] and notes == []


def test_detect_with_a_fake_gpu_on_path(fake_tools: FakeTools, no_nvml: None, tmp_path: Path) -> None:
    fake_tools("nvidia-smi", cat("nvidia-smi-h100.csv"))
    facts = hw.detect(tmp_path, refresh=True)
    if facts.platform.os != "linux":
        pytest.skip("the vendor tools are probed on Linux")
    assert facts.has_gpu("nvidia") and facts.total_gpu_memory() == 81559 * MiB
    assert facts.gpus[0].arch == "Hopper"
    assert "nvidia-smi not found on PATH" not in facts.notes and "no GPU found: CPU inference only" not in facts.notes


def test_a_broken_parser_does_not_hide_other_vendors(monkeypatch: pytest.MonkeyPatch, fake_tools: FakeTools,
                                                     no_nvml: None) -> None:
    def boom(*a: object, **k: object) -> None:
        raise ValueError("unexpected layout")
    monkeypatch.setattr(amd, "probe", boom)
    fake_tools("npu-smi", cat("npu-smi-info-910b.txt"))
    gpus, notes = hw.detect_gpus("linux")
    assert len([g for g in gpus if g.vendor == "ascend"]) == 8
    assert "amd detection failed: ValueError: unexpected layout" in notes


def test_run_tool_reports_missing_and_failing(fake_tools: FakeTools) -> None:
    r = run_tool(["no-such-tool"])
    assert (r.found, r.ok, r.note) == (False, False, "no-such-tool not found on PATH")
    fake_tools("flaky", "echo partial; echo 'it broke' >&2; exit 3")
    r = run_tool(["flaky", "arg"])
    assert (r.found, r.ok, r.stdout, r.returncode) == (True, False, "partial\n", 3)
    assert r.note == "flaky arg exited with code 3: it broke"


# ---------------------------------------------------------------- the operation

OP_SCRIPT = """
import asyncio, json, sys
from types import SimpleNamespace
from aima.ops import hardware
from aima.ops.registry import REGISTRY
op = REGISTRY["hardware.detect"]
ctx = SimpleNamespace(settings=SimpleNamespace(home=sys.argv[1]))
out = asyncio.run(op.call(ctx, {"refresh": "true"}))  # as a GET query string gives it
print(json.dumps({"method": op.method, "path": op.path, "mutating": op.mutating, "output": op.output.__name__,
                  "cli": [op.cli.group, op.cli.command], "default_refresh": hardware.DetectInput().refresh,
                  "facts": out.model_dump(mode="json")}))
"""


def test_hardware_detect_operation(tmp_path: Path) -> None:
    """In its own interpreter: importing the module registers the operation, and this test must not add it
    to the registry of the other tests' process (the CLI manifest test compares against that registry)."""
    proc = subprocess.run([sys.executable, "-c", OP_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          timeout=60, check=True)
    got = json.loads(proc.stdout)
    assert (got["method"], got["path"], got["mutating"], got["output"]) == ("GET", "/hardware", False,
                                                                            "HardwareFacts")
    assert got["cli"] == [None, "hardware"] and got["default_refresh"] is False
    facts = HardwareFacts.model_validate(got["facts"])
    assert facts.disks[0].path == str(tmp_path) and facts.cpu.cores_logical == os.cpu_count()
