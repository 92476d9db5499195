"""The OpenAPI document (``/openapi.json``): every route with its real parameters, bodies and answers.

FastAPI sees the REST routes as functions of a bare request (an operation parses its own input), so the
document is completed here from the operation registry: path parameters and, for GETs, query
parameters from each operation's input schema; the JSON body (the input less its path parameters,
required when the input has required fields); the success answer (201 for ``.create``) with the
output's schema; and every error status aima can answer with the one error shape. The OpenAI routes
under ``/v1`` (served by the gateway, outside FastAPI) get their request and answer shapes here too.
Schema names are unique (pydantic's ``models_json_schema`` qualifies two models of one name).

``tests/surfaces/test_openapi.py`` runs schemathesis over the whole document: every answer must match it.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from aima.ops.registry import Operation

REF = "#/components/schemas/{model}"
ERROR_STATUSES = {
    "400": "the body is not JSON, or not an object", "401": "no valid API key", "403": "the key's scope does not "
    "allow it", "404": "what it names does not exist", "405": "another method is expected", "409": "it conflicts "
    "with what exists (a name or port taken)", "413": "the body is too large", "422": "a field is invalid (param "
    "names it)", "429": "over the key's limit (Retry-After)", "500": "a bug in aima (the daemon's log says more)",
    "502": "an engine failed or answered an error", "503": "not available now (not ready, no Docker, no cluster; "
    "Retry-After where known)", "504": "an engine did not answer in time"}
ERROR_SCHEMA = {
    "type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type", "code"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"}, "code": {"type": "string"},
                       "param": {"type": ["string", "null"]}, "details": {"type": "object"}}}}}
SSE_EVENT = {"type": "object", "properties": {"event": {"type": "string"}, "data": {"type": "string"},
                                              "id": {"type": "string"}, "retry": {"type": "integer"}}}
ANY_OBJECT = {"type": "object"}
OPENAI_JSON_BODY = {"type": "object", "required": ["model"],
                    "properties": {"model": {"type": "string", "minLength": 1}}}
OPENAI_UPLOAD = {"type": "object", "required": ["file", "model"], "properties": {
    "file": {"type": "string", "format": "binary"}, "model": {"type": "string", "minLength": 1}}}

_NAME = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S"}
VOICE_UPLOAD = {"type": "object", "required": ["file"], "additionalProperties": False, "properties": {
    "file": {"type": "string", "format": "binary", "minLength": 1, "description": "the question's audio"},
    "model": _NAME, "transcription_model": _NAME, "speech_model": _NAME, "voice": _NAME,
    "system": {"type": "string", "maxLength": 20000}, "session": _NAME,
    "language": {"type": "string", "maxLength": 16, "pattern": r"\S"},
    "max_tokens": {"type": "integer", "minimum": 1, "maximum": 8192},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2}, "stream": {"type": "boolean"}}}


def _errors() -> dict[str, Any]:
    return {code: {"description": why, "content": {"application/json": {"schema": {"$ref": REF.format(
        model="Error")}}}} for code, why in ERROR_STATUSES.items()}


def _param_schema(prop: dict[str, Any]) -> dict[str, Any]:
    """A property's schema as a parameter's (query values are strings on the wire; aima reads them as typed)."""
    p = {k: v for k, v in prop.items() if k not in ("title", "description", "default", "x-cli-name",
                                                     "x-cli-short", "x-cli-hidden")}
    if "anyOf" in p:  # Optional[X]: X (a query parameter is simply left out for None)
        alts = [a for a in p.pop("anyOf") if a.get("type") != "null"]
        if len(alts) == 1:
            p.update(alts[0])
    return p


def complete(doc: dict[str, Any], ops: dict[str, Operation], own: dict[str, type[BaseModel]]) -> dict[str, Any]:
    """``doc`` (FastAPI's) with every operation's parameters, body and answers filled in; ``own`` are models of
    routes outside the registry (by component name)."""
    models: list[tuple[type[BaseModel], Any]] = []
    for op in ops.values():
        models += [(op.input, "validation"), (op.output, "serialization")]
    models += [(m, "validation") for m in own.values()]
    refs, defs = models_json_schema(list(dict.fromkeys(models)), ref_template=REF)
    comps: dict[str, Any] = dict(defs.get("$defs", {}))
    comps["Error"] = ERROR_SCHEMA
    doc.setdefault("components", {})["schemas"] = comps

    def schema_of(model: type[BaseModel], mode: str) -> dict[str, Any]:
        return refs[(model, mode)]

    def resolved(model: type[BaseModel]) -> dict[str, Any]:
        ref = schema_of(model, "validation")["$ref"]
        return comps[ref.rsplit("/", 1)[-1]]

    paths: dict[str, Any] = doc.setdefault("paths", {})
    for op in ops.values():
        item = paths.get("/api/v1" + op.path, {}).get(op.method.lower())
        if item is None:
            continue
        inp = resolved(op.input)
        props: dict[str, Any] = inp.get("properties", {})
        required = set(inp.get("required", []))
        in_path = [p.strip("{}") for p in op.path.split("/") if p.startswith("{")]
        params = [{"name": n, "in": "path", "required": True, "schema": _param_schema(props.get(n, {"type": "string"}))}
                  for n in in_path]
        if op.method == "GET":
            params += [{"name": n, "in": "query", "required": n in required, "schema": _param_schema(p)}
                       for n, p in props.items() if n not in in_path]
        else:
            body = schema_of(op.input, "validation")
            if in_path:
                body = copy.deepcopy(inp)
                for n in in_path:
                    body.get("properties", {}).pop(n, None)
                body["required"] = [r for r in body.get("required", []) if r not in in_path]
                if not body["required"]:
                    body.pop("required")
            item["requestBody"] = {"required": bool(required - set(in_path)),
                                   "content": {"application/json": {"schema": body}}}
        if params:
            item["parameters"] = params
        ok = "201" if op.name.endswith(".create") else "200"
        answer = {"description": "OK", "content": {"application/json": {"schema": schema_of(op.output,
                                                                                            "serialization")}}}
        if op.name == "agent.ask":  # a stream of events; the last (answer) carries the output
            answer["content"] = {"text/event-stream": {"schema": SSE_EVENT}}
        item["responses"] = {ok: answer, **_errors()}
    _extra_routes(paths, ops)
    generic = paths.pop("/api/v1/ops/{name}", {}).get("post")
    if generic is not None:  # `POST /api/v1/ops/NAME` runs any operation: one path each, with its own body
        for op in ops.values():
            own = paths.get("/api/v1" + op.path, {}).get(op.method.lower(), {})
            item = {**generic, "operationId": f"ops.{op.name}", "summary": op.summary, "tags": ["ops"],
                    "requestBody": {"required": bool(resolved(op.input).get("required")), "content": {
                        "application/json": {"schema": schema_of(op.input, "validation")}}},
                    "responses": {"201" if op.name.endswith(".create") else "200": {
                        "description": "OK", "content": {"application/json": {
                            "schema": schema_of(op.output, "serialization")}}}, **_errors()}}
            item.pop("parameters", None)
            paths[f"/api/v1/ops/{op.name}"] = {"post": item}
    for methods in paths.values():
        for item in methods.values():
            if isinstance(item, dict) and "responses" in item:
                for code, resp in _errors().items():
                    item["responses"].setdefault(code, resp)
    return doc


def _extra_routes(paths: dict[str, Any], ops: dict[str, Operation]) -> None:
    """The routes that are not one operation each: health, metrics, the generic op call, the event stream,
    the agent's approvals and the OpenAI routes."""
    def set_(path: str, method: str, **fields: Any) -> None:
        item = paths.get(path, {}).get(method)
        if item is not None:
            item.update(fields)

    json_ok = {"description": "OK", "content": {"application/json": {"schema": ANY_OBJECT}}}
    set_("/health", "get", responses={"200": {"description": "the daemon is up", "content": {"application/json": {
        "schema": {"type": "object", "required": ["status", "version"],
                   "properties": {"status": {"type": "string"}, "version": {"type": "string"}}}}}}})
    set_("/metrics", "get", responses={"200": {"description": "Prometheus text format", "content": {
        "text/plain": {"schema": {"type": "string"}}}}})
    set_("/api/v1/ops", "get", responses={"200": {"description": "every operation with its schemas", "content": {
        "application/json": {"schema": {"type": "object", "required": ["operations"], "properties": {
            "operations": {"type": "array", "items": ANY_OBJECT}}}}}}})
    set_("/api/v1/events", "get", parameters=[{"name": "since", "in": "query", "required": False,
                                               "schema": {"type": "integer", "minimum": 0,
                                                          "maximum": 2**63 - 1}},
                                              {"name": "follow", "in": "query", "required": False,
                                               "schema": {"type": "boolean"}}],
         responses={"200": {"description": "events as server-sent events", "content": {
             "text/event-stream": {"schema": SSE_EVENT}}}})
    set_("/api/v1/agent/approvals/{approval_id}", "post",
         parameters=[{"name": "approval_id", "in": "path", "required": True, "schema": {"type": "string"}}],
         requestBody={"required": True, "content": {"application/json": {"schema": {"$ref": REF.format(
             model="ApprovalInput")}}}},
         responses={"200": json_ok})
    upload = {"required": True, "content": {"multipart/form-data": {"schema": OPENAI_UPLOAD}}}
    body = {"required": True, "content": {"application/json": {"schema": OPENAI_JSON_BODY}}}
    stream_or_json = {"description": "the engine's answer", "content": {
        "application/json": {"schema": ANY_OBJECT}, "text/event-stream": {"schema": SSE_EVENT}}}
    for path, fields in {
        "/v1/models": {"responses": {"200": {"description": "the ready models", "content": {"application/json": {
            "schema": {"type": "object", "required": ["object", "data"], "properties": {
                "object": {"type": "string"}, "data": {"type": "array", "items": ANY_OBJECT}}}}}}}},
        "/v1/chat/completions": {"requestBody": body, "responses": {"200": stream_or_json}},
        "/v1/completions": {"requestBody": body, "responses": {"200": stream_or_json}},
        "/v1/embeddings": {"requestBody": body, "responses": {"200": json_ok}},
        "/v1/audio/speech": {"requestBody": body, "responses": {"200": {"description": "the audio", "content": {
            "audio/wav": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}},
        "/v1/audio/transcriptions": {"requestBody": upload, "responses": {"200": {
            "description": "the text", "content": {"application/json": {"schema": ANY_OBJECT},
                                                   "text/plain": {"schema": {"type": "string"}}}}}},
        "/v1/audio/translations": {"requestBody": upload, "responses": {"200": {
            "description": "the text", "content": {"application/json": {"schema": ANY_OBJECT},
                                                   "text/plain": {"schema": {"type": "string"}}}}}},
        "/v1/voice": {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": VOICE_UPLOAD}}},
                      "responses": {"200": {"description": "both texts, the reply's speech and each stage's time; "
                                                           "with stream=true, events as they come", "content": {
                          "application/json": {"schema": ANY_OBJECT}, "text/event-stream": {"schema": SSE_EVENT}}}}},
        "/v1/audio/voices": {"parameters": [{"name": "model", "in": "query", "required": False,
                                             "schema": {"type": "string"}}], "responses": {"200": json_ok}},
    }.items():
        for method in ("get", "post"):
            set_(path, method, **fields)
