"""The one way to a ready engine: ``Acquirer.acquire(model, kind)``, used by the gateway for every ``/v1``
request and by the inference operations (``aima chat``, ``embed``, ``speak``, ``transcribe``), so both
route alike, balance replicas alike, load a service on demand alike, and count alike.

A request names a model by a service's name, a model's name or a catalog alias (exact matches, in that
order); where several services match, those serving the asked kind (llm, embedding, tts, asr) come
first. The ready instance with the fewest requests in flight is chosen. None ready: a service with an
idle TTL is loaded (started and waited for) first, else the request is refused as not ready. A lease
counts the request while it runs: in flight (the reconciler never unloads a busy service), last use
(idle TTLs), and the meter (metrics) when one is attached.

Errors: ``NotServed`` (404: no service of that name), ``NotReady`` (503 with how long to wait before
retrying), ``InsufficientMemory`` (503: it cannot be loaded beside what must stay).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from aima.controller.routes import Endpoint, RouteTable, ServiceRoute, pick
from aima.errors import AimaError, InsufficientMemory, NotFound, Unavailable
from aima.store.repositories import Services

if TYPE_CHECKING:
    import httpx

    from aima.controller.reconciler import Reconciler


class NotServed(NotFound):
    """No service serves that name (404 ``model_not_found``)."""


class NotReady(Unavailable):
    """Known but not ready, or it could not be loaded (503 with ``Retry-After``)."""

    def __init__(self, message: str, *, service: str, state: str, retry_after: int):
        super().__init__(message, field="model", details={"service": service, "state": state})
        self.service, self.state, self.retry_after = service, state, retry_after


class Hist(Protocol):
    def observe(self, v: float) -> None: ...


class RequestMeter(Protocol):
    """The numbers of one (model, instance, route), as the gateway's metrics keep them."""

    inflight: int
    latency: Hist
    ttft: Hist
    overhead: Hist

    def answered(self, status: int) -> None: ...
    def count_tokens(self, data: bytes) -> None: ...


class Meter(Protocol):
    def request(self, model: str, instance: str, route: str) -> RequestMeter: ...
    def error(self, model: str, code: str) -> None: ...


@dataclass
class Target:
    """A ready instance chosen for one request."""

    route: ServiceRoute
    endpoint: Endpoint
    load_s: float = 0.0  # how long the request waited for the service to load on demand

    @property
    def name(self) -> str:
        return self.route.name

    @property
    def model(self) -> str:
        return self.route.model

    @property
    def url(self) -> str:
        return self.endpoint.url


@dataclass
class Lease:
    """A request running on a target: counted until it ends; ``status`` is what it was answered."""

    target: Target
    meter: RequestMeter | None
    status: int = 0
    t0: float = field(default_factory=time.monotonic)

    def answered(self, status: int, body: bytes | None = None) -> None:
        self.status = status
        if self.meter is not None and body:
            self.meter.count_tokens(body)


