"""This machine's ports, shared by the runtimes whose engines listen here (lifecycle rule 5).

Explicit ports are checked once and fail fast naming the holder. Auto ports come from
``AIMA_PORT_RANGE``, skip the ports other services hold and anything listening, are bind-tested, and
stay with their service. One allocator per range and process: two launches at once never get the same
port, whichever local runtime asks.
"""

from __future__ import annotations

import asyncio
import errno
import random
import socket
import threading
import time
from collections.abc import Iterable

import psutil

from aima.errors import Unavailable

_lock = threading.Lock()
_allocators: dict[tuple[int, int], LocalPorts] = {}


def port_is_free(port: int, host: str = "127.0.0.1", *, strict: bool = False) -> bool:
    """True when nothing listens on ``port`` and we could bind it on ``host``.

    ``strict`` binds without SO_REUSEADDR, so a port that still has lingering (TIME_WAIT)
    connections counts as taken: what an engine that does not set that option would see.
    """
    for target in {host, "127.0.0.1"}:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.2)
            if s.connect_ex((connect_host(target), port)) == 0:
                return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        if not strict:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
                return False
            raise
    return True


def connect_host(host: str) -> str:
    """Where to connect to reach something listening on ``host`` (all interfaces: loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def wait_port_free(port: int | None, host: str | None, timeout: float = 10.0) -> bool:
    """Block until ``port`` is free on ``host`` (or ``timeout``); True when it is."""
    if not port:
        return True
    end = time.monotonic() + timeout
    while True:
        if port_is_free(port, host or "127.0.0.1"):
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.05)


async def await_port_free(port: int | None, host: str | None, timeout: float = 10.0) -> bool:
    """``wait_port_free`` without blocking the event loop."""
    if not port:
        return True
    end = time.monotonic() + timeout
    while True:
        if await asyncio.to_thread(port_is_free, port, host or "127.0.0.1"):
            return True
        if time.monotonic() >= end:
            return False
        await asyncio.sleep(0.05)


def process_on_port(port: int) -> str | None:
    """The process listening on ``port`` on this machine (pid and command), if any can be seen."""
    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.Error, OSError):
        return None
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port:
            if c.pid:
                try:
                    p = psutil.Process(c.pid)
                    cmd = " ".join(p.cmdline()) or p.name()
                    return f"pid {c.pid} ({cmd[:160]})"
                except psutil.Error:
                    return f"pid {c.pid}"
            return "another process (pid not visible)"
    return None


class LocalPorts:
    """Auto ports on this machine from one range, handed out one at a time."""

    def __init__(self, lo: int, hi: int):
        self.lo, self.hi = lo, hi
        self._lock = threading.Lock()
        # Start at a random place so that two daemons on one machine rarely reach for the same port.
        self._next = lo + random.randrange(hi - lo + 1)

    def allocate(self, host: str, reserved: Iterable[int], prefer: int | None = None) -> int:
        taken = set(reserved)
        with self._lock:
            if prefer is not None and self.lo <= prefer <= self.hi and port_is_free(prefer, host):
                return prefer
            span = self.hi - self.lo + 1
            for i in range(span):
                port = self.lo + (self._next - self.lo + i) % span
                if port in taken or port == prefer:
                    continue
                if port_is_free(port, host, strict=True):
                    self._next = port + 1 if port < self.hi else self.lo
                    return port
        raise Unavailable(f"no free port in {self.lo}-{self.hi}; widen AIMA_PORT_RANGE or stop some services")


def local_ports(lo: int, hi: int) -> LocalPorts:
    """The one allocator of this process for ``lo..hi``."""
    with _lock:
        ports = _allocators.get((lo, hi))
        if ports is None:
            ports = _allocators[(lo, hi)] = LocalPorts(lo, hi)
        return ports
