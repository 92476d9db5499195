"""Port allocation (lifecycle rule 5).

Explicit ports are checked once and fail fast naming the holder. Auto ports come from
``AIMA_PORT_RANGE``, skip ports held by any known service and anything listening, are bind-tested,
and stay with their service.
"""

from __future__ import annotations

import errno
import random
import socket
import threading
from collections.abc import Callable, Iterable

from aima.errors import InvalidInput, PortInUse, Unavailable


def port_is_free(port: int, host: str = "127.0.0.1", *, strict: bool = False) -> bool:
    """True when nothing listens on ``port`` and we could bind it on ``host``.

    ``strict`` binds without SO_REUSEADDR, so a port that still has lingering (TIME_WAIT)
    connections counts as taken: what an engine that does not set that option would see.
    """
    for target in {host, "127.0.0.1"}:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.2)
            if s.connect_ex((_connect_host(target), port)) == 0:
                return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        if not strict:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


class PortAllocator:
    def __init__(self, lo: int, hi: int, holder: Callable[[int], str | None]):
        self.lo, self.hi = lo, hi
        self._holder = holder
        self._lock = threading.Lock()
        # Start at a random place so that two daemons on one machine rarely reach for the same port.
        self._next = lo + random.randrange(hi - lo + 1)

    def check_explicit(self, port: int, host: str, owner: str) -> None:
        if not 1 <= port <= 65535:
            raise InvalidInput(f"port {port} is outside 1-65535", field="port")
        if not port_is_free(port, host):
            who = self._holder(port) or "another process"
            raise PortInUse(
                f"port {port} requested by {owner} is already in use by {who}; "
                f"stop that process or choose another --port (or omit --port for an automatic one)",
                field="port", details={"port": port, "holder": who},
            )

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
        raise Unavailable(
            f"no free port in {self.lo}-{self.hi}; widen AIMA_PORT_RANGE or stop some services"
        )
