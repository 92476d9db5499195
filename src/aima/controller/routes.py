"""The route table: which ready instances serve which model, kept current from controller events; and
``pick``, the choice of an instance (least outstanding requests first).

The reconciler never calls the table; it publishes events and this table listens. On boot the table is
rebuilt from the database right after re-adoption (lifecycle rule 11). ``acquire`` (the one way to a
ready engine, for the gateway and the inference operations) reads it.

A request names a model by the service's name, the model's name, or one of the catalog's aliases of
that model: exact matches only, in that order (a service name wins over a model name, a model name
over an alias). The gateway also records here, per service, when it was last used and how many
requests are in flight; the reconciler reads both to unload idle services (it stays the only writer
of instance state).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aima.runtimes.local import connect_host
from aima.store.repositories import Instances, Services

log = logging.getLogger("aima.gateway")


@dataclass(eq=False)
class Endpoint:
    instance_id: str
    service_id: str
    host: str
    port: int
    inflight: int = 0
    replica: int = 0

    def __post_init__(self) -> None:
        self.connect_host = connect_host(self.host)

    @property
    def url(self) -> str:
        return f"http://{self.connect_host}:{self.port}"


@dataclass(eq=False)
class ServiceRoute:
    service_id: str
    name: str
    model: str
    created_at: float
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    state: str = "created"
    aliases: tuple[str, ...] = ()  # the catalog's aliases of the model
    kind: str | None = None  # what it serves (llm, embedding, asr, tts) when the catalog tells
    last_used: float | None = None  # wall time of the last inference request's start or end
    active: int = 0  # inference requests in flight (also those on an instance that has left the table)


def catalog_aliases(model: str) -> tuple[str, ...]:
    """The catalog model entry's aliases of ``model`` (exactly its name; none when it is not a catalog model)."""
    try:
        from aima import catalog

        cat = catalog.load()
        for entry in cat.models.values():
            if entry.asset.name == model:
                return tuple(a for a in entry.asset.aliases if a != model)
    except Exception as e:  # noqa: BLE001 - an unreadable catalog only means no aliases
        log.debug("no catalog aliases for %s: %s", model, e)
    return ()


def catalog_kind(model: str, engine: str, config: dict[str, Any] | None) -> str | None:
    """What a service serves: the model type whose ``model_type_config`` its config carries (an llm served
    with ``embedding=true`` serves embeddings), else the catalog model's type; None when unknown."""
    try:
        from aima import catalog

        cat = catalog.load()
        eng = cat.engine(engine)
        cfg = {k: str(v).lower() for k, v in (config or {}).items()}
        if eng is not None:
            for mtype, values in eng.model_type_config.items():
                if values and all(cfg.get(k) == str(v).lower() for k, v in values.items()):
                    return str(mtype)
        for entry in cat.models.values():
            if entry.asset.name == model:
                return str(entry.asset.type)
    except Exception as e:  # noqa: BLE001 - an unreadable catalog only means no kind
        log.debug("no catalog kind for %s: %s", model, e)
    return None


