"""A memory cgroup of the test's own making: a daemon started in it sees a machine that much smaller (aima's
detection reads the cgroup's limit, as it does in a container), while everything else sees the whole host.

``memory_cgroup(limit)`` makes a child of this process's own memory cgroup (v1: ``memory.limit_in_bytes``;
v2: ``memory.max``), yields a function that moves the calling process into it (a ``preexec_fn``), and
removes it afterwards, moving back whatever is still inside.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from aima.hardware.cgroup import parse_self_cgroup

ROOT = Path("/sys/fs/cgroup")


def _own() -> tuple[Path, str]:
    own = parse_self_cgroup(Path("/proc/self/cgroup").read_text())
    if (ROOT / "memory").is_dir() and "memory" in own:  # v1
        return ROOT / "memory" / own["memory"].lstrip("/"), "memory.limit_in_bytes"
    return ROOT / own.get("", "/").lstrip("/"), "memory.max"


@contextlib.contextmanager
def memory_cgroup(limit: int) -> Iterator[Callable[[], None]]:
    base, limit_file = _own()
    cg = base / f"aima-test-{os.getpid()}-{time.monotonic_ns()}"
    try:
        cg.mkdir()
        (cg / limit_file).write_text(str(limit))
    except OSError as e:
        raise RuntimeError(f"cannot make a memory cgroup under {base} ({e}); these tests need root and a "
                           f"writable cgroup filesystem") from None
    procs = cg / "cgroup.procs"

    def join() -> None:
        procs.write_text(str(os.getpid()))

    try:
        yield join
    finally:
        for _ in range(50):
            left = [p for p in procs.read_text().split() if p]
            for pid in left:
                with contextlib.suppress(OSError):
                    (base / "cgroup.procs").write_text(pid)
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.1)
