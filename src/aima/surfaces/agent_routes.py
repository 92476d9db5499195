"""The REST routes of the operator agent: ``POST /api/v1/agent/ask`` as server-sent events and
``POST /api/v1/agent/approvals/{id}``. Installed by rest.py through ``agent.ask``'s hook (see aima.ops.agent);
FastAPI reads the annotations here, so this module does not postpone them."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from aima.errors import NotFound
from aima.ops.agent import ApprovalInput, AskInput, _request
from aima.ops.registry import Operation, validation_error
from aima.surfaces.rest import read_json

KEEP_ALIVE_S = 15.0


def _key(headers: Any) -> str | None:
    """The caller's API key: the agent's own calls to this daemon's /v1 go with it."""
    auth = headers.get("authorization") or ""
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return (headers.get("x-api-key") or "").strip() or None


def _sse(ev: dict[str, Any]) -> bytes:
    return f"event: {ev.get('event', 'message')}\ndata: {json.dumps(ev, ensure_ascii=False)}\n\n".encode()


def install(router: APIRouter, op: Operation) -> None:
    @router.post(op.path, summary=op.summary, operation_id=op.name, tags=["agent"],
                 description=op.description + "\n\nAnswers server-sent events: session, progress, step, "
                 "needs_approval, result, then answer or error.",
                 openapi_extra={"requestBody": {"content": {"application/json": {
                     "schema": {"$ref": "#/components/schemas/AskInput"}}}},
                     "responses": {"200": {"description": "server-sent events; the last, `answer`, carries AskOutput",
                                           "content": {"text/event-stream": {"schema": {"type": "string"}},
                                                       "application/json": {"schema": {
                                                           "$ref": "#/components/schemas/AskOutput"}}}}}})
    async def agent_ask(request: Request) -> StreamingResponse:
        from aima.agent.loop import ask as run

        inp = op.parse(await read_json(request), strict=True)
        assert isinstance(inp, AskInput)
        events = run(request.app.state.ctx, _request(inp, _key(request.headers), interactive=inp.interactive))
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        async def pump() -> None:
            try:
                async for ev in events:
                    await queue.put(ev)
            except Exception as e:  # noqa: BLE001 - the stream says what broke, it never just ends
                await queue.put({"event": "error", "message": f"{type(e).__name__}: {e}", "code": "internal_error",
                                 "exit_code": 1})
            finally:
                await queue.put(None)

        async def stream() -> AsyncIterator[bytes]:
            task = asyncio.ensure_future(pump())
            try:
                yield b": aima agent\n\n"
                while True:
                    try:
                        ev = await asyncio.wait_for(queue.get(), KEEP_ALIVE_S)
                    except TimeoutError:
                        yield b": keep-alive\n\n"  # the model is thinking or a tool is running
                        continue
                    if ev is None:
                        return
                    yield _sse(ev)
            finally:
                if not task.done():  # the client went away: the conversation stops (started tools go on)
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                with contextlib.suppress(Exception):
                    await events.aclose()

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @router.post("/agent/approvals/{approval_id}", summary="Approve or deny a destructive call the agent waits on",
                 operation_id="agent.approve", tags=["agent"])
    async def agent_approve(approval_id: str, request: Request) -> JSONResponse:
        from aima.agent import approvals

        try:
            body = ApprovalInput.model_validate(await read_json(request))
        except ValidationError as e:
            raise validation_error(e) from None
        p = approvals.decide(approval_id, body.approve)
        if p is None:
            raise NotFound(f"no call waits for approval {approval_id!r} (already decided, timed out, or unknown)",
                           field="approval_id")
        return JSONResponse({"id": p.id, "approved": body.approve, "tool": p.tool, "arguments": p.arguments,
                             "session": p.session})