class RouteTable:
    def __init__(self) -> None:
        self._services: dict[str, ServiceRoute] = {}
        self._lock = threading.Lock()
        self._by_name: dict[str, ServiceRoute] = {}
        self._by_model: dict[str, list[ServiceRoute]] = {}
        self._by_alias: dict[str, list[ServiceRoute]] = {}
        self._aliases: dict[str, tuple[str, ...]] = {}

    def _aliases_of(self, model: str) -> tuple[str, ...]:
        a = self._aliases.get(model)
        if a is None:
            a = self._aliases[model] = catalog_aliases(model)
        return a

    def _reindex(self) -> None:
        by_name: dict[str, ServiceRoute] = {}
        by_model: dict[str, list[ServiceRoute]] = {}
        by_alias: dict[str, list[ServiceRoute]] = {}
        for r in sorted(self._services.values(), key=lambda r: r.created_at):
            by_name[r.name] = r
            by_model.setdefault(r.model, []).append(r)
            for a in r.aliases:
                by_alias.setdefault(a, []).append(r)
        self._by_name, self._by_model, self._by_alias = by_name, by_model, by_alias

    def rebuild(self, services: Services, instances: Instances) -> None:
        routes = {r.id: ServiceRoute(r.id, r.name, r.model, r.created_at, state=r.state,
                                     kind=catalog_kind(r.model, r.engine, r.config))
                  for r in services.list()}
        for i in instances.ready():
            route = routes.get(i.service_id)
            if route is not None and i.port:
                route.endpoints[i.id] = Endpoint(i.id, i.service_id, i.host, i.port, replica=i.replica)
        for r in routes.values():
            r.aliases = self._aliases_of(r.model)
        with self._lock:
            for sid, r in routes.items():  # keep what the gateway learned about use
                old = self._services.get(sid)
                if old is not None:
                    r.last_used, r.active = old.last_used, old.active
                    for iid, ep in r.endpoints.items():
                        if iid in old.endpoints:
                            ep.inflight = old.endpoints[iid].inflight
            self._services = routes
            self._reindex()

    def on_event(self, ev: dict[str, Any]) -> None:
        kind, sid, data = ev["kind"], ev.get("service_id"), ev.get("data") or {}
        if not sid:
            return
        with self._lock:
            if kind == "service.created":
                model = data.get("model", "")
                self._services[sid] = ServiceRoute(
                    sid, data.get("name", sid), model, ev["ts"], aliases=self._aliases_of(model),
                    kind=catalog_kind(model, data.get("engine", ""), data.get("config")))
                self._reindex()
                return
            if kind == "service.deleted":
                if self._services.pop(sid, None) is not None:
                    self._reindex()
                return
            route = self._services.get(sid)
            if route is None:
                return
            if kind.startswith("service."):
                st = data.get("state")
                if st and kind == f"service.{st}":
                    route.state = st
                return
            iid = ev.get("instance_id")
            if not iid or not kind.startswith("instance."):
                return
            if data.get("state") == "running" and data.get("ready") and data.get("port"):
                ep = route.endpoints.get(iid)
                if ep is None:
                    route.endpoints[iid] = Endpoint(iid, sid, data.get("host") or "127.0.0.1", int(data["port"]),
                                                    replica=int(data.get("replica") or 0))
            elif "state" in data or "ready" in data:
                route.endpoints.pop(iid, None)

    # ------------------------------------------------------------------ reads
    def models(self) -> list[ServiceRoute]:
        """Services with at least one ready instance (what /v1/models lists)."""
        with self._lock:
            return [r for r in self._services.values() if r.endpoints]

    def services(self) -> list[ServiceRoute]:
        with self._lock:
            return list(self._services.values())

    def resolve(self, name: str) -> list[ServiceRoute]:
        """The services a request for ``name`` may go to: the service of that name, else every service of
        that model, else every service whose model has that alias in the catalog. Exact matches only."""
        r = self._by_name.get(name)
        if r is not None:
            return [r]
        return self._by_model.get(name) or self._by_alias.get(name) or []

    def get(self, service_id: str) -> ServiceRoute | None:
        return self._services.get(service_id)

    # ------------------------------------------------------------------ use (read by the reconciler)
    def last_used(self, service_id: str) -> float | None:
        r = self._services.get(service_id)
        return r.last_used if r is not None else None

    def inflight(self, service_id: str) -> int:
        r = self._services.get(service_id)
        return r.active if r is not None else 0


_turn = itertools.count()


def pick(routes: Iterable[ServiceRoute], exclude: Endpoint | None = None) -> tuple[ServiceRoute, Endpoint] | None:
    """The ready endpoint with the fewest requests in flight over ``routes`` (None when none is ready); ties
    go round-robin, so that sequential requests spread over idle replicas too."""
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
