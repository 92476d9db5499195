"""What the benchmarks share: the header, waiting for a quiet machine, result rows and tables (``control_plane.py``
keeps its own), stopping the processes a benchmark started, and ``BenchDaemon``: the tests' ``Daemon``
(tests/support/daemon.py) set up for a benchmark.

Importing this module puts the repository root on ``sys.path`` (``python bench/X.py`` puts only bench/ there),
so that the shared test helpers in tests/support/ import; the benchmarks use nothing else from tests/.
Nothing here asserts a timing: a benchmark prints, and always exits 0 when it could measure.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(1, str(REPO))

# Re-exported for the scripts (they import tests.support only through this module, which makes it importable).
from tests.support.daemon import AIMA, PY, Daemon, echo_cmd, free_port  # noqa: E402, F401

if not Path(AIMA).exists():
    sys.exit(f"bench: no `aima` command next to this interpreter ({AIMA}); run with the project's .venv/bin/python")

PORT_RANGE = "20000-29999"  # engines' ports: well away from the daemons' free ports


def say(msg: str) -> None:
    print(f"  .. {msg}", flush=True)


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def header(title: str) -> None:
    import aima

    print(title)
    print(f"  date:    {dt.datetime.now().astimezone().isoformat(timespec='seconds')}")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(f"  machine: {platform.node()} {platform.machine()}, {os.cpu_count()} logical cores ({usable} usable), "
          f"{psutil.virtual_memory().total / 2**30:.1f} GiB RAM, {platform.platform(terse=True)}")
    print(f"  python:  {platform.python_version()} ({PY}); aima {getattr(aima, '__version__', '?')}")


def no_aima_env() -> dict[str, str]:
    """This environment less every ``AIMA_*`` variable (the user's own daemon and home are never touched)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AIMA_")}


# ----------------------------------------------------------------------------- a quiet machine
class Quiet:
    """Other work on the machine (other people's tests, builds) skews every figure. Before each part the
    benchmark, itself idle then, samples how busy the CPUs are; above ``threshold`` (percent of the whole
    machine) it waits, at most ``max_wait`` seconds each time and ``budget`` seconds in all, and says so."""

    def __init__(self, threshold: float = 30.0, max_wait: float = 60.0, budget: float = 180.0):
        self.threshold = threshold
        self.max_wait = max_wait
        self.budget = budget
        self.waited = 0.0
        self.notes: list[str] = []

    @staticmethod
    def busy(interval: float = 1.0) -> float:
        """Percent of the whole machine's CPU time in use over ``interval`` seconds."""
        return psutil.cpu_percent(interval=interval)

    def report(self, when: str) -> float:
        b = self.busy()
        print(f"  load {when}: {loadavg()} (1/5/15 min); CPU busy {b:.0f}% over 1 s while this benchmark was idle",
              flush=True)
        return b

    def wait(self, before: str) -> None:
        b = self.busy()
        if b <= self.threshold:
            return
        limit = min(self.max_wait, self.budget - self.waited)
        if limit <= 0:
            note = f"before {before}: machine {b:.0f}% busy with other work; wait budget spent, measured anyway"
            print(f"  !! {note}", flush=True)
            self.notes.append(note)
            return
        print(f"  !! machine {b:.0f}% busy with other work (load {loadavg()}); waiting up to {limit:.0f} s for "
              f"it to drop below {self.threshold:.0f}% before {before}", flush=True)
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            b = self.busy(2.0)
            if b <= self.threshold:
                break
        took = time.monotonic() - t0
        self.waited += took
        state = "quiet" if b <= self.threshold else "still busy"
        note = f"before {before}: waited {took:.0f} s for other work; {state} ({b:.0f}% busy)"
        print(f"  !! {note}", flush=True)
        self.notes.append(note)


# ----------------------------------------------------------------------------- results
def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "s":
        if v < 0.001:
            return f"{v * 1e6:.0f} us"
        if v < 0.01:
            return f"{v * 1000:.2f} ms"
        return f"{v * 1000:.0f} ms" if v < 10 else f"{v:.1f} s"
    if unit == "ms":
        return f"{v:.2f} ms" if abs(v) < 10 else f"{v:.0f} ms"
    if unit == "rtf":
        return f"RTF {v:.3f}"
    if abs(v) >= 100:
        return f"{v:.0f} {unit}"
    return f"{v:.1f} {unit}"


@dataclass
class Row:
    """One figure beside its baseline. ``ratio`` is value / baseline; ``better`` says which way is good."""

    figure: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    better: str = "lower"  # or "higher"
    target: str = "-"
    verdict: bool | None = None  # None: no target
    paired: float | None = None  # the median of back-to-back pair ratios, shown instead of value / baseline

    def cells(self) -> list[str]:
        ratio = (f"x{self.value / self.baseline:.2f}" if self.value is not None and self.baseline else "n/a")
        if self.paired is not None:
            ratio = f"x{self.paired:.2f} p"
        base = f"{fmt(self.baseline, self.unit)} ({self.baseline_label})" if self.baseline is not None else "-"
        verdict = "-" if self.verdict is None else ("pass" if self.verdict else "MISS")
        return [self.figure, fmt(self.value, self.unit), base, ratio, f"{self.better} is better", self.target,
                verdict]


def grid(head: list[str], body: list[list[str]]) -> str:
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip(),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip() for cells in body]
    return "\n".join(out)


