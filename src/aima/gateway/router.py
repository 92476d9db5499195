"""OpenAI routes under /v1 (today: the model list)."""

from __future__ import annotations

from fastapi import APIRouter, Request

router = APIRouter(prefix="/v1", tags=["openai"])


@router.get("/models", summary="Models with a ready instance (OpenAI shape)")
async def list_models(request: Request) -> dict[str, object]:
    table = request.app.state.ctx.routes
    return {"object": "list", "data": [
        {"id": r.model, "object": "model", "created": int(r.created_at), "owned_by": "aima",
         "service": r.name} for r in table.models()
    ]}
