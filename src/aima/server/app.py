"""Assemble the daemon's one FastAPI app."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from aima import __version__
from aima.config import Settings
from aima.errors import AimaError, BadRequest, InvalidInput

log = logging.getLogger("aima.server")


def build_context(settings: Settings) -> Any:
    from aima.controller.events import EventBus
    from aima.controller.reconciler import Reconciler
    from aima.ops.context import Context
    from aima.store.db import Database

    settings.ensure_dirs()
    db = Database(settings.db_path)
    bus = EventBus(db, keep=settings.events_keep)
    ctx = Context(settings=settings, db=db, bus=bus, reconciler=Reconciler(db, settings, bus))
    bus.listen(ctx.routes.on_event)
    return ctx


class _App(FastAPI):
    """FastAPI behind the gateway's ``Door`` (the API key check); ``gateway`` answers /v1 before ASGI."""

    door: Any = None
    gateway: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.door(scope, receive, send)

    async def fastapi(self, scope: Any, receive: Any, send: Any) -> None:
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, ctx: Any | None = None) -> _App:
    from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
    from mcp.server.transport_security import TransportSecuritySettings

    from aima.gateway.router import Door, Gateway
    from aima.gateway.router import docs as openai_docs
    from aima.surfaces import mcp as mcp_surface
    from aima.surfaces import rest

    holder: dict[str, Any] = {"ctx": ctx}
    gateway = Gateway()
    session_manager = StreamableHTTPSessionManager(
        app=mcp_surface.in_process_server(lambda: holder["ctx"]), stateless=True, json_response=True,
        security_settings=TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*", f"{settings.host}:*"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        ),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if holder["ctx"] is None:
            holder["ctx"] = build_context(settings)
        context = holder["ctx"]
        app.state.ctx = context
        app.state.gateway = gateway
        gateway.bind(context)  # keys, metrics, and the use the reconciler reads for idle unload
        await context.reconciler.start()  # re-adopts live instances first (rule 11)
        context.routes.rebuild(context.db)
        gc.collect()
        gc.freeze()  # what startup built lives on: later collections skip it (shorter pauses under load)
        try:
            async with session_manager.run():
                yield
        finally:
            gateway.close()
            await context.reconciler.close()
            context.db.close()

    app = _App(title="aima", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    # API keys for every route but /health, in front of all of FastAPI's layers; /v1 is served by the
    # daemon's front protocol (aima.gateway.front) with this gateway, before ASGI.
    app.door = Door(app.fastapi, gateway)
    app.gateway = gateway

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
    async def _http(_req: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return JSONResponse({"error": {"message": str(e.detail), "type": "HTTPError", "code": code}},
                            status_code=e.status_code)

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

    rest.install(app)
    app.include_router(openai_docs)
    app.add_route("/mcp", StreamableHTTPASGIApp(session_manager), include_in_schema=False)
    return app
