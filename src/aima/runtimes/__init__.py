"""Runtimes start, observe and stop instances: ``native`` (detached processes) and ``docker``
(containers through the Docker SDK, or Podman's Docker-compatible socket).

A new runtime is a new module exposing a class that satisfies ``aima.runtimes.base.Runtime``,
registered in ``RUNTIMES`` below. ``docker`` imports the Docker SDK only when it first connects.
"""

from __future__ import annotations

from aima.runtimes.base import Runtime

RUNTIMES = ("native", "docker")


def get_runtime(name: str, **kwargs: object) -> Runtime:
    if name == "native":
        from aima.runtimes.native import NativeRuntime

        return NativeRuntime(**kwargs)  # type: ignore[arg-type]
    if name == "docker":
        from aima.runtimes.docker import DockerRuntime

        return DockerRuntime(**kwargs)  # type: ignore[arg-type]
    from aima.errors import InvalidInput

    raise InvalidInput(f"runtime {name!r} is not available; choose one of: {', '.join(RUNTIMES)}", field="runtime")
