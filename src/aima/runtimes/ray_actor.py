"""What runs on a Ray node for one instance: a detached, named actor that owns its engine process.

The ray runtime (``ray.py``) makes one ``EngineActor`` per instance, named by the instance id in aima's
namespace. On its node the actor:

- makes the model available (``prepare_model``): the daemon's path is used where this node shares the
  daemon's AIMA_HOME; otherwise aima's own model store pulls the model's recorded source into this
  node's AIMA_HOME (``AIMA_HOME`` of the raylet's environment, else ``~/.aima``), in a thread whose
  progress ``model_status`` answers;
- finds and bind-tests ports on this node's address (``allocate_port``, ``check_port``);
- starts the engine as its own process group with the marks of a native start (``AIMA_SERVICE_ID``,
  ``AIMA_INSTANCE_ID``, ``AIMA_HOME`` of the daemon), its output in a log file on this node that the
  daemon reads on (``read_log``); the engine is killed if the actor's process dies (``PR_SET_PDEATHSIG``),
  so a lost actor never leaves an engine behind;
- answers pid, port, alive and exit code (``poll``), and stops the whole group, returning once the port
  is free on this node (``stop``).

It is a plain class: ``ray.py`` wraps it with ``ray.remote`` when it first connects, so importing this
module never imports Ray. Every method returns quickly (the pull runs in its own thread), except ``stop``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1


def node_home() -> Path:
    """This node's AIMA_HOME (the raylet's environment), else ``~/.aima``."""
    return Path(os.environ.get("AIMA_HOME") or Path.home() / ".aima").expanduser()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class EngineActor:
    """One instance's engine on this node (see the module's docstring)."""

    def __init__(self, identity: dict[str, Any]):
        self.identity = dict(identity)  # service_id, instance_id, home (the daemon's), service_name
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None
        self.start_time: float | None = None
        self.cmdline: list[str] = []
        self.port: int | None = None
        self.exit_code: int | None = None
        self.log_file = self._log_file()
        self.log_sent = 0  # what the daemon has read of the log file
        self.pull: dict[str, Any] = {"state": "none"}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ where
    def _ip(self) -> str:
        import ray

        return ray.util.get_node_ip_address()

    def where(self) -> dict[str, Any]:
        import ray

        return {"node": ray.get_runtime_context().get_node_id(), "ip": self._ip(), "actor_pid": os.getpid(),
                "home": str(node_home())}

    def _log_file(self) -> Path:
        iid = self.identity.get("instance_id") or "instance"
        for base in (node_home() / "logs" / "ray", Path("/tmp") / f"aima-ray-{os.getuid()}"):
            try:
                base.mkdir(parents=True, exist_ok=True)
                return base / f"{iid}.log"
            except OSError:
                continue
        return Path(f"/tmp/aima-ray-{iid}.log")

    # ------------------------------------------------------------------ ports (on this node)
    def allocate_port(self, lo: int, hi: int, reserved: list[int], prefer: int | None) -> int:
        from aima.runtimes.local import local_ports

        self.port = local_ports(lo, hi).allocate(self._ip(), set(reserved), prefer)
        return self.port

    def check_port(self, port: int) -> str | None:
        from aima.runtimes.local import port_is_free, process_on_port

        if port_is_free(port, self._ip()):
            return None
        return process_on_port(port) or "another process"

    # ------------------------------------------------------------------ the model
    def prepare_model(self, model: dict[str, Any]) -> dict[str, Any]:
        """Begin making ``model`` available here (its name, daemon-side folder and path, source, files);
        ``model_status`` says how it goes."""
        with self._lock:
            if self.pull.get("state") in ("pulling", "done"):
                return dict(self.pull)
            here = node_home()
            folder = str(model.get("folder") or "")
            daemon_home = str(model.get("home") or "")
            if folder and daemon_home and os.path.realpath(daemon_home) == os.path.realpath(here) \
                    and os.path.exists(str(model.get("path") or folder)):
                self.pull = {"state": "done", "folder": folder, "pulled": False, "why": "this node shares AIMA_HOME"}
                return dict(self.pull)
            self.pull = {"state": "pulling", "done": 0, "total": None, "name": model.get("name")}
        threading.Thread(target=self._pull, args=(model,), daemon=True, name="aima-model-pull").start()
        return dict(self.pull)

    def _pull(self, model: dict[str, Any]) -> None:
        try:
            from aima.modelstore.pull import pull
            from aima.modelstore.store import ModelStore
            from aima.store.db import Database

            home = node_home()
            home.mkdir(parents=True, exist_ok=True)
            store = ModelStore(home, Database(home / "aima.db"))
            primary = model.get("primary")
            check = (model.get("files") or {}).get(primary) if primary else None

            def progress(done: int, total: int | None) -> None:
                self.pull.update(done=done, total=total)

            from aima.modelstore.sources import Options

            opts = {k: v for k, v in (model.get("options") or {}).items() if v}
            res = pull(store, str(model["source"]), name=str(model["name"]), type=model.get("type"),
                       sha256=(check or {}).get("sha256"), progress=progress, options=Options(**opts))
            self.pull = {"state": "done", "folder": res.record.folder, "pulled": not res.reused,
                         "done": res.record.size_bytes, "total": res.record.size_bytes,
                         "why": f"{'reused' if res.reused else 'pulled'} into {res.record.folder}"}
        except Exception as e:  # noqa: BLE001 - reported to the daemon as the reason
            msg = getattr(e, "message", None) or f"{type(e).__name__}: {e}"
            self.pull = {"state": "failed", "error": f"pulling model {model.get('name')} on node {self._ip()} "
                                                      f"failed: {msg}"}

    def model_status(self) -> dict[str, Any]:
        return dict(self.pull)

    # ------------------------------------------------------------------ the engine
    def start(self, argv: list[str], env: dict[str, str], cwd: str | None, header: str) -> dict[str, Any]:
        if self.proc is not None:
            return self.status()
        full = {**os.environ, **env}
        with open(self.log_file, "ab", buffering=0) as log:
            log.write(header.encode())
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        env=full, cwd=cwd or None, start_new_session=True, close_fds=True,
                                        preexec_fn=_die_with_parent)
            except (OSError, ValueError) as e:
                log.write(f"--- aima: could not start {argv[0]!r}: {e}\n".encode())
                return {"error": f"could not start {argv[0]!r} on node {self._ip()}: {e}"}
        self.proc, self.pid, self.cmdline = proc, proc.pid, list(argv)
        try:
            import psutil

            self.start_time = psutil.Process(proc.pid).create_time()
        except Exception:  # noqa: BLE001
            self.start_time = None
        return self.status()

    def status(self) -> dict[str, Any]:
        if self.proc is not None and self.exit_code is None:
            self.exit_code = self.proc.poll()
        return {"pid": self.pid, "start_time": self.start_time, "port": self.port, "cmdline": self.cmdline,
                "alive": self.proc is not None and self.exit_code is None, "exit_code": self.exit_code,
                "started": self.proc is not None, **self.identity, **self.where()}

    def poll(self) -> dict[str, Any]:
        if self.proc is not None and self.exit_code is None:
            self.exit_code = self.proc.poll()
        return {"alive": self.proc is not None and self.exit_code is None, "exit_code": self.exit_code,
                "started": self.proc is not None}

    def read_log(self, limit: int = 1 << 20) -> bytes:
        """What the engine wrote since the last read (at most ``limit`` bytes)."""
        try:
            with open(self.log_file, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < self.log_sent:
                    self.log_sent = 0
                f.seek(self.log_sent)
                data = f.read(limit)
        except FileNotFoundError:
            return b""
        self.log_sent += len(data)
        return data

    def stop(self, grace_s: float) -> int | None:
        """SIGTERM to the group, SIGKILL after ``grace_s``, reap; back once the port is free here."""
        from aima.runtimes.local import wait_port_free

        proc = self.proc
        if proc is None:
            return None
        pgid = proc.pid
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)
            end = time.monotonic() + grace_s
            while proc.poll() is None and time.monotonic() < end:
                time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        self.exit_code = proc.poll()
        _wait_group_gone(pgid, 5.0)
        wait_port_free(self.port, self._ip())
        return self.exit_code

    def ping(self) -> bool:
        return True


def _wait_group_gone(pgid: int, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        import psutil

        left = []
        for p in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                    left.append(p)
            except (OSError, psutil.Error):
                continue
        if not left:
            return
        time.sleep(0.05)


def detect_hardware() -> dict[str, Any]:
    """aima's own hardware detection, on the node this task runs on (``cluster status``)."""
    import ray

    from aima import hardware

    facts = hardware.detect(node_home())
    return {"node": ray.get_runtime_context().get_node_id(), "facts": facts.model_dump(mode="json")}
