"""The docker runtime: engines in containers, through the official ``docker`` SDK.

The daemon is the one ``DOCKER_HOST`` names (else the local socket): dockerd, or Podman's
Docker-compatible socket. The tests run against dockerd, and the main scenarios (start/ready/stop with
labels and limits, ``rm -f`` behind aima's back, a foreign container on the port, re-adoption after the
aima daemon is killed, an engine that exits at once) against Podman 4.3 too (tests/runtimes/test_podman.py).
Podman 4.3 cannot change a running container's restart policy (no ``/containers/{id}/update``), and its
log stream lags by up to a quarter second. Containers are found by their labels alone (``container.py``):
the service id, instance id, model, engine and this AIMA_HOME. Nothing here restarts a container — there is no Docker
restart policy — so the reconciler sees every exit and applies the service's own policy.

Reality, as the reconciler reads it through ``observe``:

- ``created``/``running`` → alive; ``restarting``, ``exited`` and ``dead`` → gone, with the exit code
  (128+N reads as killed by signal N, like a native process); a container created but never started
  for a minute counts as gone;
- a container removed behind aima's back is gone (its id no longer answers);
- a gone container is removed once its exit code and last log lines are read, so none piles up;
- a container still running after the aima daemon restarted is adopted by its handle and labels, and
  its log is followed again.

Logs come from the container: a thread per instance follows ``docker logs`` into the instance's log
file, where the controller's tail and fatal-pattern scan read them as for a native engine.

Every call to the daemon has a timeout: an unreachable daemon is a clear ``Unavailable`` naming
``DOCKER_HOST``, never a hang. ``observe`` (called from the reconciler's loop) reads one container
list per quarter second, so a ``service list`` over fifty containers costs one API call, not fifty.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from aima.catalog.schema import Image
from aima.config import Settings
from aima.errors import AimaError, Conflict, EngineError, InvalidInput, PortInUse, Unavailable
from aima.runtimes.base import (
    Definition,
    Handle,
    LaunchSpec,
    Observation,
    Owned,
    Placement,
    ServicePlan,
    Verdict,
    describe_exit,
)
from aima.runtimes.base import Options as BaseOptions
from aima.runtimes.container import (
    LABEL_HOME,
    LABEL_INSTANCE,
    LABEL_SERVICE,
    LABEL_SERVICE_NAME,
    ContainerOptions,
    DockerOptions,
    container_command,
    container_config,
    exit_code,
    image_ref,
    local_refs,
    parse_image,
    parse_volume,
    pull_refs,
    runs_here,
    state_alive,
    this_platform,
)
from aima.runtimes.local import local_ports, port_is_free, wait_port_free

log = logging.getLogger("aima.runtimes.docker")

DEFAULT_SOCKET = "/var/run/docker.sock"
SNAPSHOT_TTL_S = 0.25  # how old a container list observe() may use
CREATED_GRACE_S = 60.0  # a container created but not started for this long counts as gone
RETRY_UNREACHABLE_S = 3.0  # after a failed call, answer "unreachable" without asking again for this long


def where() -> str:
    """Where the daemon is looked for, in words (for error messages)."""
    host = os.environ.get("DOCKER_HOST")
    return f"DOCKER_HOST={host}" if host else f"unix://{DEFAULT_SOCKET} (DOCKER_HOST is not set)"


def unreachable_message(reason: str) -> str:
    reason = " ".join(str(reason).split())[:200]
    return (f"Docker is not reachable at {where()}: {reason}; start the Docker daemon (scripts/dockerd-up.sh "
            f"does on Debian) or point DOCKER_HOST at one, or use --runtime native")


def _short(e: BaseException) -> str:
    text = getattr(e, "explanation", None) or str(e)
    return " ".join(str(text).split())[:240]


class _Follower:
    """Copies a container's log stream into the instance's log file until the container stops."""

    def __init__(self, api: Any, cid: str, path: Path, since: float | None):
        self.cid = cid
        self.thread = threading.Thread(target=self._run, args=(api, path, since), daemon=True,
                                       name=f"docker-logs-{cid[:12]}")
        self.thread.start()

    def _run(self, api: Any, path: Path, since: float | None) -> None:
        try:
            kwargs: dict[str, Any] = {"stream": True, "follow": True, "stdout": True, "stderr": True}
            if since:
                kwargs["since"] = since
            stream = api.logs(self.cid, **kwargs)
            with open(path, "ab", buffering=0) as f:  # O_APPEND: the rotation's truncate is followed
                for chunk in stream:
                    f.write(chunk)
        except Exception as e:  # noqa: BLE001 - the container went away or the daemon did: the log ends
            log.debug("log follower of %s ended: %s", self.cid[:12], e)

    def drain(self, timeout: float) -> None:
        self.thread.join(timeout)


class DockerRuntime:
    name = "docker"
    describe = "in a container"
    applies_to = "containers"
    Options: ClassVar[type[BaseOptions]] = DockerOptions
    blocking = True  # every call asks the Docker daemon

    def __init__(self, settings: Settings, *, ping_timeout_s: float = 2.0, call_timeout_s: float = 3.0,
                 long_timeout_s: float = 120.0) -> None:
        self.home: Path | None = settings.home
        self.ports = local_ports(*settings.ports)
        self.ping_timeout_s = ping_timeout_s
        self.call_timeout_s = call_timeout_s
        self.long_timeout_s = long_timeout_s
        self._lock = threading.RLock()
        self._fast: Any = None  # short timeouts: list, inspect, ping (called from the reconciler's loop)
        self._slow: Any = None  # long timeouts: stop, wait, pull, logs
        self._down: tuple[float, str] | None = None  # (when, why) the last connection failed
        self._pinged = 0.0
        self._snap: dict[str, dict[str, Any]] = {}
        self._snap_at = 0.0
        self._followers: dict[str, _Follower] = {}
        self._exits: dict[str, Observation] = {}
        self._cdi: bool | None = None
        self._warned = False  # "unreachable: state unknown" is logged once per outage

    # ------------------------------------------------------------------ connection
    def _connect(self) -> tuple[Any, Any]:
        """The two API clients, connecting on first use; ``Unavailable`` (naming DOCKER_HOST) if the
        daemon does not answer within the ping timeout."""
        with self._lock:
            # A daemon that just failed is not asked again at once: no call from the reconciler's loop
            # waits on it twice in a row.
            if self._down is not None and time.monotonic() - self._down[0] < RETRY_UNREACHABLE_S:
                raise Unavailable(unreachable_message(self._down[1]))
            if self._fast is not None:
                return self._fast, self._slow
            if not os.environ.get("DOCKER_HOST") and not os.path.exists(DEFAULT_SOCKET):
                self._down = (time.monotonic(), f"{DEFAULT_SOCKET} does not exist")
                raise Unavailable(unreachable_message(self._down[1]))
            try:
                import docker
                from docker.utils import kwargs_from_env

                kw = kwargs_from_env()
                fast = docker.APIClient(version="auto", timeout=self.ping_timeout_s, **kw)
                fast.timeout = self.call_timeout_s
                slow = docker.APIClient(version=fast.api_version, timeout=self.long_timeout_s, **kw)
            except Exception as e:  # noqa: BLE001 - any failure to connect is "unreachable"
                self._down = (time.monotonic(), _short(e))
                raise Unavailable(unreachable_message(self._down[1])) from None
            self._fast, self._slow, self._down = fast, slow, None
            self._pinged = time.monotonic()
            return fast, slow

    def available(self) -> bool:
        """The daemon answers (a ping at most every 2 s; never longer than the ping timeout)."""
        try:
            fast, _ = self._connect()
        except Unavailable:
            return False
        if time.monotonic() - self._pinged < 2.0:
            return True
        try:
            fast.ping()
        except Exception as e:  # noqa: BLE001
            with self._lock:
                self._down = (time.monotonic(), _short(e))
            return False
        self._pinged = time.monotonic()
        return True

    def check(self) -> None:
        """Raise ``Unavailable`` (one line naming DOCKER_HOST) unless the daemon answers."""
        self._connect()
        if not self.available():
            raise Unavailable(unreachable_message(self._down[1] if self._down else "no answer"))

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AimaError:
            raise
        except Exception as e:
            from docker.errors import APIError

            if isinstance(e, APIError):
                raise
            with self._lock:
                self._down = (time.monotonic(), _short(e))
            raise Unavailable(unreachable_message(_short(e))) from None

    # ------------------------------------------------------------------ choice (service create)
    def claims(self, plan: ServicePlan) -> str | None:
        return "--image was given: it runs in a container" if plan.given.get("images") else None

    def _images(self, plan: ServicePlan) -> list[Image]:
        given = plan.given.get("images") or []
        return [parse_image(t) for t in given] if given else list(plan.images)

    def consider(self, plan: ServicePlan) -> Verdict:
        images = self._images(plan)
        if not images:
            return Verdict(False, f"{plan.engine} lists no images" if not plan.custom else "no --image was given")
        try:
            self.check()
        except Unavailable as e:
            return Verdict(False, e.message)
        try:
            ref = self.present(images)
        except Unavailable:
            ref = None
        where = f"image {ref} is on this machine" if ref else f"image {image_ref(images[0])} can be pulled"
        return Verdict(True, f"Docker answers and {where}")

    def define(self, plan: ServicePlan) -> Definition:
        """Fix the container settings: images, mounts (the model's folder read-only), network, limits, GPUs."""
        images = self._images(plan)
        if not images:  # the request lacks one (its schema says so) or the catalog's engine lists none
            if plan.custom:
                raise InvalidInput("--runtime docker needs an image to run: give --image NAME:TAG", field="images")
            raise Conflict(f"--runtime docker needs an image to run: engine {plan.engine} lists no images in the "
                           f"catalog; give --image NAME:TAG", field="images")
        self.check()
        given = plan.given
        mounts = [parse_volume(v) for v in given.get("volumes") or []]
        command = None
        if not plan.custom and plan.model_path:
            mp = Path(plan.model_path)
            folder = mp if mp.is_dir() else mp.parent
            mounts.insert(0, {"source": str(folder), "target": str(folder), "read_only": True})
            command = self.adapt_command(plan.command)
        er = plan.engine_runtime
        network = given.get("network") or (er.network if er is not None else None)
        if network is None:
            network = "bridge" if "{host}" in (command or plan.command) else "host"
        from aima.domain.units import parse_bytes

        shm = given.get("shm_size")
        options = {
            "images": [i.model_dump() for i in images], "network": network, "mounts": mounts,
            "cpus": given.get("cpus"),
            "memory_limit": parse_bytes(given["memory_limit"]) if given.get("memory_limit") else None,
            "shm_size": parse_bytes(shm) if shm else (int(er.shm_size) if er is not None and er.shm_size else None),
            "gpu": plan.gpu,
        }
        return Definition(options=options, command=command)

    def adapt_command(self, command: str) -> str:
        return container_command(command)

    # ------------------------------------------------------------------ placement and ports (this machine)
    def place(self, spec: LaunchSpec) -> Placement:
        return Placement(host="127.0.0.1")

    def allocate_port(self, where: Placement, lo: int, hi: int, reserved: set[int], prefer: int | None) -> int:
        return self.ports.allocate(where.host, reserved, prefer)

    def check_port(self, where: Placement, port: int) -> str | None:
        if port_is_free(port, where.host):
            return None
        return self.port_holder(port) or "another process"

    def release(self, where: Placement) -> None:
        pass

    def engine_host(self, where: Placement, options: dict[str, Any]) -> str:
        # Inside its own network namespace the engine listens on every interface; Docker publishes
        # that port on ``where.host`` only. On the host's network it listens where a native engine would.
        return where.host if options.get("network") == "host" else "0.0.0.0"

    # ------------------------------------------------------------------ images
    def present(self, images: list[Image]) -> str | None:
        """The first candidate that is on this machine already (a local reference), or None."""
        fast, _ = self._connect()
        from docker.errors import NotFound

        for img in images:
            if not runs_here(img):
                continue
            for ref in local_refs(img):
                try:
                    self._call(fast.inspect_image, ref)
                    return ref
                except NotFound:
                    continue
        return None

    def _choose_image(self, spec: LaunchSpec, images: list[Image]) -> str:
        """First candidate present locally; else the first one that pulls; else ``EngineError`` listing
        every candidate and why it was not used. Nothing outside the list is ever run."""
        emit = spec.on_event or (lambda kind, message, data: None)
        if not images:
            raise EngineError(f"service {spec.service_name or spec.service_id} has no image to run: give "
                              f"--image (or list images in its engine's catalog entry)")
        tried: list[str] = []
        here = this_platform()
        usable = []
        for img in images:
            if not runs_here(img, here):
                tried.append(f"{image_ref(img)} (built for {', '.join(img.platforms)}, not {here})")
            else:
                usable.append(img)
        ref = self.present(usable)
        if ref is not None:
            skipped = [image_ref(i) for i in usable[:next(k for k, i in enumerate(usable) if ref in local_refs(i))]]
            why = f"{ref} is on this machine" + (
                f" ({', '.join(skipped)} {'is' if len(skipped) == 1 else 'are'} not)" if skipped else "")
            emit("image.chosen", f"image {ref} for {spec.service_name}: {why}", {"image": ref, "reason": why})
            return ref
        for img in usable:
            for pull_ref in pull_refs(img):
                try:
                    self._pull(pull_ref, spec)
                except (AimaError, Exception) as e:  # noqa: BLE001 - every candidate is tried, each reason kept
                    reason = e.message if isinstance(e, AimaError) else _short(e)
                    tried.append(f"{pull_ref} (not on this machine; pull failed: {reason})")
                    emit("image.pull_failed", f"pull of {pull_ref} failed: {reason}",
                         {"image": pull_ref, "error": reason, "model": spec.model})
                    continue
                why = f"pulled {pull_ref} (no candidate was on this machine)"
                emit("image.chosen", f"image {pull_ref} for {spec.service_name}: {why}",
                     {"image": pull_ref, "reason": why})
                return pull_ref
        raise EngineError(f"no image to run service {spec.service_name or spec.service_id}; tried: "
                          + "; ".join(tried))

    def _pull(self, ref: str, spec: LaunchSpec) -> None:
        emit = spec.on_event or (lambda kind, message, data: None)
        _, slow = self._connect()
        repo, _, tag = ref.rpartition(":")
        emit("image.pulling", f"pulling image {ref}", {"image": ref, "model": spec.model})
        layers: dict[str, tuple[int, int]] = {}
        last = 0.0
        # Not through _call: a registry that fails or times out says nothing about the Docker daemon.
        for ev in slow.pull(repo, tag=tag, stream=True, decode=True):
            if isinstance(ev, dict) and ev.get("error"):
                raise EngineError(str(ev["error"])[:240])
            detail = (ev.get("progressDetail") or {}) if isinstance(ev, dict) else {}
            if isinstance(ev, dict) and ev.get("id") and detail.get("total"):
                layers[ev["id"]] = (int(detail.get("current") or 0), int(detail["total"]))
            now = time.monotonic()
            if layers and now - last >= 0.5:
                last = now
                done, total = sum(c for c, _ in layers.values()), sum(t for _, t in layers.values())
                emit("image.pull.progress", f"pulling {ref}: {done}/{total} bytes",
                     {"image": ref, "name": ref, "done": done, "total": total, "model": spec.model})
        emit("image.pulled", f"pulled image {ref}", {"image": ref, "model": spec.model})

    # ------------------------------------------------------------------ start
    def _cdi_available(self, fast: Any) -> bool:
        if self._cdi is None:
            try:
                self._cdi = bool(self._call(fast.info).get("CDISpecDirs"))
            except Exception:  # noqa: BLE001
                self._cdi = False
        return self._cdi

    def start(self, spec: LaunchSpec) -> Handle:
        from docker.errors import APIError

        fast, slow = self._connect()
        opts = ContainerOptions.model_validate(spec.options or {})
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        ref = self._choose_image(spec, opts.images)
        image = next((i for i in opts.images if ref in local_refs(i) or ref in pull_refs(i)), opts.images[0])
        home = str(self.home) if self.home is not None else ""
        cfg = container_config(spec, ref, image, opts, home=home,
                               cdi=self._cdi_available(fast) if opts.gpu else False)
        with open(spec.log_path, "ab") as f:
            f.write((f"--- aima: starting {spec.instance_id} at {time.strftime('%Y-%m-%d %H:%M:%S')} in container "
                     f"{cfg.name} ({ref}): " + " ".join(spec.argv) + "\n").encode())
        from docker.errors import DockerException

        cid: str | None = None
        try:
            hc = slow.create_host_config(**cfg.host_config)
            created = self._call(slow.create_container, cfg.image, command=cfg.command, entrypoint=cfg.entrypoint,
                                 name=cfg.name, labels=cfg.labels, environment=cfg.environment,
                                 ports=cfg.ports or None, host_config=hc, detach=True, use_config_proxy=False)
            cid = created["Id"]
            self._call(slow.start, cid)
            info = self._call(fast.inspect_container, cid)
        except APIError as e:
            if cid is not None:
                with contextlib.suppress(Exception):
                    slow.remove_container(cid, force=True)
            self._note(spec.log_path, f"could not start container {cfg.name} from {ref}: {_short(e)}")
            text = _short(e)
            if "port is already allocated" in text or "address already in use" in text:
                who = self.port_holder(spec.port) or "another container"
                raise PortInUse(f"port {spec.port} is already in use by {who}; stop it or choose another --port",
                                field="port", details={"port": spec.port, "holder": who}) from None
            raise EngineError(f"Docker could not start container {cfg.name} from {ref}: {text}") from None
        except (TypeError, DockerException) as e:  # e.g. an option this daemon's API version does not know
            self._note(spec.log_path, f"could not create container {cfg.name}: {_short(e)}")
            raise EngineError(f"Docker could not create container {cfg.name}: {_short(e)}") from None
        self._invalidate()
        self._follow(cid, spec.log_path, since=None)
        state = info.get("State") or {}
        pid = int(state.get("Pid") or 0) or None
        started = _ts(state.get("StartedAt")) or time.time()
        data: dict[str, Any] = {"container": cid, "name": cfg.name, "image": ref, "instance": spec.instance_id,
                                "log_path": str(spec.log_path), "network": opts.network}
        if pid and self._local():
            data["pid_ctime"] = _ctime(pid)
        return Handle(runtime=self.name, pid=pid, start_time=started, cmdline=list(spec.argv), data=data)

    def _local(self) -> bool:
        """The daemon runs on this machine (its containers' pids are this machine's)."""
        host = os.environ.get("DOCKER_HOST", "")
        return not host or host.startswith("unix://")

    @staticmethod
    def _note(path: Path, text: str) -> None:
        with contextlib.suppress(OSError), open(path, "ab") as f:
            f.write(f"--- aima: {text}\n".encode())

    def _follow(self, cid: str, path: Path, since: float | None) -> None:
        with self._lock:
            f = self._followers.get(cid)
            if f is not None and f.thread.is_alive():
                return
            self._followers[cid] = _Follower(self._slow, cid, path, since)

    def _drain(self, cid: str, timeout: float = 1.0) -> None:
        f = self._followers.pop(cid, None)
        if f is not None:
            f.drain(timeout)

    # ------------------------------------------------------------------ observe
    def _invalidate(self) -> None:
        with self._lock:
            self._snap_at = 0.0

    def _snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            if time.monotonic() - self._snap_at < SNAPSHOT_TTL_S:
                return self._snap
        fast, _ = self._connect()
        filters = {"label": f"{LABEL_HOME}={self.home}"} if self.home is not None else {"label": LABEL_HOME}
        rows = self._call(fast.containers, all=True, filters=filters)
        snap = {r["Id"]: r for r in rows}
        with self._lock:
            self._snap, self._snap_at = snap, time.monotonic()
        return snap

    def _inspect(self, cid: str) -> dict[str, Any] | None:
        from docker.errors import NotFound

        fast, _ = self._connect()
        try:
            return self._call(fast.inspect_container, cid)
        except NotFound:
            return None

    def observe_many(self, handles: list[Handle]) -> list[Observation]:
        """Every container from one list of them (at most one API call per quarter second)."""
        return [self._observe(h) for h in handles]

    def _observe(self, handle: Handle) -> Observation:
        cid = handle.data.get("container")
        if not cid:
            return Observation(alive=False, detail="no container was started")
        done = self._exits.get(cid)
        if done is not None:
            return done
        name = handle.data.get("name") or cid[:12]
        try:
            row = self._snapshot().get(cid)
            if row is not None:
                status, labels, created = row.get("State", ""), row.get("Labels") or {}, float(row.get("Created") or 0)
            else:  # not in the list (which may be a moment old): ask for the container itself
                info = self._inspect(cid)
                if info is None:
                    return self._record(cid, Observation(alive=False, detail=f"container {name} was removed "
                                                                             f"(outside aima)"))
                st = info.get("State") or {}
                status = st.get("Status", "")
                labels = (info.get("Config") or {}).get("Labels") or {}
                created = _ts(info.get("Created")) or 0.0
        except Unavailable as e:
            if not self._warned:
                log.warning("%s (containers are taken as still running until it answers)", e.message)
                self._warned = True
            return Observation(alive=True, detail="Docker is not reachable: state unknown")
        self._warned = False
        iid = handle.data.get("instance")
        if iid and labels.get(LABEL_INSTANCE) != iid:
            return self._record(cid, Observation(alive=False, detail=f"container {name} no longer carries "
                                                                     f"instance {iid}'s labels"))
        alive = state_alive(status)
        if status == "created" and created and time.time() - created > CREATED_GRACE_S:
            alive = False
        if alive and status == "running" and self._init_gone(handle):
            # The container's init died (killed on this machine) and Docker has not caught up yet: wait
            # for it (briefly) so the exit code is read, as for a native process that is being reaped.
            # Running again under another pid: Docker restarted it (a policy set outside aima).
            status, pid = self._settle(cid)
            if status == "running" and pid != handle.pid:
                status = "restarting"
            alive = state_alive(status) if status else False
        if alive or alive is None:
            path = handle.data.get("log_path")
            if path and status == "running" and cid not in self._followers:
                # adopted after a daemon restart: follow its log again from where the file ends
                p = Path(path)
                since = p.stat().st_mtime if p.exists() else None
                with contextlib.suppress(Unavailable):
                    self._connect()
                    self._follow(cid, p, since)
            return Observation(alive=True)
        return self._reap(cid, name, status, handle.data.get("log_path"))

    def _init_gone(self, handle: Handle) -> bool:
        ctime = handle.data.get("pid_ctime")
        if not handle.pid or ctime is None or not self._local():
            return False
        now = _ctime(handle.pid)
        return now is None or abs(now - float(ctime)) > 0.05

    def _settle(self, cid: str, timeout: float = 2.0) -> tuple[str, int | None]:
        """The container's status (and init pid) once it has left ``running`` with the old init, or as it
        is after ``timeout``; ("", None) when it is gone."""
        self._invalidate()
        deadline = time.monotonic() + timeout
        status, pid = "running", None
        while time.monotonic() < deadline:
            info = self._inspect(cid)
            if info is None:
                return "", None
            st = info.get("State") or {}
            status, pid = st.get("Status", ""), int(st.get("Pid") or 0) or None
            if status != "running" or (pid is not None and _ctime(pid) is not None and st.get("RestartCount")):
                return status, pid
            time.sleep(0.02)
        return status, pid

    def _reap(self, cid: str, name: str, status: str, log_path: str | None = None) -> Observation:
        """A container that is no longer running: read its exit, let the log catch up, remove it."""
        info = self._inspect(cid) or {}
        # Podman's list can run a moment ahead of its inspect (listed stopped, inspected still running with
        # exit code 0): read again, briefly, until the two agree. Docker's already do.
        deadline = time.monotonic() + 1.0
        while info and status in ("exited", "stopped", "dead") and time.monotonic() < deadline \
                and state_alive((info.get("State") or {}).get("Status", "")):
            time.sleep(0.02)
            info = self._inspect(cid) or {}
        st = info.get("State") or {}
        code = exit_code(st.get("ExitCode")) if info else None
        if status == "restarting":
            detail = (f"container {name} was restarted by Docker (a restart policy set outside aima; aima "
                      f"applies the service's own)")
            code = None
        elif status == "created":
            detail = f"container {name} was created but never started"
            code = None
        else:
            detail = describe_exit(code)
            if st.get("OOMKilled"):
                detail += " (out of memory: the container's memory limit)"
            if st.get("Error"):
                detail += f": {' '.join(str(st['Error']).split())[:200]}"
            policy = ((info.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name") or "no"
            if policy != "no":
                detail += (f"; Docker would restart container {name} (restart policy {policy!r} set outside "
                           f"aima; aima applies the service's own)")
        followed = cid in self._followers
        self._drain(cid)
        if not followed:
            self._catch_up(cid, log_path)
        self._remove(cid)
        return self._record(cid, Observation(alive=False, exit_code=code, detail=detail))

    def _catch_up(self, cid: str, log_path: str | None) -> None:
        """Copy what the container wrote while nothing followed its log (it ended while the aima daemon
        was down, or before a follower started again) into the log file: the lines after the file's
        last write, so the exit's reason has its last words."""
        if not log_path:
            return
        p = Path(log_path)
        kwargs: dict[str, Any] = {"stdout": True, "stderr": True}
        if p.exists():
            kwargs["since"] = p.stat().st_mtime
        try:
            _fast, slow = self._connect()
            data = slow.logs(cid, **kwargs)
        except Exception as e:  # noqa: BLE001 - no log to add is not an error of the exit
            log.debug("catching up the log of %s failed: %s", cid[:12], e)
            return
        if data:
            with open(p, "ab") as f:
                f.write(data)

    def _record(self, cid: str, obs: Observation) -> Observation:
        self._drain(cid, 0.2)
        with self._lock:
            self._exits[cid] = obs
        self._invalidate()
        return obs

    def _remove(self, cid: str) -> None:
        from docker.errors import NotFound

        try:
            _, slow = self._connect()
            self._call(slow.remove_container, cid, force=True)
        except NotFound:
            pass
        except Exception as e:  # noqa: BLE001 - removal is tidying; a later cleanup retries
            log.info("could not remove container %s: %s", cid[:12], e)
        self._invalidate()

    # ------------------------------------------------------------------ stop
    def stop(self, handle: Handle, grace_s: float) -> int | None:
        from docker.errors import APIError, NotFound

        cid = handle.data.get("container")
        if not cid:
            return None
        done = self._exits.get(cid)
        if done is not None:
            self._remove(cid)
            return done.exit_code
        _, slow = self._connect()
        code: int | None = None
        try:
            self._call(slow.stop, cid, timeout=max(0, math.ceil(grace_s)))
            res = self._call(slow.wait, cid, timeout=max(30.0, grace_s + 10))
            code = exit_code(res.get("StatusCode"))
        except NotFound:
            self._drain(cid, 0.2)
            self._invalidate()
            return None
        except APIError as e:
            log.info("stopping container %s: %s", cid[:12], _short(e))
        self._drain(cid)
        self._remove(cid)
        self._record(cid, Observation(alive=False, exit_code=code, detail=describe_exit(code)))
        wait_port_free(handle.port, handle.host)
        return code

    # ------------------------------------------------------------------ discovery
    def owned(self) -> list[Owned]:
        """Every container of this home (running or not)."""
        if not self.available():
            return []
        home = self.home
        fast, _ = self._connect()
        rows = self._call(fast.containers, all=True, filters={"label": f"{LABEL_HOME}={home}"})
        out = []
        for r in rows:
            labels = r.get("Labels") or {}
            if labels.get(LABEL_HOME) != str(home):
                continue
            cid, iid = r["Id"], labels.get(LABEL_INSTANCE, "")
            pid: int | None = None
            started: float | None = None
            if r.get("State") == "running":
                info = self._inspect(cid) or {}
                st = info.get("State") or {}
                pid = int(st.get("Pid") or 0) or None
                started = _ts(st.get("StartedAt"))
            name = (r.get("Names") or [cid[:12]])[0].lstrip("/")
            out.append(Owned(labels.get(LABEL_SERVICE, ""), iid,
                             Handle(self.name, pid, started, [], {"container": cid, "name": name, "instance": iid,
                                                                  "image": r.get("Image")})))
        return out

    # ------------------------------------------------------------------ ports
    def port_holder(self, port: int) -> str | None:
        """The container that holds ``port``: published by it, or listened on from the host's network."""
        if not self.available():
            return None
        try:
            fast, _ = self._connect()
            rows = self._call(fast.containers)
        except (Unavailable, Exception):  # noqa: BLE001 - no answer: the native runtime names the process
            return None
        for r in rows:
            for p in r.get("Ports") or []:
                if p.get("PublicPort") == port:
                    return self._describe(r)
        cid = _container_of(_listener_pid(port))
        if cid:
            row = next((r for r in rows if r["Id"] == cid), None)
            if row is not None:
                return self._describe(row)
        return None

    def _describe(self, row: dict[str, Any]) -> str:
        labels = row.get("Labels") or {}
        name = (row.get("Names") or ["?"])[0].lstrip("/")
        text = f"container {name} ({row['Id'][:12]}, image {row.get('Image')})"
        if labels.get(LABEL_HOME):
            mine = self.home is not None and labels[LABEL_HOME] == str(self.home)
            svc = labels.get(LABEL_SERVICE_NAME) or labels.get(LABEL_SERVICE)
            text += f", aima service {svc}" + ("" if mine else f" of AIMA_HOME {labels[LABEL_HOME]}")
        return text


def _ts(text: Any) -> float | None:
    """Docker's RFC 3339 timestamps (nanoseconds, Z) as unix time; None for the zero time."""
    if not text or not isinstance(text, str) or text.startswith("0001-"):
        return None
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    if not m:
        return None
    base = datetime.fromisoformat(m.group(1) + ("+00:00" if m.group(3) == "Z" else m.group(3)))
    frac = float("0" + m.group(2)) if m.group(2) else 0.0
    return base.timestamp() + frac


def _ctime(pid: int) -> float | None:
    """A live (not zombie) process's start time, or None."""
    import psutil

    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return None
        return p.create_time()
    except psutil.Error:
        return None


def _listener_pid(port: int) -> int | None:
    import psutil

    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.Error, OSError):
        return None
    return next((c.pid for c in conns if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                 and c.pid), None)


def _container_of(pid: int | None) -> str | None:
    if not pid:
        return None
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None
    m = re.search(r"([0-9a-f]{64})", text)
    return m.group(1) if m else None
