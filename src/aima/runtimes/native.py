"""The native runtime: engines as detached processes on this machine, each in its own session and process
group.

Every process carries ``AIMA_SERVICE_ID``, ``AIMA_INSTANCE_ID`` and ``AIMA_HOME`` in its environment
and is identified by pid + start time + command line, so a recycled pid is never mistaken for it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import subprocess
import time
from typing import Any, ClassVar

import psutil

from aima.config import Settings
from aima.errors import Conflict, EngineError
from aima.runtimes.base import (
    Definition,
    Handle,
    LaunchSpec,
    Observation,
    Options,
    Owned,
    Placement,
    ServicePlan,
    Verdict,
    describe_exit,
)
from aima.runtimes.local import local_ports, port_is_free, process_on_port, wait_port_free

_START_TIME_TOLERANCE = 0.05
logger = logging.getLogger("aima.runtimes.native")
HERE = "127.0.0.1"


class NativeOptions(Options):
    """A process takes no options beyond its command and environment."""


class NativeRuntime:
    name = "native"
    describe = "natively"
    applies_to = "processes"
    Options: ClassVar[type[Options]] = NativeOptions
    blocking = False  # psutil and signals: microseconds

    def __init__(self, settings: Settings) -> None:
        self.home = settings.home
        self.ports = local_ports(*settings.ports)
        # Children we spawned ourselves: kept so they can be reaped and their exit codes read.
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._exits: dict[tuple[int, float | None], int] = {}  # exit codes of reaped children

    def available(self) -> bool:
        return True

    # -- choice ----------------------------------------------------------------------------------
    def claims(self, plan: ServicePlan) -> str | None:
        return None

    def consider(self, plan: ServicePlan) -> Verdict:
        if plan.custom:
            if plan.given.get("images"):
                return Verdict(False, "--image was given")
            return Verdict(True, "a custom command without --image runs as a process")
        from aima.catalog.resolver import module_present

        missing = [m for m in plan.python_modules if not module_present(m)]
        if missing:
            return Verdict(False, f"{', '.join(missing)} cannot be imported here", fallback=True)
        return Verdict(True, "it is installed here")

    def define(self, plan: ServicePlan) -> Definition:
        return Definition()

    def adapt_command(self, command: str) -> str:
        return command

    # -- launch ----------------------------------------------------------------------------------
    def place(self, spec: LaunchSpec) -> Placement:
        return Placement(host=HERE)

    def allocate_port(self, where: Placement, lo: int, hi: int, reserved: set[int], prefer: int | None) -> int:
        return self.ports.allocate(where.host, reserved, prefer)

    def check_port(self, where: Placement, port: int) -> str | None:
        if port_is_free(port, where.host):
            return None
        return process_on_port(port) or "another process"

    def engine_host(self, where: Placement, options: dict[str, Any]) -> str:
        return where.host

    def release(self, where: Placement) -> None:
        pass

    # -- start ---------------------------------------------------------------------------------
    def start(self, spec: LaunchSpec) -> Handle:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **spec.env,
               "AIMA_SERVICE_ID": spec.service_id, "AIMA_INSTANCE_ID": spec.instance_id}
        if self.home is not None:
            env["AIMA_HOME"] = str(self.home)
        log = open(spec.log_path, "ab", buffering=0)  # noqa: SIM115 - handed to the child
        try:
            header = f"--- aima: starting {spec.instance_id} at {time.strftime('%Y-%m-%d %H:%M:%S')}: "
            _note(log, header + " ".join(spec.argv))
            proc = subprocess.Popen(
                spec.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, cwd=str(spec.cwd) if spec.cwd else None, start_new_session=True, close_fds=True,
            )
        except (OSError, ValueError) as e:
            _note(log, f"--- aima: could not start {spec.argv[0]!r}: {e}")
            if isinstance(e, (FileNotFoundError, PermissionError)) or getattr(e, "errno", None) == errno.ENOEXEC:
                # the service's command names no program this machine can run: its definition, not the engine
                raise Conflict(f"could not start {spec.argv[0]!r}: {e.strerror or e}; fix the service's command "
                               f"(or install the program) and start it again", field="command") from None
            raise EngineError(f"could not start {spec.argv[0]!r}: {e}") from None
        finally:
            log.close()
        self._children[proc.pid] = proc
        try:
            p = psutil.Process(proc.pid)
            start_time = p.create_time()
        except psutil.Error:
            start_time = None
        return Handle(runtime=self.name, pid=proc.pid, start_time=start_time, cmdline=list(spec.argv),
                      data={"pgid": proc.pid})

    # -- observe -------------------------------------------------------------------------------
    def _process(self, handle: Handle) -> psutil.Process | None:
        """The live process this handle names, or None: pid alone is never trusted."""
        if not handle.pid:
            return None
        try:
            p = psutil.Process(handle.pid)
            if handle.start_time is not None and abs(p.create_time() - handle.start_time) > _START_TIME_TOLERANCE:
                return None
            if p.status() == psutil.STATUS_ZOMBIE:
                return None
            return p
        except psutil.Error:
            return None

    def observe_many(self, handles: list[Handle]) -> list[Observation]:
        return [self._observe(h) for h in handles]

    def _observe(self, handle: Handle) -> Observation:
        key = (handle.pid or -1, handle.start_time)
        if key in self._exits:
            code = self._exits[key]
            return Observation(alive=False, exit_code=code, detail=describe_exit(code))
        child = self._children.get(handle.pid or -1)
        if child is not None:
            code = child.poll()
            if code is None and _dying(child.pid):
                # Killed and still tearing down: not reapable yet for a few moments, but not alive.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = child.wait(timeout=2.0)
            if code is not None:
                self._children.pop(child.pid, None)
                self._exits[key] = code
                return Observation(alive=False, exit_code=code, detail=describe_exit(code))
            return Observation(alive=True)
        if self._process(handle) is not None:
            return Observation(alive=True)
        return Observation(alive=False, exit_code=None, detail="process is gone (exit status unknown)")

    # -- stop ----------------------------------------------------------------------------------
    def stop(self, handle: Handle, grace_s: float) -> int | None:
        pgid = int(handle.data.get("pgid") or handle.pid or 0)
        proc = self._process(handle)
        child = self._children.get(handle.pid or -1)
        if proc is None and child is None:
            return self._exits.get((handle.pid or -1, handle.start_time))
        if proc is not None and pgid:
            _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if child is not None and child.poll() is not None:
                break
            if child is None and self._process(handle) is None:
                break
            time.sleep(0.02)
        # Whatever of the group is left (the leader or its children) is killed.
        if pgid:
            _signal_group(pgid, signal.SIGKILL)
        code: int | None = None
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = child.wait(timeout=5)
            self._children.pop(child.pid, None)
        elif (handle.pid or -1, handle.start_time) in self._exits:
            code = self._exits[(handle.pid or -1, handle.start_time)]
        else:
            end = time.monotonic() + 5
            while self._process(handle) is not None and time.monotonic() < end:
                time.sleep(0.02)
        _wait_group_gone(pgid, 5.0)
        wait_port_free(handle.port, handle.host)
        return code

    # -- discovery -----------------------------------------------------------------------------
    def owned(self) -> list[Owned]:
        found: list[Owned] = []
        me = os.getpid()
        my_ns = _pid_namespace(me)
        for p in psutil.process_iter(["pid", "create_time", "cmdline"]):
            if p.pid == me:
                continue
            if my_ns is not None and _pid_namespace(p.pid) not in (my_ns, None):
                continue  # inside a container: the container runtime stands for it
            try:
                env = p.environ()
            except psutil.Error:
                continue
            iid = env.get("AIMA_INSTANCE_ID")
            if not iid or env.get("AIMA_HOME") != str(self.home):
                continue
            try:
                if os.getpgid(p.pid) != p.pid:
                    continue  # a child of an engine: its group leader stands for it
            except OSError:
                continue
            found.append(Owned(env.get("AIMA_SERVICE_ID", ""), iid,
                               Handle(self.name, p.pid, p.info["create_time"], p.info["cmdline"] or [],
                                      {"pgid": p.pid})))
        return found

    def port_holder(self, port: int) -> str | None:
        return process_on_port(port)


def _note(log: Any, line: str) -> None:
    """A line of aima's own in an engine's log; a full disk loses the line, never the start."""
    try:
        log.write((line + "\n").encode())
    except OSError as e:
        logger.warning("could not write to %s: %s", getattr(log, "name", "the log"), e.strerror or e)


def _pid_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group_gone(pgid: int, timeout: float) -> None:
    if not pgid:
        return
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        # Zombies of a reaped group may linger briefly; they hold no port.
        alive = [p for p in psutil.process_iter(["pid"]) if _pgid(p.pid) == pgid and _not_zombie(p)]
        if not alive:
            return
        time.sleep(0.05)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _not_zombie(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _dying(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