def table(rows: list[Row]) -> str:
    return grid(["figure", "aima", "baseline (same run)", "ratio", "", "target", "result"], [r.cells() for r in rows])


# ----------------------------------------------------------------------------- processes
def start_process(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A process in its own group (so stopping it stops its children), output to ``log``."""
    with open(log, "ab") as f:
        return subprocess.Popen(argv, env=env, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def stop_group(proc: subprocess.Popen[Any] | psutil.Process | int, grace: float = 10.0) -> None:
    """SIGTERM the process group led by ``proc``, SIGKILL after ``grace`` seconds, and reap it."""
    pid = proc if isinstance(proc, int) else proc.pid
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if isinstance(proc, subprocess.Popen):
            if proc.poll() is not None:
                break
        elif not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.05)
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    if isinstance(proc, subprocess.Popen):
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)


def processes_of_home(home: Path) -> list[psutil.Process]:
    """Live processes whose environment carries this AIMA_HOME: a daemon and the engines it started."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("AIMA_HOME") == str(home) and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


def kill_home(home: Path) -> int:
    """SIGKILL every process group of this home's processes; returns how many processes there were."""
    procs = processes_of_home(home)
    mine = os.getpgrp()
    for p in procs:
        with contextlib.suppress(OSError, psutil.Error):
            group = os.getpgid(p.pid)
            if group != mine:  # never our own group
                os.killpg(group, signal.SIGKILL)
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(procs, timeout=10)
    return len(procs)


def install_signal_unwind() -> None:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so ``finally`` blocks clean up."""
    def _raise(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise)


# ----------------------------------------------------------------------------- a daemon of our own
class BenchDaemon(Daemon):
    """The tests' ``Daemon`` with a fresh home ``root/label`` (created here), none of this environment's
    ``AIMA_*`` variables (the user's own daemon and home are never touched), engines on ``port_range``, and
    ``env`` on top. ``kit`` (tests.support.docker.DockerKit): its containers of this home are removed at cleanup.
    ``cleanup`` stops the daemon first (SIGTERM, SIGKILL after 15 s, saying how long it took) so it cannot
    restart anything, then every engine of its home, and waits for them."""

    def __init__(self, root: Path, label: str, env: dict[str, str] | None = None, *, port_range: str = PORT_RANGE,
                 kit: Any = None):
        home = root / label
        home.mkdir(parents=True)
        super().__init__(home, {"AIMA_PORT_RANGE": port_range, **(env or {})}, kit=kit, base_env=no_aima_env())
        self.engine_pids: set[int] = set()

    def start(self, timeout: float = 60) -> None:
        super().start(timeout)

    def rss(self, settle_s: float = 1.0) -> int:
        """The daemon's resident set size after letting it settle for ``settle_s`` seconds."""
        assert self.proc is not None
        time.sleep(settle_s)
        return psutil.Process(self.proc.pid).memory_info().rss

    def create_many(self, models: list[str], command: str, concurrency: int = 16) -> float:
        """Create services concurrently (bounded); returns the wall time it took."""
        async def go() -> None:
            sem = asyncio.Semaphore(concurrency)
            async with httpx.AsyncClient(base_url=self.url, timeout=120, trust_env=False) as c:
                async def one(model: str) -> None:
                    async with sem:
                        r = await c.post("/api/v1/ops/service.create", json={"model": model, "command": command})
                        if r.status_code >= 400:
                            raise RuntimeError(f"service.create {model} -> HTTP {r.status_code}: {r.text}")
                await asyncio.gather(*(one(m) for m in models))
        t0 = time.perf_counter()
        asyncio.run(go())
        return time.perf_counter() - t0

    def note_engines(self, service_view: dict[str, Any]) -> None:
        """Remember the engine pids of a service view: cleanup kills them even if their environment is unreadable."""
        for inst in service_view.get("instances", []):
            if inst.get("pid"):
                self.engine_pids.add(int(inst["pid"]))

    def engine_processes(self) -> list[psutil.Process]:
        found = {p.pid: p for p in super().engine_processes()}
        for pid in self.engine_pids - found.keys():
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(pid)
                if p.environ().get("AIMA_HOME") == str(self.home):
                    found[pid] = p
        return list(found.values())

    def stop_all(self) -> None:
        """``service.stop`` every service that is not stopped (the daemon stops its engines itself)."""
        for s in self.op("service.list")["services"]:
            if s["state"] not in ("stopped", "created"):
                self.op("service.stop", service=s["id"])

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            t0 = time.perf_counter()
            try:
                self.terminate(15)
                say(f"daemon stopped {time.perf_counter() - t0:.2f} s after SIGTERM")
            except subprocess.TimeoutExpired:
                say("daemon still up 15 s after SIGTERM; killed")
        procs = self.engine_processes()
        super().cleanup()  # SIGKILLs a daemon still up, removes the kit's containers, kills each engine's group
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(procs, timeout=10)
