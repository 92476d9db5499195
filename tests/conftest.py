"""Shared fixtures: a real aima daemon process on a free port with its own AIMA_HOME.

Nothing of aima is mocked: tests talk HTTP to the daemon, run the real CLI, and the engines are
real processes (the in-package ``echo`` engine by default) — or containers on a real Docker daemon
for tests parametrized with ``runtime`` (see ``both_runtimes`` and tests/support/docker.py).
The helpers (``Daemon``, ``free_port``, ``echo_cmd`` ...) live in tests/support/; import them from there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import Daemon
from tests.support.docker import docker_kit, get_kit  # noqa: F401 - docker_kit: a fixture for the docker runtime's tests


@pytest.fixture
def aima_home(tmp_path: Path) -> Path:
    return tmp_path / "aima-home"


@pytest.fixture
def daemon_env() -> dict[str, str]:
    """Override in a test module to pass settings (e.g. a shorter restart backoff)."""
    return {}


@pytest.fixture
def runtime(request: pytest.FixtureRequest) -> str:
    """Where the ``daemon`` fixture's services run: parametrize with ``indirect=True`` (see ``both_runtimes``)."""
    return getattr(request, "param", "native")


def both_runtimes(test: Any) -> Any:
    """Run a lifecycle test once with native processes and once with containers (the same definitions)."""
    return pytest.mark.parametrize("runtime", ["native", "docker"], indirect=True)(test)


def all_runtimes(test: Any) -> Any:
    """``both_runtimes``, and once more on a Ray cluster (tests/support/ray.py: started once per session, on
    first use, so a run without ray tests never starts one)."""
    return pytest.mark.parametrize("runtime", ["native", "docker", "ray"], indirect=True)(test)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """A real 3-node Ray cluster on this machine (tests/support/ray.py), stopped at the end of the session."""
    from tests.support import ray as ray_support

    yield ray_support.ray_cluster()
    ray_support.stop_cluster()


@pytest.fixture
def daemon(request: pytest.FixtureRequest, aima_home: Path, daemon_env: dict[str, str],
           runtime: str) -> Iterator[Daemon]:
    kit: Any = None
    defaults = None
    env = daemon_env
    if runtime == "docker":
        kit = get_kit()
        defaults = kit.service_kw()
    elif runtime == "ray":
        from tests.support.ray import RayKit

        kit = RayKit(request.getfixturevalue("ray_cluster"))
        defaults, env = kit.service_kw(), {**kit.env, **daemon_env}
    d = Daemon(aima_home, env, defaults, kit)
    d.start()
    try:
        yield d
    finally:
        d.cleanup()