class Acquirer:
    def __init__(self, routes: RouteTable, reconciler: Reconciler, services: Services):
        self.routes = routes
        self.reconciler = reconciler
        self.services = services
        self.meter: Meter | None = None  # the gateway's metrics, attached when the daemon starts
        self._http: httpx.AsyncClient | None = None

    # ------------------------------------------------------------------ choosing
    def candidates(self, model: str, kind: str | None = None) -> list[ServiceRoute]:
        """The services a request for ``model`` may go to; of several, those serving ``kind`` (if any)."""
        routes = self.routes.resolve(model)
        if len(routes) > 1 and kind is not None:
            routes = [r for r in routes if r.kind == kind] or routes
        return routes

    async def acquire(self, model: str, kind: str | None = None,
                      routes: list[ServiceRoute] | None = None) -> Target:
        """A ready instance for ``model``, loading a service on demand when none is ready."""
        routes = self.candidates(model, kind) if routes is None else routes
        if not routes:
            raise self.not_served(model)
        picked = pick(routes)
        if picked is not None:
            return Target(*picked)
        t0 = time.monotonic()
        route, ep = await self._load(model, routes)
        return Target(route, ep, time.monotonic() - t0)

    def not_served(self, model: str) -> NotServed:
        ready = sorted({r.model for r in self.routes.models()})
        others = sorted({r.name for r in self.routes.services() if not r.endpoints})
        msg = f"model {model!r} is not served here; "
        msg += f"served models: {', '.join(ready)}" if ready else "no model is ready"
        if others:
            msg += f" (services not ready: {', '.join(others)})"
        return NotServed(msg + f"; GET /v1/models lists them, `aima run {model} --detach` serves a catalog model",
                         field="model")

    async def _load(self, model: str, routes: list[ServiceRoute]) -> tuple[ServiceRoute, Endpoint]:
        rows = [(r, self.services.get(r.service_id)) for r in routes]
        loadable = [(r, row) for r, row in rows if row is not None and row.idle_ttl_s is not None]
        if not loadable:
            route, row = rows[0]
            if row is None:
                raise self.not_served(model)
            raise not_ready(model, route, row.state, row.message)
        # one already on its way up first, else the first
        route, row = next(((r, w) for r, w in loadable if w.desired == "running"), loadable[0])
        try:
            res = await self.reconciler.load(row.id, reason=f"a request for {model}")
        except InsufficientMemory:
            raise
        except AimaError as e:
            raise NotReady(f"model {model!r} (service {route.name}) could not be loaded: {e.message}",
                           service=route.name, state=row.state, retry_after=10) from None
        picked = pick(routes)
        if picked is not None:
            return picked
        row = self.services.get(route.service_id)
        state = row.state if row is not None else "deleted"
        raise not_ready(model, route, state, res.message or (row.message if row is not None else None))

    # ------------------------------------------------------------------ counting
    def begin(self, t: Target, path: str) -> RequestMeter | None:
        """Count a request on ``t`` from now (in flight, last use, the meter's in-flight gauge)."""
        t.endpoint.inflight += 1
        t.route.active += 1  # the reconciler never unloads a service with a request in flight
        t.route.last_used = time.time()
        rm = self.meter.request(t.model, t.endpoint.instance_id, path) if self.meter is not None else None
        if rm is not None:
            rm.inflight += 1
        return rm

    def end(self, t: Target, rm: RequestMeter | None, status: int, elapsed: float) -> None:
        t.endpoint.inflight -= 1
        t.route.active -= 1
        t.route.last_used = time.time()
        if rm is not None:
            rm.inflight -= 1
            rm.answered(status)
            rm.latency.observe(elapsed)

    @contextlib.asynccontextmanager
    async def lease(self, model: str, kind: str | None, path: str) -> AsyncIterator[Lease]:
        """``acquire`` and count the request until the block ends (an exception counts as 502 unless the
        block set the status it answered)."""
        t = await self.acquire(model, kind)
        lease = Lease(t, self.begin(t, path))
        try:
            yield lease
        except BaseException:
            if not lease.status:
                lease.status = 502
            if self.meter is not None:
                self.meter.error(t.model, f"engine_http_{lease.status}")
            raise
        finally:
            self.end(t, lease.meter, lease.status or 200, time.monotonic() - lease.t0)

    @property
    def http(self) -> httpx.AsyncClient:
        """The one pooled HTTP client of the inference operations (keep-alive to every engine)."""
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(600.0, connect=5.0),
                                           limits=httpx.Limits(max_keepalive_connections=32))
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    def recheck(self, instance_id: str) -> None:
        """An instance could not be reached: have the reconciler look at it now."""
        self.reconciler.recheck(instance_id)


def not_ready(model: str, route: ServiceRoute, state: str, message: str | None) -> NotReady:
    retry = 5 if state in ("starting", "running") else 30
    hint = {"starting": "it is starting; retry shortly",
            "running": "its instances are not ready (failing health checks)",
            "stopping": "it is stopping",
            "failed": f"it failed; see `aima service status {route.name}`",
            }.get(state, f"start it with `aima service start {route.name}` (or give it an --idle-ttl to load "
                         f"it on demand)")
    msg = f"model {model!r} (service {route.name}) is not ready: the service is {state}; {hint}"
    if message and state not in ("stopped", "created"):
        msg += f" ({message})"
    return NotReady(msg, service=route.name, state=state, retry_after=retry)

