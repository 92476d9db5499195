"""A real aima daemon process on a free port with its own AIMA_HOME, and the helpers around it.

Nothing of aima is mocked: tests talk HTTP to the daemon, run the real CLI, and the engines are real
processes (the in-package ``echo`` engine by default) — or containers on a real Docker daemon when a
``DockerKit`` (tests/support/docker.py) is passed. tests/conftest.py's ``daemon`` fixture and the
benchmarks in bench/ both use ``Daemon``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import psutil

PY = sys.executable
AIMA = str(Path(PY).with_name("aima"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def echo_cmd(*flags: str, model: str = "{model}") -> str:
    """A command line for the in-package echo engine (a real HTTP server process)."""
    extra = " ".join(shlex.quote(f) for f in flags)
    return f"{shlex.quote(PY)} -m aima.engines.echo --port {{port}} --model {model} {extra}".strip()


def wait_until(predicate: Any, timeout: float = 10, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something true (returned), or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


class ApiError(Exception):
    def __init__(self, status: int, body: Any):
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class Daemon:
    """A real daemon process; restartable and killable, like in production."""

    def __init__(self, home: Path, env: dict[str, str], defaults: dict[str, Any] | None = None,
                 kit: Any = None, *, base_env: Mapping[str, str] | None = None):
        """``env`` goes over ``base_env`` (default: this process's environment; the benchmarks pass theirs
        less every ``AIMA_*`` variable), then AIMA_HOME and AIMA_URL point at this daemon."""
        self.home = home
        # service.create fields every create() of this daemon gets (e.g. --runtime docker and an image)
        self.defaults = dict(defaults or {})
        self.kit = kit  # tests.support.docker.DockerKit when its services run in containers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**(os.environ if base_env is None else base_env), **env, "AIMA_HOME": str(home),
                    "AIMA_URL": self.url, "PYTHONUNBUFFERED": "1"}
        self.env.pop("AIMA_API_KEY", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.preexec: Any = None  # run in the daemon's process before it starts (e.g. joining a cgroup)
        self.http = httpx.Client(base_url=self.url, timeout=120, trust_env=False)

    # -- process
    def start(self, timeout: float = 30) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.home / "daemon-test.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([PY, "-m", "aima.surfaces.daemon", "--port", str(self.port)],
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=self.preexec)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}: {self.log_tail()}")
            try:
                if self.http.get("/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"daemon did not come up: {self.log_tail()}")

    def log_tail(self, n: int = 30) -> str:
        p = self.home / "daemon-test.log"
        return "\n".join(p.read_text(errors="replace").splitlines()[-n:]) if p.exists() else ""

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 40) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def restart(self) -> None:
        self.start()

    # -- API
    def op(self, op_name: str, /, **data: Any) -> Any:
        r = self.http.post(f"/api/v1/ops/{op_name}", json=data)
        body = r.json()
        if r.status_code >= 400:
            raise ApiError(r.status_code, body)
        return body

    def create(self, model: str, command: str | None = None, **kw: Any) -> dict[str, Any]:
        command = command or echo_cmd()
        if self.kit is not None and hasattr(self.kit, "adapt_command"):  # e.g. a Ray node's engine listens on {host}
            command = self.kit.adapt_command(command)
        return self.op("service.create", model=model, command=command, **{**self.defaults, **kw})

    def get(self, service: str) -> dict[str, Any]:
        return self.op("service.get", service=service)

    def cli(self, *args: str, timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([AIMA, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                              input=input)

    def cli_json(self, *args: str) -> Any:
        r = self.cli("-o", "json", *args)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def wait_for(self, predicate: Any, timeout: float = 20, interval: float = 0.05) -> Any:
        return wait_until(predicate, timeout, interval)

    # -- reality
    def engine_processes(self) -> list[psutil.Process]:
        """Live processes carrying this home's marks (group leaders only); for containers, the container's
        init process (its host pid is what aima records)."""
        out = []
        my_ns = _pid_ns(os.getpid())
        for p in psutil.process_iter():
            try:
                env = p.environ()
                if env.get("AIMA_HOME") == str(self.home) and env.get("AIMA_INSTANCE_ID") \
                        and os.getpgid(p.pid) == p.pid and p.status() != psutil.STATUS_ZOMBIE \
                        and _pid_ns(p.pid) == my_ns:
                    out.append(p)
            except (psutil.Error, OSError):
                continue
        if self.kit is not None:
            for pid in self.kit.engine_pids(self.home):
                with contextlib.suppress(psutil.Error):
                    out.append(psutil.Process(pid))
        return out

    def cleanup(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        if self.kit is not None:
            self.kit.remove_home(self.home)
        for p in self.engine_processes():
            with contextlib.suppress(OSError):
                os.killpg(p.pid, signal.SIGKILL)
        self.http.close()


def _pid_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None
