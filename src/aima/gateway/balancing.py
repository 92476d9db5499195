"""Choosing an instance: least outstanding requests first; ties go round-robin so that sequential
requests spread over idle replicas too."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from aima.gateway.routes import Endpoint, ServiceRoute

_turn = itertools.count()


def pick(routes: Iterable[ServiceRoute], exclude: Endpoint | None = None) -> tuple[ServiceRoute, Endpoint] | None:
    """The ready endpoint with the fewest requests in flight over ``routes`` (None when none is ready)."""
    best: list[tuple[ServiceRoute, Endpoint]] = []
    low = 1 << 62
    for r in routes:
        for ep in r.endpoints.values():
            if ep is exclude:
                continue
            n = ep.inflight
            if n < low:
                low = n
                best = [(r, ep)]
            elif n == low:
                best.append((r, ep))
    if not best:
        return None
    if len(best) == 1:
        return best[0]
    return best[next(_turn) % len(best)]
