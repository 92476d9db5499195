"""A real Docker daemon for tests, and test images built here with no registry.

``docker_kit`` (session-scoped) connects to the daemon that ``DOCKER_HOST`` names (else the local
socket; ``scripts/dockerd-up.sh`` installs and starts one on Debian). Without one the tests that need
it are skipped with the reason — except under ``AIMA_TEST_STRICT=1`` (CI), where they fail.
``get_kit(host)`` does the same for another Docker-API socket (Podman's: tests/runtimes/test_podman.py);
its ``env`` points an aima daemon at that socket.

The image ``aima-test/hostpy`` is a rootfs of a few symlinks (``bin -> usr/bin``, ``lib -> usr/lib``
...) imported with ``docker import``; containers get this machine's ``/usr``, its Python installation
and the project's virtual environment and sources mounted read-only at the same paths, so the very
command line a native test runs (``<venv>/bin/python -m aima.engines.echo ...``) runs in the container.
The paths come from ``sys.executable``/``sys.prefix`` and the ``aima`` package, never hard-coded.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

IMAGE_REPO = "aima-test/hostpy"
MISSING_IMAGE = "aima-test/missing:never"  # never built: "not on this machine", and no registry has it
TEST_LABEL = "aima-test"  # foreign containers started by tests carry it (and are removed at teardown)


def image_of(container: Any) -> str:
    """The reference a container was created from, as given: Podman reports Docker Hub names in full
    (``docker.io/aima-test/hostpy:T``), Docker as they were written (``aima-test/hostpy:T``)."""
    ref = container.attrs["Config"]["Image"]
    for prefix in ("docker.io/library/", "docker.io/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


def host_python_mounts() -> list[str]:
    """SRC:DST:ro for the interpreter, the virtual environment and aima's sources (editable install)."""
    import aima

    paths = {Path(os.path.realpath(sys.base_prefix)), Path(sys.base_prefix), Path(sys.prefix),
             Path(aima.__file__).resolve().parents[1]}
    real_exe = Path(os.path.realpath(sys.executable))
    paths.add(real_exe.parent.parent)
    keep: list[Path] = [Path("/usr")]
    for p in sorted(paths, key=lambda x: len(x.parts)):
        if p == Path("/") or any(p == k or k in p.parents for k in keep):
            continue
        keep.append(p)
    return [f"{p}:{p}:ro" for p in keep]


def _rootfs_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, 0
            tar.addfile(info)

        def add_link(name: str, target: str) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mtime = tarfile.SYMTYPE, target, 0
            tar.addfile(info)

        def add_file(name: str, text: str) -> None:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))

        for d in ("etc", "tmp", "root", "dev", "proc", "sys", "run", "var", "sbin", "work"):
            add_dir(d, 0o1777 if d == "tmp" else 0o755)
        # /sbin stays a real folder: Docker mounts its init (docker-init) there.
        for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
            add_link(link, target)
        add_file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
        add_file("etc/group", "root:x:0:\n")
    return buf.getvalue()


