"""A Rich progress bar for ``aima model pull`` / ``aima model import``, drawn from the daemon's events.

The pull itself is one blocking request (``POST /api/v1/ops/model.pull``); while it runs, a thread
follows ``GET /api/v1/events`` (server-sent events) and feeds every ``model.pull.progress`` event
(data ``{name, done, total, request}``) of this pull into the bar. The bar goes to stderr, so
``-o json`` output stays clean.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

EVENT = "model.pull.progress"
IMAGE_EVENT = "image.pull.progress"  # `aima run` on the docker runtime: its image, when it must be pulled


def absolute_paths(op: str, data: dict[str, Any]) -> dict[str, Any]:
    """The daemon does not share the CLI's working folder: make local paths absolute before sending
    (``model import PATH``, ``model pull file:PATH``, ``model scan PATH``)."""
    import os

    out = dict(data)
    if op == "model.import" and out.get("path"):
        out["path"] = os.path.abspath(os.path.expanduser(out["path"]))
    elif op == "model.pull" and str(out.get("model", "")).startswith("file:"):
        out["model"] = "file:" + os.path.abspath(os.path.expanduser(out["model"][5:]))
    elif op == "model.scan" and out.get("target"):
        t = os.path.expanduser(out["target"])
        if "/" in t or os.path.exists(t):
            out["target"] = os.path.abspath(t)
    return out


def _sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Parse server-sent events into the daemon's event dicts (``data:`` holds the whole event)."""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                try:
                    ev = json.loads("\n".join(data))
                except ValueError:
                    ev = None
                if isinstance(ev, dict):
                    yield ev
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif line.startswith(":"):
            yield {"kind": "_comment"}


class Follower(threading.Thread):
    """Follows /api/v1/events and hands every event (``{id, kind, data, ...}``) to ``on_event``."""

    def __init__(self, url: str, api_key: str | None, on_event: Callable[[dict[str, Any]], None]):
        super().__init__(name="aima-events", daemon=True)
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, trust_env=False,
                                  timeout=httpx.Timeout(10.0, read=None))
        self.on_event = on_event
        self.ready = threading.Event()
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            with self._http.stream("GET", "/api/v1/events") as r:
                if r.status_code != 200:
                    return
                for ev in _sse(r.iter_lines()):
                    self.ready.set()
                    if self.stopped.is_set():
                        return
                    if ev.get("kind") != "_comment":
                        self.on_event(ev)
        except Exception:  # noqa: BLE001 - no events means no progress drawn, never a failed command
            pass
        finally:
            self.ready.set()

    def stop(self) -> None:
        self.stopped.set()
        try:
            self._http.close()
        except Exception:  # noqa: BLE001
            pass


def call_with_progress(url: str, api_key: str | None, op: str, data: dict[str, Any], *,
                       console: Any = None, wait_for_stream_s: float = 2.0,
                       on_event: Callable[[dict[str, Any]], None] | None = None) -> Any:
    """Call ``op`` (``model.pull`` or ``model.import``) on the daemon, drawing its progress; returns the
    op's result (errors are raised as the CLI client raises them). ``on_event`` also receives each
    progress event's data (for other front ends and tests)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from aima.surfaces.cli.client import Client

    data = absolute_paths(op, data)
    request = data.get("model") if op in ("model.pull", "service.run") else data.get("path")
    wanted_name = data.get("name")

    def match(d: dict[str, Any]) -> bool:
        return (request is not None and d.get("request") == request) or \
            (wanted_name is not None and d.get("name") == wanted_name)

    console = console or Console(stderr=True)
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TimeRemainingColumn(), console=console, transient=False)
    task = bar.add_task(f"pull {wanted_name or request}", total=None, start=True)
    lock = threading.Lock()

    def on_progress(d: dict[str, Any]) -> None:
        if on_event is not None:
            on_event(d)
        with lock:
            total = d.get("total")
            bar.update(task, completed=int(d.get("done") or 0), total=int(total) if total else None,
                       description=f"pull {d.get('name') or wanted_name or request}")

    def on_any(ev: dict[str, Any]) -> None:
        d = ev.get("data") or {}
        if ev.get("kind") == EVENT and match(d):
            on_progress(d)
        elif ev.get("kind") == IMAGE_EVENT and op == "service.run" and d.get("model") in (request, wanted_name):
            on_progress({**d, "name": f"image {d.get('image')}"})  # the engine's container image, pulled at start

    follower = Follower(url, api_key, on_any)
    follower.start()
    follower.ready.wait(wait_for_stream_s)  # subscribed before the pull starts, so no event is missed
    client = Client(url, api_key)
    try:
        with bar:
            result = client.call(op, data)
            model = (result.get("model") or {}) if isinstance(result, dict) else {}
            size = model.get("size_bytes")
            with lock:
                if size:
                    bar.update(task, completed=size, total=size)
                outcome = result.get("outcome") if isinstance(result, dict) else None
                bar.update(task, description=f"{outcome or 'done'} {model.get('name') or wanted_name or request}")
        return result
    finally:
        follower.stop()
        client.close()
