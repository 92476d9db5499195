"""Request bodies: the ``model`` a request names (JSON, form or multipart), and the body with that one
field rewritten to the engine's served name. Everything else passes through byte for byte; when the
name already is the served name nothing is re-encoded at all. Answers get the requested name back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from urllib.parse import parse_qsl, quote_plus, unquote_plus

_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


class BadBody(Exception):
    def __init__(self, message: str, code: str = "invalid_body", param: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param


class Parsed:
    """A request body and the model it names; ``with_model(name)`` is the body naming ``name`` instead."""

    __slots__ = ("body", "model", "_rewrite")

    def __init__(self, body: bytes, model: str, rewrite: Callable[[bytes, str], bytes]):
        self.body = body
        self.model = model
        self._rewrite = rewrite

    def with_model(self, name: str) -> bytes:
        if name == self.model:
            return self.body
        return self._rewrite(self.body, name)


def media_type(content_type: bytes) -> bytes:
    return content_type.partition(b";")[0].strip().lower()


def parse(content_type: bytes, body: bytes) -> Parsed:
    mt = media_type(content_type)
    if mt == b"multipart/form-data":
        return _multipart(content_type, body)
    if mt == b"application/x-www-form-urlencoded" and not body.lstrip().startswith(b"{"):
        return _form(body)  # (a JSON object sent as a form, as `curl -d '{...}'` does, is read as JSON)
    return _json(body, mt)


def _need_model(model: object) -> str:
    if model is None:
        raise BadBody('the request names no model: add a "model" field (GET /v1/models lists them)',
                      code="missing_model", param="model")
    if not isinstance(model, str) or not model.strip():
        raise BadBody(f'"model" must be a non-empty string, not {json.dumps(model)[:80]}', code="invalid_model",
                      param="model")
    return model


# ---------------------------------------------------------------------------- JSON
def _json(body: bytes, mt: bytes) -> Parsed:
    if not body.strip():
        raise BadBody("the request body is empty; send a JSON object with a \"model\" field")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        what = "" if mt in (b"", b"application/json") else f" (content type {mt.decode(errors='replace')})"
        raise BadBody(f"request body is not valid JSON{what}: {e}") from None
    if not isinstance(data, dict):
        raise BadBody(f"request body must be a JSON object, got {type(data).__name__}")
    return Parsed(body, _need_model(data.get("model")), _json_rewrite)


def _json_model_span(text: str) -> tuple[int, int] | None:
    """Where the top-level ``model`` value lies in a JSON object (the last one, as json.loads keeps)."""
    i = _WS.match(text, 0).end()  # type: ignore[union-attr]
    if text[i:i + 1] != "{":
        return None
    i += 1
    found = None
    while True:
        i = _WS.match(text, i).end()  # type: ignore[union-attr]
        if text[i:i + 1] == "}":
            return found
        key, i = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
        i = _WS.match(text, i).end()  # type: ignore[union-attr]
        i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]  # past ':'
        _value, end = _DECODER.raw_decode(text, i)
        if key == "model":
            found = (i, end)
        i = _WS.match(text, end).end()  # type: ignore[union-attr]
        if text[i:i + 1] == ",":
            i += 1


def _json_rewrite(body: bytes, name: str) -> bytes:
    try:
        text = body.decode("utf-8")
        span = _json_model_span(text)
    except (UnicodeDecodeError, ValueError):
        span = None
    if span is None:  # not UTF-8 JSON (json.loads also reads UTF-16/32): re-encode the whole object
        data = json.loads(body)
        data["model"] = name
        return json.dumps(data).encode()
    a, b = span
    return (text[:a] + json.dumps(name) + text[b:]).encode("utf-8")


# ---------------------------------------------------------------------------- form
def _form(body: bytes) -> Parsed:
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except (UnicodeDecodeError, ValueError) as e:
        raise BadBody(f"request body is not a valid form: {e}") from None
    model = None
    for k, v in pairs:
        if k == "model":
            model = v
    return Parsed(body, _need_model(model), _form_rewrite)


def _form_rewrite(body: bytes, name: str) -> bytes:
    parts = body.decode("utf-8").split("&")
    for i, part in enumerate(parts):
        if unquote_plus(part.partition("=")[0]) == "model":
            parts[i] = "model=" + quote_plus(name)
    return "&".join(parts).encode()


# ---------------------------------------------------------------------------- multipart
_DISPOSITION_NAME = re.compile(rb'(?i)\bname="([^"]*)"')


def _boundary(content_type: bytes) -> bytes:
    for param in content_type.split(b";")[1:]:
        k, _, v = param.strip().partition(b"=")
        if k.strip().lower() == b"boundary":
            v = v.strip()
            if len(v) >= 2 and v[:1] == v[-1:] == b'"':
                v = v[1:-1]
            if v:
                return v
    raise BadBody("multipart/form-data without a boundary in its Content-Type")


def _multipart_model_span(body: bytes, boundary: bytes) -> tuple[int, int] | None:
    delim = b"--" + boundary
    pos = body.find(delim)
    if pos < 0:
        raise BadBody("multipart body does not contain its boundary")
    found = None
    while True:
        pos += len(delim)
        if body[pos:pos + 2] == b"--":
            return found
        head_end = body.find(b"\r\n\r\n", pos)
        if head_end < 0:
            raise BadBody("multipart part without the blank line after its headers")
        start = head_end + 4
        nxt = body.find(b"\r\n" + delim, start)
        if nxt < 0:
            raise BadBody("multipart body ends before its closing boundary")
        headers = body[pos:head_end]
        for line in headers.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-disposition" and b"filename" not in value.lower():
                m = _DISPOSITION_NAME.search(value)
                if m and m.group(1) == b"model":
                    found = (start, nxt)
        pos = nxt + 2


def _multipart(content_type: bytes, body: bytes) -> Parsed:
    boundary = _boundary(content_type)
    span = _multipart_model_span(body, boundary)
    model = None
    if span is not None:
        try:
            model = body[span[0]:span[1]].decode("utf-8")
        except UnicodeDecodeError:
            raise BadBody('the multipart "model" field is not UTF-8 text', code="invalid_model",
                          param="model") from None

    def rewrite(b: bytes, name: str) -> bytes:
        a, z = span  # type: ignore[misc]
        return b[:a] + name.encode() + b[z:]

    return Parsed(body, _need_model(model), rewrite)


# ---------------------------------------------------------------------------- answers
def answer_rewriter(served: str, requested: str) -> Callable[[bytes], bytes]:
    """A function giving an answer's ``"model": "<served>"`` fields the name the client asked for."""
    pat = re.compile(rb'("model"\s*:\s*)' + re.escape(json.dumps(served).encode()))
    rep = json.dumps(requested).encode()
    return lambda data: pat.sub(lambda m: m.group(1) + rep, data) if b'"model"' in data else data
