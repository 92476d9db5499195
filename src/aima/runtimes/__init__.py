"""Runtimes start, observe and stop instances: ``native`` (detached processes) now; docker and ray later.

A new runtime is a new module exposing a class that satisfies ``aima.runtimes.base.Runtime``,
registered in ``RUNTIMES`` below.
"""

from __future__ import annotations

from aima.runtimes.base import Runtime


def get_runtime(name: str, **kwargs: object) -> Runtime:
    if name == "native":
        from aima.runtimes.native import NativeRuntime

        return NativeRuntime(**kwargs)  # type: ignore[arg-type]
    from aima.errors import InvalidInput

    raise InvalidInput(f"runtime {name!r} is not available; choose one of: native", field="runtime")


RUNTIMES = ("native",)
