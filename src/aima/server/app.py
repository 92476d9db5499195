"""Assemble the daemon's one FastAPI app."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from aima import __version__
from aima.config import Settings
from aima.errors import AimaError, BadRequest, InvalidInput

log = logging.getLogger("aima.server")


def _allowed_methods(app: FastAPI, path: str) -> str:
    """The methods the OpenAPI document gives the path (the most literal matching one: ``/catalog/resolve``
    before ``/catalog/{name}``), as an ``Allow`` header."""
    import re

    best: tuple[int, list[str]] | None = None
    for template, item in app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)), path):
            params = template.count("{")
            if best is None or params < best[0]:
                best = (params, sorted(m.upper() for m in item if m in ("get", "post", "put", "patch", "delete")))
    return ", ".join(best[1]) if best else ""


async def _flush_usage(usage: Any, every_s: float = 2.0) -> None:
    """Write the per-key usage counted in memory to the database every few seconds."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await asyncio.to_thread(usage.flush)
        except Exception as e:  # noqa: BLE001 - kept in memory and written at the next flush
            log.warning("usage not written yet (kept for the next try): %s", e)


def build_context(settings: Settings) -> Any:
    from aima.ops.context import Context

    return Context.build(settings)


class _App(FastAPI):
    """FastAPI behind ``Door`` (the API key check); ``gateway`` answers /v1 before ASGI (``server.http``)."""

    door: Any = None
    gateway: Any = None
    keys: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.door(scope, receive, send)

    async def fastapi(self, scope: Any, receive: Any, send: Any) -> None:
        await super().__call__(scope, receive, send)


class Mount(Protocol):
    """A surface served on the daemon's port (REST, MCP, the web page): it adds its routes to ``app`` and may
    return what must run while the daemon runs (entered at start-up, left at shutdown). ``get_ctx()`` is the
    daemon's Context once it started. The surfaces sit above the server: ``aima.surfaces.mounts()``
    hands them to it."""

    def __call__(self, app: FastAPI, get_ctx: Callable[[], Any],
                 settings: Settings) -> contextlib.AbstractAsyncContextManager[Any] | None: ...


def create_app(settings: Settings, ctx: Any | None = None, surfaces: Sequence[Mount] = ()) -> _App:
    from aima.gateway.router import Gateway
    from aima.gateway.router import docs as openai_docs
    from aima.server.auth import Door, KeyRing

    holder: dict[str, Any] = {"ctx": ctx}
    gateway = Gateway()
    keys = KeyRing(None, settings.api_key)
    running: list[contextlib.AbstractAsyncContextManager[Any]] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if holder["ctx"] is None:
            holder["ctx"] = build_context(settings)
        context = holder["ctx"]
        app.state.ctx = context
        app.state.gateway = gateway
        keys.db = context.db
        from aima.server.auth import drop_local_key, write_local_key

        try:
            keys.local = write_local_key(settings.local_key_file)  # for this machine's CLI (server.auth)
        except OSError as e:
            log.warning("no key for this machine's CLI (%s): with keys in use it needs --api-key", e)
        keys.load()
        context.local_key = keys.local
        context.bus.listen(keys.on_event)
        gateway.bind(context)  # routes, the way to a ready engine, metrics
        await context.reconciler.start()  # re-adopts live instances first (rule 11)
        context.routes.rebuild(context.services, context.instances)
        gc.collect()
        gc.freeze()  # what startup built lives on: later collections skip it (shorter pauses under load)
        flusher = asyncio.create_task(_flush_usage(context.usage), name="aima-usage")
        try:
            async with contextlib.AsyncExitStack() as stack:
                for cm in running:
                    await stack.enter_async_context(cm)
                yield
        finally:
            flusher.cancel()
            drop_local_key(settings.local_key_file, keys.local)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(context.usage.flush)  # the last counts before the database closes
            gateway.close()
            await context.acquirer.close()
            await context.reconciler.close()
            context.db.close()

    app = _App(title="aima", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    # API keys for every route but /health, in front of all of FastAPI's layers; /v1 is served by the
    # daemon's HTTP protocol (aima.server.http) with this gateway, before ASGI (checking the same keys).
    app.door = Door(app.fastapi, keys)
    app.gateway = gateway
    app.keys = keys

    @app.exception_handler(AimaError)
    async def _aima_error(_req: Request, e: AimaError) -> JSONResponse:
        return JSONResponse(e.to_dict(), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, e: RequestValidationError) -> JSONResponse:
        errs = e.errors()

        def where(er: Any) -> str:  # "since", not "query.since": the same names the operations use
            loc = [str(x) for x in er.get("loc", ())]
            return ".".join(loc[1:] if len(loc) > 1 and loc[0] in ("query", "path", "body") else loc)

        loc = where(errs[0]) if errs else None
        msg = "; ".join(f"{where(er)}: {er.get('msg')}" for er in errs[:5])
        err = BadRequest(msg) if any(er.get("type") == "json_invalid" for er in errs) else InvalidInput(msg)
        err.field = loc
        return JSONResponse(err.to_dict(), status_code=err.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(req: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        headers = dict(e.headers or {})
        if e.status_code == 405:  # every method any route of this path takes (two routes may share a path)
            headers["Allow"] = _allowed_methods(app, req.url.path) or headers.get("Allow", "")
        return JSONResponse({"error": {"message": f"{e.detail}: {req.method} {req.url.path} takes "
                                                  f"{headers.get('Allow') or 'no method'}",
                                       "type": "HTTPError", "code": code}},
                            status_code=e.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(_req: Request, e: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse({"error": {"message": f"internal error: {type(e).__name__}: {e}; "
                                                  f"see the daemon log", "type": "AimaError",
                                       "code": "internal_error"}}, status_code=500)

    @app.get("/health", tags=["system"], summary="Liveness of the daemon")
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/metrics", tags=["system"], summary="Prometheus metrics: gateway requests, tokens, services")
    async def metrics() -> Response:
        from aima.gateway.metrics import CONTENT_TYPE

        body = gateway.metrics.render() if gateway.metrics is not None else b""
        return Response(body, media_type=CONTENT_TYPE)

    for mount in surfaces:
        cm = mount(app, lambda: holder["ctx"], settings)
        if cm is not None:
            running.append(cm)
    app.include_router(openai_docs)
    return app
