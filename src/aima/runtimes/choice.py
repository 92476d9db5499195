"""Which runtime a service gets: ``--runtime native|docker|auto``, as one pure decision.

``auto`` follows the engine entry's ``runtime.prefer`` and what is available here — a native install
(the engine's Python modules import), a Docker daemon that answers, an image candidate — and always
says which runtime it picked and why. The costly facts (asking the daemon) are functions, called only
when the decision needs them, so a native choice never waits on Docker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aima.errors import InvalidInput, Unavailable


@dataclass
class Facts:
    asked: str  # native | docker | auto
    engine: str
    prefer: str = "native"  # the catalog entry's runtime.prefer (custom commands: native)
    custom: bool = False  # a --command service
    images: list[str] = field(default_factory=list)  # candidates (catalog's or --image), in order
    native_missing: list[str] = field(default_factory=list)  # engine modules that do not import here
    docker_answers: Callable[[], bool] = lambda: False
    image_present: Callable[[], str | None] = lambda: None
    docker_error: Callable[[], str | None] = lambda: None


def choose(f: Facts) -> tuple[str, str]:
    """(runtime, reason); ``Unavailable`` or ``InvalidInput`` when the asked runtime cannot be had."""
    if f.asked == "native":
        return "native", "--runtime native was asked for"
    if f.asked == "docker":
        if not f.images:
            what = "give --image NAME:TAG" if f.custom else f"engine {f.engine} lists no images; give --image NAME:TAG"
            raise InvalidInput(f"--runtime docker needs an image to run: {what}", field="images")
        if not f.docker_answers():
            raise Unavailable(f.docker_error() or "Docker is not reachable")
        return "docker", "--runtime docker was asked for"
    # auto
    if f.custom:
        if not f.images:
            return "native", "auto: a custom command without --image runs as a process"
        if not f.docker_answers():
            raise Unavailable(f.docker_error() or "Docker is not reachable")
        return "docker", "auto: --image was given and Docker answers"
    native_ok = not f.native_missing
    missing = f"{', '.join(f.native_missing)} cannot be imported here" if f.native_missing else ""
    if f.prefer == "docker":
        if f.images and f.docker_answers():
            return "docker", f"auto: {f.engine} prefers docker and Docker answers"
        why = (f.docker_error() or "Docker is not reachable") if f.images else f"{f.engine} lists no images"
        if native_ok:
            return "native", f"auto: {f.engine} prefers docker, but {why}; it is installed here, so it runs natively"
        raise Unavailable(f"{f.engine} prefers docker, but {why}; and it cannot run natively ({missing}): start "
                          f"Docker, or install it (pip) and use --runtime native")
    # prefer native (or auto): native when installed, else a container when one can be had
    if native_ok:
        return "native", f"auto: {f.engine} prefers native and is installed here"
    if f.images and f.docker_answers():
        ref = f.image_present()
        where = f"image {ref} is on this machine" if ref else f"image {f.images[0]} can be pulled"
        return "docker", f"auto: {f.engine} is not installed here ({missing}); Docker answers and {where}"
    return "native", (f"auto: {f.engine} prefers native ({missing}; no container either: "
                      f"{f.docker_error() or 'no image listed'})")
