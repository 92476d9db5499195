"""REST under /api/v1, generated from the operation registry.

Each operation gets its resource route (``GET /api/v1/services``) and ``POST /api/v1/ops/{name}``.
Inputs are parsed here only to turn HTTP into an operation's input; errors keep one shape:
``{"error": {"message", "type", "code", "param"}}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from aima.errors import AimaError, BadRequest
from aima.ops.registry import Operation, describe, get, load_all

log = logging.getLogger("aima.rest")
PREFIX = "/api/v1"


def _agent_routes() -> Any:
    from aima.surfaces.agent_routes import install

    return install


# Operations whose REST form is not the generic one: the module that installs their routes.
OWN_ROUTES = {"agent.ask": _agent_routes}


def error_response(e: AimaError) -> JSONResponse:
    return JSONResponse(e.to_dict(), status_code=e.status)


async def read_json(request: Request) -> Any:
    body = await request.body()
    if not body.strip(b" \t\r\n"):  # JSON's white space only (a form feed is not JSON)
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(data).__name__}")
    return data


def _result(op: Operation, out: Any) -> Response:
    status = 201 if op.name.endswith(".create") else 200
    return Response(out.model_dump_json(), status_code=status, media_type="application/json")


def _resource_endpoint(op: Operation):  # type: ignore[no-untyped-def]
    async def endpoint(request: Request) -> Response:
        data: dict[str, Any] = {}
        if op.method == "GET":
            for k, v in request.query_params.multi_items():
                data[k] = v
        else:
            data.update(await read_json(request))
        for k, v in request.path_params.items():
            if k in data and data[k] != v:
                raise BadRequest(f"{k!r} in the body ({data[k]!r}) differs from the path ({v!r})")
            data[k] = v
        return _result(op, await op.call(request.app.state.ctx, data, strict=op.method != "GET"))
    endpoint.__name__ = op.name.replace(".", "_")
    return endpoint


def _schema_ref(model: type) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def build_router() -> APIRouter:
    router = APIRouter(prefix=PREFIX)
    ops = load_all()
    for op in ops.values():
        if op.name in OWN_ROUTES:  # an operation with routes of its own (agent.ask streams its steps)
            OWN_ROUTES[op.name]()(router, op)
            continue
        extra: dict[str, Any] = {}
        if op.method != "GET":
            extra["requestBody"] = {"content": {"application/json": {"schema": _schema_ref(op.input)}}}
        router.add_api_route(
            op.path, _resource_endpoint(op), methods=[op.method], summary=op.summary,
            description=op.description, operation_id=op.name, tags=[op.name.split(".")[0]],
            openapi_extra={**extra, "responses": {"200": {"description": "OK", "content": {
                "application/json": {"schema": _schema_ref(op.output)}}}}},
        )

    @router.get("/ops", summary="List every operation with its input and output schemas", tags=["ops"])
    async def list_ops() -> JSONResponse:
        return JSONResponse({"operations": [describe(o) for o in load_all().values()]})

    @router.post("/ops/{name}", summary="Call any operation by name with its input as the body",
                 tags=["ops"])
    async def call_op(name: str, request: Request) -> Response:
        op = get(name)
        return _result(op, await op.call(request.app.state.ctx, await read_json(request), strict=True))

    @router.get("/events", summary="Live events as server-sent events (since=ID replays history first; "
                                   "follow=false ends after it)", tags=["event"])
    async def events(request: Request, since: int | None = Query(None, ge=0, le=2**63 - 1),
                     follow: bool = Query(True)) -> StreamingResponse:
        ctx = request.app.state.ctx
        bus = ctx.bus
        q = bus.subscribe()

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b": aima events\n\n"
                if since is not None:
                    for ev in bus.history(since, 1000):
                        yield _sse(ev)
                if not follow:
                    return
                idle = 0.0
                while not ctx.shutting_down:  # a stream ends when the daemon stops, never holds it up
                    try:
                        ev = await asyncio.wait_for(q.get(), 1.0)
                    except TimeoutError:
                        idle += 1.0
                        if idle >= 15.0:
                            idle = 0.0
                            yield b": keep-alive\n\n"
                        continue
                    idle = 0.0
                    yield _sse(ev)
            finally:
                bus.unsubscribe(q)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router


def _sse(ev: dict[str, Any]) -> bytes:
    return f"id: {ev['id']}\nevent: {ev['kind']}\ndata: {json.dumps(ev)}\n\n".encode()


def mount(app: FastAPI, get_ctx: Any, settings: Any) -> None:
    """The REST surface on the daemon's app (``aima.server.app.Mount``)."""
    install(app)


def install(app: FastAPI) -> None:
    app.include_router(build_router())
    ops = load_all()

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        from aima.ops.agent import ApprovalInput
        from aima.surfaces.openapi import complete

        doc = get_openapi(title="aima", version=app.version, routes=app.routes,
                          description="aima: one control plane and one OpenAI-compatible endpoint")
        app.openapi_schema = complete(doc, ops, {"ApprovalInput": ApprovalInput})
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