@dataclass
class DockerKit:
    client: Any  # docker.DockerClient
    image: str
    volumes: list[str]
    python: str = sys.executable
    foreign: list[str] = field(default_factory=list)
    host: str | None = None  # the socket this kit's daemon answers on; None: DOCKER_HOST or the default

    @property
    def env(self) -> dict[str, str]:
        """What an aima daemon's environment needs to use this kit's Docker API."""
        return {"DOCKER_HOST": self.host} if self.host else {}

    def service_kw(self, **extra: Any) -> dict[str, Any]:
        """service.create fields that run a --command service in a container of the test image."""
        return {"runtime": "docker", "images": [self.image], "volumes": list(self.volumes), **extra}

    def containers(self, home: Path, all: bool = False) -> list[Any]:
        return self.client.containers.list(all=all, filters={"label": f"aima.home={home}"})

    def engine_pids(self, home: Path) -> list[int]:
        """Host pids of the running containers of this home (their init process: what aima records)."""
        out = []
        for c in self.containers(home):
            c.reload()
            pid = (c.attrs.get("State") or {}).get("Pid")
            if c.status == "running" and pid:
                out.append(int(pid))
        return out

    def run_foreign(self, name: str, command: list[str], port: int | None = None, network_host: bool = False,
                    labels: dict[str, str] | None = None) -> Any:
        """A container aima did not start (same image, the echo engine): removed at teardown."""
        kw: dict[str, Any] = {"detach": True, "name": name, "labels": {TEST_LABEL: "1", **(labels or {})},
                              "volumes": self.volumes, "init": True}
        if network_host:
            kw["network_mode"] = "host"
        elif port is not None:
            kw["ports"] = {f"{port}/tcp": ("127.0.0.1", port)}
        c = self.client.containers.run(self.image, command, **kw)
        self.foreign.append(c.id)
        return c

    def remove_home(self, home: Path) -> None:
        for c in self.containers(home, all=True):
            with contextlib.suppress(Exception):
                c.remove(force=True)

    def remove_foreign(self) -> None:
        for cid in self.foreign:
            with contextlib.suppress(Exception):
                self.client.api.remove_container(cid, force=True)
        self.foreign.clear()


def connect(host: str | None = None) -> tuple[Any, str]:
    """(a client that answered a ping, "") or (None, why not) for ``host`` (None: DOCKER_HOST or the local socket)."""
    try:
        import docker
    except ImportError as e:
        return None, f"the docker SDK is not installed ({e})"
    try:
        client = docker.DockerClient(base_url=host, timeout=10) if host else docker.from_env(timeout=10)
        client.ping()
        return client, ""
    except Exception as e:  # noqa: BLE001 - any failure means "no daemon here"
        where = host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        return None, f"no Docker API answers at {where} ({' '.join(str(e).split())[:160]})"


_KITS: dict[str | None, DockerKit] = {}
_WHY_NOT: dict[str | None, str] = {}


def get_kit(host: str | None = None, what: str = "Docker",
            how: str = "scripts/dockerd-up.sh installs and starts one (Debian, as root)") -> DockerKit:
    """The session's kit for ``host`` (connect and build the image once; None: DOCKER_HOST or the local
    socket), or skip/fail the test with the reason (``what`` is needed; ``how`` to get it)."""
    if host in _KITS:
        return _KITS[host]
    if host not in _WHY_NOT:
        client, why = connect(host)
        if client is None:
            _WHY_NOT[host] = f"{why}; {how}"
        else:
            tar = _rootfs_tar()
            tag = hashlib.sha256(tar).hexdigest()[:12]
            ref = f"{IMAGE_REPO}:{tag}"
            try:
                client.images.get(ref)
            except Exception:  # noqa: BLE001 - not built yet
                out = client.api.import_image_from_data(
                    tar, repository=IMAGE_REPO, tag=tag,
                    changes=["ENV PATH=/usr/local/bin:/usr/bin:/bin", 'CMD ["/bin/sh"]'])
                try:
                    client.images.get(ref)
                except Exception:  # noqa: BLE001 - Podman 4.3's import ignores the tag (names it :latest)
                    image_id = json.loads(str(out).strip().splitlines()[-1])["status"]
                    client.api.tag(image_id, IMAGE_REPO, tag)
            kit = _KITS[host] = DockerKit(client=client, image=ref, volumes=host_python_mounts(), host=host)
            return kit
    if os.environ.get("AIMA_TEST_STRICT") == "1":
        pytest.fail(f"{what} is required here (AIMA_TEST_STRICT=1): {_WHY_NOT[host]}", pytrace=False)
    pytest.skip(f"needs {what}: {_WHY_NOT[host]}")


@pytest.fixture
def docker_kit() -> Iterator[DockerKit]:
    kit = get_kit()
    try:
        yield kit
    finally:
        kit.remove_foreign()


