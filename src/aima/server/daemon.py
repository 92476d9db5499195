"""Running the daemon in the foreground (``aima start``) with a pid file and graceful shutdown.

SIGTERM/SIGINT: uvicorn stops accepting, finishes in-flight requests (at most 30 s), the reconciler
stops watching (services keep running) and the database is checkpointed and closed.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from aima.config import Settings
from aima.errors import AimaError, Conflict

if TYPE_CHECKING:
    from aima.server.app import Mount

GRACEFUL_S = 30


def read_pid_file(path: Path) -> dict[str, Any] | None:
    """The daemon recorded in ``path`` while its process lives (identity checked by start time; a zombie,
    a killed daemon its parent has not reaped yet, is not alive), or None."""
    return _recorded(path)[0]


def _recorded(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(info, None) for a live recorded process; (None, why) for a stale pid file; (None, None) for none."""
    try:
        info = json.loads(path.read_text())
        pid = int(info["pid"])
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError, KeyError, TypeError):
        return None, f"the pid file {path} cannot be read"
    try:
        p = psutil.Process(pid)
        if abs(p.create_time() - float(info.get("start_time") or 0)) > 0.05:
            return None, f"pid {pid} in {path} is now another process"
        if p.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return None, f"the daemon recorded in {path} (pid {pid}) has exited (a zombie not yet reaped)"
        return info, None
    except psutil.NoSuchProcess:
        return None, f"the daemon recorded in {path} (pid {pid}) is gone"
    except (psutil.Error, ValueError, TypeError):
        return None, f"the pid file {path} names no live daemon"


def running_daemon(path: Path, wait_s: float = 5.0) -> tuple[dict[str, Any] | None, str | None]:
    """Is a daemon running for this home? Only if its recorded process is alive, not a zombie, and answers
    ``/health`` on its recorded URL (one that is starting gets ``wait_s`` to answer). Returns (info, None)
    when it runs, (None, why) when the pid file is stale, (None, None) when there is none."""
    import time

    info, why = _recorded(path)
    if info is None:
        return None, why
    deadline = time.monotonic() + wait_s
    while True:
        if answers_health(str(info.get("url") or "")):
            return info, None
        if time.monotonic() >= deadline:
            return None, (f"the daemon recorded in {path} (pid {info['pid']}) is alive but does not answer at "
                          f"{info.get('url')}")
        time.sleep(0.1)
        info, why = _recorded(path)
        if info is None:
            return None, why


def answers_health(url: str) -> bool:
    import urllib.request

    if not url:
        return False
    try:
        with urllib.request.urlopen(url + "/health", timeout=1) as r:
            return r.status == 200
    except (OSError, ValueError):
        return False


def claim_pid_file(path: Path) -> str | None:
    """Before a daemon starts: refuse when one runs for this home (``Conflict``); a stale pid file is
    removed, and what made it stale is returned (to be said), else None."""
    live, stale = running_daemon(path)
    if live:
        raise Conflict(f"an aima daemon is already running (pid {live['pid']}) at {live['url']}; "
                       f"stop it with `aima stop` first")
    if stale:
        path.unlink(missing_ok=True)
    return stale


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(settings: Settings, host: str, port: int, insecure: bool = False,
          surfaces: Sequence[Mount] = ()) -> int:
    """Run the daemon in this process until it is told to stop, serving ``surfaces`` (REST, MCP... as mounts:
    ``aima.surfaces.mounts()``) beside the gateway."""
    import uvicorn

    class _Server(uvicorn.Server):
        """Marks the context as shutting down first, so event streams end instead of holding the
        graceful shutdown for its whole 30 s."""

        ctx: Any = None

        def handle_exit(self, sig: int, frame: Any) -> None:
            if self.ctx is not None:
                self.ctx.shutting_down = True
            super().handle_exit(sig, frame)

    from aima.runtimes.local import port_is_free, process_on_port
    from aima.server.app import build_context, create_app

    settings.ensure_dirs()
    stale = claim_pid_file(settings.pid_file)
    if stale:
        print(f"aima: {stale}: its pid file was stale and is removed", file=sys.stderr, flush=True)
    if not port_is_free(port, host):
        who = process_on_port(port) or "another process"
        raise Conflict(f"port {port} on {host} is already in use by {who}; choose another with --port")
    ctx = build_context(settings)  # opens the database now: a corrupt one fails before listening
    try:  # a runtime that attaches to a peer at start (a Ray cluster) fails here, in one line
        for rt in ctx.runtimes.all():
            getattr(rt, "attach", lambda: None)()
    except AimaError:
        ctx.db.close()
        raise
    if not is_loopback(host) and not insecure:
        from aima.server.auth import KeyRing

        keys = KeyRing(ctx.db, settings.api_key)
        keys.load()
        if not keys.enabled:
            ctx.db.close()
            raise Conflict(f"refusing to listen on {host} (beyond this machine) without an API key: create one "
                           f"with `aima key create` on a loopback daemon (or set AIMA_API_KEY), or pass --insecure "
                           f"to serve anyone who can reach port {port}")
    app = create_app(settings, ctx, surfaces)
    me = psutil.Process()
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    ctx.url = url
    settings.pid_file.write_text(json.dumps({"pid": me.pid, "start_time": me.create_time(), "url": url,
                                             "host": host, "port": port}))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "mcp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from aima import __version__
    from aima.server.http import protocol_for

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, proxy_headers=False,
                            timeout_graceful_shutdown=GRACEFUL_S, lifespan="on",
                            http=protocol_for(app.gateway, app.keys),
                            server_header=False, headers=[("server", f"aima/{__version__}")])
    server = _Server(config)
    server.ctx = ctx
    # Announced only once the database opened: a failure before this point is one line, not two.
    print(f"aima daemon listening on {url} (Ctrl-C stops it; services keep running)", file=sys.stderr,
          flush=True)
    # uvicorn re-raises the signal that stopped it once its graceful shutdown is over; by then all is
    # closed, so that signal must end serve() normally: exit 0 and the pid file removed (rule 12).
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, _shutdown_done) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        info = read_pid_file(settings.pid_file)
        if info and info["pid"] == me.pid:
            settings.pid_file.unlink(missing_ok=True)
    return 0


def _shutdown_done(_sig: int, _frame: Any) -> None:
    """The stop signal, re-raised by uvicorn after its graceful shutdown: nothing is left to do."""
